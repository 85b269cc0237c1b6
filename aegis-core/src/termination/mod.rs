//! Termination conditions: when a team stops.
//!
//! A team feeds each condition one delta per step: first the task message, then, after every
//! agent turn, that turn's inner events plus its reply. A condition that fires returns the
//! stop reason, with AgentChat's exact wording, because clients match on those strings.

pub(crate) mod builders;
pub mod max_message;
pub mod text_mention;

pub use max_message::{MaxMessageTermination, MaxMessageTerminationConfig};
pub use text_mention::{TextMentionTermination, TextMentionTerminationConfig};

use crate::message::AgentMessage;

/// A condition that decides when a team stops.
pub trait TerminationCondition: Send {
    /// Examines the messages of one step; returns the stop reason if the condition fires.
    fn check(&mut self, delta: &[AgentMessage]) -> Option<String>;

    /// Returns whether the condition has fired and not been reset.
    fn terminated(&self) -> bool;

    /// Clears the condition's state for the next run.
    fn reset(&mut self);
}

