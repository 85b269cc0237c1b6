//! Deleting tasks, teams, sessions and runs, with their dependants, in one transaction.
//!
//! The transaction locks the target's row and every run that would go (`FOR UPDATE`) before
//! it checks that they are terminal, so no replica can claim, finish or re-queue one of them
//! between the check and the deletes. Claims skip locked runs, and other writes wait for the
//! lock and then find the row gone. Messages, events and batch items go with their run through
//! `ON DELETE CASCADE`. The idempotency keys that created a row go too, because the request
//! body they keep contains the row's content (for runs, a student's answer).
//!
//! NOTE: a run inserted into a session while the session is being deleted is not locked out,
//! because inserting a run does not lock its session's row, so such a run can outlive its
//! session.
//!
//! NOTE: PostgreSQL keeps deleted rows in the table's pages until `VACUUM` (or autovacuum)
//! reclaims them and later writes reuse the space, and in the write-ahead log until it is
//! recycled, so deleted content stays in the database's files until then.

use aegis_core::Timestamp;
use aegis_core::storage::{DeleteOutcome, DeleteTarget, Dependants, StorageError};
use deadpool_postgres::Transaction;
use uuid::Uuid;

use crate::error::backend;

/// The run statuses a run can no longer leave.
const TERMINAL: &str = "('complete', 'error', 'stopped')";

/// Deletes `target` as `Storage::delete` describes, inside the caller's transaction, which
/// must commit afterwards.
pub(crate) async fn delete(
    tx: &Transaction<'_>,
    target: DeleteTarget,
    cascade: bool,
) -> Result<DeleteOutcome, StorageError> {
    let Some(dependants) = dependants(tx, target).await? else {
        return Ok(DeleteOutcome::NotFound);
    };
    if !dependants.is_empty() && !cascade {
        return Ok(DeleteOutcome::HasDependants(dependants));
    }

    let mut doomed_runs = dependants.runs.clone();
    if let DeleteTarget::Run(id) = target {
        doomed_runs.push(id);
    }
    let sql = format!("SELECT id FROM runs WHERE id = ANY($1) AND status NOT IN {TERMINAL} ORDER BY created_at, id");
    let not_terminal = select_ids(tx, &sql, &doomed_runs).await?;
    if !not_terminal.is_empty() {
        return Ok(DeleteOutcome::RunsNotTerminal(not_terminal));
    }

    delete_runs(tx, &doomed_runs).await?;
    let mut sessions = dependants.sessions.clone();
    if let DeleteTarget::Session(id) = target {
        sessions.push(id);
    }
    delete_sessions(tx, &sessions).await?;
    match target {
        DeleteTarget::Task(id) => delete_row(tx, "tasks", id).await?,
        DeleteTarget::Team(id) => delete_row(tx, "teams", id).await?,
        _ => {}
    }
    Ok(DeleteOutcome::Deleted(dependants))
}

/// Deletes up to `limit` terminal runs that finished before `finished_before`, and returns
/// their ids. Runs another transaction holds locked are left for the next call.
pub(crate) async fn delete_finished_runs(
    tx: &Transaction<'_>,
    finished_before: Timestamp,
    limit: usize,
) -> Result<Vec<Uuid>, StorageError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let sql = format!(
        "SELECT id FROM runs WHERE finished_at < $1 AND status IN {TERMINAL}
         ORDER BY finished_at LIMIT $2 FOR UPDATE SKIP LOCKED"
    );
    let rows = tx
        .query(&sql, &[&finished_before.as_datetime(), &limit])
        .await
        .map_err(|error| backend("listing runs past retention", error))?;
    let ids: Vec<Uuid> = rows.iter().map(|row| row.get(0)).collect();
    delete_runs(tx, &ids).await?;
    Ok(ids)
}

/// Locks the target's row and the runs that would go with it, and lists its dependants;
/// `None` when no row has the target's id.
async fn dependants(tx: &Transaction<'_>, target: DeleteTarget) -> Result<Option<Dependants>, StorageError> {
    let (table, id) = match target {
        DeleteTarget::Task(id) => ("tasks", id),
        DeleteTarget::Team(id) => ("teams", id),
        DeleteTarget::Session(id) => ("sessions", id),
        DeleteTarget::Run(id) => ("runs", id),
        _ => return Ok(None),
    };
    let sql = format!("SELECT id FROM {table} WHERE id = ANY($1) FOR UPDATE");
    if select_ids(tx, &sql, &[id]).await?.is_empty() {
        return Ok(None);
    }

    let dependants = match target {
        DeleteTarget::Task(_) => Dependants::new(
            select_ids(tx, "SELECT id FROM sessions WHERE task_id = ANY($1) ORDER BY created_at, id FOR UPDATE", &[id]).await?,
            select_ids(
                tx,
                "SELECT id FROM runs WHERE task_id = ANY($1) OR session_id IN (SELECT id FROM sessions WHERE task_id = ANY($1))
                 ORDER BY created_at, id FOR UPDATE",
                &[id],
            )
            .await?,
        ),
        DeleteTarget::Team(_) => Dependants::new(
            select_ids(tx, "SELECT id FROM sessions WHERE team_id = ANY($1) ORDER BY created_at, id FOR UPDATE", &[id]).await?,
            select_ids(
                tx,
                "SELECT id FROM runs WHERE session_id IN (SELECT id FROM sessions WHERE team_id = ANY($1))
                 ORDER BY created_at, id FOR UPDATE",
                &[id],
            )
            .await?,
        ),
        DeleteTarget::Session(_) => Dependants::new(
            Vec::new(),
            select_ids(tx, "SELECT id FROM runs WHERE session_id = ANY($1) ORDER BY created_at, id FOR UPDATE", &[id]).await?,
        ),
        _ => Dependants::default(),
    };
    Ok(Some(dependants))
}

/// Runs `sql`, which takes one `uuid[]` parameter and selects one `uuid` column.
async fn select_ids(tx: &Transaction<'_>, sql: &str, ids: &[Uuid]) -> Result<Vec<Uuid>, StorageError> {
    let rows = tx.query(sql, &[&ids]).await.map_err(|error| backend("listing the rows a delete removes", error))?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Deletes runs and the idempotency keys that created them; their messages, events and batch
/// items go through `ON DELETE CASCADE`.
async fn delete_runs(tx: &Transaction<'_>, ids: &[Uuid]) -> Result<(), StorageError> {
    if ids.is_empty() {
        return Ok(());
    }
    let delete_failed = |error| backend("deleting runs", error);
    tx.execute("DELETE FROM idempotency_keys WHERE resource_id = ANY($1)", &[&ids]).await.map_err(delete_failed)?;
    tx.execute("DELETE FROM runs WHERE id = ANY($1)", &[&ids]).await.map_err(delete_failed)?;
    Ok(())
}

/// Deletes sessions with their counters, team state and idempotency keys.
async fn delete_sessions(tx: &Transaction<'_>, ids: &[Uuid]) -> Result<(), StorageError> {
    if ids.is_empty() {
        return Ok(());
    }
    let delete_failed = |error| backend("deleting sessions", error);
    for sql in [
        "DELETE FROM session_states WHERE session_id = ANY($1)",
        "DELETE FROM session_counters WHERE session_id = ANY($1)",
        "DELETE FROM idempotency_keys WHERE resource_id = ANY($1)",
        "DELETE FROM sessions WHERE id = ANY($1)",
    ] {
        tx.execute(sql, &[&ids]).await.map_err(delete_failed)?;
    }
    Ok(())
}

/// Deletes one task or team with the idempotency keys that created it.
async fn delete_row(tx: &Transaction<'_>, table: &'static str, id: Uuid) -> Result<(), StorageError> {
    let delete_failed = |error| backend(&format!("deleting {table} row {id}"), error);
    tx.execute("DELETE FROM idempotency_keys WHERE resource_id = $1", &[&id]).await.map_err(delete_failed)?;
    let sql = format!("DELETE FROM {table} WHERE id = $1");
    tx.execute(&sql, &[&id]).await.map_err(delete_failed)?;
    Ok(())
}
