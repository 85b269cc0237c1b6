//! `/api/v1/team`: AutoGen team components. Secrets are never returned: every response masks
//! them (see [`aegis_core::secret::mask_secrets`]).
//!
//! `POST /team/validate` takes the body of `POST /team` and returns 200 with
//! `{"valid", "errors"}`, listing the same problems that make `POST /team` return 422, so a
//! client can check a component without storing it.

use axum::extract::State;
use serde_json::{Value, json};

use aegis_core::secret::mask_secrets;
use aegis_core::storage::DeleteTarget;
use aegis_core::{Aegis, NewTeam, ResourceKind, Team, TeamPatch};

use crate::auth::caller::Caller;
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::extract::{ApiJson, PathId};
use crate::idempotency::ReservedId;
use crate::routes::list_query::ListQuery;

pub(super) async fn create(
    State(aegis): State<Aegis>,
    caller: Caller,
    reserved: ReservedId,
    ApiJson(mut new): ApiJson<NewTeam>,
) -> Result<Envelope<Value>, ApiError> {
    caller.stamp_creator(&mut new.created_by_user_id)?;
    let team = reserved.create_or_get(|id| aegis.create_team_with_id(id, new), |id| aegis.get_team(id)).await?;
    Ok(Envelope::created("Team created.", masked(&team)))
}

pub(super) async fn validate(State(aegis): State<Aegis>, ApiJson(new): ApiJson<NewTeam>) -> Envelope<Value> {
    let errors = aegis.validate_team(&new.component);
    Envelope::ok("Team validated.", json!({"valid": errors.is_empty(), "errors": errors}))
}

pub(super) async fn get(
    State(aegis): State<Aegis>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Envelope<Value>, ApiError> {
    let team = caller.visible(aegis.get_team(id).await?, ResourceKind::Team, id)?;
    Ok(Envelope::got(masked(&team)))
}

pub(super) async fn list(
    State(aegis): State<Aegis>,
    caller: Caller,
    query: ListQuery,
) -> Result<Envelope<Vec<Value>>, ApiError> {
    let mut filter = query.list_filter()?;
    caller.restrict_filter(&mut filter.created_by_user_id)?;
    let page = aegis.list_teams(&filter).await?;
    Ok(Envelope::page(page, |row| masked(&row)))
}

pub(super) async fn update(
    State(aegis): State<Aegis>,
    caller: Caller,
    PathId(id): PathId,
    ApiJson(patch): ApiJson<TeamPatch>,
) -> Result<Envelope<Value>, ApiError> {
    caller.visible(aegis.get_team(id).await?, ResourceKind::Team, id)?;
    let updated = aegis.update_team(id, patch).await?;
    Ok(Envelope::ok("Team updated.", masked(&updated)))
}

pub(super) async fn delete(
    State(aegis): State<Aegis>,
    caller: Caller,
    PathId(id): PathId,
    query: ListQuery,
) -> Result<Envelope<Value>, ApiError> {
    caller.visible(aegis.get_team(id).await?, ResourceKind::Team, id)?;
    let dependants = aegis.delete(DeleteTarget::Team(id), query.cascade()?).await?;
    Ok(super::deleted("Team deleted.", id, &dependants))
}

fn masked(team: &Team) -> Value {
    let mut value = serde_json::to_value(team).unwrap_or(Value::Null);
    mask_secrets(&mut value);
    value
}
