//! [`ApiError`]: every failure a handler can return, rendered as the one error envelope.
//!
//! Handlers return `Result<_, ApiError>` so `?` works on service calls, and every error leaves
//! through [`IntoResponse`] here: `{"message", "meta": {"errors": [{field, code, message,
//! fix}]}, "data": null}`. Status codes: 400 for malformed JSON, 404 for unknown ids, 415 for
//! a non-JSON body, 422 for well-formed input that is invalid, 500/503 for store failures (which
//! never expose internals beyond a one-line cause).

use axum::Json;
use axum::http::StatusCode;
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
}

impl ApiError {
    /// Creates an error with a status and a summary message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), errors: Vec::new(), retry_after_s: None }
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
                ApiError {
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                    message: capitalise(&message),
                    errors,
                    retry_after_s: None,
                }
            }
            Error::Conflict { message, errors } => {
                ApiError { status: StatusCode::CONFLICT, message: capitalise(&message), errors, retry_after_s: None }
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
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(seconds));
        }
        response
    }
}
