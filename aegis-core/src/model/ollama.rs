//! `OllamaChatCompletionClient`: Ollama's native chat API (`POST {host}/api/chat`).
//!
//! The native API differs from Ollama's OpenAI-compatible `/v1` in several ways. Sampling
//! parameters go in `options`, and a JSON reply is requested with `format` (`"json"` or a JSON
//! schema). Tool call arguments are objects rather than JSON text. Token counts are
//! `prompt_eval_count` and `eval_count`. A streamed reply is newline-delimited JSON whose last
//! object has `"done": true`. Ollama takes no API key.
//!
//! The host is the component's `host`, else `OLLAMA_HOST`, else `http://localhost:11434`. Like
//! Ollama's own clients, a host without a scheme gets `http://` and one without a port gets
//! 11434.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::message::RequestUsage;
use crate::model::env::{OLLAMA_DEFAULT_HOST, ProviderEnv};
use crate::model::retry::RetryPolicy;
use crate::model::stream::{self, NdjsonReader};
use crate::model::transport::{Exchange, Transport, normalise_url};
use crate::model::{
    AssistantContent, ChunkSink, CreateContent, CreateRequest, CreateResult, FinishReason, FunctionCall, JsonOutput,
    LlmMessage, ModelClient, ModelError, ModelInfo, schema,
};

/// The `provider` string AutoGen dumps for this client.
pub const PROVIDER: &str = "autogen_ext.models.ollama.OllamaChatCompletionClient";

/// The config keys of `OllamaChatCompletionClient` that this client interprets.
#[derive(Clone, Debug, Default, Deserialize)]
#[non_exhaustive]
pub struct OllamaConfig {
    /// Model name, such as `llama3.2`.
    pub model: String,
    /// Ollama host, such as `http://127.0.0.1:11434`.
    #[serde(default)]
    pub host: Option<String>,
    /// Ollama `options` (temperature, num_ctx, seed, ...), sent as they are.
    #[serde(default)]
    pub options: Option<Map<String, Value>>,
    /// `"json"`, a JSON schema object, or an OpenAI-style `response_format` object.
    #[serde(default)]
    pub response_format: Option<Value>,
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
    pub headers: Option<Map<String, Value>>,
}

/// A client for Ollama's native chat API.
#[derive(Clone, Debug)]
pub struct OllamaClient {
    transport: Transport,
    endpoint: String,
    model: String,
    options: Map<String, Value>,
    format: Option<JsonOutput>,
    headers: Vec<(String, String)>,
    model_info: ModelInfo,
}

impl OllamaClient {
    /// Builds a client from a component `config`, falling back to `env` for the host.
    pub fn from_config(config: &Value, env: &ProviderEnv, http: reqwest::Client) -> Result<OllamaClient, String> {
        let parsed: OllamaConfig = serde_json::from_value(config.clone()).map_err(|error| error.to_string())?;
        if parsed.model.trim().is_empty() {
            return Err("missing field `model`".to_owned());
        }

        let configured = parsed.host.as_deref().map(str::trim).filter(|host| !host.is_empty());
        let host = configured.or(env.ollama_host.as_deref()).unwrap_or(OLLAMA_DEFAULT_HOST);
        let format = match parsed.response_format.filter(|value| !value.is_null()) {
            None => None,
            Some(Value::String(text)) if text == "json" => Some(JsonOutput::JsonObject),
            Some(value)
                if value
                    .get("type")
                    .and_then(Value::as_str)
                    .is_some_and(|kind| ["text", "json_object", "json_schema"].contains(&kind)) =>
            {
                schema::parse_response_format(&value)?
            }
            Some(value @ Value::Object(_)) => {
                schema::check_schema(&value)?;
                Some(JsonOutput::JsonSchema(crate::model::JsonSchemaFormat {
                    name: "response".to_owned(),
                    schema: value,
                    strict: true,
                }))
            }
            Some(other) => {
                return Err(format!("response_format must be \"json\" or a JSON schema object, got {other}"));
            }
        };
        let headers = parsed
            .headers
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(name, value)| value.as_str().map(|text| (name, text.to_owned())))
            .collect();

        Ok(OllamaClient {
            transport: Transport::new("ollama", http, parsed.timeout, parsed.max_retries)?,
            endpoint: format!("{}/api/chat", normalise_host(host)),
            model: parsed.model,
            options: parsed.options.unwrap_or_default(),
            format,
            headers,
            model_info: parsed.model_info.unwrap_or_default(),
        })
    }

    /// Overrides the model name, as a session's `team_metadata.model` does.
    pub fn set_model(&mut self, model: impl Into<String>) {
        self.model = model.into();
    }

    /// Replaces the retry policy, for example to shorten backoffs in tests.
    #[must_use]
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> OllamaClient {
        self.transport.retry = policy;
        self
    }

    /// Returns the URL requests go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn json_output<'a>(&'a self, request: &'a CreateRequest) -> Option<&'a JsonOutput> {
        request.json_output.as_ref().or(self.format.as_ref())
    }

    fn request_body(&self, request: &CreateRequest, stream: bool) -> Value {
        let messages: Vec<Value> = request.messages.iter().flat_map(to_ollama_messages).collect();
        let mut body = Map::new();
        body.insert("model".to_owned(), json!(self.model));
        body.insert("messages".to_owned(), Value::Array(messages));
        body.insert("stream".to_owned(), Value::Bool(stream));
        if !self.options.is_empty() {
            body.insert("options".to_owned(), Value::Object(self.options.clone()));
        }
        match self.json_output(request) {
            Some(JsonOutput::JsonObject) => {
                body.insert("format".to_owned(), json!("json"));
            }
            Some(JsonOutput::JsonSchema(format)) => {
                body.insert("format".to_owned(), format.schema.clone());
            }
            None => {}
        }
        if !request.tools.is_empty() {
            let tools: Vec<Value> = request
                .tools
                .iter()
                .map(|tool| {
                    json!({"type": "function", "function": {
                    "name": tool.name, "description": tool.description, "parameters": tool.parameters}})
                })
                .collect();
            body.insert("tools".to_owned(), Value::Array(tools));
        }
        for (key, value) in &request.extra_create_args {
            body.insert(key.clone(), value.clone());
        }
        Value::Object(body)
    }

    fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        let mut builder = self.transport.http.post(&self.endpoint).json(body);
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        builder
    }
}

#[async_trait]
impl ModelClient for OllamaClient {
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
        self.create_checked(&body, self.json_output(request)).await
    }

    async fn create_stream(
        &self,
        request: &CreateRequest,
        chunks: &mut dyn ChunkSink,
    ) -> Result<CreateResult, ModelError> {
        let body = self.request_body(request, true);
        self.stream_checked(&body, self.json_output(request), chunks).await
    }
}

#[async_trait]
impl Exchange for OllamaClient {
    fn transport(&self) -> &Transport {
        &self.transport
    }

    fn model_name(&self) -> &str {
        &self.model
    }

    async fn send_once(&self, body: &Value) -> Result<CreateResult, ModelError> {
        let reply = self.transport.send(self.post(body), &self.model).await?;
        let mut assembler = LineAssembler::default();
        let line: ChatLine = serde_json::from_str(&reply.body).map_err(|error| {
            self.transport.invalid_response(
                &self.model,
                reply.status,
                format!("provider returned a body that is not a chat reply: {error}"),
            )
        })?;
        if !line.done || line.message.is_none() {
            return Err(self.transport.invalid_response(
                &self.model,
                reply.status,
                "provider returned a chat reply without a finished message",
            ));
        }
        assembler.apply(line, &mut NoSink);
        Ok(assembler.finish())
    }

    async fn stream_once(&self, body: &Value, chunks: &mut dyn ChunkSink) -> Result<CreateResult, ModelError> {
        let response = self.transport.open_stream(self.post(body), &self.model).await?;
        let mut lines = NdjsonReader::new(response, self.transport.timeout);
        let mut assembler = LineAssembler::default();
        let mut started = false;

        loop {
            let text = match lines.next().await {
                Ok(Some(text)) => text,
                Ok(None) => return Err(stream::ended_early(&self.transport, &self.model, started)),
                Err(failure) => return Err(stream::read_error(&self.transport, &self.model, started, failure)),
            };
            let value: Value = match serde_json::from_str(&text) {
                Ok(value) => value,
                Err(error) if started => {
                    return Err(stream::mid_stream(&self.transport, &self.model, format!("invalid line: {error}")));
                }
                Err(error) => {
                    let message = format!("provider sent a stream line that is not JSON: {error}");
                    return Err(self.transport.invalid_response(&self.model, 200, message));
                }
            };
            if let Some(error) = value.get("error") {
                let classified = ModelError::from_error_object(None, error, self.transport.provider, &self.model)
                    .unwrap_or_else(|| stream::mid_stream(&self.transport, &self.model, error.to_string()));
                return Err(stream::error_event(&self.transport, &self.model, started, classified));
            }
            let line: ChatLine = serde_json::from_value(value).unwrap_or_default();
            let done = line.done;
            assembler.apply(line, chunks);
            started = true;
            if done {
                break;
            }
        }
        Ok(assembler.finish())
    }
}

/// Adds `http://` and port 11434 where `host` leaves them out, as Ollama's clients do.
fn normalise_host(host: &str) -> String {
    let host = normalise_url(host);
    let with_scheme = if host.contains("://") { host } else { format!("http://{host}") };
    let Ok(mut url) = reqwest::Url::parse(&with_scheme) else {
        return with_scheme;
    };
    if url.port().is_none() && !with_scheme.trim_start_matches("http://").trim_start_matches("https://").contains(':') {
        let _ = url.set_port(Some(11434));
    }
    normalise_url(url.as_str())
}

fn to_ollama_messages(message: &LlmMessage) -> Vec<Value> {
    match message {
        LlmMessage::SystemMessage { content } => vec![json!({"role": "system", "content": content})],
        LlmMessage::UserMessage { content, .. } => vec![json!({"role": "user", "content": content})],
        LlmMessage::AssistantMessage { content: AssistantContent::Text(text), .. } => {
            vec![json!({"role": "assistant", "content": text})]
        }
        LlmMessage::AssistantMessage { content: AssistantContent::FunctionCalls(calls), .. } => {
            let calls: Vec<Value> = calls
                .iter()
                .map(|call| {
                    let arguments = serde_json::from_str::<Value>(&call.arguments)
                        .ok()
                        .filter(Value::is_object)
                        .unwrap_or_else(|| json!({}));
                    json!({"function": {"name": call.name, "arguments": arguments}})
                })
                .collect();
            vec![json!({"role": "assistant", "content": "", "tool_calls": calls})]
        }
        LlmMessage::FunctionExecutionResultMessage { content } => content
            .iter()
            .map(|result| json!({"role": "tool", "content": result.content, "tool_name": result.name}))
            .collect(),
    }
}

#[derive(Default, Deserialize)]
struct ChatLine {
    #[serde(default)]
    message: Option<LineMessage>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    done_reason: Option<String>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
}

#[derive(Default, Deserialize)]
struct LineMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    thinking: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<LineToolCall>>,
}

#[derive(Deserialize)]
struct LineToolCall {
    function: LineFunction,
}

#[derive(Deserialize)]
struct LineFunction {
    name: String,
    #[serde(default)]
    arguments: Value,
}

/// A sink that drops pieces, for replies that are not streamed.
struct NoSink;

impl ChunkSink for NoSink {
    fn on_chunk(&mut self, _text: &str) {}
}

/// Builds a result from one reply object or the lines of a streamed one.
#[derive(Default)]
struct LineAssembler {
    text: String,
    thought: String,
    calls: Vec<FunctionCall>,
    done_reason: Option<String>,
    usage: RequestUsage,
}

impl LineAssembler {
    fn apply(&mut self, line: ChatLine, sink: &mut dyn ChunkSink) {
        if let Some(message) = line.message {
            if let Some(text) = message.content.filter(|text| !text.is_empty()) {
                sink.on_chunk(&text);
                self.text.push_str(&text);
            }
            if let Some(thought) = message.thinking {
                self.thought.push_str(&thought);
            }
            for call in message.tool_calls.unwrap_or_default() {
                // Ollama sends no call ids, so the call's position is used as its id.
                let id = format!("call_{}", self.calls.len());
                let arguments = match call.function.arguments {
                    Value::String(text) => text,
                    Value::Null => "{}".to_owned(),
                    other => other.to_string(),
                };
                self.calls.push(FunctionCall { id, arguments, name: call.function.name });
            }
        }
        if line.done {
            self.done_reason = line.done_reason;
            self.usage = RequestUsage {
                prompt_tokens: line.prompt_eval_count.unwrap_or(0),
                completion_tokens: line.eval_count.unwrap_or(0),
            };
        }
    }

    fn finish(self) -> CreateResult {
        let has_calls = !self.calls.is_empty();
        let finish_reason = match self.done_reason.as_deref() {
            _ if has_calls => FinishReason::FunctionCalls,
            Some("stop") => FinishReason::Stop,
            Some("length") => FinishReason::Length,
            _ => FinishReason::Unknown,
        };
        let content = if has_calls { CreateContent::FunctionCalls(self.calls) } else { CreateContent::Text(self.text) };
        let thought = Some(self.thought).filter(|thought| !thought.is_empty());
        CreateResult { finish_reason, content, usage: self.usage, cached: false, thought }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_gets_scheme_and_port() {
        assert_eq!(normalise_host("127.0.0.1"), "http://127.0.0.1:11434");
        assert_eq!(normalise_host("gpu-box:8080/"), "http://gpu-box:8080");
        assert_eq!(normalise_host("https://ollama.example"), "https://ollama.example:11434");
        assert_eq!(normalise_host("http://localhost:11434"), "http://localhost:11434");
    }

    #[test]
    fn response_format_json_becomes_format() {
        let config = json!({"model": "llama3.2", "response_format": "json", "options": {"temperature": 0}});
        let client = OllamaClient::from_config(&config, &ProviderEnv::default(), reqwest::Client::new()).unwrap();
        let body = client.request_body(&CreateRequest::default(), false);
        assert_eq!(body["format"], "json");
        assert_eq!(body["options"], json!({"temperature": 0}));
        assert_eq!(body["stream"], false);
    }
}
