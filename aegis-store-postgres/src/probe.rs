//! Cheap queries for readiness probes and metrics: whether the database responds at the schema
//! version this build migrates to, and how many runs are in one status.

use aegis_core::RunStatus;
use aegis_core::storage::{StorageError, StorageErrorKind};

use crate::conn::Conn;
use crate::error::backend;
use crate::schema::SCHEMA_VERSION;

/// Reads the newest applied migration and fails with `Unavailable` unless it is
/// [`SCHEMA_VERSION`].
pub(crate) async fn check_schema(conn: &impl Conn) -> Result<(), StorageError> {
    let row = conn
        .query_opt("SELECT COALESCE(MAX(version), 0) FROM aegis_schema_migrations", &[])
        .await
        .map_err(|error| unavailable(format!("reading the postgres schema version failed: {error}")))?;
    let version: i32 = row.map_or(0, |row| row.get(0));
    if version != SCHEMA_VERSION {
        return Err(unavailable(format!(
            "the postgres database has schema version {version} but this build expects {SCHEMA_VERSION}"
        )));
    }
    Ok(())
}

/// Counts the runs in `status`; for `created`, the partial index `runs_queued` serves it.
pub(crate) async fn count_runs(conn: &impl Conn, status: &RunStatus) -> Result<u64, StorageError> {
    let row = conn
        .query_opt("SELECT COUNT(*) FROM runs WHERE status = $1", &[&status.as_str()])
        .await
        .map_err(|error| backend("counting runs", error))?;
    let count: i64 = row.map_or(0, |row| row.get(0));
    Ok(u64::try_from(count).unwrap_or(0))
}

/// Wraps a readiness failure; its message names the cause, so the probe's response can too.
pub(crate) fn unavailable(message: String) -> StorageError {
    StorageError::new(StorageErrorKind::Unavailable, message)
}
