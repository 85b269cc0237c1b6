//! Request extractors that fail with the API's error envelope instead of axum's plain text.
//!
//! [`ApiJson`] reads the body in two steps so the status says what is wrong: bytes that are
//! not JSON get 400, JSON that does not fit the expected shape gets 422 naming the field by
//! its JSON path (`run_task.content`), which `serde_path_to_error` tracks while deserialising.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use aegis_core::error::join_path;

use crate::error::ApiError;

/// A JSON request body of type `T`.
#[derive(Debug)]
pub(crate) struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<ApiJson<T>, ApiError> {
        check_content_type(request.headers())?;
        let bytes = Bytes::from_request(request, state).await.map_err(|rejection| {
            ApiError::new(rejection.status(), format!("Reading the request body failed: {}", rejection.body_text()))
        })?;
        parse_body(&bytes).map(ApiJson)
    }
}

/// Accepts `application/json` and `application/*+json`, or no content type at all (many
/// scripts omit it); anything else is 415.
pub(crate) fn check_content_type(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or_default().to_ascii_lowercase();
    let mime = text.split(';').next().unwrap_or_default().trim();
    let is_json = mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"));
    if is_json {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!("Unsupported content type '{mime}'; send the body as JSON"),
    )
    .with_error(
        aegis_core::FieldError::new(
            "content-type",
            "unsupported_media_type",
            format!("content type '{mime}' is not JSON"),
        )
        .with_fix("set the header Content-Type: application/json"),
    ))
}

/// Parses a body: 400 when it is not JSON, 422 naming the field when it does not fit `T`.
pub(crate) fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|error| {
        let message = format!("The request body is not valid JSON: {error}");
        ApiError::new(StatusCode::BAD_REQUEST, message).with_error(
            aegis_core::FieldError::new("body", "malformed_json", error.to_string())
                .with_fix("send a JSON object as the body"),
        )
    })?;
    if !value.is_object() {
        return Err(ApiError::invalid(
            "body",
            "invalid_type",
            format!("the request body must be a JSON object, not {}", json_kind(&value)),
            Some("send a JSON object as the body, such as {\"name\": \"...\"}"),
        ));
    }

    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        let path = if path == "." { String::new() } else { path };
        let inner = error.into_inner().to_string();
        describe_shape_error(&path, &inner)
    })
}

/// Turns serde's message into a field, a code and a fix.
fn describe_shape_error(path: &str, message: &str) -> ApiError {
    if let Some(field) = aegis_core::error::missing_field(message) {
        let field = join_path(path, field);
        return ApiError::invalid(
            &field,
            "missing",
            format!("missing required field {field}"),
            Some("add the field to the request body"),
        );
    }
    let field = if path.is_empty() { "body" } else { path };
    let code = if message.starts_with("invalid type") { "invalid_type" } else { "invalid_value" };
    let (message, fix) = aegis_core::error::readable_serde_message(message);
    ApiError::invalid(field, code, message, Some(&fix))
}

/// Names the JSON type of a value for a message.
fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A resource id from the URL path.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PathId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<PathId, ApiError> {
        let axum::extract::Path(raw) = axum::extract::Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::new(StatusCode::BAD_REQUEST, rejection.body_text()))?;
        parse_uuid("id", &raw).map(PathId)
    }
}

/// Parses a UUID field, with a 422 naming `field` when it is not one.
pub(crate) fn parse_uuid(field: &str, raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw.trim()).map_err(|_| {
        ApiError::invalid(
            field,
            "invalid_uuid",
            format!("'{raw}' is not a UUID"),
            Some("use the id returned when the resource was created"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        session_id: Uuid,
        run_task: Inner,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Inner {
        source: String,
    }

    #[test]
    fn malformed_json_is_400() {
        let error = parse_body::<Outer>(b"{\"session_id\": ").unwrap_err();
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
    }

    #[test]
    fn missing_nested_field_names_path() {
        let body = br#"{"session_id": "0195c641-0d8e-7061-a65b-79051d4929ca", "run_task": {}}"#;
        let error = parse_body::<Outer>(body).unwrap_err();
        assert_eq!(error.status(), StatusCode::UNPROCESSABLE_ENTITY);
        assert!(format!("{error:?}").contains("run_task.source"), "{error:?}");
    }

    #[test]
    fn wrong_type_names_path() {
        let body = br#"{"session_id": 5, "run_task": {"source": "x"}}"#;
        let error = parse_body::<Outer>(body).unwrap_err();
        assert!(format!("{error:?}").contains("field: \"session_id\""), "{error:?}");
    }
}
