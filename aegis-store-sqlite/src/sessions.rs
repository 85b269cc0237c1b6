//! Per-session data beside the session document: counters, the team state of a
//! `continue_conversation` session, idempotency keys and batch item results.

use aegis_core::storage::{IdempotencyRecord, StorageError};
use aegis_core::{BatchItem, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use uuid::Uuid;

use crate::error::{backend, corrupt, encode_failed};
use crate::runs::parse_uuid;

/// Returns a session counter's value and increments it.
pub(crate) fn next_counter(conn: &Connection, session_id: Uuid, name: &str) -> Result<u64, StorageError> {
    let count_failed = |error| backend(&format!("advancing counter {name} of session {session_id}"), error);
    let mut statement = conn
        .prepare_cached(
            "INSERT INTO session_counters (session_id, name, value) VALUES (?1, ?2, 1)
             ON CONFLICT (session_id, name) DO UPDATE SET value = value + 1
             RETURNING value - 1",
        )
        .map_err(count_failed)?;
    let value: i64 =
        statement.query_row(params![session_id.to_string(), name], |row| row.get(0)).map_err(count_failed)?;
    Ok(u64::try_from(value).unwrap_or_default())
}

/// Stores the team state of a session, replacing the previous one.
pub(crate) fn save_session_state(conn: &Connection, session_id: Uuid, state: &Value) -> Result<(), StorageError> {
    let json = serde_json::to_string(state).map_err(|error| encode_failed("state of session", session_id, error))?;
    let save_failed = |error| backend(&format!("saving the team state of session {session_id}"), error);
    let mut statement = conn
        .prepare_cached(
            "INSERT INTO session_states (session_id, json, updated_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (session_id) DO UPDATE SET json = excluded.json, updated_at = excluded.updated_at",
        )
        .map_err(save_failed)?;
    statement.execute(params![session_id.to_string(), json, Timestamp::now().unix_micros()]).map_err(save_failed)?;
    Ok(())
}

/// Reads the team state of a session.
pub(crate) fn session_state(conn: &Connection, session_id: Uuid) -> Result<Option<Value>, StorageError> {
    let read_failed = |error| backend(&format!("reading the team state of session {session_id}"), error);
    let mut statement =
        conn.prepare_cached("SELECT json FROM session_states WHERE session_id = ?1").map_err(read_failed)?;
    let json: Option<String> =
        statement.query_row(params![session_id.to_string()], |row| row.get(0)).optional().map_err(read_failed)?;
    json.map(|json| serde_json::from_str(&json).map_err(|error| corrupt("state of session", session_id, error)))
        .transpose()
}

/// Stores a first use of an idempotency key, or returns the record stored before.
pub(crate) fn put_idempotency_key(
    conn: &Connection,
    record: &IdempotencyRecord,
) -> Result<IdempotencyRecord, StorageError> {
    let put_failed = |error| backend("recording an idempotency key", error);
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO idempotency_keys (scope, key, request, resource_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (scope, key) DO NOTHING",
        )
        .map_err(put_failed)?;
    insert
        .execute(params![
            record.scope,
            record.key,
            record.request,
            record.resource_id.to_string(),
            record.created_at.unix_micros()
        ])
        .map_err(put_failed)?;

    let mut select = conn
        .prepare_cached("SELECT request, resource_id, created_at FROM idempotency_keys WHERE scope = ?1 AND key = ?2")
        .map_err(put_failed)?;
    let (request, resource_id, created_at): (String, String, i64) = select
        .query_row(params![record.scope, record.key], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .map_err(put_failed)?;
    let mut stored = record.clone();
    stored.request = request;
    stored.resource_id = parse_uuid(&resource_id)?;
    stored.created_at = Timestamp::from_unix_micros(created_at).unwrap_or(record.created_at);
    Ok(stored)
}

/// Stores the result of one batch item, replacing an earlier one of the same index.
pub(crate) fn save_batch_item(conn: &Connection, run_id: Uuid, item: &BatchItem) -> Result<(), StorageError> {
    let json = serde_json::to_string(item).map_err(|error| encode_failed("batch item of run", run_id, error))?;
    let save_failed = |error| backend(&format!("saving batch item {} of run {run_id}", item.index), error);
    let mut statement = conn
        .prepare_cached("INSERT OR REPLACE INTO run_batch_items (run_id, idx, json) VALUES (?1, ?2, ?3)")
        .map_err(save_failed)?;
    let index = i64::try_from(item.index).unwrap_or(i64::MAX);
    statement.execute(params![run_id.to_string(), index, json]).map_err(save_failed)?;
    Ok(())
}

/// Reads the stored batch item results of a run, by index.
pub(crate) fn batch_items(conn: &Connection, run_id: Uuid) -> Result<Vec<BatchItem>, StorageError> {
    let read_failed = |error| backend(&format!("reading the batch items of run {run_id}"), error);
    let mut statement =
        conn.prepare_cached("SELECT json FROM run_batch_items WHERE run_id = ?1 ORDER BY idx").map_err(read_failed)?;
    let mut rows = statement.query(params![run_id.to_string()]).map_err(read_failed)?;
    let mut items = Vec::new();
    while let Some(row) = rows.next().map_err(read_failed)? {
        let json: String = row.get(0).map_err(read_failed)?;
        items.push(serde_json::from_str(&json).map_err(|error| corrupt("batch item of run", run_id, error))?);
    }
    Ok(items)
}
