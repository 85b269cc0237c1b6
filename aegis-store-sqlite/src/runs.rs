//! Runs: the queue, leases and messages, as statements on one connection.
//!
//! The functions that change rows run on the writer thread inside its transaction, so a
//! read-modify-write of a run's JSON document cannot interleave with another write. The
//! fencing rule of `aegis_core::storage` is one condition here: the run row must have
//! `status = 'active'` and the lease's attempt and owner.
//!
//! # Final documents
//!
//! While a run is `created` or `active`, its `json` column is the run without messages,
//! which live in `run_messages` as they arrive. When a write makes the run terminal, `json`
//! becomes the run exactly as the API returns it, with the messages of its current attempt
//! spliced in, and `json_final` is set. A terminal run changes rarely and is read often, so
//! reads then send that text as it is ([`get_run_document`]) or decode it in one step, and
//! never join the messages again.

use std::time::Duration;

use aegis_core::storage::{
    ComponentCache, Lease, Page, RequeueReport, RunEventKind, RunFilter, RunOutcome, StorageError, StoredRun,
    interrupted_outcome, session_limit,
};
use aegis_core::{AgentMessage, Run, RunDocument, RunSpec, RunStatus, Timestamp};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::{backend, corrupt, encode_failed, insert_failed};
use crate::events::insert_event;
use crate::listing::{self, Conditions, flag_value, text_value, uuid_value};
use crate::sessions::save_session_state;

/// A run encoded on the caller's side: the run without its messages, the snapshots, and the
/// messages it was inserted with.
#[derive(Debug)]
pub(crate) struct EncodedRun {
    pub(crate) id: Uuid,
    pub(crate) session_id: Uuid,
    pub(crate) task_id: Uuid,
    pub(crate) archived: bool,
    pub(crate) created_by_user_id: Option<String>,
    pub(crate) status: String,
    pub(crate) attempt: u32,
    pub(crate) created_at: Timestamp,
    pub(crate) finished_at: Option<Timestamp>,
    pub(crate) json: String,
    pub(crate) team_component: String,
    pub(crate) team_metadata: String,
    pub(crate) messages: Vec<String>,
    pub(crate) session_limit: Option<u32>,
    pub(crate) stub_error_step: Option<i64>,
    pub(crate) status_event: String,
}

impl EncodedRun {
    /// Encodes `spec` for [`insert_run`].
    pub(crate) fn new(spec: &RunSpec) -> Result<EncodedRun, StorageError> {
        let run = &spec.run;
        let encode = |error| encode_failed("run", run.id, error);
        let messages = run.messages.iter().map(serde_json::to_string).collect::<Result<Vec<_>, _>>().map_err(encode)?;
        Ok(EncodedRun {
            id: run.id,
            session_id: run.session_id,
            task_id: run.task_id,
            archived: run.archived,
            created_by_user_id: run.created_by_user_id.clone(),
            status: run.status.as_str().to_owned(),
            attempt: run.attempt,
            created_at: run.created_at,
            finished_at: run.finished_at,
            json: encode_run(run)?,
            team_component: serde_json::to_string(&*spec.team_component).map_err(encode)?,
            team_metadata: serde_json::to_string(&spec.team_metadata).map_err(encode)?,
            messages,
            session_limit: session_limit(&spec.team_metadata),
            stub_error_step: spec.stub_error_step.map(|step| i64::try_from(step).unwrap_or(i64::MAX)),
            status_event: serde_json::to_string(&RunEventKind::status_of(run)).map_err(encode)?,
        })
    }
}

/// A claim taken in the same write as a run's insert, encoded on the caller's side: the run
/// as it is stored once `active`, and its lease.
#[derive(Debug)]
pub(crate) struct EncodedClaim {
    owner: String,
    expires_at: Timestamp,
    started_at: Timestamp,
    attempt: u32,
    json: String,
    status_event: String,
}

impl EncodedClaim {
    /// Encodes the claim of `spec`'s run under `lease` for [`insert_run_claimed`].
    pub(crate) fn new(spec: &RunSpec, lease: &Lease, started_at: Timestamp) -> Result<EncodedClaim, StorageError> {
        let run = Run {
            status: RunStatus::Active,
            started_at: Some(started_at),
            attempt: lease.attempt,
            messages: Vec::new(),
            ..spec.run.clone()
        };
        Ok(EncodedClaim {
            owner: lease.owner.clone(),
            expires_at: lease.expires_at,
            started_at,
            attempt: lease.attempt,
            json: encode_run(&run)?,
            status_event: serde_json::to_string(&RunEventKind::status_of(&run))
                .map_err(|error| encode_failed("event of run", run.id, error))?,
        })
    }
}

/// Encodes a run without its messages, which live in `run_messages`.
fn encode_run(run: &Run) -> Result<String, StorageError> {
    let encoded = if run.messages.is_empty() {
        serde_json::to_string(run)
    } else {
        serde_json::to_string(&Run { messages: Vec::new(), ..run.clone() })
    };
    encoded.map_err(|error| encode_failed("run", run.id, error))
}

/// Encodes a run for its `json` column and returns whether that is the final document (see the
/// module docs). The messages of a terminal run come from `run_messages`, as a read would
/// join them.
fn stored_json(conn: &Connection, run: &Run) -> Result<(String, bool), StorageError> {
    if !run.status.is_terminal() {
        return Ok((encode_run(run)?, false));
    }
    // The document goes out as it is, and a terminal run has no estimate.
    let json = match run.estimated_completion_time {
        Some(_) => encode_run(&Run { estimated_completion_time: None, ..run.clone() })?,
        None => encode_run(run)?,
    };
    let messages = read_message_json(conn, run.id, run.attempt)?;
    match splice_messages(&json, &messages) {
        Some(document) => Ok((document, true)),
        // Reads then decode the row and join its messages, as for rows from before final
        // documents.
        None => Ok((json, false)),
    }
}

/// Puts `messages` (each one JSON text) into a run encoded with no messages. `messages` is
/// the last field `Run` encodes, so the text ends in `"messages":[]}`. Returns `None` if it
/// does not.
fn splice_messages(run_json: &str, messages: &[String]) -> Option<String> {
    let head = run_json.strip_suffix("[]}")?;
    if !head.ends_with("\"messages\":") {
        return None;
    }

    let length = head.len() + 3 + messages.iter().map(|message| message.len() + 1).sum::<usize>();
    let mut document = String::with_capacity(length);
    document.push_str(head);
    document.push('[');
    for (index, message) in messages.iter().enumerate() {
        if index > 0 {
            document.push(',');
        }
        document.push_str(message);
    }
    document.push_str("]}");
    Some(document)
}

/// Inserts a run and the messages it came with. An existing id is a `Conflict`.
pub(crate) fn insert_run(conn: &Connection, run: &EncodedRun) -> Result<(), StorageError> {
    insert_row(conn, run, None)?;
    insert_event(conn, run.id, &run.status_event)?;
    insert_messages(conn, run, run.attempt)
}

/// Inserts a run and claims it under `claim` when no `created` run waits and its session is
/// below its limit of active runs. Otherwise inserts it queued. Returns whether it claimed.
pub(crate) fn insert_run_claimed(
    conn: &Connection,
    run: &EncodedRun,
    claim: &EncodedClaim,
) -> Result<bool, StorageError> {
    if !may_start_at_once(conn, run)? {
        insert_run(conn, run)?;
        return Ok(false);
    }
    insert_row(conn, run, Some(claim))?;
    insert_event(conn, run.id, &run.status_event)?;
    insert_event(conn, run.id, &claim.status_event)?;
    insert_messages(conn, run, claim.attempt)?;
    Ok(true)
}

/// Returns whether a new run may start without queueing: no run waits in the queue, which
/// keeps the queue's order, and the run's session is below its limit of active runs.
fn may_start_at_once(conn: &Connection, run: &EncodedRun) -> Result<bool, StorageError> {
    let check_failed = |error| backend("checking the run queue", error);
    let mut statement = conn
        .prepare_cached(
            "SELECT NOT EXISTS (SELECT 1 FROM runs WHERE status = ?1)
                AND (?4 IS NULL OR (SELECT COUNT(*) FROM runs WHERE session_id = ?3 AND status = ?2) < ?4)",
        )
        .map_err(check_failed)?;
    statement
        .query_row(
            params![
                RunStatus::Created.as_str(),
                RunStatus::Active.as_str(),
                run.session_id.to_string(),
                run.session_limit
            ],
            |row| row.get(0),
        )
        .map_err(check_failed)
}

/// Inserts a run's row: queued, or claimed under `claim`.
fn insert_row(conn: &Connection, run: &EncodedRun, claim: Option<&EncodedClaim>) -> Result<(), StorageError> {
    let mut statement = conn
        .prepare_cached(
            "INSERT INTO runs (id, session_id, status, attempt, created_at, json, team_component, team_metadata,
                               session_limit, stub_error_step, task_id, archived, created_by_user_id, finished_at,
                               lease_owner, lease_expires_at, started_at, team_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                     (SELECT team_id FROM sessions WHERE id = ?2))",
        )
        .map_err(|error| backend("preparing the run insert", error))?;
    let (status, attempt, json) = match claim {
        Some(claim) => (RunStatus::Active.as_str(), claim.attempt, &claim.json),
        None => (run.status.as_str(), run.attempt, &run.json),
    };
    statement
        .execute(params![
            run.id.to_string(),
            run.session_id.to_string(),
            status,
            attempt,
            run.created_at.unix_micros(),
            json,
            run.team_component,
            run.team_metadata,
            run.session_limit,
            run.stub_error_step,
            run.task_id.to_string(),
            run.archived,
            run.created_by_user_id,
            run.finished_at.map(Timestamp::unix_micros),
            claim.map(|claim| &claim.owner),
            claim.map(|claim| claim.expires_at.unix_micros()),
            claim.map(|claim| claim.started_at.unix_micros()),
        ])
        .map_err(|error| insert_failed("run", run.id, error))?;
    Ok(())
}

fn insert_messages(conn: &Connection, run: &EncodedRun, attempt: u32) -> Result<(), StorageError> {
    for message in &run.messages {
        insert_message(conn, run.id, attempt, message)?;
    }
    Ok(())
}

/// Reads a run with the messages of its current attempt.
pub(crate) fn get_run(conn: &Connection, id: Uuid) -> Result<Option<Run>, StorageError> {
    let Some(row) = read_run_row(conn, id)? else {
        return Ok(None);
    };
    row.decode(conn, id).map(Some)
}

/// Reads a run for a response: a terminal run's final document as it is, else the decoded
/// run.
///
/// The first read is one statement and needs no transaction, which is all a final document
/// takes. A run that is not final is read again with its messages in one transaction, so both
/// come from the same snapshot.
pub(crate) fn get_run_document(conn: &Connection, id: Uuid) -> Result<Option<StoredRun>, StorageError> {
    let Some(row) = read_run_row(conn, id)? else {
        return Ok(None);
    };
    if row.is_final {
        return row.stored(conn, id).map(Some);
    }
    crate::reader::consistent(conn, |conn| match read_run_row(conn, id)? {
        Some(row) => row.stored(conn, id).map(Some),
        None => Ok(None),
    })
}

/// Expands to the columns a run is read from, in the order [`RunRow::read`] takes them, as a
/// literal so that statements can be built with `concat!` at compile time.
macro_rules! run_columns {
    () => {
        "json, json_final, status, created_by_user_id"
    };
}

/// The columns of [`run_columns!`], for statements built at run time.
const RUN_COLUMNS: &str = run_columns!();

/// A run's row as read, before its JSON is decoded.
struct RunRow {
    json: String,
    is_final: bool,
    status: String,
    created_by_user_id: Option<String>,
}

impl RunRow {
    /// Reads the columns of [`run_columns!`] starting at column `first`.
    fn read(row: &Row<'_>, first: usize) -> rusqlite::Result<RunRow> {
        Ok(RunRow {
            json: row.get(first)?,
            is_final: row.get(first + 1)?,
            status: row.get(first + 2)?,
            created_by_user_id: row.get(first + 3)?,
        })
    }

    /// Decodes the run with its messages.
    fn decode(self, conn: &Connection, id: Uuid) -> Result<Run, StorageError> {
        match self.is_final {
            true => serde_json::from_str(&self.json).map_err(|error| corrupt("run", id, error)),
            false => decode_run(conn, id, &self.json),
        }
    }

    /// Returns the final document without decoding it, or the decoded run.
    fn stored(self, conn: &Connection, id: Uuid) -> Result<StoredRun, StorageError> {
        if !self.is_final {
            return self.decode(conn, id).map(|run| StoredRun::Decoded(Box::new(run)));
        }
        let status = self.status.parse::<RunStatus>().unwrap_or_else(|never| match never {});
        Ok(StoredRun::Encoded(RunDocument::from_stored(id, status, self.created_by_user_id, self.json)))
    }
}

fn read_run_row(conn: &Connection, id: Uuid) -> Result<Option<RunRow>, StorageError> {
    let mut statement = conn
        .prepare_cached(concat!("SELECT ", run_columns!(), " FROM runs WHERE id = ?1"))
        .map_err(|error| backend("preparing the run read", error))?;
    statement
        .query_row(params![id.to_string()], |row| RunRow::read(row, 0))
        .optional()
        .map_err(|error| backend(&format!("reading run {id}"), error))
}

/// Sums the prompt and completion tokens of the runs `user_id` created, through the
/// `runs_by_user` index.
pub(crate) fn tokens_used_by(conn: &Connection, user_id: &str) -> Result<u64, StorageError> {
    let mut statement = conn
        .prepare_cached(
            "SELECT COALESCE(SUM(COALESCE(json_extract(json, '$.team_result.usage.prompt_tokens'), 0)
                               + COALESCE(json_extract(json, '$.team_result.usage.completion_tokens'), 0)), 0)
             FROM runs WHERE created_by_user_id = ?1",
        )
        .map_err(|error| backend("preparing the token usage sum", error))?;
    let total: i64 = statement
        .query_row(params![user_id], |row| row.get(0))
        .map_err(|error| backend("summing the token usage of a user", error))?;
    Ok(u64::try_from(total).unwrap_or_default())
}

/// Lists the page of runs that `filter` selects, with the messages of each one's current
/// attempt.
pub(crate) fn list_runs(conn: &Connection, filter: &RunFilter) -> Result<Page<Run>, StorageError> {
    list_run_rows(conn, filter, |id, row| row.decode(conn, id))
}

/// Lists runs for a response, each as [`get_run_document`] reads it.
pub(crate) fn list_run_documents(conn: &Connection, filter: &RunFilter) -> Result<Page<StoredRun>, StorageError> {
    list_run_rows(conn, filter, |id, row| row.stored(conn, id))
}

fn list_run_rows<T>(
    conn: &Connection,
    filter: &RunFilter,
    mut decode: impl FnMut(Uuid, RunRow) -> Result<T, StorageError>,
) -> Result<Page<T>, StorageError> {
    let mut conditions = Conditions::default();
    conditions.equal("session_id", uuid_value(filter.session_id));
    conditions.equal("task_id", uuid_value(filter.task_id));
    conditions.equal("status", filter.status.as_ref().map(|status| SqlValue::Text(status.as_str().to_owned())));
    conditions.equal("created_by_user_id", text_value(filter.created_by_user_id.as_ref()));
    conditions.equal("archived", flag_value(filter.archived));
    conditions.compare("created_at", ">=", filter.created_after.map(|at| SqlValue::Integer(at.unix_micros())));
    conditions.compare("created_at", "<", filter.created_before.map(|at| SqlValue::Integer(at.unix_micros())));
    listing::list_page(conn, "runs", RUN_COLUMNS, conditions, &filter.page, |id, row| {
        let row = RunRow::read(row, 2).map_err(|error| backend("listing runs", error))?;
        decode(id, row)
    })
}

/// Counts the `created` runs before `(created_at, id)` in claim order.
pub(crate) fn count_queued_before(conn: &Connection, created_at: Timestamp, id: Uuid) -> Result<u64, StorageError> {
    let count_failed = |error| backend("counting queued runs", error);
    let mut statement = conn
        .prepare_cached(
            "SELECT count(*) FROM runs
             WHERE status = ?1 AND (created_at < ?2 OR (created_at = ?2 AND id < ?3))",
        )
        .map_err(count_failed)?;
    let count: i64 = statement
        .query_row(params![RunStatus::Created.as_str(), created_at.unix_micros(), id.to_string()], |row| row.get(0))
        .map_err(count_failed)?;
    Ok(u64::try_from(count).unwrap_or(0))
}

/// Reads how long the most recently finished `complete` or `error` runs executed, newest
/// first, of one team or of all.
pub(crate) fn recent_run_durations(
    conn: &Connection,
    team_id: Option<Uuid>,
    limit: usize,
) -> Result<Vec<Duration>, StorageError> {
    let read_failed = |error| backend("reading recent run durations", error);
    let (complete, error) = (RunStatus::Complete.as_str(), RunStatus::Error.as_str());
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let read_row = |row: &rusqlite::Row<'_>| {
        Ok((row.get::<_, Option<i64>>(0)?, row.get::<_, Option<String>>(1)?, row.get::<_, i64>(2)?))
    };

    // One statement per case, so each uses its index: `runs_by_team_finished` or
    // `runs_by_finished`.
    let rows = match team_id {
        Some(team_id) => {
            let mut statement = conn
                .prepare_cached(
                    "SELECT started_at, CASE WHEN started_at IS NULL THEN json_extract(json, '$.started_at') END, finished_at
                     FROM runs
                     WHERE team_id = ?1 AND finished_at IS NOT NULL AND status IN (?2, ?3)
                     ORDER BY finished_at DESC LIMIT ?4",
                )
                .map_err(read_failed)?;
            let rows = statement
                .query_map(params![team_id.to_string(), complete, error, limit], read_row)
                .map_err(read_failed)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(read_failed)?
        }
        None => {
            let mut statement = conn
                .prepare_cached(
                    "SELECT started_at, CASE WHEN started_at IS NULL THEN json_extract(json, '$.started_at') END, finished_at
                     FROM runs
                     WHERE finished_at IS NOT NULL AND status IN (?1, ?2)
                     ORDER BY finished_at DESC LIMIT ?3",
                )
                .map_err(read_failed)?;
            let rows = statement.query_map(params![complete, error, limit], read_row).map_err(read_failed)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(read_failed)?
        }
    };

    // A run that never started (none should end complete or error) has no duration.
    let durations = rows
        .into_iter()
        .filter_map(|(started_micros, started_text, finished_at)| {
            // Rows written before the `started_at` column have only the JSON's text.
            let started_at = match started_micros {
                Some(micros) => Timestamp::from_unix_micros(micros)?,
                None => Timestamp::parse(&started_text?).ok()?,
            };
            let finished_at = Timestamp::from_unix_micros(finished_at)?;
            Some(finished_at.duration_since(started_at))
        })
        .collect();
    Ok(durations)
}

/// Sets a run's `archived` flag in its document and its column.
pub(crate) fn set_run_archived(conn: &Connection, id: Uuid, archived: bool) -> Result<Option<Run>, StorageError> {
    let Some(mut run) = get_run(conn, id)? else {
        return Ok(None);
    };
    run.archived = archived;
    let (json, is_final) = stored_json(conn, &run)?;
    let update_failed = |error| backend(&format!("archiving run {id}"), error);
    conn.execute(
        "UPDATE runs SET archived = ?2, json = ?3, json_final = ?4 WHERE id = ?1",
        params![id.to_string(), archived, json, is_final],
    )
    .map_err(update_failed)?;
    Ok(Some(run))
}

/// Claims the oldest `created` run for `owner` and marks it `active`.
pub(crate) fn claim_run(
    conn: &Connection,
    owner: &str,
    lease: Duration,
    components: &mut ComponentCache,
) -> Result<Option<(RunSpec, Lease)>, StorageError> {
    let claim_failed = |error| backend("claiming a run", error);
    let mut statement = conn
        .prepare_cached(
            "SELECT id, json, team_component, team_metadata, stub_error_step FROM runs AS queued
             WHERE status = ?1
               AND (session_limit IS NULL
                    OR (SELECT COUNT(*) FROM runs AS running
                        WHERE running.session_id = queued.session_id AND running.status = ?2) < session_limit)
             ORDER BY created_at, id LIMIT 1",
        )
        .map_err(claim_failed)?;
    let row = statement
        .query_row(params![RunStatus::Created.as_str(), RunStatus::Active.as_str()], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, Option<i64>>(4)?,
            ))
        })
        .optional()
        .map_err(claim_failed)?;
    let Some((id, json, team_component, team_metadata, stub_error_step)) = row else {
        return Ok(None);
    };

    let id = parse_uuid(&id)?;
    let mut run = decode_run(conn, id, &json)?;
    let team_component = components.get_or_decode(team_component).map_err(|error| corrupt("run", id, error))?;
    let team_metadata: Map<String, Value> =
        serde_json::from_str(&team_metadata).map_err(|error| corrupt("run", id, error))?;

    let now = Timestamp::now();
    let expires_at = now.saturating_add(lease);
    run.status = RunStatus::Active;
    run.started_at = Some(now);
    update_run(conn, &run, Some((owner, expires_at)))?;
    insert_status_event(conn, &run)?;

    let granted = Lease { run_id: id, owner: owner.to_owned(), attempt: run.attempt, expires_at };
    let stub_error_step = stub_error_step.and_then(|step| u64::try_from(step).ok());
    Ok(Some((RunSpec { run, team_component, team_metadata, stub_error_step }, granted)))
}

/// Extends a held lease to `duration` from now.
pub(crate) fn renew_lease(conn: &Connection, lease: &Lease, duration: Duration) -> Result<Lease, StorageError> {
    let renew_failed = |error| backend(&format!("renewing the lease of run {}", lease.run_id), error);
    let mut statement = conn
        .prepare_cached(
            "UPDATE runs SET lease_expires_at = ?4
             WHERE id = ?1 AND status = ?5 AND attempt = ?2 AND lease_owner = ?3",
        )
        .map_err(renew_failed)?;
    let expires_at = Timestamp::now().saturating_add(duration);
    let changed = statement
        .execute(params![
            lease.run_id.to_string(),
            lease.attempt,
            lease.owner,
            expires_at.unix_micros(),
            RunStatus::Active.as_str(),
        ])
        .map_err(renew_failed)?;

    if changed == 0 {
        return Err(StorageError::lease_lost(lease.run_id, lease.attempt));
    }
    Ok(Lease { expires_at, ..lease.clone() })
}

/// Appends an encoded message (and its encoded event) to the current attempt of a held run.
pub(crate) fn append_message(conn: &Connection, lease: &Lease, message: &str, event: &str) -> Result<(), StorageError> {
    held_run(conn, lease)?;
    insert_message(conn, lease.run_id, lease.attempt, message)?;
    insert_event(conn, lease.run_id, event)
}

/// Ends a held run with `outcome` and releases its lease. The team state of a
/// `continue_conversation` run becomes the session's state in the same transaction.
pub(crate) fn finish_run(conn: &Connection, lease: &Lease, outcome: &RunOutcome) -> Result<(), StorageError> {
    let json = held_run(conn, lease)?;
    let mut run: Run = serde_json::from_str(&json).map_err(|error| corrupt("run", lease.run_id, error))?;

    outcome.apply_to(&mut run);
    update_run(conn, &run, None)?;
    insert_status_event(conn, &run)?;
    if let Some(state) = &outcome.session_state {
        save_session_state(conn, run.session_id, state)?;
    }
    Ok(())
}

/// Stores a batch item's result for a held run.
pub(crate) fn save_batch_item(
    conn: &Connection,
    lease: &Lease,
    item: &aegis_core::BatchItem,
) -> Result<(), StorageError> {
    held_run(conn, lease)?;
    crate::sessions::save_batch_item(conn, lease.run_id, item)
}

/// Gives a held run back to the queue with the next attempt, dropping its messages.
pub(crate) fn release_run(conn: &Connection, lease: &Lease) -> Result<(), StorageError> {
    let json = held_run(conn, lease)?;
    let mut run: Run = serde_json::from_str(&json).map_err(|error| corrupt("run", lease.run_id, error))?;
    delete_messages(conn, run.id)?;
    run.status = RunStatus::Created;
    run.attempt += 1;
    run.started_at = None;
    update_run(conn, &run, None)?;
    insert_status_event(conn, &run)
}

/// Cancels a run as [`aegis_core::Storage::request_cancel`] describes.
pub(crate) fn request_cancel(conn: &Connection, run_id: Uuid, reason: &str) -> Result<Option<Run>, StorageError> {
    let Some(mut run) = get_run(conn, run_id)? else {
        return Ok(None);
    };
    match run.status {
        RunStatus::Created => {
            RunOutcome::stopped(reason, Vec::new(), None).apply_to(&mut run);
            update_run(conn, &run, None)?;
            insert_status_event(conn, &run)?;
        }
        RunStatus::Active => {
            let cancel_failed = |error| backend(&format!("requesting the cancel of run {run_id}"), error);
            let mut statement = conn
                .prepare_cached("UPDATE runs SET cancel_reason = COALESCE(cancel_reason, ?2) WHERE id = ?1")
                .map_err(cancel_failed)?;
            statement.execute(params![run_id.to_string(), reason]).map_err(cancel_failed)?;
        }
        _ => {}
    }
    Ok(Some(run))
}

/// Lists the active runs leased to `owner` that have a cancel request.
pub(crate) fn cancel_requests(conn: &Connection, owner: &str) -> Result<Vec<(Uuid, String)>, StorageError> {
    let list_failed = |error| backend("listing cancel requests", error);
    let mut statement = conn
        .prepare_cached(
            "SELECT id, cancel_reason FROM runs WHERE status = ?1 AND lease_owner = ?2 AND cancel_reason IS NOT NULL",
        )
        .map_err(list_failed)?;
    let rows = statement
        .query_map(params![RunStatus::Active.as_str(), owner], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })
        .map_err(list_failed)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(list_failed)?;
    rows.into_iter().map(|(id, reason)| Ok((parse_uuid(&id)?, reason))).collect()
}

/// The selection of `active` runs that [`requeue`] takes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Requeue {
    /// Runs whose lease ran out by the store's clock.
    Expired,
    /// Every active run: at open, when no worker of this process holds a lease yet.
    AllActive,
}

/// Puts the chosen `active` runs back to `created` with the next attempt, dropping the
/// abandoned attempt's messages. A run that already used `max_attempts` attempts ends as
/// `error` with [`interrupted_outcome`] instead.
pub(crate) fn requeue(conn: &Connection, selection: Requeue, max_attempts: u32) -> Result<RequeueReport, StorageError> {
    let requeue_failed = |error| backend("re-queueing active runs", error);
    let cutoff = match selection {
        Requeue::Expired => Timestamp::now().unix_micros(),
        Requeue::AllActive => i64::MAX,
    };
    let mut statement = conn
        .prepare_cached(
            "SELECT id, json, cancel_reason FROM runs
             WHERE status = ?1 AND (lease_expires_at IS NULL OR lease_expires_at <= ?2)
             ORDER BY created_at, id",
        )
        .map_err(requeue_failed)?;
    let rows = statement
        .query_map(params![RunStatus::Active.as_str(), cutoff], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, Option<String>>(2)?))
        })
        .map_err(requeue_failed)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(requeue_failed)?;

    let mut report = RequeueReport::default();
    for (id, json, cancel_reason) in rows {
        let id = parse_uuid(&id)?;
        let mut run = decode_run(conn, id, &json)?;

        if let Some(reason) = cancel_reason {
            // A cancelled run ends as requested, with what its last attempt recorded.
            let messages = std::mem::take(&mut run.messages);
            RunOutcome::stopped(&reason, messages, None).apply_to(&mut run);
            report.stopped.push(id);
        } else if run.attempt >= max_attempts {
            delete_messages(conn, id)?;
            interrupted_outcome(run.attempt).apply_to(&mut run);
            report.exhausted.push(id);
        } else {
            delete_messages(conn, id)?;
            run.status = RunStatus::Created;
            run.attempt += 1;
            run.started_at = None;
            report.requeued.push(id);
        }
        update_run(conn, &run, None)?;
        insert_status_event(conn, &run)?;
    }
    Ok(report)
}

/// Returns the JSON of the run `lease` names if the lease still holds it, else `LeaseLost`.
///
/// Like the in-memory store, a lease that expired but whose run was not re-queued yet still
/// holds the run: only a re-queue ends it.
fn held_run(conn: &Connection, lease: &Lease) -> Result<String, StorageError> {
    let mut statement = conn
        .prepare_cached("SELECT json FROM runs WHERE id = ?1 AND status = ?4 AND attempt = ?2 AND lease_owner = ?3")
        .map_err(|error| backend("preparing the lease check", error))?;
    let json: Option<String> = statement
        .query_row(params![lease.run_id.to_string(), lease.attempt, lease.owner, RunStatus::Active.as_str()], |row| {
            row.get(0)
        })
        .optional()
        .map_err(|error| backend(&format!("checking the lease of run {}", lease.run_id), error))?;
    json.ok_or_else(|| StorageError::lease_lost(lease.run_id, lease.attempt))
}

/// Writes a changed run: its document and the columns copied from it, plus the lease.
fn update_run(conn: &Connection, run: &Run, lease: Option<(&str, Timestamp)>) -> Result<(), StorageError> {
    let (json, is_final) = stored_json(conn, run)?;
    let update_failed = |error| backend(&format!("updating run {}", run.id), error);
    let mut statement = conn
        .prepare_cached(
            "UPDATE runs SET status = ?2, attempt = ?3, lease_owner = ?4, lease_expires_at = ?5, json = ?6,
                             cancel_reason = CASE WHEN ?2 = 'active' THEN cancel_reason END,
                             finished_at = ?7, archived = ?8, json_final = ?9, started_at = ?10
             WHERE id = ?1",
        )
        .map_err(update_failed)?;
    let (owner, expires_at) = match lease {
        Some((owner, expires_at)) => (Some(owner), Some(expires_at.unix_micros())),
        None => (None, None),
    };
    statement
        .execute(params![
            run.id.to_string(),
            run.status.as_str(),
            run.attempt,
            owner,
            expires_at,
            json,
            run.finished_at.map(Timestamp::unix_micros),
            run.archived,
            is_final,
            run.started_at.map(Timestamp::unix_micros)
        ])
        .map_err(update_failed)?;
    Ok(())
}

/// Stores the event of the run's current status and attempt.
fn insert_status_event(conn: &Connection, run: &Run) -> Result<(), StorageError> {
    let json = serde_json::to_string(&RunEventKind::status_of(run))
        .map_err(|error| encode_failed("event of run", run.id, error))?;
    insert_event(conn, run.id, &json)
}

fn insert_message(conn: &Connection, run_id: Uuid, attempt: u32, message: &str) -> Result<(), StorageError> {
    let append_failed = |error| backend(&format!("appending a message to run {run_id}"), error);
    let mut statement = conn
        .prepare_cached(
            "INSERT INTO run_messages (run_id, attempt, seq, json)
             VALUES (?1, ?2, (SELECT COALESCE(MAX(seq), 0) + 1 FROM run_messages WHERE run_id = ?1 AND attempt = ?2), ?3)",
        )
        .map_err(append_failed)?;
    statement.execute(params![run_id.to_string(), attempt, message]).map_err(append_failed)?;
    Ok(())
}

fn delete_messages(conn: &Connection, run_id: Uuid) -> Result<(), StorageError> {
    let delete_failed = |error| backend(&format!("dropping the messages of run {run_id}"), error);
    let mut statement = conn.prepare_cached("DELETE FROM run_messages WHERE run_id = ?1").map_err(delete_failed)?;
    statement.execute(params![run_id.to_string()]).map_err(delete_failed)?;
    Ok(())
}

/// Decodes a run document and attaches the messages of its current attempt.
fn decode_run(conn: &Connection, id: Uuid, json: &str) -> Result<Run, StorageError> {
    let mut run: Run = serde_json::from_str(json).map_err(|error| corrupt("run", id, error))?;
    run.messages = read_messages(conn, id, run.attempt)?;
    Ok(run)
}

fn read_messages(conn: &Connection, run_id: Uuid, attempt: u32) -> Result<Vec<AgentMessage>, StorageError> {
    let decode = |json: String| serde_json::from_str(&json).map_err(|error| corrupt("message of run", run_id, error));
    read_message_json(conn, run_id, attempt)?.into_iter().map(decode).collect()
}

/// Reads the messages of one attempt of a run as stored, in order.
fn read_message_json(conn: &Connection, run_id: Uuid, attempt: u32) -> Result<Vec<String>, StorageError> {
    let read_failed = |error| backend(&format!("reading the messages of run {run_id}"), error);
    let mut statement = conn
        .prepare_cached("SELECT json FROM run_messages WHERE run_id = ?1 AND attempt = ?2 ORDER BY seq")
        .map_err(read_failed)?;
    let rows = statement.query_map(params![run_id.to_string(), attempt], |row| row.get(0)).map_err(read_failed)?;
    rows.collect::<Result<Vec<String>, _>>().map_err(read_failed)
}

pub(crate) fn parse_uuid(text: &str) -> Result<Uuid, StorageError> {
    Uuid::parse_str(text)
        .map_err(|error| StorageError::backend(format!("the stored run id {text:?} is not a UUID"), error))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use aegis_core::storage::testkit::{messages, run_spec, session, task, team};

    use super::*;

    #[test]
    fn spliced_messages_give_the_encoded_run() {
        let mut run = run_spec(&session(&task("splice"), &team("splice"))).run;
        run.status = RunStatus::Complete;
        run.estimated_completion_time = None;
        for count in [0, 1, 3] {
            run.messages = messages().into_iter().take(count).collect();
            let encoded =
                run.messages.iter().map(|message| serde_json::to_string(message).unwrap()).collect::<Vec<_>>();

            let document = splice_messages(&encode_run(&run).unwrap(), &encoded).expect("messages is the last field");

            assert_eq!(document, serde_json::to_string(&run).unwrap(), "with {count} messages");
        }
    }

    #[test]
    fn splice_rejects_other_endings() {
        assert_eq!(splice_messages(r#"{"messages":[],"id":1}"#, &[]), None);
        assert_eq!(splice_messages(r#"{"other":[]}"#, &[]), None);
    }
}
