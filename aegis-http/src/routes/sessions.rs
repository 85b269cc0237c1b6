//! `/api/v1/session`: links of a task and a team, with `team_metadata` overrides. Secrets
//! a client put in `team_metadata` are masked in every response, like those of teams.

use axum::extract::State;
use serde_json::Value;

use aegis_core::secret::mask_secrets;
use aegis_core::storage::DeleteTarget;
use aegis_core::{Aegis, NewSession, ResourceKind, Session, SessionPatch};

use crate::auth::caller::Caller;
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::extract::{ApiJson, PathId};
use crate::idempotency::ReservedId;
use crate::openapi::IDEMPOTENCY_KEY;
use crate::openapi::schemas::{
    CascadeParams, DataEnvelope, Deleted, ErrorEnvelope, ListParams, PageEnvelope, PageParams, SessionParams,
};
use crate::routes::list_query::ListQuery;

#[utoipa::path(
    post, path = "/session", tag = "sessions", operation_id = "create_session",
    params(("Idempotency-Key" = Option<String>, Header, description = IDEMPOTENCY_KEY)),
    request_body = NewSession,
    responses((status = 201, description = "The session was created (`Session created.`).", body = DataEnvelope<Session>)),
)]
pub(super) async fn create(
    State(aegis): State<Aegis>,
    caller: Caller,
    reserved: ReservedId,
    ApiJson(mut new): ApiJson<NewSession>,
) -> Result<Envelope<Value>, ApiError> {
    caller.stamp_creator(&mut new.created_by_user_id)?;
    // Another user's task or team is reported as unknown, as a read of it would be.
    caller.referenced(aegis.get_task(new.task_id).await, ResourceKind::Task, new.task_id, "task_id")?;
    caller.referenced(aegis.get_team(new.team_id).await, ResourceKind::Team, new.team_id, "team_id")?;
    let session =
        reserved.create_or_get(|id| aegis.create_session_with_id(id, new), |id| aegis.get_session(id)).await?;
    Ok(Envelope::created("Session created.", masked(&session)))
}

#[utoipa::path(
    get, path = "/session/{id}", tag = "sessions", operation_id = "get_session",
    params(("id" = Uuid, Path, description = "The session's id.")),
    responses((status = 200, description = "The session.", body = DataEnvelope<Session>)),
)]
pub(super) async fn get(
    State(aegis): State<Aegis>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Envelope<Value>, ApiError> {
    let session = caller.visible(aegis.get_session(id).await?, ResourceKind::Session, id)?;
    Ok(Envelope::got(masked(&session)))
}

#[utoipa::path(
    get, path = "/session", tag = "sessions", operation_id = "list_sessions",
    params(PageParams, ListParams, SessionParams),
    responses((status = 200, description = "One page of sessions.", body = PageEnvelope<Session>)),
)]
pub(super) async fn list(
    State(aegis): State<Aegis>,
    caller: Caller,
    query: ListQuery,
) -> Result<Envelope<Vec<Value>>, ApiError> {
    let mut filter = query.session_filter()?;
    caller.restrict_filter(&mut filter.created_by_user_id)?;
    let page = aegis.list_sessions(&filter).await?;
    Ok(Envelope::page(page, |row| masked(&row)))
}

#[utoipa::path(
    patch, path = "/session/{id}", tag = "sessions", operation_id = "update_session",
    params(("id" = Uuid, Path, description = "The session's id.")),
    request_body = SessionPatch,
    responses((status = 200, description = "The changed session.", body = DataEnvelope<Session>)),
)]
pub(super) async fn update(
    State(aegis): State<Aegis>,
    caller: Caller,
    PathId(id): PathId,
    ApiJson(patch): ApiJson<SessionPatch>,
) -> Result<Envelope<Value>, ApiError> {
    caller.visible(aegis.get_session(id).await?, ResourceKind::Session, id)?;
    let updated = aegis.update_session(id, patch).await?;
    Ok(Envelope::ok("Session updated.", masked(&updated)))
}

#[utoipa::path(
    delete, path = "/session/{id}", tag = "sessions", operation_id = "delete_session",
    params(("id" = Uuid, Path, description = "The session's id."), CascadeParams),
    responses(
        (status = 200, description = "The session was deleted, with its dependants under `?cascade=true`.", body = DataEnvelope<Deleted>),
        (status = 409, description = "Sessions or runs use the session and `cascade` is not `true`, or a cascade would delete a run that is not terminal.", body = ErrorEnvelope),
    ),
)]
pub(super) async fn delete(
    State(aegis): State<Aegis>,
    caller: Caller,
    PathId(id): PathId,
    query: ListQuery,
) -> Result<Envelope<Value>, ApiError> {
    caller.visible(aegis.get_session(id).await?, ResourceKind::Session, id)?;
    let dependants = aegis.delete(DeleteTarget::Session(id), query.cascade()?).await?;
    Ok(super::deleted("Session deleted.", id, &dependants))
}

fn masked(session: &Session) -> Value {
    let mut value = serde_json::to_value(session).unwrap_or(Value::Null);
    mask_secrets(&mut value);
    value
}
