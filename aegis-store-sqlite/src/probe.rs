//! Cheap reads for readiness probes and metrics: whether the file responds at the schema
//! version this build migrates to, and how many runs are in one status.

use aegis_core::RunStatus;
use aegis_core::storage::{StorageError, StorageErrorKind};
use rusqlite::Connection;

use crate::error::backend;
use crate::schema::SCHEMA_VERSION;

/// Reads `user_version` and fails with `Unavailable` unless it is [`SCHEMA_VERSION`].
pub(crate) fn check_schema(conn: &Connection) -> Result<(), StorageError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0)).map_err(|error| {
        StorageError::new(StorageErrorKind::Unavailable, format!("reading the sqlite database failed: {error}"))
    })?;
    if version != i64::from(SCHEMA_VERSION) {
        return Err(StorageError::new(
            StorageErrorKind::Unavailable,
            format!("the sqlite database has schema version {version} but this build expects {SCHEMA_VERSION}"),
        ));
    }
    Ok(())
}

/// Counts the runs in `status`, through the `(status, created_at, id)` index.
pub(crate) fn count_runs(conn: &Connection, status: &RunStatus) -> Result<u64, StorageError> {
    conn.prepare_cached("SELECT COUNT(*) FROM runs WHERE status = ?1")
        .and_then(|mut statement| statement.query_row([status.as_str()], |row| row.get::<_, i64>(0)))
        .map(|count| u64::try_from(count).unwrap_or(0))
        .map_err(|error| backend("counting runs", error))
}
