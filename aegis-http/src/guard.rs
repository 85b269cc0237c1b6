//! Middleware around the whole application: the request body limit, and keeping every error
//! in the API's envelope, including errors produced outside the handlers (axum's plain-text
//! rejections, Swagger UI's 404 for an unknown file, a handler that panicked).

use std::any::Any;

use axum::body::Body;
use axum::body::HttpBody as _;
use axum::extract::{Request, State};
use axum::http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use http_body_util::BodyExt;

use aegis_core::FieldError;

use crate::error::ApiError;
use crate::fast_path::Around;

/// The body limit, for the 413 message.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BodyLimit(pub(crate) usize);

/// The maximum number of bytes of an oversized body that [`limit_body`] reads and discards before it
/// sends the 413.
const MAX_DRAIN_BYTES: usize = 16 * 1024 * 1024;

/// Returns whether a request has no body, so [`limit_body`] has nothing to read.
pub(crate) fn has_no_body(request: &Request) -> bool {
    request.body().is_end_stream()
}

/// Reads the request body up to the limit and responds 413 to a longer one.
///
/// The body is read here, not rejected unread from its Content-Length as tower-http's
/// `RequestBodyLimitLayer` does. A server that responds and closes the connection while body
/// bytes are still unread makes its TCP stack send a reset, and the client's stack then often
/// discards the 413 before the client reads it. So the rest of an oversized body is read and
/// discarded, up to [`MAX_DRAIN_BYTES`], and the 413 goes out on a connection that closes
/// cleanly. Handlers buffer their bodies anyway, so reading it here costs no streaming.
pub(crate) async fn limit_body(State(limit): State<BodyLimit>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let drain_limit = limit.0.saturating_add(MAX_DRAIN_BYTES);
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    if declared.is_some_and(|length| u64::try_from(drain_limit).is_ok_and(|drain_limit| length > drain_limit)) {
        // NOTE: too large to drain; the client may see a reset instead of this 413.
        return closing(body_too_large(limit.0).into_response());
    }

    let mut body = body;
    let mut buffer = BytesMut::new();
    let mut received = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(error) => {
                // The client went away or sent a broken body, so no client reads this response.
                tracing::debug!(%error, "reading the request body failed");
                return ApiError::new(StatusCode::BAD_REQUEST, "Reading the request body failed").into_response();
            }
        };
        let Ok(data) = frame.into_data() else { continue };
        received = received.saturating_add(data.len());
        if received <= limit.0 {
            buffer.extend_from_slice(&data);
        } else if received > drain_limit {
            break;
        }
    }
    if received > limit.0 {
        return closing(body_too_large(limit.0).into_response());
    }
    next.run(Request::from_parts(parts, Body::from(buffer.freeze()))).await
}

/// Marks a response as the last on its connection.
fn closing(mut response: Response) -> Response {
    response.headers_mut().insert(CONNECTION, axum::http::HeaderValue::from_static("close"));
    response
}

/// The middleware that re-renders a 4xx or 5xx response that is not JSON as the error
/// envelope, and every 413 as one message that names the limit and how to raise it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct EnvelopeErrors(pub(crate) BodyLimit);

impl Around for EnvelopeErrors {
    // A `Uri` shares its bytes, so keeping it for the message of a possible error is cheap.
    type Carry = Uri;

    fn before(&self, request: &mut Request) -> Uri {
        request.uri().clone()
    }

    fn after(&self, uri: Uri, response: Response) -> Response {
        let status = response.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            return body_too_large(self.0.0).into_response();
        }
        let is_error = status.is_client_error() || status.is_server_error();
        if !is_error || is_json(&response) {
            return response;
        }

        let path = uri.path();
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
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"))
}

/// Builds the 413 for a body over `limit` bytes.
pub(crate) fn body_too_large(limit: usize) -> ApiError {
    let message = format!("The request body is larger than the server's limit of {limit} bytes");
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, &message).with_error(
        FieldError::new("body", "body_too_large", format!("the body is larger than {limit} bytes"))
            .with_fix("send a smaller body, or start the server with a larger --max-body-bytes (AEGIS_MAX_BODY_BYTES)"),
    )
}

/// Builds the 500 for a handler that panicked, for `CatchPanicLayer`.
pub(crate) fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    tracing::error!(panic = detail, "a request handler panicked");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "The request failed unexpectedly; try again.").into_response()
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::routing::get;
    use http_body_util::BodyExt;
    use serde_json::Value;
    use tower::ServiceExt;
    use tower_http::catch_panic::CatchPanicLayer;

    use super::*;
    use crate::fast_path::AroundLayer;

    /// A router with a plain-text 404 handler and a panicking handler behind the guards.
    fn guarded() -> Router {
        let limit = BodyLimit(16);
        Router::new()
            .route("/plain", get(|| async { (StatusCode::NOT_FOUND, "nothing here") }))
            .route("/panic", get(panicking))
            .layer(axum::middleware::from_fn_with_state(limit, limit_body))
            .layer(AroundLayer::new(EnvelopeErrors(limit)))
            .layer(CatchPanicLayer::custom(panic_response))
    }

    async fn panicking() -> &'static str {
        panic!("handler bug")
    }

    async fn call(uri: &str, body: &'static str) -> (StatusCode, Value) {
        let request = axum::http::Request::builder().uri(uri).body(Body::from(body)).unwrap();
        let response = guarded().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn plain_error_becomes_envelope() {
        let (status, body) = call("/plain", "").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(body["meta"]["errors"][0]["code"], "not_found");
        assert_eq!(body["data"], Value::Null);
    }

    #[tokio::test]
    async fn panic_becomes_500_envelope() {
        let (status, body) = call("/panic", "").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body["message"].as_str().unwrap().contains("unexpectedly"), "{body}");
        assert_eq!(body["data"], Value::Null);
    }

    #[tokio::test]
    async fn body_over_limit_is_413_envelope() {
        let (status, body) = call("/plain", "01234567890123456789").await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body["meta"]["errors"][0]["code"], "body_too_large");
        assert!(body["message"].as_str().unwrap().contains("16 bytes"), "{body}");
    }
}
