//! `ember-ci run` on the demo config: one job now, printing a line per step
//! (everything with `--verbose`) and the statuses (no GH_TOKEN), exit code 0
//! on success and 1 on failure.

use ember_ci_test_kit::ci_env;
use ember_ci_test_kit::git_server::STANDIN_PASSED;

use std::path::{Path, PathBuf};
use std::process::Command;

use ci_env::{ember_ci_bin, DemoRepo};

/// The demo repository and a config dir for it in `dir`, with no GitHub
/// account: an empty token prints statuses instead of posting them.
fn demo_config_without_github(dir: &Path) -> (DemoRepo, PathBuf) {
    let repo = DemoRepo::create(dir);
    let config = ci_env::write_config(
        dir,
        &repo,
        "http://127.0.0.1:9",
        &dir.join("state"),
        "GH_TOKEN=\"\"",
    );
    (repo, config)
}

/// `ember-ci run --config DIR --pr N [extra...]`: (exit code, stdout and stderr).
fn run_pr(config: &Path, pr: &str, extra: &[&str]) -> (i32, String) {
    let output = Command::new(ember_ci_bin())
        .args(["run", "--config"])
        .arg(config)
        .args(["--pr", pr])
        .args(extra)
        .output()
        .expect("running ember-ci run");
    let text = format!(
        "{}\n--- stderr ---\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().unwrap_or(-1), text)
}

#[test]
fn run_succeeds_on_the_demo_and_exits_1_on_the_broken_pr() {
    let _podman = ember_ci_test_kit::podman_lock_blocking();
    let dir = tempfile::tempdir().unwrap();
    let (repo, config) = demo_config_without_github(dir.path());

    let (code, output) = run_pr(&config, "129", &[]);
    assert_eq!(code, 0, "{output}");
    // Quiet: a line per step; the steps' output is in their log files.
    for expected in ["✓ fetch", "✓ build", "✓ sanity", "✓ cleanup"] {
        assert!(
            output.contains(expected),
            "missing {expected:?} in:\n{output}"
        );
    }
    assert!(!output.contains("SUCCESS! -- 1 Passed"), "{output}");
    let job_dir = logs_dir(&output);
    for (step, expected) in [
        ("sanity", "SUCCESS! -- 1 Passed"),
        ("post-run", "post-run: job result 0"),
    ] {
        let log = step_log(&job_dir, step);
        assert!(
            log.contains(expected),
            "{step} log lacks {expected:?}:\n{log}"
        );
    }
    let short = &repo.ok_sha[..7];
    assert!(
        output.contains(&format!("[status] {short} 3rdparty/demo pending")),
        "{output}"
    );
    assert!(
        output.contains(&format!(
            "[status] {short} 3rdparty/demo success: {STANDIN_PASSED}"
        )),
        "{output}"
    );
    // The driver config's password is masked in what is printed.
    assert!(!output.contains("demo-array-password"), "{output}");

    // A failed step shows the end of its output and where the rest is.
    let (code, output) = run_pr(&config, "130", &[]);
    assert_eq!(code, 1, "{output}");
    assert!(output.contains("✗ wait-plugin"), "{output}");
    assert!(output.contains("cannot import name DemoDriver"), "{output}");
    let full = output
        .lines()
        .find_map(|line| line.trim().strip_prefix("full output: "))
        .unwrap_or_else(|| panic!("no log file named in:\n{output}"));
    assert!(Path::new(full).is_file(), "{full}");
    assert!(output.contains("3rdparty/demo failure"), "{output}");

    // --verbose streams every step's output as it comes.
    let (code, output) = run_pr(&config, "130", &["--verbose"]);
    assert_eq!(code, 1, "{output}");
    for expected in [
        "-- fetch",
        "-- build",
        "plugin exited",
        "3rdparty/demo failure",
    ] {
        assert!(
            output.contains(expected),
            "missing {expected:?} in:\n{output}"
        );
    }
}

/// The job's log folder, from the `== logs: <dir>` line.
fn logs_dir(output: &str) -> PathBuf {
    output
        .lines()
        .find_map(|line| line.strip_prefix("== logs: "))
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("no logs line in:\n{output}"))
}

/// The text of `NN-<step>.txt` in `job_dir`.
fn step_log(job_dir: &Path, step: &str) -> String {
    let suffix = format!("-{step}.txt");
    let path = std::fs::read_dir(job_dir)
        .unwrap_or_else(|e| panic!("{}: {e}", job_dir.display()))
        .flatten()
        .map(|entry| entry.path())
        .find(|path| path.to_string_lossy().ends_with(&suffix))
        .unwrap_or_else(|| panic!("no {step} log in {}", job_dir.display()));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn run_names_the_backends_when_asked_for_an_unknown_one() {
    let dir = tempfile::tempdir().unwrap();
    let (_repo, config) = demo_config_without_github(dir.path());
    let (code, output) = run_pr(&config, "129", &["--backend", "nope"]);
    assert_eq!(code, 2, "{output}");
    assert!(
        output.contains("no backend named \"nope\"") && output.contains("demo"),
        "{output}"
    );
}
