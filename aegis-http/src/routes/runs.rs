//! `/api/v1/run`: accepting, reading, waiting for and cancelling runs.
//!
//! POST returns as soon as the run is durable; a worker executes it in the background, so the
//! client may disconnect at any time without affecting the run. `GET /run/{id}?wait=N`
//! long-polls: it answers once the run is terminal or after `N` seconds (at most 60), with the
//! run as it is then. `POST /run/{id}/cancel` stops a run and answers with it.

use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::CONTENT_TYPE;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::Value;

use aegis_core::storage::{DeleteTarget, Listing};
use aegis_core::{Aegis, AgentMessage, MAX_WAIT, NewRun, ResourceKind, Run, RunPatch, RunStatus};
use uuid::Uuid;

use crate::auth::caller::Caller;
use crate::envelope::{Envelope, RawEnvelope};
use crate::error::ApiError;
use crate::extract::{ApiJson, PathId};
use crate::idempotency::ReservedId;
use crate::openapi::IDEMPOTENCY_KEY;
use crate::openapi::schemas::{
    CancelRequest, DataEnvelope, Deleted, ErrorEnvelope, ListParams, PageEnvelope, PageParams, RunParams, WaitParams,
};
use crate::routes::list_query::ListQuery;

#[utoipa::path(
    post, path = "/run", tag = "runs", operation_id = "create_run",
    params(("Idempotency-Key" = Option<String>, Header, description = IDEMPOTENCY_KEY)),
    request_body = NewRun,
    responses((status = 201, description = "The run was created (`Run created.`).", body = DataEnvelope<Run>)),
)]
pub(super) async fn create(
    State(aegis): State<Aegis>,
    caller: Caller,
    reserved: ReservedId,
    ApiJson(mut new): ApiJson<NewRun>,
) -> Result<Envelope<Run>, ApiError> {
    caller.stamp_creator(&mut new.created_by_user_id)?;
    // An anonymous caller may use every session, and the service returns the same 404 for an
    // unknown one, so only an authenticated caller costs a read here.
    if caller.user_id().is_some() {
        let session = aegis.get_session(new.session_id).await;
        caller.referenced(session, ResourceKind::Session, new.session_id, "session_id")?;
    }
    let run = reserved.create_or_get(|id| aegis.create_run_with_id(id, new), |id| aegis.get_run(id)).await?;
    Ok(Envelope::created("Run created.", run))
}

#[utoipa::path(
    get, path = "/run/{id}", tag = "runs", operation_id = "get_run",
    params(("id" = Uuid, Path, description = "The run's id."), WaitParams),
    responses((status = 200, description = "The run with the messages produced so far; with `wait`, once it ended or the time is up.", body = DataEnvelope<Run>)),
)]
pub(super) async fn get(
    State(aegis): State<Aegis>,
    caller: Caller,
    PathId(id): PathId,
    query: ListQuery,
) -> Result<RawEnvelope, ApiError> {
    let wait = query.param("wait").map(parse_wait).transpose()?;
    // An anonymous caller may see every run, so a long poll needs no read before it waits:
    // the wait reads the run itself and returns at once if it has ended.
    if let (Some(wait), None) = (wait, caller.user_id()) {
        return Ok(RawEnvelope::got(aegis.wait_run_document(id, wait).await?.json));
    }
    let document = caller.visible(aegis.get_run_document(id).await?, ResourceKind::Run, id)?;
    let document = match wait {
        Some(wait) if !document.status.is_terminal() => aegis.wait_run_document(id, wait).await?,
        _ => document,
    };
    Ok(RawEnvelope::got(document.json))
}

/// Parses `wait`: seconds from 0 to 60, fractions allowed.
fn parse_wait(raw: &str) -> Result<Duration, ApiError> {
    let max = MAX_WAIT.as_secs();
    let seconds = raw.trim().parse::<f64>().ok().filter(|seconds| (0.0..=MAX_WAIT.as_secs_f64()).contains(seconds));
    let fix = format!("give the seconds to wait for the run to end, from 0 to {max}, such as wait=30");
    match seconds {
        Some(seconds) => Ok(Duration::from_secs_f64(seconds)),
        None => Err(ApiError::invalid(
            "wait",
            "invalid_value",
            format!("'{raw}' is not a number of seconds from 0 to {max}"),
            Some(&fix),
        )),
    }
}

/// Reads a run the caller may see; another user's run is an unknown id.
pub(super) async fn own_run(aegis: &Aegis, caller: &Caller, id: Uuid) -> Result<Run, ApiError> {
    caller.visible(aegis.get_run(id).await?, ResourceKind::Run, id)
}

#[utoipa::path(
    get, path = "/run", tag = "runs", operation_id = "list_runs",
    params(PageParams, ListParams, RunParams),
    responses((status = 200, description = "One page of runs with their messages.", body = PageEnvelope<Run>)),
)]
pub(super) async fn list(
    State(aegis): State<Aegis>,
    caller: Caller,
    query: ListQuery,
) -> Result<RawEnvelope, ApiError> {
    let mut filter = query.run_filter()?;
    caller.restrict_filter(&mut filter.created_by_user_id)?;
    let page = aegis.list_run_documents(&filter).await?;
    Ok(RawEnvelope::page(page, |document| document.json))
}

#[utoipa::path(
    get, path = "/run/{id}/messages", tag = "runs", operation_id = "list_run_messages",
    params(("id" = Uuid, Path, description = "The run's id."), PageParams),
    responses((status = 200, description = "One page of the messages of the run's current attempt, by position.", body = PageEnvelope<AgentMessage>)),
)]
pub(super) async fn messages(
    State(aegis): State<Aegis>,
    caller: Caller,
    PathId(id): PathId,
    query: ListQuery,
) -> Result<Envelope<Vec<AgentMessage>>, ApiError> {
    own_run(&aegis, &caller, id).await?;
    let page = aegis.list_run_messages(id, &query.page(Listing::RunMessages)?).await?;
    Ok(Envelope::page(page, |message| message))
}

#[utoipa::path(
    patch, path = "/run/{id}", tag = "runs", operation_id = "update_run",
    params(("id" = Uuid, Path, description = "The run's id.")),
    request_body = RunPatch,
    responses((status = 200, description = "The changed run.", body = DataEnvelope<Run>)),
)]
pub(super) async fn update(
    State(aegis): State<Aegis>,
    caller: Caller,
    PathId(id): PathId,
    ApiJson(patch): ApiJson<RunPatch>,
) -> Result<Envelope<Run>, ApiError> {
    own_run(&aegis, &caller, id).await?;
    Ok(Envelope::ok("Run updated.", aegis.update_run(id, patch).await?))
}

#[utoipa::path(
    delete, path = "/run/{id}", tag = "runs", operation_id = "delete_run",
    params(("id" = Uuid, Path, description = "The run's id.")),
    responses(
        (status = 200, description = "The run was deleted with its messages and events.", body = DataEnvelope<Deleted>),
        (status = 409, description = "The run is not terminal; cancel it first.", body = ErrorEnvelope),
    ),
)]
/// Deletes a terminal run with its messages; 409 for a run that is not terminal.
pub(super) async fn delete(
    State(aegis): State<Aegis>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Envelope<Value>, ApiError> {
    own_run(&aegis, &caller, id).await?;
    let dependants = aegis.delete(DeleteTarget::Run(id), false).await?;
    Ok(super::deleted("Run deleted.", id, &dependants))
}

/// The optional body of a cancel.
#[derive(Debug, Default, Deserialize)]
struct CancelBody {
    #[serde(default)]
    reason: Option<String>,
}

#[utoipa::path(
    post, path = "/run/{id}/cancel", tag = "runs", operation_id = "cancel_run",
    params(("id" = Uuid, Path, description = "The run's id.")),
    request_body(content = Option<CancelRequest>, description = "Optional; an empty body or `null` stops the run with the default reason."),
    responses((status = 200, description = "The run as it is after the cancel (`Run cancelled.`): `stopped`, or still `active` until its process stops it. A run that had already finished comes back unchanged with `Run already finished; nothing to cancel.`", body = DataEnvelope<Run>)),
)]
pub(super) async fn cancel(
    State(aegis): State<Aegis>,
    caller: Caller,
    PathId(id): PathId,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Envelope<Run>, ApiError> {
    let reason = parse_cancel_body(&headers, &body)?;
    let before = own_run(&aegis, &caller, id).await?;
    let run = aegis.cancel_run(id, reason).await?;
    // Cancelling a finished run is idempotent: the run comes back unchanged, and the message
    // states it rather than claiming a cancel that did not happen. A run that completes or
    // fails while the cancel is on its way was not cancelled either.
    let finished = before.status.is_terminal() || matches!(run.status, RunStatus::Complete | RunStatus::Error);
    let message = if finished { "Run already finished; nothing to cancel." } else { "Run cancelled." };
    Ok(Envelope::ok(message, run))
}

/// Reads the cancel reason. An empty body (with any content type, or none) or `null` means the
/// default reason; any other body must be a JSON object with an optional string `reason`.
fn parse_cancel_body(headers: &HeaderMap, body: &[u8]) -> Result<Option<String>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) || body.trim_ascii() == b"null" {
        return Ok(None);
    }
    if headers.contains_key(CONTENT_TYPE) {
        crate::extract::check_content_type(headers)?;
    }
    let value: Value = crate::extract::parse_body(body)?;
    if value.get("reason").is_some_and(|reason| !reason.is_string() && !reason.is_null()) {
        return Err(ApiError::invalid(
            "reason",
            "invalid_type",
            "reason must be a string",
            Some("send {\"reason\": \"why the run is stopped\"} or an empty body"),
        ));
    }
    let parsed: CancelBody = serde_json::from_value(value).unwrap_or_default();
    Ok(parsed.reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_accepts_zero_to_sixty() {
        assert_eq!(parse_wait("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_wait("60").unwrap(), Duration::from_secs(60));
        assert_eq!(parse_wait("1.5").unwrap(), Duration::from_millis(1500));
    }

    #[test]
    fn wait_rejects_out_of_range() {
        for raw in ["61", "-1", "soon", "", "NaN"] {
            assert_eq!(parse_wait(raw).unwrap_err().status(), 422, "wait={raw}");
        }
    }

    #[test]
    fn cancel_body_may_be_empty() {
        let mut json = HeaderMap::new();
        json.insert(CONTENT_TYPE, "application/json".parse().unwrap());
        assert_eq!(parse_cancel_body(&HeaderMap::new(), b"").unwrap(), None);
        assert_eq!(parse_cancel_body(&json, b"").unwrap(), None);
        assert_eq!(parse_cancel_body(&json, b"{}").unwrap(), None);
        assert_eq!(
            parse_cancel_body(&json, br#"{"reason": "wrong rubric"}"#).unwrap().as_deref(),
            Some("wrong rubric")
        );
    }

    #[test]
    fn cancel_body_rejects_bad_reason() {
        assert_eq!(parse_cancel_body(&HeaderMap::new(), br#"{"reason": 5}"#).unwrap_err().status(), 422);
        assert_eq!(parse_cancel_body(&HeaderMap::new(), b"{").unwrap_err().status(), 400);
    }
}
