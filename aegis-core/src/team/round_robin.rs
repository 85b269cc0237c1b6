//! `RoundRobinGroupChat`: participants speak in list order, wrapping around.

use async_trait::async_trait;
use serde::Deserialize;

use crate::agent::Agent;
use crate::message::AgentMessage;
use crate::run::{RunContext, RunError};
use crate::team::{Team, TeamOutcome};
use crate::termination::TerminationCondition;

/// The `provider` string AutoGen dumps for this team.
pub const PROVIDER: &str = "autogen_agentchat.teams.RoundRobinGroupChat";

/// The config keys of `RoundRobinGroupChat` read besides the components.
#[derive(Clone, Debug, Default, Deserialize)]
#[non_exhaustive]
pub struct RoundRobinGroupChatConfig {
    /// Number of agent turns after which the team stops; `null` for no limit.
    #[serde(default)]
    pub max_turns: Option<u64>,
}

/// Participants take turns in order until the termination condition fires or `max_turns`
/// is reached.
pub struct RoundRobinGroupChat {
    participants: Vec<Box<dyn Agent>>,
    termination: Option<Box<dyn TerminationCondition>>,
    max_turns: Option<u64>,
}

impl RoundRobinGroupChat {
    /// Creates the team.
    pub fn new(
        participants: Vec<Box<dyn Agent>>,
        termination: Option<Box<dyn TerminationCondition>>,
        config: &RoundRobinGroupChatConfig,
    ) -> RoundRobinGroupChat {
        RoundRobinGroupChat { participants, termination, max_turns: config.max_turns }
    }

    fn check(&mut self, delta: &[AgentMessage]) -> Option<String> {
        self.termination.as_mut()?.check(delta)
    }
}

#[async_trait]
impl Team for RoundRobinGroupChat {
    async fn run(&mut self, task: AgentMessage, context: &mut RunContext<'_>) -> Result<TeamOutcome, RunError> {
        if self.participants.is_empty() {
            return Err(RunError::new("ValueError", "At least one participant is required."));
        }
        if let Some(reason) = self.check(std::slice::from_ref(&task)) {
            return Ok(self.finish(Some(reason)));
        }

        // Each participant's messages published since its last turn.
        let mut pending: Vec<Vec<AgentMessage>> = vec![vec![task]; self.participants.len()];
        let mut turn: u64 = 0;
        loop {
            let speaker = usize::try_from(turn % self.participants.len() as u64).unwrap_or(0);
            let inbox = std::mem::take(&mut pending[speaker]);
            let response = self.participants[speaker].on_messages(&inbox, context).await?;

            let mut delta = response.inner_messages;
            delta.push(response.chat_message.clone());
            for message in &delta {
                context.emit(message).await?;
            }
            for (index, queue) in pending.iter_mut().enumerate() {
                if index != speaker {
                    queue.push(response.chat_message.clone());
                }
            }
            turn += 1;

            // The condition is checked before max_turns: when both hold, its reason wins.
            if let Some(reason) = self.check(&delta) {
                return Ok(self.finish(Some(reason)));
            }
            if let Some(max_turns) = self.max_turns.filter(|max_turns| turn >= *max_turns) {
                return Ok(self.finish(Some(format!("Maximum number of turns {max_turns} reached."))));
            }
        }
    }
}

impl RoundRobinGroupChat {
    fn finish(&mut self, stop_reason: Option<String>) -> TeamOutcome {
        if let Some(termination) = self.termination.as_mut() {
            termination.reset();
        }
        TeamOutcome { stop_reason }
    }
}
