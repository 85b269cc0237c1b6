//! `MaxMessageTermination`: stop after a number of messages.

use serde::Deserialize;

use crate::message::AgentMessage;
use crate::termination::TerminationCondition;

/// The `provider` string AutoGen dumps for this condition.
pub const PROVIDER: &str = "autogen_agentchat.conditions.MaxMessageTermination";

/// Config of `MaxMessageTermination`.
#[derive(Clone, Debug, Deserialize)]
#[non_exhaustive]
pub struct MaxMessageTerminationConfig {
    /// Number of messages after which the team stops; the task message counts.
    pub max_messages: u64,
    /// Whether events (tool calls, thoughts, ...) count as well as chat messages.
    #[serde(default)]
    pub include_agent_event: bool,
}

/// Stops the team after `max_messages` messages.
#[derive(Clone, Debug)]
pub struct MaxMessageTermination {
    config: MaxMessageTerminationConfig,
    count: u64,
}

impl MaxMessageTermination {
    /// Creates the condition.
    pub fn new(config: MaxMessageTerminationConfig) -> MaxMessageTermination {
        MaxMessageTermination { config, count: 0 }
    }
}

impl TerminationCondition for MaxMessageTermination {
    fn check(&mut self, delta: &[AgentMessage]) -> Option<String> {
        if self.terminated() {
            return None;
        }
        let counted =
            delta.iter().filter(|message| self.config.include_agent_event || message.kind.is_chat_message()).count()
                as u64;
        self.count += counted;
        if !self.terminated() {
            return None;
        }
        Some(format!(
            "Maximum number of messages {} reached, current message count: {}",
            self.config.max_messages, self.count
        ))
    }

    fn terminated(&self) -> bool {
        self.count >= self.config.max_messages
    }

    fn reset(&mut self) {
        self.count = 0;
    }
}
