//! Deleting tasks, teams, sessions and runs, with their dependants, in one writer transaction.
//!
//! The check ("does anything depend on it, is every run that would go terminal") and the
//! deletes run in the same transaction on the writer thread, so no run can be inserted or
//! claimed between them. Messages, events and batch items go with their run through
//! `ON DELETE CASCADE`. The idempotency keys that created a row go too, because the request
//! body they keep contains the row's content (for runs, a student's answer).
//!
//! The writer connection sets `PRAGMA secure_delete = ON`, so SQLite overwrites deleted
//! content with zeros in the database file instead of leaving it in free pages.
//!
//! NOTE: the WAL file keeps earlier images of the changed pages until a checkpoint copies
//! them back and later writes reuse the WAL (SQLite checkpoints automatically once the WAL
//! reaches 1000 pages), so deleted content can stay in `aegis.db-wal` until then.

use aegis_core::storage::{DeleteOutcome, DeleteTarget, Dependants, StorageError};
use aegis_core::{RunStatus, Timestamp};
use rusqlite::{Connection, OptionalExtension, params};
use uuid::Uuid;

use crate::error::backend;
use crate::runs::parse_uuid;

/// Deletes `target` as `Storage::delete` describes.
pub(crate) fn delete(conn: &Connection, target: DeleteTarget, cascade: bool) -> Result<DeleteOutcome, StorageError> {
    let Some(dependants) = dependants(conn, target)? else {
        return Ok(DeleteOutcome::NotFound);
    };
    if !dependants.is_empty() && !cascade {
        return Ok(DeleteOutcome::HasDependants(dependants));
    }

    let mut doomed_runs = dependants.runs.clone();
    if let DeleteTarget::Run(id) = target {
        doomed_runs.push(id);
    }
    let mut not_terminal = Vec::new();
    for id in &doomed_runs {
        if !run_is_terminal(conn, *id)? {
            not_terminal.push(*id);
        }
    }
    if !not_terminal.is_empty() {
        return Ok(DeleteOutcome::RunsNotTerminal(not_terminal));
    }

    for id in &doomed_runs {
        delete_run(conn, *id)?;
    }
    for id in &dependants.sessions {
        delete_session(conn, *id)?;
    }
    match target {
        DeleteTarget::Task(id) => delete_row(conn, "tasks", id)?,
        DeleteTarget::Team(id) => delete_row(conn, "teams", id)?,
        DeleteTarget::Session(id) => delete_session(conn, id)?,
        _ => {}
    }
    Ok(DeleteOutcome::Deleted(dependants))
}

/// Deletes up to `limit` terminal runs that finished before `finished_before`.
pub(crate) fn delete_finished_runs(
    conn: &Connection,
    finished_before: Timestamp,
    limit: usize,
) -> Result<Vec<Uuid>, StorageError> {
    let sql = "SELECT id FROM runs WHERE finished_at < ?1 AND status IN ('complete', 'error', 'stopped') LIMIT ?2";
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let ids = select_ids(conn, sql, params![finished_before.unix_micros(), limit])?;
    for id in &ids {
        delete_run(conn, *id)?;
    }
    Ok(ids)
}

fn dependants(conn: &Connection, target: DeleteTarget) -> Result<Option<Dependants>, StorageError> {
    let (table, id) = match target {
        DeleteTarget::Task(id) => ("tasks", id),
        DeleteTarget::Team(id) => ("teams", id),
        DeleteTarget::Session(id) => ("sessions", id),
        DeleteTarget::Run(id) => ("runs", id),
        _ => return Ok(None),
    };
    if !exists(conn, table, id)? {
        return Ok(None);
    }

    let key = id.to_string();
    let dependants = match target {
        DeleteTarget::Task(_) => Dependants::new(
            select_ids(conn, "SELECT id FROM sessions WHERE task_id = ?1", params![key])?,
            select_ids(
                conn,
                "SELECT id FROM runs WHERE task_id = ?1 OR session_id IN (SELECT id FROM sessions WHERE task_id = ?1)",
                params![key],
            )?,
        ),
        DeleteTarget::Team(_) => Dependants::new(
            select_ids(conn, "SELECT id FROM sessions WHERE team_id = ?1", params![key])?,
            select_ids(
                conn,
                "SELECT id FROM runs WHERE session_id IN (SELECT id FROM sessions WHERE team_id = ?1)",
                params![key],
            )?,
        ),
        DeleteTarget::Session(_) => {
            Dependants::new(Vec::new(), select_ids(conn, "SELECT id FROM runs WHERE session_id = ?1", params![key])?)
        }
        _ => Dependants::default(),
    };
    Ok(Some(dependants))
}

fn exists(conn: &Connection, table: &'static str, id: Uuid) -> Result<bool, StorageError> {
    let sql = format!("SELECT 1 FROM {table} WHERE id = ?1");
    let found: Option<i64> = conn
        .query_row(&sql, params![id.to_string()], |row| row.get(0))
        .optional()
        .map_err(|error| backend(&format!("looking up {table} row {id}"), error))?;
    Ok(found.is_some())
}

fn run_is_terminal(conn: &Connection, id: Uuid) -> Result<bool, StorageError> {
    let status: Option<String> = conn
        .query_row("SELECT status FROM runs WHERE id = ?1", params![id.to_string()], |row| row.get(0))
        .optional()
        .map_err(|error| backend(&format!("reading the status of run {id}"), error))?;
    let terminal = [RunStatus::Complete, RunStatus::Error, RunStatus::Stopped];
    Ok(status.is_none_or(|status| terminal.iter().any(|known| known.as_str() == status)))
}

fn select_ids(conn: &Connection, sql: &str, values: impl rusqlite::Params) -> Result<Vec<Uuid>, StorageError> {
    let select_failed = |error| backend("listing the rows a delete removes", error);
    let mut statement = conn.prepare_cached(sql).map_err(select_failed)?;
    let mut rows = statement.query(values).map_err(select_failed)?;
    let mut ids = Vec::new();
    while let Some(row) = rows.next().map_err(select_failed)? {
        let text: String = row.get(0).map_err(select_failed)?;
        ids.push(parse_uuid(&text)?);
    }
    Ok(ids)
}

/// Deletes a run; its messages, events and batch items go through `ON DELETE CASCADE`.
fn delete_run(conn: &Connection, id: Uuid) -> Result<(), StorageError> {
    delete_idempotency_keys(conn, id)?;
    delete_row(conn, "runs", id)
}

fn delete_session(conn: &Connection, id: Uuid) -> Result<(), StorageError> {
    let key = id.to_string();
    for sql in
        ["DELETE FROM session_states WHERE session_id = ?1", "DELETE FROM session_counters WHERE session_id = ?1"]
    {
        conn.execute(sql, params![key])
            .map_err(|error| backend(&format!("deleting the data of session {id}"), error))?;
    }
    delete_row(conn, "sessions", id)
}

fn delete_row(conn: &Connection, table: &'static str, id: Uuid) -> Result<(), StorageError> {
    delete_idempotency_keys(conn, id)?;
    let sql = format!("DELETE FROM {table} WHERE id = ?1");
    conn.execute(&sql, params![id.to_string()])
        .map_err(|error| backend(&format!("deleting {table} row {id}"), error))?;
    Ok(())
}

fn delete_idempotency_keys(conn: &Connection, id: Uuid) -> Result<(), StorageError> {
    conn.execute("DELETE FROM idempotency_keys WHERE resource_id = ?1", params![id.to_string()])
        .map_err(|error| backend(&format!("deleting the idempotency keys of {id}"), error))?;
    Ok(())
}
