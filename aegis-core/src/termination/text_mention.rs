//! `TextMentionTermination`: stop when a message mentions a text.

use serde::Deserialize;

use crate::message::AgentMessage;
use crate::termination::TerminationCondition;

/// The `provider` string AutoGen dumps for this condition.
pub const PROVIDER: &str = "autogen_agentchat.conditions.TextMentionTermination";

/// Config of `TextMentionTermination`.
#[derive(Clone, Debug, Deserialize)]
#[non_exhaustive]
pub struct TextMentionTerminationConfig {
    /// The text to look for, case-sensitively, as a substring.
    pub text: String,
    /// Only messages from these sources count; `null` means every source.
    #[serde(default)]
    pub sources: Option<Vec<String>>,
}

/// Stops the team when the text of a message, events included, contains `text`.
#[derive(Clone, Debug)]
pub struct TextMentionTermination {
    config: TextMentionTerminationConfig,
    terminated: bool,
}

impl TextMentionTermination {
    /// Creates the condition.
    pub fn new(config: TextMentionTerminationConfig) -> TextMentionTermination {
        TextMentionTermination { config, terminated: false }
    }
}

impl TerminationCondition for TextMentionTermination {
    fn check(&mut self, delta: &[AgentMessage]) -> Option<String> {
        if self.terminated {
            return None;
        }
        let from_source = |message: &AgentMessage| {
            self.config.sources.as_ref().is_none_or(|sources| sources.contains(&message.source))
        };
        let mentioned = delta
            .iter()
            .filter(|message| from_source(message))
            .any(|message| message.to_text().contains(&self.config.text));
        if !mentioned {
            return None;
        }
        self.terminated = true;
        Some(format!("Text '{}' mentioned", self.config.text))
    }

    fn terminated(&self) -> bool {
        self.terminated
    }

    fn reset(&mut self) {
        self.terminated = false;
    }
}
