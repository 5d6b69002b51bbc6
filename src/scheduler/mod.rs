//! The job queue: at most NUM_WORKERS jobs at once, one commit status at
//! enqueue, at start and at the end of every job, cancellation of superseded
//! work, and a bounded board of recent jobs for the web UI and tests.
//!
//! The scheduler never talks to GitHub directly: statuses go through the
//! [`StatusOutbox`], so a slow GitHub never holds a worker slot.
//!
//! Every job state change is written to the [`Journal`] together with the
//! status announcing it, and start-up resumes what the previous run left
//! live (see `recovery`). A job's life once it runs is `lifecycle`'s,
//! shared with `ember-ci run`.

mod board;
pub mod lifecycle;
mod placement;
mod recovery;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tracing::{error, info, info_span, warn, Instrument};

pub use board::{result_label, FinishedTotals, JobBoard, JobState, JobView, StepTracker};
pub use lifecycle::{Announcer, JobRunner, RUNNING_DESCRIPTION};
pub use placement::Placement;
pub use recovery::{Recovery, MAX_ATTEMPTS, REQUEUED_DESCRIPTION};

use crate::config::HostName;
use crate::executor::{CancelSignal, Job};
use crate::github::StatusOutbox;
use crate::journal::{JobChange, Journal, JournalError};
use crate::logs::LogStore;
use crate::model::{
    BackendName, CancelReason, CommitSha, CommitStatus, JobId, JobOutcome, JobRequest, PrNumber,
    StatusState,
};
use lifecycle::{run_to_final_status, JobParts};

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
    /// Set on the one re-run of a job whose host became unreachable: the
    /// host it lost (a second loss is not re-run again).
    avoid: Option<HostName>,
}

struct Running {
    id: JobId,
    request: JobRequest,
    host: HostName,
    cancel: CancelSignal,
}

/// One host's slots and the jobs on them, for the web UI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostUsage {
    pub name: HostName,
    pub slots: usize,
    pub running: Vec<JobId>,
}

/// How long a job waits before its lost hosts are asked about again.
const HOST_RECHECK_TICK: Duration = Duration::from_secs(2);

#[derive(Default)]
struct Queue {
    waiting: VecDeque<QueuedJob>,
    running: Vec<Running>,
    /// Per host, its free slot numbers (popped from the end).
    free_slots: HashMap<HostName, Vec<usize>>,
    /// (SHA, backend) pairs that reached a final result, oldest first, so a
    /// replayed or reopened delivery does not run the same commit twice.
    finished: VecDeque<(CommitSha, BackendName)>,
    is_closed: bool,
}

/// Finished (SHA, backend) pairs remembered for dedup.
const FINISHED_REMEMBERED: usize = 10_000;

impl Queue {
    fn with_slots(placement: &Placement) -> Self {
        Queue {
            // Pop from the end: slot 0 is used first, so a single-worker
            // setup always builds in the same image-store volume.
            free_slots: placement
                .hosts()
                .iter()
                .map(|(host, slots)| (host.clone(), (0..(*slots).max(1)).rev().collect()))
                .collect(),
            ..Queue::default()
        }
    }

    fn has_free_slot(&self, host: &HostName) -> bool {
        self.free_slots
            .get(host)
            .is_some_and(|free| !free.is_empty())
    }
}

impl From<usize> for Placement {
    fn from(workers: usize) -> Self {
        Placement::local(workers)
    }
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Notify,
    runner: Arc<dyn JobRunner>,
    outbox: StatusOutbox,
    logs: LogStore,
    board: JobBoard,
    placement: Placement,
    /// Where job changes are recorded, each with the status announcing it.
    journal: Journal,
}

/// Handle to the scheduler; cheap to clone.
#[derive(Clone)]
pub struct Scheduler {
    shared: Arc<Shared>,
}

impl Scheduler {
    /// Starts the dispatch loop with `workers` slots, recording every job
    /// change in `journal` (give the outbox the same journal, so a change
    /// and its status are kept together). Before the first job starts, it
    /// resumes what the journal says the previous run left live; see
    /// [`Recovery`]. The returned task ends after [`Scheduler::shutdown`]
    /// once every job has finished.
    pub fn start(
        runner: Arc<dyn JobRunner>,
        outbox: StatusOutbox,
        logs: LogStore,
        placement: impl Into<Placement>,
        journal: Journal,
    ) -> Result<(Self, tokio::task::JoinHandle<()>, Recovery), JournalError> {
        let placement = placement.into();
        let mut queue = Queue::with_slots(&placement);
        queue.finished = journal.recent_results(FINISHED_REMEMBERED)?.into();
        let live = journal.live_jobs()?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(queue),
            wake: Notify::new(),
            runner,
            outbox,
            logs,
            board: JobBoard::default(),
            placement,
            journal,
        });
        let scheduler = Self { shared };
        let recovery = scheduler.recover(live);
        let task = tokio::spawn(dispatch_loop(scheduler.shared.clone()));
        Ok((scheduler, task, recovery))
    }

    /// The journal job changes are recorded in.
    pub fn journal(&self) -> &Journal {
        &self.shared.journal
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

    /// Each host's slots and the jobs running on it.
    pub fn host_usage(&self) -> Vec<HostUsage> {
        let queue = self.lock();
        self.shared
            .placement
            .hosts()
            .iter()
            .map(|(name, slots)| HostUsage {
                name: name.clone(),
                slots: *slots,
                running: queue
                    .running
                    .iter()
                    .filter(|r| &r.host == name)
                    .map(|r| r.id.clone())
                    .collect(),
            })
            .collect()
    }

    fn enqueue_job(&self, request: JobRequest, is_rerun: bool) -> Enqueued {
        self.enqueue_avoiding(request, is_rerun, None)
    }

    fn enqueue_avoiding(
        &self,
        request: JobRequest,
        is_rerun: bool,
        avoid: Option<HostName>,
    ) -> Enqueued {
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
                avoid,
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
        reason: CancelReason,
    ) -> usize {
        let is_target = |r: &JobRequest| r.pr == pr && Some(&r.sha) != keep_sha;
        self.cancel_where(is_target, reason)
    }

    /// Cancels one job by id (web UI). Returns whether it was live.
    pub fn cancel_job(&self, id: &JobId, reason: CancelReason) -> bool {
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

    fn cancel_where(&self, is_target: impl Fn(&JobRequest) -> bool, reason: CancelReason) -> usize {
        self.cancel_matching(|_, request| is_target(request), reason)
    }

    fn cancel_matching(
        &self,
        is_target: impl Fn(&JobId, &JobRequest) -> bool,
        reason: CancelReason,
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
                running.cancel.cancel(reason.clone());
                signalled += 1;
            }
        }
        for job in &dropped {
            info!(job = %job.id, request = %job.request, %reason, "queued job cancelled");
            self.finish_unstarted(&job.id, &job.request, &reason);
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
            self.finish_unstarted(&job.id, &job.request, &CancelReason::StoppedBeforeStart);
        }
        if tokio::time::timeout(grace, self.wait_idle()).await.is_err() {
            warn!(
                grace_secs = grace.as_secs(),
                "running jobs did not finish within the shutdown grace; cancelling them"
            );
            self.cancel_where(|_| true, CancelReason::ShuttingDown);
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
    fn finish_unstarted(&self, id: &JobId, request: &JobRequest, reason: &CancelReason) {
        self.finish_with(id, request, &JobOutcome::from(reason));
    }

    /// Ends a job that never ran with `outcome`.
    fn finish_with(&self, id: &JobId, request: &JobRequest, outcome: &JobOutcome) {
        let outcome = outcome.clone();
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
        let status = CommitStatus {
            context: request.backend.status_context(),
            state,
            description,
            // Logs are linked once published; the local UI is no link for
            // a reviewer.
            target_url: None,
        };
        self.shared.announce(id, request, change, status);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.shared
            .queue
            .lock()
            .expect("scheduler queue lock poisoned")
    }
}

/// Records a job's state change and the status announcing it in one
/// journal transaction, then hands the status to the outbox. A journal that
/// fails must not stop the job: the status is then posted from memory.
impl Announcer for Shared {
    fn announce(
        &self,
        id: &JobId,
        request: &JobRequest,
        change: JobChange<'_>,
        status: CommitStatus,
    ) {
        match self.journal.record_job(id, change, &status) {
            Ok(status_id) => self.outbox.send_journaled(status_id, &request.sha, status),
            Err(err) => {
                error!(job = %id, error = %err, "cannot journal a job change; a restart now will not know of it");
                self.outbox.send(&request.sha, status);
            }
        }
    }
}

/// What the dispatch loop does next.
enum Next {
    Run(QueuedJob, HostName, usize, CancelSignal),
    /// No host of this job answers: it ends `error`.
    Unplaceable(QueuedJob, Vec<HostName>),
    Idle,
    Stop,
}

/// Takes the first waiting job that can start now (a job waiting for a
/// busy host does not hold up a job for another host).
fn next_job(shared: &Shared) -> Next {
    let mut queue = shared.queue.lock().expect("scheduler queue lock poisoned");
    if queue.is_closed {
        return if queue.running.is_empty() {
            Next::Stop
        } else {
            Next::Idle
        };
    }
    for index in 0..queue.waiting.len() {
        let job = &queue.waiting[index];
        let candidates = shared.placement.hosts_for(&job.request.backend);
        let choice = placement::choose(
            &candidates,
            job.avoid.as_ref(),
            |host| queue.has_free_slot(host),
            |host| shared.runner.is_host_reachable(host),
        );
        match choice {
            placement::Choice::Wait => continue,
            placement::Choice::NoHost(hosts) => {
                let job = queue.waiting.remove(index).expect("index in range");
                return Next::Unplaceable(job, hosts);
            }
            placement::Choice::Run(host) => {
                let job = queue.waiting.remove(index).expect("index in range");
                let slot = queue
                    .free_slots
                    .get_mut(&host)
                    .and_then(Vec::pop)
                    .expect("choose() picked a host with a free slot");
                let cancel = CancelSignal::new();
                queue.running.push(Running {
                    id: job.id.clone(),
                    request: job.request.clone(),
                    host: host.clone(),
                    cancel: cancel.clone(),
                });
                return Next::Run(job, host, slot, cancel);
            }
        }
    }
    Next::Idle
}

async fn dispatch_loop(shared: Arc<Shared>) {
    let mut tasks = JoinSet::new();
    loop {
        let notified = shared.wake.notified();
        match next_job(&shared) {
            Next::Stop if tasks.is_empty() => break,
            Next::Run(job, host, slot, cancel) => {
                tasks.spawn(run_job(shared.clone(), job, host, slot, cancel));
            }
            Next::Unplaceable(job, hosts) => {
                let names: Vec<String> = hosts.iter().map(ToString::to_string).collect();
                warn!(job = %job.id, hosts = %names.join(", "), "no host of the job's backend answers");
                let outcome = JobOutcome::Error {
                    step: crate::model::Step::Fetch,
                    reason: format!("host {} unreachable", names.join(", ")),
                };
                let scheduler = Scheduler {
                    shared: shared.clone(),
                };
                scheduler.finish_with(&job.id, &job.request, &outcome);
            }
            Next::Idle | Next::Stop => {
                // Jobs waiting only for a lost host are looked at again.
                let waiting = !shared
                    .queue
                    .lock()
                    .expect("scheduler queue lock poisoned")
                    .waiting
                    .is_empty();
                tokio::select! {
                    _ = notified => {}
                    () = tokio::time::sleep(HOST_RECHECK_TICK), if waiting => {}
                    Some(ended) = tasks.join_next(), if !tasks.is_empty() => {
                        if let Err(err) = ended {
                            error!(error = %err, "a job task ended abnormally");
                        }
                    }
                }
            }
        }
    }
}

async fn run_job(
    shared: Arc<Shared>,
    queued: QueuedJob,
    host: HostName,
    slot: usize,
    cancel: CancelSignal,
) {
    let QueuedJob { id, request, avoid } = queued;
    let span = info_span!("job", job = %id, pr = %request.pr, sha = %request.sha.short(), backend = %request.backend);
    let outcome = async {
        info!(slot, %host, "job started");
        shared.board.started(&id);
        let job = Job {
            id: id.clone(),
            request: request.clone(),
            slot,
            host: host.clone(),
        };
        let parts = JobParts {
            runner: shared.runner.as_ref(),
            logs: &shared.logs,
            announcer: shared.as_ref(),
        };
        let tracker = shared.board.step_tracker(&id);
        let finished = run_to_final_status(&job, &parts, &tracker, cancel).await;
        shared.board.finished(&id, &finished.outcome);
        finished.outcome
    }
    .instrument(span)
    .await;
    let mut queue = shared.queue.lock().expect("scheduler queue lock poisoned");
    queue.running.retain(|r| r.id != id);
    queue.free_slots.entry(host.clone()).or_default().push(slot);
    // A cancelled job never reached a result: a later delivery may run it.
    if !matches!(outcome, JobOutcome::Cancelled { .. }) {
        queue
            .finished
            .push_back((request.sha.clone(), request.backend.clone()));
        if queue.finished.len() > FINISHED_REMEMBERED {
            queue.finished.pop_front();
        }
    }
    drop(queue);
    // A host lost mid-job: the job ended `error`; it runs once more on
    // another of its backend's hosts, when it has one.
    let host_lost = matches!(outcome, JobOutcome::Error { .. })
        && !host.is_local()
        && !shared.runner.is_host_reachable(&host);
    let has_other_host = shared
        .placement
        .hosts_for(&request.backend)
        .iter()
        .any(|h| h != &host);
    if host_lost && avoid.is_none() && has_other_host {
        let scheduler = Scheduler {
            shared: shared.clone(),
        };
        let again = scheduler.enqueue_avoiding(request, true, Some(host.clone()));
        info!(job = %id, %host, ?again, "host lost mid-job; running the job again elsewhere");
    }
    // Wake both the dispatch loop and any shutdown waiting for idleness.
    shared.wake.notify_waiters();
    shared.wake.notify_one();
}
