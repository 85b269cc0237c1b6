//! Provider failures, named after LiteLLM's exception classes.
//!
//! Users already build dashboards and retry policies on LiteLLM's names (`RateLimitError`,
//! `ContextWindowExceededError`, ...), so a failed model call becomes one [`ModelError`] whose
//! [`ModelErrorKind`] is the LiteLLM class it would have raised. Classification reads the HTTP
//! status and the parsed error body first and the message text second, because providers
//! reword messages far more often than they change codes.

use std::fmt;

use serde_json::Value;

crate::wire_enum! {
    /// LiteLLM's exception classes (the names of `LITELLM_EXCEPTION_TYPES` in LiteLLM 1.x).
    pub enum ModelErrorKind {
        /// HTTP 429.
        RateLimitError => "RateLimitError",
        /// HTTP 401.
        AuthenticationError => "AuthenticationError",
        /// HTTP 404 or an unknown model.
        NotFoundError => "NotFoundError",
        /// Any other HTTP 4xx.
        BadRequestError => "BadRequestError",
        /// HTTP 422.
        UnprocessableEntityError => "UnprocessableEntityError",
        /// A parameter the provider does not support.
        UnsupportedParamsError => "UnsupportedParamsError",
        /// An endpoint the provider does not support.
        UnsupportedEndpointError => "UnsupportedEndpointError",
        /// HTTP 408 or 504, or the client's own deadline.
        Timeout => "Timeout",
        /// HTTP 403.
        PermissionDeniedError => "PermissionDeniedError",
        /// The prompt exceeds the model's context window.
        ContextWindowExceededError => "ContextWindowExceededError",
        /// HTTP 402.
        PaymentRequiredError => "PaymentRequiredError",
        /// The provider rejected the request on policy grounds.
        RejectedRequestError => "RejectedRequestError",
        /// The content was filtered.
        ContentPolicyViolationError => "ContentPolicyViolationError",
        /// HTTP 500.
        InternalServerError => "InternalServerError",
        /// HTTP 503.
        ServiceUnavailableError => "ServiceUnavailableError",
        /// HTTP 502.
        BadGatewayError => "BadGatewayError",
        /// Any other HTTP 5xx.
        APIError => "APIError",
        /// A refused, reset or otherwise failed connection.
        APIConnectionError => "APIConnectionError",
        /// A 200 response that is not a completion.
        APIResponseValidationError => "APIResponseValidationError",
        /// A generic client-side failure.
        OpenAIError => "OpenAIError",
        /// Output that fails the requested JSON schema.
        JSONSchemaValidationError => "JSONSchemaValidationError",
        /// A stream that broke after it started.
        MidStreamFallbackError => "MidStreamFallbackError",
    }
}

impl ModelErrorKind {
    /// Maps an HTTP error status to its LiteLLM class, before the body is read.
    pub fn from_status(status: u16) -> ModelErrorKind {
        match status {
            401 => ModelErrorKind::AuthenticationError,
            402 => ModelErrorKind::PaymentRequiredError,
            403 => ModelErrorKind::PermissionDeniedError,
            404 => ModelErrorKind::NotFoundError,
            408 | 504 => ModelErrorKind::Timeout,
            422 => ModelErrorKind::UnprocessableEntityError,
            429 => ModelErrorKind::RateLimitError,
            500 => ModelErrorKind::InternalServerError,
            502 => ModelErrorKind::BadGatewayError,
            503 => ModelErrorKind::ServiceUnavailableError,
            400..=499 => ModelErrorKind::BadRequestError,
            _ => ModelErrorKind::APIError,
        }
    }

    /// Returns whether a call that failed this way is worth repeating.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ModelErrorKind::RateLimitError
                | ModelErrorKind::Timeout
                | ModelErrorKind::InternalServerError
                | ModelErrorKind::ServiceUnavailableError
                | ModelErrorKind::BadGatewayError
                | ModelErrorKind::APIError
                | ModelErrorKind::APIConnectionError
        )
    }
}

/// A failed model call.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelError {
    /// The LiteLLM class.
    pub kind: ModelErrorKind,
    /// What went wrong, in the provider's words where it gave any.
    pub message: String,
    /// The provider's HTTP status, if a response arrived.
    pub status_code: Option<u16>,
    /// The provider family, such as `openai`.
    pub llm_provider: String,
    /// The model name of the call.
    pub model: String,
    /// How many attempts the call made, retries included.
    pub attempts: u32,
    /// Seconds the provider asked to wait before a retry (`Retry-After`), if it said.
    pub retry_after: Option<f64>,
}

impl ModelError {
    /// Creates an error of `kind` for a call to `model` at `llm_provider`.
    pub fn new(
        kind: ModelErrorKind,
        message: impl Into<String>,
        llm_provider: impl Into<String>,
        model: impl Into<String>,
    ) -> ModelError {
        ModelError {
            kind,
            message: message.into(),
            status_code: None,
            llm_provider: llm_provider.into(),
            model: model.into(),
            attempts: 1,
            retry_after: None,
        }
    }

    /// Sets the HTTP status.
    pub fn with_status(mut self, status: u16) -> ModelError {
        self.status_code = Some(status);
        self
    }

    /// Classifies an HTTP error response from its status and body.
    ///
    /// The body's `error.code` and `error.type` win over the status for the classes that
    /// LiteLLM recognises by code (`context_length_exceeded`, content filtering,
    /// `model_not_found`); otherwise the status decides.
    pub fn from_response(status: u16, body: &str, llm_provider: &str, model: &str) -> ModelError {
        let parsed: Option<Value> = serde_json::from_str(body).ok();
        let error = parsed.as_ref().and_then(|value| value.get("error"));
        let text_of = |key: &str| -> Option<String> {
            let field = error?.get(key)?;
            match field {
                Value::String(text) => Some(text.clone()),
                Value::Number(number) => Some(number.to_string()),
                _ => None,
            }
        };
        let code = text_of("code").unwrap_or_default();
        let error_type = text_of("type").unwrap_or_default();
        let message = text_of("message")
            .or_else(|| error.and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| summarise_body(body, status));

        let by_code = |needle: &str| code == needle || error_type == needle;
        let lowered = message.to_lowercase();
        let kind = if by_code("context_length_exceeded") || lowered.contains("maximum context length") {
            ModelErrorKind::ContextWindowExceededError
        } else if by_code("content_policy_violation") || by_code("content_filter") {
            ModelErrorKind::ContentPolicyViolationError
        } else if by_code("model_not_found") {
            ModelErrorKind::NotFoundError
        } else {
            ModelErrorKind::from_status(status)
        };

        ModelError::new(kind, message, llm_provider, model).with_status(status)
    }

    /// Returns the run's `error_message`: `litellm.<Type>: <message>` for LiteLLM classes,
    /// `<Type>: <message>` for any other kind (such as the replay client's `ValueError`).
    pub fn error_message(&self) -> String {
        match self.kind {
            ModelErrorKind::Other(_) => format!("{}: {}", self.kind, self.message),
            _ => format!("litellm.{}: {}", self.kind, self.message),
        }
    }
}

/// Shortens a non-JSON error body (an HTML gateway page, say) into a one-line message.
fn summarise_body(body: &str, status: u16) -> String {
    let trimmed = body.trim();
    if trimmed.is_empty() || trimmed.starts_with('<') {
        return format!("provider returned HTTP {status}");
    }
    let mut line: String = trimmed.lines().next().unwrap_or_default().chars().take(300).collect();
    if line.len() < trimmed.len() {
        line.push_str(" ...");
    }
    line
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for ModelError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(status: u16, body: &str, expected: ModelErrorKind) {
        let error = ModelError::from_response(status, body, "openai", "m");
        assert_eq!(error.kind, expected, "status {status}, body {body}");
    }

    #[test]
    fn classification_by_status_and_code() {
        check(429, r#"{"error":{"message":"slow down","type":"requests"}}"#, ModelErrorKind::RateLimitError);
        check(401, "{}", ModelErrorKind::AuthenticationError);
        check(400, r#"{"error":{"code":"context_length_exceeded","message":"too long"}}"#, ModelErrorKind::ContextWindowExceededError);
        check(400, r#"{"error":{"code":"content_filter","message":"no"}}"#, ModelErrorKind::ContentPolicyViolationError);
        check(400, r#"{"error":{"code":"model_not_found","message":"no"}}"#, ModelErrorKind::NotFoundError);
        check(418, "", ModelErrorKind::BadRequestError);
        check(502, "<html>bad gateway</html>", ModelErrorKind::BadGatewayError);
        check(599, "", ModelErrorKind::APIError);
    }

    #[test]
    fn message_comes_from_body() {
        let error = ModelError::from_response(429, r#"{"error":{"message":"You've hit the rate limit","code":429}}"#, "openai", "m");
        assert_eq!(error.error_message(), "litellm.RateLimitError: You've hit the rate limit");
    }
}
