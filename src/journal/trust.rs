//! The trust gate's memory. Every function is one short statement, so the
//! relay's API-read comments and heads go through the same records as
//! webhook deliveries.
//!
//! - consumed comments: a comment's commands act at most once, ever; a
//!   replayed delivery of it (new delivery id, relay, redelivery after the
//!   journal forgot the id) does nothing.
//! - head pushes: when each (PR, head) was pushed, from the signed
//!   `opened`/`synchronize` payload or, when only the API knows the head,
//!   from when ember-ci first saw it.
//! - held heads (an untrusted head waiting for an ok, one per PR) and
//!   approved heads (a member's ok covers exactly that head).

use std::time::SystemTime;

use rusqlite::{params, OptionalExtension};

use super::{from_millis, to_millis, Journal, JournalError};
use crate::model::{CommitSha, PrNumber};

fn pr_key(pr: PrNumber) -> i64 {
    i64::try_from(pr.get()).unwrap_or(i64::MAX)
}

fn parse_sha(table: &'static str, pr: PrNumber, sha: &str) -> Result<CommitSha, JournalError> {
    CommitSha::new(sha).map_err(|e| JournalError::Corrupt {
        table,
        key: pr.to_string(),
        why: e.to_string(),
    })
}

impl Journal {
    /// Marks comment `id` as acted on. False when it already was: the
    /// caller must then do nothing with it.
    pub fn consume_comment(&self, id: u64, at: SystemTime) -> Result<bool, JournalError> {
        let id = i64::try_from(id).unwrap_or(i64::MAX);
        let inserted = self
            .lock()
            .execute(
                "INSERT INTO consumed_comments (id, consumed_at) VALUES (?1, ?2)
                 ON CONFLICT DO NOTHING",
                params![id, to_millis(at)],
            )
            .map_err(JournalError::sql("consuming a comment"))?;
        Ok(inserted == 1)
    }

    /// Records that `sha` became the head of `pr` at `pushed_at`. A head
    /// seen twice keeps the later time: an ok must postdate every push of it.
    pub fn record_head_push(
        &self,
        pr: PrNumber,
        sha: &CommitSha,
        pushed_at: SystemTime,
    ) -> Result<(), JournalError> {
        self.lock()
            .execute(
                "INSERT INTO head_pushes (pr, sha, pushed_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (pr, sha) DO UPDATE SET pushed_at = max(pushed_at, excluded.pushed_at)",
                params![pr_key(pr), sha.as_str(), to_millis(pushed_at)],
            )
            .map_err(JournalError::sql("recording a head push"))?;
        Ok(())
    }

    /// When `sha` was pushed to `pr`, if known.
    pub fn head_pushed_at(
        &self,
        pr: PrNumber,
        sha: &CommitSha,
    ) -> Result<Option<SystemTime>, JournalError> {
        self.lock()
            .query_row(
                "SELECT pushed_at FROM head_pushes WHERE pr = ?1 AND sha = ?2",
                params![pr_key(pr), sha.as_str()],
                |row| row.get::<_, i64>(0),
            )
            .optional()
            .map(|found| found.map(from_millis))
            .map_err(JournalError::sql("reading a head push"))
    }

    /// The PR's most recently pushed head and its push time.
    pub fn latest_head_push(
        &self,
        pr: PrNumber,
    ) -> Result<Option<(CommitSha, SystemTime)>, JournalError> {
        let found = self
            .lock()
            .query_row(
                "SELECT sha, pushed_at FROM head_pushes WHERE pr = ?1
                 ORDER BY pushed_at DESC LIMIT 1",
                [pr_key(pr)],
                |row| Ok((row.get::<_, String>(0)?, row.get::<_, i64>(1)?)),
            )
            .optional()
            .map_err(JournalError::sql("reading the latest head push"))?;
        found
            .map(|(sha, at)| Ok((parse_sha("head_pushes", pr, &sha)?, from_millis(at))))
            .transpose()
    }

    /// Holds `sha` as the PR's head waiting for an ok. Returns the head held
    /// before if it was another one.
    pub fn hold_head(
        &self,
        pr: PrNumber,
        sha: &CommitSha,
    ) -> Result<Option<CommitSha>, JournalError> {
        let previous = self.held_head(pr)?;
        self.lock()
            .execute(
                "INSERT INTO held_heads (pr, sha) VALUES (?1, ?2)
                 ON CONFLICT (pr) DO UPDATE SET sha = excluded.sha",
                params![pr_key(pr), sha.as_str()],
            )
            .map_err(JournalError::sql("holding a head"))?;
        Ok(previous.filter(|old| old != sha))
    }

    /// The PR's head waiting for an ok.
    pub fn held_head(&self, pr: PrNumber) -> Result<Option<CommitSha>, JournalError> {
        let found = self
            .lock()
            .query_row(
                "SELECT sha FROM held_heads WHERE pr = ?1",
                [pr_key(pr)],
                |row| row.get::<_, String>(0),
            )
            .optional()
            .map_err(JournalError::sql("reading a held head"))?;
        found
            .map(|sha| parse_sha("held_heads", pr, &sha))
            .transpose()
    }

    /// Forgets the PR's held head; returns it.
    pub fn release_head(&self, pr: PrNumber) -> Result<Option<CommitSha>, JournalError> {
        let held = self.held_head(pr)?;
        self.lock()
            .execute("DELETE FROM held_heads WHERE pr = ?1", [pr_key(pr)])
            .map_err(JournalError::sql("releasing a held head"))?;
        Ok(held)
    }

    /// A member's ok for exactly this head: it is no longer held.
    pub fn approve_head(
        &self,
        pr: PrNumber,
        sha: &CommitSha,
        at: SystemTime,
    ) -> Result<(), JournalError> {
        let mut connection = self.lock();
        let transaction = connection
            .transaction()
            .map_err(JournalError::sql("approving a head"))?;
        transaction
            .execute(
                "DELETE FROM held_heads WHERE pr = ?1 AND sha = ?2",
                params![pr_key(pr), sha.as_str()],
            )
            .map_err(JournalError::sql("approving a head"))?;
        transaction
            .execute(
                "INSERT INTO approved_heads (pr, sha, approved_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
                params![pr_key(pr), sha.as_str(), to_millis(at)],
            )
            .map_err(JournalError::sql("approving a head"))?;
        transaction
            .commit()
            .map_err(JournalError::sql("approving a head"))
    }

    pub fn is_head_approved(&self, pr: PrNumber, sha: &CommitSha) -> Result<bool, JournalError> {
        self.lock()
            .query_row(
                "SELECT 1 FROM approved_heads WHERE pr = ?1 AND sha = ?2",
                params![pr_key(pr), sha.as_str()],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
            .map_err(JournalError::sql("reading an approval"))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn sha(digit: char) -> CommitSha {
        CommitSha::new(&digit.to_string().repeat(40)).expect("valid SHA")
    }

    #[test]
    fn the_trust_records_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("temp dir");
        let pr = PrNumber::new(7).expect("pr");
        {
            let journal = Journal::open(dir.path()).expect("open");
            assert!(journal.consume_comment(42, at(1)).expect("consume"));
            journal
                .record_head_push(pr, &sha('a'), at(10))
                .expect("push");
            journal
                .record_head_push(pr, &sha('b'), at(30))
                .expect("push");
            // Seen again with an older time: the later one stays.
            journal
                .record_head_push(pr, &sha('b'), at(20))
                .expect("push");
            assert_eq!(journal.hold_head(pr, &sha('a')).expect("hold"), None);
            assert_eq!(
                journal.hold_head(pr, &sha('b')).expect("hold"),
                Some(sha('a'))
            );
            journal
                .approve_head(pr, &sha('c'), at(40))
                .expect("approve");
        }
        let journal = Journal::open(dir.path()).expect("reopen");
        assert!(!journal.consume_comment(42, at(2)).expect("consume again"));
        assert_eq!(
            journal.latest_head_push(pr).expect("latest"),
            Some((sha('b'), at(30)))
        );
        assert_eq!(
            journal.head_pushed_at(pr, &sha('a')).expect("a"),
            Some(at(10))
        );
        assert_eq!(journal.held_head(pr).expect("held"), Some(sha('b')));
        assert!(journal.is_head_approved(pr, &sha('c')).expect("approved"));
        assert!(!journal.is_head_approved(pr, &sha('b')).expect("approved"));
        assert_eq!(journal.release_head(pr).expect("release"), Some(sha('b')));
        assert_eq!(journal.held_head(pr).expect("held"), None);
    }
}
