//! The web UI in a real browser: `ember-ci serve` runs the demo PR #129 on
//! real Podman while headless Chromium (Debian's package, driven by
//! playwright-core from tests/browser/) watches the dashboard move the job
//! from running to done without a reload, follows the job page's live log
//! and the link from the dashboard. Screenshots land in tests/artifacts/.
//!
//! Needs chromium, node and tests/browser/node_modules: scripts/test.sh
//! installs them; a missing one fails the test saying so.

use ember_ci_test_kit::ci_env;
use ember_ci_test_kit::fake_github;
use ember_ci_test_kit::git_server::LOGS_PUBLIC_URL;
use ember_ci_test_kit::wait::poll_until_blocking;

/// How often the test looks again.
const POLL: Duration = Duration::from_millis(200);

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use ci_env::{
    delivery_for, project_dir, send, write_config, DemoRepo, Service, TEST_SECRET, TEST_TOKEN,
};
use fake_github::FakeGitHub;
use serde_json::Value;

/// A fresh host builds the sandbox image inside the first job: generous.
const JOB_START_LIMIT: Duration = Duration::from_secs(900);
/// The browser script's own waits are bounded below this.
const BROWSER_LIMIT: Duration = Duration::from_secs(1200);

const SETUP_HINT: &str = "run scripts/test.sh: it installs chromium and node \
    (Debian packages) and tests/browser's npm packages";

fn chromium_path() -> PathBuf {
    std::env::var_os("CHROMIUM_PATH")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from)
}

fn browser_dir() -> PathBuf {
    project_dir().join("tests/browser")
}

/// Fails with an install hint unless chromium, node and the npm packages are there.
fn assert_browser_tools() {
    let chromium = chromium_path();
    assert!(
        chromium.is_file(),
        "{} not found: {SETUP_HINT}",
        chromium.display()
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node is not installed: {SETUP_HINT}"
    );
    let playwright = browser_dir().join("node_modules/playwright-core/package.json");
    assert!(
        playwright.is_file(),
        "{} missing: {SETUP_HINT}",
        playwright.display()
    );
}

/// Polls `GET url` (JSON) until `pick` finds something.
fn poll_json<T>(
    runtime: &tokio::runtime::Runtime,
    url: &str,
    limit: Duration,
    service: &Service,
    pick: impl Fn(&Value) -> Option<T>,
) -> T {
    let fetch = || -> Option<Value> {
        runtime.block_on(async {
            let response = reqwest::get(url).await.ok()?;
            response.json().await.ok()
        })
    };
    let found = poll_until_blocking(limit, POLL, || fetch().as_ref().and_then(&pick));
    found.unwrap_or_else(|| {
        panic!(
            "timed out polling {url}; last answer {:?}; service log:\n{}",
            fetch(),
            service.log()
        )
    })
}

/// Runs `node dashboard.mjs`, bounded; returns (success, combined output).
fn run_browser_script(url: &str, job_id: &str, artifacts: &Path) -> (bool, String) {
    let log_path = artifacts.join("browser.log");
    let log = std::fs::File::create(&log_path).expect("creating browser.log");
    let mut child = Command::new("node")
        .arg(browser_dir().join("dashboard.mjs"))
        .args([url, job_id])
        .arg(artifacts)
        .env("CHROMIUM_PATH", chromium_path())
        .stdout(log.try_clone().expect("cloning the log handle"))
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("starting node");
    let exited = poll_until_blocking(BROWSER_LIMIT, POLL, || {
        child.try_wait().expect("waiting for node")
    });
    if exited.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let success = exited.is_some_and(|status| status.success());
    (
        success,
        std::fs::read_to_string(&log_path).unwrap_or_default(),
    )
}

#[test]
fn dashboard_follows_a_real_job_from_running_to_done_without_reload() {
    let _podman = ember_ci_test_kit::podman_lock_blocking();
    assert_browser_tools();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
    let github = runtime.block_on(FakeGitHub::start_with(TEST_TOKEN, "embercsi/ember-csi"));
    let dir = tempfile::tempdir().expect("temp dir");
    let repo = DemoRepo::create(dir.path());
    // A slow pre-run keeps the job running while the browser starts (the
    // rest of the demo job takes seconds).
    let extra = "PRE_RUN_1='echo \"pre-run: warming up the demo array\"; sleep 30'\n\
                 POST_RUN_1='echo \"post-run: job result $1\"'";
    let config_dir = write_config(
        dir.path(),
        &repo,
        &github.url(),
        &dir.path().join("state"),
        extra,
    );
    let mut service = Service::start(&config_dir, dir.path());

    let delivery = delivery_for("test-ok.json", &repo.ok_sha, dir.path());
    let (code, answer) = send(&service.hook_url(), &delivery, TEST_SECRET);
    assert_eq!(code, 0, "delivery refused: {answer}");
    let running_url = format!("{}/api/jobs?pr=129&state=running", service.ui_url);
    let job_id = poll_json(&runtime, &running_url, JOB_START_LIMIT, &service, |jobs| {
        jobs.as_array()?
            .first()?
            .get("id")?
            .as_str()
            .map(str::to_string)
    });

    let artifacts = project_dir().join("tests/artifacts/browser");
    std::fs::create_dir_all(&artifacts).expect("creating tests/artifacts/browser");
    let (success, output) = run_browser_script(&service.ui_url, &job_id, &artifacts);
    assert!(
        success,
        "browser checks failed (screenshots in {}):\n{output}\nservice log:\n{}",
        artifacts.display(),
        service.log()
    );
    assert!(output.contains("browser checks passed"), "{output}");
    for shot in [
        "dashboard-running.png",
        "job-live.png",
        "dashboard-finished.png",
        "job-finished.png",
    ] {
        let size = std::fs::metadata(artifacts.join(shot)).map_or(0, |m| m.len());
        assert!(size > 1000, "screenshot {shot} missing or empty");
    }

    // What the browser saw is what GitHub got.
    let sha = repo.ok_sha.clone();
    runtime
        .block_on(github.wait_for(
            |state| {
                state
                    .statuses_for(&sha)
                    .last()
                    .is_some_and(|s| s.state != "pending")
            },
            Duration::from_secs(60),
        ))
        .unwrap_or_else(|e| panic!("{e}"));
    let statuses = github.statuses_for(&repo.ok_sha);
    let last = statuses.last().expect("statuses were posted");
    assert_eq!(last.state, "success", "{statuses:?}");
    // Linked where the old CI put logs: the backend's branch.
    assert!(
        last.target_url.as_deref().is_some_and(|url| url
            .starts_with(&format!("{LOGS_PUBLIC_URL}/demo/{}-", repo.ok_sha))),
        "{statuses:?}"
    );
    assert_eq!(
        service.stop(Duration::from_secs(120)),
        Some(0),
        "serve did not stop cleanly:\n{}",
        service.log()
    );
}
