//! `GET /api/v1/run/{id}/stream`: a run's progress as Server-Sent Events.
//!
//! Events:
//!
//! - `status` (with an id): `{"status", "attempt", "estimated_completion_time"}` whenever the
//!   run's status or attempt changes. A new attempt means the earlier attempt's messages were
//!   discarded, so a client drops what it showed of them. The estimate is the run's current
//!   one when the event reports the run's current status and attempt, and `null` for an
//!   older event (replayed after `Last-Event-ID`) and a terminal status.
//! - `message` (with an id): each stored message of the run.
//! - `chunk` (no id): a token chunk of a streaming agent, shown live and never replayed.
//! - `end`: the terminal run, as `GET /run/{id}` returns it; the stream closes after it.
//!
//! Event ids are the run's stored event sequence numbers, which grow over the run's whole
//! life and are never reused across attempts, so a client that reconnects with
//! `Last-Event-ID` gets exactly the events after it, whichever server process answers. The
//! stream reads the store, woken when this process changes the run and by a short poll for
//! changes made by other processes. A comment line every 15 seconds keeps proxies from
//! closing an idle stream. A client that disconnects only ends its stream, never the run.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use serde_json::json;
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

use aegis_core::storage::{RunEvent, RunEventKind};
use aegis_core::{Aegis, AgentMessage, Run, RunStatus};

use crate::auth::caller::Caller;
use crate::error::ApiError;
use crate::extract::PathId;

/// The interval of keep-alive comments.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// Events read from the store at once.
const PAGE: usize = 256;

/// Events buffered for a slow client before the follower waits for it.
const BUFFER: usize = 64;

#[utoipa::path(
    get, path = "/run/{id}/stream", tag = "runs", operation_id = "stream_run",
    params(
        ("id" = Uuid, Path, description = "The run's id."),
        ("Last-Event-ID" = Option<u64>, Header, description = "The id of the last event received; the stream resumes after it."),
    ),
    responses((
        status = 200,
        description = "Server-Sent Events until the run ends: `status` (`{\"status\", \"attempt\"}`), `message` (a stored message), `chunk` (a token chunk, never replayed) and `end` (the terminal run).",
        content_type = "text/event-stream",
        body = String,
    )),
)]
pub(super) async fn stream(
    State(aegis): State<Aegis>,
    caller: Caller,
    PathId(id): PathId,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let after = last_event_id(&headers)?;
    super::runs::own_run(&aegis, &caller, id).await?;

    let (sender, receiver) = mpsc::channel(BUFFER);
    tokio::spawn(follow(aegis, id, after, sender));
    let events = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|event| (Ok(event), receiver))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// Parses `Last-Event-ID`: absent means from the start.
fn last_event_id(headers: &HeaderMap) -> Result<u64, ApiError> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(0);
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text.is_empty() {
        return Ok(0);
    }
    text.parse().map_err(|_| {
        ApiError::invalid(
            "Last-Event-ID",
            "invalid_value",
            format!("'{text}' is not an event id of this stream"),
            Some("send the id of the last event received, or no header to start from the beginning"),
        )
    })
}

/// Sends the run's events after `after` to `sender` until the run ends, the client goes away
/// or the server shuts down.
async fn follow(aegis: Aegis, id: Uuid, mut after: u64, sender: mpsc::Sender<Event>) {
    let mut changes = aegis.subscribe_run_changes(id);
    let mut chunks = aegis.subscribe_chunks(id);
    let closed = aegis.closed();

    loop {
        changes.mark_seen();

        // The run is read before its events: if it was terminal then, its last status event
        // is among the events read next.
        let mut run = match aegis.get_run(id).await {
            Ok(run) => run,
            Err(error) => {
                tracing::warn!(run_id = %id, %error, "reading the run for its stream failed; closing the stream");
                return;
            }
        };

        // A chunk is published before the message it becomes is stored, and both before the
        // run ends. Forwarding the chunks waiting now, after the run was read and before its
        // events are, keeps every chunk ahead of its message and leaves none behind at the end.
        if !forward_waiting_chunks(&mut chunks, &sender).await {
            return;
        }
        loop {
            let events = match aegis.run_events(id, after, PAGE).await {
                Ok(events) => events,
                Err(error) => {
                    tracing::warn!(run_id = %id, %error, "reading run events failed; closing the stream");
                    return;
                }
            };
            let Some(last) = events.last() else { break };
            after = last.seq;
            for event in &events {
                if reports_later_status(event, &run) {
                    // The run moved on after it was read: read it again for this status's estimate.
                    match aegis.get_run(id).await {
                        Ok(fresh) => run = fresh,
                        Err(error) => {
                            tracing::warn!(run_id = %id, %error, "re-reading the run for its estimate failed")
                        }
                    }
                }
                if sender.send(stored_event(event, &run)).await.is_err() {
                    return;
                }
            }
        }
        if run.status.is_terminal() {
            let end = Event::default().event("end").data(serde_json::to_string(&run).unwrap_or_default());
            let _ = sender.send(end).await;
            return;
        }

        if chunks.is_none() {
            chunks = aegis.subscribe_chunks(id);
        }
        tokio::select! {
            biased;
            chunk = next_chunk(&mut chunks) => {
                if let Some(chunk) = chunk
                    && sender.send(chunk_event(&chunk)).await.is_err()
                {
                    return;
                }
            }
            () = changes.changed() => {}
            () = tokio::time::sleep(aegis.change_poll_interval()) => {}
            () = sender.closed() => return,
            () = closed.cancelled() => return,
        }
    }
}

/// Sends the chunks already received without waiting; returns `false` when the client is gone.
async fn forward_waiting_chunks(
    chunks: &mut Option<broadcast::Receiver<AgentMessage>>,
    sender: &mpsc::Sender<Event>,
) -> bool {
    let Some(receiver) = chunks else {
        return true;
    };
    loop {
        match receiver.try_recv() {
            Ok(chunk) => {
                if sender.send(chunk_event(&chunk)).await.is_err() {
                    return false;
                }
            }
            Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
            Err(broadcast::error::TryRecvError::Empty) => return true,
            Err(broadcast::error::TryRecvError::Closed) => {
                *chunks = None;
                return true;
            }
        }
    }
}

fn chunk_event(chunk: &AgentMessage) -> Event {
    Event::default().event("chunk").data(serde_json::to_string(chunk).unwrap_or_default())
}

/// Waits for the next chunk; `None` when a chunk was skipped or the run stopped executing
/// here (then the receiver is dropped, and the next round subscribes again if it can).
async fn next_chunk(chunks: &mut Option<broadcast::Receiver<AgentMessage>>) -> Option<AgentMessage> {
    let Some(receiver) = chunks else {
        return std::future::pending().await;
    };
    match receiver.recv().await {
        Ok(chunk) => Some(chunk),
        // Chunks are display pieces: a follower that fell behind skips the ones it missed.
        Err(broadcast::error::RecvError::Lagged(_)) => None,
        Err(broadcast::error::RecvError::Closed) => {
            *chunks = None;
            None
        }
    }
}

/// Returns whether `event` reports a status the run reached after `run` was read: a later
/// attempt, or `active` while `run` is still `created`.
fn reports_later_status(event: &RunEvent, run: &Run) -> bool {
    let RunEventKind::Status { status, attempt } = &event.kind else {
        return false;
    };
    *attempt > run.attempt || (*attempt == run.attempt && *status != run.status && run.status == RunStatus::Created)
}

/// Renders a stored event. `run` is the run as read before the event, and a status event
/// carries its estimate when it reports the run's current status and attempt.
fn stored_event(event: &RunEvent, run: &Run) -> Event {
    let base = Event::default().id(event.seq.to_string());
    match &event.kind {
        RunEventKind::Message { message, .. } => {
            base.event("message").data(serde_json::to_string(message).unwrap_or_default())
        }
        RunEventKind::Status { status, attempt } => {
            let is_current = *status == run.status && *attempt == run.attempt;
            let estimate = run.estimated_completion_time.filter(|_| is_current);
            let data = json!({"status": status, "attempt": attempt, "estimated_completion_time": estimate});
            base.event("status").data(data.to_string())
        }
        other => base.event("event").data(serde_json::to_string(other).unwrap_or_default()),
    }
}
