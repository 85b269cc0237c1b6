//! Model clients: the [`ModelClient`] trait, the LLM message types it takes, and the built-in
//! clients.
//!
//! The trait mirrors AutoGen's `ChatCompletionClient.create`: a list of [`LlmMessage`]s (plus
//! tools and an optional JSON output format) in, one [`CreateResult`] out. It is object-safe
//! and `async-trait` based so a plugin crate can implement it and register a builder for its own
//! `provider` string. Every provider failure is a [`ModelError`] whose kind follows LiteLLM's
//! exception names, because that is the taxonomy Aegis reports in `error_details.type`.

pub mod anthropic;
pub mod azure;
pub(crate) mod builders;
pub mod env;
mod error;
pub mod hosts;
pub mod http;
pub mod ollama;
pub mod openai;
pub mod replay;
pub mod retry;
mod schema;
mod stream;
pub mod stub;
mod transport;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use env::{ANTHROPIC_DEFAULT_BASE_URL, OLLAMA_DEFAULT_HOST, OPENAI_DEFAULT_BASE_URL, ProviderEnv};
pub use error::{ModelError, ModelErrorKind};
pub use hosts::{AllowedModelHosts, HostNotAllowed, InvalidHostPattern};
pub use http::{ProviderHttp, ProviderHttpConfig, ProviderHttpVersion};
pub use retry::RetryPolicy;

use crate::message::RequestUsage;

/// A function call a model asked for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// The provider's call id.
    pub id: String,
    /// JSON-encoded arguments, as the model wrote them (possibly malformed).
    pub arguments: String,
    /// The tool's name.
    pub name: String,
}

/// The result of executing one function call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionExecutionResult {
    /// The result text.
    pub content: String,
    /// The tool's name.
    pub name: String,
    /// The id of the call this result belongs to.
    pub call_id: String,
    /// Whether the call failed.
    #[serde(default)]
    pub is_error: bool,
}

/// The content of an assistant turn: text or function calls.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AssistantContent {
    /// Plain text.
    Text(String),
    /// Function calls.
    FunctionCalls(Vec<FunctionCall>),
}

/// A message of a model prompt, in AutoGen's `LLMMessage` shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
#[non_exhaustive]
pub enum LlmMessage {
    /// The system prompt.
    SystemMessage {
        /// Prompt text.
        content: String,
    },
    /// A message from the user or from another agent.
    UserMessage {
        /// Message text.
        content: String,
        /// The author: `user` or an agent name.
        source: String,
    },
    /// An earlier reply of the model itself.
    AssistantMessage {
        /// Text or function calls.
        content: AssistantContent,
        /// The model's reasoning text, if any.
        thought: Option<String>,
        /// The agent's name.
        source: String,
    },
    /// Results of function calls.
    FunctionExecutionResultMessage {
        /// One result per call.
        content: Vec<FunctionExecutionResult>,
    },
}

/// A tool the model may call, in AutoGen's `ToolSchema` shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolSchema {
    /// Tool name.
    pub name: String,
    /// The tool's purpose, shown to the model.
    #[serde(default)]
    pub description: String,
    /// JSON schema of the arguments.
    #[serde(default)]
    pub parameters: Value,
    /// Whether the provider should enforce the schema strictly.
    #[serde(default)]
    pub strict: bool,
}

/// A JSON schema the reply must follow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JsonSchemaFormat {
    /// Schema name, such as `Grade`.
    pub name: String,
    /// The JSON schema.
    pub schema: Value,
    /// Whether the provider should enforce the schema strictly.
    #[serde(default)]
    pub strict: bool,
}

/// The required format of a reply.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum JsonOutput {
    /// Any JSON object.
    JsonObject,
    /// JSON following a schema.
    JsonSchema(JsonSchemaFormat),
}

/// One model call.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct CreateRequest {
    /// The prompt.
    pub messages: Vec<LlmMessage>,
    /// Tools the model may call.
    pub tools: Vec<ToolSchema>,
    /// `auto`, `none`, `required`, or a tool name; `None` leaves the provider's default.
    pub tool_choice: Option<String>,
    /// Required reply format, if any.
    pub json_output: Option<JsonOutput>,
    /// Extra provider arguments that override the client's defaults for this call.
    pub extra_create_args: Map<String, Value>,
}

impl CreateRequest {
    /// Builds a request from a prompt.
    pub fn new(messages: Vec<LlmMessage>) -> CreateRequest {
        CreateRequest { messages, ..CreateRequest::default() }
    }
}

crate::wire_enum! {
    /// The reason a model stopped, in AutoGen's vocabulary.
    pub enum FinishReason {
        /// A natural end or a stop sequence.
        Stop => "stop",
        /// The token limit was reached.
        Length => "length",
        /// The model asked for function calls.
        FunctionCalls => "function_calls",
        /// The provider filtered the content.
        ContentFilter => "content_filter",
        /// The provider gave no reason.
        Unknown => "unknown",
    }
}

/// The content of a completion: text or function calls.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum CreateContent {
    /// Text.
    Text(String),
    /// Function calls.
    FunctionCalls(Vec<FunctionCall>),
}

/// One completion, in AutoGen's `CreateResult` shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CreateResult {
    /// The reason the model stopped.
    pub finish_reason: FinishReason,
    /// Text or function calls.
    pub content: CreateContent,
    /// Tokens of this call.
    #[serde(default)]
    pub usage: RequestUsage,
    /// Whether the result came from a cache.
    #[serde(default)]
    pub cached: bool,
    /// The model's reasoning text, if any.
    #[serde(default)]
    pub thought: Option<String>,
}

/// A model's capabilities, in AutoGen's `model_info` shape.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ModelInfo {
    /// Whether the model takes images.
    #[serde(default)]
    pub vision: bool,
    /// Whether the model can call functions.
    #[serde(default = "yes")]
    pub function_calling: bool,
    /// Whether the model supports JSON output mode.
    #[serde(default = "yes")]
    pub json_output: bool,
    /// Model family, such as `gpt-4o` or `unknown`.
    #[serde(default = "unknown_family")]
    pub family: String,
    /// Whether the model supports schema-constrained output.
    #[serde(default)]
    pub structured_output: bool,
}

fn yes() -> bool {
    true
}

fn unknown_family() -> String {
    "unknown".to_owned()
}

impl Default for ModelInfo {
    fn default() -> ModelInfo {
        ModelInfo {
            vision: false,
            function_calling: true,
            json_output: true,
            family: unknown_family(),
            structured_output: false,
        }
    }
}

/// A chat completion client.
///
/// Implementations must be cheap to share (`Arc<dyn ModelClient>`), must put a deadline on
/// every request, and must report failures as [`ModelError`]s so runs record them uniformly.
#[async_trait]
pub trait ModelClient: Send + Sync {
    /// Returns the model name sent to the provider, such as `gpt-4o-mini`.
    fn model(&self) -> &str;

    /// Returns the provider family reported in errors and logs, such as `openai`.
    fn provider(&self) -> &str;

    /// Returns what the model can do.
    fn model_info(&self) -> ModelInfo {
        ModelInfo::default()
    }

    /// Sends one request and returns the completion.
    async fn create(&self, request: &CreateRequest) -> Result<CreateResult, ModelError>;

    /// Sends one request, streaming the reply: each text piece goes to `chunks` as it arrives,
    /// and the assembled completion is returned at the end. Clients that cannot stream keep
    /// this default, which makes one `create` call and reports no pieces.
    async fn create_stream(
        &self,
        request: &CreateRequest,
        chunks: &mut dyn ChunkSink,
    ) -> Result<CreateResult, ModelError> {
        let _ = chunks;
        self.create(request).await
    }
}

/// Receives the text pieces of a streamed reply.
pub trait ChunkSink: Send {
    /// Handles one piece of reply text, in order.
    fn on_chunk(&mut self, text: &str);
}
