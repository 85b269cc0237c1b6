//! Teams: how participants take turns until a termination condition fires.
//!
//! A [`Team`] runs from task messages to a [`TeamOutcome`], publishing every message through
//! the [`RunContext`]. The task messages themselves are not published (the API's
//! `team_result` leaves them out) but they are the termination condition's first input, as in
//! AgentChat. The group chats ([`RoundRobinGroupChat`], [`SelectorGroupChat`], [`Swarm`])
//! share one manager loop, [`GroupChat`], and differ only in how they pick the next speaker.

pub(crate) mod builders;
pub mod group_chat;
pub mod round_robin;
pub mod selector;
pub mod single;
pub mod swarm;

use async_trait::async_trait;
use serde_json::Value;

use crate::message::AgentMessage;
use crate::run::{RunContext, RunError};

pub use group_chat::{GroupChat, GroupChatConfig, Participant, SpeakerSelection};
pub use round_robin::{RoundRobin, RoundRobinGroupChat, RoundRobinGroupChatConfig};
pub use selector::{Selector, SelectorConfig, SelectorGroupChat};
pub use single::SingleAgentTeam;
pub use swarm::{Swarm, SwarmSelection};

/// How a team run ended.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TeamOutcome {
    /// Why the team stopped; `None` when it stopped without a condition firing.
    pub stop_reason: Option<String>,
}

/// AgentChat's description of a team whose config sets none.
pub const DEFAULT_TEAM_DESCRIPTION: &str = "A team of agents.";

/// A group of agents that works on a task.
#[async_trait]
pub trait Team: Send {
    /// Runs the team on `task` until it stops.
    async fn run(&mut self, task: AgentMessage, context: &mut RunContext<'_>) -> Result<TeamOutcome, RunError>;

    /// Runs the team on several task messages at once, as a team nested in another team is
    /// run on the messages published since its last turn. Teams that take one task message
    /// keep the default, which accepts exactly one.
    async fn run_messages(
        &mut self,
        task: Vec<AgentMessage>,
        context: &mut RunContext<'_>,
    ) -> Result<TeamOutcome, RunError> {
        let mut task = task;
        match (task.pop(), task.is_empty()) {
            (Some(only), true) => self.run(only, context).await,
            _ => Err(RunError::new("ValueError", "this team takes exactly one task message")),
        }
    }

    /// Returns the team's name, which identifies it as a participant of another team.
    fn name(&self) -> &str {
        "Team"
    }

    /// Returns what the team does, as shown to selectors.
    fn description(&self) -> &str {
        DEFAULT_TEAM_DESCRIPTION
    }

    /// Returns the team's state (every participant's state plus the team's own), so a later
    /// run can continue the conversation with [`Team::load_state`], as AgentChat's
    /// `save_state` allows.
    fn save_state(&self) -> Value;

    /// Restores a state [`Team::save_state`] returned.
    fn load_state(&mut self, state: &Value) -> Result<(), RunError>;
}
