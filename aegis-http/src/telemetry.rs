//! Per-request telemetry: the `x-request-id` header, one tracing span per request, and the
//! HTTP metrics.
//!
//! A request keeps the `x-request-id` its client sent when the value is 1 to
//! [`MAX_REQUEST_ID_LEN`] visible ASCII characters. Any other request gets a new UUID v7,
//! which sorts by time. Handlers see the id in the request's headers, and every response carries
//! it back. The request's span (`request`) contains `request_id`, `method`, `route` (the matched
//! template, such as `/api/v1/run/{id}`) and, once the response head is ready, `status`, so
//! every event a handler logs names its request. A `request finished` event closes it.
//!
//! Durations end when the response head is ready: a streamed body (`/run/{id}/stream`) goes
//! on after its request was counted.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, Method};
use axum::response::Response;
use metrics::{counter, histogram};
use uuid::Uuid;

use crate::fast_path::Around;
use crate::metrics::{HTTP_REQUEST_DURATION, HTTP_REQUESTS_TOTAL};

/// The header that carries a request's id, in both directions.
pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The maximum length of a client-sent request id that is kept; a longer one is replaced.
pub const MAX_REQUEST_ID_LEN: usize = 128;

/// The `route` label of requests that matched no route, which keeps unknown paths from
/// adding series.
const UNMATCHED_ROUTE: &str = "unmatched";

/// The telemetry middleware: assigns the request id, runs the request in its span, counts
/// it, and returns the id on the response.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Observe;

/// The state [`Observe`] keeps while the request runs.
pub(crate) struct Observed {
    started: Instant,
    request_id: HeaderValue,
    route: String,
    method: &'static str,
    span: tracing::Span,
}

impl Around for Observe {
    type Carry = Observed;

    fn before(&self, request: &mut Request) -> Observed {
        let started = Instant::now();
        let request_id = accepted_request_id(request.headers().get(&REQUEST_ID_HEADER)).unwrap_or_else(new_request_id);
        request.headers_mut().insert(REQUEST_ID_HEADER, request_id.clone());

        let route = request.extensions().get::<MatchedPath>().map_or(UNMATCHED_ROUTE, MatchedPath::as_str).to_owned();
        let method = method_label(request.method());
        let span = tracing::info_span!(
            "request",
            request_id = request_id.to_str().unwrap_or_default(),
            method,
            route = %route,
            status = tracing::field::Empty,
        );
        Observed { started, request_id, route, method, span }
    }

    fn span(carry: &Observed) -> Option<&tracing::Span> {
        Some(&carry.span)
    }

    fn after(&self, carry: Observed, mut response: Response) -> Response {
        let Observed { started, request_id, route, method, span } = carry;
        let elapsed = started.elapsed();
        let status = response.status();
        span.record("status", status.as_u16());
        let latency_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        tracing::info!(parent: &span, latency_ms, "request finished");

        counter!(HTTP_REQUESTS_TOTAL, "route" => route.clone(), "method" => method, "status" => status.as_str().to_owned())
            .increment(1);
        histogram!(HTTP_REQUEST_DURATION, "route" => route).record(elapsed.as_secs_f64());
        response.headers_mut().insert(REQUEST_ID_HEADER, request_id);
        response
    }
}

/// Returns the client's request id when it is 1 to [`MAX_REQUEST_ID_LEN`] visible ASCII
/// characters, which keeps log lines and the response header well formed.
fn accepted_request_id(value: Option<&HeaderValue>) -> Option<HeaderValue> {
    let value = value?;
    let bytes = value.as_bytes();
    let visible = bytes.iter().all(|byte| byte.is_ascii_graphic());
    (!bytes.is_empty() && bytes.len() <= MAX_REQUEST_ID_LEN && visible).then(|| value.clone())
}

fn new_request_id() -> HeaderValue {
    // A UUID's text is always a valid header value.
    HeaderValue::from_str(&Uuid::now_v7().to_string()).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

/// Returns the method's name for labels; extension methods count as `OTHER`, so a client
/// cannot add series by inventing methods.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_from_client_is_kept() {
        let value = HeaderValue::from_static("client-id-42");
        assert_eq!(accepted_request_id(Some(&value)), Some(value));
    }

    #[test]
    fn request_id_rejects_spaces_and_length() {
        assert_eq!(accepted_request_id(Some(&HeaderValue::from_static("two words"))), None);
        assert_eq!(accepted_request_id(Some(&HeaderValue::from_static(""))), None);
        let long = HeaderValue::from_str(&"a".repeat(MAX_REQUEST_ID_LEN + 1)).ok();
        assert_eq!(accepted_request_id(long.as_ref()), None);
    }

    #[test]
    fn generated_request_id_is_uuid_v7() {
        let id = new_request_id();
        let parsed = Uuid::parse_str(id.to_str().unwrap_or_default());
        assert_eq!(parsed.map(|uuid| uuid.get_version_num()).ok(), Some(7));
    }
}
