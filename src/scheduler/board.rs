//! The job board: what is queued, running and recently finished, with the
//! step each running job is at. Read by the web UI, the API and tests.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use serde::Serialize;

use crate::model::{JobId, JobOutcome, JobRequest, Step};

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

#[derive(Clone, Default)]
pub struct JobBoard {
    jobs: Arc<Mutex<VecDeque<JobView>>>,
}

impl JobBoard {
    pub fn queued(&self, id: &JobId, request: &JobRequest) {
        let mut jobs = self.lock();
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
        self.update(id, |job| {
            job.state = JobState::Finished;
            job.outcome = Some(outcome.clone());
            job.finished_at = Some(SystemTime::now());
        });
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
        self.lock().iter().cloned().collect()
    }

    pub fn job(&self, id: &JobId) -> Option<JobView> {
        self.lock().iter().find(|j| &j.id == id).cloned()
    }

    fn update(&self, id: &JobId, change: impl FnOnce(&mut JobView)) {
        if let Some(job) = self.lock().iter_mut().rev().find(|j| &j.id == id) {
            change(job);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<JobView>> {
        self.jobs.lock().expect("job board lock poisoned")
    }
}

/// Records which step a running job is at.
#[derive(Clone)]
pub struct StepTracker {
    board: JobBoard,
    id: JobId,
}

impl StepTracker {
    pub fn enter(&self, step: Step) {
        self.board.step(&self.id, step);
    }
}
