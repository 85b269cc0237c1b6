//! `/api/v1/session`: links of a task and a team, with `team_metadata` overrides. Secrets
//! a client put in `team_metadata` are masked in every response, like those of teams.

use axum::extract::State;
use serde_json::Value;

use aegis_core::secret::mask_secrets;
use aegis_core::storage::DeleteTarget;
use aegis_core::{Aegis, NewSession, Session, SessionPatch};

use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::extract::{ApiJson, PathId};
use crate::idempotency::ReservedId;
use crate::routes::list_query::ListQuery;

pub(super) async fn create(
    State(aegis): State<Aegis>,
    reserved: ReservedId,
    ApiJson(new): ApiJson<NewSession>,
) -> Result<Envelope<Value>, ApiError> {
    let session =
        reserved.create_or_get(|id| aegis.create_session_with_id(id, new), |id| aegis.get_session(id)).await?;
    Ok(Envelope::created("Session created.", masked(&session)))
}

pub(super) async fn get(State(aegis): State<Aegis>, PathId(id): PathId) -> Result<Envelope<Value>, ApiError> {
    Ok(Envelope::got(masked(&aegis.get_session(id).await?)))
}

pub(super) async fn list(State(aegis): State<Aegis>, query: ListQuery) -> Result<Envelope<Vec<Value>>, ApiError> {
    let page = aegis.list_sessions(&query.session_filter()?).await?;
    Ok(Envelope::page(page, |row| masked(&row)))
}

pub(super) async fn update(
    State(aegis): State<Aegis>,
    PathId(id): PathId,
    ApiJson(patch): ApiJson<SessionPatch>,
) -> Result<Envelope<Value>, ApiError> {
    let updated = aegis.update_session(id, patch).await?;
    Ok(Envelope::ok("Session updated.", masked(&updated)))
}

pub(super) async fn delete(
    State(aegis): State<Aegis>,
    PathId(id): PathId,
    query: ListQuery,
) -> Result<Envelope<Value>, ApiError> {
    let dependants = aegis.delete(DeleteTarget::Session(id), query.cascade()?).await?;
    Ok(super::deleted("Session deleted.", id, &dependants))
}

fn masked(session: &Session) -> Value {
    let mut value = serde_json::to_value(session).unwrap_or(Value::Null);
    mask_secrets(&mut value);
    value
}
