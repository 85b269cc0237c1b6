//! Run events: the stored feed behind a run's event stream.
//!
//! Each row is one `RunEventKind` as JSON with a per-run sequence number. Rows are written in
//! the same transaction as the change they report and never deleted with an abandoned attempt,
//! so sequence numbers grow over the run's whole life.

use aegis_core::storage::{RunEvent, RunEventKind, StorageError};
use rusqlite::{Connection, params};
use uuid::Uuid;

use crate::error::{backend, corrupt};

/// Appends an encoded event to a run's events with the next sequence number.
pub(crate) fn insert_event(conn: &Connection, run_id: Uuid, json: &str) -> Result<(), StorageError> {
    let insert_failed = |error| backend(&format!("recording an event of run {run_id}"), error);
    let mut statement = conn
        .prepare_cached(
            "INSERT INTO run_events (run_id, seq, json)
             VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM run_events WHERE run_id = ?1), ?2)",
        )
        .map_err(insert_failed)?;
    statement.execute(params![run_id.to_string(), json]).map_err(insert_failed)?;
    Ok(())
}

/// Returns up to `limit` events of a run after sequence number `after`, in order.
pub(crate) fn list_events(
    conn: &Connection,
    run_id: Uuid,
    after: u64,
    limit: usize,
) -> Result<Vec<RunEvent>, StorageError> {
    let read_failed = |error| backend(&format!("reading the events of run {run_id}"), error);
    let mut statement = conn
        .prepare_cached("SELECT seq, json FROM run_events WHERE run_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3")
        .map_err(read_failed)?;
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut rows = statement.query(params![run_id.to_string(), after, limit]).map_err(read_failed)?;

    let mut events = Vec::new();
    while let Some(row) = rows.next().map_err(read_failed)? {
        let seq: i64 = row.get(0).map_err(read_failed)?;
        let json: String = row.get(1).map_err(read_failed)?;
        let kind: RunEventKind = serde_json::from_str(&json).map_err(|error| corrupt("event of run", run_id, error))?;
        events.push(RunEvent { seq: u64::try_from(seq).unwrap_or_default(), kind });
    }
    Ok(events)
}
