//! [`RecordedRequest`]: one request as the mock provider received it.
//!
//! Tests read the log through [`MockProvider::requests`](super::MockProvider::requests) to
//! assert what a client sent: which API key, which messages, which parameters. Headers are
//! stored verbatim, `authorization` included, because checking the key is a main use.

use axum::http::request::Parts;
use bytes::Bytes;
use serde_json::Value;

/// One request received by the mock provider, in arrival order.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RecordedRequest {
    /// HTTP method, such as `POST`.
    pub method: String,
    /// HTTP version, such as `HTTP/1.1` or `HTTP/2.0`.
    pub http_version: String,
    /// Request path without the query, such as `/v1/chat/completions`.
    pub path: String,
    /// The query string without `?`, such as `api-version=2024-06-01`, if any.
    pub query: Option<String>,
    /// Headers as `(name, value)` pairs in arrival order, names lower-cased. Values that are
    /// not UTF-8 are decoded lossily.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON, or `Value::Null` when it is empty or not valid JSON, so tests
    /// can index into it directly: `request.body["messages"][0]["content"]`.
    pub body: Value,
    /// The body as received.
    pub raw_body: Bytes,
}

impl RecordedRequest {
    pub(super) fn new(parts: &Parts, body: Value, raw_body: Bytes) -> RecordedRequest {
        let headers = parts
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
            .collect();
        RecordedRequest {
            method: parts.method.as_str().to_owned(),
            http_version: format!("{:?}", parts.version),
            path: parts.uri.path().to_owned(),
            query: parts.uri.query().map(str::to_owned),
            headers,
            body,
            raw_body,
        }
    }

    /// Returns the first value of the header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(header, _)| header.eq_ignore_ascii_case(name)).map(|(_, value)| value.as_str())
    }

    /// Returns the `authorization` header as sent, such as `Bearer sk-test`.
    pub fn authorization(&self) -> Option<&str> {
        self.header("authorization")
    }

    /// Returns the token of a `Bearer` authorization header.
    pub fn bearer_token(&self) -> Option<&str> {
        bearer_token(self.authorization()?)
    }
}

/// Returns the token of an `Authorization: Bearer <token>` value. The scheme is matched
/// case-insensitively, as HTTP auth schemes are.
pub(super) fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    Some(token.trim())
}
