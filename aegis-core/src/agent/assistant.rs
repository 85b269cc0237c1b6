//! `AssistantAgent`: a model-backed agent with a system message and a chat history.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::agent::{Agent, Response};
use crate::message::{AgentMessage, MessageKind};
use crate::model::{AssistantContent, CreateContent, CreateRequest, LlmMessage, ModelClient};
use crate::run::{RunContext, RunError};

/// The `provider` string AutoGen dumps for this agent.
pub const PROVIDER: &str = "autogen_agentchat.agents.AssistantAgent";

/// AgentChat's system message when a config sets none.
pub const DEFAULT_SYSTEM_MESSAGE: &str =
    "You are a helpful AI assistant. Solve tasks using your tools. Reply with 'TERMINATE' when the task has been completed.";

/// AgentChat's description when a config sets none.
pub const DEFAULT_DESCRIPTION: &str = "An agent that provides assistance with ability to use tools.";

/// The config keys of `AssistantAgent` this version interprets; unknown keys are ignored.
#[derive(Clone, Debug, Deserialize)]
#[non_exhaustive]
pub struct AssistantAgentConfig {
    /// Unique name within the team.
    pub name: String,
    /// What the agent does.
    #[serde(default)]
    pub description: Option<String>,
    /// The system prompt; `null` sends none.
    #[serde(default = "default_system_message")]
    pub system_message: Option<String>,
    /// Whether the model reply is streamed.
    #[serde(default)]
    pub model_client_stream: bool,
    /// Whether a second model call reflects on tool results (AgentChat default: false).
    #[serde(default)]
    pub reflect_on_tool_use: Option<bool>,
    /// Format of a tool call summary (AgentChat default: `{result}`).
    #[serde(default = "default_summary_format")]
    pub tool_call_summary_format: String,
}

fn default_system_message() -> Option<String> {
    Some(DEFAULT_SYSTEM_MESSAGE.to_owned())
}

fn default_summary_format() -> String {
    "{result}".to_owned()
}

/// A model-backed agent.
pub struct AssistantAgent {
    name: String,
    description: String,
    system_message: Option<String>,
    model_client: Arc<dyn ModelClient>,
    history: Vec<LlmMessage>,
}

impl AssistantAgent {
    /// Creates an agent that answers with `model_client`.
    pub fn new(config: AssistantAgentConfig, model_client: Arc<dyn ModelClient>) -> AssistantAgent {
        AssistantAgent {
            name: config.name,
            description: config.description.unwrap_or_else(|| DEFAULT_DESCRIPTION.to_owned()),
            system_message: config.system_message,
            model_client,
            history: Vec::new(),
        }
    }

    fn prompt(&self) -> Vec<LlmMessage> {
        let system = self.system_message.iter().map(|content| LlmMessage::SystemMessage { content: content.clone() });
        system.chain(self.history.iter().cloned()).collect()
    }
}

#[async_trait]
impl Agent for AssistantAgent {
    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> &str {
        &self.description
    }

    async fn on_messages(&mut self, messages: &[AgentMessage], context: &mut RunContext<'_>) -> Result<Response, RunError> {
        for message in messages.iter().filter(|message| message.kind.is_chat_message()) {
            self.history.push(LlmMessage::UserMessage { content: message.to_text(), source: message.source.clone() });
        }

        let request = CreateRequest::new(self.prompt());
        let result = context.call_model(&self.name, self.model_client.as_ref(), &request).await?;

        let text = match &result.content {
            CreateContent::Text(text) => text.clone(),
            // NOTE: tool calls are not executed yet; a reply made of function calls is kept as
            // their JSON text so the run still records what the model asked for.
            CreateContent::FunctionCalls(calls) => serde_json::to_string(calls).unwrap_or_default(),
        };
        self.history.push(LlmMessage::AssistantMessage {
            content: AssistantContent::Text(text.clone()),
            thought: result.thought.clone(),
            source: self.name.clone(),
        });

        let mut inner_messages = Vec::new();
        if let Some(thought) = &result.thought {
            inner_messages.push(AgentMessage::new(MessageKind::ThoughtEvent, &self.name, thought.clone().into()));
        }
        let chat_message = AgentMessage::text(&self.name, text).with_usage(result.usage);
        Ok(Response { chat_message, inner_messages })
    }

    fn save_state(&self) -> Value {
        json!({"type": "AssistantAgentState", "llm_context": {"messages": self.history}})
    }

    fn load_state(&mut self, state: &Value) -> Result<(), RunError> {
        let messages = state["llm_context"]["messages"].clone();
        self.history = serde_json::from_value(messages)
            .map_err(|error| RunError::new("ValueError", format!("invalid AssistantAgent state: {error}")))?;
        Ok(())
    }
}
