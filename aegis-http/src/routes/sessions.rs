//! `/api/v1/session`: links of a task and a team, with `team_metadata` overrides.

use axum::extract::State;

use aegis_core::{Aegis, NewSession, Session};

use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::extract::{ApiJson, PathId};
use crate::idempotency::ReservedId;

pub(super) async fn create(
    State(aegis): State<Aegis>,
    reserved: ReservedId,
    ApiJson(new): ApiJson<NewSession>,
) -> Result<Envelope<Session>, ApiError> {
    let session = reserved.create_or_get(|id| aegis.create_session_with_id(id, new), |id| aegis.get_session(id)).await?;
    Ok(Envelope::created("Session created.", session))
}

pub(super) async fn get(State(aegis): State<Aegis>, PathId(id): PathId) -> Result<Envelope<Session>, ApiError> {
    Ok(Envelope::got(aegis.get_session(id).await?))
}

pub(super) async fn list(State(aegis): State<Aegis>) -> Result<Envelope<Vec<Session>>, ApiError> {
    Ok(Envelope::got(aegis.list_sessions().await?))
}
