//! The per-backend history: each job's spec results kept in the journal,
//! shown as the web UI's history page, `/api/backends/<name>/specs`,
//! `/metrics` and a static `history.html` on the logs branch. The whole
//! service in process with a runner that reports scripted suite results,
//! the fake GitHub, and the git server standing in for the logs repository.

use ember_ci_test_kit::fake_github;
use ember_ci_test_kit::git_server::LogsRepo;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ember_ci::config::Config;
use ember_ci::executor::{CancelSignal, Job, StepObserver};
use ember_ci::github::Reporter;
use ember_ci::model::{BackendName, CommitSha, JobOutcome, JobRequest, PrNumber, Step};
use ember_ci::sanity::{SpecFailure, SpecState, SuiteResults};
use ember_ci::scheduler::{Enqueued, JobRunner};
use ember_ci::service::Parts;
use fake_github::FakeGitHub;
use serde_json::Value;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);
const CREATE: &str = "CreateVolume should work";
const DELETE: &str = "DeleteVolume should work";

/// Reports the next scripted list of failing specs for each job (none:
/// all 10 specs passed).
struct Scripted(Mutex<Vec<Vec<&'static str>>>);

#[async_trait]
impl JobRunner for Scripted {
    async fn run(&self, _: &Job, observer: &dyn StepObserver, _: CancelSignal) -> JobOutcome {
        let failing = self.0.lock().await.remove(0);
        let results = SuiteResults {
            passed: 10 - failing.len(),
            failed: failing.len(),
            skipped: 2,
            failures: failing
                .iter()
                .map(|spec| SpecFailure {
                    name: format!("[It] Node Service [Node Server] {spec}"),
                    state: SpecState::Failed,
                    message: "expected success".into(),
                })
                .collect(),
        };
        observer.suite_results(&results);
        if failing.is_empty() {
            JobOutcome::Success
        } else {
            JobOutcome::Failure {
                step: Step::Sanity,
                reason: format!("{} failed", failing.join(", ")),
            }
        }
    }
}

fn request(pr: u64, sha: char) -> JobRequest {
    JobRequest {
        pr: PrNumber::new(pr).expect("pr"),
        sha: CommitSha::new(&sha.to_string().repeat(40)).expect("sha"),
        backend: BackendName::new("alpha").expect("backend"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_and_flaky_specs_and_the_pass_rate_are_shown_served_and_published() {
    let github = FakeGitHub::start().await;
    let logs = LogsRepo::create();
    let dir = tempfile::tempdir().expect("temp dir");
    let text = format!(
        "GH_TOKEN=\"{token}\"\nGH_API_URL=\"{api}\"\nGH_REPO=\"{repo}\"\nGH_EMBER_SECRET=s3cret\n\
         CI_DIR=\"{state}\"\nDRIVER_NAME_1=alpha\nDRIVER_CONFIG_1='{{}}'\n{keys}",
        token = github.token(),
        api = github.url(),
        repo = github.repo(),
        state = dir.path().join("state").display(),
        keys = logs.config_keys(),
    );
    std::fs::write(dir.path().join("config"), text).expect("config file");
    let config = Config::load_with_env(dir.path(), &HashMap::new())
        .unwrap_or_else(|errors| panic!("test config is invalid:\n{errors}"));
    // a: CREATE fails, then passes on a re-run (flaky); b: both fail.
    let runner = Scripted(Mutex::new(vec![vec![CREATE], vec![], vec![CREATE, DELETE]]));
    let parts = Parts {
        ui_listener: tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the UI's 127.0.0.1:0"),
        runner: Arc::new(runner),
        reporter: Arc::new(Reporter::from_config(&config.github).expect("reporter")),
        listener: tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding 127.0.0.1:0"),
    };
    let shutdown = CancellationToken::new();
    let service = ember_ci::service::start(config, parts, shutdown.clone())
        .await
        .expect("the service starts");
    let ui = format!("http://{}", service.ui_address());
    let scheduler = service.scheduler().clone();
    let finished = |sha: &str, count: usize| {
        let sha = sha.to_string();
        move |state: &fake_github::FakeState| {
            state
                .statuses_for(&sha)
                .iter()
                .filter(|s| s.state != "pending")
                .count()
                >= count
        }
    };
    for (rerun, pr, sha, runs) in [(false, 1, 'a', 1), (true, 1, 'a', 2), (false, 2, 'b', 1)] {
        let job = if rerun {
            scheduler.enqueue_rerun(request(pr, sha))
        } else {
            scheduler.enqueue(request(pr, sha))
        };
        assert!(matches!(job, Enqueued::Queued(_)), "{job:?}");
        github
            .wait_for(finished(&sha.to_string().repeat(40), runs), WAIT)
            .await
            .expect("the job finishes");
    }

    let specs: Value = reqwest::get(format!("{ui}/api/backends/alpha/specs"))
        .await
        .expect("GET specs")
        .json()
        .await
        .expect("JSON");
    assert_eq!(specs["jobs"], 3, "{specs}");
    assert_eq!(specs["successes"], 1, "{specs}");
    let failing: Vec<(String, u64, u64)> = specs["failing"]
        .as_array()
        .expect("failing")
        .iter()
        .map(|f| {
            (
                f["spec"].as_str().unwrap_or_default().to_string(),
                f["failures"].as_u64().unwrap_or_default(),
                f["passes"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        failing,
        [(CREATE.to_string(), 2, 1), (DELETE.to_string(), 1, 2)],
        "{specs}"
    );
    assert_eq!(specs["flaky"][0]["spec"], CREATE, "{specs}");
    assert_eq!(specs["flaky"][0]["sha"], "a".repeat(40), "{specs}");
    assert_eq!(specs["flaky"].as_array().map(Vec::len), Some(1), "{specs}");
    assert_eq!(specs["recent"][0]["specs"]["failed"], 2, "{specs}");

    let page = reqwest::get(format!("{ui}/backends/alpha/history"))
        .await
        .expect("GET history")
        .text()
        .await
        .expect("text");
    for expected in ["33%", "(1 of 3 jobs passed)", CREATE, DELETE, "aaaaaaa"] {
        assert!(
            page.contains(expected),
            "history page lacks {expected:?}:\n{page}"
        );
    }
    let missing = reqwest::get(format!("{ui}/api/backends/nope/specs"))
        .await
        .expect("GET");
    assert_eq!(missing.status(), 404);

    let metrics = reqwest::get(format!("{ui}/metrics"))
        .await
        .expect("GET metrics")
        .text()
        .await
        .expect("text");
    for line in [
        "ember_ci_last_job_specs{backend=\"alpha\",result=\"failed\"} 2",
        "ember_ci_last_job_specs{backend=\"alpha\",result=\"passed\"} 8",
        "ember_ci_failing_specs{backend=\"alpha\"} 2",
        "ember_ci_flaky_specs{backend=\"alpha\"} 1",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line:?} in:\n{metrics}"
        );
    }
    shutdown.cancel();
    service.stopped().await.expect("the service stops");

    // The same summary with no server: history.html beside the job folders.
    let published = logs.file("alpha", "history.html");
    for expected in ["33%", CREATE, DELETE, "Flaky specs"] {
        assert!(
            published.contains(expected),
            "history.html lacks {expected:?}:\n{published}"
        );
    }
    let folders = logs.folders("alpha");
    assert_eq!(folders.len(), 3, "{folders:?}");
    for folder in &folders {
        assert!(
            published.contains(&format!("href=\"{folder}/index.html\"")),
            "history.html does not link {folder}:\n{published}"
        );
    }
}
