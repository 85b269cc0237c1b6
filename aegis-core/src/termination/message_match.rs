//! Conditions that fire on one message of a given kind or source: `StopMessageTermination`,
//! `HandoffTermination`, `SourceMatchTermination`, `TextMessageTermination` and
//! `FunctionCallTermination`.
//!
//! They share one shape: scan the delta in order, fire on the first message that matches, stay
//! fired until reset. [`MatchTermination`] holds that shape; each condition is a matcher that
//! returns the stop reason for a matching message.

use serde_json::Value;

use crate::message::{AgentMessage, MessageKind};
use crate::termination::TerminationCondition;

/// The `provider` strings AutoGen dumps for these conditions.
pub mod providers {
    /// `StopMessageTermination`.
    pub const STOP_MESSAGE: &str = "autogen_agentchat.conditions.StopMessageTermination";
    /// `HandoffTermination`.
    pub const HANDOFF: &str = "autogen_agentchat.conditions.HandoffTermination";
    /// `SourceMatchTermination`.
    pub const SOURCE_MATCH: &str = "autogen_agentchat.conditions.SourceMatchTermination";
    /// `TextMessageTermination`.
    pub const TEXT_MESSAGE: &str = "autogen_agentchat.conditions.TextMessageTermination";
    /// `FunctionCallTermination`.
    pub const FUNCTION_CALL: &str = "autogen_agentchat.conditions.FunctionCallTermination";
}

/// Returns the stop reason when a message matches.
pub trait MessageMatcher: Send {
    /// Returns the stop reason if `message` ends the run.
    fn matches(&self, message: &AgentMessage) -> Option<String>;
}

/// A condition that fires on the first message its matcher accepts.
#[derive(Clone, Debug)]
pub struct MatchTermination<M> {
    matcher: M,
    terminated: bool,
}

impl<M: MessageMatcher> TerminationCondition for MatchTermination<M> {
    fn check(&mut self, delta: &[AgentMessage]) -> Option<String> {
        if self.terminated {
            return None;
        }
        let reason = delta.iter().find_map(|message| self.matcher.matches(message))?;
        self.terminated = true;
        Some(reason)
    }

    fn terminated(&self) -> bool {
        self.terminated
    }

    fn reset(&mut self) {
        self.terminated = false;
    }
}

impl<M> MatchTermination<M> {
    fn with(matcher: M) -> MatchTermination<M> {
        MatchTermination { matcher, terminated: false }
    }
}

/// Fires on a `StopMessage`.
#[derive(Clone, Debug, Default)]
pub struct StopMessageMatcher;

/// Stops the team when an agent sends a `StopMessage`.
pub type StopMessageTermination = MatchTermination<StopMessageMatcher>;

impl StopMessageTermination {
    /// Creates the condition.
    pub fn new() -> StopMessageTermination {
        MatchTermination::with(StopMessageMatcher)
    }
}

impl Default for StopMessageTermination {
    fn default() -> Self {
        StopMessageTermination::new()
    }
}

impl MessageMatcher for StopMessageMatcher {
    fn matches(&self, message: &AgentMessage) -> Option<String> {
        (message.kind == MessageKind::StopMessage).then(|| "Stop message received".to_owned())
    }
}

/// Fires on a `HandoffMessage` to a target.
#[derive(Clone, Debug)]
pub struct HandoffMatcher {
    target: String,
}

/// Stops the team when an agent hands off to `target` (often `user`, for a human in the loop).
pub type HandoffTermination = MatchTermination<HandoffMatcher>;

impl HandoffTermination {
    /// Creates the condition.
    pub fn new(target: impl Into<String>) -> HandoffTermination {
        MatchTermination::with(HandoffMatcher { target: target.into() })
    }
}

impl MessageMatcher for HandoffMatcher {
    fn matches(&self, message: &AgentMessage) -> Option<String> {
        let to_target = message.kind == MessageKind::HandoffMessage
            && message.extra.get("target").and_then(Value::as_str) == Some(&self.target);
        to_target.then(|| format!("Handoff to {} from {} detected.", self.target, message.source))
    }
}

/// Fires on any message from one of a list of sources.
#[derive(Clone, Debug)]
pub struct SourceMatcher {
    sources: Vec<String>,
}

/// Stops the team when one of `sources` produces a message (events included).
pub type SourceMatchTermination = MatchTermination<SourceMatcher>;

impl SourceMatchTermination {
    /// Creates the condition.
    pub fn new(sources: Vec<String>) -> SourceMatchTermination {
        MatchTermination::with(SourceMatcher { sources })
    }
}

impl MessageMatcher for SourceMatcher {
    fn matches(&self, message: &AgentMessage) -> Option<String> {
        self.sources.contains(&message.source).then(|| format!("'{}' answered", message.source))
    }
}

/// Fires on a `TextMessage`, optionally from one source.
#[derive(Clone, Debug)]
pub struct TextMessageMatcher {
    source: Option<String>,
}

/// Stops the team on a `TextMessage` (from `source`, or from anyone when `None`). Other chat
/// messages, such as a ToolCallSummaryMessage, do not count.
pub type TextMessageTermination = MatchTermination<TextMessageMatcher>;

impl TextMessageTermination {
    /// Creates the condition.
    pub fn new(source: Option<String>) -> TextMessageTermination {
        MatchTermination::with(TextMessageMatcher { source })
    }
}

impl MessageMatcher for TextMessageMatcher {
    fn matches(&self, message: &AgentMessage) -> Option<String> {
        let from_source = self.source.as_ref().is_none_or(|source| *source == message.source);
        (message.kind == MessageKind::TextMessage && from_source)
            .then(|| format!("Text message received from '{}'", message.source))
    }
}

/// Fires on the execution of a named function.
#[derive(Clone, Debug)]
pub struct FunctionCallMatcher {
    function_name: String,
}

/// Stops the team when a ToolCallExecutionEvent reports a call of `function_name`, whether
/// the call succeeded or not.
pub type FunctionCallTermination = MatchTermination<FunctionCallMatcher>;

impl FunctionCallTermination {
    /// Creates the condition.
    pub fn new(function_name: impl Into<String>) -> FunctionCallTermination {
        MatchTermination::with(FunctionCallMatcher { function_name: function_name.into() })
    }
}

impl MessageMatcher for FunctionCallMatcher {
    fn matches(&self, message: &AgentMessage) -> Option<String> {
        if message.kind != MessageKind::ToolCallExecutionEvent {
            return None;
        }
        let results = message.content.as_array()?;
        let executed =
            results.iter().any(|result| result.get("name").and_then(Value::as_str) == Some(&self.function_name));
        executed.then(|| format!("Function '{}' was executed.", self.function_name))
    }
}
