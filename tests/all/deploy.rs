//! Deploying as a vendor does: the quadlet units through Podman 5's real
//! generator, and the image (with the binary built for these tests
//! injected, `--target with-host-binary`) run by Podman: it serves, its
//! health check passes, and SIGTERM stops it cleanly.
//!
//! Needs Podman 5's quadlet generator (Debian 13's package; Debian 12's
//! Podman has none): scripts/test.sh fetches it with
//! scripts/quadlet-generator.sh; a missing one fails the test saying so.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use ember_ci_test_kit::ci_env::{ember_ci_bin, project_dir};
use ember_ci_test_kit::podman_lock_blocking;
use ember_ci_test_kit::wait::poll_until_blocking;

const GENERATOR: &str = "/var/cache/ember-ci/quadlet/root/usr/libexec/podman/quadlet";
const GENERATOR_HINT: &str = "run scripts/quadlet-generator.sh (scripts/test.sh does): \
     it fetches Podman 5's quadlet generator from Debian 13's podman package";
pub(crate) const IMAGE: &str = "localhost/ember-ci:deploy-test";

pub(crate) fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("running {command:?}: {err}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

pub(crate) fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A valid config dir: one backend, SHUTDOWN_GRACE set, `extra` appended.
fn config_dir(dir: &Path, extra: &str) -> PathBuf {
    let config = dir.join("config");
    std::fs::create_dir_all(&config).expect("creating the config dir");
    std::fs::write(
        config.join("config"),
        format!(
            "GH_EMBER_SECRET=deploy-test-secret\nDRIVER_NAME_1=demo\n\
             DRIVER_CONFIG_1='{{\"name\": \"demo\", \"driver\": \"DemoDriver\"}}'\n{extra}\n"
        ),
    )
    .expect("writing the config");
    config
}

/// The generated service's `[Service]` lines, by unit name, from `quadlet -dryrun`.
fn generated_unit<'a>(dryrun: &'a str, unit: &str) -> &'a str {
    let header = format!("---{unit}---\n");
    dryrun
        .split_once(&header)
        .map(|(_, rest)| rest.split("\n---").next().unwrap_or(rest))
        .unwrap_or_else(|| panic!("quadlet generated no {unit}:\n{dryrun}"))
}

#[test]
fn quadlet_units_pass_podman_5s_generator_with_the_configs_stop_timeout() {
    let generator = Path::new(GENERATOR);
    assert!(generator.is_file(), "{GENERATOR} missing: {GENERATOR_HINT}");
    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_dir(dir.path(), "SHUTDOWN_GRACE=2m");
    let units = dir.path().join("units");
    let installed = run(Command::new(ember_ci_bin())
        .args(["quadlet", "--install", "--podman-version", "5.4.2"])
        .args(["--image", "docker.io/example/ember-ci:v1"])
        .arg("--config")
        .arg(&config)
        .arg("--dir")
        .arg(&units));
    assert!(stdout(&installed).contains("systemctl daemon-reload"));

    let dryrun = stdout(&run(Command::new(generator)
        .arg("-dryrun")
        .env("QUADLET_UNIT_DIRS", &units)));
    let service = generated_unit(&dryrun, "ember-ci.service");
    let exec_start = service
        .lines()
        .find(|line| line.starts_with("ExecStart="))
        .unwrap_or_else(|| panic!("no ExecStart:\n{service}"));
    for expected in [
        "--privileged",
        "--label io.containers.autoupdate=registry",
        "--network host",
        "-v ember-ci-state:/var/lib/ember-ci",
        "-v ember-ci-storage:/var/lib/containers",
        &format!("-v {}:/config:ro,Z", config.display()),
        // SHUTDOWN_GRACE (120 s) + 30 s for the final statuses.
        "--stop-timeout 150",
        "--sdnotify=healthy",
        // Checked every 2 s until healthy, so a start is not a HealthInterval long.
        "--health-startup-interval 2s",
        "--health-cmd \"/usr/local/bin/ember-ci health --config /config\"",
        "docker.io/example/ember-ci:v1",
    ] {
        assert!(
            exec_start.contains(expected),
            "no {expected} in {exec_start}"
        );
    }
    for expected in [
        "TimeoutStopSec=180",
        "TimeoutStartSec=900",
        "Restart=always",
    ] {
        assert!(
            service.lines().any(|line| line == expected),
            "no {expected}:\n{service}"
        );
    }
    for volume in ["ember-ci-state", "ember-ci-storage"] {
        let unit = generated_unit(&dryrun, &format!("{volume}-volume.service"));
        assert!(
            unit.contains(&format!("podman volume create --ignore {volume}")),
            "{unit}"
        );
    }
}

/// The Containerfile's fully qualified base comes through the local
/// registry mirror (scripts/local-registry.sh), as from docker.io at a
/// vendor's: `podman build` pulls it when absent.
fn ensure_base_image() {
    ember_ci_test_kit::executor_env::ensure_local_registry();
}

/// Builds [`IMAGE`] from the Containerfile with this test build's binary
/// injected (`--target with-host-binary`).
pub(crate) fn build_image() {
    ensure_base_image();
    run(Command::new("bash")
        .arg(project_dir().join("scripts/build-image.sh"))
        .arg("--binary")
        .arg(ember_ci_bin())
        .args(["--tag", IMAGE]));
}

/// A container's output (stdout and stderr).
pub(crate) fn container_logs(name: &str) -> String {
    let output = podman(&["logs", name]);
    stdout(&output) + &String::from_utf8_lossy(&output.stderr)
}

/// Waits (90 s) for the container's health check to pass; else removes it
/// and panics with its logs.
pub(crate) fn wait_healthy(name: &str) {
    let healthy = poll_until_blocking(Duration::from_secs(90), Duration::from_secs(1), || {
        Command::new("podman")
            .args(["healthcheck", "run", name])
            .output()
            .is_ok_and(|output| output.status.success())
            .then_some(())
    });
    if healthy.is_none() {
        let text = container_logs(name);
        podman(&["rm", "-f", "-v", name]);
        panic!("the container never became healthy:\n{text}");
    }
}

pub(crate) fn podman(args: &[&str]) -> Output {
    run(Command::new("podman").args(args))
}

#[test]
fn image_serves_passes_its_health_check_and_drains_on_sigterm() {
    let _podman = podman_lock_blocking();
    build_image();
    let health = stdout(&podman(&[
        "inspect",
        "--format",
        "{{.HealthCheck.Test}}",
        IMAGE,
    ]));
    assert!(
        health.contains("ember-ci health"),
        "image health check: {health}"
    );

    let dir = tempfile::tempdir().expect("temp dir");
    let config = config_dir(dir.path(), "WEB_PORT=8010\nSHUTDOWN_GRACE=20");
    let name = format!("ember-ci-deploy-test-{}", std::process::id());
    let volume = format!("{}:/config:ro,Z", config.display());
    podman(&[
        "run",
        "-d",
        "--privileged",
        "--name",
        &name,
        "-v",
        &volume,
        IMAGE,
    ]);
    wait_healthy(&name);
    let logs = || container_logs(&name);
    // A stop timeout far beyond what a drain takes here: the exit code
    // tells whether ember-ci stopped on SIGTERM (0) or was killed (137).
    podman(&["stop", "-t", "60", &name]);
    let exit = stdout(&podman(&[
        "inspect",
        "--format",
        "{{.State.ExitCode}}",
        &name,
    ]));
    let text = logs();
    podman(&["rm", "-v", &name]);
    assert_eq!(exit.trim(), "0", "exit code after SIGTERM; logs:\n{text}");
    assert!(text.contains("listening on"), "{text}");
}
