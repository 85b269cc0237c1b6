//! [`GroupChat`]: the manager loop AgentChat's group chats share.
//!
//! The loop is AgentChat's `BaseGroupChatManager`: the task messages join the thread and go
//! to every participant, and the termination condition checks them. Then, turn by turn, a
//! [`SpeakerSelection`] picks a speaker, announced as a SelectSpeakerEvent when
//! `emit_team_events` is set. The speaker handles the messages published since its last
//! turn and its reply goes to the others. The condition checks the turn's delta before
//! `max_turns` is counted, so a condition that fires on the last turn names the reason. The
//! condition and the turn count reset when the run stops; the thread, the participants'
//! contexts and the selection state carry over to a continued run.

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::agent::Agent;
use crate::message::{AgentMessage, MessageKind};
use crate::run::{RunContext, RunError};
use crate::team::{Team, TeamOutcome};
use crate::termination::TerminationCondition;

/// A member of a group chat: an agent, or a whole team taking one turn as a unit.
pub enum Participant {
    /// An agent.
    Agent(Box<dyn Agent>),
    /// A nested team; its messages are published to the outer team as they happen.
    Team(Box<dyn Team>),
}

impl Participant {
    /// Returns the participant's name.
    pub fn name(&self) -> &str {
        match self {
            Participant::Agent(agent) => agent.name(),
            Participant::Team(team) => team.name(),
        }
    }

    /// Returns the participant's description.
    pub fn description(&self) -> &str {
        match self {
            Participant::Agent(agent) => agent.description(),
            Participant::Team(team) => team.description(),
        }
    }

    fn save_state(&self) -> Value {
        match self {
            Participant::Agent(agent) => agent.save_state(),
            Participant::Team(team) => team.save_state(),
        }
    }

    fn load_state(&mut self, state: &Value) -> Result<(), RunError> {
        match self {
            Participant::Agent(agent) => agent.load_state(state),
            Participant::Team(team) => team.load_state(state),
        }
    }

    /// Takes one turn: returns the delta (everything the turn produced, already recorded) and
    /// the chat messages the other participants receive.
    async fn take_turn(
        &mut self,
        inbox: Vec<AgentMessage>,
        context: &mut RunContext<'_>,
    ) -> Result<(Vec<AgentMessage>, Vec<AgentMessage>), RunError> {
        match self {
            Participant::Agent(agent) => {
                let response = agent.on_messages(&inbox, context).await?;
                let mut delta = response.inner_messages;
                delta.push(response.chat_message.clone());
                for message in &delta {
                    context.emit(message).await?;
                }
                Ok((delta, vec![response.chat_message]))
            }
            Participant::Team(team) => {
                context.start_capture();
                let outcome = team.run_messages(inbox, context).await;
                let delta = context.finish_capture();
                outcome?;
                let published = delta.iter().filter(|message| message.kind.is_chat_message()).cloned().collect();
                Ok((delta, published))
            }
        }
    }
}

/// Names and descriptions of a group chat's participants, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Roster {
    /// Participant names.
    pub names: Vec<String>,
    /// Participant descriptions, aligned with `names`.
    pub descriptions: Vec<String>,
}

/// The rule a group chat uses to pick its next speaker.
#[async_trait]
pub trait SpeakerSelection: Send {
    /// Returns the name AgentChat gives the team's manager (`RoundRobinGroupChatManager`),
    /// the source of the team's own events.
    fn manager_name(&self) -> &'static str;

    /// Checks the task messages before a run starts.
    fn validate_start(&self, task: &[AgentMessage], roster: &Roster) -> Result<(), RunError> {
        let _ = (task, roster);
        Ok(())
    }

    /// Sees every message that joins the thread, task messages included.
    fn observe(&mut self, messages: &[AgentMessage]) {
        let _ = messages;
    }

    /// Returns the index of the next speaker.
    async fn select(
        &mut self,
        thread: &[AgentMessage],
        roster: &Roster,
        events: &mut TeamEvents<'_, '_>,
    ) -> Result<usize, RunError>;

    /// Returns the selection state (such as the previous speaker) for a saved team state.
    fn save(&self) -> Value;

    /// Restores a state [`SpeakerSelection::save`] returned.
    fn load(&mut self, state: &Value) -> Result<(), RunError>;
}

/// What a speaker selection may do to the run: call models and record team events.
pub struct TeamEvents<'c, 'r> {
    /// The run.
    pub context: &'c mut RunContext<'r>,
    /// Whether the team publishes its own events (`emit_team_events`).
    pub emit_team_events: bool,
}

/// The config keys every group chat shares.
#[derive(Clone, Debug, Default, Deserialize)]
#[non_exhaustive]
pub struct GroupChatConfig {
    /// The team's name (AgentChat 0.7; older dumps have none).
    #[serde(default)]
    pub name: Option<String>,
    /// What the team does.
    #[serde(default)]
    pub description: Option<String>,
    /// Number of turns after which the team stops; `null` for no limit.
    #[serde(default)]
    pub max_turns: Option<u64>,
    /// Whether the team publishes SelectSpeakerEvents (and a selector's SelectorEvents).
    #[serde(default)]
    pub emit_team_events: bool,
}

/// A group chat: participants, a termination condition and a speaker selection.
pub struct GroupChat<S> {
    name: String,
    description: String,
    participants: Vec<Participant>,
    roster: Roster,
    termination: Option<Box<dyn TerminationCondition>>,
    max_turns: Option<u64>,
    emit_team_events: bool,
    /// Each participant's messages published since its last turn.
    pending: Vec<Vec<AgentMessage>>,
    /// Every message of the conversation, events included, task messages first.
    thread: Vec<AgentMessage>,
    turn: u64,
    selection: S,
}

impl<S: SpeakerSelection> GroupChat<S> {
    /// Creates a group chat; `default_name` names it when `config.name` is unset.
    pub fn new(
        participants: Vec<Participant>,
        termination: Option<Box<dyn TerminationCondition>>,
        config: &GroupChatConfig,
        default_name: &str,
        selection: S,
    ) -> GroupChat<S> {
        let roster = Roster {
            names: participants.iter().map(|participant| participant.name().to_owned()).collect(),
            descriptions: participants.iter().map(|participant| participant.description().to_owned()).collect(),
        };
        GroupChat {
            name: config.name.clone().unwrap_or_else(|| default_name.to_owned()),
            description: config.description.clone().unwrap_or_else(|| super::DEFAULT_TEAM_DESCRIPTION.to_owned()),
            pending: participants.iter().map(|_| Vec::new()).collect(),
            participants,
            roster,
            termination,
            max_turns: config.max_turns,
            emit_team_events: config.emit_team_events,
            thread: Vec::new(),
            turn: 0,
            selection,
        }
    }

    /// Adds messages to the thread and hands the chat messages among them to every
    /// participant except `from`.
    fn publish(&mut self, messages: &[AgentMessage], delivered: &[AgentMessage], from: Option<usize>) {
        self.thread.extend_from_slice(messages);
        self.selection.observe(messages);
        for (index, queue) in self.pending.iter_mut().enumerate() {
            if Some(index) != from {
                queue.extend(delivered.iter().filter(|message| message.kind.is_chat_message()).cloned());
            }
        }
    }

    /// Applies the termination condition, then `max_turns`; returns the stop reason.
    fn should_stop(&mut self, delta: &[AgentMessage], count_turn: bool) -> Option<String> {
        if let Some(reason) = self.termination.as_mut().and_then(|termination| termination.check(delta)) {
            return Some(reason);
        }
        if count_turn {
            self.turn += 1;
        }
        let max_turns = self.max_turns.filter(|max_turns| self.turn >= *max_turns)?;
        Some(format!("Maximum number of turns {max_turns} reached."))
    }

    fn finish(&mut self, stop_reason: String) -> TeamOutcome {
        if let Some(termination) = self.termination.as_mut() {
            termination.reset();
        }
        self.turn = 0;
        TeamOutcome { stop_reason: Some(stop_reason) }
    }

    async fn run_loop(
        &mut self,
        task: Vec<AgentMessage>,
        context: &mut RunContext<'_>,
    ) -> Result<TeamOutcome, RunError> {
        self.selection.validate_start(&task, &self.roster)?;
        self.publish(&task, &task, None);
        if let Some(reason) = self.should_stop(&task, false) {
            return Ok(self.finish(reason));
        }

        loop {
            let mut events = TeamEvents { context: &mut *context, emit_team_events: self.emit_team_events };
            let speaker = self.selection.select(&self.thread, &self.roster, &mut events).await?;
            if self.emit_team_events {
                let names = json!([self.roster.names[speaker]]);
                context
                    .emit(&AgentMessage::new(MessageKind::SelectSpeakerEvent, self.selection.manager_name(), names))
                    .await?;
            }
            tracing::debug!(run_id = %context.run_id(), team = %self.name, agent = %self.roster.names[speaker], "speaker selected");

            let inbox = std::mem::take(&mut self.pending[speaker]);
            let (delta, delivered) = self.participants[speaker].take_turn(inbox, context).await?;
            self.publish(&delta, &delivered, Some(speaker));
            if let Some(reason) = self.should_stop(&delta, true) {
                return Ok(self.finish(reason));
            }
        }
    }
}

#[async_trait]
impl<S: SpeakerSelection> Team for GroupChat<S> {
    async fn run(&mut self, task: AgentMessage, context: &mut RunContext<'_>) -> Result<TeamOutcome, RunError> {
        self.run_loop(vec![task], context).await
    }

    async fn run_messages(
        &mut self,
        task: Vec<AgentMessage>,
        context: &mut RunContext<'_>,
    ) -> Result<TeamOutcome, RunError> {
        self.run_loop(task, context).await
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn description(&self) -> &str {
        &self.description
    }

    fn save_state(&self) -> Value {
        let states: Vec<Value> = self.participants.iter().map(Participant::save_state).collect();
        json!({
            "type": "GroupChatState",
            "agent_states": states,
            "pending": self.pending,
            "message_thread": self.thread,
            "current_turn": self.turn,
            "selection": self.selection.save(),
        })
    }

    fn load_state(&mut self, state: &Value) -> Result<(), RunError> {
        let invalid = |what: &str| RunError::new("ValueError", format!("invalid {} state: {what}", self.name));
        let states = state["agent_states"].as_array().ok_or_else(|| invalid("agent_states is not a list"))?;
        if states.len() != self.participants.len() {
            return Err(invalid("the number of participants differs from the team's"));
        }
        let pending: Vec<Vec<AgentMessage>> = serde_json::from_value(state["pending"].clone())
            .map_err(|_| invalid("pending is not a list of message lists"))?;
        if pending.len() != self.participants.len() {
            return Err(invalid("pending does not match the participants"));
        }
        let thread: Vec<AgentMessage> = serde_json::from_value(state["message_thread"].clone())
            .map_err(|_| invalid("message_thread is not a list of messages"))?;
        let turn = state["current_turn"].as_u64().ok_or_else(|| invalid("current_turn is not a number"))?;

        for (participant, participant_state) in self.participants.iter_mut().zip(states) {
            participant.load_state(participant_state)?;
        }
        self.selection.load(&state["selection"])?;
        self.selection.observe(&thread);
        self.pending = pending;
        self.thread = thread;
        self.turn = turn;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::agent::{AssistantAgent, AssistantAgentConfig};
    use crate::model::LlmMessage;
    use crate::model::replay::ReplayClient;
    use crate::run::VecSink;
    use crate::team::{RoundRobin, RoundRobinGroupChat};
    use crate::termination::{MaxMessageTermination, MaxMessageTerminationConfig};

    /// Builds a two-agent round robin whose clients replay `alice` and `bob`, stopping after
    /// three messages.
    fn team(alice: &[&str], bob: &[&str]) -> RoundRobinGroupChat {
        let agent = |name: &str, replies: &[&str]| {
            let mut config = AssistantAgentConfig::named(name);
            config.system_message = Some(format!("You are {name}."));
            let client = Arc::new(ReplayClient::from_texts(replies.iter().copied()));
            Participant::Agent(Box::new(AssistantAgent::new(config, client)))
        };
        let termination: MaxMessageTerminationConfig = serde_json::from_value(json!({"max_messages": 3})).unwrap();
        GroupChat::new(
            vec![agent("alice", alice), agent("bob", bob)],
            Some(Box::new(MaxMessageTermination::new(termination))),
            &GroupChatConfig::default(),
            "RoundRobinGroupChat",
            RoundRobin::default(),
        )
    }

    #[tokio::test]
    async fn round_robin_state_continues_in_fresh_team() {
        let mut first = team(&["a1", "a2"], &["b1", "b2"]);
        let mut sink = VecSink::default();
        let mut context = RunContext::new(uuid::Uuid::now_v7(), &mut sink);
        first.run(AgentMessage::text("user", "Talk."), &mut context).await.unwrap();
        let state = first.save_state();

        // The fresh team's clients answer the second run only, so a lost history shows up
        // in the prompt and a lost speaker index in who speaks.
        let mut second = team(&["a2"], &["b2"]);
        second.load_state(&state).unwrap();
        let mut sink = VecSink::default();
        let mut context = RunContext::new(uuid::Uuid::now_v7(), &mut sink);
        let outcome = second.run(AgentMessage::text("user", "Again."), &mut context).await.unwrap();

        let spoken: Vec<(&str, &str)> =
            sink.messages.iter().map(|message| (message.source.as_str(), message.content.as_str().unwrap())).collect();
        assert_eq!(spoken, [("alice", "a2"), ("bob", "b2")]);
        assert_eq!(
            outcome.stop_reason.as_deref(),
            Some("Maximum number of messages 3 reached, current message count: 3")
        );
        assert_eq!(second.thread.len(), first.thread.len() + 3);
        assert_eq!(second.save_state()["message_thread"].as_array().unwrap().len(), 6);
        let alice_prompt = match &second.participants[0] {
            Participant::Agent(agent) => agent.save_state()["llm_context"]["messages"].clone(),
            Participant::Team(_) => Value::Null,
        };
        let history: Vec<LlmMessage> = serde_json::from_value(alice_prompt).unwrap();
        let texts: Vec<String> = history
            .iter()
            .map(|message| match message {
                LlmMessage::UserMessage { content, .. } => content.clone(),
                LlmMessage::AssistantMessage { content: crate::model::AssistantContent::Text(text), .. } => {
                    text.clone()
                }
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(texts, ["Talk.", "a1", "b1", "Again.", "a2"]);
    }
}
