//! `/api/v1/run`: accepting runs and reading their progress and results.
//!
//! POST returns as soon as the run is durable; a worker executes it in the background, so the
//! client may disconnect at any time without affecting the run.

use axum::extract::{Query, State};
use serde::Deserialize;

use aegis_core::{Aegis, AgentMessage, NewRun, Run};

use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::extract::{ApiJson, PathId, parse_uuid};

pub(super) async fn create(State(aegis): State<Aegis>, ApiJson(new): ApiJson<NewRun>) -> Result<Envelope<Run>, ApiError> {
    let run = aegis.create_run(new).await?;
    Ok(Envelope::created("Run created.", run))
}

pub(super) async fn get(State(aegis): State<Aegis>, PathId(id): PathId) -> Result<Envelope<Run>, ApiError> {
    Ok(Envelope::got(aegis.get_run(id).await?))
}

#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    session_id: Option<String>,
}

pub(super) async fn list(State(aegis): State<Aegis>, Query(query): Query<ListQuery>) -> Result<Envelope<Vec<Run>>, ApiError> {
    let session_id = match query.session_id.as_deref() {
        Some(raw) => Some(parse_uuid("session_id", raw)?),
        None => None,
    };
    Ok(Envelope::got(aegis.list_runs(session_id).await?))
}

pub(super) async fn messages(State(aegis): State<Aegis>, PathId(id): PathId) -> Result<Envelope<Vec<AgentMessage>>, ApiError> {
    let run = aegis.get_run(id).await?;
    Ok(Envelope::got(run.messages))
}
