//! The authentication middleware: checks `Authorization: Bearer <key>` on every API request
//! and records the caller for the handlers.
//!
//! Failures are 401 in the error envelope with `WWW-Authenticate: Bearer` (RFC 6750), which
//! adds `error="invalid_token"` when a token was sent but matches no key. Public routes
//! (health and readiness probes, the API documentation and the OpenAPI document) pass
//! without a key, matched by path, so a route added under those paths later is public too.

use axum::extract::{OriginalUri, Request};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use aegis_core::FieldError;

use crate::auth::caller::Caller;
use crate::auth::keys::ApiKeys;
use crate::error::ApiError;
use crate::fast_path::CheckLayer;

/// Paths served without a key: exact matches.
const PUBLIC_PATHS: &[&str] = &["/healthz", "/readyz", "/docs", "/api/v1/openapi.json"];

/// Path prefixes served without a key.
const PUBLIC_PREFIXES: &[&str] = &["/docs/"];

/// Returns the layer that authenticates every request it wraps (see [`authenticate`]).
pub(crate) fn layer(
    keys: ApiKeys,
) -> CheckLayer<impl Fn(&mut Request) -> Result<(), Response> + Clone + Send + Sync + 'static> {
    CheckLayer::new(move |request: &mut Request| authenticate(&keys, request))
}

/// Authenticates the request and stores its [`Caller`] in the request extensions, or returns
/// the 401 response.
fn authenticate(keys: &ApiKeys, request: &mut Request) -> Result<(), Response> {
    if keys.is_empty() {
        request.extensions_mut().insert(Caller::Anonymous);
        return Ok(());
    }
    // Inside a nested router `uri()` lacks the prefix, so public paths match the full one.
    let path = match request.extensions().get::<OriginalUri>() {
        Some(original) => original.path(),
        None => request.uri().path(),
    };
    if is_public(path) {
        return Ok(());
    }

    let token = match bearer_token(request) {
        Ok(token) => token,
        Err(rejection) => {
            tracing::debug!(method = %request.method(), path, "request rejected: no bearer token");
            return Err(rejection.into_response());
        }
    };
    let Some(owner) = keys.find(token) else {
        tracing::debug!(method = %request.method(), path, "request rejected: the bearer token matches no api key");
        let rejection = unauthorized(
            "Invalid API key.",
            FieldError::new("Authorization", "invalid_api_key", "the bearer token matches no API key")
                .with_fix("check the key, or ask the operator for a valid one"),
            "Bearer error=\"invalid_token\"",
        );
        return Err(rejection.into_response());
    };
    request.extensions_mut().insert(Caller::User { user_id: owner.user_id, key_index: owner.index });
    Ok(())
}

fn is_public(path: &str) -> bool {
    PUBLIC_PATHS.contains(&path) || PUBLIC_PREFIXES.iter().any(|prefix| path.starts_with(prefix))
}

/// Returns the token of `Authorization: Bearer <token>`; the scheme is case-insensitive.
fn bearer_token(request: &Request) -> Result<&str, ApiError> {
    let missing = || {
        unauthorized(
            "Missing API key.",
            FieldError::new("Authorization", "missing", "the request has no bearer token")
                .with_fix("send the header Authorization: Bearer <key>"),
            "Bearer",
        )
    };
    let Some(value) = request.headers().get(AUTHORIZATION) else {
        return Err(missing());
    };
    let Ok(value) = value.to_str() else {
        return Err(missing());
    };
    let token = value.split_once(' ').filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"));
    match token.map(|(_, token)| token.trim()) {
        Some(token) if !token.is_empty() => Ok(token),
        _ => Err(missing()),
    }
}

fn unauthorized(message: &str, problem: FieldError, challenge: &'static str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, message)
        .with_error(problem)
        .with_header(WWW_AUTHENTICATE, HeaderValue::from_static(challenge))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_paths_match_whole_segments() {
        for path in ["/healthz", "/readyz", "/docs", "/docs/", "/docs/index.html", "/api/v1/openapi.json"] {
            assert!(is_public(path), "{path}");
        }
        for path in ["/api/v1/task", "/docsx", "/api/v1/openapi.jsonx", "/healthz/x", "/"] {
            assert!(!is_public(path), "{path}");
        }
    }

    #[tokio::test]
    async fn public_route_in_nested_router_is_open() {
        use axum::Router;
        use axum::routing::get;
        use tower::ServiceExt;

        let keys: ApiKeys = "alice-key-0123456789=alice".parse().unwrap();
        let api = Router::new()
            .route("/openapi.json", get(|| async { "{}" }))
            .route("/task", get(|| async { "[]" }))
            .layer(layer(keys));
        let app = Router::new().nest("/api/v1", api);
        let get_path = |path: &str| Request::builder().uri(path).body(axum::body::Body::empty()).unwrap();

        let open = app.clone().oneshot(get_path("/api/v1/openapi.json")).await.unwrap();
        assert_eq!(open.status(), StatusCode::OK, "the full path decides, not the one inside the nest");
        let closed = app.oneshot(get_path("/api/v1/task")).await.unwrap();
        assert_eq!(closed.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(closed.headers()[WWW_AUTHENTICATE], "Bearer");
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        let with =
            |value: &str| Request::builder().header(AUTHORIZATION, value).body(axum::body::Body::empty()).unwrap();
        assert_eq!(bearer_token(&with("Bearer abc")).unwrap(), "abc");
        assert_eq!(bearer_token(&with("bearer  abc ")).unwrap(), "abc");
        assert!(bearer_token(&with("Basic abc")).is_err());
        assert!(bearer_token(&with("Bearer ")).is_err());
        assert!(bearer_token(&with("Bearerabc")).is_err());
    }
}
