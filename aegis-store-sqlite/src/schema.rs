//! The database schema, its migrations and the settings every connection gets.
//!
//! The schema version is `PRAGMA user_version`. Entry `i` of [`MIGRATIONS`] moves a database
//! from version `i` to `i + 1` in one transaction, so a failed migration leaves the file at
//! the previous version. A released entry is never edited: a schema change is a new entry.

use std::path::Path;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use crate::config::SqliteConfig;
use crate::error::StoreOpenError;

/// Every table keeps the resource as its serde JSON document in `json`. The other columns
/// copy the fields that queries filter or sort on, and every write sets them together with
/// `json`. Times are microseconds since the Unix epoch and ids are UUID strings.
const V1_INITIAL: &str = "
CREATE TABLE tasks (
    id TEXT PRIMARY KEY NOT NULL,
    created_at INTEGER NOT NULL,
    json TEXT NOT NULL
) STRICT;
CREATE INDEX tasks_by_created ON tasks (created_at, id);

CREATE TABLE teams (
    id TEXT PRIMARY KEY NOT NULL,
    created_at INTEGER NOT NULL,
    json TEXT NOT NULL
) STRICT;
CREATE INDEX teams_by_created ON teams (created_at, id);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY NOT NULL,
    created_at INTEGER NOT NULL,
    json TEXT NOT NULL
) STRICT;
CREATE INDEX sessions_by_created ON sessions (created_at, id);

-- json is the Run without its messages. team_component and team_metadata are the snapshots
-- taken when the run was accepted. The lease columns are NULL unless the run is active.
CREATE TABLE runs (
    id TEXT PRIMARY KEY NOT NULL,
    session_id TEXT NOT NULL,
    status TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    lease_owner TEXT,
    lease_expires_at INTEGER,
    json TEXT NOT NULL,
    team_component TEXT NOT NULL,
    team_metadata TEXT NOT NULL
) STRICT;
CREATE INDEX runs_by_created ON runs (created_at, id);
CREATE INDEX runs_by_session ON runs (session_id, created_at, id);
CREATE INDEX runs_by_status ON runs (status, created_at, id);

-- seq counts from 1 within one attempt of a run. A run read back shows the messages of its
-- current attempt only.
CREATE TABLE run_messages (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    attempt INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (run_id, attempt, seq)
) STRICT, WITHOUT ROWID;
";

/// Cancellation, per-session order, run events, session state, idempotency keys and batch
/// items.
const V2_RUN_ENGINE: &str = "
-- cancel_reason is set while an active run has a cancel request. session_limit is the most
-- active runs of the session (from the team_metadata snapshot) and NULL for no limit.
-- stub_error_step is the run's position in the stub_error_sequence, taken at acceptance.
ALTER TABLE runs ADD COLUMN cancel_reason TEXT;
ALTER TABLE runs ADD COLUMN session_limit INTEGER;
ALTER TABLE runs ADD COLUMN stub_error_step INTEGER;
CREATE INDEX runs_by_session_status ON runs (session_id, status);

-- seq counts from 1 over the run's whole life; rows outlive abandoned attempts, so a stream
-- resumed from an event id misses and repeats nothing.
CREATE TABLE run_events (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) STRICT, WITHOUT ROWID;

CREATE TABLE session_counters (
    session_id TEXT NOT NULL,
    name TEXT NOT NULL,
    value INTEGER NOT NULL,
    PRIMARY KEY (session_id, name)
) STRICT, WITHOUT ROWID;

-- The team state the last complete run of a continue_conversation session left.
CREATE TABLE session_states (
    session_id TEXT PRIMARY KEY NOT NULL,
    json TEXT NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

CREATE TABLE idempotency_keys (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    request TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
) STRICT;

-- Results of finished items of batch runs; they outlive abandoned attempts.
CREATE TABLE run_batch_items (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    json TEXT NOT NULL,
    PRIMARY KEY (run_id, idx)
) STRICT, WITHOUT ROWID;
";

/// Filtered, paginated listings and retention: the fields listings filter on, copied out of
/// the JSON documents (existing rows are filled from their JSON), and the indexes that serve
/// each filter in `(created_at, id)` order.
const V3_LISTINGS: &str = "
ALTER TABLE tasks ADD COLUMN archived INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN created_by_user_id TEXT;
UPDATE tasks SET archived = coalesce(json_extract(json, '$.archived'), 0),
                 created_by_user_id = json_extract(json, '$.created_by_user_id');
CREATE INDEX tasks_by_user ON tasks (created_by_user_id, created_at, id);

ALTER TABLE teams ADD COLUMN archived INTEGER NOT NULL DEFAULT 0;
ALTER TABLE teams ADD COLUMN created_by_user_id TEXT;
UPDATE teams SET archived = coalesce(json_extract(json, '$.archived'), 0),
                 created_by_user_id = json_extract(json, '$.created_by_user_id');
CREATE INDEX teams_by_user ON teams (created_by_user_id, created_at, id);

ALTER TABLE sessions ADD COLUMN archived INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN created_by_user_id TEXT;
ALTER TABLE sessions ADD COLUMN task_id TEXT;
ALTER TABLE sessions ADD COLUMN team_id TEXT;
UPDATE sessions SET archived = coalesce(json_extract(json, '$.archived'), 0),
                    created_by_user_id = json_extract(json, '$.created_by_user_id'),
                    task_id = json_extract(json, '$.task_id'),
                    team_id = json_extract(json, '$.team_id');
CREATE INDEX sessions_by_user ON sessions (created_by_user_id, created_at, id);
CREATE INDEX sessions_by_task ON sessions (task_id, created_at, id);
CREATE INDEX sessions_by_team ON sessions (team_id, created_at, id);

-- finished_at is set once the run is terminal; retention deletes by it.
ALTER TABLE runs ADD COLUMN task_id TEXT;
ALTER TABLE runs ADD COLUMN archived INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN created_by_user_id TEXT;
ALTER TABLE runs ADD COLUMN finished_at INTEGER;
UPDATE runs SET task_id = json_extract(json, '$.task_id'),
                archived = coalesce(json_extract(json, '$.archived'), 0),
                created_by_user_id = json_extract(json, '$.created_by_user_id'),
                finished_at = CAST(round((julianday(json_extract(json, '$.finished_at')) - 2440587.5) * 86400000000) AS INTEGER);
CREATE INDEX runs_by_task ON runs (task_id, created_at, id);
CREATE INDEX runs_by_user ON runs (created_by_user_id, created_at, id);
CREATE INDEX runs_by_finished ON runs (finished_at) WHERE finished_at IS NOT NULL;

-- Deleting a row deletes the idempotency keys that created it.
CREATE INDEX idempotency_keys_by_resource ON idempotency_keys (resource_id);
";

/// Run time estimates: each run's team (the team of its session when the run was accepted,
/// filled from the sessions for existing rows) and the index that reads a team's most recently
/// finished runs. Queue positions use `runs_by_status`.
const V4_ESTIMATES: &str = "
ALTER TABLE runs ADD COLUMN team_id TEXT;
UPDATE runs SET team_id = (SELECT team_id FROM sessions WHERE sessions.id = runs.session_id);
CREATE INDEX runs_by_team_finished ON runs (team_id, finished_at) WHERE finished_at IS NOT NULL;
";

/// Final documents: `json_final = 1` marks a terminal run whose `json` is the whole run as the
/// API returns it, messages included, so a read sends it without decoding. Existing rows keep
/// `0` and are read as before. A change to how `Run` encodes needs a migration that sets
/// `json_final = 0` again (the next read then decodes the row as stored).
const V5_FINAL_DOCUMENTS: &str = "
ALTER TABLE runs ADD COLUMN json_final INTEGER NOT NULL DEFAULT 0;
";

/// Start times as a column, so the durations behind estimates are read without parsing each
/// run's JSON (a final document contains its messages, several kilobytes). Existing rows keep
/// `NULL` and are read from their JSON.
const V6_STARTED_AT: &str = "
ALTER TABLE runs ADD COLUMN started_at INTEGER;
";

/// The migrations in order, as the module docs describe.
const MIGRATIONS: &[&str] = &[V1_INITIAL, V2_RUN_ENGINE, V3_LISTINGS, V4_ESTIMATES, V5_FINAL_DOCUMENTS, V6_STARTED_AT];

/// The schema version this version of the crate migrates databases to.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Prepared statements kept per connection, more than the distinct statements the store runs.
const STATEMENT_CACHE: usize = 64;

/// Opens (creating it if missing) the writer's connection: WAL journal, the configured
/// `synchronous` mode, foreign keys and `secure_delete` on.
pub(crate) fn open_writer(path: &Path, config: &SqliteConfig) -> Result<Connection, StoreOpenError> {
    let open_failed = |error| StoreOpenError::open(path.to_owned(), error);

    let conn = Connection::open(path).map_err(open_failed)?;
    conn.busy_timeout(config.busy_timeout).map_err(open_failed)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    keep_plans(&conn).map_err(open_failed)?;

    // WAL lets the read connections read while the writer commits. SQLite keeps another mode
    // (and returns its name) for in-memory databases and where it cannot share memory.
    let journal_mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0)).map_err(open_failed)?;
    if !journal_mode.eq_ignore_ascii_case("wal") {
        return Err(StoreOpenError::WalUnsupported { path: path.to_owned(), journal_mode });
    }

    conn.pragma_update(None, "synchronous", config.synchronous.pragma_value()).map_err(open_failed)?;
    conn.pragma_update(None, "foreign_keys", true).map_err(open_failed)?;
    // Deleted rows are overwritten with zeros, so deleted personal data does not stay in
    // free pages of the file (see the deletion module for the WAL).
    conn.pragma_update(None, "secure_delete", true).map_err(open_failed)?;
    Ok(conn)
}

/// Opens a read-only connection to a database that [`open_writer`] has set up.
pub(crate) fn open_reader(path: &Path, config: &SqliteConfig) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(config.busy_timeout)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    keep_plans(&conn)?;
    Ok(conn)
}

/// Turns on the query planner stability guarantee, so a cached statement keeps its plan.
///
/// Without it SQLite marks a statement whose plan could depend on a bound value (any
/// `column = ?` that the chosen index does not cover, a `LIMIT ?`) for re-preparing, and
/// `sqlite3_clear_bindings`, which rusqlite calls whenever a cached statement goes back to
/// its cache, then expires it. Every execution of such a statement parsed and planned its SQL
/// again, which cost more than the statement's own work. The store's statements are planned
/// well without looking at the values.
fn keep_plans(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

/// Applies the migrations the database lacks and returns the version it had before.
///
/// Each step reads `user_version` inside its own write transaction, so two processes
/// opening a new file at once cannot both apply the same migration.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<i64, StoreOpenError> {
    let mut initial_version = None;

    loop {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|error| StoreOpenError::open(path.to_owned(), error))?;
        let found: i64 = tx
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(|error| StoreOpenError::open(path.to_owned(), error))?;
        let initial = *initial_version.get_or_insert(found);

        // A negative version was not written by this crate either.
        let Some(migration) = usize::try_from(found).ok().filter(|&index| index <= MIGRATIONS.len()) else {
            return Err(StoreOpenError::NewerSchema { path: path.to_owned(), found, supported: SCHEMA_VERSION });
        };
        let Some(sql) = MIGRATIONS.get(migration) else {
            return Ok(initial);
        };

        // The list has a handful of entries, so the index fits in a u32.
        let version = migration as u32 + 1;
        let migrate_failed =
            |error| StoreOpenError::Migrate { path: path.to_owned(), version, source: Box::new(error) };
        tx.execute_batch(sql).map_err(migrate_failed)?;
        tx.pragma_update(None, "user_version", version).map_err(migrate_failed)?;
        tx.commit().map_err(migrate_failed)?;
        tracing::info!(path = %path.display(), version, "applied sqlite schema migration");
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::StatementStatus;

    use super::*;

    /// Executes `sql` through the statement cache `times` times, binding a new id each time,
    /// and returns how often SQLite re-prepared it.
    fn reprepares(conn: &Connection, sql: &str, times: u32) -> i32 {
        let mut count = 0;
        for index in 0..times {
            let mut statement = conn.prepare_cached(sql).unwrap();
            let id = format!("run-{index}");
            let mut rows = statement.query(rusqlite::params![id, index]).unwrap();
            while rows.next().unwrap().is_some() {}
            drop(rows);
            count += statement.reset_status(StatementStatus::RePrepare);
        }
        count
    }

    #[test]
    fn cached_statements_keep_their_plan() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("aegis.db");
        let mut writer = open_writer(&path, &SqliteConfig::default()).unwrap();
        migrate(&mut writer, &path).unwrap();
        let reader = open_reader(&path, &SqliteConfig::default()).unwrap();

        // Every read of a run reads its messages like this. The planner weighs a full scan
        // too, where `run_id = ?1` is no index term, and without the guarantee that marked
        // the statement for re-preparing.
        let sql = "SELECT json FROM run_messages WHERE run_id = ?1 AND attempt = ?2 ORDER BY seq";
        assert_eq!(reprepares(&writer, sql, 5), 0, "the writer re-prepared a cached statement");
        assert_eq!(reprepares(&reader, sql, 5), 0, "a reader re-prepared a cached statement");
    }
}
