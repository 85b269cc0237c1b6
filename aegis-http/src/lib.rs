//! The Aegis REST API: an axum [`Router`] over [`aegis_core::Aegis`], and the `aegis` server
//! binary that serves it on the embedded SQLite store.
//!
//! This crate is the only one that knows HTTP. Handlers parse the request, call one service
//! method and wrap the result in the `{"message", "meta", "data"}` envelope; every failure
//! leaves through [`ApiError`], which renders the one error shape.
//!
//! ```no_run
//! # async fn demo() -> anyhow::Result<()> {
//! use aegis_http::server::{ServeConfig, start};
//!
//! let server = start(ServeConfig::new("aegis.db", "127.0.0.1:0".parse()?)).await?;
//! println!("serving on {}", server.addr());
//! server.stop().await?;
//! # Ok(())
//! # }
//! ```

pub mod auth;
pub mod config;
mod envelope;
pub mod error;
mod extract;
mod fast_path;
mod guard;
mod idempotency;
pub mod limits;
mod metrics;
#[cfg(feature = "mock")]
pub mod mock;
mod openapi;
mod routes;
pub mod server;
pub mod telemetry;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;

pub use error::ApiError;

use crate::auth::AuthConfig;
use crate::fast_path::{AroundLayer, BypassLayer};
use crate::limits::{LimitsConfig, RateLimiter};

/// The default of [`AppConfig::max_body_bytes`]: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// Settings of the HTTP application.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AppConfig {
    /// API keys; without keys every request is accepted.
    pub auth: AuthConfig,
    /// Per-key request rate and per-user token budget.
    pub limits: LimitsConfig,
    /// The largest request body accepted, in bytes; a larger body gets 413.
    pub max_body_bytes: usize,
}

impl Default for AppConfig {
    fn default() -> AppConfig {
        AppConfig {
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// Builds the full application without API keys or rate limits: the API routes plus request
/// ids, tracing and metrics.
pub fn app(aegis: aegis_core::Aegis) -> Router {
    app_with_config(aegis, &AppConfig::default())
}

/// Builds the full application with authentication and rate limits, and the default body
/// limit.
pub fn app_with(aegis: aegis_core::Aegis, auth: &AuthConfig, limits: &LimitsConfig) -> Router {
    let config = AppConfig { auth: auth.clone(), limits: limits.clone(), ..AppConfig::default() };
    app_with_config(aegis, &config)
}

/// Builds the full application: the routes (with authentication and rate limits on the API
/// routes), the body limit, the middleware that keeps every error (413s and panics included)
/// in the error envelope, and request ids, tracing and metrics. The first call in a process
/// installs the Prometheus recorder that `/metrics` renders.
pub fn app_with_config(aegis: aegis_core::Aegis, config: &AppConfig) -> Router {
    crate::metrics::handle();
    let keys = config.auth.api_keys.clone();
    let limiter = config.limits.rate_limit_rps.map(|rps| Arc::new(RateLimiter::new(rps, keys.len())));
    let limit = guard::BodyLimit(config.max_body_bytes);
    // One `layer` call with the whole stack: each `Router::layer` call boxes every route once
    // more, and cloning the nested boxes for each request cost more than the layers' work.
    let stack = ServiceBuilder::new()
        // The telemetry layer stays the outermost, so every response gets a request id and
        // counts in the metrics, including those of other layers' rejections.
        .layer(AroundLayer::new(telemetry::Observe))
        .layer(CatchPanicLayer::custom(guard::panic_response))
        .layer(AroundLayer::new(guard::EnvelopeErrors(limit)))
        .layer(BypassLayer::new(guard::has_no_body, axum::middleware::from_fn_with_state(limit, guard::limit_body)))
        // `guard::limit_body` is the one limit, so axum's default limit of its own is off.
        .layer(DefaultBodyLimit::disable());
    routes::router(aegis, keys, limiter).layer(stack)
}

/// Returns the OpenAPI 3.1 document of the API, as served at `GET /api/v1/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::document()
}
