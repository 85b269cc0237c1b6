//! `/api/v1/task`: the catalogue of tasks.

use axum::extract::State;

use aegis_core::storage::{DeleteTarget, Listing};
use aegis_core::{Aegis, NewTask, ResourceKind, Task, TaskPatch};
use serde_json::Value;

use crate::auth::caller::Caller;
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::extract::{ApiJson, PathId};
use crate::idempotency::ReservedId;
use crate::openapi::IDEMPOTENCY_KEY;
use crate::openapi::schemas::{
    CascadeParams, DataEnvelope, Deleted, ErrorEnvelope, ListParams, PageEnvelope, PageParams,
};
use crate::routes::list_query::ListQuery;

#[utoipa::path(
    post, path = "/task", tag = "tasks", operation_id = "create_task",
    params(("Idempotency-Key" = Option<String>, Header, description = IDEMPOTENCY_KEY)),
    request_body = NewTask,
    responses((status = 201, description = "The task was created (`Task created.`).", body = DataEnvelope<Task>)),
)]
pub(super) async fn create(
    State(aegis): State<Aegis>,
    caller: Caller,
    reserved: ReservedId,
    ApiJson(mut new): ApiJson<NewTask>,
) -> Result<Envelope<Task>, ApiError> {
    caller.stamp_creator(&mut new.created_by_user_id)?;
    let task = reserved.create_or_get(|id| aegis.create_task_with_id(id, new), |id| aegis.get_task(id)).await?;
    Ok(Envelope::created("Task created.", task))
}

#[utoipa::path(
    get, path = "/task/{id}", tag = "tasks", operation_id = "get_task",
    params(("id" = Uuid, Path, description = "The task's id.")),
    responses((status = 200, description = "The task.", body = DataEnvelope<Task>)),
)]
pub(super) async fn get(
    State(aegis): State<Aegis>,
    caller: Caller,
    PathId(id): PathId,
) -> Result<Envelope<Task>, ApiError> {
    Ok(Envelope::got(caller.visible(aegis.get_task(id).await?, ResourceKind::Task, id)?))
}

#[utoipa::path(
    get, path = "/task", tag = "tasks", operation_id = "list_tasks",
    params(PageParams, ListParams),
    responses((status = 200, description = "One page of tasks.", body = PageEnvelope<Task>)),
)]
pub(super) async fn list(
    State(aegis): State<Aegis>,
    caller: Caller,
    query: ListQuery,
) -> Result<Envelope<Vec<Task>>, ApiError> {
    let mut filter = query.list_filter(Listing::Tasks)?;
    caller.restrict_filter(&mut filter.created_by_user_id)?;
    let page = aegis.list_tasks(&filter).await?;
    Ok(Envelope::page(page, |task| task))
}

#[utoipa::path(
    patch, path = "/task/{id}", tag = "tasks", operation_id = "update_task",
    params(("id" = Uuid, Path, description = "The task's id.")),
    request_body = TaskPatch,
    responses((status = 200, description = "The changed task.", body = DataEnvelope<Task>)),
)]
pub(super) async fn update(
    State(aegis): State<Aegis>,
    caller: Caller,
    PathId(id): PathId,
    ApiJson(patch): ApiJson<TaskPatch>,
) -> Result<Envelope<Task>, ApiError> {
    caller.visible(aegis.get_task(id).await?, ResourceKind::Task, id)?;
    Ok(Envelope::ok("Task updated.", aegis.update_task(id, patch).await?))
}

#[utoipa::path(
    delete, path = "/task/{id}", tag = "tasks", operation_id = "delete_task",
    params(("id" = Uuid, Path, description = "The task's id."), CascadeParams),
    responses(
        (status = 200, description = "The task was deleted, with its dependants under `?cascade=true`.", body = DataEnvelope<Deleted>),
        (status = 409, description = "Sessions or runs use the task and `cascade` is not `true`, or a cascade would delete a run that is not terminal.", body = ErrorEnvelope),
    ),
)]
pub(super) async fn delete(
    State(aegis): State<Aegis>,
    caller: Caller,
    PathId(id): PathId,
    query: ListQuery,
) -> Result<Envelope<Value>, ApiError> {
    caller.visible(aegis.get_task(id).await?, ResourceKind::Task, id)?;
    let dependants = aegis.delete(DeleteTarget::Task(id), query.cascade()?).await?;
    Ok(super::deleted("Task deleted.", id, &dependants))
}
