//! Where logs go with a config carried over from the old CI (GH_TOKEN set,
//! no LOGS_* key): the Ember-CSI team's logs repository, one branch per
//! backend, one folder `<head sha>-<start epoch>` per job, Details links
//! under the old public URL. The whole service in process with a runner
//! that finishes at once, the fake GitHub for statuses, and a real git
//! server (`git daemon`) standing in for the logs repository through
//! EMBER_LOGS_REPO.

use ember_ci_test_kit::fake_github;
use ember_ci_test_kit::git_server::{LogsRepo, LOGS_PUBLIC_URL};

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ember_ci::config::Config;
use ember_ci::executor::{CancelSignal, Job, StepObserver};
use ember_ci::github::Reporter;
use ember_ci::model::{BackendName, CommitSha, JobId, JobOutcome, JobRequest, PrNumber};
use ember_ci::scheduler::{Enqueued, JobRunner};
use ember_ci::service::Parts;
use fake_github::{FakeGitHub, RecordedStatus};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);
const SHA: &str = "1234567890abcdef1234567890abcdef12345678";

/// Every job passes at once.
struct Passes;

#[async_trait]
impl JobRunner for Passes {
    async fn run(&self, _: &Job, _: &dyn StepObserver, _: CancelSignal) -> JobOutcome {
        JobOutcome::Success
    }
}

/// Runs one job per backend (`alpha`, `beta`) on [`SHA`] through the
/// service configured with `logs_keys`; returns the config, each job's id
/// and the statuses of each backend.
async fn run_jobs(logs_keys: &str) -> (Config, Vec<(String, JobId, Vec<RecordedStatus>)>) {
    let github = FakeGitHub::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let text = format!(
        "GH_TOKEN=\"{token}\"\nGH_API_URL=\"{api}\"\nGH_REPO=\"{repo}\"\nGH_EMBER_SECRET=s3cret\n\
         CI_DIR=\"{state}\"\nNUM_DRIVERS=2\nDRIVER_NAME_1=alpha\nDRIVER_CONFIG_1='{{}}'\n\
         DRIVER_NAME_2=beta\nDRIVER_CONFIG_2='{{}}'\n{logs_keys}",
        token = github.token(),
        api = github.url(),
        repo = github.repo(),
        state = dir.path().join("state").display(),
    );
    std::fs::write(dir.path().join("config"), text).expect("config file");
    let config = Config::load_with_env(dir.path(), &HashMap::new())
        .unwrap_or_else(|errors| panic!("test config is invalid:\n{errors}"));
    let parts = Parts {
        ui_listener: tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding the UI's 127.0.0.1:0"),
        runner: Arc::new(Passes),
        reporter: Arc::new(Reporter::from_config(&config.github).expect("reporter")),
        listener: tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("binding 127.0.0.1:0"),
    };
    let shutdown = CancellationToken::new();
    let service = ember_ci::service::start(config.clone(), parts, shutdown.clone())
        .await
        .expect("the service starts");
    let mut ids = Vec::new();
    for backend in ["alpha", "beta"] {
        let request = JobRequest {
            pr: PrNumber::new(129).expect("pr"),
            sha: CommitSha::new(SHA).expect("sha"),
            backend: BackendName::new(backend).expect("backend"),
        };
        match service.scheduler().enqueue(request) {
            Enqueued::Queued(id) => ids.push((backend.to_string(), id)),
            other => panic!("{backend}: not queued: {other:?}"),
        }
    }
    github
        .wait_for(
            |state| {
                let finals = state
                    .statuses_for(SHA)
                    .iter()
                    .filter(|s| s.state == "success")
                    .count();
                finals == 2
            },
            WAIT,
        )
        .await
        .expect("both jobs end in success");
    shutdown.cancel();
    service.stopped().await.expect("the service stops");
    let jobs = ids
        .into_iter()
        .map(|(backend, id)| {
            let context = format!("3rdparty/{backend}");
            let statuses = github
                .statuses_for(SHA)
                .into_iter()
                .filter(|s| s.context == context)
                .collect();
            (backend, id, statuses)
        })
        .collect();
    (config, jobs)
}

/// The old CI's folder name: the head SHA and the job's start (its id's
/// UTC stamp) in seconds since the epoch.
fn old_ci_folder(id: &JobId) -> String {
    let format = time::macros::format_description!("[year][month][day][hour][minute][second]");
    let start = time::PrimitiveDateTime::parse(&id.as_str()[..14], &format)
        .expect("the id starts with its UTC stamp")
        .assume_utc();
    format!("{SHA}-{}", start.unix_timestamp())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carried_over_config_pushes_logs_to_the_old_ci_branch_of_each_backend() {
    let logs = LogsRepo::create();
    let (config, jobs) = run_jobs(&logs.config_keys()).await;

    let summary = ember_ci::config::summary(&config);
    assert!(
        summary.contains(&format!(
            "pushed to {} one branch per backend, published at {LOGS_PUBLIC_URL} \
             (the old CI's place: GH_TOKEN is set and no LOGS_* key)",
            logs.url
        )),
        "{summary}"
    );
    for (backend, id, statuses) in &jobs {
        let folder = old_ci_folder(id);
        assert_eq!(
            logs.folders(backend),
            vec![folder.clone()],
            "branch {backend}"
        );
        let index = logs.file(backend, &format!("{folder}/index.html"));
        assert!(index.contains(id.as_str()), "{backend}: {index}");
        let (last, pending) = statuses.split_last().expect("statuses");
        assert_eq!(
            last.target_url.as_deref(),
            Some(format!("{LOGS_PUBLIC_URL}/{backend}/{folder}/index.html").as_str()),
            "{statuses:?}"
        );
        assert_eq!(last.description.as_deref(), Some("CSI sanity passed"));
        // Before the logs are out there is nothing a reviewer could open.
        assert!(
            pending.iter().all(|s| s.target_url.is_none()),
            "{statuses:?}"
        );
    }
    // No branch besides the backends' (the repository holds other CIs').
    let branches = logs.git(&["for-each-ref", "--format=%(refname:short)"]);
    assert_eq!(branches.lines().collect::<Vec<_>>(), ["alpha", "beta"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_explicit_logs_key_wins_over_the_old_ci_place() {
    let logs = LogsRepo::create();
    let (config, jobs) = run_jobs(&format!(
        "{}LOGS_REPO=\"{}\"\nLOGS_BRANCH=ci-logs\n",
        logs.config_keys(),
        logs.url
    ))
    .await;
    assert!(!config.logs.branch_per_backend);
    for (backend, id, statuses) in &jobs {
        let folder = format!("{backend}/129-{}-{id}", &SHA[..7]);
        assert!(
            logs.git(&["ls-tree", "-r", "--name-only", "ci-logs"])
                .contains(&format!("{folder}/index.html")),
            "{folder}"
        );
        // No LOGS_URL: published, with no public page to link.
        assert_eq!(statuses.last().and_then(|s| s.target_url.clone()), None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_logs_repository_the_status_says_logs_are_local_and_links_nothing() {
    let (config, jobs) = run_jobs("EMBER_LOGS_REPO=\"\"\n").await;
    assert!(
        ember_ci::config::summary(&config)
            .contains("kept locally, not pushed (EMBER_LOGS_REPO is empty)"),
        "{}",
        ember_ci::config::summary(&config)
    );
    for (_, _, statuses) in &jobs {
        assert!(
            statuses.iter().all(|s| s.target_url.is_none()),
            "{statuses:?}"
        );
        assert_eq!(
            statuses.last().and_then(|s| s.description.as_deref()),
            Some("CSI sanity passed; logs kept on the CI host (not published)")
        );
    }
}
