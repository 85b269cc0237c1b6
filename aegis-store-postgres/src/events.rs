//! Run events: the stored feed behind a run's event stream.
//!
//! Each row is one `RunEventKind` as JSON with a per-run sequence number taken from
//! `runs.last_event_seq`. The statement that changes a run bumps that column and inserts the
//! event in one step, so the row lock orders events exactly like the changes they report,
//! also across replicas. Rows are never deleted with an abandoned attempt.

use aegis_core::storage::{RunEvent, RunEventKind, StorageError};
use tokio_postgres::types::Json;
use uuid::Uuid;

use crate::conn::Conn;
use crate::error::{backend, corrupt};

/// Returns up to `limit` events of a run after sequence number `after`, in order.
pub(crate) async fn list_events(
    conn: &impl Conn,
    run_id: Uuid,
    after: u64,
    limit: usize,
) -> Result<Vec<RunEvent>, StorageError> {
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = conn
        .query(
            "SELECT seq, document FROM run_events WHERE run_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            &[&run_id, &after, &limit],
        )
        .await
        .map_err(|error| backend(&format!("reading the events of run {run_id}"), error))?;

    let mut events = Vec::with_capacity(rows.len());
    for row in rows {
        let seq: i64 = row.get(0);
        let Json(kind) =
            row.try_get::<_, Json<RunEventKind>>(1).map_err(|error| corrupt("event of run", run_id, error))?;
        events.push(RunEvent { seq: u64::try_from(seq).unwrap_or_default(), kind });
    }
    Ok(events)
}
