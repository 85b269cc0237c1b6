//! The HTTP side that every provider client shares: deadlines, retries, turning transport
//! failures and error responses into [`ModelError`]s, and deciding where an environment key
//! may go.
//!
//! A client describes one request as a `reqwest::RequestBuilder`; [`Transport`] sends it under
//! the client's deadline and classifies whatever comes back. Keeping this in one place is what
//! makes the four clients fail identically: the same status gives the same LiteLLM class, the
//! same `Retry-After` handling and the same log lines, whichever provider was called.
//!
//! Deadlines: a plain request gets `timeout` for the whole exchange, body included. A
//! streamed request gets `timeout` until the response headers arrive and then `timeout` of
//! silence between two reads, because a long answer may stream for longer than any sensible
//! total deadline while a stalled one must still end.

use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::model::retry::RetryPolicy;
use crate::model::schema;
use crate::model::{ChunkSink, CreateResult, JsonOutput, ModelError, ModelErrorKind};

/// Default per-request timeout in seconds when a component sets none. openai-python uses 600;
/// Aegis uses less because a run's workers should not sit on a dead connection for ten
/// minutes.
pub(crate) const DEFAULT_TIMEOUT_SECONDS: f64 = 60.0;

/// The longest `timeout` a model client accepts, in seconds: a day, the longest run deadline.
/// It also keeps the value within what a `Duration` can hold.
pub(crate) const MAX_TIMEOUT_SECONDS: f64 = 86_400.0;

/// Default number of retries after the first attempt, as in openai-python.
pub(crate) const DEFAULT_MAX_RETRIES: u32 = 2;

/// The HTTP client, deadline and retry policy of one provider client.
#[derive(Clone, Debug)]
pub(crate) struct Transport {
    pub(crate) http: reqwest::Client,
    pub(crate) timeout: Duration,
    pub(crate) retry: RetryPolicy,
    /// The provider family reported in errors and logs, such as `openai`.
    pub(crate) provider: &'static str,
}

/// A successful (2xx) response whose body has been read.
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: String,
}

impl Transport {
    /// Creates a transport from a component's `timeout` (seconds) and `max_retries`.
    ///
    /// # Errors
    ///
    /// Fails with a message for the component's config when `timeout` is not a number of
    /// seconds above 0 and at most [`MAX_TIMEOUT_SECONDS`].
    pub(crate) fn new(
        provider: &'static str,
        http: reqwest::Client,
        timeout: Option<f64>,
        max_retries: Option<u32>,
    ) -> Result<Transport, String> {
        let seconds = match timeout {
            None => DEFAULT_TIMEOUT_SECONDS,
            Some(seconds) if seconds > 0.0 && seconds <= MAX_TIMEOUT_SECONDS => seconds,
            Some(seconds) => {
                return Err(format!(
                    "timeout must be a number of seconds above 0 and at most {MAX_TIMEOUT_SECONDS}, got {seconds}"
                ));
            }
        };
        Ok(Transport {
            http,
            timeout: Duration::from_secs_f64(seconds),
            retry: RetryPolicy::with_max_retries(max_retries.unwrap_or(DEFAULT_MAX_RETRIES)),
            provider,
        })
    }

    /// Sends a request and reads its whole body within the deadline. Error statuses become
    /// classified errors carrying the provider's `Retry-After`.
    pub(crate) async fn send(&self, builder: reqwest::RequestBuilder, model: &str) -> Result<Reply, ModelError> {
        let response =
            builder.timeout(self.timeout).send().await.map_err(|error| self.transport_error(&error, model))?;
        let status = response.status().as_u16();
        let retry_after = retry_after_seconds(response.headers());
        let body = response.text().await.map_err(|error| self.transport_error(&error, model))?;
        if !(200..300).contains(&status) {
            let mut error = ModelError::from_response(status, &body, self.provider, model);
            error.retry_after = retry_after;
            return Err(error);
        }
        Ok(Reply { status, body })
    }

    /// Sends a request whose body will be streamed, waiting at most the deadline for the
    /// response headers. An error status is read whole and classified as in [`Transport::send`].
    pub(crate) async fn open_stream(
        &self,
        builder: reqwest::RequestBuilder,
        model: &str,
    ) -> Result<reqwest::Response, ModelError> {
        let sent = tokio::time::timeout(self.timeout, builder.send()).await;
        let response = match sent {
            Err(_) => return Err(self.deadline_error(model)),
            Ok(Err(error)) => return Err(self.transport_error(&error, model)),
            Ok(Ok(response)) => response,
        };

        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(response);
        }
        let retry_after = retry_after_seconds(response.headers());
        let body = match tokio::time::timeout(self.timeout, response.text()).await {
            Err(_) => return Err(self.deadline_error(model)),
            Ok(Err(error)) => return Err(self.transport_error(&error, model)),
            Ok(Ok(body)) => body,
        };
        let mut error = ModelError::from_response(status, &body, self.provider, model);
        error.retry_after = retry_after;
        Err(error)
    }

    /// Classifies a reqwest failure: its own timeout is the client deadline, anything else a
    /// failed connection.
    pub(crate) fn transport_error(&self, error: &reqwest::Error, model: &str) -> ModelError {
        if error.is_timeout() {
            return self.deadline_error(model);
        }
        // reqwest's own message repeats the URL with its query string, which may carry a
        // key, so the message names the redacted URL and only the underlying causes.
        let url = error.url().map_or_else(|| "the model provider".to_owned(), |url| redact_url(url.as_str()));
        let causes = std::error::Error::source(error).map_or_else(|| "the request failed".to_owned(), error_chain);
        let message = format!("connection to {url} failed: {causes}");
        ModelError::new(ModelErrorKind::APIConnectionError, message, self.provider, model)
    }

    /// Builds the error for a request that outlived the client's deadline.
    pub(crate) fn deadline_error(&self, model: &str) -> ModelError {
        let message = format!("request to the model provider timed out after {:.1} s", self.timeout.as_secs_f64());
        ModelError::new(ModelErrorKind::Timeout, message, self.provider, model)
    }

    /// Builds the error for a 200 response that is not a completion.
    pub(crate) fn invalid_response(&self, model: &str, status: u16, message: impl Into<String>) -> ModelError {
        ModelError::new(ModelErrorKind::APIResponseValidationError, message, self.provider, model).with_status(status)
    }
}

/// Decides whether a key taken from the environment may be sent to `url`: only to the origin
/// of `trusted`, which is the host the key's own environment variable names or the
/// provider's default host.
pub(crate) fn env_key_may_go_to(url: &str, trusted: &str) -> bool {
    let origin = origin_of(url);
    origin.is_some() && origin == origin_of(trusted)
}

/// Returns `scheme://host:port` of a URL, lower-cased, with the default port made explicit.
fn origin_of(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    let host = parsed.host_str()?.to_ascii_lowercase();
    let port = parsed.port_or_known_default()?;
    Some(format!("{}://{host}:{port}", parsed.scheme()))
}

/// Returns a URL without trailing slashes, after trimming whitespace.
pub(crate) fn normalise_url(url: &str) -> String {
    url.trim().trim_end_matches('/').to_owned()
}

/// Appends `path` to the path of `base`, keeping any query string after it, and checks that
/// the result is an `http` or `https` URL. The error names `field` and never repeats a query
/// string or password, which may hold a key.
pub(crate) fn endpoint_url(field: &str, base: &str, path: &str) -> Result<String, String> {
    let mut url = reqwest::Url::parse(base).map_err(|error| {
        format!("{field} `{}` is not a valid URL ({error}); use a URL such as https://host/v1", redact_url(base))
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{field} `{}` must use http or https", redact_url(base)));
    }
    let joined = format!("{}/{}", url.path().trim_end_matches('/'), path.trim_start_matches('/'));
    url.set_path(&joined);
    Ok(url.to_string())
}

/// Returns a URL for messages and logs: without its query string, fragment and password.
pub(crate) fn redact_url(text: &str) -> String {
    let Ok(mut url) = reqwest::Url::parse(text) else {
        // Not a URL: cut at the first `?` or `#`, where a key would start.
        return text.split(['?', '#']).next().unwrap_or_default().to_owned();
    };
    url.set_query(None);
    url.set_fragment(None);
    let _ = url.set_password(None);
    url.to_string()
}

/// Joins an error and its sources into one line.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Reads `retry-after-ms` or `Retry-After` (seconds) from a response. The HTTP-date form of
/// `Retry-After` is not read.
// NOTE: an HTTP-date Retry-After counts as absent, so the computed backoff applies instead.
fn retry_after_seconds(headers: &HeaderMap) -> Option<f64> {
    let read = |name: &str| {
        let value = headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok()?;
        Some(value).filter(|number| number.is_finite() && *number >= 0.0)
    };
    if let Some(millis) = read("retry-after-ms") {
        return Some(millis / 1000.0);
    }
    read("retry-after")
}

/// One provider's wire exchange: send a prepared body once, plain or streamed.
///
/// The provided methods wrap that single exchange in what every client does around it (the
/// retry policy, and the check of the reply against a requested JSON output), so the clients
/// differ only in their wire formats and cannot drift apart in how they retry or validate.
#[async_trait]
pub(crate) trait Exchange: Sync {
    /// Returns the client's transport.
    fn transport(&self) -> &Transport;

    /// Returns the model name sent to the provider.
    fn model_name(&self) -> &str;

    /// Sends `body` once and reads the whole completion.
    async fn send_once(&self, body: &Value) -> Result<CreateResult, ModelError>;

    /// Sends `body` once as a streamed request, passing each text piece to `chunks`.
    async fn stream_once(&self, body: &Value, chunks: &mut dyn ChunkSink) -> Result<CreateResult, ModelError>;

    /// Sends `body` with retries and checks the reply against `json_output`.
    async fn create_checked(&self, body: &Value, json_output: Option<&JsonOutput>) -> Result<CreateResult, ModelError> {
        let transport = self.transport();
        let model = self.model_name();
        let result = transport.retry.run(transport.provider, model, || self.send_once(body)).await?;
        checked(result, json_output, transport.provider, model)
    }

    /// Streams `body` with retries and checks the assembled reply against `json_output`. A
    /// stream that broke after its first piece is a `MidStreamFallbackError`, which is not
    /// retried, so no piece reaches `chunks` twice.
    async fn stream_checked(
        &self,
        body: &Value,
        json_output: Option<&JsonOutput>,
        chunks: &mut dyn ChunkSink,
    ) -> Result<CreateResult, ModelError> {
        let transport = self.transport();
        let model = self.model_name();
        let mut attempts = 0;
        let result = loop {
            attempts += 1;
            let mut error = match self.stream_once(body, chunks).await {
                Ok(result) => break result,
                Err(error) => error,
            };
            error.attempts = attempts;
            let Some(delay) = transport.retry.retry_delay(transport.provider, model, &error) else {
                return Err(error);
            };
            tokio::time::sleep(delay).await;
        };
        checked(result, json_output, transport.provider, model)
    }
}

/// Fails a reply that does not match the requested JSON output.
fn checked(
    result: CreateResult,
    json_output: Option<&JsonOutput>,
    provider: &str,
    model: &str,
) -> Result<CreateResult, ModelError> {
    match schema::output_error(&result, json_output, provider, model) {
        Some(error) => Err(error),
        None => Ok(result),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn endpoint_keeps_query_after_path() {
        let url = super::endpoint_url("base_url", "http://127.0.0.1:9/v1/?api-version=1", "chat/completions").unwrap();
        assert_eq!(url, "http://127.0.0.1:9/v1/chat/completions?api-version=1");
    }

    #[test]
    fn endpoint_rejects_non_http_without_echoing_query() {
        let error = super::endpoint_url("base_url", "file:///etc/passwd?key=sk-1", "x").unwrap_err();
        assert!(error.contains("http or https") && !error.contains("sk-1"), "{error}");
        let error = super::endpoint_url("base_url", "not a url?key=sk-2", "x").unwrap_err();
        assert!(!error.contains("sk-2"), "{error}");
    }

    #[test]
    fn redacted_url_drops_query_and_password() {
        assert_eq!(super::redact_url("http://user:pw@127.0.0.1:9/v1?api-key=sk"), "http://user@127.0.0.1:9/v1");
    }

    use super::*;

    #[test]
    fn env_key_goes_only_to_its_host() {
        assert!(env_key_may_go_to("https://api.openai.com/v1", "https://api.openai.com/v1"));
        assert!(!env_key_may_go_to("https://evil.example/v1", "https://api.openai.com/v1"));
        assert!(env_key_may_go_to("http://127.0.0.1:9000/v1", "http://127.0.0.1:9000/v1/"));
        assert!(!env_key_may_go_to("http://127.0.0.1:9001/v1", "http://127.0.0.1:9000/v1"));
        assert!(!env_key_may_go_to("not a url", "not a url"));
    }

    #[test]
    fn retry_after_ms_wins_over_seconds() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", "3".parse().unwrap());
        assert_eq!(retry_after_seconds(&headers), Some(3.0));
        headers.insert("retry-after-ms", "250".parse().unwrap());
        assert_eq!(retry_after_seconds(&headers), Some(0.25));
        headers.insert("retry-after-ms", "-1".parse().unwrap());
        assert_eq!(retry_after_seconds(&headers), Some(3.0));
    }
}
