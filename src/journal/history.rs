//! Each finished job's result and failing specs, kept [`HISTORY_DAYS`]
//! for the backend history (`history::BackendHistory`).

use std::time::{Duration, SystemTime};

use rusqlite::params;

use super::{to_millis, Journal, JournalError};
use crate::history::{BackendHistory, JobResult, SpecCounts, HISTORY_DAYS};
use crate::model::{JobId, JobRequest};
use crate::sanity::SuiteResults;

const SECS_PER_DAY: u64 = 24 * 60 * 60;

impl Journal {
    /// Records a finished job's result (`success`, `failure`, `error`), its
    /// status description and what its suite reported.
    pub fn record_result(
        &self,
        id: &JobId,
        request: &JobRequest,
        result: &str,
        description: &str,
        sanity: Option<&SuiteResults>,
        finished_at: SystemTime,
    ) -> Result<(), JournalError> {
        let mut connection = self.lock();
        let transaction = connection
            .transaction()
            .map_err(JournalError::sql("recording a job's result"))?;
        let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        transaction
            .execute(
                "INSERT OR REPLACE INTO job_results
                 (id, pr, sha, backend, result, description, finished_at, passed, failed, skipped)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    id.as_str(),
                    request.pr.get(),
                    request.sha.as_str(),
                    request.backend.as_str(),
                    result,
                    description,
                    to_millis(finished_at),
                    sanity.map(|s| count(s.passed)),
                    sanity.map(|s| count(s.failed)),
                    sanity.map(|s| count(s.skipped)),
                ],
            )
            .map_err(JournalError::sql("recording a job's result"))?;
        transaction
            .execute("DELETE FROM spec_failures WHERE job_id = ?1", [id.as_str()])
            .map_err(JournalError::sql("recording a job's failing specs"))?;
        for failure in sanity.map(|s| s.failures.as_slice()).unwrap_or_default() {
            transaction
                .execute(
                    "INSERT INTO spec_failures (job_id, spec) VALUES (?1, ?2)",
                    params![id.as_str(), failure.short_name()],
                )
                .map_err(JournalError::sql("recording a job's failing specs"))?;
        }
        transaction
            .commit()
            .map_err(JournalError::sql("recording a job's result"))
    }

    /// The backend's history over the last [`HISTORY_DAYS`] before `now`.
    pub fn backend_history(
        &self,
        backend: &str,
        now: SystemTime,
    ) -> Result<BackendHistory, JournalError> {
        let since = to_millis(window_start(now));
        let connection = self.lock();
        let mut statement = connection
            .prepare_cached(
                "SELECT id, pr, sha, result, description, finished_at, passed, failed, skipped
                 FROM job_results WHERE backend = ?1 AND finished_at >= ?2",
            )
            .map_err(JournalError::sql("reading a backend's history"))?;
        let mut jobs: Vec<JobResult> = statement
            .query_map(params![backend, since], job_result)
            .and_then(Iterator::collect)
            .map_err(JournalError::sql("reading a backend's history"))?;
        let mut failures = connection
            .prepare_cached(
                "SELECT f.job_id, f.spec FROM spec_failures f
                 JOIN job_results r ON r.id = f.job_id
                 WHERE r.backend = ?1 AND r.finished_at >= ?2",
            )
            .map_err(JournalError::sql("reading failing specs"))?;
        let rows: Vec<(String, String)> = failures
            .query_map(params![backend, since], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .and_then(Iterator::collect)
            .map_err(JournalError::sql("reading failing specs"))?;
        let index: std::collections::HashMap<String, usize> = jobs
            .iter()
            .enumerate()
            .map(|(i, job)| (job.id.clone(), i))
            .collect();
        for (job_id, spec) in rows {
            if let Some(&i) = index.get(&job_id) {
                jobs[i].failed_specs.push(spec);
            }
        }
        Ok(BackendHistory::summarise(backend, jobs, since))
    }

    /// Drops results older than the history window.
    pub(super) fn prune_results(&self, now: SystemTime) -> Result<usize, JournalError> {
        let since = to_millis(window_start(now));
        let connection = self.lock();
        connection
            .execute(
                "DELETE FROM spec_failures WHERE job_id IN
                 (SELECT id FROM job_results WHERE finished_at < ?1)",
                [since],
            )
            .map_err(JournalError::sql("pruning old failing specs"))?;
        connection
            .execute("DELETE FROM job_results WHERE finished_at < ?1", [since])
            .map_err(JournalError::sql("pruning old job results"))
    }
}

/// A `job_results` row selected as `id, pr, sha, result, description,
/// finished_at, passed, failed, skipped`, without its failing specs.
fn job_result(row: &rusqlite::Row<'_>) -> rusqlite::Result<JobResult> {
    let unsigned = |n: i64| u64::try_from(n).unwrap_or(0);
    let counts: (Option<i64>, Option<i64>, Option<i64>) = (row.get(6)?, row.get(7)?, row.get(8)?);
    Ok(JobResult {
        id: row.get(0)?,
        pr: unsigned(row.get(1)?),
        sha: row.get(2)?,
        result: row.get(3)?,
        description: row.get(4)?,
        finished_at_ms: row.get(5)?,
        specs: match counts {
            (Some(passed), Some(failed), Some(skipped)) => Some(SpecCounts {
                passed: unsigned(passed),
                failed: unsigned(failed),
                skipped: unsigned(skipped),
            }),
            _ => None,
        },
        failed_specs: Vec::new(),
    })
}

/// The start of the history window ending at `now`.
fn window_start(now: SystemTime) -> SystemTime {
    now.checked_sub(Duration::from_secs(HISTORY_DAYS * SECS_PER_DAY))
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// The service's results log: each finished job's result, failing specs
/// and masked description go to the journal.
impl crate::logs::ResultLog for Journal {
    fn record(
        &self,
        log: &crate::logs::JobLog,
        outcome: &crate::model::JobOutcome,
        description: &str,
    ) {
        let sanity = crate::logs::JobRecord::read(log.dir())
            .ok()
            .and_then(|record| record.sanity);
        let recorded = self.record_result(
            log.id(),
            log.request(),
            outcome.status_state().as_str(),
            description,
            sanity.as_ref(),
            SystemTime::now(),
        );
        if let Err(err) = recorded {
            tracing::warn!(job = %log.id(), error = %err, "cannot keep the job's result for the history");
        }
    }

    fn history(&self, backend: &crate::model::BackendName) -> Option<BackendHistory> {
        self.backend_history(backend.as_str(), SystemTime::now())
            .map_err(
                |err| tracing::warn!(%backend, error = %err, "cannot read the backend's history"),
            )
            .ok()
    }
}
