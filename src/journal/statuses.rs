//! The persistent side of the status outbox: statuses queued and not yet
//! accepted (or refused for good) by GitHub, in queue order.

use std::time::SystemTime;

use rusqlite::{params, Connection};

use super::{to_millis, Journal, JournalError};
use crate::model::{CommitSha, CommitStatus, StatusState};

/// A queued status's place in the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct StatusId(i64);

/// A status waiting to be posted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredStatus {
    pub id: StatusId,
    pub sha: CommitSha,
    pub status: CommitStatus,
}

impl Journal {
    /// Queues a status that is not tied to a job change (e.g. "waiting for
    /// /ok-to-test").
    pub fn queue_status(
        &self,
        sha: &CommitSha,
        status: &CommitStatus,
    ) -> Result<StatusId, JournalError> {
        insert_status(&self.lock(), sha, status)
    }

    /// GitHub accepted the status, or refused it for good: it leaves the outbox.
    pub fn status_done(&self, id: StatusId) -> Result<(), JournalError> {
        self.lock()
            .execute("DELETE FROM statuses WHERE seq = ?1", [id.0])
            .map_err(JournalError::sql("removing a posted status"))?;
        Ok(())
    }

    /// Statuses still to post, oldest first.
    pub fn unsent_statuses(&self) -> Result<Vec<StoredStatus>, JournalError> {
        let connection = self.lock();
        let mut statement = connection
            .prepare(
                "SELECT seq, sha, context, state, description, target_url FROM statuses
                 ORDER BY seq",
            )
            .map_err(JournalError::sql("listing unsent statuses"))?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                    row.get::<_, Option<String>>(5)?,
                ))
            })
            .map_err(JournalError::sql("listing unsent statuses"))?;
        let mut statuses = Vec::new();
        for row in rows {
            let (seq, sha, context, state, description, target_url) =
                row.map_err(JournalError::sql("reading unsent statuses"))?;
            let corrupt = |why: String| JournalError::Corrupt {
                table: "statuses",
                key: seq.to_string(),
                why,
            };
            statuses.push(StoredStatus {
                id: StatusId(seq),
                sha: CommitSha::new(&sha).map_err(|e| corrupt(e.to_string()))?,
                status: CommitStatus {
                    context,
                    state: parse_state(&state).ok_or_else(|| corrupt(format!("state {state}")))?,
                    description,
                    target_url,
                },
            });
        }
        Ok(statuses)
    }
}

/// Inserts one status row on `connection` (a transaction, when the status
/// belongs with another change).
pub(super) fn insert_status(
    connection: &Connection,
    sha: &CommitSha,
    status: &CommitStatus,
) -> Result<StatusId, JournalError> {
    connection
        .execute(
            "INSERT INTO statuses (sha, context, state, description, target_url, queued_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                sha.as_str(),
                status.context,
                status.state.as_str(),
                status.description,
                status.target_url,
                to_millis(SystemTime::now())
            ],
        )
        .map_err(JournalError::sql("queueing a status"))?;
    Ok(StatusId(connection.last_insert_rowid()))
}

fn parse_state(text: &str) -> Option<StatusState> {
    [
        StatusState::Pending,
        StatusState::Success,
        StatusState::Failure,
        StatusState::Error,
    ]
    .into_iter()
    .find(|state| state.as_str() == text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_survive_a_reopen_until_marked_done() {
        let dir = tempfile::tempdir().expect("temp dir");
        let sha = CommitSha::new(&"f".repeat(40)).expect("sha");
        let status = |state, text: &str| CommitStatus {
            context: "3rdparty/demo".into(),
            state,
            description: text.into(),
            target_url: Some("http://ci/jobs/1/".into()),
        };
        let journal = Journal::open(dir.path()).expect("open");
        let first = journal
            .queue_status(&sha, &status(StatusState::Pending, "queued"))
            .expect("queue");
        journal
            .queue_status(&sha, &status(StatusState::Failure, "failed at build"))
            .expect("queue");
        journal.status_done(first).expect("done");
        drop(journal);

        let journal = Journal::open(dir.path()).expect("reopen");
        let unsent = journal.unsent_statuses().expect("list");
        assert_eq!(unsent.len(), 1);
        assert_eq!(unsent[0].sha, sha);
        assert_eq!(
            unsent[0].status,
            status(StatusState::Failure, "failed at build")
        );
    }
}
