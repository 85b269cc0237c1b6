//! `OpenAIChatCompletionClient`: the Chat Completions API and every server that speaks it
//! (vLLM, Ollama's `/v1`, LiteLLM proxy, llama.cpp server).
//!
//! The API key is resolved once, when the client is built: the component's `api_key`, else
//! `OPENAI_API_KEY`. The environment's key is only attached when the request goes to the host
//! it was issued for (`OPENAI_BASE_URL`, or OpenAI's own host when that is unset), so a team
//! that names some other `base_url` cannot collect it.

use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::message::RequestUsage;
use crate::model::env::{OPENAI_DEFAULT_BASE_URL, ProviderEnv};
use crate::model::retry::RetryPolicy;
use crate::model::{
    AssistantContent, CreateContent, CreateRequest, CreateResult, FinishReason, FunctionCall,
    JsonOutput, LlmMessage, ModelClient, ModelError, ModelErrorKind, ModelInfo,
};
use crate::secret::Secret;

/// The `provider` string AutoGen dumps for this client.
pub const PROVIDER: &str = "autogen_ext.models.openai.OpenAIChatCompletionClient";

/// Request parameters copied from the component config into every request when present.
const PASSTHROUGH_KEYS: &[&str] = &[
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "seed",
    "stop",
    "frequency_penalty",
    "presence_penalty",
    "parallel_tool_calls",
    "user",
    "reasoning_effort",
    "logit_bias",
    "n",
];

/// The config keys of `OpenAIChatCompletionClient` that this client interprets; every other
/// key AutoGen dumps is either a passthrough parameter or ignored.
#[derive(Clone, Debug, Default, Deserialize)]
#[non_exhaustive]
pub struct OpenAiConfig {
    /// Model name sent to the provider.
    pub model: String,
    /// API key; absent or AutoGen's mask means "use `OPENAI_API_KEY`".
    #[serde(default)]
    pub api_key: Option<String>,
    /// Base URL of the API, ending before `/chat/completions`.
    #[serde(default)]
    pub base_url: Option<String>,
    /// OpenAI organization header.
    #[serde(default)]
    pub organization: Option<String>,
    /// Per-request timeout in seconds (default 60).
    #[serde(default)]
    pub timeout: Option<f64>,
    /// Retries after the first attempt (default 2, as in openai-python).
    #[serde(default)]
    pub max_retries: Option<u32>,
    /// Capabilities of the model.
    #[serde(default)]
    pub model_info: Option<ModelInfo>,
    /// Extra headers sent with every request.
    #[serde(default)]
    pub default_headers: Option<Map<String, Value>>,
    /// `response_format` sent with every request unless a call sets its own.
    #[serde(default)]
    pub response_format: Option<Value>,
}

/// A client for the OpenAI Chat Completions API.
#[derive(Clone, Debug)]
pub struct OpenAiClient {
    http: reqwest::Client,
    endpoint: String,
    api_key: Option<Secret>,
    model: String,
    organization: Option<String>,
    headers: Vec<(String, String)>,
    parameters: Map<String, Value>,
    response_format: Option<Value>,
    model_info: ModelInfo,
    timeout: Duration,
    retry: RetryPolicy,
}

impl OpenAiClient {
    /// Builds a client from a component `config`, falling back to `env` for the key and host.
    pub fn from_config(config: &Value, env: &ProviderEnv, http: reqwest::Client) -> Result<OpenAiClient, String> {
        let parsed: OpenAiConfig = serde_json::from_value(config.clone()).map_err(|error| error.to_string())?;
        if parsed.model.trim().is_empty() {
            return Err("missing field `model`".to_owned());
        }

        let configured_key = parsed.api_key.as_deref().and_then(Secret::new);
        let configured_url = parsed.base_url.as_deref().map(str::trim).filter(|url| !url.is_empty());
        let env_url = env.openai_base_url.as_deref();
        let base_url = configured_url.or(env_url).unwrap_or(OPENAI_DEFAULT_BASE_URL).trim_end_matches('/').to_owned();
        let api_key = match configured_key {
            Some(key) => Some(key),
            None if env_key_may_go_to(&base_url, env_url) => env.openai_api_key.clone(),
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
        let timeout = parsed.timeout.filter(|seconds| seconds.is_finite() && *seconds > 0.0).unwrap_or(60.0);

        Ok(OpenAiClient {
            http,
            endpoint: format!("{base_url}/chat/completions"),
            api_key,
            model: parsed.model,
            organization: parsed.organization,
            headers,
            parameters,
            response_format: parsed.response_format.filter(|value| !value.is_null()),
            model_info: parsed.model_info.unwrap_or_default(),
            timeout: Duration::from_secs_f64(timeout),
            retry: RetryPolicy::with_max_retries(parsed.max_retries.unwrap_or(2)),
        })
    }

    /// Overrides the model name, as a session's `team_metadata.model` does.
    pub fn set_model(&mut self, model: impl Into<String>) {
        self.model = model.into();
    }

    /// Returns the URL requests go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn request_body(&self, request: &CreateRequest) -> Value {
        let mut body = Map::new();
        body.insert("model".to_owned(), Value::String(self.model.clone()));
        let messages: Vec<Value> = request.messages.iter().flat_map(to_openai_messages).collect();
        body.insert("messages".to_owned(), Value::Array(messages));
        for (key, value) in &self.parameters {
            body.insert(key.clone(), value.clone());
        }

        let response_format = match &request.json_output {
            Some(JsonOutput::JsonObject) => Some(json!({"type": "json_object"})),
            Some(JsonOutput::JsonSchema(format)) => Some(json!({
                "type": "json_schema",
                "json_schema": {"name": format.name, "schema": format.schema, "strict": format.strict},
            })),
            None => self.response_format.clone(),
        };
        if let Some(format) = response_format {
            body.insert("response_format".to_owned(), format);
        }

        if !request.tools.is_empty() {
            let tools: Vec<Value> = request
                .tools
                .iter()
                .map(|tool| {
                    json!({"type": "function", "function": {
                        "name": tool.name,
                        "description": tool.description,
                        "parameters": tool.parameters,
                        "strict": tool.strict,
                    }})
                })
                .collect();
            body.insert("tools".to_owned(), Value::Array(tools));
            if let Some(choice) = &request.tool_choice {
                let choice = match choice.as_str() {
                    "auto" | "none" | "required" => Value::String(choice.clone()),
                    name => json!({"type": "function", "function": {"name": name}}),
                };
                body.insert("tool_choice".to_owned(), choice);
            }
        }
        for (key, value) in &request.extra_create_args {
            body.insert(key.clone(), value.clone());
        }
        Value::Object(body)
    }

    async fn send_once(&self, body: &Value) -> Result<CreateResult, ModelError> {
        let mut builder = self.http.post(&self.endpoint).timeout(self.timeout).json(body);
        if let Some(key) = &self.api_key {
            builder = builder.bearer_auth(key.expose());
        }
        if let Some(organization) = &self.organization {
            builder = builder.header("OpenAI-Organization", organization);
        }
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }

        let response = builder.send().await.map_err(|error| self.transport_error(&error))?;
        let status = response.status().as_u16();
        let retry_after = retry_after_seconds(response.headers());
        let text = response.text().await.map_err(|error| self.transport_error(&error))?;
        if !(200..300).contains(&status) {
            let mut error = ModelError::from_response(status, &text, "openai", &self.model);
            error.retry_after = retry_after;
            return Err(error);
        }
        parse_completion(&text).map_err(|message| {
            ModelError::new(ModelErrorKind::APIResponseValidationError, message, "openai", &self.model).with_status(status)
        })
    }

    fn transport_error(&self, error: &reqwest::Error) -> ModelError {
        let kind = if error.is_timeout() { ModelErrorKind::Timeout } else { ModelErrorKind::APIConnectionError };
        let message = if error.is_timeout() {
            format!("request to the model provider timed out after {:.1} s", self.timeout.as_secs_f64())
        } else {
            // reqwest's message names the URL, which is fine to show: keys never travel in it.
            format!("connection to the model provider failed: {}", error_chain(error))
        };
        ModelError::new(kind, message, "openai", &self.model)
    }
}

#[async_trait]
impl ModelClient for OpenAiClient {
    fn model(&self) -> &str {
        &self.model
    }

    fn provider(&self) -> &str {
        "openai"
    }

    fn model_info(&self) -> ModelInfo {
        self.model_info.clone()
    }

    async fn create(&self, request: &CreateRequest) -> Result<CreateResult, ModelError> {
        let body = self.request_body(request);
        self.retry.run(&self.model, || self.send_once(&body)).await
    }
}

/// Decides whether `OPENAI_API_KEY` may be sent to `base_url`: only to the host the key's own
/// environment names, or to OpenAI when the environment names none.
fn env_key_may_go_to(base_url: &str, env_url: Option<&str>) -> bool {
    let trusted = env_url.unwrap_or(OPENAI_DEFAULT_BASE_URL);
    origin_of(base_url) == origin_of(trusted)
}

/// Returns `scheme://host:port` of a URL, lower-cased, with the default port made explicit.
fn origin_of(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    let host = parsed.host_str()?.to_ascii_lowercase();
    let port = parsed.port_or_known_default()?;
    Some(format!("{}://{host}:{port}", parsed.scheme()))
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Reads `retry-after-ms` or `Retry-After` (seconds) from a response.
fn retry_after_seconds(headers: &reqwest::header::HeaderMap) -> Option<f64> {
    let read = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<f64>().ok();
    if let Some(millis) = read("retry-after-ms") {
        return Some(millis / 1000.0);
    }
    read("retry-after").filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
}

/// Converts one AutoGen LLM message into Chat Completions messages.
fn to_openai_messages(message: &LlmMessage) -> Vec<Value> {
    match message {
        LlmMessage::SystemMessage { content } => vec![json!({"role": "system", "content": content})],
        LlmMessage::UserMessage { content, source } => {
            let mut value = json!({"role": "user", "content": content});
            add_name(&mut value, source);
            vec![value]
        }
        LlmMessage::AssistantMessage { content, source, .. } => {
            let mut value = match content {
                AssistantContent::Text(text) => json!({"role": "assistant", "content": text}),
                AssistantContent::FunctionCalls(calls) => {
                    let calls: Vec<Value> = calls
                        .iter()
                        .map(|call| {
                            json!({"id": call.id, "type": "function",
                                   "function": {"name": call.name, "arguments": call.arguments}})
                        })
                        .collect();
                    json!({"role": "assistant", "content": Value::Null, "tool_calls": calls})
                }
            };
            add_name(&mut value, source);
            vec![value]
        }
        LlmMessage::FunctionExecutionResultMessage { content } => content
            .iter()
            .map(|result| json!({"role": "tool", "content": result.content, "tool_call_id": result.call_id}))
            .collect(),
    }
}

/// Adds `name` when the source is a valid OpenAI participant name (`^[a-zA-Z0-9_-]{1,64}$`);
/// the API rejects the whole request otherwise.
fn add_name(message: &mut Value, source: &str) {
    let valid = !source.is_empty()
        && source.len() <= 64
        && source.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if valid && let Value::Object(map) = message {
        map.insert("name".to_owned(), Value::String(source.to_owned()));
    }
}

#[derive(Deserialize)]
struct CompletionBody {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<UsageBody>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<ChoiceMessage>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallBody>>,
    #[serde(default)]
    reasoning_content: Option<String>,
}

#[derive(Deserialize)]
struct ToolCallBody {
    #[serde(default)]
    id: String,
    function: ToolFunctionBody,
}

#[derive(Deserialize)]
struct ToolFunctionBody {
    name: String,
    #[serde(default)]
    arguments: String,
}

#[derive(Deserialize)]
struct UsageBody {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
}

/// Parses a 200 response body into a result, or explains why it is not a completion.
fn parse_completion(text: &str) -> Result<CreateResult, String> {
    let body: CompletionBody =
        serde_json::from_str(text).map_err(|error| format!("provider returned a body that is not a chat completion: {error}"))?;
    let Some(choice) = body.choices.into_iter().next() else {
        return Err("provider returned a chat completion without choices".to_owned());
    };
    let message = choice.message.ok_or("provider returned a choice without a message")?;

    let calls: Vec<FunctionCall> = message
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .map(|call| FunctionCall { id: call.id, name: call.function.name, arguments: call.function.arguments })
        .collect();
    let finish_reason = match choice.finish_reason.as_deref() {
        Some("stop") => FinishReason::Stop,
        Some("length") => FinishReason::Length,
        Some("tool_calls" | "function_call") => FinishReason::FunctionCalls,
        Some("content_filter") => FinishReason::ContentFilter,
        _ if !calls.is_empty() => FinishReason::FunctionCalls,
        _ => FinishReason::Unknown,
    };
    let content = if calls.is_empty() {
        CreateContent::Text(message.content.unwrap_or_default())
    } else {
        CreateContent::FunctionCalls(calls)
    };
    let usage = body.usage.map_or_else(RequestUsage::default, |usage| RequestUsage {
        prompt_tokens: usage.prompt_tokens.unwrap_or(0),
        completion_tokens: usage.completion_tokens.unwrap_or(0),
    });

    Ok(CreateResult { finish_reason, content, usage, cached: false, thought: message.reasoning_content })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_key_goes_only_to_its_host() {
        assert!(env_key_may_go_to("https://api.openai.com/v1", None));
        assert!(!env_key_may_go_to("https://evil.example/v1", None));
        assert!(env_key_may_go_to("http://127.0.0.1:9000/v1", Some("http://127.0.0.1:9000/v1/")));
        assert!(!env_key_may_go_to("http://127.0.0.1:9001/v1", Some("http://127.0.0.1:9000/v1")));
    }

    #[test]
    fn masked_key_falls_back_to_env_for_default_host() {
        let env = ProviderEnv { openai_api_key: Secret::new("sk-env"), openai_base_url: None };
        let config = json!({"model": "gpt-4o-mini", "api_key": "**********"});
        let client = OpenAiClient::from_config(&config, &env, reqwest::Client::new()).unwrap();
        assert_eq!(client.api_key.as_ref().map(Secret::expose), Some("sk-env"));
    }

    #[test]
    fn env_key_withheld_from_foreign_base_url() {
        let env = ProviderEnv { openai_api_key: Secret::new("sk-env"), openai_base_url: None };
        let config = json!({"model": "m", "base_url": "http://127.0.0.1:1/v1"});
        let client = OpenAiClient::from_config(&config, &env, reqwest::Client::new()).unwrap();
        assert!(client.api_key.is_none());
    }

    #[test]
    fn completion_tolerates_nulls_and_unknown_fields() {
        let text = r#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[]},
            "finish_reason":"weird"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"extra":{"a":1}},"service_tier":"new"}"#;
        let result = parse_completion(text).unwrap();
        assert_eq!(result.content, CreateContent::Text(String::new()));
        assert_eq!(result.finish_reason, FinishReason::Unknown);
        assert_eq!(result.usage, RequestUsage { prompt_tokens: 3, completion_tokens: 1 });
    }

    #[test]
    fn completion_without_choices_is_invalid() {
        assert!(parse_completion(r#"{"choices":[]}"#).is_err());
        assert!(parse_completion("<html>").is_err());
    }
}
