//! The `stub_error_sequence` model: a stand-in for every model client of a session's team that
//! fails each run with the next error of a fixed sequence, so users can test how their
//! application handles each provider failure without provoking it.
//!
//! The sequence is the 21 classes of LiteLLM 1.110.2's `LITELLM_EXCEPTION_TYPES`, starting
//! with `RateLimitError`, each with the status code LiteLLM gives that class. A run's position
//! in the sequence is taken when the run is accepted (from a per-session counter in the store)
//! and kept with the run, so a re-queued run fails the same way and concurrent runs never share
//! a position. The stub fails on its first call and is never retried, so `attempts` is 1.

use async_trait::async_trait;

use crate::model::{CreateRequest, CreateResult, ModelClient, ModelError, ModelErrorKind};

/// The `team_metadata.model` value that selects the stub.
pub const MODEL: &str = "stub_error_sequence";

/// The provider family the stub reports, as the tutorial shows.
pub const LLM_PROVIDER: &str = "openai";

/// The error classes in sequence order, with their HTTP status and message.
pub const SEQUENCE: [(ModelErrorKind, Option<u16>, &str); 21] = [
    (ModelErrorKind::RateLimitError, Some(429), "You've hit the rate limit"),
    (ModelErrorKind::AuthenticationError, Some(401), "Incorrect API key provided"),
    (ModelErrorKind::NotFoundError, Some(404), "The model stub_error_sequence does not exist"),
    (ModelErrorKind::BadRequestError, Some(400), "The request is invalid"),
    (ModelErrorKind::UnprocessableEntityError, Some(422), "The request could not be processed"),
    (ModelErrorKind::UnsupportedParamsError, Some(400), "The provider does not support a parameter of the request"),
    (ModelErrorKind::UnsupportedEndpointError, Some(400), "The provider does not support this endpoint"),
    (ModelErrorKind::Timeout, Some(408), "The request timed out"),
    (ModelErrorKind::PermissionDeniedError, Some(403), "The API key may not use this model"),
    (ModelErrorKind::ContextWindowExceededError, Some(400), "The prompt exceeds the model's maximum context length"),
    (ModelErrorKind::PaymentRequiredError, Some(402), "The account has no credit left"),
    (ModelErrorKind::RejectedRequestError, Some(400), "The provider rejected the request"),
    (ModelErrorKind::ContentPolicyViolationError, Some(400), "The request violates the content policy"),
    (ModelErrorKind::InternalServerError, Some(500), "The provider had an internal error"),
    (ModelErrorKind::ServiceUnavailableError, Some(503), "The service is temporarily unavailable"),
    (ModelErrorKind::BadGatewayError, Some(502), "The provider's gateway failed"),
    (ModelErrorKind::APIError, Some(500), "The provider returned an error"),
    (ModelErrorKind::APIConnectionError, Some(500), "The connection to the provider failed"),
    (ModelErrorKind::APIResponseValidationError, Some(500), "The provider's response is not a valid completion"),
    (ModelErrorKind::OpenAIError, None, "The OpenAI client failed"),
    (ModelErrorKind::JSONSchemaValidationError, Some(500), "The model's output does not match the JSON schema"),
];

/// Returns whether a session's `team_metadata.model` selects the stub.
pub fn is_selected(model: Option<&str>) -> bool {
    model == Some(MODEL)
}

/// Returns the error a run at position `step` of the sequence fails with; positions past the
/// end wrap around.
pub fn error_at(step: u64) -> ModelError {
    // The sequence has 21 entries, so the remainder always fits in usize.
    let index = (step % SEQUENCE.len() as u64) as usize;
    let (kind, status, message) = &SEQUENCE[index];
    let error = ModelError::new(kind.clone(), *message, LLM_PROVIDER, MODEL);
    match status {
        Some(status) => error.with_status(*status),
        None => error,
    }
}

/// A model client that fails every call with the error of one sequence position.
#[derive(Clone, Debug)]
pub struct StubErrorClient {
    step: u64,
}

impl StubErrorClient {
    /// Creates the stub for sequence position `step`.
    pub fn new(step: u64) -> StubErrorClient {
        StubErrorClient { step }
    }
}

#[async_trait]
impl ModelClient for StubErrorClient {
    fn model(&self) -> &str {
        MODEL
    }

    fn provider(&self) -> &str {
        LLM_PROVIDER
    }

    async fn create(&self, _request: &CreateRequest) -> Result<CreateResult, ModelError> {
        Err(error_at(self.step))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_starts_with_rate_limit() {
        let error = error_at(0);
        assert_eq!(error.error_message(), "litellm.RateLimitError: You've hit the rate limit");
        assert_eq!(error.status_code, Some(429));
        assert_eq!(error.attempts, 1);
    }

    #[test]
    fn sequence_wraps_around() {
        assert_eq!(error_at(21).kind, ModelErrorKind::RateLimitError);
        assert_eq!(error_at(20).kind, ModelErrorKind::JSONSchemaValidationError);
        assert_eq!(error_at(19).status_code, None, "OpenAIError has no status");
    }

    #[test]
    fn sequence_names_every_class_once() {
        let mut names: Vec<&str> = SEQUENCE.iter().map(|(kind, _, _)| kind.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 21);
    }
}
