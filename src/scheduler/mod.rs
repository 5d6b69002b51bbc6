//! The job queue: at most NUM_WORKERS jobs at once, one commit status at
//! enqueue, at start and at the end of every job, cancellation of superseded
//! work, and a bounded board of recent jobs for the web UI and tests.
//!
//! The scheduler never talks to GitHub directly: statuses go through the
//! [`StatusOutbox`], so a slow GitHub never holds a worker slot.
//!
//! Started with a [`Journal`], every job state change is written to disk
//! together with the status announcing it, and start-up resumes what the
//! previous run left live (see `recovery`).

mod board;
mod outbox;
mod recovery;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{info, info_span, warn, Instrument};

pub use board::{result_label, FinishedTotals, JobBoard, JobState, JobView, StepTracker};
pub use outbox::StatusOutbox;
pub use recovery::{Recovery, GIVEN_UP_REASON, MAX_ATTEMPTS, REQUEUED_DESCRIPTION};

use crate::executor::{Executor, Job, StepObserver};
use crate::github::CommitStatus;
use crate::journal::{JobChange, Journal, JournalError};
use crate::logs::LogStore;
use crate::model::{BackendName, CommitSha, JobId, JobOutcome, JobRequest, PrNumber, StatusState};

/// Runs one job to its outcome. The executor is the real implementation;
/// scheduler tests use runners that fail, hang or finish at once.
#[async_trait]
pub trait JobRunner: Send + Sync + 'static {
    async fn run(
        &self,
        job: &Job,
        observer: &dyn StepObserver,
        cancel: CancellationToken,
    ) -> JobOutcome;
}

#[async_trait]
impl JobRunner for Executor {
    async fn run(
        &self,
        job: &Job,
        observer: &dyn StepObserver,
        cancel: CancellationToken,
    ) -> JobOutcome {
        Executor::run(self, job, observer, cancel).await
    }
}

/// Why `enqueue` did not queue a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enqueued {
    Queued(JobId),
    /// A job for the same SHA and backend is already waiting or running.
    AlreadyLive(JobId),
    /// This SHA and backend already ran to a result (only a recheck reruns it).
    AlreadyFinished,
    /// The scheduler is shutting down.
    Refused,
}

struct QueuedJob {
    id: JobId,
    request: JobRequest,
}

struct Running {
    id: JobId,
    request: JobRequest,
    cancel: CancellationToken,
    cancel_reason: Arc<Mutex<Option<String>>>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<QueuedJob>,
    running: Vec<Running>,
    free_slots: Vec<usize>,
    /// (SHA, backend) pairs that reached a final result, oldest first, so a
    /// replayed or reopened delivery does not run the same commit twice.
    finished: VecDeque<(CommitSha, BackendName)>,
    is_closed: bool,
}

/// Finished (SHA, backend) pairs remembered for dedup.
const FINISHED_REMEMBERED: usize = 10_000;

impl Queue {
    fn with_slots(workers: usize) -> Self {
        Queue {
            // Pop from the end: slot 0 is used first, so a single-worker
            // setup always builds in the same image-store volume.
            free_slots: (0..workers.max(1)).rev().collect(),
            ..Queue::default()
        }
    }
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Notify,
    runner: Arc<dyn JobRunner>,
    outbox: StatusOutbox,
    logs: LogStore,
    board: JobBoard,
    /// Where job changes are recorded; None keeps them in memory only.
    journal: Option<Journal>,
}

/// Handle to the scheduler; cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    shared: Arc<Shared>,
}

impl Scheduler {
    /// Starts the dispatch loop with `workers` slots. The returned task ends
    /// after [`Scheduler::shutdown`] once every job has finished.
    pub fn start(
        runner: Arc<dyn JobRunner>,
        outbox: StatusOutbox,
        logs: LogStore,
        workers: usize,
    ) -> (Self, tokio::task::JoinHandle<()>) {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::with_slots(workers)),
            wake: Notify::new(),
            runner,
            outbox,
            logs,
            board: JobBoard::default(),
            journal: None,
        });
        let task = tokio::spawn(dispatch_loop(shared.clone()));
        (Self { shared }, task)
    }

    /// Starts like [`Scheduler::start`], recording every job change in
    /// `journal` (give the outbox the same journal, so a change and its
    /// status are kept together). Before the first job starts, it resumes
    /// what the journal says the previous run left live; see
    /// [`Recovery`].
    pub fn start_journaled(
        runner: Arc<dyn JobRunner>,
        outbox: StatusOutbox,
        logs: LogStore,
        workers: usize,
        journal: Journal,
    ) -> Result<(Self, tokio::task::JoinHandle<()>, Recovery), JournalError> {
        let mut queue = Queue::with_slots(workers);
        queue.finished = journal.recent_results(FINISHED_REMEMBERED)?.into();
        let live = journal.live_jobs()?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(queue),
            wake: Notify::new(),
            runner,
            outbox,
            logs,
            board: JobBoard::default(),
            journal: Some(journal),
        });
        let scheduler = Self { shared };
        let recovery = scheduler.recover(live);
        let task = tokio::spawn(dispatch_loop(scheduler.shared.clone()));
        Ok((scheduler, task, recovery))
    }

    /// The journal job changes are recorded in, if any.
    pub fn journal(&self) -> Option<&Journal> {
        self.shared.journal.as_ref()
    }

    pub fn board(&self) -> &JobBoard {
        &self.shared.board
    }

    /// Queues a job unless one for the same SHA and backend is live or has
    /// already finished.
    pub fn enqueue(&self, request: JobRequest) -> Enqueued {
        self.enqueue_job(request, false)
    }

    /// Queues a job even if the SHA and backend already finished (a recheck).
    pub fn enqueue_rerun(&self, request: JobRequest) -> Enqueued {
        self.enqueue_job(request, true)
    }

    fn enqueue_job(&self, request: JobRequest, is_rerun: bool) -> Enqueued {
        let id = JobId::generate();
        {
            let mut queue = self.lock();
            if queue.is_closed {
                return Enqueued::Refused;
            }
            let key = (request.sha.clone(), request.backend.clone());
            if !is_rerun && queue.finished.contains(&key) {
                return Enqueued::AlreadyFinished;
            }
            let same = |r: &JobRequest| r.sha == request.sha && r.backend == request.backend;
            if let Some(live) = queue
                .waiting
                .iter()
                .map(|q| (&q.id, &q.request))
                .chain(queue.running.iter().map(|r| (&r.id, &r.request)))
                .find(|(_, r)| same(r))
            {
                return Enqueued::AlreadyLive(live.0.clone());
            }
            self.shared.board.queued(&id, &request);
            queue.waiting.push_back(QueuedJob {
                id: id.clone(),
                request: request.clone(),
            });
        }
        info!(job = %id, %request, "job queued");
        self.record(
            &id,
            &request,
            JobChange::Queued(&request),
            StatusState::Pending,
            "queued".to_string(),
        );
        self.shared.wake.notify_one();
        Enqueued::Queued(id)
    }

    /// Cancels the PR's queued and running jobs, except those for `keep_sha`
    /// (the new head after a push). Returns how many were cancelled.
    pub fn cancel_pull_request(
        &self,
        pr: PrNumber,
        keep_sha: Option<&CommitSha>,
        reason: &str,
    ) -> usize {
        let is_target = |r: &JobRequest| r.pr == pr && Some(&r.sha) != keep_sha;
        self.cancel_where(is_target, reason)
    }

    /// Cancels one job by id (web UI). Returns whether it was live.
    pub fn cancel_job(&self, id: &JobId, reason: &str) -> bool {
        let mut found = false;
        {
            let queue = self.lock();
            found |= queue.waiting.iter().any(|q| &q.id == id)
                || queue.running.iter().any(|r| &r.id == id);
        }
        if found {
            let id = id.clone();
            self.cancel_matching(|job_id, _| *job_id == id, reason);
        }
        found
    }

    fn cancel_where(&self, is_target: impl Fn(&JobRequest) -> bool, reason: &str) -> usize {
        self.cancel_matching(|_, request| is_target(request), reason)
    }

    fn cancel_matching(
        &self,
        is_target: impl Fn(&JobId, &JobRequest) -> bool,
        reason: &str,
    ) -> usize {
        let mut dropped = Vec::new();
        let mut signalled = 0;
        {
            let mut queue = self.lock();
            let (cancelled, kept): (Vec<_>, Vec<_>) = queue
                .waiting
                .drain(..)
                .partition(|q| is_target(&q.id, &q.request));
            queue.waiting = kept.into();
            dropped.extend(cancelled);
            for running in queue
                .running
                .iter()
                .filter(|r| is_target(&r.id, &r.request))
            {
                *running
                    .cancel_reason
                    .lock()
                    .expect("cancel reason lock poisoned") = Some(reason.to_string());
                running.cancel.cancel();
                signalled += 1;
            }
        }
        for job in &dropped {
            info!(job = %job.id, request = %job.request, reason, "queued job cancelled");
            self.finish_unstarted(&job.id, &job.request, reason);
        }
        dropped.len() + signalled
    }

    /// Stops taking jobs, lets running ones finish within `grace`, then
    /// cancels them; queued jobs that never started end `error` so no status
    /// stays pending. Returns once every job task has ended.
    pub async fn shutdown(&self, grace: Duration) {
        let never_started: Vec<QueuedJob> = {
            let mut queue = self.lock();
            queue.is_closed = true;
            queue.waiting.drain(..).collect()
        };
        self.shared.wake.notify_one();
        for job in never_started {
            self.finish_unstarted(
                &job.id,
                &job.request,
                "ember-ci stopped before the job ran; comment `recheck` to run it",
            );
        }
        if tokio::time::timeout(grace, self.wait_idle()).await.is_err() {
            warn!(
                grace_secs = grace.as_secs(),
                "running jobs did not finish within the shutdown grace; cancelling them"
            );
            self.cancel_where(|_| true, "ember-ci is shutting down");
            self.wait_idle().await;
        }
    }

    async fn wait_idle(&self) {
        loop {
            let notified = self.shared.wake.notified();
            if self.lock().running.is_empty() {
                return;
            }
            notified.await;
        }
    }

    /// Ends a job that never ran (cancelled while queued, or not resumed)
    /// with a final `error` status, so nothing stays pending.
    fn finish_unstarted(&self, id: &JobId, request: &JobRequest, reason: &str) {
        let outcome = JobOutcome::Cancelled {
            reason: reason.to_string(),
        };
        self.shared.board.finished(id, &outcome);
        self.record(
            id,
            request,
            JobChange::Finished(&outcome),
            outcome.status_state(),
            outcome.description(),
        );
    }

    fn record(
        &self,
        id: &JobId,
        request: &JobRequest,
        change: JobChange<'_>,
        state: StatusState,
        description: String,
    ) {
        record_status(&self.shared, id, request, change, state, description);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.shared
            .queue
            .lock()
            .expect("scheduler queue lock poisoned")
    }
}

/// Records a job's state change and posts the status announcing it, linked
/// to the job's local logs; with a journal both are written in one
/// transaction first.
fn record_status(
    shared: &Shared,
    id: &JobId,
    request: &JobRequest,
    change: JobChange<'_>,
    state: StatusState,
    description: String,
) {
    let target_url = shared.logs.job_url(id);
    record_status_to(shared, id, request, change, state, description, target_url);
}

/// [`record_status`] with an explicit Details link (a job's published logs).
/// A journal that fails must not stop the job: the status is then posted
/// from memory.
fn record_status_to(
    shared: &Shared,
    id: &JobId,
    request: &JobRequest,
    change: JobChange<'_>,
    state: StatusState,
    description: String,
    target_url: Option<String>,
) {
    let status = CommitStatus {
        context: request.backend.status_context(),
        state,
        description,
        target_url,
    };
    if let Some(journal) = &shared.journal {
        match journal.record_job(id, change, &status) {
            Ok(status_id) => {
                shared
                    .outbox
                    .send_journaled(status_id, &request.sha, status);
                return;
            }
            Err(err) => {
                tracing::error!(job = %id, error = %err, "cannot journal a job change; a restart now will not know of it")
            }
        }
    }
    shared.outbox.send(&request.sha, status);
}

async fn dispatch_loop(shared: Arc<Shared>) {
    let mut tasks = JoinSet::new();
    loop {
        let notified = shared.wake.notified();
        let next = {
            let mut queue = shared.queue.lock().expect("scheduler queue lock poisoned");
            if queue.is_closed && queue.running.is_empty() && tasks.is_empty() {
                break;
            }
            if queue.is_closed || queue.free_slots.is_empty() || queue.waiting.is_empty() {
                None
            } else {
                let slot = queue.free_slots.pop().expect("checked non-empty");
                let job = queue.waiting.pop_front().expect("checked non-empty");
                let running = Running {
                    id: job.id.clone(),
                    request: job.request.clone(),
                    cancel: CancellationToken::new(),
                    cancel_reason: Arc::new(Mutex::new(None)),
                };
                let handles = (running.cancel.clone(), running.cancel_reason.clone());
                queue.running.push(running);
                Some((job, slot, handles))
            }
        };
        match next {
            Some((job, slot, (cancel, reason))) => {
                tasks.spawn(run_job(shared.clone(), job, slot, cancel, reason));
            }
            None => {
                tokio::select! {
                    _ = notified => {}
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                }
            }
        }
    }
}

async fn run_job(
    shared: Arc<Shared>,
    queued: QueuedJob,
    slot: usize,
    cancel: CancellationToken,
    cancel_reason: Arc<Mutex<Option<String>>>,
) {
    let QueuedJob { id, request } = queued;
    let span = info_span!("job", job = %id, pr = %request.pr, sha = %request.sha.short(), backend = %request.backend);
    let outcome = async {
        info!(slot, "job started");
        shared.board.started(&id);
        record_status(
            &shared,
            &id,
            &request,
            JobChange::Started,
            StatusState::Pending,
            "running: build and CSI sanity".into(),
        );
        let job = Job {
            id: id.clone(),
            request: request.clone(),
            slot,
        };
        let log = shared
            .logs
            .open_job(&id, &request, Some(shared.board.step_tracker(&id)));
        let mut outcome = match &log {
            Ok(log) => shared.runner.run(&job, log, cancel).await,
            Err(err) => JobOutcome::Error {
                step: crate::model::Step::Fetch,
                reason: format!("cannot create the job's log dir: {err}"),
            },
        };
        if let JobOutcome::Cancelled { reason } = &mut outcome {
            if let Some(real) = cancel_reason
                .lock()
                .expect("cancel reason lock poisoned")
                .take()
            {
                *reason = real;
            }
        }
        // Publishing is bounded (retries, git timeouts), and the status is
        // posted whatever happened to the logs.
        let (target_url, description) = match &log {
            Ok(log) => {
                let logs = shared.logs.finish_job(log, &outcome).await;
                (logs.target_url, logs.description)
            }
            Err(_) => (shared.logs.job_url(&id), outcome.description()),
        };
        info!(result = %outcome.status_state(), %description, "job finished");
        shared.board.finished(&id, &outcome);
        record_status_to(
            &shared,
            &id,
            &request,
            JobChange::Finished(&outcome),
            outcome.status_state(),
            description,
            target_url,
        );
        outcome
    }
    .instrument(span)
    .await;
    let mut queue = shared.queue.lock().expect("scheduler queue lock poisoned");
    queue.running.retain(|r| r.id != id);
    queue.free_slots.push(slot);
    // A cancelled job never reached a result: a later delivery may run it.
    if !matches!(outcome, JobOutcome::Cancelled { .. }) {
        queue.finished.push_back((request.sha, request.backend));
        if queue.finished.len() > FINISHED_REMEMBERED {
            queue.finished.pop_front();
        }
    }
    drop(queue);
    // Wake both the dispatch loop and any shutdown waiting for idleness.
    shared.wake.notify_waiters();
    shared.wake.notify_one();
}
