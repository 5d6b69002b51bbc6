//! Start-up recovery: what to do with the jobs the journal says were live
//! when the previous run of the service ended without finishing them.
//!
//! - A job that was running was interrupted: it goes back to the queue once
//!   (its status says so); a job interrupted on its second attempt too is
//!   given up with an `error` status, so a job that kills the service cannot
//!   make it crash forever.
//! - A queued job resumes, in its old place in the queue.
//! - Only one live job per (SHA, backend) survives, so recovery cannot break
//!   the scheduler's rule that one commit runs once per backend at a time.
//!
//! `decide` is pure, over journal rows; `Scheduler::recover` applies it.

use std::collections::HashSet;

use tracing::{info, warn};

use super::{QueuedJob, Scheduler};
use crate::journal::{JobChange, JobPhase, StoredJob};
use crate::model::{CancelReason, JobId, StatusState};

/// Starts a job gets before an interruption is reported instead of retried.
pub const MAX_ATTEMPTS: u32 = 2;

/// The status description of a job put back in the queue after a restart.
pub const REQUEUED_DESCRIPTION: &str = "re-queued after a restart of ember-ci";

/// What recovery did, for the start-up log line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Interrupted jobs queued again.
    pub requeued: Vec<JobId>,
    /// Queued jobs back in the queue.
    pub resumed: Vec<JobId>,
    /// Interrupted jobs reported as errors.
    pub given_up: Vec<JobId>,
    /// Extra live jobs for a (SHA, backend) that already had one.
    pub duplicates: Vec<JobId>,
}

impl Recovery {
    pub fn is_empty(&self) -> bool {
        self.requeued.is_empty()
            && self.resumed.is_empty()
            && self.given_up.is_empty()
            && self.duplicates.is_empty()
    }
}

/// The fate of one live job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    Requeue,
    Resume,
    GiveUp,
    /// Finish it as cancelled: another live job has its SHA and backend.
    Duplicate,
    /// Nothing to do: it already finished.
    Skip,
}

/// Decides each job's fate; `jobs` in queue order, as the journal lists them.
pub(super) fn decide(jobs: &[StoredJob]) -> Vec<Decision> {
    let mut live_keys = HashSet::new();
    jobs.iter()
        .map(|job| {
            let decision = match job.phase {
                JobPhase::Running if job.attempts >= MAX_ATTEMPTS => Decision::GiveUp,
                JobPhase::Running => Decision::Requeue,
                JobPhase::Queued => Decision::Resume,
                JobPhase::Finished => return Decision::Skip,
            };
            if decision != Decision::GiveUp
                && !live_keys.insert((&job.request.sha, &job.request.backend))
            {
                return Decision::Duplicate;
            }
            decision
        })
        .collect()
}

impl Scheduler {
    /// Applies the decisions to the journal's live jobs. Runs before the
    /// dispatch loop starts, so the queue it builds is the one jobs start from.
    pub(super) fn recover(&self, live: Vec<StoredJob>) -> Recovery {
        let mut report = Recovery::default();
        let decisions = decide(&live);
        for (job, decision) in live.into_iter().zip(decisions) {
            match decision {
                Decision::Requeue => {
                    info!(job = %job.id, request = %job.request, attempts = job.attempts, "interrupted job re-queued");
                    self.record(
                        &job.id,
                        &job.request,
                        JobChange::Requeued,
                        StatusState::Pending,
                        REQUEUED_DESCRIPTION.to_string(),
                    );
                    report.requeued.push(job.id.clone());
                    self.put_back(job);
                }
                Decision::Resume => {
                    info!(job = %job.id, request = %job.request, "queued job resumed");
                    report.resumed.push(job.id.clone());
                    self.put_back(job);
                }
                Decision::GiveUp => {
                    warn!(job = %job.id, request = %job.request, attempts = job.attempts, "job interrupted on every attempt; reported as an error");
                    self.finish_unrun(&job, &CancelReason::InterruptedTwice);
                    report.given_up.push(job.id);
                }
                Decision::Duplicate => {
                    warn!(job = %job.id, request = %job.request, "a second live job for one commit and backend; cancelled");
                    self.finish_unrun(&job, &CancelReason::DuplicateJob);
                    report.duplicates.push(job.id);
                }
                Decision::Skip => {}
            }
        }
        report
    }

    /// Puts a journaled job at the back of the queue (the journal lists
    /// them in queue order, so the old order is kept).
    fn put_back(&self, job: StoredJob) {
        self.shared.board.queued(&job.id, &job.request);
        self.lock().waiting.push_back(QueuedJob {
            id: job.id,
            request: job.request,
            avoid: None,
        });
    }

    /// Finishes a job recovery will not run, with a final status.
    fn finish_unrun(&self, job: &StoredJob, reason: &CancelReason) {
        self.shared.board.queued(&job.id, &job.request);
        self.finish_unstarted(&job.id, &job.request, reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{BackendName, CommitSha, JobRequest, PrNumber};

    fn job(id: &str, sha: char, phase: JobPhase, attempts: u32) -> StoredJob {
        StoredJob {
            id: JobId::parse(id).expect("id"),
            request: JobRequest {
                pr: PrNumber::new(7).expect("pr"),
                sha: CommitSha::new(&sha.to_string().repeat(40)).expect("sha"),
                backend: BackendName::new("demo").expect("backend"),
            },
            phase,
            attempts,
        }
    }

    #[test]
    fn interrupted_jobs_get_one_more_attempt_then_an_error() {
        let jobs = [
            job("first-try", 'a', JobPhase::Running, 1),
            job("second-try", 'b', JobPhase::Running, 2),
            job("waiting", 'c', JobPhase::Queued, 0),
        ];
        assert_eq!(
            decide(&jobs),
            [Decision::Requeue, Decision::GiveUp, Decision::Resume]
        );
    }

    #[test]
    fn a_second_live_job_for_one_commit_and_backend_is_dropped() {
        let jobs = [
            job("running", 'a', JobPhase::Running, 1),
            job("same-commit", 'a', JobPhase::Queued, 0),
            job("other-commit", 'b', JobPhase::Queued, 0),
        ];
        assert_eq!(
            decide(&jobs),
            [Decision::Requeue, Decision::Duplicate, Decision::Resume]
        );
    }

    #[test]
    fn a_given_up_job_does_not_block_a_queued_rerun_of_its_commit() {
        let jobs = [
            job("gave-up", 'a', JobPhase::Running, 2),
            job("rerun", 'a', JobPhase::Queued, 0),
        ];
        assert_eq!(decide(&jobs), [Decision::GiveUp, Decision::Resume]);
    }
}
