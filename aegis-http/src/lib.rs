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

pub mod config;
mod envelope;
pub mod error;
mod extract;
mod idempotency;
mod metrics;
#[cfg(feature = "mock")]
pub mod mock;
mod routes;
pub mod server;
pub mod telemetry;

use axum::Router;

pub use error::ApiError;

/// Builds the full application: the API routes plus request ids, tracing and metrics. The
/// first call in a process installs the Prometheus recorder that `/metrics` renders.
pub fn app(aegis: aegis_core::Aegis) -> Router {
    crate::metrics::handle();
    // The telemetry layer stays the outermost, so every response gets a request id and
    // counts in the metrics, including those of other layers' rejections.
    routes::router(aegis).layer(axum::middleware::from_fn(telemetry::observe))
}
