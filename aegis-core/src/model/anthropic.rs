//! `AnthropicChatCompletionClient`: Anthropic's Messages API (`POST {base_url}/v1/messages`).
//!
//! The system prompt goes in the top-level `system` field, consecutive messages of one role
//! are merged into one message with several content blocks, function calls become `tool_use`
//! blocks and their results `tool_result` blocks in a user message. Streaming reads
//! Anthropic's named SSE events: text arrives in `content_block_delta` events, input tokens in
//! `message_start`, output tokens and the stop reason in `message_delta`, and the stream ends
//! with `message_stop`. An `error` event is classified by the HTTP status Anthropic documents
//! for its error type.
//!
//! The key falls back to `ANTHROPIC_API_KEY` and travels in `x-api-key`. The environment's key
//! is only sent to `ANTHROPIC_BASE_URL`, or to Anthropic's own host when that is unset.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::message::RequestUsage;
use crate::model::env::{ANTHROPIC_DEFAULT_BASE_URL, ProviderEnv};
use crate::model::retry::RetryPolicy;
use crate::model::stream::{self, SseReader};
use crate::model::transport::{Exchange, Transport, endpoint_url, env_key_may_go_to, normalise_url};
use crate::model::{
    AssistantContent, ChunkSink, CreateContent, CreateRequest, CreateResult, FinishReason, FunctionCall, LlmMessage,
    ModelClient, ModelError, ModelInfo,
};
use crate::secret::Secret;

/// The `provider` string AutoGen dumps for this client.
pub const PROVIDER: &str = "autogen_ext.models.anthropic.AnthropicChatCompletionClient";

/// The Messages API version sent in `anthropic-version`.
const API_VERSION: &str = "2023-06-01";

/// `max_tokens` when the component sets none; the API requires one. 4096 is AutoGen's default.
const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Request parameters copied from the component config when present.
const PASSTHROUGH_KEYS: &[&str] = &["temperature", "top_p", "top_k", "stop_sequences", "metadata"];

/// The config keys of `AnthropicChatCompletionClient` that this client interprets.
#[derive(Clone, Debug, Default, Deserialize)]
#[non_exhaustive]
pub struct AnthropicConfig {
    /// Model name, such as `claude-3-5-sonnet-20241022`.
    pub model: String,
    /// Output token limit (default 4096).
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// API key; absent or AutoGen's mask means "use `ANTHROPIC_API_KEY`".
    #[serde(default)]
    pub api_key: Option<String>,
    /// Base URL, ending before `/v1/messages`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// Per-request timeout in seconds (default 60).
    #[serde(default)]
    pub timeout: Option<f64>,
    /// Retries after the first attempt (default 2).
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Capabilities of the model.
    #[serde(default)]
    pub model_info: Option<ModelInfo>,
    /// Extra headers sent with every request.
    #[serde(default)]
    pub default_headers: Option<Map<String, Value>>,
}

/// A client for Anthropic's Messages API.
#[derive(Clone, Debug)]
pub struct AnthropicClient {
    transport: Transport,
    endpoint: String,
    api_key: Option<Secret>,
    model: String,
    max_tokens: u64,
    headers: Vec<(String, String)>,
    parameters: Map<String, Value>,
    model_info: ModelInfo,
}

impl AnthropicClient {
    /// Builds a client from a component `config`, falling back to `env` for the key and host.
    pub fn from_config(config: &Value, env: &ProviderEnv, http: reqwest::Client) -> Result<AnthropicClient, String> {
        let parsed: AnthropicConfig = serde_json::from_value(config.clone()).map_err(|error| error.to_string())?;
        if parsed.model.trim().is_empty() {
            return Err("missing field `model`".to_owned());
        }

        let configured_url = parsed.base_url.as_deref().map(str::trim).filter(|url| !url.is_empty());
        let env_url = env.anthropic_base_url.as_deref();
        let base_url = normalise_url(configured_url.or(env_url).unwrap_or(ANTHROPIC_DEFAULT_BASE_URL));
        let trusted = env_url.unwrap_or(ANTHROPIC_DEFAULT_BASE_URL);
        let api_key = match parsed.api_key.as_deref().and_then(Secret::new) {
            Some(key) => Some(key),
            None if env_key_may_go_to(&base_url, trusted) => env.anthropic_api_key.clone(),
            None => None,
        };

        let mut parameters = Map::new();
        if let Value::Object(map) = config {
            for key in PASSTHROUGH_KEYS {
                if let Some(value) = map.get(*key).filter(|value| !value.is_null()) {
                    parameters.insert((*key).to_owned(), value.clone());
                }
            }
        }
        let headers = parsed
            .default_headers
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(name, value)| value.as_str().map(|text| (name, text.to_owned())))
            .collect();

        let endpoint = endpoint_url("base_url", &base_url, "v1/messages")?;
        Ok(AnthropicClient {
            transport: Transport::new("anthropic", http, parsed.timeout, parsed.max_retries)?,
            endpoint,
            api_key,
            model: parsed.model,
            max_tokens: parsed.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
            headers,
            parameters,
            model_info: parsed.model_info.unwrap_or_default(),
        })
    }

    /// Overrides the model name, as a session's `team_metadata.model` does.
    pub fn set_model(&mut self, model: impl Into<String>) {
        self.model = model.into();
    }

    /// Replaces the retry policy, for example to shorten backoffs in tests.
    #[must_use]
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> AnthropicClient {
        self.transport.retry = policy;
        self
    }

    /// Returns the URL requests go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn request_body(&self, request: &CreateRequest, stream: bool) -> Value {
        let (system, messages) = to_anthropic_messages(&request.messages);
        let mut body = Map::new();
        body.insert("model".to_owned(), json!(self.model));
        body.insert("max_tokens".to_owned(), json!(self.max_tokens));
        body.insert("messages".to_owned(), Value::Array(messages));
        if !system.is_empty() {
            body.insert("system".to_owned(), json!(system));
        }
        for (key, value) in &self.parameters {
            body.insert(key.clone(), value.clone());
        }

        if !request.tools.is_empty() {
            let tools: Vec<Value> = request
                .tools
                .iter()
                .map(
                    |tool| json!({"name": tool.name, "description": tool.description, "input_schema": tool.parameters}),
                )
                .collect();
            body.insert("tools".to_owned(), Value::Array(tools));
            let choice = match request.tool_choice.as_deref() {
                None => None,
                Some("auto") => Some(json!({"type": "auto"})),
                Some("required") => Some(json!({"type": "any"})),
                Some("none") => Some(json!({"type": "none"})),
                Some(name) => Some(json!({"type": "tool", "name": name})),
            };
            if let Some(choice) = choice {
                body.insert("tool_choice".to_owned(), choice);
            }
        }
        if stream {
            body.insert("stream".to_owned(), Value::Bool(true));
        }
        for (key, value) in &request.extra_create_args {
            body.insert(key.clone(), value.clone());
        }
        Value::Object(body)
    }

    fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        let mut builder = self.transport.http.post(&self.endpoint).header("anthropic-version", API_VERSION).json(body);
        if let Some(key) = &self.api_key {
            builder = builder.header("x-api-key", key.expose());
        }
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        builder
    }

    /// Classifies an `error` event by the HTTP status Anthropic documents for its type.
    fn stream_error(&self, data: &Value) -> ModelError {
        let error = data.get("error").cloned().unwrap_or(Value::Null);
        let status = match error["type"].as_str().unwrap_or_default() {
            "invalid_request_error" => 400,
            "authentication_error" => 401,
            "permission_error" => 403,
            "not_found_error" => 404,
            "request_too_large" => 413,
            "rate_limit_error" => 429,
            "overloaded_error" => 529,
            _ => 500,
        };
        ModelError::from_error_object(Some(status), &error, self.transport.provider, &self.model).unwrap_or_else(|| {
            ModelError::from_response(status, &data.to_string(), self.transport.provider, &self.model)
        })
    }
}

#[async_trait]
impl ModelClient for AnthropicClient {
    fn model(&self) -> &str {
        &self.model
    }

    fn provider(&self) -> &str {
        self.transport.provider
    }

    fn model_info(&self) -> ModelInfo {
        self.model_info.clone()
    }

    async fn create(&self, request: &CreateRequest) -> Result<CreateResult, ModelError> {
        let body = self.request_body(request, false);
        self.create_checked(&body, request.json_output.as_ref()).await
    }

    async fn create_stream(
        &self,
        request: &CreateRequest,
        chunks: &mut dyn ChunkSink,
    ) -> Result<CreateResult, ModelError> {
        let body = self.request_body(request, true);
        self.stream_checked(&body, request.json_output.as_ref(), chunks).await
    }
}

#[async_trait]
impl Exchange for AnthropicClient {
    fn transport(&self) -> &Transport {
        &self.transport
    }

    fn model_name(&self) -> &str {
        &self.model
    }

    async fn send_once(&self, body: &Value) -> Result<CreateResult, ModelError> {
        let reply = self.transport.send(self.post(body), &self.model).await?;
        parse_message(&reply.body)
            .map_err(|message| self.transport.invalid_response(&self.model, reply.status, message))
    }

    async fn stream_once(&self, body: &Value, chunks: &mut dyn ChunkSink) -> Result<CreateResult, ModelError> {
        let response = self.transport.open_stream(self.post(body), &self.model).await?;
        let mut events = SseReader::new(response, self.transport.timeout);
        let mut assembler = EventAssembler::default();
        let mut started = false;

        loop {
            let event = match events.next().await {
                Ok(Some(event)) => event,
                Ok(None) => return Err(stream::ended_early(&self.transport, &self.model, started)),
                Err(failure) => return Err(stream::read_error(&self.transport, &self.model, started, failure)),
            };
            let data: Value = match serde_json::from_str(&event.data) {
                Ok(data) => data,
                Err(error) if started => {
                    return Err(stream::mid_stream(
                        &self.transport,
                        &self.model,
                        format!("invalid event data: {error}"),
                    ));
                }
                Err(error) => {
                    let message = format!("provider sent a stream event that is not JSON: {error}");
                    return Err(self.transport.invalid_response(&self.model, 200, message));
                }
            };
            // The `type` inside the data repeats the event name; it decides when the name is
            // missing, as some proxies drop `event:` lines.
            let name =
                if event.name.is_empty() { data["type"].as_str().unwrap_or_default().to_owned() } else { event.name };
            match name.as_str() {
                "message_stop" => break,
                "error" => {
                    let error = self.stream_error(&data);
                    return Err(stream::error_event(&self.transport, &self.model, started, error));
                }
                _ => assembler.apply(&name, &data, chunks),
            }
            started = true;
        }
        Ok(assembler.finish())
    }
}

/// Converts AutoGen messages into the system text and Anthropic's alternating messages.
fn to_anthropic_messages(messages: &[LlmMessage]) -> (String, Vec<Value>) {
    let mut system: Vec<&str> = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    let mut push = |role: &'static str, block: Value| match turns.last_mut() {
        Some((last, blocks)) if *last == role => blocks.push(block),
        _ => turns.push((role, vec![block])),
    };

    for message in messages {
        match message {
            LlmMessage::SystemMessage { content } => system.push(content),
            LlmMessage::UserMessage { content, .. } => push("user", json!({"type": "text", "text": content})),
            LlmMessage::AssistantMessage { content: AssistantContent::Text(text), .. } => {
                push("assistant", json!({"type": "text", "text": text}));
            }
            LlmMessage::AssistantMessage { content: AssistantContent::FunctionCalls(calls), .. } => {
                for call in calls {
                    let input = serde_json::from_str::<Value>(&call.arguments)
                        .ok()
                        .filter(Value::is_object)
                        .unwrap_or_else(|| json!({}));
                    push("assistant", json!({"type": "tool_use", "id": call.id, "name": call.name, "input": input}));
                }
            }
            LlmMessage::FunctionExecutionResultMessage { content } => {
                for result in content {
                    push(
                        "user",
                        json!({"type": "tool_result", "tool_use_id": result.call_id,
                                        "content": result.content, "is_error": result.is_error}),
                    );
                }
            }
        }
    }

    let messages = turns.into_iter().map(|(role, blocks)| json!({"role": role, "content": blocks})).collect();
    (system.join("\n"), messages)
}

/// Maps Anthropic's `stop_reason` to AutoGen's finish reason.
fn finish_reason(reason: Option<&str>, has_calls: bool) -> FinishReason {
    match reason {
        Some("end_turn" | "stop_sequence") => FinishReason::Stop,
        Some("max_tokens") => FinishReason::Length,
        Some("tool_use") => FinishReason::FunctionCalls,
        Some("refusal") => FinishReason::ContentFilter,
        _ if has_calls => FinishReason::FunctionCalls,
        _ => FinishReason::Unknown,
    }
}

#[derive(Deserialize)]
struct MessageBody {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    content: Option<Vec<Value>>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<UsageBody>,
}

#[derive(Clone, Copy, Default, Deserialize)]
struct UsageBody {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
}

/// Parses a 200 response body into a result, or explains why it is not a message.
fn parse_message(text: &str) -> Result<CreateResult, String> {
    let body: MessageBody = serde_json::from_str(text)
        .map_err(|error| format!("provider returned a body that is not a message: {error}"))?;
    let (Some(kind), Some(blocks)) = (body.kind, body.content) else {
        return Err("provider returned a body without `type` and `content`".to_owned());
    };
    if kind != "message" {
        return Err(format!("provider returned a `{kind}` object, expected a message"));
    }

    let mut text = String::new();
    let mut thought = String::new();
    let mut calls = Vec::new();
    for block in &blocks {
        match block["type"].as_str() {
            Some("text") => text.push_str(block["text"].as_str().unwrap_or_default()),
            Some("thinking") => thought.push_str(block["thinking"].as_str().unwrap_or_default()),
            Some("tool_use") => calls.push(FunctionCall {
                id: block["id"].as_str().unwrap_or_default().to_owned(),
                arguments: block.get("input").map_or_else(|| "{}".to_owned(), Value::to_string),
                name: block["name"].as_str().unwrap_or_default().to_owned(),
            }),
            _ => {}
        }
    }

    let usage = body.usage.unwrap_or_default();
    let finish_reason = finish_reason(body.stop_reason.as_deref(), !calls.is_empty());
    let content = if calls.is_empty() { CreateContent::Text(text) } else { CreateContent::FunctionCalls(calls) };
    Ok(CreateResult {
        finish_reason,
        content,
        usage: RequestUsage {
            prompt_tokens: usage.input_tokens.unwrap_or(0),
            completion_tokens: usage.output_tokens.unwrap_or(0),
        },
        cached: false,
        thought: Some(thought).filter(|thought| !thought.is_empty()),
    })
}

/// Builds a result from the named events of a streamed message.
#[derive(Default)]
struct EventAssembler {
    text: String,
    thought: String,
    calls: BTreeMap<u64, FunctionCall>,
    stop_reason: Option<String>,
    usage: RequestUsage,
}

impl EventAssembler {
    /// Applies one event; unknown events (`ping` and any added later) are skipped.
    fn apply(&mut self, name: &str, data: &Value, sink: &mut dyn ChunkSink) {
        let index = data["index"].as_u64().unwrap_or(0);
        match name {
            "message_start" => {
                let usage = &data["message"]["usage"];
                self.usage.prompt_tokens = usage["input_tokens"].as_u64().unwrap_or(0);
                self.usage.completion_tokens = usage["output_tokens"].as_u64().unwrap_or(0);
            }
            "content_block_start" if data["content_block"]["type"] == "tool_use" => {
                let block = &data["content_block"];
                self.calls.insert(
                    index,
                    FunctionCall {
                        id: block["id"].as_str().unwrap_or_default().to_owned(),
                        arguments: String::new(),
                        name: block["name"].as_str().unwrap_or_default().to_owned(),
                    },
                );
            }
            "content_block_delta" => self.apply_delta(index, &data["delta"], sink),
            "message_delta" => {
                if let Some(reason) = data["delta"]["stop_reason"].as_str() {
                    self.stop_reason = Some(reason.to_owned());
                }
                if let Some(tokens) = data["usage"]["output_tokens"].as_u64() {
                    self.usage.completion_tokens = tokens;
                }
            }
            _ => {}
        }
    }

    fn apply_delta(&mut self, index: u64, delta: &Value, sink: &mut dyn ChunkSink) {
        match delta["type"].as_str() {
            Some("text_delta") => {
                let text = delta["text"].as_str().unwrap_or_default();
                if !text.is_empty() {
                    sink.on_chunk(text);
                    self.text.push_str(text);
                }
            }
            Some("thinking_delta") => self.thought.push_str(delta["thinking"].as_str().unwrap_or_default()),
            Some("input_json_delta") => {
                if let Some(call) = self.calls.get_mut(&index) {
                    call.arguments.push_str(delta["partial_json"].as_str().unwrap_or_default());
                }
            }
            _ => {}
        }
    }

    fn finish(self) -> CreateResult {
        let mut calls: Vec<FunctionCall> = self.calls.into_values().collect();
        // A tool without parameters streams no input at all, which means `{}`.
        for call in &mut calls {
            if call.arguments.is_empty() {
                call.arguments = "{}".to_owned();
            }
        }
        let finish_reason = finish_reason(self.stop_reason.as_deref(), !calls.is_empty());
        let content =
            if calls.is_empty() { CreateContent::Text(self.text) } else { CreateContent::FunctionCalls(calls) };
        let thought = Some(self.thought).filter(|thought| !thought.is_empty());
        CreateResult { finish_reason, content, usage: self.usage, cached: false, thought }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FunctionExecutionResult;

    #[test]
    fn system_goes_top_level_and_turns_merge() {
        let messages = vec![
            LlmMessage::SystemMessage { content: "Be brief.".to_owned() },
            LlmMessage::UserMessage { content: "a".to_owned(), source: "user".to_owned() },
            LlmMessage::UserMessage { content: "b".to_owned(), source: "critic".to_owned() },
            LlmMessage::AssistantMessage {
                content: AssistantContent::FunctionCalls(vec![FunctionCall {
                    id: "t1".to_owned(),
                    arguments: r#"{"x":1}"#.to_owned(),
                    name: "f".to_owned(),
                }]),
                thought: None,
                source: "agent".to_owned(),
            },
            LlmMessage::FunctionExecutionResultMessage {
                content: vec![FunctionExecutionResult {
                    content: "2".to_owned(),
                    name: "f".to_owned(),
                    call_id: "t1".to_owned(),
                    is_error: false,
                }],
            },
        ];

        let (system, turns) = to_anthropic_messages(&messages);

        assert_eq!(system, "Be brief.");
        assert_eq!(turns.len(), 3);
        assert_eq!(turns[0]["role"], "user");
        assert_eq!(turns[0]["content"].as_array().unwrap().len(), 2);
        assert_eq!(turns[1]["content"][0]["input"], json!({"x": 1}));
        assert_eq!(turns[2]["content"][0]["tool_use_id"], "t1");
    }

    #[test]
    fn message_without_content_is_invalid() {
        assert!(parse_message(r#"{"type":"error","error":{"type":"api_error"}}"#).is_err());
        assert!(parse_message("[]").is_err());
        let ok = parse_message(r#"{"type":"message","content":[],"stop_reason":"mystery","usage":{"input_tokens":1,"output_tokens":0,"cache_read_input_tokens":5}}"#).unwrap();
        assert_eq!(ok.finish_reason, FinishReason::Unknown);
        assert_eq!(ok.usage.prompt_tokens, 1);
    }
}
