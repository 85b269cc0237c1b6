//! The `/api/v1` routes: one module per resource, all over one [`Aegis`] instance.

mod list_query;
mod probes;
mod runs;
mod sessions;
mod stream;
mod tasks;
mod teams;

use std::sync::Arc;

use axum::Router;
use axum::http::{Method, StatusCode, Uri};
use axum::routing::{get, post};

use aegis_core::storage::Dependants;
use aegis_core::{Aegis, FieldError};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::ApiKeys;
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::limits::RateLimiter;

/// Builds the API router over `aegis`. Requests under `/api/v1` pass authentication with
/// `keys`, then the rate limit, then the idempotency middleware, in that order.
pub(crate) fn router(aegis: Aegis, keys: ApiKeys, limiter: Option<Arc<RateLimiter>>) -> Router {
    let api = Router::new()
        .route("/task", get(tasks::list).post(tasks::create))
        .route("/task/{id}", get(tasks::get).patch(tasks::update).delete(tasks::delete))
        .route("/team", get(teams::list).post(teams::create))
        .route("/team/validate", post(teams::validate))
        .route("/team/{id}", get(teams::get).patch(teams::update).delete(teams::delete))
        .route("/session", get(sessions::list).post(sessions::create))
        .route("/session/{id}", get(sessions::get).patch(sessions::update).delete(sessions::delete))
        .route("/run", get(runs::list).post(runs::create))
        .route("/run/{id}", get(runs::get).patch(runs::update).delete(runs::delete))
        .route("/run/{id}/messages", get(runs::messages))
        .route("/run/{id}/cancel", post(runs::cancel))
        .route("/run/{id}/stream", get(stream::stream))
        .layer(axum::middleware::from_fn_with_state(aegis.clone(), crate::idempotency::reserve))
        .layer(axum::middleware::from_fn_with_state(limiter, crate::limits::limit_rate))
        .layer(axum::middleware::from_fn_with_state(keys.clone(), crate::auth::middleware::authenticate));
    // Metrics name routes, models and error types, so they need a key like the API does.
    let metrics = Router::new()
        .route("/metrics", get(crate::metrics::render))
        .layer(axum::middleware::from_fn_with_state(keys, crate::auth::middleware::authenticate));

    Router::new()
        .nest("/api/v1", api)
        .merge(metrics)
        .route("/healthz", get(healthz))
        .route("/readyz", get(probes::readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(aegis)
}

/// The response to a delete: the id and what went with it.
pub(crate) fn deleted(message: &'static str, id: Uuid, dependants: &Dependants) -> Envelope<Value> {
    Envelope::ok(message, json!({"id": id, "deleted_sessions": dependants.sessions, "deleted_runs": dependants.runs}))
}

async fn healthz() -> &'static str {
    "ok"
}

async fn not_found(uri: Uri) -> ApiError {
    let message = format!("No route for {}", uri.path());
    ApiError::new(StatusCode::NOT_FOUND, &message).with_error(
        FieldError::new("path", "not_found", message.to_lowercase())
            .with_fix("see the API reference for the routes under /api/v1"),
    )
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    let message = format!("Method {method} is not allowed on {}", uri.path());
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, &message).with_error(FieldError::new(
        "method",
        "method_not_allowed",
        message.to_lowercase(),
    ))
}
