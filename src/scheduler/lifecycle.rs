//! One job's life from "running" to its final status, the same for a job
//! the scheduler runs and for `ember-ci run`: the pending "running" status,
//! the job's log folder, the runner with one combined step observer, the
//! cancel reason the signal carried, the logs' fate, and the final status
//! with its Details link. Where statuses go (journal and outbox, or the
//! outbox alone) is the caller's [`Announcer`]; the queue is the scheduler's.
//!
//! It must not decide when a job runs or whether it is cancelled.

use std::panic::AssertUnwindSafe;

use async_trait::async_trait;
use futures_util::FutureExt;
use tracing::{error, info};

use crate::config::HostName;
use crate::executor::{CancelSignal, Executor, HostStatus, Job, Observers, StepObserver};
use crate::journal::JobChange;
use crate::logs::{FinishedLogs, LogStore};
use crate::model::{CommitStatus, JobId, JobOutcome, JobRequest, StatusState, Step};

/// The description of a job's status while it runs.
pub const RUNNING_DESCRIPTION: &str = "running: build and CSI sanity";

/// Runs one job to its outcome. The executor is the real implementation;
/// scheduler tests use runners that fail, hang or finish at once.
#[async_trait]
pub trait JobRunner: Send + Sync + 'static {
    async fn run(&self, job: &Job, observer: &dyn StepObserver, cancel: CancelSignal)
        -> JobOutcome;

    /// Host state jobs left that could not be removed; non-empty means
    /// the host is unhealthy (see executor::hygiene).
    fn host_problems(&self) -> Vec<String> {
        Vec::new()
    }

    /// Whether `host` answers; the scheduler places no job on a host that
    /// does not.
    fn is_host_reachable(&self, host: &HostName) -> bool {
        host.is_local()
    }

    /// Every host with whether it answers (web UI, health).
    fn host_statuses(&self) -> Vec<HostStatus> {
        vec![HostStatus {
            name: HostName::local(),
            is_reachable: true,
            problem: None,
            left_behind: Vec::new(),
        }]
    }
}

#[async_trait]
impl JobRunner for Executor {
    async fn run(
        &self,
        job: &Job,
        observer: &dyn StepObserver,
        cancel: CancelSignal,
    ) -> JobOutcome {
        Executor::run(self, job, observer, cancel).await
    }

    fn host_problems(&self) -> Vec<String> {
        Executor::host_problems(self)
    }

    fn is_host_reachable(&self, host: &HostName) -> bool {
        Executor::is_host_reachable(self, host)
    }

    fn host_statuses(&self) -> Vec<HostStatus> {
        Executor::host_statuses(self)
    }
}

/// Where a job's statuses go, with the change each one announces.
pub trait Announcer: Send + Sync {
    fn announce(
        &self,
        id: &JobId,
        request: &JobRequest,
        change: JobChange<'_>,
        status: CommitStatus,
    );
}

/// How a job ended, for the caller's own bookkeeping.
#[derive(Debug)]
pub struct Finished {
    pub outcome: JobOutcome,
    /// None when the job's log folder could not be created.
    pub logs: Option<FinishedLogs>,
}

/// The parts a job runs with.
pub struct JobParts<'a> {
    pub runner: &'a dyn JobRunner,
    pub logs: &'a LogStore,
    pub announcer: &'a dyn Announcer,
}

/// Runs `job` from its "running" status to its final one. `watcher` sees
/// the steps beside the job's log (the board's tracker, the console).
pub async fn run_to_final_status(
    job: &Job,
    parts: &JobParts<'_>,
    watcher: &dyn StepObserver,
    cancel: CancelSignal,
) -> Finished {
    let (id, request) = (&job.id, &job.request);
    let status =
        |state: StatusState, description: String, target_url: Option<String>| CommitStatus {
            context: request.backend.status_context(),
            state,
            description,
            target_url,
        };
    parts.announcer.announce(
        id,
        request,
        JobChange::Started,
        status(StatusState::Pending, RUNNING_DESCRIPTION.into(), None),
    );
    let log = parts.logs.open_job(id, request);
    let outcome = match &log {
        Ok(log) => {
            let observer = Observers(vec![log, watcher]);
            // A panicking runner is our bug; the job still gets a final
            // status and its slot back.
            AssertUnwindSafe(parts.runner.run(job, &observer, cancel))
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| {
                    error!(job = %id, panic = %panic_text(&panic), "the job's runner panicked");
                    JobOutcome::Error {
                        step: Step::Cleanup,
                        reason: "ember-ci failed while running the job (a bug; see its log)"
                            .to_string(),
                    }
                })
        }
        Err(err) => JobOutcome::Error {
            step: Step::Fetch,
            reason: format!("cannot create the job's log dir: {err}"),
        },
    };
    // Publishing is bounded (retries, git timeouts), and the status is
    // posted whatever happened to the logs.
    let logs = match &log {
        Ok(log) => Some(parts.logs.finish_job(log, &outcome).await),
        Err(_) => None,
    };
    let (target_url, description) = match &logs {
        Some(logs) => (logs.target_url.clone(), logs.description.clone()),
        None => (None, outcome.description()),
    };
    info!(job = %id, result = %outcome.status_state(), %description, "job finished");
    parts.announcer.announce(
        id,
        request,
        JobChange::Finished(&outcome),
        status(outcome.status_state(), description, target_url),
    );
    Finished { outcome, logs }
}

/// A panic's message, as far as it is text.
pub(crate) fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(not text)".to_string())
}
