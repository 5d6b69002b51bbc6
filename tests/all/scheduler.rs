//! The scheduler through its public API, with statuses posted to the fake
//! GitHub over HTTP and runners that finish, fail or hang on command (the
//! executor itself is tested on real Podman in tests/e2e.rs).

use ember_ci_test_kit::fake_github;
use ember_ci_test_kit::wait;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use ember_ci::config::{HostName, Secret};
use ember_ci::executor::{CancelSignal, Job, StepObserver, StepResult};
use ember_ci::github::{GitHub, Reporter, StatusOutbox};
use ember_ci::journal::Journal;
use ember_ci::logs::{LogStore, Masker};
use ember_ci::model::{
    BackendName, CancelReason, CommitSha, JobId, JobOutcome, JobRequest, PrNumber, RepoName, Step,
};
use ember_ci::scheduler::{Enqueued, JobRunner, Placement, Scheduler};
use fake_github::FakeGitHub;
use tokio::sync::Semaphore;

const WAIT: Duration = Duration::from_secs(30);

/// Holds every job until the test releases it; records peak concurrency.
struct GatedRunner {
    gate: Arc<Semaphore>,
    running: AtomicUsize,
    peak: AtomicUsize,
    started: AtomicUsize,
}

impl GatedRunner {
    fn new() -> Self {
        Self {
            gate: Arc::new(Semaphore::new(0)),
            running: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            started: AtomicUsize::new(0),
        }
    }
}

#[async_trait]
impl JobRunner for GatedRunner {
    async fn run(
        &self,
        _job: &Job,
        observer: &dyn StepObserver,
        cancel: CancelSignal,
    ) -> JobOutcome {
        self.started.fetch_add(1, Ordering::SeqCst);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        observer.step_started(Step::Sanity);
        observer.output(Step::Sanity, b"sanity: secret-value-1234 printed\n");
        let outcome = tokio::select! {
            permit = self.gate.acquire() => {
                permit.expect("gate open").forget();
                JobOutcome::Success
            }
            _ = cancel.cancelled() => cancel.outcome(),
        };
        observer.step_finished(
            Step::Sanity,
            &StepResult {
                exit_code: Some(0),
                duration: Duration::from_millis(5),
                note: None,
            },
        );
        self.running.fetch_sub(1, Ordering::SeqCst);
        outcome
    }
}

struct Harness {
    github: FakeGitHub,
    scheduler: Scheduler,
    runner: Arc<GatedRunner>,
    outbox: StatusOutbox,
    _dir: tempfile::TempDir,
}

async fn harness(workers: usize) -> Harness {
    let runner = Arc::new(GatedRunner::new());
    let (github, scheduler, outbox, dir) = start_scheduler(runner.clone(), workers.into()).await;
    Harness {
        github,
        scheduler,
        runner,
        outbox,
        _dir: dir,
    }
}

/// A scheduler posting to a fake GitHub, its jobs run by `runner`.
async fn start_scheduler(
    runner: Arc<dyn JobRunner>,
    placement: Placement,
) -> (FakeGitHub, Scheduler, StatusOutbox, tempfile::TempDir) {
    let github = FakeGitHub::start().await;
    let client = GitHub::new(
        &github.url(),
        &Secret::new(github.token()),
        RepoName::new(&github.repo()).unwrap(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let journal = Journal::open(dir.path()).expect("journal");
    let (outbox, _task, _) =
        StatusOutbox::start(Arc::new(Reporter::GitHub(client)), journal.clone()).expect("outbox");
    let logs = LogStore::new(
        dir.path().join("jobs"),
        Some("http://ci.example/jobs".into()),
        Masker::new(["secret-value-1234"]),
    );
    let (scheduler, _task, _) =
        Scheduler::start(runner, outbox.clone(), logs, placement, journal).expect("scheduler");
    (github, scheduler, outbox, dir)
}

impl Harness {
    /// Enqueues `job`, which must be queued as a new job.
    fn enqueue_new(&self, job: JobRequest) -> JobId {
        match self.scheduler.enqueue(job) {
            Enqueued::Queued(id) => id,
            other => panic!("not queued: {other:?}"),
        }
    }

    /// Waits until the runner has started `count` jobs in all.
    async fn wait_for_started(&self, count: usize) {
        wait_until(&format!("{count} jobs to start"), || {
            self.runner.started.load(Ordering::SeqCst) == count
        })
        .await;
    }

    /// Waits until the runner has started `count` jobs in all and none runs.
    async fn wait_for_finished(&self, count: usize) {
        wait_until(&format!("{count} jobs to finish"), || {
            self.runner.started.load(Ordering::SeqCst) == count
                && self.runner.running.load(Ordering::SeqCst) == 0
        })
        .await;
    }

    /// Waits until GitHub holds `count` statuses for `job`'s commit.
    async fn wait_for_statuses(&self, job: &JobRequest, count: usize, timeout: Duration) {
        let sha = job.sha.as_str();
        self.github
            .wait_for(|s| s.statuses_for(sha).len() == count, timeout)
            .await
            .unwrap();
    }

    /// The text of `file` in job `id`'s log dir.
    fn job_log_file(&self, id: &JobId, file: &str) -> String {
        let path = self._dir.path().join("jobs").join(id.as_str()).join(file);
        std::fs::read_to_string(path).unwrap()
    }
}

fn request(pr: u64, sha_digit: char, backend: &str) -> JobRequest {
    JobRequest {
        pr: PrNumber::new(pr).unwrap(),
        sha: CommitSha::new(&sha_digit.to_string().repeat(40)).unwrap(),
        backend: BackendName::new(backend).unwrap(),
    }
}

async fn wait_until(what: &str, condition: impl Fn() -> bool) {
    wait::wait_until(what, WAIT, condition).await;
}

fn states(github: &FakeGitHub, sha: &JobRequest) -> Vec<String> {
    github
        .statuses_for(sha.sha.as_str())
        .iter()
        .map(|s| format!("{}:{}", s.state, s.description.clone().unwrap_or_default()))
        .collect()
}

#[tokio::test]
async fn at_most_num_workers_jobs_run_at_once() {
    let h = harness(2).await;
    for (i, digit) in ['a', 'b', 'c', 'd'].into_iter().enumerate() {
        assert!(matches!(
            h.scheduler.enqueue(request(10 + i as u64, digit, "lvm")),
            Enqueued::Queued(_)
        ));
    }
    h.wait_for_started(2).await;
    // The other two stay queued while both slots are busy: the runner holds
    // both, so a third start can only be a scheduler bug, and `peak` below
    // would show it whenever it happened (no sleep needed to catch it).
    assert_eq!(h.runner.started.load(Ordering::SeqCst), 2);
    h.runner.gate.add_permits(4);
    h.wait_for_finished(4).await;
    assert_eq!(h.runner.peak.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn each_job_reports_queued_running_and_final_status_in_order() {
    let h = harness(1).await;
    let job = request(129, 'e', "lvm");
    let id = h.enqueue_new(job.clone());
    h.runner.gate.add_permits(1);
    h.wait_for_statuses(&job, 3, WAIT).await;
    assert_eq!(
        states(&h.github, &job),
        [
            "pending:queued",
            "pending:running: build and CSI sanity",
            "success:CSI sanity passed; logs kept on the CI host (not published)"
        ]
    );
    let statuses = h.github.statuses_for(job.sha.as_str());
    assert!(statuses.iter().all(|s| s.context == "3rdparty/lvm"));
    // Logs kept on the host: no link a reviewer could not open.
    assert!(
        statuses.iter().all(|s| s.target_url.is_none()),
        "{statuses:?}"
    );
    assert!(h.job_log_file(&id, "job.json").contains(id.as_str()));
}

#[tokio::test]
async fn job_output_is_logged_with_secrets_masked() {
    let h = harness(1).await;
    let id = h.enqueue_new(request(5, 'f', "lvm"));
    h.runner.gate.add_permits(1);
    wait_until("the job to finish", || {
        h.scheduler
            .board()
            .job(&id)
            .is_some_and(|j| j.outcome.is_some())
    })
    .await;
    let log = h.job_log_file(&id, "01-sanity.txt");
    assert!(log.contains("sanity: *** printed"), "{log}");
    assert!(!log.contains("secret-value-1234"));
    let summary = h.job_log_file(&id, "job.json");
    assert!(summary.contains("\"result\": \"success\""), "{summary}");
}

#[tokio::test]
async fn same_commit_and_backend_is_not_run_twice_unless_rechecked() {
    let h = harness(1).await;
    let job = request(7, '1', "lvm");
    let first = h.enqueue_new(job.clone());
    assert_eq!(
        h.scheduler.enqueue(job.clone()),
        Enqueued::AlreadyLive(first.clone())
    );
    // Another backend on the same commit is a different job.
    assert!(matches!(
        h.scheduler.enqueue(request(7, '1', "ceph")),
        Enqueued::Queued(_)
    ));
    h.runner.gate.add_permits(2);
    h.wait_for_finished(2).await;
    wait_until("the board to show both finished", || {
        h.scheduler
            .board()
            .jobs()
            .iter()
            .all(|j| j.outcome.is_some())
    })
    .await;
    assert_eq!(h.scheduler.enqueue(job.clone()), Enqueued::AlreadyFinished);
    assert!(matches!(
        h.scheduler.enqueue_rerun(job),
        Enqueued::Queued(_)
    ));
}

#[tokio::test]
async fn superseded_jobs_are_cancelled_and_reported_as_error() {
    let h = harness(1).await;
    let running = request(42, '2', "lvm");
    let queued = request(42, '2', "ceph");
    let newer = request(42, '3', "lvm");
    h.scheduler.enqueue(running.clone());
    h.scheduler.enqueue(queued.clone());
    h.wait_for_started(1).await;
    h.scheduler.enqueue(newer.clone());
    let cancelled = h.scheduler.cancel_pull_request(
        running.pr,
        Some(&newer.sha),
        CancelReason::Superseded {
            by: newer.sha.clone(),
        },
    );
    assert_eq!(cancelled, 2);
    let old_sha = running.sha.as_str().to_string();
    h.github
        .wait_for(
            |s| {
                s.statuses_for(&old_sha)
                    .iter()
                    .filter(|st| st.state == "error")
                    .count()
                    == 2
            },
            WAIT,
        )
        .await
        .unwrap();
    for status in h
        .github
        .statuses_for(&old_sha)
        .iter()
        .filter(|s| s.state == "error")
    {
        // The running job's log stays on the host and says so; the
        // queued one never had a log.
        assert!(
            status
                .description
                .as_deref()
                .is_some_and(|d| d.starts_with("cancelled: superseded by 3333333")),
            "{status:?}"
        );
    }
    // The newer commit still runs.
    h.runner.gate.add_permits(1);
    let new_sha = newer.sha.as_str().to_string();
    h.github
        .wait_for(
            |s| {
                s.statuses_for(&new_sha)
                    .iter()
                    .any(|st| st.state == "success")
            },
            WAIT,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn statuses_survive_a_github_outage_in_order() {
    let h = harness(1).await;
    h.github.fail_next(3, 502);
    let job = request(9, '4', "lvm");
    h.scheduler.enqueue(job.clone());
    h.runner.gate.add_permits(1);
    h.wait_for_statuses(&job, 3, Duration::from_secs(60)).await;
    assert_eq!(
        states(&h.github, &job),
        [
            "pending:queued",
            "pending:running: build and CSI sanity",
            "success:CSI sanity passed; logs kept on the CI host (not published)"
        ]
    );
    assert_eq!(h.outbox.flush(WAIT).await, 0);
}

#[tokio::test]
async fn shutdown_cancels_running_jobs_after_the_grace_and_ends_queued_ones() {
    let h = harness(1).await;
    let running = request(11, '5', "lvm");
    let waiting = request(12, '6', "lvm");
    h.scheduler.enqueue(running.clone());
    h.scheduler.enqueue(waiting.clone());
    h.wait_for_started(1).await;
    h.scheduler.shutdown(Duration::from_millis(200)).await;
    assert_eq!(
        h.scheduler.enqueue(request(13, '7', "lvm")),
        Enqueued::Refused
    );
    assert_eq!(h.outbox.flush(WAIT).await, 0);
    let last = |r: &JobRequest| {
        h.github
            .statuses_for(r.sha.as_str())
            .last()
            .map(|s| (s.state.clone(), s.description.clone().unwrap_or_default()))
    };
    assert_eq!(
        last(&running),
        Some((
            "error".into(),
            "cancelled: ember-ci is shutting down; logs kept on the CI host (not published)".into()
        ))
    );
    let (state, description) = last(&waiting).unwrap();
    assert_eq!(state, "error");
    assert!(
        description.contains("stopped before the job ran"),
        "{description}"
    );
}

/// Runs each job on the host the scheduler picked: jobs on a `lost` host
/// end the way the executor ends them when the host goes away (`error`,
/// host unreachable from then on); others wait for the gate.
struct HostRunner {
    gate: Semaphore,
    ran_on: std::sync::Mutex<Vec<(String, String)>>,
    lost: std::sync::Mutex<Vec<HostName>>,
    reachable: std::sync::Mutex<Vec<HostName>>,
}

#[async_trait]
impl JobRunner for HostRunner {
    async fn run(&self, job: &Job, _: &dyn StepObserver, cancel: CancelSignal) -> JobOutcome {
        self.ran_on
            .lock()
            .unwrap()
            .push((job.request.backend.to_string(), job.host.to_string()));
        if self.lost.lock().unwrap().contains(&job.host) {
            self.reachable.lock().unwrap().retain(|h| h != &job.host);
            return JobOutcome::Error {
                step: Step::Sanity,
                reason: format!("host {} unreachable", job.host),
            };
        }
        tokio::select! {
            permit = self.gate.acquire() => {
                permit.expect("gate open").forget();
                JobOutcome::Success
            }
            _ = cancel.cancelled() => cancel.outcome(),
        }
    }

    fn is_host_reachable(&self, host: &HostName) -> bool {
        host.is_local() || self.reachable.lock().unwrap().contains(host)
    }
}

fn host_setup(driver_hosts: &[(&str, &str)]) -> (Arc<HostRunner>, Placement) {
    let lab = HostName::new("lab").unwrap();
    let runner = Arc::new(HostRunner {
        gate: Semaphore::new(0),
        ran_on: Default::default(),
        lost: Default::default(),
        reachable: std::sync::Mutex::new(vec![lab.clone()]),
    });
    let mut config = String::from(
        "GH_EMBER_SECRET=s\nPODMAN_HOSTS=\"lab=ssh://root@10.0.0.2/run/podman/podman.sock\"\n",
    );
    config.push_str(&format!("NUM_DRIVERS={}\n", driver_hosts.len()));
    for (n, (name, hosts)) in driver_hosts.iter().enumerate() {
        config.push_str(&format!(
            "DRIVER_NAME_{0}={name}\nDRIVER_CONFIG_{0}='{{}}'\nDRIVER_HOST_{0}=\"{hosts}\"\n",
            n + 1
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config"), config).unwrap();
    let config = ember_ci::config::Config::load_with_env(dir.path(), &Default::default())
        .expect("config loads");
    let placement = Placement::new(1, &config.executor.hosts, &config.backends);
    (runner, placement)
}

#[tokio::test]
async fn backends_pinned_to_two_hosts_run_at_the_same_time_one_per_host() {
    let (runner, placement) = host_setup(&[("fc", "lab"), ("lvm", "local")]);
    let (_github, scheduler, _outbox, _dir) = start_scheduler(runner.clone(), placement).await;
    scheduler.enqueue(request(1, 'a', "fc"));
    scheduler.enqueue(request(2, 'b', "fc"));
    scheduler.enqueue(request(3, 'c', "lvm"));
    // The second fc job waits for lab's one slot; it must not hold up lvm.
    wait_until("one job on each host", || {
        runner.ran_on.lock().unwrap().len() == 2
    })
    .await;
    let mut ran_on = runner.ran_on.lock().unwrap().clone();
    ran_on.sort();
    assert_eq!(
        ran_on,
        [("fc".into(), "lab".into()), ("lvm".into(), "local".into())]
    );
    let usage = scheduler.host_usage();
    let busy: Vec<(String, usize, usize)> = usage
        .iter()
        .map(|u| (u.name.to_string(), u.slots, u.running.len()))
        .collect();
    assert_eq!(busy, [("local".into(), 1, 1), ("lab".into(), 1, 1)]);
    runner.gate.add_permits(3);
    wait_until("the queued fc job on lab", || {
        runner.ran_on.lock().unwrap().len() == 3
    })
    .await;
    assert_eq!(
        runner.ran_on.lock().unwrap()[2],
        ("fc".into(), "lab".into())
    );
}

#[tokio::test]
async fn a_job_on_a_lost_host_ends_error_and_runs_once_more_on_another() {
    let (runner, placement) = host_setup(&[("fc", "lab local")]);
    runner
        .lost
        .lock()
        .unwrap()
        .push(HostName::new("lab").unwrap());
    runner.gate.add_permits(1);
    let (github, scheduler, _outbox, _dir) = start_scheduler(runner.clone(), placement).await;
    let job = request(7, 'd', "fc");
    scheduler.enqueue(job.clone());
    github
        .wait_for_last_state(job.sha.as_str(), "success", WAIT)
        .await
        .unwrap();
    assert_eq!(
        *runner.ran_on.lock().unwrap(),
        [("fc".into(), "lab".into()), ("fc".into(), "local".into())]
    );
    let seen = states(&github, &job);
    assert!(
        seen.iter()
            .any(|s| s.starts_with("error:") && s.contains("host lab unreachable")),
        "{seen:?}"
    );
    // Lab stays skipped: the next fc job goes straight to local.
    scheduler.enqueue(request(8, 'e', "fc"));
    runner.gate.add_permits(1);
    wait_until("the next job", || runner.ran_on.lock().unwrap().len() == 3).await;
    assert_eq!(runner.ran_on.lock().unwrap()[2].1, "local");
}

#[tokio::test]
async fn a_job_whose_only_host_is_lost_ends_error_instead_of_waiting() {
    let (runner, placement) = host_setup(&[("fc", "lab")]);
    runner.reachable.lock().unwrap().clear();
    let (github, scheduler, _outbox, _dir) = start_scheduler(runner.clone(), placement).await;
    let job = request(9, 'f', "fc");
    scheduler.enqueue(job.clone());
    github
        .wait_for_last_state(job.sha.as_str(), "error", WAIT)
        .await
        .unwrap();
    assert!(runner.ran_on.lock().unwrap().is_empty());
    assert!(states(&github, &job)
        .last()
        .unwrap()
        .contains("host lab unreachable"));
}
