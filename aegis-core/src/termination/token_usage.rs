//! `TokenUsageTermination`: stop once the models' reported token counts reach a limit.

use serde::Deserialize;

use crate::message::AgentMessage;
use crate::termination::TerminationCondition;

/// The `provider` string AutoGen dumps for this condition.
pub const PROVIDER: &str = "autogen_agentchat.conditions.TokenUsageTermination";

/// Config of `TokenUsageTermination`; at least one limit must be set.
///
/// AgentChat 0.7.5 requires all three keys in JSON, but its own `dump_component()` leaves
/// out the unset ones; Aegis accepts any subset, so such a dump loads.
#[derive(Clone, Debug, Default, Deserialize)]
#[non_exhaustive]
pub struct TokenUsageTerminationConfig {
    /// Limit on prompt plus completion tokens.
    #[serde(default)]
    pub max_total_token: Option<u64>,
    /// Limit on prompt tokens.
    #[serde(default)]
    pub max_prompt_token: Option<u64>,
    /// Limit on completion tokens.
    #[serde(default)]
    pub max_completion_token: Option<u64>,
}

/// Sums `models_usage` of the messages it sees and fires when any limit is reached.
#[derive(Clone, Debug)]
pub struct TokenUsageTermination {
    config: TokenUsageTerminationConfig,
    prompt_tokens: u64,
    completion_tokens: u64,
}

impl TokenUsageTermination {
    /// Creates the condition.
    pub fn new(config: TokenUsageTerminationConfig) -> TokenUsageTermination {
        TokenUsageTermination { config, prompt_tokens: 0, completion_tokens: 0 }
    }

    fn total(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

impl TerminationCondition for TokenUsageTermination {
    fn check(&mut self, delta: &[AgentMessage]) -> Option<String> {
        if self.terminated() {
            return None;
        }
        for usage in delta.iter().filter_map(|message| message.models_usage) {
            self.prompt_tokens += usage.prompt_tokens;
            self.completion_tokens += usage.completion_tokens;
        }
        if !self.terminated() {
            return None;
        }
        Some(format!(
            "Token usage limit reached, total token count: {}, prompt token count: {}, completion token count: {}.",
            self.total(),
            self.prompt_tokens,
            self.completion_tokens
        ))
    }

    fn terminated(&self) -> bool {
        let reached = |limit: Option<u64>, count: u64| limit.is_some_and(|limit| count >= limit);
        reached(self.config.max_total_token, self.total())
            || reached(self.config.max_prompt_token, self.prompt_tokens)
            || reached(self.config.max_completion_token, self.completion_tokens)
    }

    fn reset(&mut self) {
        self.prompt_tokens = 0;
        self.completion_tokens = 0;
    }
}
