//! `GET /readyz`: whether this process should get traffic. `/healthz` only reports that the
//! process is up. Readiness also needs the store to respond at the schema version this build
//! expects, and the server not to be shutting down.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use aegis_core::{Aegis, FieldError};

use crate::envelope::Envelope;
use crate::error::ApiError;
use crate::openapi::schemas::ErrorEnvelope;

/// How long the store may take to respond before the probe returns 503 with a timeout. A
/// caller whose own probe timeout is shorter counts the probe as failed when it gives up.
const STORE_TIMEOUT: Duration = Duration::from_secs(3);

/// Returns 200 when the store is ready, else 503 in the error envelope naming the cause.
#[utoipa::path(
    get, path = "/readyz", tag = "service", operation_id = "readyz", security(()),
    responses(
        (status = 200, description = "The store responds at this build's schema version (`{\"store\": \"ok\"}`).", body = DataEnvelope<Object>),
        (status = 503, description = "Not ready: `meta.errors[0]` names the store or a server that is shutting down.", body = ErrorEnvelope),
    ),
)]
pub(super) async fn readyz(State(aegis): State<Aegis>) -> Result<Envelope<Value>, ApiError> {
    if aegis.is_draining() {
        return Err(not_ready("server", "draining", "the server is shutting down", "send requests to another replica"));
    }
    match tokio::time::timeout(STORE_TIMEOUT, aegis.storage().ready()).await {
        Ok(Ok(())) => Ok(Envelope::ok("Ready", json!({"store": "ok"}))),
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness check failed");
            Err(not_ready(
                "store",
                "unavailable",
                &error.to_string(),
                "check that the database is reachable and migrated",
            ))
        }
        Err(_elapsed) => {
            tracing::warn!(timeout_s = STORE_TIMEOUT.as_secs(), "readiness check timed out");
            let message = format!("the store did not respond within {} seconds", STORE_TIMEOUT.as_secs());
            Err(not_ready("store", "timeout", &message, "check that the database is reachable"))
        }
    }
}

fn not_ready(field: &str, code: &str, message: &str, fix: &str) -> ApiError {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, format!("Not ready: {message}"))
        .with_error(FieldError::new(field, code, message).with_fix(fix))
}
