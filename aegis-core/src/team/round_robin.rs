//! `RoundRobinGroupChat`: participants speak in list order, wrapping around.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::run::RunError;
use crate::team::group_chat::{GroupChat, GroupChatConfig, Roster, SpeakerSelection, TeamEvents};

/// The `provider` string AutoGen dumps for this team.
pub const PROVIDER: &str = "autogen_agentchat.teams.RoundRobinGroupChat";

/// The config keys of `RoundRobinGroupChat` read besides the components.
#[derive(Clone, Debug, Default, Deserialize)]
#[non_exhaustive]
pub struct RoundRobinGroupChatConfig {
    /// The keys every group chat shares.
    #[serde(flatten)]
    pub group: GroupChatConfig,
}

/// Participants take turns in order until the termination condition fires or `max_turns`
/// is reached.
pub type RoundRobinGroupChat = GroupChat<RoundRobin>;

/// Round-robin speaker selection; the next index carries over to a continued run.
#[derive(Clone, Debug, Default)]
pub struct RoundRobin {
    next: usize,
}

#[async_trait]
impl SpeakerSelection for RoundRobin {
    fn manager_name(&self) -> &'static str {
        "RoundRobinGroupChatManager"
    }

    async fn select(
        &mut self,
        _thread: &[crate::message::AgentMessage],
        roster: &Roster,
        _events: &mut TeamEvents<'_, '_>,
    ) -> Result<usize, RunError> {
        let speaker = self.next % roster.names.len().max(1);
        self.next = (speaker + 1) % roster.names.len().max(1);
        Ok(speaker)
    }

    fn save(&self) -> Value {
        json!({"next_speaker_index": self.next})
    }

    fn load(&mut self, state: &Value) -> Result<(), RunError> {
        let next = state["next_speaker_index"].as_u64().ok_or_else(|| {
            RunError::new("ValueError", "invalid RoundRobinGroupChat state: next_speaker_index is not a number")
        })?;
        self.next = usize::try_from(next).unwrap_or(0);
        Ok(())
    }
}
