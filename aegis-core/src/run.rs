//! What agents and teams see of the run they execute in: the [`RunContext`] through which
//! they publish messages and call models, and the [`RunError`] that ends a run.
//!
//! Agents never touch the store. Every message goes through [`RunContext::emit`] to a
//! [`MessageSink`] that the engine backs with the store (so an active run shows its progress)
//! and tests back with a vector.

use std::fmt;

use async_trait::async_trait;
use tracing::Instrument;
use uuid::Uuid;

use crate::engine::budget::Allowance;
use crate::message::{AgentMessage, MessageKind, RequestUsage};
use crate::model::{ChunkSink, CreateRequest, CreateResult, ModelClient, ModelError};
use crate::resource::ErrorDetails;

/// The reason a run could not finish normally.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum RunErrorKind {
    /// The run failed; its outcome is recorded as `error`.
    Failed,
    /// The worker lost its lease; another attempt owns the run and nothing may be written.
    LeaseLost,
}

/// A failure that ends a run.
#[derive(Clone, Debug, PartialEq)]
pub struct RunError {
    /// Whether the failure is recorded or the worker must walk away.
    pub kind: RunErrorKind,
    /// The run's `error_message`: `<Type>: <message>`, with a `litellm.` prefix for
    /// provider failures.
    pub error_message: String,
    /// The run's `error_details`.
    pub details: Box<ErrorDetails>,
}

impl RunError {
    /// Creates a failure of class `error_type` (such as `ValueError`) that is not a provider
    /// call's.
    pub fn new(error_type: impl Into<String>, message: impl Into<String>) -> RunError {
        let error_type = error_type.into();
        let message = message.into();
        RunError {
            kind: RunErrorKind::Failed,
            error_message: format!("{error_type}: {message}"),
            details: Box::new(ErrorDetails {
                error_type,
                message,
                status_code: None,
                llm_provider: None,
                model: None,
                attempts: 1,
            }),
        }
    }

    /// Creates the error a worker gets when its lease is gone.
    pub fn lease_lost(message: impl Into<String>) -> RunError {
        RunError { kind: RunErrorKind::LeaseLost, ..RunError::new("LeaseLostError", message) }
    }
}

impl From<ModelError> for RunError {
    fn from(error: ModelError) -> RunError {
        RunError {
            kind: RunErrorKind::Failed,
            error_message: error.error_message(),
            details: Box::new(ErrorDetails {
                error_type: error.kind.to_string(),
                message: error.message,
                status_code: error.status_code,
                llm_provider: Some(error.llm_provider),
                model: Some(error.model),
                attempts: error.attempts,
            }),
        }
    }
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.error_message)
    }
}

impl std::error::Error for RunError {}

/// The destination of a run's messages as they are produced.
#[async_trait]
pub trait MessageSink: Send {
    /// Records one message.
    async fn emit(&mut self, message: &AgentMessage) -> Result<(), RunError>;

    /// Passes on a message that is shown to live followers but never stored, such as a
    /// `ModelClientStreamingChunkEvent`. The default drops it.
    fn emit_transient(&mut self, message: &AgentMessage) {
        let _ = message;
    }
}

/// A sink that keeps messages in memory, for tests and embedding.
#[derive(Debug, Default)]
pub struct VecSink {
    /// The messages emitted so far.
    pub messages: Vec<AgentMessage>,
}

#[async_trait]
impl MessageSink for VecSink {
    async fn emit(&mut self, message: &AgentMessage) -> Result<(), RunError> {
        self.messages.push(message.clone());
        Ok(())
    }
}

/// The run an agent or team executes in.
pub struct RunContext<'a> {
    run_id: Uuid,
    sink: &'a mut dyn MessageSink,
    usage: RequestUsage,
    /// Messages recorded since each open [`RunContext::start_capture`], innermost last.
    captures: Vec<Vec<AgentMessage>>,
    /// The user's token budget, checked before every model call.
    allowance: Option<Allowance>,
}

impl<'a> RunContext<'a> {
    /// Creates a context that records messages in `sink`.
    pub fn new(run_id: Uuid, sink: &'a mut dyn MessageSink) -> RunContext<'a> {
        RunContext { run_id, sink, usage: RequestUsage::default(), captures: Vec::new(), allowance: None }
    }

    /// Makes every later model call fail with `BudgetExceededError` once the user's budget is
    /// used up, counting this context's usage.
    pub(crate) fn limit_tokens(&mut self, allowance: Allowance) {
        self.allowance = Some(allowance);
    }

    fn check_allowance(&self) -> Result<(), RunError> {
        match &self.allowance {
            Some(allowance) => allowance.check(self.run_id, self.usage),
            None => Ok(()),
        }
    }

    /// Returns the id of the run.
    pub fn run_id(&self) -> Uuid {
        self.run_id
    }

    /// Records a message of the run.
    pub async fn emit(&mut self, message: &AgentMessage) -> Result<(), RunError> {
        self.sink.emit(message).await?;
        for capture in &mut self.captures {
            capture.push(message.clone());
        }
        Ok(())
    }

    /// Starts keeping a copy of every message recorded from now on, until the matching
    /// [`RunContext::finish_capture`]. A team nested in another uses it to learn what its
    /// run produced; captures nest.
    pub fn start_capture(&mut self) {
        self.captures.push(Vec::new());
    }

    /// Ends the innermost capture and returns the messages recorded during it.
    pub fn finish_capture(&mut self) -> Vec<AgentMessage> {
        self.captures.pop().unwrap_or_default()
    }

    /// Shows a message to live followers without storing it (see
    /// [`MessageSink::emit_transient`]).
    pub fn emit_transient(&mut self, message: &AgentMessage) {
        self.sink.emit_transient(message);
    }

    /// Calls a model on behalf of `agent`, counting its tokens towards the run's usage. Fails
    /// with `BudgetExceededError` instead of calling when the user's token budget is used up.
    pub async fn call_model(
        &mut self,
        agent: &str,
        client: &dyn ModelClient,
        request: &CreateRequest,
    ) -> Result<CreateResult, RunError> {
        self.check_allowance()?;
        let started = std::time::Instant::now();
        let result = client.create(request).instrument(model_call_span(self.run_id, agent, client)).await;
        self.record_call(agent, client, started, result)
    }

    /// Calls a model with streaming on behalf of `agent`: every piece of the reply is shown
    /// to live followers as a `ModelClientStreamingChunkEvent` (see
    /// [`RunContext::emit_transient`]), never stored. Tokens count as for
    /// [`RunContext::call_model`].
    pub async fn call_model_stream(
        &mut self,
        agent: &str,
        client: &dyn ModelClient,
        request: &CreateRequest,
        chunks: ChunkEvents<'_>,
    ) -> Result<CreateResult, RunError> {
        self.check_allowance()?;
        let started = std::time::Instant::now();
        let span = model_call_span(self.run_id, agent, client);
        let mut forward = ChunkForwarder { sink: &mut *self.sink, events: chunks };
        let result = client.create_stream(request, &mut forward).instrument(span).await;
        self.record_call(agent, client, started, result)
    }

    /// Counts a finished call's tokens and logs its outcome.
    fn record_call(
        &mut self,
        agent: &str,
        client: &dyn ModelClient,
        started: std::time::Instant,
        result: Result<CreateResult, ModelError>,
    ) -> Result<CreateResult, RunError> {
        let elapsed = started.elapsed();
        let usage = result.as_ref().ok().map(|done| done.usage);
        crate::telemetry::model_call(client.provider(), client.model(), elapsed, usage);
        let elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
        match &result {
            Ok(done) => {
                self.usage.add(done.usage);
                tracing::debug!(
                    run_id = %self.run_id,
                    agent,
                    provider = client.provider(),
                    gen_ai.request.model = client.model(),
                    gen_ai.usage.input_tokens = done.usage.prompt_tokens,
                    gen_ai.usage.output_tokens = done.usage.completion_tokens,
                    elapsed_ms,
                    "model call finished"
                );
            }
            Err(error) => {
                tracing::warn!(
                    run_id = %self.run_id,
                    agent,
                    provider = client.provider(),
                    gen_ai.request.model = client.model(),
                    error.type = %error.kind,
                    status = error.status_code,
                    attempts = error.attempts,
                    elapsed_ms,
                    "model call failed"
                );
            }
        }
        Ok(result?)
    }

    /// Returns the tokens of every model call made through this context.
    pub fn usage(&self) -> RequestUsage {
        self.usage
    }
}

/// Opens the span around one model call, so the client's own events (retries) carry the run.
fn model_call_span(run_id: Uuid, agent: &str, client: &dyn ModelClient) -> tracing::Span {
    tracing::info_span!(
        "model call",
        run_id = %run_id,
        agent,
        provider = client.provider(),
        gen_ai.request.model = client.model(),
    )
}

/// How [`RunContext::call_model_stream`] labels the pieces of a streamed reply.
#[derive(Clone, Copy, Debug)]
pub struct ChunkEvents<'a> {
    /// The `source` of each chunk event: the agent, or a team's manager.
    pub source: &'a str,
    /// The id of the message the reply becomes, set as each chunk's `full_message_id`.
    pub full_message_id: Option<&'a str>,
    /// Whether chunk events are shown at all; `false` streams the call but drops the pieces.
    pub publish: bool,
}

/// Turns reply pieces into transient chunk events.
struct ChunkForwarder<'s, 'e> {
    sink: &'s mut dyn MessageSink,
    events: ChunkEvents<'e>,
}

impl ChunkSink for ChunkForwarder<'_, '_> {
    fn on_chunk(&mut self, text: &str) {
        if !self.events.publish {
            return;
        }
        let mut event = AgentMessage::new(MessageKind::ModelClientStreamingChunkEvent, self.events.source, text.into());
        if let Some(id) = self.events.full_message_id {
            event.extra.insert("full_message_id".to_owned(), id.into());
        }
        self.sink.emit_transient(&event);
    }
}
