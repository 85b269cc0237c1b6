//! [`ApiError`]: every failure a handler can return, rendered as the one error envelope.
//!
//! Handlers return `Result<_, ApiError>` so `?` works on service calls, and every error leaves
//! through [`IntoResponse`] here: `{"message", "meta": {"errors": [{field, code, message,
//! fix}]}, "data": null}`. Status codes: 400 for malformed JSON, 401 for a missing or invalid
//! API key, 403 for a body that names another user, and 404 for unknown ids (and other users'
//! rows). 415 is for a non-JSON body, 422 for well-formed input that is invalid, 429 for a key
//! over its rate limit, and 500/503 for store failures (which never expose internals beyond a
//! one-line cause).

use axum::Json;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use aegis_core::storage::StorageErrorKind;
use aegis_core::{Error, FieldError};

/// A handler failure with its status and field-level problems.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
    errors: Vec<FieldError>,
    retry_after_s: Option<u64>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    /// Creates an error with a status and a summary message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), errors: Vec::new(), retry_after_s: None, headers: Vec::new() }
    }

    /// Adds a response header, such as `WWW-Authenticate`.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> ApiError {
        self.headers.push((name, value));
        self
    }

    /// Sets `Retry-After`, in whole seconds.
    pub fn with_retry_after(mut self, seconds: u64) -> ApiError {
        self.retry_after_s = Some(seconds);
        self
    }

    fn with_errors(mut self, errors: Vec<FieldError>) -> ApiError {
        self.errors.extend(errors);
        self
    }

    /// Adds a field-level problem.
    pub fn with_error(mut self, error: FieldError) -> ApiError {
        self.errors.push(error);
        self
    }

    /// Creates a 422 for one invalid field.
    pub fn invalid(field: impl Into<String>, code: &str, message: impl Into<String>, fix: Option<&str>) -> ApiError {
        let message = message.into();
        let field = field.into();
        let mut error = FieldError::new(&field, code, &message);
        if let Some(fix) = fix {
            error = error.with_fix(fix);
        }
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("Invalid field {field}: {message}")).with_error(error)
    }

    /// Returns the HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> ApiError {
        match error {
            Error::NotFound { kind, id, field } => {
                let message = format!("{kind} {id} not found");
                let problem = FieldError::new(field, "not_found", &message)
                    .with_fix(format!("check the id, or create the {kind} first"));
                ApiError::new(StatusCode::NOT_FOUND, message).with_error(problem)
            }
            Error::Invalid(errors) => {
                let message = Error::Invalid(errors.clone()).to_string();
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, capitalise(&message)).with_errors(errors)
            }
            Error::Conflict { message, errors } => {
                ApiError::new(StatusCode::CONFLICT, capitalise(&message)).with_errors(errors)
            }
            Error::Storage(error) => {
                let status = match error.kind() {
                    StorageErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                };
                tracing::error!(%error, "storage failed while serving a request");
                ApiError::new(status, "The store failed to complete the request; try again.")
            }
            Error::Unavailable { message, retry_after_s } => {
                let mut error = ApiError::new(StatusCode::SERVICE_UNAVAILABLE, capitalise(&message)).with_error(
                    FieldError::new("", "unavailable", message)
                        .with_fix(format!("retry after {retry_after_s} seconds, when the server has restarted")),
                );
                error.retry_after_s = Some(retry_after_s);
                error
            }
            other => {
                tracing::error!(error = %other, "unexpected service error");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "The request failed unexpectedly; try again.")
            }
        }
    }
}

fn capitalise(text: &str) -> String {
    let mut characters = text.chars();
    match characters.next() {
        Some(first) => first.to_uppercase().chain(characters).collect(),
        None => String::new(),
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({
            "message": self.message,
            "meta": {"errors": self.errors},
            "data": null,
        });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(seconds) = self.retry_after_s {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}
