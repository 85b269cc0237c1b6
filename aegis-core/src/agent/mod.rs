//! Agents: the participants of a team.
//!
//! An [`Agent`] receives the messages other participants published since its last turn and
//! returns a [`Response`]: one chat message for the team plus the inner events (tool calls,
//! thoughts, ...) that led to it. This is AgentChat's `on_messages` contract, so teams can
//! treat built-in agents and a Rust user's own agents alike.

pub mod assistant;
pub(crate) mod builders;
pub mod context;
pub mod handoff;
pub mod memory;
pub mod structured;

use async_trait::async_trait;
use serde_json::Value;

use crate::message::AgentMessage;
use crate::run::{RunContext, RunError};

pub use assistant::{AssistantAgent, AssistantAgentConfig};
pub use context::{ContextWindow, ModelContext};
pub use handoff::Handoff;
pub use memory::ListMemory;
pub use structured::StructuredOutput;

/// Returns whether `name` is a Python identifier, as `str.isidentifier()` judges it: a letter
/// (any script) or `_`, then letters, digits or `_`. AgentChat requires this of agent and
/// handoff names because it turns them into tool and variable names. Keywords such as `class`
/// pass, as they do in Python.
pub(crate) fn is_python_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|first| first.is_alphabetic() || first == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
}

/// What an agent produced in one turn.
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    /// The message published to the team.
    pub chat_message: AgentMessage,
    /// Events that happened on the way, in order; they are recorded but not published.
    pub inner_messages: Vec<AgentMessage>,
}

/// A participant of a team.
#[async_trait]
pub trait Agent: Send {
    /// Returns the agent's unique name within its team.
    fn name(&self) -> &str;

    /// Returns what the agent does, as shown to selectors and other agents.
    fn description(&self) -> &str;

    /// Handles the messages published since the agent's last turn and takes a turn.
    async fn on_messages(
        &mut self,
        messages: &[AgentMessage],
        context: &mut RunContext<'_>,
    ) -> Result<Response, RunError>;

    /// Returns the agent's state (its model context, for instance) as JSON, so a later run can
    /// continue from it with [`Agent::load_state`]. Stateless agents keep the default, `null`.
    fn save_state(&self) -> Value {
        Value::Null
    }

    /// Restores a state [`Agent::save_state`] returned.
    fn load_state(&mut self, state: &Value) -> Result<(), RunError> {
        let _ = state;
        Ok(())
    }
}
