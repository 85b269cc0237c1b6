//! `/api/v1/team`: AutoGen team components. Secrets are never returned: every response masks
//! them (see [`aegis_core::secret::mask_secrets`]).
//!
//! `POST /team/validate` takes the body of `POST /team` and returns 200 with
//! `{"valid", "errors"}`, listing the same problems that make `POST /team` return 422, so a
//! client can check a component without storing it.

use axum::extract::State;
use serde_json::{Value, json};

use aegis_core::secret::mask_secrets;
use aegis_core::storage::{DeleteTarget, Listing};
use aegis_core::{Aegis, NewTeam, ResourceKind, Team, TeamPatch};

use crate::auth::caller::Caller;
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::extract::{ApiJson, PathId};
use crate::idempotency::ReservedId;
use crate::openapi::IDEMPOTENCY_KEY;
use crate::openapi::schemas::{
    CascadeParams, DataEnvelope, Deleted, ErrorEnvelope, ListParams, PageEnvelope, PageParams, TeamValidation,
};
use crate::routes::list_query::ListQuery;

#[utoipa::path(
    post, path = "/team", tag = "teams", operation_id = "create_team",
    params(("Idempotency-Key" = Option<String>, Header, description = IDEMPOTENCY_KEY)),
    request_body = NewTeam,
    responses((status = 201, description = "The team was created (`Team created.`).", body = DataEnvelope<Team>)),
)]
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

#[utoipa::path(
    post, path = "/team/validate", tag = "teams", operation_id = "validate_team",
    request_body = NewTeam,
    responses((status = 200, description = "The component's problems, if any; nothing is stored.", body = DataEnvelope<TeamValidation>)),
)]
pub(super) async fn validate(State(aegis): State<Aegis>, ApiJson(new): ApiJson<NewTeam>) -> Envelope<Value> {
    let errors = aegis.validate_team(&new.component);
    Envelope::ok("Team validated.", json!({"valid": errors.is_empty(), "errors": errors}))
}

#[utoipa::path(
    get, path = "/team/{id}", tag = "teams", operation_id = "get_team",
    params(("id" = Uuid, Path, description = "The team's id.")),
    responses((status = 200, description = "The team.", body = DataEnvelope<Team>)),
)]
pub(super) async fn get(
    State(aegis): State<Aegis>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Envelope<Value>, ApiError> {
    let team = caller.visible(aegis.get_team(id).await?, ResourceKind::Team, id)?;
    Ok(Envelope::got(masked(&team)))
}

#[utoipa::path(
    get, path = "/team", tag = "teams", operation_id = "list_teams",
    params(PageParams, ListParams),
    responses((status = 200, description = "One page of teams.", body = PageEnvelope<Team>)),
)]
pub(super) async fn list(
    State(aegis): State<Aegis>,
    caller: Caller,
    query: ListQuery,
) -> Result<Envelope<Vec<Value>>, ApiError> {
    let mut filter = query.list_filter(Listing::Teams)?;
    caller.restrict_filter(&mut filter.created_by_user_id)?;
    let page = aegis.list_teams(&filter).await?;
    Ok(Envelope::page(page, |row| masked(&row)))
}

#[utoipa::path(
    patch, path = "/team/{id}", tag = "teams", operation_id = "update_team",
    params(("id" = Uuid, Path, description = "The team's id.")),
    request_body = TeamPatch,
    responses((status = 200, description = "The changed team.", body = DataEnvelope<Team>)),
)]
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

#[utoipa::path(
    delete, path = "/team/{id}", tag = "teams", operation_id = "delete_team",
    params(("id" = Uuid, Path, description = "The team's id."), CascadeParams),
    responses(
        (status = 200, description = "The team was deleted, with its dependants under `?cascade=true`.", body = DataEnvelope<Deleted>),
        (status = 409, description = "Sessions or runs use the team and `cascade` is not `true`, or a cascade would delete a run that is not terminal.", body = ErrorEnvelope),
    ),
)]
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
