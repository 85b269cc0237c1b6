//! Schema-only types: the JSON shapes that `envelope.rs`, `error.rs` and the query parsers
//! produce or read by hand, written down as structs so that utoipa can describe them.
//!
//! Nothing constructs these types; the spec test and the fuzz test check that the served
//! responses keep to them.

#![allow(dead_code)]

use serde_json::{Map, Value};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use aegis_core::{FieldError, RunStatus, Timestamp};

/// The success envelope with one resource as `data`.
#[derive(ToSchema)]
pub(crate) struct DataEnvelope<T> {
    /// The outcome in words, such as `Run created.` or `Data got correctly`.
    message: String,
    /// Empty for a single resource.
    meta: Map<String, Value>,
    /// The resource.
    data: T,
}

/// The success envelope of a list: one page of rows as `data`.
#[derive(ToSchema)]
pub(crate) struct PageEnvelope<T> {
    /// Always `Data got correctly`.
    message: String,
    /// The cursor of the next page.
    meta: PageMeta,
    /// The rows of this page.
    data: Vec<T>,
}

/// The paging fields of a list response.
#[derive(ToSchema)]
pub(crate) struct PageMeta {
    /// The `cursor` of the next page; `null` on the last page.
    next_cursor: Option<String>,
    /// Whether another page follows.
    has_more: bool,
}

/// The error envelope: every 4xx and 5xx response of the API has this body.
#[derive(ToSchema)]
pub(crate) struct ErrorEnvelope {
    /// A one-line summary of the failure.
    message: String,
    /// The problems, each naming its field.
    meta: ErrorMeta,
    /// Always `null`.
    #[schema(schema_with = null_schema)]
    data: (),
}

/// The problems of a failed request.
#[derive(ToSchema)]
pub(crate) struct ErrorMeta {
    /// One entry per problem. `field` is a JSON path into the body (`run_task.content`), a
    /// path or query parameter (`id`, `limit`), a header (`Idempotency-Key`) or `body` for
    /// the body as a whole. It is empty for a failure of the server rather than the request.
    errors: Vec<FieldError>,
}

fn null_schema() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::Null)
}

/// The result of `POST /api/v1/team/validate`.
#[derive(ToSchema)]
pub(crate) struct TeamValidation {
    /// Whether the component builds, so that `POST /api/v1/team` would accept it.
    valid: bool,
    /// Every problem with its JSON path; empty when `valid` is true.
    errors: Vec<FieldError>,
}

/// The result of a DELETE: the id and the dependants deleted with it.
#[derive(ToSchema)]
pub(crate) struct Deleted {
    /// The deleted resource.
    id: Uuid,
    /// Sessions deleted with it (`?cascade=true`).
    deleted_sessions: Vec<Uuid>,
    /// Runs deleted with it (`?cascade=true`, or the run itself).
    deleted_runs: Vec<Uuid>,
}

/// The optional body of `POST /api/v1/run/{id}/cancel`; an empty body or `null` is accepted.
#[derive(ToSchema)]
pub(crate) struct CancelRequest {
    /// The reason for stopping the run, stored as its `stop_reason`.
    reason: Option<String>,
}

/// The order of a list by `(created_at, id)`.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub(crate) enum Order {
    /// Oldest first.
    Asc,
    /// Newest first, the default.
    Desc,
}

/// The filter on the `archived` flag of the rows a list returns.
#[derive(ToSchema)]
#[schema(rename_all = "lowercase")]
pub(crate) enum Archived {
    /// Only rows that are not archived, the default.
    False,
    /// Only archived rows.
    True,
    /// All rows.
    Any,
}

/// The page parameters every list reads.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageParams {
    /// Rows per page, from 1 to 100; 20 when absent.
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// `desc` (newest first) when absent; a cursor carries its own order.
    order: Option<Order>,
    /// `meta.next_cursor` of the previous page; absent for the first page.
    cursor: Option<String>,
}

/// The filters of `GET /api/v1/task` and `GET /api/v1/team`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ListParams {
    /// `false` (the default) hides archived rows, `true` lists only them, `any` lists all.
    archived: Option<Archived>,
    /// Only rows created by this user id.
    created_by_user_id: Option<String>,
}

/// The extra filters of `GET /api/v1/session`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct SessionParams {
    /// Only sessions of this task.
    task_id: Option<Uuid>,
    /// Only sessions of this team.
    team_id: Option<Uuid>,
}

/// The extra filters of `GET /api/v1/run`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RunParams {
    /// Only runs of this session.
    session_id: Option<Uuid>,
    /// Only runs of this task.
    task_id: Option<Uuid>,
    /// Only runs in this state.
    status: Option<RunStatus>,
    /// Only runs created at or after this time (URL-encode a `+` offset as `%2B`).
    created_after: Option<Timestamp>,
    /// Only runs created before this time.
    created_before: Option<Timestamp>,
}

/// `cascade` of `DELETE` on tasks, teams and sessions.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct CascadeParams {
    /// `true` deletes the sessions and runs that use the resource too; without it, a
    /// resource that has any gets 409.
    cascade: Option<bool>,
}

/// `wait` of `GET /api/v1/run/{id}`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct WaitParams {
    /// Seconds to wait for the run to end before responding, from 0 to 60, fractions allowed;
    /// the response is the run as it is then.
    #[param(minimum = 0, maximum = 60)]
    wait: Option<f64>,
}
