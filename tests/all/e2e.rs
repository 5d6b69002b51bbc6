//! End to end through the front door: `ember-ci serve` as a child process,
//! the two fixture deliveries re-targeted at a local bare repository and
//! sent with `ember-ci send`, statuses recorded by a local GitHub API, jobs
//! on real Podman.

use ember_ci_test_kit::ci_env;
use ember_ci_test_kit::demo_setup;
use ember_ci_test_kit::fake_github;
use ember_ci_test_kit::git_server::{LOGS_PUBLIC_URL, STANDIN_PASSED};

use std::time::Duration;

use ci_env::{containers_with_label, delivery_for, send, volumes_with_label, Service, TEST_SECRET};
use demo_setup::DemoSetup;
use fake_github::FakeGitHub;

/// The first job on a fresh host builds the sandbox image too.
const JOB_DEADLINE: Duration = Duration::from_secs(900);

fn states(github: &FakeGitHub, sha: &str) -> Vec<String> {
    github
        .statuses_for(sha)
        .iter()
        .map(|s| s.state.clone())
        .collect()
}

async fn send_async(url: String, file: std::path::PathBuf, secret: &'static str) -> (i32, String) {
    tokio::task::spawn_blocking(move || send(&url, &file, secret))
        .await
        .expect("send task")
}

#[tokio::test(flavor = "multi_thread")]
async fn fixture_deliveries_end_in_success_and_failure_with_log_links() {
    let _podman = ember_ci_test_kit::podman_lock().await;
    let DemoSetup {
        dir,
        repo,
        github,
        config,
        state,
        logs,
        ..
    } = DemoSetup::new("").await;
    let mut service = Service::start(&config, dir.path());

    let ok_delivery = delivery_for("test-ok.json", &repo.ok_sha, dir.path());
    let broken_delivery = delivery_for("test-broken.json", &repo.broken_sha, dir.path());

    // A delivery signed with another secret is refused and starts nothing.
    let (code, answer) =
        send_async(service.hook_url(), ok_delivery.clone(), "not-the-secret").await;
    assert_eq!(code, 1, "send should fail on a refused delivery: {answer}");
    assert!(answer.starts_with("401"), "{answer}");
    let jobs: serde_json::Value = reqwest::get(format!("{}/api/jobs", service.ui_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        jobs,
        serde_json::json!([]),
        "a refused delivery queued a job"
    );

    let (code, answer) = send_async(service.hook_url(), ok_delivery, TEST_SECRET).await;
    assert_eq!(code, 0, "{answer}");
    assert!(answer.starts_with("202"), "{answer}");
    let (code, answer) = send_async(service.hook_url(), broken_delivery, TEST_SECRET).await;
    assert_eq!(code, 0, "{answer}");

    let (ok_sha, broken_sha) = (repo.ok_sha.clone(), repo.broken_sha.clone());
    let finished = github
        .wait_for(
            |s| {
                let is_final = |sha: &str| {
                    s.statuses_for(sha)
                        .last()
                        .is_some_and(|st| st.state != "pending")
                };
                is_final(&ok_sha) && is_final(&broken_sha)
            },
            JOB_DEADLINE,
        )
        .await;
    if let Err(err) = finished {
        panic!(
            "jobs did not finish: {err}\nservice log:\n{}",
            service.log()
        );
    }

    assert_eq!(
        states(&github, &repo.ok_sha),
        ["pending", "pending", "success"],
        "service log:\n{}",
        service.log()
    );
    assert_eq!(
        states(&github, &repo.broken_sha),
        ["pending", "pending", "failure"]
    );
    let ok_final = github.statuses_for(&repo.ok_sha).pop().unwrap();
    let broken_final = github.statuses_for(&repo.broken_sha).pop().unwrap();
    for status in [&ok_final, &broken_final] {
        assert_eq!(status.context, "3rdparty/demo");
    }
    assert_eq!(ok_final.description.as_deref(), Some(STANDIN_PASSED));
    let broken_description = broken_final.description.clone().unwrap_or_default();
    assert!(
        broken_description.contains("wait-plugin") && broken_description.contains("plugin exited"),
        "{broken_description}"
    );

    // The Details links name the jobs' logs where the old CI put them: the
    // backend's branch of the logs repository, `<sha>-<start epoch>/`.
    for (status, sha, expected) in [
        (&ok_final, &repo.ok_sha, STANDIN_PASSED),
        (&broken_final, &repo.broken_sha, "plugin exited"),
    ] {
        let url = status
            .target_url
            .clone()
            .expect("final status has a Details link");
        let folder = logs
            .folders("demo")
            .into_iter()
            .find(|folder| folder.starts_with(&format!("{sha}-")))
            .unwrap_or_else(|| panic!("no folder for {sha} on branch demo"));
        assert_eq!(url, format!("{LOGS_PUBLIC_URL}/demo/{folder}/index.html"));
        let page = logs.file("demo", &format!("{folder}/index.html"));
        assert!(
            page.contains(expected),
            "{url} does not say {expected:?}:\n{page}"
        );
    }

    // Nothing the jobs created is left.
    for sha in [&repo.ok_sha, &repo.broken_sha] {
        let [job_id] = ci_env::job_ids_for(&state, sha)
            .try_into()
            .expect("one job per head");
        assert_eq!(
            containers_with_label(&format!("ember-ci.job={job_id}")),
            Vec::<String>::new()
        );
        assert_eq!(
            volumes_with_label(&format!("ember-ci.job={job_id}")),
            Vec::<String>::new()
        );
    }
    assert_eq!(
        service.stop(Duration::from_secs(120)),
        Some(0),
        "service log:\n{}",
        service.log()
    );
}
