//! Runs: the queue, leases, fencing, cancellation and messages, as statements that several
//! replicas run against one database at once.
//!
//! # Concurrency
//!
//! Every change of a run takes the run's row lock, either by a `SELECT ... FOR UPDATE` at the
//! start of its transaction or by being a single `UPDATE`. The fencing rule of
//! `aegis_core::storage` is one condition on that row: `status = 'active'` with the lease's
//! attempt and owner. Under READ COMMITTED, a statement that waited for the lock re-checks its
//! condition against the row as the other transaction left it, so a write under a lease that
//! a sweep re-queued meanwhile changes nothing and reports `LeaseLost`.
//!
//! A claim picks the oldest claimable `created` run with `FOR UPDATE SKIP LOCKED`, so claimers
//! on different replicas never wait for each other and never take the same run. Session limits
//! need more than a row lock, because two claimers could each take a different run of one
//! session: a claim of a run with a limit takes a transaction-level advisory lock on its
//! session and re-counts the session's active runs in a fresh snapshot before it commits.
//!
//! # Clock
//!
//! Leases are granted, renewed and judged expired by the database's clock (`now()`, the start
//! of the statement's transaction), so replicas with skewed clocks agree on every expiry.
//! A run's `started_at` comes from the same clock.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use aegis_core::storage::{
    ComponentCache, Lease, Page, RequeueReport, RunEventKind, RunFilter, RunOutcome, StorageError, interrupted_outcome,
    session_limit,
};
use aegis_core::{AgentMessage, BatchItem, Run, RunSpec, RunStatus, Timestamp};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use tokio_postgres::Row;
use tokio_postgres::types::Json;
use uuid::Uuid;

use crate::conn::Conn;
use crate::error::{backend, corrupt, insert_failed};
use crate::listing::{self, Conditions};
use crate::sessions::save_session_state;

/// The first half of the advisory lock key of a session's claims; the second half is a hash
/// of the session id. It differs from the migration lock's high half.
const SESSION_LOCK_CLASS: i32 = 0x6165_7373;

/// Sessions a claim skips after finding them at their limit, before it gives up until the
/// next poll.
const MAX_BLOCKED_SESSIONS: usize = 16;

/// Runs one sweep re-queues at most; the next sweep takes the rest.
const SWEEP_BATCH: i64 = 500;

/// The longest lease the store grants, so `now() + lease` stays inside PostgreSQL's range.
const MAX_LEASE: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The messages of the current attempt of run `r`, as one JSON array in append order.
const MESSAGES_OF_R: &str = "COALESCE((SELECT json_agg(m.document ORDER BY m.id) FROM run_messages AS m
                                       WHERE m.run_id = r.id AND m.attempt = r.attempt), '[]'::json)";

/// Inserts a run, its first status event and the messages it came with, in one statement.
/// An existing id is a `Conflict`.
pub(crate) async fn insert_run(conn: &impl Conn, spec: &RunSpec) -> Result<(), StorageError> {
    let run = &spec.run;
    let document = without_messages(run);
    let event = RunEventKind::status_of(run);
    let limit = session_limit(&spec.team_metadata).map(|limit| i32::try_from(limit).unwrap_or(i32::MAX));
    let stub_error_step = spec.stub_error_step.map(|step| i64::try_from(step).unwrap_or(i64::MAX));

    conn.execute(
        "WITH run AS (
             INSERT INTO runs (id, session_id, status, attempt, created_at, session_limit, stub_error_step,
                               last_event_seq, document, team_component, team_metadata, finished_at, team_id)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 1, $8, $9, $10, $13, (SELECT team_id FROM sessions WHERE id = $2))
             RETURNING id, attempt
         ), messages AS (
             INSERT INTO run_messages (run_id, attempt, document)
             SELECT run.id, run.attempt, message.value
             FROM run, json_array_elements($11::json) WITH ORDINALITY AS message (value, position)
             ORDER BY message.position
         )
         INSERT INTO run_events (run_id, seq, document) SELECT id, 1, $12 FROM run",
        &[
            &run.id,
            &run.session_id,
            &run.status.as_str(),
            &attempt_param(run.attempt),
            &run.created_at.as_datetime(),
            &limit,
            &stub_error_step,
            &Json(&document),
            &Json(&*spec.team_component),
            &Json(&spec.team_metadata),
            &Json(&run.messages),
            &Json(&event),
            &run.finished_at.map(Timestamp::as_datetime),
        ],
    )
    .await
    .map_err(|error| insert_failed("run", run.id, error))?;
    Ok(())
}

/// Reads a run with the messages of its current attempt, in one snapshot.
pub(crate) async fn get_run(conn: &impl Conn, id: Uuid) -> Result<Option<Run>, StorageError> {
    let sql = format!("SELECT r.id, r.document, {MESSAGES_OF_R} FROM runs AS r WHERE r.id = $1");
    let row = conn.query_opt(&sql, &[&id]).await.map_err(|error| backend(&format!("reading run {id}"), error))?;
    row.map(|row| decode_run(&row)).transpose()
}

/// Sums the prompt and completion tokens of the runs `user_id` created, through the
/// `runs_by_user` index.
pub(crate) async fn tokens_used_by(conn: &impl Conn, user_id: &str) -> Result<u64, StorageError> {
    let summed = |error| backend("summing the token usage of a user", error);
    let row = conn
        .query_opt(
            "SELECT COALESCE(SUM(COALESCE((document -> 'team_result' -> 'usage' ->> 'prompt_tokens')::bigint, 0)
                                 + COALESCE((document -> 'team_result' -> 'usage' ->> 'completion_tokens')::bigint, 0)),
                             0)::bigint
             FROM runs WHERE created_by_user_id = $1",
            &[&user_id],
        )
        .await
        .map_err(summed)?;
    // An aggregate without GROUP BY always returns one row.
    let total: i64 = match row {
        Some(row) => row.try_get(0).map_err(summed)?,
        None => 0,
    };
    Ok(u64::try_from(total).unwrap_or_default())
}

/// Lists the page of runs that `filter` selects, with the messages of each one's current
/// attempt.
pub(crate) async fn list_runs(conn: &impl Conn, filter: &RunFilter) -> Result<Page<Run>, StorageError> {
    let mut conditions = Conditions::default();
    conditions.equal("session_id", filter.session_id);
    conditions.equal("task_id", filter.task_id);
    conditions.equal("status", filter.status.as_ref().map(|status| status.as_str().to_owned()));
    conditions.equal("created_by_user_id", filter.created_by_user_id.clone());
    conditions.equal("archived", filter.archived);
    conditions.compare("created_at", ">=", filter.created_after.map(Timestamp::as_datetime));
    conditions.compare("created_at", "<", filter.created_before.map(Timestamp::as_datetime));
    let columns = format!("r.document, {MESSAGES_OF_R}");
    listing::list_page(conn, "runs AS r", &columns, conditions, &filter.page, |row| decode_run_at(row, 2)).await
}

/// Counts the `created` runs before `(created_at, id)` in claim order.
pub(crate) async fn count_queued_before(
    conn: &impl Conn,
    created_at: Timestamp,
    id: Uuid,
) -> Result<u64, StorageError> {
    let row = conn
        .query_opt(
            "SELECT count(*) FROM runs WHERE status = 'created' AND (created_at, id) < ($1, $2)",
            &[&created_at.as_datetime(), &id],
        )
        .await
        .map_err(|error| backend("counting queued runs", error))?;
    let count = row.map(|row| row.get::<_, i64>(0)).unwrap_or(0);
    Ok(u64::try_from(count).unwrap_or(0))
}

/// Reads how long the most recently finished `complete` or `error` runs executed, newest
/// first, of one team or of all.
pub(crate) async fn recent_run_durations(
    conn: &impl Conn,
    team_id: Option<Uuid>,
    limit: usize,
) -> Result<Vec<Duration>, StorageError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    // One statement per case, so each uses its index: `runs_by_team_finished` or
    // `runs_by_finished`.
    let rows = match team_id {
        Some(team_id) => {
            conn.query(
                "SELECT document ->> 'started_at', finished_at FROM runs
                 WHERE team_id = $1 AND finished_at IS NOT NULL AND status IN ('complete', 'error')
                 ORDER BY finished_at DESC LIMIT $2",
                &[&team_id, &limit],
            )
            .await
        }
        None => {
            conn.query(
                "SELECT document ->> 'started_at', finished_at FROM runs
                 WHERE finished_at IS NOT NULL AND status IN ('complete', 'error')
                 ORDER BY finished_at DESC LIMIT $1",
                &[&limit],
            )
            .await
        }
    }
    .map_err(|error| backend("reading recent run durations", error))?;

    // A run that never started (none should end complete or error) has no duration.
    let durations = rows
        .iter()
        .filter_map(|row| {
            let started_at = Timestamp::parse(row.get::<_, Option<&str>>(0)?).ok()?;
            let finished_at = Timestamp::from_datetime(row.get::<_, OffsetDateTime>(1));
            Some(finished_at.duration_since(started_at))
        })
        .collect();
    Ok(durations)
}

/// Sets a run's `archived` flag in its document, under the run's row lock, and returns the
/// changed run. Runs inside the caller's transaction, which must commit afterwards.
pub(crate) async fn set_run_archived(
    tx: &deadpool_postgres::Transaction<'_>,
    id: Uuid,
    archived: bool,
) -> Result<Option<Run>, StorageError> {
    let sql = format!("SELECT r.id, r.document, {MESSAGES_OF_R} FROM runs AS r WHERE r.id = $1 FOR UPDATE OF r");
    let row = tx.query_opt(&sql, &[&id]).await.map_err(|error| backend(&format!("reading run {id}"), error))?;
    let Some(row) = row else {
        return Ok(None);
    };
    let mut run = decode_run(&row)?;
    run.archived = archived;
    tx.execute("UPDATE runs SET document = $2 WHERE id = $1", &[&id, &Json(&without_messages(&run))])
        .await
        .map_err(|error| backend(&format!("archiving run {id}"), error))?;
    Ok(Some(run))
}

/// Claims the oldest claimable `created` run for `owner`, as the module docs describe, and
/// marks it `active`. Runs inside the caller's transaction, which must commit afterwards.
pub(crate) async fn claim_run(
    tx: &deadpool_postgres::Transaction<'_>,
    owner: &str,
    lease: Duration,
    components: &Mutex<ComponentCache>,
) -> Result<Option<(RunSpec, Lease)>, StorageError> {
    let claim_failed = |error| backend("claiming a run", error);
    let lease_micros = lease_micros(lease);
    let mut blocked: Vec<Uuid> = Vec::new();

    loop {
        let sql = format!(
            "SELECT r.id, r.document, {MESSAGES_OF_R}, r.session_id, r.session_limit, r.created_at,
                    r.team_component::text, r.team_metadata, r.stub_error_step,
                    now(), now() + $1::bigint * interval '1 microsecond'
             FROM runs AS r
             WHERE r.status = 'created' AND NOT (r.session_id = ANY($2))
               AND (r.session_limit IS NULL
                    OR (SELECT count(*) FROM runs AS running
                        WHERE running.session_id = r.session_id AND running.status = 'active') < r.session_limit)
             ORDER BY r.created_at, r.id
             LIMIT 1
             FOR UPDATE OF r SKIP LOCKED"
        );
        let Some(row) = tx.query_opt(&sql, &[&lease_micros, &blocked]).await.map_err(claim_failed)? else {
            return Ok(None);
        };

        let session_id: Uuid = row.get(3);
        let limit: Option<i32> = row.get(4);
        if let Some(limit) = limit {
            let created_at: OffsetDateTime = row.get(5);
            let id: Uuid = row.get(0);
            if !session_has_room(tx, session_id, limit, created_at, id).await? {
                blocked.push(session_id);
                if blocked.len() >= MAX_BLOCKED_SESSIONS {
                    return Ok(None);
                }
                continue;
            }
        }

        return activate(tx, &row, owner, components).await.map(Some);
    }
}

/// Takes the session's claim lock and checks, in a snapshot taken after it, that the session
/// is below `limit` and that no older run of the session is still queued (a claimer may have
/// skipped it while another transaction held its row).
async fn session_has_room(
    tx: &deadpool_postgres::Transaction<'_>,
    session_id: Uuid,
    limit: i32,
    created_at: OffsetDateTime,
    id: Uuid,
) -> Result<bool, StorageError> {
    let check_failed = |error| backend(&format!("checking the run limit of session {session_id}"), error);
    tx.execute("SELECT pg_advisory_xact_lock($1, hashtext($2::text))", &[&SESSION_LOCK_CLASS, &session_id.to_string()])
        .await
        .map_err(check_failed)?;

    let row = tx
        .query_opt(
            "SELECT (SELECT count(*) FROM runs WHERE session_id = $1 AND status = 'active') < $2
                    AND NOT EXISTS (SELECT 1 FROM runs WHERE session_id = $1 AND status = 'created'
                                    AND (created_at, id) < ($3, $4))",
            &[&session_id, &i64::from(limit), &created_at, &id],
        )
        .await
        .map_err(check_failed)?;
    Ok(row.map(|row| row.get::<_, bool>(0)).unwrap_or(false))
}

/// Marks the claimed row `active` under a new lease and returns the run with its snapshots.
async fn activate(
    tx: &deadpool_postgres::Transaction<'_>,
    row: &Row,
    owner: &str,
    components: &Mutex<ComponentCache>,
) -> Result<(RunSpec, Lease), StorageError> {
    let mut run = decode_run(row)?;
    let id = run.id;
    let team_component: String = row.try_get(6).map_err(|error| corrupt("team snapshot of run", id, error))?;
    let team_component =
        components.lock().unwrap_or_else(PoisonError::into_inner).get_or_decode(team_component).map_err(|error| {
            StorageError::backend(format!("the stored team snapshot of run {id} could not be read"), error)
        })?;
    let Json(team_metadata) = row
        .try_get::<_, Json<Map<String, Value>>>(7)
        .map_err(|error| corrupt("metadata snapshot of run", id, error))?;
    let stub_error_step: Option<i64> = row.get(8);
    let now: OffsetDateTime = row.get(9);
    let expires_at: OffsetDateTime = row.get(10);

    run.status = RunStatus::Active;
    run.started_at = Some(Timestamp::from_datetime(now));
    update_run(tx, &run, Some((owner, expires_at))).await?;

    let lease = Lease {
        run_id: id,
        owner: owner.to_owned(),
        attempt: run.attempt,
        expires_at: Timestamp::from_datetime(expires_at),
    };
    let stub_error_step = stub_error_step.and_then(|step| u64::try_from(step).ok());
    Ok((RunSpec { run, team_component, team_metadata, stub_error_step }, lease))
}

/// Extends a held lease to `duration` from the database's now.
pub(crate) async fn renew_lease(conn: &impl Conn, lease: &Lease, duration: Duration) -> Result<Lease, StorageError> {
    let row = conn
        .query_opt(
            "UPDATE runs SET lease_expires_at = now() + $4::bigint * interval '1 microsecond'
             WHERE id = $1 AND status = 'active' AND attempt = $2 AND lease_owner = $3
             RETURNING lease_expires_at",
            &[&lease.run_id, &attempt_param(lease.attempt), &lease.owner, &lease_micros(duration)],
        )
        .await
        .map_err(|error| backend(&format!("renewing the lease of run {}", lease.run_id), error))?;

    let Some(row) = row else {
        return Err(StorageError::lease_lost(lease.run_id, lease.attempt));
    };
    Ok(Lease { expires_at: Timestamp::from_datetime(row.get(0)), ..lease.clone() })
}

/// Appends a message to the current attempt of a held run, with its event, in one statement.
pub(crate) async fn append_message(
    conn: &impl Conn,
    lease: &Lease,
    message: &AgentMessage,
) -> Result<(), StorageError> {
    let event = RunEventKind::Message { attempt: lease.attempt, message: Box::new(message.clone()) };
    let appended = conn
        .execute(
            "WITH held AS (
                 UPDATE runs SET last_event_seq = last_event_seq + 1
                 WHERE id = $1 AND status = 'active' AND attempt = $2 AND lease_owner = $3
                 RETURNING id, attempt, last_event_seq
             ), message AS (
                 INSERT INTO run_messages (run_id, attempt, document) SELECT id, attempt, $4 FROM held
             )
             INSERT INTO run_events (run_id, seq, document) SELECT id, last_event_seq, $5 FROM held",
            &[&lease.run_id, &attempt_param(lease.attempt), &lease.owner, &Json(message), &Json(&event)],
        )
        .await
        .map_err(|error| backend(&format!("appending a message to run {}", lease.run_id), error))?;

    if appended == 0 {
        return Err(StorageError::lease_lost(lease.run_id, lease.attempt));
    }
    Ok(())
}

/// Ends a held run with `outcome` and releases its lease. The team state of a
/// `continue_conversation` run becomes the session's state in the same transaction.
pub(crate) async fn finish_run(
    tx: &deadpool_postgres::Transaction<'_>,
    lease: &Lease,
    outcome: &RunOutcome,
) -> Result<(), StorageError> {
    let mut run = held_run(tx, lease).await?;

    outcome.apply_to(&mut run);
    update_run(tx, &run, None).await?;
    if let Some(state) = &outcome.session_state {
        save_session_state(tx, run.session_id, state).await?;
    }
    Ok(())
}

/// Stores a batch item's result for a held run, replacing an earlier one of the same index.
/// `FOR SHARE` makes the write wait for, and then see, a concurrent re-queue of the run.
pub(crate) async fn save_batch_item(conn: &impl Conn, lease: &Lease, item: &BatchItem) -> Result<(), StorageError> {
    let index = i64::try_from(item.index).unwrap_or(i64::MAX);
    let saved = conn
        .execute(
            "WITH held AS (
                 SELECT id FROM runs WHERE id = $1 AND status = 'active' AND attempt = $2 AND lease_owner = $3
                 FOR SHARE
             )
             INSERT INTO run_batch_items (run_id, idx, document) SELECT id, $4, $5 FROM held
             ON CONFLICT (run_id, idx) DO UPDATE SET document = excluded.document",
            &[&lease.run_id, &attempt_param(lease.attempt), &lease.owner, &index, &Json(item)],
        )
        .await
        .map_err(|error| backend(&format!("saving batch item {} of run {}", item.index, lease.run_id), error))?;

    if saved == 0 {
        return Err(StorageError::lease_lost(lease.run_id, lease.attempt));
    }
    Ok(())
}

/// Gives a held run back to the queue with the next attempt, dropping its messages.
pub(crate) async fn release_run(tx: &deadpool_postgres::Transaction<'_>, lease: &Lease) -> Result<(), StorageError> {
    let mut run = held_run(tx, lease).await?;

    delete_messages(tx, run.id).await?;
    run.messages.clear();
    run.status = RunStatus::Created;
    run.attempt += 1;
    run.started_at = None;
    update_run(tx, &run, None).await
}

/// Cancels a run as [`aegis_core::Storage::request_cancel`] describes, under its row lock.
pub(crate) async fn request_cancel(
    tx: &deadpool_postgres::Transaction<'_>,
    run_id: Uuid,
    reason: &str,
) -> Result<Option<Run>, StorageError> {
    let cancel_failed = |error| backend(&format!("requesting the cancel of run {run_id}"), error);
    let sql = format!("SELECT r.id, r.document, {MESSAGES_OF_R} FROM runs AS r WHERE r.id = $1 FOR UPDATE OF r");
    let Some(row) = tx.query_opt(&sql, &[&run_id]).await.map_err(cancel_failed)? else {
        return Ok(None);
    };
    let mut run = decode_run(&row)?;

    match run.status {
        RunStatus::Created => {
            RunOutcome::stopped(reason, Vec::new(), None).apply_to(&mut run);
            update_run(tx, &run, None).await?;
        }
        RunStatus::Active => {
            tx.execute(
                "UPDATE runs SET cancel_reason = COALESCE(cancel_reason, $2) WHERE id = $1",
                &[&run_id, &reason],
            )
            .await
            .map_err(cancel_failed)?;
        }
        _ => {}
    }
    Ok(Some(run))
}

/// Lists the active runs leased to `owner` that have a cancel request.
pub(crate) async fn cancel_requests(conn: &impl Conn, owner: &str) -> Result<Vec<(Uuid, String)>, StorageError> {
    let rows = conn
        .query(
            "SELECT id, cancel_reason FROM runs WHERE status = 'active' AND lease_owner = $1 AND cancel_reason IS NOT NULL",
            &[&owner],
        )
        .await
        .map_err(|error| backend("listing cancel requests", error))?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// Puts `active` runs whose lease expired by the database's clock back to `created` with the
/// next attempt, dropping the abandoned attempt's messages. A run that already used
/// `max_attempts` attempts ends as `error` with [`interrupted_outcome`], and a run with a
/// cancel request ends `stopped` with its messages. Rows another replica is changing right now
/// are skipped: that replica is sweeping them or their worker is still writing.
pub(crate) async fn requeue_expired(
    tx: &deadpool_postgres::Transaction<'_>,
    max_attempts: u32,
) -> Result<RequeueReport, StorageError> {
    let sql = format!(
        "SELECT r.id, r.document, {MESSAGES_OF_R}, r.cancel_reason FROM runs AS r
         WHERE r.status = 'active' AND r.lease_expires_at <= now()
         ORDER BY r.created_at, r.id
         LIMIT $1
         FOR UPDATE OF r SKIP LOCKED"
    );
    let rows = tx.query(&sql, &[&SWEEP_BATCH]).await.map_err(|error| backend("re-queueing expired runs", error))?;

    let mut report = RequeueReport::default();
    for row in rows {
        let mut run = decode_run(&row)?;
        let cancel_reason: Option<String> = row.get(3);
        let id = run.id;

        if let Some(reason) = cancel_reason {
            // A cancelled run ends as requested, with what its last attempt recorded.
            let messages = std::mem::take(&mut run.messages);
            RunOutcome::stopped(&reason, messages, None).apply_to(&mut run);
            report.stopped.push(id);
        } else if run.attempt >= max_attempts {
            delete_messages(tx, id).await?;
            run.messages.clear();
            interrupted_outcome(run.attempt).apply_to(&mut run);
            report.exhausted.push(id);
        } else {
            delete_messages(tx, id).await?;
            run.messages.clear();
            run.status = RunStatus::Created;
            run.attempt += 1;
            run.started_at = None;
            report.requeued.push(id);
        }
        update_run(tx, &run, None).await?;
    }
    Ok(report)
}

/// Locks the run `lease` names and returns it if the lease still holds it, else `LeaseLost`.
///
/// Like the other stores, a lease that expired but whose run was not re-queued yet still holds
/// the run: only a re-queue ends it.
async fn held_run(tx: &deadpool_postgres::Transaction<'_>, lease: &Lease) -> Result<Run, StorageError> {
    let sql = format!(
        "SELECT r.id, r.document, {MESSAGES_OF_R} FROM runs AS r
         WHERE r.id = $1 AND r.status = 'active' AND r.attempt = $2 AND r.lease_owner = $3
         FOR UPDATE OF r"
    );
    let row = tx
        .query_opt(&sql, &[&lease.run_id, &attempt_param(lease.attempt), &lease.owner])
        .await
        .map_err(|error| backend(&format!("checking the lease of run {}", lease.run_id), error))?;
    let Some(row) = row else {
        return Err(StorageError::lease_lost(lease.run_id, lease.attempt));
    };
    decode_run(&row)
}

/// Writes a changed run (its document, the columns copied from it and the lease) and the
/// event of its new status, in one statement. A cancel request ends with the active status.
async fn update_run(conn: &impl Conn, run: &Run, lease: Option<(&str, OffsetDateTime)>) -> Result<(), StorageError> {
    let document = without_messages(run);
    let event = RunEventKind::status_of(run);
    let (owner, expires_at) = match lease {
        Some((owner, expires_at)) => (Some(owner), Some(expires_at)),
        None => (None, None),
    };

    conn.execute(
        "WITH updated AS (
             UPDATE runs SET status = $2::text, attempt = $3, lease_owner = $4, lease_expires_at = $5, document = $6,
                             cancel_reason = CASE WHEN $2::text = 'active' THEN cancel_reason END,
                             finished_at = $8, last_event_seq = last_event_seq + 1
             WHERE id = $1
             RETURNING id, last_event_seq
         )
         INSERT INTO run_events (run_id, seq, document) SELECT id, last_event_seq, $7 FROM updated",
        &[
            &run.id,
            &run.status.as_str(),
            &attempt_param(run.attempt),
            &owner,
            &expires_at,
            &Json(&document),
            &Json(&event),
            &run.finished_at.map(Timestamp::as_datetime),
        ],
    )
    .await
    .map_err(|error| backend(&format!("updating run {}", run.id), error))?;
    Ok(())
}

async fn delete_messages(conn: &impl Conn, run_id: Uuid) -> Result<(), StorageError> {
    conn.execute("DELETE FROM run_messages WHERE run_id = $1", &[&run_id])
        .await
        .map_err(|error| backend(&format!("dropping the messages of run {run_id}"), error))?;
    Ok(())
}

/// Decodes a row whose first three columns are the run id, its document and its messages.
fn decode_run(row: &Row) -> Result<Run, StorageError> {
    decode_run_at(row, 1)
}

/// Decodes a row whose first column is the run id and whose columns `document` and
/// `document + 1` are its document and its messages.
fn decode_run_at(row: &Row, document: usize) -> Result<Run, StorageError> {
    let id: Uuid = row.get(0);
    let Json(mut run) = row.try_get::<_, Json<Run>>(document).map_err(|error| corrupt("run", id, error))?;
    let Json(messages) = row
        .try_get::<_, Json<Vec<AgentMessage>>>(document + 1)
        .map_err(|error| corrupt("messages of run", id, error))?;
    run.messages = messages;
    Ok(run)
}

/// Returns the run as its document stores it: without messages, which live in `run_messages`.
fn without_messages(run: &Run) -> Run {
    Run { messages: Vec::new(), ..run.clone() }
}

/// Converts an attempt number to the `integer` column's type.
fn attempt_param(attempt: u32) -> i32 {
    i32::try_from(attempt).unwrap_or(i32::MAX)
}

fn lease_micros(lease: Duration) -> i64 {
    i64::try_from(lease.min(MAX_LEASE).as_micros()).unwrap_or(i64::MAX)
}
