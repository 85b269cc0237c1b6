//! `AssistantAgent`: a model-backed agent with a system message, a model context, optional
//! memory, tools, handoffs and structured output.
//!
//! One turn follows AgentChat 0.7's `on_messages_stream` step by step, because the prompts
//! and the events it produces are observable: incoming chat messages join the model context
//! (a handoff's context first), each memory adds its entries, then the model is called. Text
//! ends the turn. Function calls are executed and answered with a ToolCallRequestEvent and a
//! ToolCallExecutionEvent; a handoff call ends the turn with a HandoffMessage; otherwise the
//! model is called again up to `max_tool_iterations` times, and the turn ends with a
//! reflection call (`reflect_on_tool_use`) or a ToolCallSummaryMessage.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::agent::context::ModelContext;
use crate::agent::handoff::Handoff;
use crate::agent::memory::ListMemory;
use crate::agent::structured::StructuredOutput;
use crate::agent::{Agent, Response};
use crate::message::{AgentMessage, MessageKind};
use crate::model::{
    AssistantContent, CreateContent, CreateRequest, CreateResult, FunctionCall, FunctionExecutionResult, LlmMessage,
    ModelClient, ToolSchema,
};
use crate::run::{ChunkEvents, RunContext, RunError};
use crate::tool::Workbench;

/// The `provider` string AutoGen dumps for this agent.
pub const PROVIDER: &str = "autogen_agentchat.agents.AssistantAgent";

/// AgentChat's system message when a config sets none (0.5 and later).
pub const DEFAULT_SYSTEM_MESSAGE: &str = "You are a helpful AI assistant. Solve tasks using your tools. Reply with TERMINATE when the task has been completed.";

/// AgentChat's description when a config sets none.
pub const DEFAULT_DESCRIPTION: &str = "An agent that provides assistance with ability to use tools.";

/// The scalar config keys of `AssistantAgent`; nested components are built separately and
/// unknown keys are ignored, as AgentChat does.
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
    /// Whether a second model call reflects on tool results. AgentChat's default: true with
    /// structured output, false otherwise.
    #[serde(default)]
    pub reflect_on_tool_use: Option<bool>,
    /// Format of each line of a tool call summary, with `{tool_name}`, `{arguments}`,
    /// `{result}` and `{is_error}` (AgentChat default: `{result}`).
    #[serde(default = "default_summary_format")]
    pub tool_call_summary_format: String,
    /// How many rounds of tool calls one turn may make (AgentChat default: 1).
    #[serde(default = "default_max_tool_iterations")]
    pub max_tool_iterations: u32,
}

fn default_system_message() -> Option<String> {
    Some(DEFAULT_SYSTEM_MESSAGE.to_owned())
}

fn default_summary_format() -> String {
    "{result}".to_owned()
}

fn default_max_tool_iterations() -> u32 {
    1
}

impl AssistantAgentConfig {
    /// Creates a config with AgentChat's defaults for an agent called `name`.
    pub fn named(name: impl Into<String>) -> AssistantAgentConfig {
        AssistantAgentConfig {
            name: name.into(),
            description: None,
            system_message: default_system_message(),
            model_client_stream: false,
            reflect_on_tool_use: None,
            tool_call_summary_format: default_summary_format(),
            max_tool_iterations: default_max_tool_iterations(),
        }
    }
}

/// A model-backed agent.
pub struct AssistantAgent {
    name: String,
    description: String,
    system_message: Option<String>,
    model_client: Arc<dyn ModelClient>,
    model_client_stream: bool,
    reflect_on_tool_use: Option<bool>,
    tool_call_summary_format: String,
    max_tool_iterations: u32,
    workbenches: Vec<Workbench>,
    handoffs: Vec<Handoff>,
    context: ModelContext,
    memory: Vec<ListMemory>,
    output: Option<StructuredOutput>,
}

impl AssistantAgent {
    /// Creates an agent that replies through `model_client`, with an unbounded context and no
    /// tools, handoffs, memory or structured output.
    pub fn new(config: AssistantAgentConfig, model_client: Arc<dyn ModelClient>) -> AssistantAgent {
        AssistantAgent {
            name: config.name,
            description: config.description.unwrap_or_else(|| DEFAULT_DESCRIPTION.to_owned()),
            system_message: config.system_message,
            model_client,
            model_client_stream: config.model_client_stream,
            reflect_on_tool_use: config.reflect_on_tool_use,
            tool_call_summary_format: config.tool_call_summary_format,
            max_tool_iterations: config.max_tool_iterations.max(1),
            workbenches: Vec::new(),
            handoffs: Vec::new(),
            context: ModelContext::default(),
            memory: Vec::new(),
            output: None,
        }
    }

    /// Adds workbenches whose tools the model may call.
    pub fn with_workbenches(mut self, workbenches: Vec<Workbench>) -> AssistantAgent {
        self.workbenches = workbenches;
        self
    }

    /// Sets the agent's handoffs.
    pub fn with_handoffs(mut self, handoffs: Vec<Handoff>) -> AssistantAgent {
        self.handoffs = handoffs;
        self
    }

    /// Replaces the model context.
    pub fn with_model_context(mut self, context: ModelContext) -> AssistantAgent {
        self.context = context;
        self
    }

    /// Sets the memories queried before every reply.
    pub fn with_memory(mut self, memory: Vec<ListMemory>) -> AssistantAgent {
        self.memory = memory;
        self
    }

    /// Makes replies structured: JSON validated against `output`, published as
    /// `StructuredMessage[<name>]`.
    pub fn with_structured_output(mut self, output: StructuredOutput) -> AssistantAgent {
        self.output = Some(output);
        self
    }

    fn reflects(&self) -> bool {
        self.reflect_on_tool_use.unwrap_or(self.output.is_some())
    }

    fn prompt(&self) -> Vec<LlmMessage> {
        let system = self.system_message.iter().map(|content| LlmMessage::SystemMessage { content: content.clone() });
        system.chain(self.context.view()).collect()
    }

    fn tool_schemas(&self) -> Vec<ToolSchema> {
        let tools = self.workbenches.iter().flat_map(Workbench::schemas);
        tools.chain(self.handoffs.iter().map(Handoff::schema)).collect()
    }

    /// Adds an incoming chat message to the model context: a handoff's context first, then
    /// the message as the model sees it.
    fn remember_incoming(&mut self, message: &AgentMessage) {
        if message.kind == MessageKind::HandoffMessage {
            let carried = message.extra.get("context").cloned().unwrap_or(Value::Null);
            let carried: Vec<LlmMessage> = serde_json::from_value(carried).unwrap_or_default();
            carried.into_iter().for_each(|llm_message| self.context.add(llm_message));
        }
        self.context.add(message.to_model_message());
    }

    fn remember_reply(&mut self, result: &CreateResult) {
        let content = match &result.content {
            CreateContent::Text(text) => AssistantContent::Text(text.clone()),
            CreateContent::FunctionCalls(calls) => AssistantContent::FunctionCalls(calls.clone()),
        };
        self.context.add(LlmMessage::AssistantMessage {
            content,
            thought: result.thought.clone(),
            source: self.name.clone(),
        });
    }

    /// Calls the model on the current prompt, streaming when configured.
    async fn infer(
        &self,
        request: CreateRequest,
        message_id: &str,
        context: &mut RunContext<'_>,
    ) -> Result<CreateResult, RunError> {
        let client = self.model_client.as_ref();
        if !self.model_client_stream {
            return context.call_model(&self.name, client, &request).await;
        }
        let chunks = ChunkEvents { source: &self.name, full_message_id: Some(message_id), publish: true };
        context.call_model_stream(&self.name, client, &request, chunks).await
    }

    fn request(&self, with_tools: bool) -> CreateRequest {
        let mut request = CreateRequest::new(self.prompt());
        if with_tools {
            request.tools = self.tool_schemas();
        }
        request.json_output = self.output.as_ref().map(StructuredOutput::json_output);
        request
    }

    /// Builds the final chat message for a text reply.
    fn final_reply(&self, text: &str, result: &CreateResult, message_id: String) -> Result<AgentMessage, RunError> {
        let mut message = match &self.output {
            Some(output) => output.message(&self.name, text)?,
            None => AgentMessage::text(&self.name, text),
        };
        message.id = message_id;
        Ok(message.with_usage(result.usage))
    }

    /// Executes one call: a handoff returns its message, a workbench tool runs, and a call
    /// that no handoff or workbench has gets an error result, as in AgentChat.
    async fn execute(&self, call: &FunctionCall) -> FunctionExecutionResult {
        let result = |content: String, is_error: bool| FunctionExecutionResult {
            content,
            name: call.name.clone(),
            call_id: call.id.clone(),
            is_error,
        };
        if let Some(problem) = crate::pyjson::decode_error(&call.arguments) {
            return result(format!("Error: {problem}"), true);
        }
        if let Some(handoff) = self.handoffs.iter().find(|handoff| handoff.name == call.name) {
            return result(handoff.message.clone(), false);
        }
        let arguments: Value = serde_json::from_str(&call.arguments).unwrap_or(Value::Null);
        for workbench in self.workbenches.iter().filter(|workbench| workbench.has(&call.name)) {
            if let Some(output) = workbench.call(&call.name, arguments.clone()).await {
                return result(output.content, output.is_error);
            }
        }
        result(format!("Error: tool '{}' not found in any workbench", call.name), true)
    }

    /// Returns the HandoffMessage when the calls include a handoff: the first one wins and
    /// the other calls travel with it as context for the target.
    fn handoff_reply(
        &self,
        result: &CreateResult,
        executed: &[(FunctionCall, FunctionExecutionResult)],
    ) -> Option<AgentMessage> {
        let CreateContent::FunctionCalls(calls) = &result.content else {
            return None;
        };
        let selected = calls.iter().find_map(|call| self.handoffs.iter().find(|handoff| handoff.name == call.name))?;

        let is_handoff = |name: &str| self.handoffs.iter().any(|handoff| handoff.name == name);
        let (others, other_results): (Vec<FunctionCall>, Vec<FunctionExecutionResult>) =
            executed.iter().filter(|(call, _)| !is_handoff(&call.name)).cloned().unzip();
        let content = executed
            .iter()
            .find(|(call, _)| call.name == selected.name)
            .map_or_else(|| selected.message.clone(), |(_, result)| result.content.clone());

        let mut carried = Vec::new();
        if !others.is_empty() {
            carried.push(LlmMessage::AssistantMessage {
                content: AssistantContent::FunctionCalls(others),
                thought: result.thought.clone(),
                source: self.name.clone(),
            });
            carried.push(LlmMessage::FunctionExecutionResultMessage { content: other_results });
        } else if let Some(thought) = &result.thought {
            carried.push(LlmMessage::AssistantMessage {
                content: AssistantContent::Text(thought.clone()),
                thought: None,
                source: self.name.clone(),
            });
        }

        let mut message = AgentMessage::new(MessageKind::HandoffMessage, &self.name, Value::String(content));
        message.extra.insert("target".to_owned(), Value::String(selected.target.clone()));
        message.extra.insert("context".to_owned(), serde_json::to_value(carried).unwrap_or_else(|_| json!([])));
        Some(message)
    }

    /// Builds the ToolCallSummaryMessage of the non-handoff calls.
    fn summary(&self, executed: &[(FunctionCall, FunctionExecutionResult)]) -> Result<AgentMessage, RunError> {
        let normal: Vec<&(FunctionCall, FunctionExecutionResult)> = executed
            .iter()
            .filter(|(call, _)| !self.handoffs.iter().any(|handoff| handoff.name == call.name))
            .collect();
        let mut lines = Vec::with_capacity(normal.len());
        for (call, result) in &normal {
            let fields = [
                ("tool_name", &Value::String(call.name.clone())),
                ("arguments", &Value::String(call.arguments.clone())),
                ("result", &Value::String(result.content.clone())),
                ("is_error", &Value::Bool(result.is_error)),
            ];
            let line = crate::pyrepr::format_named(&self.tool_call_summary_format, &fields)
                .map_err(|error| RunError::new(error.error_type, error.message))?;
            lines.push(line);
        }

        let (calls, results): (Vec<FunctionCall>, Vec<FunctionExecutionResult>) = normal.into_iter().cloned().unzip();
        let mut message =
            AgentMessage::new(MessageKind::ToolCallSummaryMessage, &self.name, Value::String(lines.join("\n")));
        message.extra.insert("tool_calls".to_owned(), serde_json::to_value(calls).unwrap_or_default());
        message.extra.insert("results".to_owned(), serde_json::to_value(results).unwrap_or_default());
        Ok(message)
    }

    /// Makes the reflection call after tool use and builds its reply.
    async fn reflect(
        &mut self,
        inner: &mut Vec<AgentMessage>,
        context: &mut RunContext<'_>,
    ) -> Result<AgentMessage, RunError> {
        let message_id = uuid::Uuid::now_v7().to_string();
        let mut request = self.request(false);
        request.tool_choice = Some("none".to_owned());
        let result = self.infer(request, &message_id, context).await?;
        let CreateContent::Text(text) = &result.content else {
            return Err(RunError::new("RuntimeError", "Reflect on tool use produced no valid text response."));
        };
        if let Some(thought) = &result.thought {
            inner.push(AgentMessage::new(MessageKind::ThoughtEvent, &self.name, Value::String(thought.clone())));
        }
        self.remember_reply(&result);
        self.final_reply(text, &result, message_id)
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

    async fn on_messages(
        &mut self,
        messages: &[AgentMessage],
        context: &mut RunContext<'_>,
    ) -> Result<Response, RunError> {
        for message in messages.iter().filter(|message| message.kind.is_chat_message()) {
            self.remember_incoming(message);
        }

        let mut inner = Vec::new();
        for memory in &self.memory {
            if let Some(entries) = memory.update_context(&mut self.context) {
                inner.push(AgentMessage::new(MessageKind::MemoryQueryEvent, &self.name, Value::Array(entries)));
            }
        }

        let mut message_id = uuid::Uuid::now_v7().to_string();
        let mut result = self.infer(self.request(true), &message_id, context).await?;
        let mut executed = Vec::new();
        for iteration in 0..self.max_tool_iterations {
            if let Some(thought) = &result.thought {
                let mut event =
                    AgentMessage::new(MessageKind::ThoughtEvent, &self.name, Value::String(thought.clone()));
                event.id = std::mem::replace(&mut message_id, uuid::Uuid::now_v7().to_string());
                inner.push(event);
            }
            self.remember_reply(&result);

            let calls = match &result.content {
                CreateContent::Text(text) => {
                    let chat_message = self.final_reply(text, &result, message_id)?;
                    return Ok(Response { chat_message, inner_messages: inner });
                }
                CreateContent::FunctionCalls(calls) => calls.clone(),
            };

            let request_event = AgentMessage::new(
                MessageKind::ToolCallRequestEvent,
                &self.name,
                serde_json::to_value(&calls).unwrap_or_default(),
            );
            inner.push(request_event.with_usage(result.usage));
            let results = futures::future::join_all(calls.iter().map(|call| self.execute(call))).await;
            inner.push(AgentMessage::new(
                MessageKind::ToolCallExecutionEvent,
                &self.name,
                serde_json::to_value(&results).unwrap_or_default(),
            ));
            self.context.add(LlmMessage::FunctionExecutionResultMessage { content: results.clone() });
            executed = calls.into_iter().zip(results).collect();

            if let Some(chat_message) = self.handoff_reply(&result, &executed) {
                return Ok(Response { chat_message, inner_messages: inner });
            }
            if iteration + 1 == self.max_tool_iterations {
                break;
            }
            result = self.infer(self.request(true), &message_id, context).await?;
        }

        let chat_message =
            if self.reflects() { self.reflect(&mut inner, context).await? } else { self.summary(&executed)? };
        Ok(Response { chat_message, inner_messages: inner })
    }

    fn save_state(&self) -> Value {
        json!({"type": "AssistantAgentState", "llm_context": self.context.save()})
    }

    fn load_state(&mut self, state: &Value) -> Result<(), RunError> {
        self.context
            .load(&state["llm_context"])
            .map_err(|error| RunError::new("ValueError", format!("invalid AssistantAgent state: {error}")))
    }
}
