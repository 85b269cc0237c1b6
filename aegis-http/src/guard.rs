//! Middleware that keeps every error in the API's envelope, including the errors produced
//! outside the handlers: the body limit's 413 (tower-http answers it with a plain-text body),
//! Swagger UI's 404 for an unknown file, and a handler that panicked.

use std::any::Any;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use aegis_core::FieldError;

use crate::error::ApiError;

/// The body limit, for the 413 message.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BodyLimit(pub(crate) usize);

/// Re-renders a 4xx or 5xx response that is not JSON as the error envelope, and every 413
/// as one message that names the limit and how to raise it.
pub(crate) async fn envelope_errors(State(limit): State<BodyLimit>, request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();

    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return body_too_large(limit.0).into_response();
    }
    let is_error = status.is_client_error() || status.is_server_error();
    if !is_error || is_json(&response) {
        return response;
    }

    tracing::debug!(%status, path, "rendering a plain error response as the envelope");
    let reason = status.canonical_reason().unwrap_or("Request failed");
    let error = match status {
        StatusCode::NOT_FOUND => {
            let message = format!("No route for {path}");
            ApiError::new(status, &message).with_error(
                FieldError::new("path", "not_found", message.to_lowercase())
                    .with_fix("see the API reference for the routes under /api/v1"),
            )
        }
        _ => ApiError::new(status, format!("{reason} ({path})")),
    };
    error.into_response()
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"))
}

/// The 413 of a body over `limit` bytes.
pub(crate) fn body_too_large(limit: usize) -> ApiError {
    let message = format!("The request body is larger than the server's limit of {limit} bytes");
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, &message).with_error(
        FieldError::new("body", "body_too_large", format!("the body is larger than {limit} bytes"))
            .with_fix("send a smaller body, or start the server with a larger --max-body-bytes (AEGIS_MAX_BODY_BYTES)"),
    )
}

/// The 500 of a handler that panicked, for `CatchPanicLayer`.
pub(crate) fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = detail, "a request handler panicked");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "The request failed unexpectedly; try again.").into_response()
}
