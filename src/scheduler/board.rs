//! The job board: what is queued, running and recently finished, with the
//! step each running job is at, plus running totals of finished jobs since
//! start (the list is trimmed, the totals are not). Read by the web UI, the
//! API, metrics and tests.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::executor::{StepObserver, StepResult};
use crate::model::{BackendName, JobId, JobOutcome, JobRequest, Step};

/// Finished jobs kept in memory for the dashboard.
const FINISHED_JOBS_KEPT: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum JobState {
    Queued,
    Running,
    Finished,
}

/// One job as the board shows it.
#[derive(Debug, Clone, Serialize)]
pub struct JobView {
    pub id: JobId,
    pub request: JobRequest,
    pub state: JobState,
    pub step: Option<Step>,
    pub outcome: Option<JobOutcome>,
    pub queued_at: SystemTime,
    pub started_at: Option<SystemTime>,
    pub finished_at: Option<SystemTime>,
}

/// How a finished job ended, as a label for counting: the status state,
/// except that a cancelled job is told apart from a broken one.
pub fn result_label(outcome: &JobOutcome) -> &'static str {
    match outcome {
        JobOutcome::Success => "success",
        JobOutcome::Failure { .. } => "failure",
        JobOutcome::Error { .. } | JobOutcome::TimedOut { .. } => "error",
        JobOutcome::Cancelled { .. } => "cancelled",
    }
}

/// Finished jobs of one backend with one result, since the service started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FinishedTotals {
    pub finished: u64,
    /// How many of them had started (a job cancelled while queued never ran).
    pub ran: u64,
    /// Sum of start-to-result times of the jobs that ran.
    pub run_time: Duration,
}

#[derive(Default)]
struct Board {
    jobs: VecDeque<JobView>,
    totals: BTreeMap<(BackendName, &'static str), FinishedTotals>,
}

#[derive(Clone, Default)]
pub struct JobBoard {
    board: Arc<Mutex<Board>>,
}

impl JobBoard {
    pub fn queued(&self, id: &JobId, request: &JobRequest) {
        let mut board = self.lock();
        let jobs = &mut board.jobs;
        jobs.push_back(JobView {
            id: id.clone(),
            request: request.clone(),
            state: JobState::Queued,
            step: None,
            outcome: None,
            queued_at: SystemTime::now(),
            started_at: None,
            finished_at: None,
        });
        let finished = jobs
            .iter()
            .filter(|j| j.state == JobState::Finished)
            .count();
        if finished > FINISHED_JOBS_KEPT {
            if let Some(oldest) = jobs.iter().position(|j| j.state == JobState::Finished) {
                jobs.remove(oldest);
            }
        }
    }

    pub fn started(&self, id: &JobId) {
        self.update(id, |job| {
            job.state = JobState::Running;
            job.started_at = Some(SystemTime::now());
        });
    }

    pub fn step(&self, id: &JobId, step: Step) {
        self.update(id, |job| job.step = Some(step));
    }

    pub fn finished(&self, id: &JobId, outcome: &JobOutcome) {
        let mut board = self.lock();
        let Some(job) = board.jobs.iter_mut().rev().find(|j| &j.id == id) else {
            return;
        };
        let now = SystemTime::now();
        job.state = JobState::Finished;
        job.outcome = Some(outcome.clone());
        job.finished_at = Some(now);
        let run_time = job
            .started_at
            .map(|started| now.duration_since(started).unwrap_or_default());
        let key = (job.request.backend.clone(), result_label(outcome));
        let totals = board.totals.entry(key).or_default();
        totals.finished += 1;
        if let Some(run_time) = run_time {
            totals.ran += 1;
            totals.run_time += run_time;
        }
    }

    /// A handle that records the running step of one job.
    pub fn step_tracker(&self, id: &JobId) -> StepTracker {
        StepTracker {
            board: self.clone(),
            id: id.clone(),
        }
    }

    /// Every job on the board, oldest first.
    pub fn jobs(&self) -> Vec<JobView> {
        self.lock().jobs.iter().cloned().collect()
    }

    pub fn job(&self, id: &JobId) -> Option<JobView> {
        self.lock().jobs.iter().find(|j| &j.id == id).cloned()
    }

    /// Finished jobs since start by (backend, [`result_label`]), sorted.
    pub fn finished_totals(&self) -> Vec<(BackendName, &'static str, FinishedTotals)> {
        self.lock()
            .totals
            .iter()
            .map(|((backend, result), totals)| (backend.clone(), *result, *totals))
            .collect()
    }

    fn update(&self, id: &JobId, change: impl FnOnce(&mut JobView)) {
        if let Some(job) = self.lock().jobs.iter_mut().rev().find(|j| &j.id == id) {
            change(job);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Board> {
        self.board.lock().expect("job board lock poisoned")
    }
}

/// Records which step a running job is at.
#[derive(Clone)]
pub struct StepTracker {
    board: JobBoard,
    id: JobId,
}

/// Only step changes matter to the board; output goes to the job's log.
impl StepObserver for StepTracker {
    fn step_started(&self, step: Step) {
        self.board.step(&self.id, step);
    }

    fn output(&self, _step: Step, _chunk: &[u8]) {}

    fn step_finished(&self, _step: Step, _result: &StepResult) {}
}
