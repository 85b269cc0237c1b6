//! The messages and events a team produces, in AgentChat's JSON shape.
//!
//! AgentChat serialises every message as `id, source, models_usage, metadata, created_at,
//! type, content` plus fields of its own type (`target` and `context` of a HandoffMessage,
//! `tool_calls` and `results` of a ToolCallSummaryMessage, ...). [`AgentMessage`] keeps that
//! shape: the common fields are typed, the type-specific ones live in `extra` so that a message
//! type this version does not model still round-trips.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::timestamp::Timestamp;

/// Token counts of one model call, or a sum of several.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
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
            MessageKind::Other(name) => name.starts_with("StructuredMessage"),
            _ => false,
        }
    }
}

/// One message or event of a team run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
    /// termination conditions and model prompts.
    pub fn to_text(&self) -> String {
        match &self.content {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        }
    }
}
