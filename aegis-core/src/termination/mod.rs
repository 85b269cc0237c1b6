//! Termination conditions: when a team stops.
//!
//! A team feeds its condition one delta per step: first the task messages, then, after every
//! agent turn, that turn's inner events plus its reply. A condition that fires returns the
//! stop reason, with AgentChat's exact wording, because clients match on those strings. The
//! team resets the condition when the run ends, so a continued run starts it afresh.
//!
//! Conditions compose with [`AndTermination`] and [`OrTermination`], AgentChat's
//! `AndTerminationCondition` and `OrTerminationCondition`.

pub(crate) mod builders;
pub mod combinator;
pub mod external;
pub mod max_message;
pub mod message_match;
pub mod text_mention;
pub mod timeout;
pub mod token_usage;

pub use combinator::{AndTermination, OrTermination};
pub use external::{ExternalTermination, ExternalTrigger};
pub use max_message::{MaxMessageTermination, MaxMessageTerminationConfig};
pub use message_match::{
    FunctionCallTermination, HandoffTermination, SourceMatchTermination, StopMessageTermination, TextMessageTermination,
};
pub use text_mention::{TextMentionTermination, TextMentionTerminationConfig};
pub use timeout::TimeoutTermination;
pub use token_usage::{TokenUsageTermination, TokenUsageTerminationConfig};

use crate::message::AgentMessage;

/// A condition that decides when a team stops.
pub trait TerminationCondition: Send {
    /// Examines the messages of one step; returns the stop reason if the condition fires.
    /// A condition that has fired returns `None` until it is reset.
    fn check(&mut self, delta: &[AgentMessage]) -> Option<String>;

    /// Returns whether the condition has fired and not been reset.
    fn terminated(&self) -> bool;

    /// Clears the condition's state for the next run.
    fn reset(&mut self);
}
