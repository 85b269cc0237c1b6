//! Teams: how participants take turns until a termination condition fires.
//!
//! A [`Team`] runs from a task message to a [`TeamOutcome`], publishing every message through
//! the [`RunContext`]. The task message itself is not published (the API's `team_result`
//! leaves it out) but it is the termination condition's first input, as in AgentChat.

pub(crate) mod builders;
pub mod round_robin;
pub mod single;

use async_trait::async_trait;
use serde_json::Value;

use crate::message::AgentMessage;
use crate::run::{RunContext, RunError};

pub use round_robin::{RoundRobinGroupChat, RoundRobinGroupChatConfig};
pub use single::SingleAgentTeam;

/// How a team run ended.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TeamOutcome {
    /// Why the team stopped; `None` when it stopped without a condition firing.
    pub stop_reason: Option<String>,
}

/// A group of agents that works on a task.
#[async_trait]
pub trait Team: Send {
    /// Runs the team on `task` until it stops.
    async fn run(&mut self, task: AgentMessage, context: &mut RunContext<'_>) -> Result<TeamOutcome, RunError>;

    /// Returns the team's state (every participant's state plus the team's own), so a later
    /// run can continue the conversation with [`Team::load_state`], as AgentChat's
    /// `save_state` allows.
    fn save_state(&self) -> Value;

    /// Restores a state [`Team::save_state`] returned.
    fn load_state(&mut self, state: &Value) -> Result<(), RunError>;
}

