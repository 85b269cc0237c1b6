//! Per-session data beside the session document: counters, the team state of a
//! `continue_conversation` session, idempotency keys and batch item results.
//!
//! The counters and keys are what replicas share through the database: the
//! `stub_error_sequence` position of a session and the resource an `Idempotency-Key` reserved.
//! Both rely on `INSERT ... ON CONFLICT`, which PostgreSQL makes atomic against concurrent
//! inserts of the same key.

use aegis_core::storage::{IdempotencyRecord, StorageError};
use aegis_core::{BatchItem, Timestamp};
use serde_json::Value;
use tokio_postgres::types::Json;
use uuid::Uuid;

use crate::conn::Conn;
use crate::error::{backend, corrupt};

/// Returns a session counter's value and increments it.
pub(crate) async fn next_counter(conn: &impl Conn, session_id: Uuid, name: &str) -> Result<u64, StorageError> {
    let row = conn
        .query_opt(
            "INSERT INTO session_counters (session_id, name, value) VALUES ($1, $2, 1)
             ON CONFLICT (session_id, name) DO UPDATE SET value = session_counters.value + 1
             RETURNING value - 1",
            &[&session_id, &name],
        )
        .await
        .map_err(|error| backend(&format!("advancing counter {name} of session {session_id}"), error))?;
    let value: i64 = row.map(|row| row.get(0)).unwrap_or_default();
    Ok(u64::try_from(value).unwrap_or_default())
}

/// Stores the team state of a session, replacing the previous one.
pub(crate) async fn save_session_state(conn: &impl Conn, session_id: Uuid, state: &Value) -> Result<(), StorageError> {
    conn.execute(
        "INSERT INTO session_states (session_id, document, updated_at) VALUES ($1, $2, now())
         ON CONFLICT (session_id) DO UPDATE SET document = excluded.document, updated_at = excluded.updated_at",
        &[&session_id, &Json(state)],
    )
    .await
    .map_err(|error| backend(&format!("saving the team state of session {session_id}"), error))?;
    Ok(())
}

/// Reads the team state of a session.
pub(crate) async fn session_state(conn: &impl Conn, session_id: Uuid) -> Result<Option<Value>, StorageError> {
    let row = conn
        .query_opt("SELECT document FROM session_states WHERE session_id = $1", &[&session_id])
        .await
        .map_err(|error| backend(&format!("reading the team state of session {session_id}"), error))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let Json(state) =
        row.try_get::<_, Json<Value>>(0).map_err(|error| corrupt("state of session", session_id, error))?;
    Ok(Some(state))
}

/// Stores a first use of an idempotency key, or returns the record stored before.
///
/// Two statements: an insert that waits for a concurrent insert of the same key to commit
/// and then does nothing, and a read whose fresh snapshot sees whichever insert won.
pub(crate) async fn put_idempotency_key(
    conn: &impl Conn,
    record: &IdempotencyRecord,
) -> Result<IdempotencyRecord, StorageError> {
    let put_failed = |error| backend("recording an idempotency key", error);
    conn.execute(
        "INSERT INTO idempotency_keys (scope, key, request, resource_id, created_at) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (scope, key) DO NOTHING",
        &[&record.scope, &record.key, &record.request, &record.resource_id, &record.created_at.as_datetime()],
    )
    .await
    .map_err(put_failed)?;

    let row = conn
        .query_opt(
            "SELECT request, resource_id, created_at FROM idempotency_keys WHERE scope = $1 AND key = $2",
            &[&record.scope, &record.key],
        )
        .await
        .map_err(put_failed)?;
    let Some(row) = row else {
        return Err(StorageError::new(
            aegis_core::storage::StorageErrorKind::Backend,
            format!("the idempotency key {:?} of {} vanished after it was stored", record.key, record.scope),
        ));
    };
    let mut stored = record.clone();
    stored.request = row.get(0);
    stored.resource_id = row.get(1);
    stored.created_at = Timestamp::from_datetime(row.get(2));
    Ok(stored)
}

/// Reads the stored batch item results of a run, by index.
pub(crate) async fn batch_items(conn: &impl Conn, run_id: Uuid) -> Result<Vec<BatchItem>, StorageError> {
    let rows = conn
        .query("SELECT document FROM run_batch_items WHERE run_id = $1 ORDER BY idx", &[&run_id])
        .await
        .map_err(|error| backend(&format!("reading the batch items of run {run_id}"), error))?;

    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        let Json(item) =
            row.try_get::<_, Json<BatchItem>>(0).map_err(|error| corrupt("batch item of run", run_id, error))?;
        items.push(item);
    }
    Ok(items)
}
