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

mod envelope;
pub mod error;
mod extract;
mod guard;
mod idempotency;
#[cfg(feature = "mock")]
pub mod mock;
mod openapi;
mod routes;
pub mod server;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

pub use error::ApiError;

/// The default of [`AppConfig::max_body_bytes`]: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;

/// Settings of the HTTP application.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct AppConfig {
    /// The largest request body accepted, in bytes; a larger body gets 413.
    pub max_body_bytes: usize,
}

impl Default for AppConfig {
    fn default() -> AppConfig {
        AppConfig { max_body_bytes: DEFAULT_MAX_BODY_BYTES }
    }
}

/// Builds the full application with the default [`AppConfig`].
pub fn app(aegis: aegis_core::Aegis) -> Router {
    app_with_config(aegis, &AppConfig::default())
}

/// Builds the full application: the routes, the body limit, request tracing, and the
/// middleware that keeps every error (413s and panics included) in the error envelope.
pub fn app_with_config(aegis: aegis_core::Aegis, config: &AppConfig) -> Router {
    let limit = guard::BodyLimit(config.max_body_bytes);
    routes::router(aegis)
        // `guard::limit_body` is the one limit, so axum's default limit of its own is off.
        .layer(DefaultBodyLimit::disable())
        .layer(axum::middleware::from_fn_with_state(limit, guard::limit_body))
        .layer(axum::middleware::from_fn_with_state(limit, guard::envelope_errors))
        .layer(CatchPanicLayer::custom(guard::panic_response))
        .layer(TraceLayer::new_for_http())
}

/// Returns the OpenAPI 3.1 document of the API, as served at `GET /api/v1/openapi.json`.
pub fn openapi() -> utoipa::openapi::OpenApi {
    routes::document()
}
