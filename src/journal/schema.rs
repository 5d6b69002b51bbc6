//! The journal's schema and its migrations, versioned with SQLite's
//! `user_version` pragma. Migrations only ever append: a released step is
//! never edited, so every journal reaches the same schema by the same path.

use std::path::Path;

use rusqlite::Connection;

use super::JournalError;

/// Each entry moves the schema from version `index` to `index + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: deliveries, jobs, the status outbox.
    r#"
    CREATE TABLE deliveries (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        id           TEXT NOT NULL UNIQUE,
        event        TEXT NOT NULL,
        received_at  INTEGER NOT NULL,
        -- The verified body, kept until the dispatcher has acted on it.
        body         BLOB,
        dispatched   INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX deliveries_pending ON deliveries (seq) WHERE dispatched = 0;

    CREATE TABLE jobs (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        id          TEXT NOT NULL UNIQUE,
        pr          INTEGER NOT NULL,
        sha         TEXT NOT NULL,
        backend     TEXT NOT NULL,
        state       TEXT NOT NULL CHECK (state IN ('queued', 'running', 'finished')),
        -- How many times the job was started.
        attempts    INTEGER NOT NULL DEFAULT 0,
        -- JSON of model::JobOutcome once finished.
        outcome     TEXT,
        -- 1 when finished with a result (not cancelled): the commit and
        -- backend need no new run unless someone asks for a recheck.
        has_result  INTEGER NOT NULL DEFAULT 0,
        queued_at   INTEGER NOT NULL,
        updated_at  INTEGER NOT NULL
    );
    CREATE INDEX jobs_live ON jobs (seq) WHERE state != 'finished';
    CREATE INDEX jobs_results ON jobs (seq) WHERE has_result = 1;

    CREATE TABLE statuses (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        sha          TEXT NOT NULL,
        context      TEXT NOT NULL,
        state        TEXT NOT NULL,
        description  TEXT NOT NULL,
        target_url   TEXT,
        queued_at    INTEGER NOT NULL
    );
    "#,
    // 2: the trust gate's memory: body digests of deliveries, comments
    // already acted on, when each head was pushed, the ok ledger.
    r#"
    ALTER TABLE deliveries ADD COLUMN digest TEXT;
    CREATE UNIQUE INDEX deliveries_digest ON deliveries (digest);

    CREATE TABLE consumed_comments (
        id           INTEGER PRIMARY KEY,
        consumed_at  INTEGER NOT NULL
    );
    CREATE TABLE head_pushes (
        pr         INTEGER NOT NULL,
        sha        TEXT NOT NULL,
        pushed_at  INTEGER NOT NULL,
        PRIMARY KEY (pr, sha)
    );
    CREATE TABLE held_heads (
        pr   INTEGER PRIMARY KEY,
        sha  TEXT NOT NULL
    );
    CREATE TABLE approved_heads (
        pr           INTEGER NOT NULL,
        sha          TEXT NOT NULL,
        approved_at  INTEGER NOT NULL,
        PRIMARY KEY (pr, sha)
    );
    "#,
    // 3: each finished job's result and failing specs, for the history
    // (web UI, API, metrics, the logs branch's summary).
    r#"
    CREATE TABLE job_results (
        id           TEXT PRIMARY KEY,
        pr           INTEGER NOT NULL,
        sha          TEXT NOT NULL,
        backend      TEXT NOT NULL,
        result       TEXT NOT NULL,
        description  TEXT NOT NULL,
        finished_at  INTEGER NOT NULL,
        -- NULL when the suite wrote no report.
        passed       INTEGER,
        failed       INTEGER,
        skipped      INTEGER
    );
    CREATE INDEX job_results_backend ON job_results (backend, finished_at);
    CREATE TABLE spec_failures (
        job_id  TEXT NOT NULL,
        spec    TEXT NOT NULL
    );
    CREATE INDEX spec_failures_job ON spec_failures (job_id);
    "#,
];

pub(super) const LATEST_VERSION: i64 = MIGRATIONS.len() as i64;

pub(super) fn version(connection: &Connection) -> rusqlite::Result<i64> {
    connection.query_row("PRAGMA user_version", [], |row| row.get(0))
}

/// Applies the missing migrations in one transaction: a journal is either
/// at its old version or at the latest, never in between.
pub(super) fn migrate(connection: &mut Connection, path: &Path) -> Result<(), JournalError> {
    let open_error = |source| JournalError::Open {
        path: path.to_path_buf(),
        source,
    };
    if version(connection).map_err(open_error)? == LATEST_VERSION {
        // Nothing to write: a reader opening the journal of a running
        // service must not queue for its write lock.
        return Ok(());
    }
    // Immediate: take the write lock up front (waiting out the busy
    // timeout), not by upgrading a read lock, which SQLite refuses at once.
    let transaction = connection
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(open_error)?;
    let found = version(&transaction).map_err(open_error)?;
    if found > LATEST_VERSION {
        return Err(JournalError::TooNew {
            path: path.to_path_buf(),
            found,
            known: LATEST_VERSION,
        });
    }
    for step in &MIGRATIONS[usize::try_from(found).unwrap_or(0)..] {
        transaction.execute_batch(step).map_err(open_error)?;
    }
    transaction
        .pragma_update(None, "user_version", LATEST_VERSION)
        .map_err(open_error)?;
    transaction.commit().map_err(open_error)
}
