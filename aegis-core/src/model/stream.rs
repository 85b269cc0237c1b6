//! Reading streamed replies: server-sent events (OpenAI, Azure, Anthropic) and
//! newline-delimited JSON (Ollama), under an idle deadline, with one rule for failures.
//!
//! SSE framing is eventsource-stream's job: it drops comments and keep-alives, reads `retry:`
//! and `id:` lines, and joins events split across reads. [`SseReader`] only adds the idle
//! deadline and skips events without data (a lone `retry:` line yields one). NDJSON needs no
//! crate: [`NdjsonReader`] splits the byte stream on newlines.
//!
//! The failure rule: a stream is *started* once its first event (or line) arrived. A stream
//! that breaks before that failed like any request (a stall is the client deadline,
//! `Timeout`; a reset is `APIConnectionError`) and may be retried. A stream that breaks after
//! it started is a `MidStreamFallbackError`, never retried, because pieces of it may already
//! have reached the caller's [`ChunkSink`](crate::model::ChunkSink); and a stream that simply
//! ends before the provider's end marker is one too, so a truncated answer never passes for
//! a complete one.

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use eventsource_stream::{EventStreamError, Eventsource};
use futures::{Stream, StreamExt};

use crate::model::transport::{Transport, error_chain};
use crate::model::{ModelError, ModelErrorKind};

/// The reason reading a stream stopped before its end.
#[derive(Debug)]
pub(crate) enum ReadFailure {
    /// No byte arrived within the idle deadline.
    Stalled,
    /// The connection broke or the bytes were not a valid stream.
    Broken(String),
}

/// One server-sent event with data.
#[derive(Debug)]
pub(crate) struct SseEvent {
    /// The `event:` name, empty for unnamed events.
    pub(crate) name: String,
    /// The `data:` lines, joined by newlines.
    pub(crate) data: String,
}

type EventStream =
    Pin<Box<dyn Stream<Item = Result<eventsource_stream::Event, EventStreamError<reqwest::Error>>> + Send>>;

/// Server-sent events of a response, with an idle deadline between reads.
pub(crate) struct SseReader {
    events: EventStream,
    idle: Duration,
}

impl SseReader {
    pub(crate) fn new(response: reqwest::Response, idle: Duration) -> SseReader {
        SseReader { events: Box::pin(response.bytes_stream().eventsource()), idle }
    }

    /// Returns the next event that carries data, or `None` at the end of the body.
    pub(crate) async fn next(&mut self) -> Result<Option<SseEvent>, ReadFailure> {
        loop {
            let item = tokio::time::timeout(self.idle, self.events.next()).await.map_err(|_| ReadFailure::Stalled)?;
            let event = match item {
                None => return Ok(None),
                Some(Ok(event)) => event,
                Some(Err(EventStreamError::Transport(error))) => return Err(ReadFailure::Broken(error_chain(&error))),
                Some(Err(error)) => return Err(ReadFailure::Broken(format!("invalid event stream: {error}"))),
            };
            if event.data.trim().is_empty() {
                continue;
            }
            return Ok(Some(SseEvent { name: event.event, data: event.data }));
        }
    }
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// Newline-delimited JSON lines of a response, with an idle deadline between reads.
pub(crate) struct NdjsonReader {
    bytes: ByteStream,
    buffer: Vec<u8>,
    ended: bool,
    idle: Duration,
}

impl NdjsonReader {
    pub(crate) fn new(response: reqwest::Response, idle: Duration) -> NdjsonReader {
        NdjsonReader { bytes: Box::pin(response.bytes_stream()), buffer: Vec::new(), ended: false, idle }
    }

    /// Returns the next non-blank line, or `None` at the end of the body. A last line
    /// without a newline is returned as it is, and its parser decides whether it is whole.
    pub(crate) async fn next(&mut self) -> Result<Option<String>, ReadFailure> {
        loop {
            if let Some(end) = self.buffer.iter().position(|byte| *byte == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                let text = String::from_utf8_lossy(&line).trim().to_owned();
                if text.is_empty() {
                    continue;
                }
                return Ok(Some(text));
            }
            if self.ended {
                let rest = String::from_utf8_lossy(&std::mem::take(&mut self.buffer)).trim().to_owned();
                return Ok(Some(rest).filter(|text| !text.is_empty()));
            }

            let item = tokio::time::timeout(self.idle, self.bytes.next()).await.map_err(|_| ReadFailure::Stalled)?;
            match item {
                None => self.ended = true,
                Some(Ok(bytes)) => self.buffer.extend_from_slice(&bytes),
                Some(Err(error)) => return Err(ReadFailure::Broken(error_chain(&error))),
            }
        }
    }
}

/// Converts a read failure into the error the call reports, following the module's rule.
pub(crate) fn read_error(transport: &Transport, model: &str, started: bool, failure: ReadFailure) -> ModelError {
    match (started, failure) {
        (false, ReadFailure::Stalled) => transport.deadline_error(model),
        (false, ReadFailure::Broken(reason)) => ModelError::new(
            ModelErrorKind::APIConnectionError,
            format!("connection to the model provider failed: {reason}"),
            transport.provider,
            model,
        ),
        (true, ReadFailure::Stalled) => mid_stream(
            transport,
            model,
            format!("no data for {:.1} s after the stream started", transport.timeout.as_secs_f64()),
        ),
        (true, ReadFailure::Broken(reason)) => mid_stream(transport, model, reason),
    }
}

/// Builds the error for a stream whose body ended before the provider's end marker.
pub(crate) fn ended_early(transport: &Transport, model: &str, started: bool) -> ModelError {
    if !started {
        return transport.invalid_response(model, 200, "provider returned an empty stream");
    }
    mid_stream(transport, model, "the stream ended before the completion finished".to_owned())
}

/// Builds a `MidStreamFallbackError` that says why the stream broke.
pub(crate) fn mid_stream(transport: &Transport, model: &str, reason: String) -> ModelError {
    let message = format!("stream broke after it started: {reason}");
    ModelError::new(ModelErrorKind::MidStreamFallbackError, message, transport.provider, model)
}

/// Turns an error event that arrived after content into a `MidStreamFallbackError` naming
/// the original class, because the pieces already sent cannot be taken back by a retry.
pub(crate) fn error_event(transport: &Transport, model: &str, started: bool, error: ModelError) -> ModelError {
    if !started {
        return error;
    }
    // The status stays unset: with a 429 or 5xx status the error would count as retryable.
    let mut broken = mid_stream(transport, model, format!("{}: {}", error.kind, error.message));
    broken.code = error.code;
    broken
}
