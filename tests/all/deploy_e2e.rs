//! The documented deploy, end to end: the ember-ci image (this build's
//! binary injected), started with the README's own `podman run` command and
//! a config dir holding only what a vendor sets plus where the local
//! stand-ins are (fake GitHub, git server for the PRs and csi-test, the
//! local registry mirror). Both fixtures replayed with `ember-ci send` end
//! in success (129) and failure (130) through the default sandbox and the
//! default csi-sanity path; `podman stop` mid-job leaves no pending status
//! and no job container.
//!
//! The inner image store is a named volume kept between runs (the Debian
//! base, the sandbox image and its Go stage: a cache of images, about two
//! minutes to build cold); the state volume, with the journal and every
//! result, is new each run.

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use ember_ci_test_kit::ci_env::{
    delivery_for, project_dir, send, DemoRepo, TEST_SECRET, TEST_TOKEN,
};
use ember_ci_test_kit::fake_github::FakeGitHub;
use ember_ci_test_kit::git_server::{self, STANDIN_PASSED, STANDIN_VERSION};

use crate::deploy::{build_image, container_logs, podman, run, stdout, wait_healthy, IMAGE};

const NAME: &str = "ember-ci-deploy-e2e";
const STATE_VOLUME: &str = "ember-ci-deploy-e2e-state";
/// Kept between runs: images only.
const STORAGE_VOLUME: &str = "ember-ci-deploy-e2e-storage";
/// The first job on an empty inner store builds the sandbox image too.
const FIRST_JOBS_DEADLINE: Duration = Duration::from_secs(900);
/// The README's words for a host whose registries are set by a drop-in.
const MIRROR_DROP_IN: &str = "/etc/containers/registries.conf.d/50-ember-ci-local-mirror.conf";

/// The README's `podman run` command, as arguments after `podman`.
fn readme_podman_run() -> Vec<String> {
    let readme = std::fs::read_to_string(project_dir().join("README.md")).expect("README.md");
    let block = readme
        .split("```sh\n")
        .filter_map(|rest| rest.split("```").next())
        .find(|block| block.trim_start().starts_with("podman run "))
        .expect("README.md has a ```sh block starting with `podman run`");
    let args: Vec<String> = block
        .replace("\\\n", " ")
        .split_whitespace()
        .map(str::to_string)
        .collect();
    assert_eq!(args.first().map(String::as_str), Some("podman"), "{block}");
    args[1..].to_vec()
}

/// The README's command with this test's names: the config dir, the
/// container, the volumes, the image, and the mirror drop-in mounted as the
/// README says for a host that pulls through a mirror.
fn podman_run_args(config: &Path) -> Vec<String> {
    let readme = std::fs::read_to_string(project_dir().join("README.md")).expect("README.md");
    let mount = format!("-v {MIRROR_DROP_IN}:{MIRROR_DROP_IN}:ro");
    assert!(
        readme.contains(
            "-v /etc/containers/registries.conf.d/FILE:/etc/containers/registries.conf.d/FILE:ro"
        ),
        "the README no longer says how a mirror's drop-in is passed on"
    );
    let mut args: Vec<String> = readme_podman_run()
        .into_iter()
        .map(|arg| match arg.as_str() {
            "ember-ci" => NAME.to_string(),
            "localhost/ember-ci:latest" => IMAGE.to_string(),
            _ => arg
                .replace("/etc/ember-ci:", &format!("{}:", config.display()))
                .replace("ember-ci-state:", &format!("{STATE_VOLUME}:"))
                .replace("ember-ci-storage:", &format!("{STORAGE_VOLUME}:")),
        })
        .collect();
    let image = args.pop().expect("the README's command names an image");
    assert_eq!(image, IMAGE, "the README's command ends with the image");
    args.extend(mount.split(' ').map(str::to_string));
    args.push(image);
    args
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// What a vendor sets (token, secret, backend, ports, a short grace), then
/// where the stand-ins are.
fn vendor_config(
    dir: &Path,
    github: &FakeGitHub,
    clone_url: &str,
    web_port: u16,
) -> std::path::PathBuf {
    let standin = git_server::csi_sanity_standin();
    let config = dir.join("config");
    std::fs::create_dir_all(&config).expect("config dir");
    std::fs::write(
        config.join("config"),
        format!(
            "GH_TOKEN=\"{TEST_TOKEN}\"\nGH_USER=\"ember-ci-bot\"\nGH_EMBER_SECRET=\"{TEST_SECRET}\"\n\
             DRIVER_NAME_1=\"demo\"\n\
             DRIVER_CONFIG_1='{{\"name\": \"demo\", \"driver\": \"DemoDriver\", \"password\": \"demo-array-password\"}}'\n\
             WEB_PORT={web_port}\nWEB_UI_PORT={}\nSHUTDOWN_GRACE=5\n\
             # The local stand-ins of GitHub, its git server and csi-test's.\n\
             GH_API_URL=\"{}\"\nGH_CLONE_URL=\"{clone_url}\"\n\
             CSI_SANITY_REPO=\"{}\"\nCSI_SANITY_VERSION=\"{STANDIN_VERSION}\"\nCSI_SANITY_COMMIT=\"{}\"\n",
            free_port(),
            github.url(),
            standin.repo,
            standin.commit,
        ),
    )
    .expect("writing the config");
    config
}

/// Job containers left in the (stopped) container's image store.
fn job_containers() -> String {
    let volume = format!("{STORAGE_VOLUME}:/var/lib/containers");
    let output = podman(&[
        "run",
        "--rm",
        "--privileged",
        "-v",
        &volume,
        "--entrypoint",
        "podman",
        IMAGE,
        "ps",
        "-a",
        "--filter",
        "label=ember-ci.job",
        "--format",
        "{{.Names}} {{.Labels}}",
    ]);
    stdout(&output).trim().to_string()
}

fn last_state(github: &FakeGitHub, sha: &str) -> Option<String> {
    github
        .statuses_for(sha)
        .last()
        .map(|status| status.state.clone())
}

/// Removes the container and the state volume (the storage volume stays).
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = Command::new("podman").args(["rm", "-f", NAME]).output();
        let _ = Command::new("podman")
            .args(["volume", "rm", "-f", STATE_VOLUME])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn documented_podman_run_passes_129_fails_130_and_stops_mid_job_cleanly() {
    let _podman = ember_ci_test_kit::podman_lock().await;
    build_image();
    let dir = tempfile::tempdir().expect("temp dir");
    let repos = dir.path().join("repos");
    let repo = DemoRepo::create(&repos);
    let clone_url = format!("git://{}/ember-csi.git", git_server::serve(&repos, false));
    let github = FakeGitHub::start_with(TEST_TOKEN, "embercsi/ember-csi").await;
    let web_port = free_port();
    let config = vendor_config(dir.path(), &github, &clone_url, web_port);

    drop(Cleanup);
    let _cleanup = Cleanup;
    run(Command::new("podman").args(podman_run_args(&config)));
    wait_healthy(NAME);
    let hook = format!("http://127.0.0.1:{web_port}/change_hook/github");

    let started = Instant::now();
    for (fixture, sha) in [
        ("test-ok.json", &repo.ok_sha),
        ("test-broken.json", &repo.broken_sha),
    ] {
        let delivery = delivery_for(fixture, sha, dir.path());
        let (code, answer) = send(&hook, &delivery, TEST_SECRET);
        assert_eq!(code, 0, "{fixture}: {answer}");
        assert!(answer.starts_with("202"), "{fixture}: {answer}");
    }
    let (ok_sha, broken_sha) = (repo.ok_sha.clone(), repo.broken_sha.clone());
    let finished = github
        .wait_for(
            |s| {
                [&ok_sha, &broken_sha].iter().all(|sha| {
                    s.statuses_for(sha)
                        .last()
                        .is_some_and(|st| st.state != "pending")
                })
            },
            FIRST_JOBS_DEADLINE,
        )
        .await;
    let logs = || container_logs(NAME);
    if let Err(err) = finished {
        panic!("jobs did not finish: {err}\n{}", logs());
    }
    eprintln!(
        "deploy e2e: 129 and 130 finished {:.1} s after the sends",
        started.elapsed().as_secs_f64()
    );
    let ok_final = github.statuses_for(&repo.ok_sha).pop().expect("a status");
    assert_eq!(ok_final.state, "success", "{ok_final:?}\n{}", logs());
    assert_eq!(ok_final.description.as_deref(), Some(STANDIN_PASSED));
    assert_eq!(ok_final.context, "3rdparty/demo");
    let broken_final = github
        .statuses_for(&repo.broken_sha)
        .pop()
        .expect("a status");
    assert_eq!(
        broken_final.state,
        "failure",
        "{broken_final:?}\n{}",
        logs()
    );

    // A slow PR (its build sleeps a minute), stopped mid-job: SIGTERM gives
    // it SHUTDOWN_GRACE (5 s), then it is cancelled with a final status.
    let dockerfile = std::fs::read_to_string(project_dir().join("examples/demo/plugin/Dockerfile"))
        .expect("the demo Dockerfile");
    let slow_dockerfile = dockerfile.replacen("\nCOPY ", "\nRUN sleep 60\nCOPY ", 1);
    assert_ne!(
        slow_dockerfile, dockerfile,
        "the demo Dockerfile has no COPY"
    );
    let slow_sha = repo.push_pull_request(
        129,
        &repo.ok_sha,
        &[("Dockerfile", &slow_dockerfile)],
        "Slow build",
    );
    let (code, answer) = send(
        &hook,
        &delivery_for("test-ok.json", &slow_sha, dir.path()),
        TEST_SECRET,
    );
    assert_eq!(code, 0, "{answer}");
    github
        .wait_for(
            |s| {
                s.statuses_for(&slow_sha).last().is_some_and(|st| {
                    st.description
                        .as_deref()
                        .is_some_and(|d| d.starts_with("running"))
                })
            },
            Duration::from_secs(120),
        )
        .await
        .unwrap_or_else(|err| panic!("the slow job did not start: {err}\n{}", logs()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let stop_started = Instant::now();
    podman(&["stop", "-t", "60", NAME]);
    eprintln!(
        "deploy e2e: podman stop mid-job took {:.1} s",
        stop_started.elapsed().as_secs_f64()
    );
    let exit = stdout(&podman(&[
        "inspect",
        "--format",
        "{{.State.ExitCode}}",
        NAME,
    ]));
    assert_eq!(exit.trim(), "0", "exit code after SIGTERM:\n{}", logs());
    let slow_final = github.statuses_for(&slow_sha).pop().expect("a status");
    eprintln!(
        "deploy e2e: the stopped job ended {}: {:?}",
        slow_final.state, slow_final.description
    );
    assert_ne!(slow_final.state, "pending", "left pending:\n{}", logs());
    assert!(
        matches!(
            last_state(&github, &slow_sha).as_deref(),
            Some("error" | "failure")
        ),
        "{slow_final:?}"
    );
    assert_eq!(
        job_containers(),
        "",
        "job containers left after podman stop"
    );
}
