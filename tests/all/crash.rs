//! Restart recovery: nothing acknowledged is lost, nothing stays pending,
//! nothing runs twice.
//!
//! In process (fast): the whole service (`service::start`, a scripted job
//! runner) is "crashed" by shutting its runtime down mid-job, every task
//! stopping where it is, and started again on the same state dir.
//! End to end (real Podman): `ember-ci serve` is SIGKILLed while a job runs
//! and another waits, and restarted on the same state dir.

use ember_ci_test_kit::ci_env;
use ember_ci_test_kit::demo_setup;
use ember_ci_test_kit::fake_github;
use ember_ci_test_kit::git_server::STANDIN_PASSED;
use ember_ci_test_kit::wait;

use demo_setup::DemoSetup;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ember_ci::config::Config;
use ember_ci::executor::{CancelSignal, Job, StepObserver, JOB_LABEL};
use ember_ci::github::Reporter;
use ember_ci::journal::{JobPhase, Journal};
use ember_ci::model::{
    BackendName, CancelReason, CommitSha, JobId, JobOutcome, JobRequest, PrNumber,
};
use ember_ci::scheduler::{Enqueued, JobRunner, Recovery, Scheduler, REQUEUED_DESCRIPTION};
use ember_ci::service::Parts;
use fake_github::{FakeGitHub, RecordedStatus};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(30);

/// Real jobs on two slow cores: a build, a plugin start, the demo suite.
const JOB_WAIT: Duration = Duration::from_secs(900);

/// Finishes every job at once with success, unless told to hang.
struct Runner {
    hangs: bool,
    started: AtomicUsize,
}

#[async_trait]
impl JobRunner for Runner {
    async fn run(&self, _job: &Job, _: &dyn StepObserver, cancel: CancelSignal) -> JobOutcome {
        self.started.fetch_add(1, Ordering::SeqCst);
        if self.hangs {
            cancel.cancelled().await;
            return cancel.outcome();
        }
        JobOutcome::Success
    }
}

/// One "life" of the whole service in process (`service::start`) on a
/// runtime of its own, so a crash can stop every task where it is.
struct Life {
    service: ember_ci::service::Running,
    runner: Arc<Runner>,
    /// Taken by `crash` or on drop: a runtime cannot be dropped in an
    /// async context, only shut down in the background.
    runtime: Option<tokio::runtime::Runtime>,
}

impl Life {
    async fn start(github: &FakeGitHub, state: &Path, hangs: bool) -> Life {
        let config_dir = state.join("config-dir");
        std::fs::create_dir_all(&config_dir).expect("config dir");
        let text = format!(
            "GH_TOKEN=\"{token}\"\nGH_API_URL=\"{api}\"\nGH_REPO=\"{repo}\"\n\
             GH_EMBER_SECRET=\"{}\"\nCI_DIR=\"{state}\"\n\
             DRIVER_NAME_1=demo\nDRIVER_CONFIG_1='{{}}'\nLOGS_REPO=\"\"\n",
            ci_env::TEST_SECRET,
            token = github.token(),
            api = github.url(),
            repo = github.repo(),
            state = state.display(),
        );
        std::fs::write(config_dir.join("config"), text).expect("config file");
        let config = Config::load(&config_dir).expect("the test config loads");
        let runner = Arc::new(Runner {
            hangs,
            started: AtomicUsize::new(0),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime for this life");
        let job_runner = runner.clone();
        let service = runtime
            .spawn(async move {
                let parts = Parts {
                    ui_listener: tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("binding the UI's 127.0.0.1:0"),
                    runner: job_runner,
                    reporter: Arc::new(Reporter::from_config(&config.github).expect("reporter")),
                    listener: tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("binding 127.0.0.1:0"),
                };
                ember_ci::service::start(config, parts, CancellationToken::new()).await
            })
            .await
            .expect("the start task")
            .expect("the service starts");
        Life {
            service,
            runner,
            runtime: Some(runtime),
        }
    }

    fn scheduler(&self) -> &Scheduler {
        self.service.scheduler()
    }

    fn recovery(&self) -> &Recovery {
        self.service.recovery()
    }

    /// Ends this life the way a crash would: every task stops where it is.
    fn crash(self) {
        drop(self);
    }
}

impl Drop for Life {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn request(pr: u64, sha_digit: char) -> JobRequest {
    JobRequest {
        pr: PrNumber::new(pr).expect("pr"),
        sha: CommitSha::new(&sha_digit.to_string().repeat(40)).expect("sha"),
        backend: BackendName::new("demo").expect("backend"),
    }
}

fn described(statuses: &[RecordedStatus]) -> Vec<String> {
    statuses
        .iter()
        .map(|s| format!("{}:{}", s.state, s.description.clone().unwrap_or_default()))
        .collect()
}

async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    wait::wait_until(what, WAIT, condition).await;
}

fn job_phase(state: &Path, id: &JobId) -> Option<(JobPhase, u32)> {
    Journal::open(state)
        .expect("journal")
        .job(id)
        .expect("job lookup")
}

#[tokio::test]
async fn interrupted_job_is_requeued_once_and_queued_jobs_resume_in_order() {
    let github = FakeGitHub::start().await;
    let state = tempfile::tempdir().expect("temp dir");
    let (running, waiting) = (request(1, 'a'), request(2, 'b'));

    let life = Life::start(&github, state.path(), true).await;
    let Enqueued::Queued(running_id) = life.scheduler().enqueue(running.clone()) else {
        panic!("first job not queued")
    };
    let Enqueued::Queued(waiting_id) = life.scheduler().enqueue(waiting.clone()) else {
        panic!("second job not queued")
    };
    wait_until("the first job to start", || {
        life.runner.started.load(Ordering::SeqCst) == 1
    })
    .await;
    wait_until("its running status to be posted", || {
        github.statuses_for(running.sha.as_str()).len() == 2
    })
    .await;
    life.crash();

    let life = Life::start(&github, state.path(), false).await;
    assert_eq!(
        life.recovery().clone(),
        Recovery {
            requeued: vec![running_id.clone()],
            resumed: vec![waiting_id.clone()],
            ..Recovery::default()
        }
    );
    // Still only one live job per commit and backend after the restart.
    assert_eq!(
        life.scheduler().enqueue(running.clone()),
        Enqueued::AlreadyLive(running_id.clone())
    );
    for job in [&running, &waiting] {
        let sha = job.sha.as_str().to_string();
        github
            .wait_for(
                |s| {
                    s.statuses_for(&sha)
                        .last()
                        .is_some_and(|s| s.state == "success")
                },
                WAIT,
            )
            .await
            .expect("final status");
    }
    assert_eq!(
        described(&github.statuses_for(running.sha.as_str())),
        [
            "pending:queued",
            "pending:running: build and CSI sanity",
            &format!("pending:{REQUEUED_DESCRIPTION}"),
            "pending:running: build and CSI sanity",
            "success:CSI sanity passed; logs kept on the CI host (not published)",
        ]
    );
    assert_eq!(
        described(&github.statuses_for(waiting.sha.as_str())),
        [
            "pending:queued",
            "pending:running: build and CSI sanity",
            "success:CSI sanity passed; logs kept on the CI host (not published)"
        ]
    );
    assert_eq!(
        job_phase(state.path(), &running_id),
        Some((JobPhase::Finished, 2))
    );
    assert_eq!(
        job_phase(state.path(), &waiting_id),
        Some((JobPhase::Finished, 1))
    );
    // A finished commit stays finished across the restart: no second run.
    assert_eq!(life.scheduler().enqueue(waiting), Enqueued::AlreadyFinished);
}

#[tokio::test]
async fn a_job_interrupted_twice_is_reported_as_an_error() {
    let github = FakeGitHub::start().await;
    let state = tempfile::tempdir().expect("temp dir");
    let job = request(3, 'c');
    let sha = job.sha.as_str().to_string();

    let life = Life::start(&github, state.path(), true).await;
    let Enqueued::Queued(id) = life.scheduler().enqueue(job.clone()) else {
        panic!("not queued")
    };
    wait_until("the first attempt", || {
        life.runner.started.load(Ordering::SeqCst) == 1
    })
    .await;
    life.crash();

    let life = Life::start(&github, state.path(), true).await;
    assert_eq!(life.recovery().requeued, std::slice::from_ref(&id));
    wait_until("the second attempt", || {
        life.runner.started.load(Ordering::SeqCst) == 1
    })
    .await;
    life.crash();

    let life = Life::start(&github, state.path(), true).await;
    assert_eq!(life.recovery().given_up, std::slice::from_ref(&id));
    github
        .wait_for(
            |s| {
                s.statuses_for(&sha)
                    .last()
                    .is_some_and(|s| s.state == "error")
            },
            WAIT,
        )
        .await
        .expect("error status");
    let last = github.statuses_for(&sha).pop().expect("a status");
    assert_eq!(
        last.description.as_deref(),
        Some(format!("cancelled: {}", CancelReason::InterruptedTwice).as_str())
    );
    assert_eq!(
        life.runner.started.load(Ordering::SeqCst),
        0,
        "no third attempt"
    );
    assert_eq!(job_phase(state.path(), &id), Some((JobPhase::Finished, 2)));
}

#[tokio::test]
async fn statuses_github_never_got_are_posted_after_a_restart_in_order() {
    let github = FakeGitHub::start().await;
    let state = tempfile::tempdir().expect("temp dir");
    let job = request(4, 'd');
    let sha = job.sha.as_str().to_string();
    // GitHub is down for longer than this life lasts.
    github.fail_next(1_000, 502);
    let life = Life::start(&github, state.path(), false).await;
    life.scheduler().enqueue(job.clone());
    wait_until("the job to finish", || {
        life.scheduler()
            .board()
            .jobs()
            .iter()
            .all(|j| j.outcome.is_some())
    })
    .await;
    life.crash();
    assert!(github.statuses_for(&sha).is_empty());
    assert_eq!(
        Journal::open(state.path())
            .expect("journal")
            .unsent_statuses()
            .expect("read")
            .len(),
        3
    );

    drop(github);
    let github = FakeGitHub::start().await;
    let _life = Life::start(&github, state.path(), false).await;
    github
        .wait_for(|s| s.statuses_for(&sha).len() == 3, WAIT)
        .await
        .expect("statuses after the restart");
    assert_eq!(
        described(&github.statuses_for(&sha)),
        [
            "pending:queued",
            "pending:running: build and CSI sanity",
            "success:CSI sanity passed; logs kept on the CI host (not published)"
        ]
    );
    let journal = Journal::open(state.path()).expect("journal");
    wait_until("the outbox to empty", || {
        journal.unsent_statuses().expect("read").is_empty()
    })
    .await;
}

// ---- end to end: `ember-ci serve` on real Podman ----

/// Child processes of `pid` (the Podman API service serve starts), so the
/// test can end what a SIGKILLed serve leaves behind.
fn children_of(pid: u32) -> Vec<u32> {
    let output = std::process::Command::new("pgrep")
        .args(["-P", &pid.to_string()])
        .output()
        .expect("running pgrep");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect()
}

/// The id of the job running `sha` (statuses carry no local link): its
/// log folder, made when the job starts.
fn running_job_id(state: &Path, sha: &str) -> String {
    wait_blocking("the job's log folder", WAIT, || {
        !ci_env::job_ids_for(state, sha).is_empty()
    });
    ci_env::job_ids_for(state, sha).remove(0)
}

fn finals(statuses: &[RecordedStatus]) -> Vec<String> {
    described(statuses)
        .into_iter()
        .filter(|s| !s.starts_with("pending:"))
        .collect()
}

async fn wait_for_podman(what: &str, deadline: Duration, condition: impl Fn() -> bool) {
    wait::wait_until_every(what, deadline, Duration::from_millis(200), condition).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_service_resumes_its_jobs_and_posts_each_final_status_once() {
    let _podman = ember_ci_test_kit::podman_lock().await;
    // One worker, and a pre-run long enough to be killed in the middle of.
    let DemoSetup {
        dir,
        repo,
        github,
        state,
        config,
        ..
    } = DemoSetup::new("NUM_WORKERS=1\nPRE_RUN_1='echo \"pre-run: slow array\"; sleep 8'").await;
    let first_log = dir.path().join("first");
    std::fs::create_dir_all(&first_log).expect("log dir");
    let mut service = ci_env::Service::start(&config, &first_log);
    for (fixture, sha) in [
        ("test-ok.json", &repo.ok_sha),
        ("test-broken.json", &repo.broken_sha),
    ] {
        let delivery = ci_env::delivery_for(fixture, sha, dir.path());
        let (code, reply) = ci_env::send(&service.hook_url(), &delivery, ci_env::TEST_SECRET);
        assert_eq!(code, 0, "delivery refused: {reply}");
    }

    // The first job is mid-run (its sandbox exists); the second waits.
    let ok_sha = repo.ok_sha.clone();
    github
        .wait_for(|s| s.statuses_for(&ok_sha).len() >= 2, JOB_WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\nserve log:\n{}", service.log()));
    let running_job = running_job_id(&state, &ok_sha);
    let label = format!("{JOB_LABEL}={running_job}");
    wait_for_podman("the job's sandbox", JOB_WAIT, || {
        !ci_env::containers_with_label(&label).is_empty()
    })
    .await;
    let leftovers = children_of(service.pid());
    service.kill();
    // Only the API service serve started; a crash leaves it behind.
    for pid in leftovers {
        let _ = std::process::Command::new("kill")
            .arg(pid.to_string())
            .status();
    }
    assert!(
        !ci_env::containers_with_label(&label).is_empty(),
        "the killed service's sandbox should outlive it (else the sweep below proves nothing)"
    );

    let second_log = dir.path().join("second");
    std::fs::create_dir_all(&second_log).expect("log dir");
    let mut service = ci_env::Service::start(&config, &second_log);
    for (sha, state) in [(&repo.ok_sha, "success"), (&repo.broken_sha, "failure")] {
        github
            .wait_for_last_state(sha, state, JOB_WAIT)
            .await
            .unwrap_or_else(|e| panic!("{e}\nserve log:\n{}", service.log()));
    }
    assert_eq!(
        service.stop(Duration::from_secs(120)),
        Some(0),
        "serve log:\n{}",
        service.log()
    );

    let ok = github.statuses_for(&repo.ok_sha);
    let broken = github.statuses_for(&repo.broken_sha);
    assert_eq!(
        finals(&ok),
        [format!("success:{STANDIN_PASSED}")],
        "{:?}",
        described(&ok)
    );
    assert_eq!(finals(&broken).len(), 1, "{:?}", described(&broken));
    assert!(
        finals(&broken)[0].starts_with("failure:"),
        "{:?}",
        described(&broken)
    );
    assert!(
        described(&ok).contains(&format!("pending:{REQUEUED_DESCRIPTION}")),
        "{:?}",
        described(&ok)
    );
    assert!(second_log.join("serve.log").exists());
    assert!(
        service.log().contains("removed a leftover job container"),
        "serve log:\n{}",
        service.log()
    );
    for sha in [&repo.ok_sha, &repo.broken_sha] {
        for job in ci_env::job_ids_for(&state, sha) {
            let label = format!("{JOB_LABEL}={job}");
            assert_eq!(ci_env::containers_with_label(&label), Vec::<String>::new());
        }
    }
    let journal = Journal::open(&state).expect("journal");
    assert_eq!(journal.live_jobs().expect("live jobs"), []);
    assert_eq!(journal.undispatched_deliveries().expect("deliveries"), []);
    assert_eq!(journal.unsent_statuses().expect("statuses"), []);
}

/// Polls `condition` every 200 ms until it holds or `limit` passes.
fn wait_blocking(what: &str, limit: Duration, condition: impl Fn() -> bool) {
    wait::wait_until_blocking(what, limit, Duration::from_millis(200), condition);
}

/// The driver password of the demo config (examples/demo/config).
const DEMO_ARRAY_PASSWORD: &str = "demo-array-password";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_job_answers_503_lets_the_job_finish_and_exits_0_without_logging_secrets() {
    let _podman = ember_ci_test_kit::podman_lock().await;
    let DemoSetup {
        dir,
        repo,
        github,
        state,
        config,
        ..
    } = DemoSetup::new(
        "NUM_WORKERS=1\nSHUTDOWN_GRACE=600\nPRE_RUN_1='echo \"pre-run: slow array\"; sleep 8'",
    )
    .await;
    // Every level, every crate: a secret must not show up even at trace.
    let mut service = ci_env::Service::start_logging(&config, dir.path(), "trace");
    let delivery = ci_env::delivery_for("test-ok.json", &repo.ok_sha, dir.path());
    let (code, reply) = ci_env::send(&service.hook_url(), &delivery, ci_env::TEST_SECRET);
    assert_eq!(code, 0, "delivery refused: {reply}");

    let ok_sha = repo.ok_sha.clone();
    github
        .wait_for(|s| s.statuses_for(&ok_sha).len() >= 2, JOB_WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let job = running_job_id(&state, &ok_sha);
    let label = format!("{JOB_LABEL}={job}");
    wait_for_podman("the job's sandbox", JOB_WAIT, || {
        !ci_env::containers_with_label(&label).is_empty()
    })
    .await;

    service.terminate();
    wait_blocking("serve to start draining", WAIT, || {
        service.log().contains("shutting down: answering 503")
    });
    let late = ci_env::delivery_for("test-broken.json", &repo.broken_sha, dir.path());
    let (code, reply) = ci_env::send(&service.hook_url(), &late, ci_env::TEST_SECRET);
    assert_eq!(
        (code, reply.trim()),
        (1, "503 not accepting deliveries: shutting down")
    );
    let exit = service.wait_exit(JOB_WAIT);
    let log = service.log();
    assert_eq!(exit, Some(0), "serve did not exit cleanly");

    let statuses = github.statuses_for(&repo.ok_sha);
    assert_eq!(
        described(&statuses),
        [
            "pending:queued",
            "pending:running: build and CSI sanity",
            format!("success:{STANDIN_PASSED}").as_str()
        ]
    );
    assert!(
        github.statuses_for(&repo.broken_sha).is_empty(),
        "the refused delivery ran"
    );
    assert_eq!(ci_env::containers_with_label(&label), Vec::<String>::new());
    let journal = Journal::open(&state).expect("journal");
    assert_eq!(journal.live_jobs().expect("live jobs"), []);
    assert_eq!(journal.unsent_statuses().expect("statuses"), []);

    // write_config leaves the config file world-readable (umask 022).
    let warning = format!(
        "secrets at rest: {} (config: tokens, passwords) is readable by every user",
        config.join("config").display()
    );
    assert!(
        log.contains(&warning),
        "no warning about the config file's mode"
    );
    assert!(log.contains("TRACE"), "the log is not at trace level");
    for secret in [ci_env::TEST_TOKEN, ci_env::TEST_SECRET, DEMO_ARRAY_PASSWORD] {
        let lines: Vec<&str> = log.lines().filter(|l| l.contains(secret)).take(3).collect();
        assert!(
            lines.is_empty(),
            "{secret} appears in serve's log:\n{}",
            lines.join("\n")
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statuses_arrive_in_order_after_github_fails_and_rate_limits() {
    let _podman = ember_ci_test_kit::podman_lock().await;
    let DemoSetup {
        dir,
        repo,
        github,
        config,
        ..
    } = DemoSetup::new("NUM_WORKERS=1").await;
    // GitHub breaks before the first status: a rate limit, then 502s.
    github.rate_limit_next(1, 2);
    github.fail_next(3, 502);
    let mut service = ci_env::Service::start(&config, dir.path());
    for (fixture, sha) in [
        ("test-ok.json", &repo.ok_sha),
        ("test-broken.json", &repo.broken_sha),
    ] {
        let delivery = ci_env::delivery_for(fixture, sha, dir.path());
        let (code, reply) = ci_env::send(&service.hook_url(), &delivery, ci_env::TEST_SECRET);
        assert_eq!(code, 0, "delivery refused: {reply}");
    }
    for (sha, state) in [(&repo.ok_sha, "success"), (&repo.broken_sha, "failure")] {
        github
            .wait_for_last_state(sha, state, JOB_WAIT)
            .await
            .unwrap_or_else(|e| panic!("{e}\nserve log:\n{}", service.log()));
    }
    assert_eq!(service.stop(Duration::from_secs(120)), Some(0));

    let refused: Vec<u16> = github
        .requests()
        .iter()
        .map(|r| r.status)
        .filter(|s| *s >= 400)
        .collect();
    assert_eq!(refused, [403, 502, 502, 502]);
    assert_eq!(
        described(&github.statuses_for(&repo.ok_sha)),
        [
            "pending:queued",
            "pending:running: build and CSI sanity",
            format!("success:{STANDIN_PASSED}").as_str()
        ]
    );
    let broken = described(&github.statuses_for(&repo.broken_sha));
    assert_eq!(
        broken[..2],
        ["pending:queued", "pending:running: build and CSI sanity"]
    );
    assert_eq!(broken.len(), 3, "{broken:?}");
    assert!(broken[2].starts_with("failure:"), "{broken:?}");
}
