//! Job state changes, each written together with the commit status that
//! announces it, and the reads start-up recovery needs.

use std::time::SystemTime;

use rusqlite::{params, Transaction};

use super::statuses::{insert_status, StatusId};
use super::{to_millis, Journal, JournalError};
use crate::model::{BackendName, CommitSha, CommitStatus, JobId, JobOutcome, JobRequest, PrNumber};

/// Finished jobs kept; older ones are only history, and the scheduler's
/// finished-commit memory is smaller than this anyway.
pub(super) const FINISHED_JOBS_KEPT: i64 = 20_000;

/// Where a job stands, as journaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobPhase {
    Queued,
    Running,
    Finished,
}

impl JobPhase {
    fn as_str(self) -> &'static str {
        match self {
            JobPhase::Queued => "queued",
            JobPhase::Running => "running",
            JobPhase::Finished => "finished",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "queued" => Some(JobPhase::Queued),
            "running" => Some(JobPhase::Running),
            "finished" => Some(JobPhase::Finished),
            _ => None,
        }
    }
}

/// One state change of a job.
#[derive(Debug, Clone, Copy)]
pub enum JobChange<'a> {
    /// A new job entered the queue.
    Queued(&'a JobRequest),
    /// A worker took it; counts an attempt.
    Started,
    /// It was running when the service died and goes back to the queue.
    Requeued,
    Finished(&'a JobOutcome),
}

/// A job the journal knows, as recovery reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredJob {
    pub id: JobId,
    pub request: JobRequest,
    pub phase: JobPhase,
    /// How many times it was started.
    pub attempts: u32,
}

impl Journal {
    /// Records `change` and queues `status` (on the job's commit) in one
    /// transaction; returns the status's outbox id.
    pub fn record_job(
        &self,
        id: &JobId,
        change: JobChange<'_>,
        status: &CommitStatus,
    ) -> Result<StatusId, JournalError> {
        let mut connection = self.lock();
        let transaction = connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(JournalError::sql("starting a job transaction"))?;
        let sha = apply_change(&transaction, id, change)?;
        let status_id = insert_status(&transaction, &sha, status)?;
        transaction
            .commit()
            .map_err(JournalError::sql("committing a job change"))?;
        Ok(status_id)
    }

    /// Jobs that are queued or running, in the order they were queued.
    pub fn live_jobs(&self) -> Result<Vec<StoredJob>, JournalError> {
        let connection = self.lock();
        let mut statement = connection
            .prepare(
                "SELECT id, pr, sha, backend, state, attempts FROM jobs
                 WHERE state != 'finished' ORDER BY seq",
            )
            .map_err(JournalError::sql("listing live jobs"))?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, i64>(5)?,
                ))
            })
            .map_err(JournalError::sql("listing live jobs"))?;
        let mut jobs = Vec::new();
        for row in rows {
            let (id, pr, sha, backend, phase, attempts) =
                row.map_err(JournalError::sql("reading live jobs"))?;
            let corrupt = |why: String| JournalError::Corrupt {
                table: "jobs",
                key: id.clone(),
                why,
            };
            let request = parse_request(pr, &sha, &backend).map_err(&corrupt)?;
            jobs.push(StoredJob {
                id: JobId::parse(&id).map_err(|e| corrupt(e.to_string()))?,
                request,
                phase: JobPhase::parse(&phase).ok_or_else(|| corrupt(format!("state {phase}")))?,
                attempts: u32::try_from(attempts).unwrap_or(0),
            });
        }
        Ok(jobs)
    }

    /// The commits and backends of the newest `limit` jobs that finished
    /// with a result, oldest first.
    pub fn recent_results(
        &self,
        limit: usize,
    ) -> Result<Vec<(CommitSha, BackendName)>, JournalError> {
        let connection = self.lock();
        let mut statement = connection
            .prepare(
                "SELECT sha, backend FROM jobs WHERE has_result = 1
                 ORDER BY seq DESC LIMIT ?1",
            )
            .map_err(JournalError::sql("listing finished jobs"))?;
        let rows = statement
            .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(JournalError::sql("listing finished jobs"))?;
        let mut results = Vec::new();
        for row in rows {
            let (sha, backend) = row.map_err(JournalError::sql("reading finished jobs"))?;
            let corrupt = |why: String| JournalError::Corrupt {
                table: "jobs",
                key: format!("{sha}/{backend}"),
                why,
            };
            results.push((
                CommitSha::new(&sha).map_err(|e| corrupt(e.to_string()))?,
                BackendName::new(&backend).map_err(|e| corrupt(e.to_string()))?,
            ));
        }
        results.reverse();
        Ok(results)
    }

    /// The journaled phase and attempts of one job.
    pub fn job(&self, id: &JobId) -> Result<Option<(JobPhase, u32)>, JournalError> {
        use rusqlite::OptionalExtension;
        let row = self
            .lock()
            .query_row(
                "SELECT state, attempts FROM jobs WHERE id = ?1",
                [id.as_str()],
                |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)),
            )
            .optional()
            .map_err(JournalError::sql("looking up a job"))?;
        row.map(|(phase, attempts)| {
            let phase = JobPhase::parse(&phase).ok_or_else(|| JournalError::Corrupt {
                table: "jobs",
                key: id.to_string(),
                why: format!("state {phase}"),
            })?;
            Ok((phase, u32::try_from(attempts).unwrap_or(0)))
        })
        .transpose()
    }

    /// Forgets finished jobs beyond the newest `keep`.
    pub(super) fn prune_jobs(&self, keep: i64) -> Result<usize, JournalError> {
        self.lock()
            .execute(
                "DELETE FROM jobs WHERE state = 'finished' AND seq <= (
                     SELECT seq FROM jobs WHERE state = 'finished'
                     ORDER BY seq DESC LIMIT 1 OFFSET ?1)",
                [keep],
            )
            .map_err(JournalError::sql("pruning old jobs"))
    }
}

/// Applies one change; returns the job's commit for its status.
fn apply_change(
    transaction: &Transaction<'_>,
    id: &JobId,
    change: JobChange<'_>,
) -> Result<CommitSha, JournalError> {
    let now = to_millis(SystemTime::now());
    let updated = match change {
        JobChange::Queued(request) => {
            transaction
                .execute(
                    "INSERT INTO jobs (id, pr, sha, backend, state, queued_at, updated_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                    params![
                        id.as_str(),
                        request.pr.get() as i64,
                        request.sha.as_str(),
                        request.backend.as_str(),
                        JobPhase::Queued.as_str(),
                        now
                    ],
                )
                .map_err(JournalError::sql("recording a queued job"))?;
            return Ok(request.sha.clone());
        }
        JobChange::Started => transaction.execute(
            "UPDATE jobs SET state = ?2, attempts = attempts + 1, updated_at = ?3 WHERE id = ?1",
            params![id.as_str(), JobPhase::Running.as_str(), now],
        ),
        JobChange::Requeued => transaction.execute(
            "UPDATE jobs SET state = ?2, updated_at = ?3 WHERE id = ?1",
            params![id.as_str(), JobPhase::Queued.as_str(), now],
        ),
        JobChange::Finished(outcome) => {
            let json = serde_json::to_string(outcome).map_err(|e| JournalError::Corrupt {
                table: "jobs",
                key: id.to_string(),
                why: format!("outcome does not serialise: {e}"),
            })?;
            let has_result = !matches!(outcome, JobOutcome::Cancelled { .. });
            transaction.execute(
                "UPDATE jobs SET state = ?2, outcome = ?3, has_result = ?4, updated_at = ?5
                 WHERE id = ?1",
                params![
                    id.as_str(),
                    JobPhase::Finished.as_str(),
                    json,
                    has_result,
                    now
                ],
            )
        }
    }
    .map_err(JournalError::sql("recording a job change"))?;
    if updated == 0 {
        return Err(JournalError::UnknownJob(id.to_string()));
    }
    let sha: String = transaction
        .query_row("SELECT sha FROM jobs WHERE id = ?1", [id.as_str()], |row| {
            row.get(0)
        })
        .map_err(JournalError::sql("reading a job's commit"))?;
    CommitSha::new(&sha).map_err(|e| JournalError::Corrupt {
        table: "jobs",
        key: id.to_string(),
        why: e.to_string(),
    })
}

fn parse_request(pr: i64, sha: &str, backend: &str) -> Result<JobRequest, String> {
    Ok(JobRequest {
        pr: u64::try_from(pr)
            .map_err(|_| format!("pr {pr}"))
            .and_then(|n| PrNumber::new(n).map_err(|e| e.to_string()))?,
        sha: CommitSha::new(sha).map_err(|e| e.to_string())?,
        backend: BackendName::new(backend).map_err(|e| e.to_string())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{StatusState, Step};

    fn journal() -> (tempfile::TempDir, Journal) {
        let dir = tempfile::tempdir().expect("temp dir");
        let journal = Journal::open(dir.path()).expect("open journal");
        (dir, journal)
    }

    fn request(sha_digit: char, backend: &str) -> JobRequest {
        JobRequest {
            pr: PrNumber::new(129).expect("pr"),
            sha: CommitSha::new(&sha_digit.to_string().repeat(40)).expect("sha"),
            backend: BackendName::new(backend).expect("backend"),
        }
    }

    fn pending(text: &str) -> CommitStatus {
        CommitStatus {
            context: "3rdparty/demo".into(),
            state: StatusState::Pending,
            description: text.into(),
            target_url: None,
        }
    }

    #[test]
    fn each_change_moves_the_job_and_queues_its_status_on_the_jobs_commit() {
        let (_dir, journal) = journal();
        let id = JobId::parse("job-1").expect("id");
        let request = request('a', "demo");
        journal
            .record_job(&id, JobChange::Queued(&request), &pending("queued"))
            .expect("queued");
        journal
            .record_job(&id, JobChange::Started, &pending("running"))
            .expect("started");
        assert_eq!(
            journal.job(&id).expect("read"),
            Some((JobPhase::Running, 1))
        );
        journal
            .record_job(&id, JobChange::Requeued, &pending("re-queued"))
            .expect("requeued");
        journal
            .record_job(&id, JobChange::Started, &pending("running"))
            .expect("started again");
        let outcome = JobOutcome::Success;
        let mut done = pending("passed");
        done.state = StatusState::Success;
        journal
            .record_job(&id, JobChange::Finished(&outcome), &done)
            .expect("finished");
        assert_eq!(
            journal.job(&id).expect("read"),
            Some((JobPhase::Finished, 2))
        );
        let statuses = journal.unsent_statuses().expect("statuses");
        let texts: Vec<&str> = statuses
            .iter()
            .map(|s| s.status.description.as_str())
            .collect();
        assert_eq!(
            texts,
            ["queued", "running", "re-queued", "running", "passed"]
        );
        assert!(statuses.iter().all(|s| s.sha == request.sha));
        assert_eq!(
            journal.recent_results(10).expect("results"),
            [(request.sha.clone(), request.backend.clone())]
        );
    }

    #[test]
    fn live_jobs_come_back_in_queue_order_and_cancelled_ones_are_no_result() {
        let (_dir, journal) = journal();
        let ids: Vec<JobId> = ["j-1", "j-2", "j-3"]
            .iter()
            .map(|id| JobId::parse(id).expect("id"))
            .collect();
        for (id, digit) in ids.iter().zip(['a', 'b', 'c']) {
            journal
                .record_job(
                    id,
                    JobChange::Queued(&request(digit, "demo")),
                    &pending("queued"),
                )
                .expect("queued");
        }
        journal
            .record_job(&ids[0], JobChange::Started, &pending("running"))
            .expect("started");
        let cancelled = JobOutcome::Cancelled {
            reason: "superseded".into(),
        };
        journal
            .record_job(
                &ids[1],
                JobChange::Finished(&cancelled),
                &pending("cancelled"),
            )
            .expect("cancelled");
        let live = journal.live_jobs().expect("live");
        let seen: Vec<(&str, JobPhase, u32)> = live
            .iter()
            .map(|j| (j.id.as_str(), j.phase, j.attempts))
            .collect();
        assert_eq!(
            seen,
            [("j-1", JobPhase::Running, 1), ("j-3", JobPhase::Queued, 0)]
        );
        assert!(journal.recent_results(10).expect("results").is_empty());
    }

    #[test]
    fn a_change_to_an_unknown_job_writes_nothing() {
        let (_dir, journal) = journal();
        let outcome = JobOutcome::Error {
            step: Step::Fetch,
            reason: "x".into(),
        };
        let error = journal
            .record_job(
                &JobId::parse("nope").expect("id"),
                JobChange::Finished(&outcome),
                &pending("error"),
            )
            .expect_err("unknown job");
        assert!(matches!(error, JournalError::UnknownJob(_)), "{error}");
        assert!(journal.unsent_statuses().expect("statuses").is_empty());
    }

    #[test]
    fn pruning_drops_only_old_finished_jobs() {
        let (_dir, journal) = journal();
        let outcome = JobOutcome::Success;
        for n in 0..4 {
            let id = JobId::parse(&format!("old-{n}")).expect("id");
            journal
                .record_job(&id, JobChange::Queued(&request('d', "demo")), &pending("q"))
                .expect("queued");
            journal
                .record_job(&id, JobChange::Finished(&outcome), &pending("done"))
                .expect("finished");
        }
        let live = JobId::parse("live").expect("id");
        journal
            .record_job(
                &live,
                JobChange::Queued(&request('e', "demo")),
                &pending("q"),
            )
            .expect("queued");
        assert_eq!(journal.prune_jobs(1).expect("prune"), 3);
        assert!(journal.job(&live).expect("read").is_some());
        assert!(journal
            .job(&JobId::parse("old-3").expect("id"))
            .expect("read")
            .is_some());
        assert!(journal
            .job(&JobId::parse("old-0").expect("id"))
            .expect("read")
            .is_none());
    }
}
