//! `RoundRobinGroupChat`: participants speak in list order, wrapping around.

use async_trait::async_trait;
use serde_json::{Value, json};
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
    /// Each participant's messages published since its last turn.
    pending: Vec<Vec<AgentMessage>>,
    /// Index of the participant who speaks next; it carries over to a continued run.
    next_speaker: usize,
}

impl RoundRobinGroupChat {
    /// Creates the team.
    pub fn new(
        participants: Vec<Box<dyn Agent>>,
        termination: Option<Box<dyn TerminationCondition>>,
        config: &RoundRobinGroupChatConfig,
    ) -> RoundRobinGroupChat {
        let pending = vec![Vec::new(); participants.len()];
        RoundRobinGroupChat { participants, termination, max_turns: config.max_turns, pending, next_speaker: 0 }
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

        for queue in &mut self.pending {
            queue.push(task.clone());
        }
        let mut turn: u64 = 0;
        loop {
            let speaker = self.next_speaker;
            self.next_speaker = (speaker + 1) % self.participants.len();
            let inbox = std::mem::take(&mut self.pending[speaker]);
            let response = self.participants[speaker].on_messages(&inbox, context).await?;

            let mut delta = response.inner_messages;
            delta.push(response.chat_message.clone());
            for message in &delta {
                context.emit(message).await?;
            }
            for (index, queue) in self.pending.iter_mut().enumerate() {
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

    fn save_state(&self) -> Value {
        self.save()
    }

    fn load_state(&mut self, state: &Value) -> Result<(), RunError> {
        self.load(state)
    }
}

impl RoundRobinGroupChat {
    fn save(&self) -> Value {
        let agents: Vec<Value> = self.participants.iter().map(|agent| agent.save_state()).collect();
        json!({
            "type": "RoundRobinGroupChatState",
            "agent_states": agents,
            "pending": self.pending,
            "next_speaker": self.next_speaker,
        })
    }

    fn load(&mut self, state: &Value) -> Result<(), RunError> {
        let invalid = |what: &str| RunError::new("ValueError", format!("invalid RoundRobinGroupChat state: {what}"));
        let agents = state["agent_states"].as_array().ok_or_else(|| invalid("agent_states is not a list"))?;
        if agents.len() != self.participants.len() {
            return Err(invalid("the number of agents differs from the team's"));
        }
        for (agent, agent_state) in self.participants.iter_mut().zip(agents) {
            agent.load_state(agent_state)?;
        }
        self.pending = serde_json::from_value(state["pending"].clone()).map_err(|_| invalid("pending is not a list of message lists"))?;
        if self.pending.len() != self.participants.len() {
            return Err(invalid("pending does not match the participants"));
        }
        let next = state["next_speaker"].as_u64().ok_or_else(|| invalid("next_speaker is not a number"))?;
        self.next_speaker = usize::try_from(next).unwrap_or(0) % self.participants.len();
        Ok(())
    }

    fn finish(&mut self, stop_reason: Option<String>) -> TeamOutcome {
        if let Some(termination) = self.termination.as_mut() {
            termination.reset();
        }
        TeamOutcome { stop_reason }
    }
}
