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
use tower::ServiceBuilder;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use aegis_core::storage::Dependants;
use aegis_core::{Aegis, FieldError};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::auth::ApiKeys;
use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::fast_path::BypassLayer;
use crate::limits::RateLimiter;
use crate::openapi;

/// Builds the application's routes over `aegis`, with the 404 and 405 fallbacks.
///
/// The router has three parts. [`api_routes`] are the resource routes under `/api/v1`: their
/// requests pass authentication with `keys`, then the rate limit, then the idempotency
/// middleware, in that order. `/metrics` passes authentication only. [`public_routes`]
/// (`/healthz`, `/readyz`, `/api/v1/openapi.json`) and Swagger UI at `/docs` get none of these
/// layers, so they stay reachable without a key.
pub(crate) fn router(aegis: Aegis, keys: ApiKeys, limiter: Option<Arc<RateLimiter>>) -> Router {
    // One `layer` call, outermost first, for the reason `crate::app_with_config` gives.
    let api = api_routes().layer(
        ServiceBuilder::new()
            .layer(crate::auth::middleware::layer(keys.clone()))
            // Without a rate limit the layer is left out rather than passed through per request.
            .option_layer(
                limiter.map(|limiter| axum::middleware::from_fn_with_state(limiter, crate::limits::limit_rate)),
            )
            .layer(BypassLayer::new(
                crate::idempotency::has_no_key,
                axum::middleware::from_fn_with_state(aegis.clone(), crate::idempotency::reserve),
            )),
    );
    // Metrics name routes, models and error types, so they need a key like the API does.
    let metrics = metrics_routes().layer(crate::auth::middleware::layer(keys));
    let (routes, _) = collect(api, metrics);

    // The fallbacks are set last: the 405 fallback applies to the routes registered before it.
    routes
        .merge(openapi::swagger_ui())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(aegis)
}

/// Returns the OpenAPI document of the routes that [`router`] serves.
pub(crate) fn document() -> OpenApi {
    collect(api_routes(), metrics_routes()).1
}

/// Splits the API, metrics and public routes into one router and one document.
fn collect(api: OpenApiRouter<Aegis>, metrics: OpenApiRouter<Aegis>) -> (Router<Aegis>, OpenApi) {
    let (routes, spec) =
        OpenApiRouter::with_openapi(openapi::base()).merge(api).merge(metrics).merge(public_routes()).split_for_parts();
    (routes, openapi::finish(spec))
}

/// `/metrics`, in the Prometheus text format.
fn metrics_routes() -> OpenApiRouter<Aegis> {
    OpenApiRouter::new().routes(routes!(crate::metrics::render))
}

/// Builds the resource routes under `/api/v1`. Each `routes!` call routes its handlers and adds
/// their `#[utoipa::path]` descriptions to the document, so neither can miss a route.
fn api_routes() -> OpenApiRouter<Aegis> {
    let v1 = OpenApiRouter::new()
        .routes(routes!(tasks::list, tasks::create))
        .routes(routes!(tasks::get, tasks::update, tasks::delete))
        .routes(routes!(teams::list, teams::create))
        .routes(routes!(teams::validate))
        .routes(routes!(teams::get, teams::update, teams::delete))
        .routes(routes!(sessions::list, sessions::create))
        .routes(routes!(sessions::get, sessions::update, sessions::delete))
        .routes(routes!(runs::list, runs::create))
        .routes(routes!(runs::get, runs::update, runs::delete))
        .routes(routes!(runs::messages))
        .routes(routes!(runs::cancel))
        .routes(routes!(stream::stream));
    OpenApiRouter::new().nest("/api/v1", v1)
}

/// Routes that need no credentials: the health and readiness probes and the OpenAPI document.
fn public_routes() -> OpenApiRouter<Aegis> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(probes::readyz))
        .routes(routes!(openapi::serve_document))
}

/// The response to a delete: the id and what went with it.
pub(crate) fn deleted(message: &'static str, id: Uuid, dependants: &Dependants) -> Envelope<Value> {
    Envelope::ok(message, json!({"id": id, "deleted_sessions": dependants.sessions, "deleted_runs": dependants.runs}))
}

#[utoipa::path(
    get, path = "/healthz", tag = "service", operation_id = "healthz", security(()),
    responses((status = 200, description = "The process is up.", content_type = "text/plain", body = String, example = "ok")),
)]
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
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, &message).with_error(
        FieldError::new("method", "method_not_allowed", message.to_lowercase())
            .with_fix(format!("use a method that {} accepts; the API reference lists them per route", uri.path())),
    )
}
