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

    /// Returns whether a call that failed this way is worth repeating, judged by the kind
    /// alone. [`ModelError::is_retryable`] also reads the status and the error code.
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
    /// The provider's `error.code` (or `error.type` when there is no code), such as
    /// `insufficient_quota`.
    pub code: Option<String>,
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
            code: None,
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
    /// `model_not_found`); otherwise the status decides. Message text is read last, and only
    /// for the context window and content filtering, because providers reword messages more often than codes.
    pub fn from_response(status: u16, body: &str, llm_provider: &str, model: &str) -> ModelError {
        let parsed: Option<Value> = serde_json::from_str(body).ok();
        let error = parsed.as_ref().and_then(|value| value.get("error"));
        let Some(error) = error else {
            return ModelError::new(
                ModelErrorKind::from_status(status),
                summarise_body(body, status),
                llm_provider,
                model,
            )
            .with_status(status);
        };
        ModelError::from_error_object(Some(status), error, llm_provider, model).unwrap_or_else(|| {
            ModelError::new(ModelErrorKind::from_status(status), summarise_body(body, status), llm_provider, model)
                .with_status(status)
        })
    }

    /// Classifies a provider's `error` value: an object with `message`, `code` and `type`, or
    /// a bare string as Ollama sends. `status` is the HTTP status when the error came as a
    /// response; for an error event inside a 200 stream it is `None`, and an integer
    /// `error.code` (as OpenRouter and some proxies send) stands in for it. Returns `None` when
    /// `error` is neither an object nor a string.
    pub fn from_error_object(
        status: Option<u16>,
        error: &Value,
        llm_provider: &str,
        model: &str,
    ) -> Option<ModelError> {
        let text_of = |key: &str| -> Option<String> {
            match error.get(key)? {
                Value::String(text) => Some(text.clone()),
                Value::Number(number) => Some(number.to_string()),
                _ => None,
            }
        };
        let (code, error_type, message) = match error {
            Value::String(text) => (String::new(), String::new(), text.clone()),
            Value::Object(_) => (
                text_of("code").unwrap_or_default(),
                text_of("type").unwrap_or_default(),
                text_of("message").unwrap_or_else(|| "provider returned an error without a message".to_owned()),
            ),
            _ => return None,
        };
        let status = status.or_else(|| {
            let code = error.get("code")?.as_u64()?;
            u16::try_from(code).ok().filter(|code| (400..600).contains(code))
        });

        let by_code = |needle: &str| code == needle || error_type == needle;
        let lowered = message.to_lowercase();
        let kind = if by_code("context_length_exceeded")
            || lowered.contains("maximum context length")
            || lowered.contains("prompt is too long")
        {
            ModelErrorKind::ContextWindowExceededError
        } else if by_code("content_policy_violation")
            || by_code("content_filter")
            || lowered.contains("content management policy")
        {
            ModelErrorKind::ContentPolicyViolationError
        } else if by_code("model_not_found") {
            ModelErrorKind::NotFoundError
        } else if let Some(status) = status {
            ModelErrorKind::from_status(status)
        } else {
            // An error event without any status: LiteLLM's catch-all for provider errors.
            ModelErrorKind::APIError
        };

        let mut result = ModelError::new(kind, message, llm_provider, model);
        result.status_code = status;
        result.code = [code, error_type].into_iter().find(|text| !text.is_empty());
        Some(result)
    }

    /// Returns whether the call is worth repeating: statuses 408, 409, 429 and 5xx, and
    /// connection failures and client deadlines, which have no status. A 429 that says the
    /// account is out of credit (`insufficient_quota`) will not clear by waiting.
    pub fn is_retryable(&self) -> bool {
        if self.is_quota_exhausted() {
            return false;
        }
        match self.status_code {
            Some(status) => matches!(status, 408 | 409 | 429) || (500..600).contains(&status),
            None => matches!(self.kind, ModelErrorKind::Timeout | ModelErrorKind::APIConnectionError),
        }
    }

    fn is_quota_exhausted(&self) -> bool {
        self.code.as_deref() == Some("insufficient_quota")
            || self.message.contains("insufficient_quota")
            || self.message.contains("exceeded your current quota")
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
        check(
            400,
            r#"{"error":{"code":"context_length_exceeded","message":"too long"}}"#,
            ModelErrorKind::ContextWindowExceededError,
        );
        check(
            400,
            r#"{"error":{"code":"content_filter","message":"no"}}"#,
            ModelErrorKind::ContentPolicyViolationError,
        );
        check(400, r#"{"error":{"code":"model_not_found","message":"no"}}"#, ModelErrorKind::NotFoundError);
        check(418, "", ModelErrorKind::BadRequestError);
        check(502, "<html>bad gateway</html>", ModelErrorKind::BadGatewayError);
        check(599, "", ModelErrorKind::APIError);
    }

    #[test]
    fn message_comes_from_body() {
        let error = ModelError::from_response(
            429,
            r#"{"error":{"message":"You've hit the rate limit","code":429}}"#,
            "openai",
            "m",
        );
        assert_eq!(error.error_message(), "litellm.RateLimitError: You've hit the rate limit");
    }
}
