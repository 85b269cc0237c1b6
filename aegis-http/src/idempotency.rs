//! `Idempotency-Key` on POST requests: a retry with the same key and body returns the
//! resource the first request created, and reusing a key with a different body is a 422.
//!
//! The middleware reserves the id of the resource before the handler runs: the first request
//! with a key stores `(scope, key) -> (body, new id)` in the store, and every request with that
//! key and an equal body gets the same id ([`ReservedId`]). Handlers create the resource under
//! that id or, when it exists already, return it. So two retries racing each other cannot
//! create two resources: the store's primary key admits one, and the loser reads it back.
//! The scope is the method, the path and the caller's user, so the same key sent to two
//! endpoints, or by two users, names two requests.
//!
//! NOTE: a key is stored even when the first request fails validation, so a corrected body
//! needs a new key.

use std::future::Future;

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use uuid::Uuid;

use aegis_core::storage::StorageErrorKind;
use aegis_core::{Aegis, Error, IdempotentRequest};

use crate::auth::caller::Caller;
use crate::error::ApiError;

/// The header clients send.
pub(crate) const HEADER: &str = "idempotency-key";

/// The largest body the middleware reads to compare retries, 16 MiB.
const MAX_BODY: usize = 16 * 1024 * 1024;

/// The id a handler must give the resource it creates, reserved for the request's key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReservedId {
    /// No key was sent: a fresh id.
    Fresh(Uuid),
    /// A key was sent: the id reserved for it (and possibly already taken by the resource the
    /// first request created).
    Keyed(Uuid),
}

impl ReservedId {
    pub(crate) fn id(self) -> Uuid {
        match self {
            ReservedId::Fresh(id) | ReservedId::Keyed(id) => id,
        }
    }

    /// Creates the resource under the reserved id, or returns it when a request with the same
    /// key created it already.
    pub(crate) async fn create_or_get<T, Create, CreateFuture, Get, GetFuture>(
        self,
        create: Create,
        get: Get,
    ) -> Result<T, Error>
    where
        Create: FnOnce(Uuid) -> CreateFuture,
        CreateFuture: Future<Output = Result<T, Error>>,
        Get: Fn(Uuid) -> GetFuture,
        GetFuture: Future<Output = Result<T, Error>>,
    {
        let id = self.id();
        if let ReservedId::Keyed(_) = self {
            match get(id).await {
                Ok(existing) => return Ok(existing),
                Err(Error::NotFound { .. }) => {}
                Err(error) => return Err(error),
            }
        }
        match create(id).await {
            Err(Error::Storage(error)) if *error.kind() == StorageErrorKind::Conflict => get(id).await,
            other => other,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ReservedId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<ReservedId, ApiError> {
        Ok(parts.extensions.get::<ReservedId>().copied().unwrap_or_else(|| ReservedId::Fresh(Uuid::now_v7())))
    }
}

/// Returns whether a request needs no reservation: it is not a POST or sends no
/// `Idempotency-Key`.
pub(crate) fn has_no_key(request: &Request) -> bool {
    request.method() != Method::POST || !request.headers().contains_key(HEADER)
}

/// Reserves the resource id of a POST that carries an `Idempotency-Key`; requests that
/// [`has_no_key`] accepts pass through unchanged.
pub(crate) async fn reserve(State(aegis): State<Aegis>, request: Request, next: Next) -> Response {
    let Some(key) = request.headers().get(HEADER).filter(|_| request.method() == Method::POST) else {
        return next.run(request).await;
    };
    let Ok(key) = key.to_str().map(str::to_owned) else {
        return ApiError::invalid(
            "Idempotency-Key",
            "invalid_value",
            "the header is not visible ASCII",
            Some("send a key such as a UUID"),
        )
        .into_response();
    };

    let scope = match request.extensions().get::<Caller>().and_then(Caller::user_id) {
        Some(user_id) => format!("POST {} as {user_id}", request.uri().path()),
        None => format!("POST {}", request.uri().path()),
    };
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => bytes,
        Err(error) => {
            return ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, format!("Reading the request body failed: {error}"))
                .into_response();
        }
    };

    // An empty body counts as `null`; a body that is not JSON goes to the handler, which
    // rejects it with the usual 400.
    let value = if bytes.is_empty() { Some(Value::Null) } else { serde_json::from_slice::<Value>(&bytes).ok() };
    let mut request = Request::from_parts(parts, Body::from(bytes));
    let Some(value) = value else {
        return next.run(request).await;
    };

    match aegis.idempotent_request(&scope, &key, &value).await {
        Ok(IdempotentRequest::New(id) | IdempotentRequest::Repeat(id)) => {
            request.extensions_mut().insert(ReservedId::Keyed(id));
            next.run(request).await
        }
        Ok(_) => next.run(request).await,
        Err(error) => ApiError::from(error).into_response(),
    }
}
