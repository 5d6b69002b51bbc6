//! The journal: what ember-ci must not forget when it dies, in one SQLite
//! file (`<CI_DIR>/journal.sqlite`, WAL mode).
//!
//! It owns these records and nothing else:
//! - [`deliveries`](Journal::record_delivery): every accepted delivery, written
//!   before the 202, kept with its body until the dispatcher has turned it into
//!   work, so a crash in between re-dispatches it on the next start; the ids
//!   also de-duplicate redeliveries across restarts.
//! - [`jobs`](Journal::record_job): every job's state change (queued, running,
//!   finished) with its attempts and outcome, so start-up recovery knows what
//!   was interrupted.
//! - [`statuses`](Journal::queue_status): the commit statuses not yet accepted
//!   by GitHub, in the order they were queued.
//! - [`job results`](Journal::record_result): each finished job's result
//!   and failing specs for [`HISTORY_DAYS`](crate::history::HISTORY_DAYS),
//!   the backend history's source.
//! - the trust gate's memory ([`consume_comment`](Journal::consume_comment),
//!   [`record_head_push`](Journal::record_head_push), held and approved
//!   heads): a comment acts at most once, ever, and an ok is judged against
//!   signed push times, across restarts.
//!
//! A job's state change and the status announcing it are written in one
//! transaction: after a crash either both happened or neither did, so a
//! finished job can never be run again for want of its final status, nor a
//! final status be lost behind a job that looks unfinished.
//!
//! The journal decides nothing: the scheduler's recovery reads it and
//! chooses. Every call is a short synchronous write (microseconds, plus one
//! fsync per commit), made from the request or job task that needs it.

mod deliveries;
mod history;
mod jobs;
pub mod permissions;
mod schema;
mod statuses;
mod trust;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::Connection;
use thiserror::Error;

pub use deliveries::{body_digest, DeliveryRecord, StoredDelivery};
pub use jobs::{JobChange, JobPhase, StoredJob};
pub use statuses::{StatusId, StoredStatus};

/// The journal's file name inside the state dir.
pub const JOURNAL_FILE: &str = "journal.sqlite";

/// How long a writer waits for another connection's lock (tests and tools
/// may read the journal while the service runs).
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the journal could not be opened, read or written.
#[derive(Debug, Error)]
pub enum JournalError {
    #[error("cannot create the state dir {path}: {source}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("journal {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("journal {path} has schema version {found}; this ember-ci knows up to {known} (was it written by a newer release?)")]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("journal {action}: {source}")]
    Sql {
        action: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    /// A row the journal wrote earlier no longer reads back as valid data.
    #[error("journal {table} row {key} is corrupt: {why}")]
    Corrupt {
        table: &'static str,
        key: String,
        why: String,
    },
    #[error("journal: no job {0}")]
    UnknownJob(String),
}

impl JournalError {
    fn sql(action: &'static str) -> impl FnOnce(rusqlite::Error) -> Self {
        move |source| JournalError::Sql { action, source }
    }
}

/// Handle to the journal; cheap to clone, shared by every task.
#[derive(Clone)]
pub struct Journal {
    path: Arc<PathBuf>,
    /// One connection: SQLite serialises writers anyway, and the lock is
    /// held only for one statement or transaction, never across an await.
    connection: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal").field("path", &self.path).finish()
    }
}

impl Journal {
    /// Opens (creating when needed) the journal in `state_dir` and brings its
    /// schema up to date.
    pub fn open(state_dir: &Path) -> Result<Self, JournalError> {
        create_private_dir(state_dir)?;
        Self::open_file(&state_dir.join(JOURNAL_FILE))
    }

    /// Opens the journal at `path` exactly.
    pub fn open_file(path: &Path) -> Result<Self, JournalError> {
        let open_error = |source| JournalError::Open {
            path: path.to_path_buf(),
            source,
        };
        let is_new = !path.exists();
        let mut connection = Connection::open(path).map_err(open_error)?;
        if is_new {
            restrict_to_owner(path);
        }
        connection.busy_timeout(BUSY_TIMEOUT).map_err(open_error)?;
        // WAL: readers never block the writer. FULL: a commit is on disk
        // before we answer 202, so an acknowledged delivery survives even a
        // power loss, not only a crash of this process.
        connection
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(open_error)?;
        connection
            .pragma_update(None, "synchronous", "FULL")
            .map_err(open_error)?;
        connection
            .pragma_update(None, "foreign_keys", "ON")
            .map_err(open_error)?;
        schema::migrate(&mut connection, path)?;
        Ok(Self {
            path: Arc::new(path.to_path_buf()),
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Folds the write-ahead log into the main file, so a stopped service
    /// leaves one self-contained file behind.
    pub fn checkpoint(&self) -> Result<(), JournalError> {
        self.lock()
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(JournalError::sql("checkpointing the write-ahead log"))
    }

    /// Forgets what is only history: dispatched deliveries and finished jobs
    /// beyond the newest 20,000 of each. Returns how many rows went.
    pub fn prune(&self) -> Result<usize, JournalError> {
        Ok(
            self.prune_deliveries(deliveries::DISPATCHED_DELIVERIES_KEPT)?
                + self.prune_jobs(jobs::FINISHED_JOBS_KEPT)?
                + self.prune_results(SystemTime::now())?,
        )
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a half-written row:
        // SQLite rolls back any open transaction when the guard's user unwinds.
        self.connection
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Milliseconds since the Unix epoch, the journal's time format.
fn to_millis(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn from_millis(millis: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or(0))
}

/// Creates the state dir readable by its owner only when it does not exist
/// yet; an existing dir keeps its mode (the permission check reports it).
fn create_private_dir(dir: &Path) -> Result<(), JournalError> {
    use std::os::unix::fs::DirBuilderExt;
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| JournalError::StateDir {
            path: dir.to_path_buf(),
            source,
        })
}

/// The journal holds delivery bodies (PR titles, comment texts) and the
/// status history: nobody but the service's user needs to read it.
fn restrict_to_owner(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Err(error) = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        tracing::warn!(path = %path.display(), %error, "cannot make the journal private to its owner");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opening_twice_keeps_the_schema_and_the_rows() {
        let dir = tempfile::tempdir().expect("temp dir");
        let journal = Journal::open(dir.path()).expect("first open");
        journal
            .record_delivery("d-1", "pull_request", SystemTime::now(), b"{}")
            .expect("record");
        drop(journal);
        let journal = Journal::open(dir.path()).expect("second open");
        assert_eq!(journal.delivery_count().expect("count"), 1);
        assert_eq!(
            schema::version(&journal.lock()).expect("version"),
            schema::LATEST_VERSION
        );
    }

    #[test]
    fn a_journal_from_a_newer_release_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join(JOURNAL_FILE);
        {
            let connection = Connection::open(&path).expect("create");
            connection
                .pragma_update(None, "user_version", schema::LATEST_VERSION + 1)
                .expect("set version");
        }
        let error = Journal::open_file(&path).expect_err("must refuse");
        assert!(matches!(error, JournalError::TooNew { .. }), "{error}");
    }

    #[test]
    fn a_new_journal_and_state_dir_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("temp dir");
        let state = dir.path().join("state");
        Journal::open(&state).expect("open");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&state.join(JOURNAL_FILE)), 0o600);
    }
}
