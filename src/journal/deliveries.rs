//! Accepted deliveries: recorded before they are acknowledged, marked once
//! the dispatcher has acted on them. The body is dropped at that point; the
//! id stays for a while so a redelivery after a restart is still recognised.

use std::time::SystemTime;

use rusqlite::{params, OptionalExtension};

use super::{from_millis, to_millis, Journal, JournalError};

/// Dispatched deliveries whose ids are kept for de-duplication. GitHub
/// redelivers within hours; this covers days of traffic.
pub(super) const DISPATCHED_DELIVERIES_KEPT: i64 = 20_000;

/// Whether [`Journal::record_delivery`] wrote a new row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryRecord {
    New,
    /// A delivery with this id was accepted before (a redelivery).
    AlreadyRecorded,
}

/// A delivery accepted but not yet acted on, to be dispatched again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredDelivery {
    pub id: String,
    /// The `X-GitHub-Event` name.
    pub event: String,
    pub received_at: SystemTime,
    /// The verified raw body, parsed again on re-dispatch.
    pub body: Vec<u8>,
}

impl Journal {
    /// Records an accepted delivery; durable when this returns.
    pub fn record_delivery(
        &self,
        id: &str,
        event: &str,
        received_at: SystemTime,
        body: &[u8],
    ) -> Result<DeliveryRecord, JournalError> {
        let inserted = self
            .lock()
            .execute(
                "INSERT INTO deliveries (id, event, received_at, body) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO NOTHING",
                params![id, event, to_millis(received_at), body],
            )
            .map_err(JournalError::sql("recording a delivery"))?;
        Ok(if inserted == 1 {
            DeliveryRecord::New
        } else {
            DeliveryRecord::AlreadyRecorded
        })
    }

    /// [`Journal::record_delivery`], also known under `key` (the event's
    /// key, e.g. `issue-comment-<id>`): a delivery whose id or key was
    /// recorded before is a duplicate. The key is kept as a row with no
    /// body, already dispatched, so it is never dispatched itself and ages
    /// out with the rest; no schema change.
    pub fn record_delivery_keyed(
        &self,
        id: &str,
        key: Option<&str>,
        event: &str,
        received_at: SystemTime,
        body: &[u8],
    ) -> Result<DeliveryRecord, JournalError> {
        let Some(key) = key.filter(|key| *key != id) else {
            return self.record_delivery(id, event, received_at, body);
        };
        let mut connection = self.lock();
        let transaction = connection
            .transaction()
            .map_err(JournalError::sql("recording a delivery"))?;
        let known: bool = transaction
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM deliveries WHERE id IN (?1, ?2))",
                params![id, key],
                |row| row.get(0),
            )
            .map_err(JournalError::sql("looking up a delivery"))?;
        if known {
            return Ok(DeliveryRecord::AlreadyRecorded);
        }
        transaction
            .execute(
                "INSERT INTO deliveries (id, event, received_at, body) VALUES (?1, ?2, ?3, ?4)",
                params![id, event, to_millis(received_at), body],
            )
            .map_err(JournalError::sql("recording a delivery"))?;
        transaction
            .execute(
                "INSERT INTO deliveries (id, event, received_at, body, dispatched)
                 VALUES (?1, ?2, ?3, NULL, 1)",
                params![key, event, to_millis(received_at)],
            )
            .map_err(JournalError::sql("recording a delivery's key"))?;
        transaction
            .commit()
            .map_err(JournalError::sql("recording a delivery"))?;
        Ok(DeliveryRecord::New)
    }

    /// The dispatcher has acted on the delivery: its body is no longer needed.
    pub fn mark_dispatched(&self, id: &str) -> Result<(), JournalError> {
        self.lock()
            .execute(
                "UPDATE deliveries SET dispatched = 1, body = NULL WHERE id = ?1",
                [id],
            )
            .map_err(JournalError::sql("marking a delivery dispatched"))?;
        Ok(())
    }

    /// Deliveries accepted but never acted on, oldest first.
    pub fn undispatched_deliveries(&self) -> Result<Vec<StoredDelivery>, JournalError> {
        let connection = self.lock();
        let mut statement = connection
            .prepare(
                "SELECT id, event, received_at, body FROM deliveries
                 WHERE dispatched = 0 ORDER BY seq",
            )
            .map_err(JournalError::sql("listing undispatched deliveries"))?;
        let rows = statement
            .query_map([], |row| {
                Ok(StoredDelivery {
                    id: row.get(0)?,
                    event: row.get(1)?,
                    received_at: from_millis(row.get(2)?),
                    body: row.get::<_, Option<Vec<u8>>>(3)?.unwrap_or_default(),
                })
            })
            .map_err(JournalError::sql("listing undispatched deliveries"))?;
        rows.collect::<Result<_, _>>()
            .map_err(JournalError::sql("reading undispatched deliveries"))
    }

    /// Whether a delivery id was recorded (and is still remembered).
    pub fn has_delivery(&self, id: &str) -> Result<bool, JournalError> {
        self.lock()
            .query_row("SELECT 1 FROM deliveries WHERE id = ?1", [id], |_| Ok(()))
            .optional()
            .map(|found| found.is_some())
            .map_err(JournalError::sql("looking up a delivery"))
    }

    /// Every delivery remembered, dispatched or not.
    pub fn delivery_count(&self) -> Result<u64, JournalError> {
        self.lock()
            .query_row("SELECT count(*) FROM deliveries", [], |row| row.get(0))
            .map_err(JournalError::sql("counting deliveries"))
    }

    /// Forgets dispatched deliveries beyond the newest `keep`. Returns how
    /// many were removed.
    pub(super) fn prune_deliveries(&self, keep: i64) -> Result<usize, JournalError> {
        self.lock()
            .execute(
                "DELETE FROM deliveries WHERE dispatched = 1 AND seq <= (
                     SELECT seq FROM deliveries WHERE dispatched = 1
                     ORDER BY seq DESC LIMIT 1 OFFSET ?1)",
                [keep],
            )
            .map_err(JournalError::sql("pruning old deliveries"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn journal() -> (tempfile::TempDir, Journal) {
        let dir = tempfile::tempdir().expect("temp dir");
        let journal = Journal::open(dir.path()).expect("open journal");
        (dir, journal)
    }

    #[test]
    fn a_delivery_is_known_by_its_id_and_by_its_key() {
        let (_dir, journal) = journal();
        let now = SystemTime::now();
        let record = |id, key| journal.record_delivery_keyed(id, key, "issue_comment", now, b"1");
        assert_eq!(
            record("uuid-1", Some("issue-comment-7")).expect("first"),
            DeliveryRecord::New
        );
        assert_eq!(
            record("issue-comment-7", Some("issue-comment-7")).expect("by key"),
            DeliveryRecord::AlreadyRecorded
        );
        assert_eq!(
            record("uuid-1", None).expect("by id"),
            DeliveryRecord::AlreadyRecorded
        );
        // Only the delivery itself waits for the dispatcher, not its key.
        let pending = journal.undispatched_deliveries().expect("list");
        assert_eq!(pending.len(), 1);
        assert_eq!(pending[0].id, "uuid-1");
    }

    #[test]
    fn a_redelivery_is_recognised_by_its_id() {
        let (_dir, journal) = journal();
        let now = SystemTime::now();
        let first = journal.record_delivery("abc", "pull_request", now, b"1");
        let again = journal.record_delivery("abc", "pull_request", now, b"2");
        assert_eq!(first.expect("first"), DeliveryRecord::New);
        assert_eq!(again.expect("again"), DeliveryRecord::AlreadyRecorded);
        assert!(journal.has_delivery("abc").expect("lookup"));
        assert!(!journal.has_delivery("other").expect("lookup"));
    }

    #[test]
    fn only_undispatched_deliveries_come_back_in_arrival_order_with_their_bodies() {
        let (_dir, journal) = journal();
        let now = SystemTime::now();
        for (id, body) in [("a", "A"), ("b", "B"), ("c", "C")] {
            journal
                .record_delivery(id, "pull_request", now, body.as_bytes())
                .expect("record");
        }
        journal.mark_dispatched("b").expect("mark");
        let pending = journal.undispatched_deliveries().expect("list");
        let seen: Vec<(&str, &[u8])> = pending
            .iter()
            .map(|d| (d.id.as_str(), d.body.as_slice()))
            .collect();
        assert_eq!(seen, [("a", &b"A"[..]), ("c", &b"C"[..])]);
        assert_eq!(pending[0].event, "pull_request");
    }

    #[test]
    fn pruning_keeps_undispatched_and_recent_deliveries() {
        let (_dir, journal) = journal();
        let now = SystemTime::now();
        journal
            .record_delivery("waiting", "pull_request", now, b"")
            .expect("record");
        let (keep, extra) = (3, 2);
        for n in 0..keep + extra {
            let id = format!("done-{n}");
            journal
                .record_delivery(&id, "pull_request", now, b"")
                .expect("record");
            journal.mark_dispatched(&id).expect("mark");
        }
        assert_eq!(
            journal.prune_deliveries(keep).expect("prune"),
            extra as usize
        );
        assert!(journal.has_delivery("waiting").expect("lookup"));
        assert!(!journal.has_delivery("done-0").expect("lookup"));
        assert!(journal
            .has_delivery(&format!("done-{extra}"))
            .expect("lookup"));
    }
}
