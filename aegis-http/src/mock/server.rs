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
use futures::{StreamExt, stream};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::completion::{self, Answer, Completion};
use super::config::{DefaultReply, MockConfig};
use super::conn::{CloseSignal, Connection, MockListener};
use super::grade;
use super::reply::MockReply;
use super::request::{self, RecordedRequest};
use super::{anthropic, ollama};

const CHAT_COMPLETIONS_PATH: &str = "/v1/chat/completions";
const MODELS_PATH: &str = "/v1/models";
const ANTHROPIC_MESSAGES_PATH: &str = "/v1/messages";
const OLLAMA_CHAT_PATH: &str = "/api/chat";

/// Pause between two pieces of a [`MockReply::RawBody`], long enough that the client reads
/// each piece separately over loopback.
const RAW_PIECE_PAUSE: std::time::Duration = std::time::Duration::from_millis(5);

/// The chat API a request was made to, which decides the format of the reply.
#[derive(Clone, Copy, Debug, PartialEq)]
enum ChatApi {
    OpenAi,
    Anthropic,
    Ollama,
}

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
    if parts.method == Method::POST && is_azure_chat_path(path) {
        return chat_completion(shared, connection, body, ChatApi::OpenAi).await;
    }
    match (&parts.method, path) {
        (&Method::POST, CHAT_COMPLETIONS_PATH) => chat_completion(shared, connection, body, ChatApi::OpenAi).await,
        (&Method::POST, ANTHROPIC_MESSAGES_PATH) => chat_completion(shared, connection, body, ChatApi::Anthropic).await,
        (&Method::POST, OLLAMA_CHAT_PATH) => chat_completion(shared, connection, body, ChatApi::Ollama).await,
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

/// Returns whether `path` is Azure's `/openai/deployments/{deployment}/chat/completions`.
fn is_azure_chat_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix("/openai/deployments/") else {
        return false;
    };
    rest.strip_suffix("/chat/completions").is_some_and(|deployment| !deployment.is_empty() && !deployment.contains('/'))
}

/// Returns a 401 unless the request carries the configured key: as a bearer token (OpenAI),
/// in `api-key` (Azure) or in `x-api-key` (Anthropic).
fn check_api_key(config: &MockConfig, parts: &Parts) -> Option<Response> {
    let expected = config.api_key.as_deref()?;
    let header = |name: &str| parts.headers.get(name).and_then(|value| value.to_str().ok());
    let sent = header(AUTHORIZATION.as_str())
        .and_then(request::bearer_token)
        .or_else(|| header("api-key"))
        .or_else(|| header("x-api-key"));

    // The message never repeats the key that was sent, so test logs stay free of keys.
    let message = match sent {
        Some(token) if token == expected => return None,
        Some(_) => "Incorrect API key provided.",
        None => "Missing API key. Send it in the Authorization header as `Bearer <key>`.",
    };
    Some(openai_error(StatusCode::UNAUTHORIZED, message, "invalid_request_error", Some("invalid_api_key")))
}

async fn chat_completion(shared: &Shared, connection: &Connection, body: Option<Value>, api: ChatApi) -> Response {
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
    // Anthropic carries the system prompt beside the messages.
    let system_tokens = body
        .get("system")
        .map_or(0, |system| completion::count_words(&completion::message_text(&json!({"content": system}))));
    let completion = Completion::new(sequence, model, completion::prompt_tokens(messages) + system_tokens);
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let include_usage = body.pointer("/stream_options/include_usage").and_then(Value::as_bool).unwrap_or(false);

    let reply = match shared.pop_reply() {
        Some(reply) => reply,
        None => default_reply(&shared.config.default_reply, messages),
    };
    let answer = match resolve_reply(reply, connection, api).await {
        Ok(answer) => answer,
        Err(response) => return response,
    };

    match (api, stream) {
        (ChatApi::OpenAi, true) => event_stream(completion.stream_payloads(&answer, include_usage)),
        (ChatApi::OpenAi, false) => axum::Json(completion.body(&answer)).into_response(),
        (ChatApi::Anthropic, true) => named_event_stream(anthropic::stream_events(&completion, &answer)),
        (ChatApi::Anthropic, false) => axum::Json(anthropic::message(&completion, &answer)).into_response(),
        (ChatApi::Ollama, true) => ndjson_stream(ollama::stream_lines(&completion, &answer)),
        (ChatApi::Ollama, false) => axum::Json(ollama::message(&completion, &answer)).into_response(),
    }
}

/// Plays out a reply's delays and failures. Returns the answer to format, or the response
/// that a failure or raw body already is.
async fn resolve_reply(mut reply: MockReply, connection: &Connection, api: ChatApi) -> Result<Answer, Response> {
    // Each pass unwraps one `Delay`, so nested delays add up.
    loop {
        reply = match reply {
            MockReply::Delay(delay, inner) => {
                tokio::time::sleep(delay).await;
                *inner
            }
            MockReply::Text(text) => return Ok(Answer::Text(vec![text])),
            MockReply::Stream(pieces) => return Ok(Answer::Text(pieces)),
            MockReply::ToolCalls(calls) => return Ok(Answer::ToolCalls(calls)),
            MockReply::Error { status, body, headers } => return Err(scripted_response(status, body, &headers)),
            MockReply::RawBody { pieces, cut } => return Err(raw_body(pieces, cut, api)),
            MockReply::Hang => return std::future::pending().await,
            MockReply::Disconnect => {
                tracing::debug!(client = %connection.remote_addr, "mock provider drops the connection as scripted");
                connection.close();
                return Err(StatusCode::SERVICE_UNAVAILABLE.into_response());
            }
        };
    }
}

/// Writes a 200 whose body is `pieces`, one write per piece, then ends it cleanly or, when
/// `cut` is true, aborts the connection mid-body.
fn raw_body(pieces: Vec<String>, cut: bool, api: ChatApi) -> Response {
    let content_type = match api {
        ChatApi::Ollama => "application/x-ndjson",
        ChatApi::OpenAi | ChatApi::Anthropic => "text/event-stream",
    };
    let writes = stream::iter(pieces).then(|piece| async move {
        tokio::time::sleep(RAW_PIECE_PAUSE).await;
        Ok::<Bytes, std::io::Error>(Bytes::from(piece))
    });
    // A body error makes hyper drop the connection without the final chunk, which the client
    // sees as a body cut short. The pause first lets the last piece reach the client.
    let end = stream::iter(cut.then_some(())).then(|()| async {
        tokio::time::sleep(RAW_PIECE_PAUSE).await;
        Err::<Bytes, std::io::Error>(std::io::Error::other("mock provider cuts the stream as scripted"))
    });
    let mut response = Response::new(Body::from_stream(writes.chain(end)));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
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

fn named_event_stream(events: Vec<(&'static str, String)>) -> Response {
    let events = events
        .into_iter()
        .map(|(name, payload)| Ok::<Event, std::convert::Infallible>(Event::default().event(name).data(payload)));
    Sse::new(stream::iter(events)).into_response()
}

fn ndjson_stream(lines: Vec<String>) -> Response {
    let body: String = lines.into_iter().map(|line| line + "\n").collect();
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/x-ndjson"));
    response
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
