//! `Swarm`: the speaker hands off to the next one.
//!
//! The first participant speaks first. After that, the target of the latest HandoffMessage
//! in the thread speaks; without a new handoff the current speaker keeps the floor. A
//! handoff to someone who is not a participant (such as `user`) fails the run unless the
//! termination condition (a `HandoffTermination`, typically) stops it first, as in AgentChat.

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::message::{AgentMessage, MessageKind};
use crate::run::RunError;
use crate::team::group_chat::{GroupChat, Roster, SpeakerSelection, TeamEvents};

/// The `provider` string AutoGen dumps for this team.
pub const PROVIDER: &str = "autogen_agentchat.teams.Swarm";

/// Handoff-driven group chat.
pub type Swarm = GroupChat<SwarmSelection>;

/// Handoff-driven speaker selection.
#[derive(Clone, Debug, Default)]
pub struct SwarmSelection {
    current: usize,
}

fn handoff_target(message: &AgentMessage) -> Option<&str> {
    if message.kind != MessageKind::HandoffMessage {
        return None;
    }
    message.extra.get("target").and_then(Value::as_str)
}

fn not_a_participant(target: &str, roster: &Roster) -> RunError {
    RunError::new(
        "ValueError",
        format!(
            "The handoff target {target} is not one of the participants {}.",
            crate::pyrepr::repr_value(&json!(roster.names))
        ),
    )
}

#[async_trait]
impl SpeakerSelection for SwarmSelection {
    fn manager_name(&self) -> &'static str {
        "SwarmGroupChatManager"
    }

    fn validate_start(&self, task: &[AgentMessage], roster: &Roster) -> Result<(), RunError> {
        match task.iter().find_map(handoff_target) {
            Some(target) if !roster.names.iter().any(|name| name == target) => Err(not_a_participant(target, roster)),
            _ => Ok(()),
        }
    }

    async fn select(
        &mut self,
        thread: &[AgentMessage],
        roster: &Roster,
        _events: &mut TeamEvents<'_, '_>,
    ) -> Result<usize, RunError> {
        let Some(target) = thread.iter().rev().find_map(handoff_target) else {
            return Ok(self.current);
        };
        let index =
            roster.names.iter().position(|name| name == target).ok_or_else(|| not_a_participant(target, roster))?;
        self.current = index;
        Ok(index)
    }

    fn save(&self) -> Value {
        json!({"current_speaker_index": self.current})
    }

    fn load(&mut self, state: &Value) -> Result<(), RunError> {
        let current = state["current_speaker_index"]
            .as_u64()
            .ok_or_else(|| RunError::new("ValueError", "invalid Swarm state: current_speaker_index is not a number"))?;
        self.current = usize::try_from(current).unwrap_or(0);
        Ok(())
    }
}
