//! A bare agent used as a team: one turn, no termination condition.

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::agent::Agent;
use crate::message::AgentMessage;
use crate::run::{RunContext, RunError};
use crate::team::{Team, TeamOutcome};

/// Runs one agent once on the task, like AgentChat's `agent.run(task=...)`: the reply ends the
/// run and `stop_reason` stays `null`.
pub struct SingleAgentTeam {
    agent: Box<dyn Agent>,
}

impl SingleAgentTeam {
    /// Wraps `agent`.
    pub fn new(agent: Box<dyn Agent>) -> SingleAgentTeam {
        SingleAgentTeam { agent }
    }
}

#[async_trait]
impl Team for SingleAgentTeam {
    async fn run(&mut self, task: AgentMessage, context: &mut RunContext<'_>) -> Result<TeamOutcome, RunError> {
        self.run_messages(vec![task], context).await
    }

    async fn run_messages(
        &mut self,
        task: Vec<AgentMessage>,
        context: &mut RunContext<'_>,
    ) -> Result<TeamOutcome, RunError> {
        let response = self.agent.on_messages(&task, context).await?;
        for message in response.inner_messages.iter().chain(std::iter::once(&response.chat_message)) {
            context.emit(message).await?;
        }
        Ok(TeamOutcome { stop_reason: None })
    }

    fn name(&self) -> &str {
        self.agent.name()
    }

    fn description(&self) -> &str {
        self.agent.description()
    }

    fn save_state(&self) -> Value {
        json!({"type": "SingleAgentTeamState", "agent": self.agent.save_state()})
    }

    fn load_state(&mut self, state: &Value) -> Result<(), RunError> {
        self.agent.load_state(&state["agent"])
    }
}
