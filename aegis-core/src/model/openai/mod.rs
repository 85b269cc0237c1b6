//! `OpenAIChatCompletionClient`: the Chat Completions API and every server that speaks it
//! (vLLM, Ollama's `/v1`, LiteLLM proxy, llama.cpp server), plus Azure OpenAI, which speaks
//! the same format at a different URL with a different key header.
//!
//! The API key is resolved once, when the client is built: the component's `api_key`, else
//! `OPENAI_API_KEY`. The environment's key is only attached when the request goes to the host
//! it was issued for (`OPENAI_BASE_URL`, or OpenAI's own host when that is unset), so a team
//! that names some other `base_url` cannot collect it.
//!
//! `wire` contains the format itself, and this module the configuration and the calls.

mod wire;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::model::env::{OPENAI_DEFAULT_BASE_URL, ProviderEnv};
use crate::model::retry::RetryPolicy;
use crate::model::schema;
use crate::model::stream::{self, SseReader};
use crate::model::transport::{Exchange, Transport, endpoint_url, env_key_may_go_to, normalise_url};
use crate::model::{ChunkSink, CreateRequest, CreateResult, JsonOutput, ModelClient, ModelError, ModelInfo};
use crate::secret::Secret;

use wire::{ChunkAssembler, ChunkOutcome};

/// The `provider` string AutoGen dumps for this client.
pub const PROVIDER: &str = "autogen_ext.models.openai.OpenAIChatCompletionClient";

/// Request parameters copied from the component config into every request when present.
pub(crate) const PASSTHROUGH_KEYS: &[&str] = &[
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

/// Rejects a request parameter of the wrong JSON type, as AutoGen's config model does when it
/// loads the component, instead of letting the provider reject every call later.
fn check_parameter_type(key: &str, value: &Value) -> Result<(), String> {
    let (valid, expected) = match key {
        "temperature" | "top_p" | "frequency_penalty" | "presence_penalty" => (value.is_number(), "a number"),
        "max_tokens" | "max_completion_tokens" | "seed" | "n" => (value.is_i64() || value.is_u64(), "an integer"),
        "stop" => (
            value.is_string() || value.as_array().is_some_and(|items| items.iter().all(Value::is_string)),
            "a string or a list of strings",
        ),
        "parallel_tool_calls" => (value.is_boolean(), "true or false"),
        "user" | "reasoning_effort" => (value.is_string(), "a string"),
        "logit_bias" => (value.is_object(), "an object"),
        _ => (true, ""),
    };
    if valid {
        return Ok(());
    }
    Err(format!("invalid type for `{key}`: expected {expected}, got {value}"))
}

/// The config keys of `OpenAIChatCompletionClient` that this client interprets; the request
/// parameters in [`PASSTHROUGH_KEYS`] are copied as they are, and every other key AutoGen
/// dumps is ignored.
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
    /// `stream_options` of streamed requests (default `{"include_usage": true}`, so streamed
    /// calls report usage).
    #[serde(default)]
    pub stream_options: Option<Value>,
}

/// The header that carries the key: OpenAI's bearer token or Azure's `api-key`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum KeyHeader {
    Bearer,
    AzureApiKey,
}

/// A client for the OpenAI Chat Completions API and Azure OpenAI.
#[derive(Clone, Debug)]
pub struct OpenAiClient {
    transport: Transport,
    endpoint: String,
    api_key: Option<Secret>,
    key_header: KeyHeader,
    model: String,
    organization: Option<String>,
    headers: Vec<(String, String)>,
    parameters: Map<String, Value>,
    response_format: Option<JsonOutput>,
    stream_options: Value,
    model_info: ModelInfo,
}

/// The parts of a client that do not depend on the provider's URL scheme.
pub(crate) struct CommonConfig {
    pub(crate) model: String,
    pub(crate) organization: Option<String>,
    pub(crate) timeout: Option<f64>,
    pub(crate) max_retries: Option<u32>,
    pub(crate) model_info: Option<ModelInfo>,
    pub(crate) default_headers: Option<Map<String, Value>>,
    pub(crate) response_format: Option<Value>,
    pub(crate) stream_options: Option<Value>,
}

impl OpenAiClient {
    /// Builds a client from a component `config`, falling back to `env` for the key and host.
    pub fn from_config(config: &Value, env: &ProviderEnv, http: reqwest::Client) -> Result<OpenAiClient, String> {
        let parsed: OpenAiConfig = serde_json::from_value(config.clone()).map_err(|error| error.to_string())?;
        if parsed.model.trim().is_empty() {
            return Err("missing field `model`".to_owned());
        }

        let configured_url = parsed.base_url.as_deref().map(str::trim).filter(|url| !url.is_empty());
        let env_url = env.openai_base_url.as_deref();
        let base_url = normalise_url(configured_url.or(env_url).unwrap_or(OPENAI_DEFAULT_BASE_URL));
        let trusted = env_url.unwrap_or(OPENAI_DEFAULT_BASE_URL);
        let api_key = match parsed.api_key.as_deref().and_then(Secret::new) {
            Some(key) => Some(key),
            None if env_key_may_go_to(&base_url, trusted) => env.openai_api_key.clone(),
            None => None,
        };

        let common = CommonConfig {
            model: parsed.model,
            organization: parsed.organization,
            timeout: parsed.timeout,
            max_retries: parsed.max_retries,
            model_info: parsed.model_info,
            default_headers: parsed.default_headers,
            response_format: parsed.response_format,
            stream_options: parsed.stream_options,
        };
        let endpoint = endpoint_url("base_url", &base_url, "chat/completions")?;
        OpenAiClient::assemble("openai", config, common, endpoint, api_key, KeyHeader::Bearer, http)
    }

    /// Builds a client from parts that `from_config` and the Azure builder resolved.
    pub(crate) fn assemble(
        provider: &'static str,
        config: &Value,
        common: CommonConfig,
        endpoint: String,
        api_key: Option<Secret>,
        key_header: KeyHeader,
        http: reqwest::Client,
    ) -> Result<OpenAiClient, String> {
        let mut parameters = Map::new();
        if let Value::Object(map) = config {
            for key in PASSTHROUGH_KEYS {
                if let Some(value) = map.get(*key).filter(|value| !value.is_null()) {
                    check_parameter_type(key, value)?;
                    parameters.insert((*key).to_owned(), value.clone());
                }
            }
        }
        let headers = common
            .default_headers
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(name, value)| value.as_str().map(|text| (name, text.to_owned())))
            .collect();
        let response_format = match common.response_format.filter(|value| !value.is_null()) {
            Some(value) => schema::parse_response_format(&value)?,
            None => None,
        };
        let stream_options =
            common.stream_options.filter(|value| !value.is_null()).unwrap_or_else(|| json!({"include_usage": true}));

        Ok(OpenAiClient {
            transport: Transport::new(provider, http, common.timeout, common.max_retries)?,
            endpoint,
            api_key,
            key_header,
            model: common.model,
            organization: common.organization,
            headers,
            parameters,
            response_format,
            stream_options,
            model_info: common.model_info.unwrap_or_default(),
        })
    }

    /// Overrides the model name, as a session's `team_metadata.model` does.
    pub fn set_model(&mut self, model: impl Into<String>) {
        self.model = model.into();
    }

    /// Replaces the retry policy, for example to shorten backoffs in tests.
    #[must_use]
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> OpenAiClient {
        self.transport.retry = policy;
        self
    }

    /// Returns the URL requests go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Returns whether an API key will be sent.
    pub fn has_api_key(&self) -> bool {
        self.api_key.is_some()
    }

    /// Returns the format a call must follow: its own, else the component's.
    fn json_output<'a>(&'a self, request: &'a CreateRequest) -> Option<&'a JsonOutput> {
        request.json_output.as_ref().or(self.response_format.as_ref())
    }

    fn request_body(&self, request: &CreateRequest, stream: bool) -> Value {
        let mut body = Map::new();
        body.insert("model".to_owned(), Value::String(self.model.clone()));
        let messages: Vec<Value> = request.messages.iter().flat_map(wire::to_openai_messages).collect();
        body.insert("messages".to_owned(), Value::Array(messages));
        for (key, value) in &self.parameters {
            body.insert(key.clone(), value.clone());
        }

        let response_format = match self.json_output(request) {
            Some(JsonOutput::JsonObject) => Some(json!({"type": "json_object"})),
            Some(JsonOutput::JsonSchema(format)) => Some(json!({
                "type": "json_schema",
                "json_schema": {"name": format.name, "schema": format.schema, "strict": format.strict},
            })),
            None => None,
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
        if stream {
            body.insert("stream".to_owned(), Value::Bool(true));
            body.insert("stream_options".to_owned(), self.stream_options.clone());
        }
        for (key, value) in &request.extra_create_args {
            body.insert(key.clone(), value.clone());
        }
        Value::Object(body)
    }

    fn post(&self, body: &Value) -> reqwest::RequestBuilder {
        let mut builder = self.transport.http.post(&self.endpoint).json(body);
        if let Some(key) = &self.api_key {
            builder = match self.key_header {
                KeyHeader::Bearer => builder.bearer_auth(key.expose()),
                KeyHeader::AzureApiKey => builder.header("api-key", key.expose()),
            };
        }
        if let Some(organization) = &self.organization {
            builder = builder.header("OpenAI-Organization", organization);
        }
        for (name, value) in &self.headers {
            builder = builder.header(name, value);
        }
        builder
    }
}

#[async_trait]
impl ModelClient for OpenAiClient {
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
impl Exchange for OpenAiClient {
    fn transport(&self) -> &Transport {
        &self.transport
    }

    fn model_name(&self) -> &str {
        &self.model
    }

    async fn send_once(&self, body: &Value) -> Result<CreateResult, ModelError> {
        let reply = self.transport.send(self.post(body), &self.model).await?;
        wire::parse_completion(&reply.body)
            .map_err(|message| self.transport.invalid_response(&self.model, reply.status, message))
    }

    async fn stream_once(&self, body: &Value, chunks: &mut dyn ChunkSink) -> Result<CreateResult, ModelError> {
        let response = self.transport.open_stream(self.post(body), &self.model).await?;
        let mut events = SseReader::new(response, self.transport.timeout);
        let mut assembler = ChunkAssembler::default();
        let mut started = false;

        loop {
            let event = match events.next().await {
                Ok(Some(event)) => event,
                Ok(None) if assembler.has_finished() => break,
                Ok(None) => return Err(stream::ended_early(&self.transport, &self.model, started)),
                Err(failure) => return Err(stream::read_error(&self.transport, &self.model, started, failure)),
            };
            let outcome = assembler.apply(&event.data, chunks).map_err(|message| {
                if started {
                    stream::mid_stream(&self.transport, &self.model, message)
                } else {
                    self.transport.invalid_response(&self.model, 200, message)
                }
            })?;
            match outcome {
                ChunkOutcome::Applied => started = true,
                ChunkOutcome::Done => break,
                ChunkOutcome::Error(error) => {
                    let classified = ModelError::from_error_object(None, &error, self.transport.provider, &self.model)
                        .unwrap_or_else(|| stream::mid_stream(&self.transport, &self.model, error.to_string()));
                    return Err(stream::error_event(&self.transport, &self.model, started, classified));
                }
            }
        }
        Ok(assembler.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_key_falls_back_to_env_for_default_host() {
        let env = ProviderEnv { openai_api_key: Secret::new("sk-env"), ..ProviderEnv::default() };
        let config = json!({"model": "gpt-4o-mini", "api_key": "**********"});
        let client = OpenAiClient::from_config(&config, &env, reqwest::Client::new()).unwrap();
        assert_eq!(client.api_key.as_ref().map(Secret::expose), Some("sk-env"));
    }

    #[test]
    fn env_key_withheld_from_foreign_base_url() {
        let env = ProviderEnv { openai_api_key: Secret::new("sk-env"), ..ProviderEnv::default() };
        let config = json!({"model": "m", "base_url": "http://127.0.0.1:1/v1"});
        let client = OpenAiClient::from_config(&config, &env, reqwest::Client::new()).unwrap();
        assert!(client.api_key.is_none());
    }

    #[test]
    fn every_dumped_key_reaches_the_body() {
        let config = json!({
            "model": "gpt-4o", "temperature": 0.2, "top_p": 0.9, "max_tokens": 50, "seed": 7, "stop": ["END"],
            "frequency_penalty": 0.1, "presence_penalty": 0.3, "parallel_tool_calls": false, "user": "u1",
            "reasoning_effort": "low", "response_format": {"type": "json_object"},
            "stream_options": {"include_usage": false}, "timeout": 5, "max_retries": 1,
            "organization": "org-1", "default_headers": {"x-team": "graders"},
        });
        let client = OpenAiClient::from_config(&config, &ProviderEnv::default(), reqwest::Client::new()).unwrap();
        let body = client.request_body(&CreateRequest::default(), true);
        for key in [
            "temperature",
            "top_p",
            "max_tokens",
            "seed",
            "stop",
            "frequency_penalty",
            "presence_penalty",
            "parallel_tool_calls",
            "user",
            "reasoning_effort",
        ] {
            assert_eq!(body[key], config[key], "{key}");
        }
        assert_eq!(body["response_format"], json!({"type": "json_object"}));
        assert_eq!(body["stream_options"], json!({"include_usage": false}));
        assert_eq!(client.transport.retry.max_retries, 1);
        assert_eq!(client.transport.timeout, std::time::Duration::from_secs(5));
    }

    #[test]
    fn invalid_response_format_is_rejected() {
        let config = json!({"model": "m", "response_format": {"type": "yaml"}});
        let error = OpenAiClient::from_config(&config, &ProviderEnv::default(), reqwest::Client::new()).unwrap_err();
        assert!(error.contains("response_format"), "{error}");
    }
}

#[cfg(test)]
mod parameter_tests {
    use serde_json::json;

    #[test]
    fn wrong_parameter_types_are_rejected() {
        for (key, value) in [
            ("temperature", json!("hot")),
            ("max_tokens", json!(1.5)),
            ("stop", json!([1])),
            ("parallel_tool_calls", json!("yes")),
        ] {
            let error = super::check_parameter_type(key, &value).unwrap_err();
            assert!(error.contains(key), "{error}");
        }
        for (key, value) in
            [("temperature", json!(0)), ("temperature", json!(0.7)), ("max_tokens", json!(100)), ("stop", json!("END"))]
        {
            assert!(super::check_parameter_type(key, &value).is_ok(), "{key}: {value}");
        }
    }
}
