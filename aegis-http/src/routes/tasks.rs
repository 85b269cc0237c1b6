//! `/api/v1/task`: the catalogue of tasks.

use axum::extract::State;

use aegis_core::storage::DeleteTarget;
use aegis_core::{Aegis, NewTask, Task, TaskPatch};
use serde_json::Value;

use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::extract::{ApiJson, PathId};
use crate::idempotency::ReservedId;
use crate::routes::list_query::ListQuery;

pub(super) async fn create(
    State(aegis): State<Aegis>,
    reserved: ReservedId,
    ApiJson(new): ApiJson<NewTask>,
) -> Result<Envelope<Task>, ApiError> {
    let task = reserved.create_or_get(|id| aegis.create_task_with_id(id, new), |id| aegis.get_task(id)).await?;
    Ok(Envelope::created("Task created.", task))
}

pub(super) async fn get(State(aegis): State<Aegis>, PathId(id): PathId) -> Result<Envelope<Task>, ApiError> {
    Ok(Envelope::got(aegis.get_task(id).await?))
}

pub(super) async fn list(State(aegis): State<Aegis>, query: ListQuery) -> Result<Envelope<Vec<Task>>, ApiError> {
    let page = aegis.list_tasks(&query.list_filter()?).await?;
    Ok(Envelope::page(page, |task| task))
}

pub(super) async fn update(
    State(aegis): State<Aegis>,
    PathId(id): PathId,
    ApiJson(patch): ApiJson<TaskPatch>,
) -> Result<Envelope<Task>, ApiError> {
    Ok(Envelope::ok("Task updated.", aegis.update_task(id, patch).await?))
}

pub(super) async fn delete(
    State(aegis): State<Aegis>,
    PathId(id): PathId,
    query: ListQuery,
) -> Result<Envelope<Value>, ApiError> {
    let dependants = aegis.delete(DeleteTarget::Task(id), query.cascade()?).await?;
    Ok(super::deleted("Task deleted.", id, &dependants))
}
