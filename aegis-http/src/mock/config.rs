//! [`MockConfig`] and [`DefaultReply`]: the settings fixed when a mock provider starts.
//!
//! Everything that can change while the server runs, the reply queue, lives on
//! [`MockProvider`](super::MockProvider) instead. The setters consume and return the config so
//! a test can write `MockConfig::default().with_api_key("sk-test")`.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use super::reply::MockReply;

/// Model name the mock reports when the config sets none.
pub const DEFAULT_MODEL: &str = "mock-model";

/// Settings of a mock provider.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct MockConfig {
    /// Address to bind, loopback unless [`MockConfig::allow_non_loopback`] is set. The default
    /// `127.0.0.1:0` picks a free port.
    pub addr: SocketAddr,
    /// Whether [`MockConfig::addr`] may be an address other than loopback. The mock answers
    /// every prompt and checks no real key, so the default `false` keeps it off the network.
    pub allow_non_loopback: bool,
    /// Model name listed by `GET /v1/models` and used in completions when a request does not
    /// name a model.
    pub model: String,
    /// API key that requests must send as `Authorization: Bearer <key>`. When set, any other
    /// token, or none, gets a 401 with an OpenAI-style error body. `None` accepts every
    /// request.
    pub api_key: Option<String>,
    /// Delay added before every response, including errors and `GET /v1/models`, to imitate
    /// provider latency in load tests.
    pub latency: Duration,
    /// Reply to a chat completion request when no scripted reply is queued.
    pub default_reply: DefaultReply,
    /// Whether the server keeps every request for [`MockProvider::requests`]. Turn it off for
    /// long load tests, where the log would grow without bound.
    ///
    /// [`MockProvider::requests`]: super::MockProvider::requests
    pub record_requests: bool,
}

impl Default for MockConfig {
    fn default() -> MockConfig {
        MockConfig {
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            allow_non_loopback: false,
            model: DEFAULT_MODEL.to_owned(),
            api_key: None,
            latency: Duration::ZERO,
            default_reply: DefaultReply::default(),
            record_requests: true,
        }
    }
}

impl MockConfig {
    /// Sets the loopback address to bind.
    #[must_use]
    pub fn with_addr(mut self, addr: SocketAddr) -> MockConfig {
        self.addr = addr;
        self
    }

    /// Allows binding an address other than loopback.
    #[must_use]
    pub fn with_non_loopback(mut self, allow: bool) -> MockConfig {
        self.allow_non_loopback = allow;
        self
    }

    /// Sets the model name.
    #[must_use]
    pub fn with_model(mut self, model: impl Into<String>) -> MockConfig {
        self.model = model.into();
        self
    }

    /// Requires requests to send `Authorization: Bearer <api_key>`.
    #[must_use]
    pub fn with_api_key(mut self, api_key: impl Into<String>) -> MockConfig {
        self.api_key = Some(api_key.into());
        self
    }

    /// Sets the delay added before every response.
    #[must_use]
    pub fn with_latency(mut self, latency: Duration) -> MockConfig {
        self.latency = latency;
        self
    }

    /// Sets what a request gets when the reply queue is empty.
    #[must_use]
    pub fn with_default_reply(mut self, default_reply: DefaultReply) -> MockConfig {
        self.default_reply = default_reply;
        self
    }

    /// Sets whether the server keeps every request for later inspection.
    #[must_use]
    pub fn with_request_log(mut self, record_requests: bool) -> MockConfig {
        self.record_requests = record_requests;
        self
    }
}

/// The reply to a chat completion request when no scripted [`MockReply`] is queued.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub enum DefaultReply {
    /// Grades automarking requests and echoes everything else.
    ///
    /// When the last user message is a JSON object with `question`, `model_answer` and
    /// `student_answer`, the reply is a JSON grade with `reasoning`, `satisfactory`,
    /// `relevance_score`, `completeness_score` and `confidence_score`. The grade comes from
    /// the share of the model answer's content words that the student answer contains, and
    /// is satisfactory from half of them up. Any other request gets the
    /// [`DefaultReply::Echo`] text.
    #[default]
    Automark,
    /// Replies `mock reply to: <last user message>`.
    Echo,
    /// Serves the same reply to every request, for example an error in a retry load test.
    Fixed(MockReply),
}
