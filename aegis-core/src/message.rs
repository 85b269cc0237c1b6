//! The messages and events a team produces, in AgentChat's JSON shape.
//!
//! AgentChat serialises every message as `id, source, models_usage, metadata, created_at,
//! type, content` plus fields of its own type (`target` and `context` of a HandoffMessage,
//! `tool_calls` and `results` of a ToolCallSummaryMessage, ...). [`AgentMessage`] keeps that
//! shape: the common fields are typed, the type-specific ones live in `extra` so that a message
//! type this version does not model still round-trips.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::LlmMessage;
use crate::timestamp::Timestamp;

/// Token counts of one model call, or a sum of several.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RequestUsage {
    /// Tokens of the prompt.
    pub prompt_tokens: u64,
    /// Tokens of the completion.
    pub completion_tokens: u64,
}

impl RequestUsage {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: RequestUsage) {
        self.prompt_tokens += other.prompt_tokens;
        self.completion_tokens += other.completion_tokens;
    }
}

crate::wire_enum! {
    /// AgentChat's message and event type names, plus Aegis's `dict`.
    pub enum MessageKind {
        /// A plain text chat message.
        TextMessage => "TextMessage",
        /// A chat message that hands the conversation to another agent.
        HandoffMessage => "HandoffMessage",
        /// A chat message asking the team to stop.
        StopMessage => "StopMessage",
        /// A chat message summarising tool call results.
        ToolCallSummaryMessage => "ToolCallSummaryMessage",
        /// A chat message with text and images.
        MultiModalMessage => "MultiModalMessage",
        /// An event listing the function calls a model asked for.
        ToolCallRequestEvent => "ToolCallRequestEvent",
        /// An event listing the results of executed function calls.
        ToolCallExecutionEvent => "ToolCallExecutionEvent",
        /// An event carrying a model's reasoning text.
        ThoughtEvent => "ThoughtEvent",
        /// An event listing memory contents added to the model context.
        MemoryQueryEvent => "MemoryQueryEvent",
        /// A streamed piece of a model reply.
        ModelClientStreamingChunkEvent => "ModelClientStreamingChunkEvent",
        /// A team event naming the next speakers.
        SelectSpeakerEvent => "SelectSpeakerEvent",
        /// A team event carrying the selector's reasoning.
        SelectorEvent => "SelectorEvent",
        /// Aegis: a reply whose text parsed as a JSON object, stored as that object.
        Dict => "dict",
    }
}

impl MessageKind {
    /// Returns whether this is a chat message (as opposed to an event), as AgentChat splits
    /// them. `StructuredMessage[...]` types, which arrive as `Other`, are chat messages.
    pub fn is_chat_message(&self) -> bool {
        match self {
            MessageKind::TextMessage
            | MessageKind::HandoffMessage
            | MessageKind::StopMessage
            | MessageKind::ToolCallSummaryMessage
            | MessageKind::MultiModalMessage
            | MessageKind::Dict => true,
            other => other.is_structured(),
        }
    }
}

/// One message or event of a team run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AgentMessage {
    /// Unique id of the message.
    pub id: String,
    /// The agent (or `user`) that produced it.
    pub source: String,
    /// Tokens of the model call that produced it, if any.
    pub models_usage: Option<RequestUsage>,
    /// Free-form string metadata.
    #[serde(default)]
    pub metadata: Map<String, Value>,
    /// Creation time.
    pub created_at: Timestamp,
    /// AgentChat's type name.
    #[serde(rename = "type")]
    pub kind: MessageKind,
    /// The content: text, an object, or a list for tool events.
    pub content: Value,
    /// Fields of this message type beyond the common ones.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl AgentMessage {
    /// Creates a message of `kind` from `source` with a fresh id and the current time.
    pub fn new(kind: MessageKind, source: impl Into<String>, content: Value) -> AgentMessage {
        AgentMessage {
            id: uuid::Uuid::now_v7().to_string(),
            source: source.into(),
            models_usage: None,
            metadata: Map::new(),
            created_at: Timestamp::now(),
            kind,
            content,
            extra: Map::new(),
        }
    }

    /// Creates a `TextMessage`.
    pub fn text(source: impl Into<String>, content: impl Into<String>) -> AgentMessage {
        AgentMessage::new(MessageKind::TextMessage, source, Value::String(content.into()))
    }

    /// Sets the token counts of the model call behind this message.
    pub fn with_usage(mut self, usage: RequestUsage) -> AgentMessage {
        self.models_usage = Some(usage);
        self
    }

    /// Returns the message as text, the way AgentChat's `to_text()` renders it for
    /// termination conditions: strings as they are, tool events and speaker selections as
    /// Python's `str()` of their lists, and a StructuredMessage through its `format_string`
    /// (or as compact JSON without one).
    pub fn to_text(&self) -> String {
        match (&self.kind, &self.content) {
            (MessageKind::ToolCallRequestEvent, Value::Array(calls)) => {
                python_list(calls, "FunctionCall", &["id", "arguments", "name"])
            }
            (MessageKind::ToolCallExecutionEvent, Value::Array(results)) => {
                python_list(results, "FunctionExecutionResult", &["content", "name", "call_id", "is_error"])
            }
            (MessageKind::MemoryQueryEvent, Value::Array(memories)) => {
                python_list(memories, "MemoryContent", &["content", "mime_type", "metadata"])
            }
            (kind, content) if kind.is_structured() => self.structured_text(content),
            (_, Value::String(text)) => text.clone(),
            (_, other) => crate::pyrepr::str_value(other),
        }
    }

    /// Returns the message as the model of another agent sees it, AgentChat's
    /// `to_model_message()`: a user message with the text and the author's name.
    pub fn to_model_message(&self) -> LlmMessage {
        LlmMessage::UserMessage { content: self.to_text(), source: self.source.clone() }
    }

    fn structured_text(&self, content: &Value) -> String {
        let format_string = self.extra.get("format_string").and_then(Value::as_str);
        let (Some(template), Value::Object(fields)) = (format_string, content) else {
            // pydantic's `model_dump_json()` is compact JSON.
            return content.to_string();
        };
        let fields: Vec<(&str, &Value)> = fields.iter().map(|(name, value)| (name.as_str(), value)).collect();
        crate::pyrepr::format_named(template, &fields).unwrap_or_else(|_| content.to_string())
    }
}

impl MessageKind {
    /// Returns the kind of a StructuredMessage whose content model is `name`.
    pub fn structured(name: &str) -> MessageKind {
        MessageKind::Other(format!("StructuredMessage[{name}]"))
    }

    /// Returns whether this is a `StructuredMessage[...]`.
    pub fn is_structured(&self) -> bool {
        matches!(self, MessageKind::Other(name) if name.starts_with("StructuredMessage"))
    }
}

/// Renders a list of pydantic models as Python's `str()` of the list does.
fn python_list(items: &[Value], class: &str, fields: &[&str]) -> String {
    let rendered: Vec<String> = items
        .iter()
        .map(|item| {
            let values: Vec<(&str, &Value)> =
                fields.iter().map(|field| (*field, item.get(*field).unwrap_or(&Value::Null))).collect();
            crate::pyrepr::repr_model(class, &values)
        })
        .collect();
    format!("[{}]", rendered.join(", "))
}
