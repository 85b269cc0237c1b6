//! The axum side of the mock provider: shared state, request dispatch and the responses.
//!
//! A single fallback handler serves every path, so that requests to unknown paths or with
//! the wrong method are recorded too before they get an OpenAI-style 404 or 405. Each request
//! is handled in a fixed order: record it, wait the configured latency, check the API key,
//! then dispatch. Only a `POST /v1/chat/completions` with a valid body takes a reply from
//! the queue, so a rejected request never uses up a scripted reply.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures::stream;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::completion::{self, Answer, Completion};
use super::config::{DefaultReply, MockConfig};
use super::conn::{CloseSignal, Connection, MockListener};
use super::grade;
use super::reply::MockReply;
use super::request::{self, RecordedRequest};

const CHAT_COMPLETIONS_PATH: &str = "/v1/chat/completions";
const MODELS_PATH: &str = "/v1/models";

/// State shared by the [`MockProvider`](super::MockProvider) handle and the handlers.
#[derive(Debug)]
pub(super) struct Shared {
    config: MockConfig,
    replies: Mutex<VecDeque<MockReply>>,
    requests: Mutex<Vec<RecordedRequest>>,
    completions: AtomicU64,
    /// Fires once when the server shuts down, closing the listener and every connection.
    pub(super) shutdown: CloseSignal,
}

impl Shared {
    pub(super) fn new(config: MockConfig) -> Shared {
        Shared {
            config,
            replies: Mutex::new(VecDeque::new()),
            requests: Mutex::new(Vec::new()),
            completions: AtomicU64::new(0),
            shutdown: CloseSignal::new(),
        }
    }

    pub(super) fn push_reply(&self, reply: MockReply) {
        lock(&self.replies).push_back(reply);
    }

    pub(super) fn queued_replies(&self) -> usize {
        lock(&self.replies).len()
    }

    pub(super) fn recorded_requests(&self) -> Vec<RecordedRequest> {
        lock(&self.requests).clone()
    }

    fn pop_reply(&self) -> Option<MockReply> {
        lock(&self.replies).pop_front()
    }

    fn record(&self, request: RecordedRequest) {
        lock(&self.requests).push(request);
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it. Every critical
/// section here is a single push, pop or clone, so the data is consistent even then.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Serves the mock on `listener` until `shared.shutdown` fires and every connection has closed.
pub(super) async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    let shutdown = shared.shutdown.clone();
    let listener = MockListener::new(listener, shutdown.clone());
    let app = Router::new()
        .fallback(handle)
        // Prompts of long conversations can exceed axum's 2 MB default, and the mock has no
        // reason to reject them.
        .layer(DefaultBodyLimit::disable())
        .with_state(shared)
        .into_make_service_with_connect_info::<Connection>();

    let result = axum::serve(listener, app).with_graceful_shutdown(shutdown.closed()).await;
    if let Err(error) = result {
        tracing::error!(%error, "mock provider stopped with an error");
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(connection): ConnectInfo<Connection>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();

    // A body that fails to arrive completely is recorded as empty, because the log should
    // still show that the request arrived.
    let raw_body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(error) => {
            tracing::debug!(%error, path = %parts.uri.path(), "mock provider failed to read a request body");
            Bytes::new()
        }
    };
    let json_body: Option<Value> = serde_json::from_slice(&raw_body).ok();
    if shared.config.record_requests {
        shared.record(RecordedRequest::new(&parts, json_body.clone().unwrap_or(Value::Null), raw_body));
    }

    // The race ends `Hang` and long delays when the connection or the server closes. The
    // response of the losing branch is never written, because the socket is closed.
    let closed = connection.closed();
    tokio::select! {
        response = respond(&shared, &connection, &parts, json_body) => response,
        () = closed => StatusCode::SERVICE_UNAVAILABLE.into_response(),
    }
}

async fn respond(shared: &Shared, connection: &Connection, parts: &Parts, body: Option<Value>) -> Response {
    if !shared.config.latency.is_zero() {
        tokio::time::sleep(shared.config.latency).await;
    }

    if let Some(rejection) = check_api_key(&shared.config, parts) {
        return rejection;
    }

    let path = parts.uri.path();
    match (&parts.method, path) {
        (&Method::POST, CHAT_COMPLETIONS_PATH) => chat_completion(shared, connection, body).await,
        (&Method::GET, MODELS_PATH) => list_models(&shared.config),
        (method, CHAT_COMPLETIONS_PATH | MODELS_PATH) => openai_error(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("Method {method} is not allowed on {path}."),
            "invalid_request_error",
            None,
        ),
        (method, _) => openai_error(
            StatusCode::NOT_FOUND,
            &format!("Invalid URL ({method} {path})"),
            "invalid_request_error",
            None,
        ),
    }
}

/// Returns a 401 unless the request carries the configured key as a bearer token.
fn check_api_key(config: &MockConfig, parts: &Parts) -> Option<Response> {
    let expected = config.api_key.as_deref()?;
    let sent = parts.headers.get(AUTHORIZATION).and_then(|value| value.to_str().ok()).and_then(request::bearer_token);

    // The message never repeats the key that was sent, so test logs stay free of keys.
    let message = match sent {
        Some(token) if token == expected => return None,
        Some(_) => "Incorrect API key provided.",
        None => "Missing API key. Send it in the Authorization header as `Bearer <key>`.",
    };
    Some(openai_error(StatusCode::UNAUTHORIZED, message, "invalid_request_error", Some("invalid_api_key")))
}

async fn chat_completion(shared: &Shared, connection: &Connection, body: Option<Value>) -> Response {
    let Some(body) = body else {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "The request body is not valid JSON.",
            "invalid_request_error",
            None,
        );
    };
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return openai_error(
            StatusCode::BAD_REQUEST,
            "The request body has no `messages` array.",
            "invalid_request_error",
            None,
        );
    };

    let sequence = shared.completions.fetch_add(1, Ordering::Relaxed) + 1;
    let model = match body.get("model").and_then(Value::as_str) {
        Some(model) if !model.is_empty() => model.to_owned(),
        _ => shared.config.model.clone(),
    };
    let completion = Completion::new(sequence, model, completion::prompt_tokens(messages));
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = body.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(false);

    let mut reply = match shared.pop_reply() {
        Some(reply) => reply,
        None => default_reply(&shared.config.default_reply, messages),
    };
    // Each pass unwraps one `Delay`, so nested delays add up.
    let answer = loop {
        reply = match reply {
            MockReply::Delay(delay, inner) => {
                tokio::time::sleep(delay).await;
                *inner
            }
            MockReply::Text(text) => break Answer::Text(vec![text]),
            MockReply::Stream(pieces) => break Answer::Text(pieces),
            MockReply::ToolCalls(calls) => break Answer::ToolCalls(calls),
            MockReply::Error { status, body, headers } => return scripted_response(status, body, &headers),
            MockReply::Hang => return std::future::pending().await,
            MockReply::Disconnect => {
                tracing::debug!(client = %connection.remote_addr, "mock provider drops the connection as scripted");
                connection.close();
                return StatusCode::SERVICE_UNAVAILABLE.into_response();
            }
        };
    };

    if stream {
        return event_stream(completion.stream_payloads(&answer, include_usage));
    }
    axum::Json(completion.body(&answer)).into_response()
}

/// Resolves the configured default into a concrete reply for this prompt.
fn default_reply(default: &DefaultReply, messages: &[Value]) -> MockReply {
    let user_text = completion::last_user_text(messages);
    let echo = || MockReply::Text(format!("mock reply to: {user_text}"));
    match default {
        DefaultReply::Automark => grade::grade_message(&user_text).map_or_else(echo, MockReply::Text),
        DefaultReply::Echo => echo(),
        DefaultReply::Fixed(reply) => reply.clone(),
    }
}

fn event_stream(payloads: Vec<String>) -> Response {
    let events =
        payloads.into_iter().map(|payload| Ok::<Event, std::convert::Infallible>(Event::default().data(payload)));
    Sse::new(stream::iter(events)).into_response()
}

fn list_models(config: &MockConfig) -> Response {
    let body = json!({
        "object": "list",
        "data": [{"id": config.model, "object": "model", "created": 0, "owned_by": "aegis-mock"}],
    });
    axum::Json(body).into_response()
}

fn openai_error(status: StatusCode, message: &str, error_type: &str, code: Option<&str>) -> Response {
    (status, axum::Json(completion::error_body(message, error_type, code))).into_response()
}

/// Builds the response of a [`MockReply::Error`]. A status or header that HTTP cannot carry
/// turns into a 500 that names it, so the mistake shows up in the failing test.
fn scripted_response(status: u16, body: String, headers: &[(String, String)]) -> Response {
    let Ok(status) = StatusCode::from_u16(status) else {
        return invalid_script(format!(
            "MockReply::Error has an invalid status code {status}. Use a code from 100 to 999."
        ));
    };

    let content_type = guess_content_type(&body);
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));

    // The first scripted value of a name replaces the guessed one, and later values of the
    // same name are appended, so a script can send a header several times.
    let mut replaced: Vec<HeaderName> = Vec::new();
    for (name, value) in headers {
        let Ok(name) = HeaderName::from_bytes(name.as_bytes()) else {
            return invalid_script(format!("MockReply::Error has an invalid header name {name:?}."));
        };
        let Ok(value) = HeaderValue::from_str(value) else {
            return invalid_script(format!("MockReply::Error has an invalid value for header {name}: {value:?}."));
        };
        if replaced.contains(&name) {
            response.headers_mut().append(name, value);
        } else {
            response.headers_mut().insert(name.clone(), value);
            replaced.push(name);
        }
    }
    response
}

fn invalid_script(message: String) -> Response {
    tracing::warn!(%message, "mock provider cannot serve a scripted reply");
    (StatusCode::INTERNAL_SERVER_ERROR, message).into_response()
}

fn guess_content_type(body: &str) -> &'static str {
    let trimmed = body.trim_start();
    if trimmed.starts_with('<') {
        return "text/html; charset=utf-8";
    }
    if serde_json::from_str::<serde::de::IgnoredAny>(body).is_ok() {
        return "application/json";
    }
    "text/plain; charset=utf-8"
}
