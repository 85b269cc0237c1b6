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
mod idempotency;
pub mod limits;
mod metrics;
#[cfg(feature = "mock")]
pub mod mock;
mod routes;
pub mod server;
pub mod telemetry;

use std::sync::Arc;

use axum::Router;

pub use error::ApiError;

use crate::auth::AuthConfig;
use crate::limits::{LimitsConfig, RateLimiter};

/// Builds the full application without API keys or rate limits: the API routes plus request
/// ids, tracing and metrics.
pub fn app(aegis: aegis_core::Aegis) -> Router {
    app_with(aegis, &AuthConfig::default(), &LimitsConfig::default())
}

/// Builds the full application with authentication and rate limits. The first call in a
/// process installs the Prometheus recorder that `/metrics` renders.
pub fn app_with(aegis: aegis_core::Aegis, auth: &AuthConfig, limits: &LimitsConfig) -> Router {
    crate::metrics::handle();
    let keys = auth.api_keys.clone();
    let limiter = limits.rate_limit_rps.map(|rps| Arc::new(RateLimiter::new(rps, keys.len())));
    // The telemetry layer stays the outermost, so every response gets a request id and
    // counts in the metrics, including those of other layers' rejections.
    routes::router(aegis, keys, limiter).layer(axum::middleware::from_fn(telemetry::observe))
}
