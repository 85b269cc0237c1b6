//! An OpenAI-compatible mock provider for tests, examples and benchmarks.
//!
//! [`MockProvider::start`] serves the Chat Completions API on a loopback port of the current
//! tokio runtime. Point any OpenAI client at [`MockProvider::base_url`] and it gets real HTTP
//! responses, so the whole client stack runs: serialization, status handling, retries,
//! timeouts and streaming.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use aegis_http::mock::{MockConfig, MockProvider, MockReply};
//!
//! let provider = MockProvider::start(MockConfig::default().with_api_key("sk-test")).await?;
//! provider.push(MockReply::rate_limited(1));
//! provider.push(MockReply::text("Paris"));
//! // ... run a client against provider.base_url() ...
//! assert_eq!(provider.requests()[0].bearer_token(), Some("sk-test"));
//! provider.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Endpoints
//!
//! - `POST /v1/chat/completions` takes the next [`MockReply`] from a FIFO queue, or the
//!   configured [`DefaultReply`] when the queue is empty. Text and tool call replies come
//!   back as a `chat.completion` object, or as server-sent `chat.completion.chunk` events
//!   ending with `data: [DONE]` when the request sets `"stream": true`.
//! - `POST /openai/deployments/{deployment}/chat/completions` (Azure OpenAI) is served like
//!   the OpenAI path; the `api-version` query is recorded, not checked.
//! - `POST /v1/messages` (Anthropic's Messages API) answers with a `message` object, or with
//!   Anthropic's named SSE events (`message_start` ... `message_stop`) when streaming.
//! - `POST /api/chat` (Ollama's native API) answers with one JSON object, or with
//!   newline-delimited JSON objects ending in one with `"done": true` when streaming.
//! - `GET /v1/models` lists the configured model.
//! - Any other path gets an OpenAI-style 404, and a known path with the wrong method a 405.
//!
//! Every request is recorded, headers included, for [`MockProvider::requests`]. When
//! [`MockConfig::api_key`] is set, requests that send that key neither as a bearer token nor in
//! `api-key` (Azure) or `x-api-key` (Anthropic) get a 401.
//!
//! # Design
//!
//! - `provider` contains the handle and [`serve_forever`], which runs a mock as a standalone
//!   process for manual and load tests.
//! - `server` holds the axum handler and the shared state.
//! - `conn` lets a handler close its own TCP connection, which `Disconnect` needs and which
//!   shutdown uses to end hanging requests.
//! - `completion` writes the Chat Completions wire format, `anthropic` and `ollama` write
//!   theirs from the same answer, and `grade` is the automarking
//!   heuristic behind [`DefaultReply::Automark`].
//! - `config`, `reply` and `request` hold the plain data types.

mod anthropic;
mod completion;
mod config;
mod conn;
mod grade;
mod ollama;
mod provider;
mod reply;
mod request;
mod server;

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a panic is how a test reports failure")]
mod tests;

pub use config::{DEFAULT_MODEL, DefaultReply, MockConfig};
pub use provider::{MockProvider, serve_forever};
pub use reply::MockReply;
pub use request::RecordedRequest;
