//! [`MockReply`]: what the mock provider does with one chat completion request.
//!
//! Tests queue replies with [`MockProvider::push`](super::MockProvider::push). The server takes
//! one reply per `POST /v1/chat/completions`, in the order they were pushed, and falls back to
//! the configured [`DefaultReply`](super::DefaultReply) when the queue is empty. Replies are
//! plain data, so one value can be queued many times and compared in assertions.

use std::time::Duration;

use serde_json::json;

/// The scripted outcome of one chat completion request.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum MockReply {
    /// A completion whose message content is this text, with `finish_reason` `"stop"`.
    ///
    /// A request with `"stream": true` receives the text as a single content chunk.
    Text(String),
    /// A completion that calls tools, given as `(name, arguments)` pairs. The arguments are
    /// sent verbatim as the JSON text the model wrote, so they may be malformed on purpose.
    /// `finish_reason` is `"tool_calls"`.
    ToolCalls(Vec<(String, String)>),
    /// A response with any status, body and headers, sent as given.
    ///
    /// Use it for provider failures (429 with `Retry-After`, 502 with an HTML page) and for
    /// a 200 whose body is not a chat completion. Unless `headers` sets `content-type`, the
    /// server picks one from the body: JSON, HTML (starts with `<`) or plain text.
    Error {
        /// HTTP status code. A value outside 100..=999 makes the server respond with a 500
        /// that explains the mistake.
        status: u16,
        /// Response body.
        body: String,
        /// Extra response headers as `(name, value)` pairs.
        headers: Vec<(String, String)>,
    },
    /// Waits for the duration, then serves the inner reply.
    Delay(Duration, Box<MockReply>),
    /// Never responds. The request stays open until the client gives up or the server shuts
    /// down, which closes the connection.
    Hang,
    /// Closes the TCP connection without sending a response, so the client sees a connection
    /// error rather than an HTTP status.
    Disconnect,
    /// Content chunks. A request with `"stream": true` receives one server-sent event per
    /// chunk, followed by a `finish_reason` chunk, a usage chunk when
    /// `stream_options.include_usage` is true, and `data: [DONE]`. A request without
    /// streaming receives the chunks joined into one text completion.
    Stream(Vec<String>),
    /// A 200 whose body is exactly these pieces, written one at a time with a short pause
    /// between them so that the client reads them separately. It scripts stream bytes that
    /// the formatted replies never produce: SSE comments and keep-alives, `retry:` lines, an
    /// event split across two reads, an error event, or a stream without its end marker. The
    /// content type is `text/event-stream`, or `application/x-ndjson` on Ollama's path.
    RawBody {
        /// Body pieces, in order.
        pieces: Vec<String>,
        /// Whether the connection is aborted after the last piece instead of ending the body
        /// cleanly, as a provider that crashes mid-stream does.
        cut: bool,
    },
}

impl MockReply {
    /// Creates a [`MockReply::Text`] reply.
    pub fn text(text: impl Into<String>) -> MockReply {
        MockReply::Text(text.into())
    }

    /// Creates a [`MockReply::ToolCalls`] reply with a single call.
    pub fn tool_call(name: impl Into<String>, arguments: impl Into<String>) -> MockReply {
        MockReply::ToolCalls(vec![(name.into(), arguments.into())])
    }

    /// Creates a [`MockReply::Stream`] reply from content chunks.
    pub fn stream<I, S>(chunks: I) -> MockReply
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        MockReply::Stream(chunks.into_iter().map(Into::into).collect())
    }

    /// Creates a [`MockReply::RawBody`] that ends cleanly after `pieces`.
    pub fn raw<I, S>(pieces: I) -> MockReply
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        MockReply::RawBody { pieces: pieces.into_iter().map(Into::into).collect(), cut: false }
    }

    /// Creates a [`MockReply::RawBody`] whose connection is aborted after `pieces`.
    pub fn raw_cut<I, S>(pieces: I) -> MockReply
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        MockReply::RawBody { pieces: pieces.into_iter().map(Into::into).collect(), cut: true }
    }

    /// Creates a [`MockReply::Error`] reply with the given status and body and no extra
    /// headers.
    pub fn error(status: u16, body: impl Into<String>) -> MockReply {
        MockReply::Error { status, body: body.into(), headers: Vec::new() }
    }

    /// Creates a [`MockReply::Error`] reply whose body is an OpenAI-style error object:
    /// `{"error": {"message", "type", "param": null, "code": null}}`.
    pub fn openai_error(status: u16, message: &str, error_type: &str) -> MockReply {
        let body = json!({"error": {"message": message, "type": error_type, "param": null, "code": null}});
        MockReply::error(status, body.to_string())
    }

    /// Creates a 429 reply with a `Retry-After` header of `retry_after_seconds` and an
    /// OpenAI-style rate limit error body.
    pub fn rate_limited(retry_after_seconds: u64) -> MockReply {
        let body = json!({"error": {
            "message": "Rate limit reached for requests. Please try again later.",
            "type": "requests",
            "param": null,
            "code": "rate_limit_exceeded",
        }});
        MockReply::Error {
            status: 429,
            body: body.to_string(),
            headers: vec![("retry-after".to_owned(), retry_after_seconds.to_string())],
        }
    }

    /// Wraps this reply in a [`MockReply::Delay`] of `delay`.
    #[must_use]
    pub fn delayed(self, delay: Duration) -> MockReply {
        MockReply::Delay(delay, Box::new(self))
    }
}
