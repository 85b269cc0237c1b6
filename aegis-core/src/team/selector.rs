//! `SelectorGroupChat`: a model picks the next speaker.
//!
//! The selection prompt is AgentChat 0.7's: `selector_prompt` with `{roles}` (one
//! `name: description` line per participant), `{participants}` (Python's `str()` of the
//! candidate list) and `{history}` (`source: text` per chat message of the selector's model
//! context, each followed by a blank line). It goes out as a system message to OpenAI model
//! families and as a user message to the rest. The answer must mention exactly one
//! participant, matched on word boundaries, with underscores also written as spaces or `\_`;
//! otherwise, and when `allow_repeated_speaker` is false and the answer repeats the previous
//! speaker, the selector gets AgentChat's feedback and another attempt. After
//! `max_selector_attempts` failed attempts the previous speaker speaks again, or the first
//! candidate when there was none. A single candidate is chosen without a model call.

use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::agent::context::ModelContext;
use crate::message::{AgentMessage, MessageKind};
use crate::model::{AssistantContent, CreateContent, CreateRequest, LlmMessage, ModelClient};
use crate::pyrepr::repr_value;
use crate::run::{ChunkEvents, RunError};
use crate::team::group_chat::{GroupChat, GroupChatConfig, Roster, SpeakerSelection, TeamEvents};

/// The `provider` string AutoGen dumps for this team.
pub const PROVIDER: &str = "autogen_agentchat.teams.SelectorGroupChat";

/// AgentChat's selector prompt.
pub const DEFAULT_SELECTOR_PROMPT: &str = "You are in a role play game. The following roles are available:
{roles}.
Read the following conversation. Then select the next role from {participants} to play. Only return the role.

{history}

Read the above conversation. Then select the next role from {participants} to play. Only return the role.
";

/// Model families AgentChat 0.7 treats as OpenAI's, which get the selection prompt as a
/// system message.
///
/// NOTE: only `gpt-4o` (system message) and `unknown` (user message) are pinned by recorded
/// cases; the other names follow AgentChat's `ModelFamily` constants and are unverified.
const OPENAI_FAMILIES: &[&str] = &["gpt-5", "gpt-41", "gpt-45", "gpt-4o", "o1", "o3", "o4", "gpt-4", "gpt-35"];

/// The config keys of `SelectorGroupChat` read besides the components.
#[derive(Clone, Debug, Deserialize)]
#[non_exhaustive]
pub struct SelectorConfig {
    /// The keys every group chat shares.
    #[serde(flatten)]
    pub group: GroupChatConfig,
    /// The selection prompt template.
    #[serde(default = "default_prompt")]
    pub selector_prompt: String,
    /// Whether the previous speaker may be picked again.
    #[serde(default)]
    pub allow_repeated_speaker: bool,
    /// How many answers the selector may give before the fallback applies.
    #[serde(default = "default_attempts")]
    pub max_selector_attempts: u32,
    /// Whether the selector's model reply is streamed.
    #[serde(default)]
    pub model_client_streaming: bool,
}

fn default_prompt() -> String {
    DEFAULT_SELECTOR_PROMPT.to_owned()
}

fn default_attempts() -> u32 {
    3
}

/// A group chat whose next speaker a model picks.
pub type SelectorGroupChat = GroupChat<Selector>;

/// Model-based speaker selection.
pub struct Selector {
    client: Arc<dyn ModelClient>,
    /// `<team name>/selector`, the name model calls are logged under.
    label: String,
    prompt: String,
    allow_repeated_speaker: bool,
    max_attempts: u32,
    streaming: bool,
    context: ModelContext,
    previous: Option<usize>,
}

impl Selector {
    /// Creates the selection for a team called `team_name`.
    pub fn new(
        config: &SelectorConfig,
        client: Arc<dyn ModelClient>,
        context: ModelContext,
        team_name: &str,
    ) -> Selector {
        Selector {
            client,
            label: format!("{team_name}/selector"),
            prompt: config.selector_prompt.clone(),
            allow_repeated_speaker: config.allow_repeated_speaker,
            max_attempts: config.max_selector_attempts,
            streaming: config.model_client_streaming,
            context,
            previous: None,
        }
    }

    fn history(&self) -> String {
        let lines: Vec<String> = self
            .context
            .view()
            .iter()
            .filter_map(|message| match message {
                LlmMessage::UserMessage { content, source } => Some(format!("{source}: {content}")),
                LlmMessage::AssistantMessage { content: AssistantContent::Text(text), source, .. } => {
                    Some(format!("{source}: {text}"))
                }
                LlmMessage::AssistantMessage { content: AssistantContent::FunctionCalls(calls), source, .. } => {
                    let calls = serde_json::to_value(calls).unwrap_or_default();
                    let message = AgentMessage::new(MessageKind::ToolCallRequestEvent, source.clone(), calls);
                    Some(format!("{source}: {}", message.to_text()))
                }
                _ => None,
            })
            .map(|line| format!("{}\n\n", line.trim_end()))
            .collect();
        lines.join("\n")
    }

    fn roles(roster: &Roster) -> String {
        let lines: Vec<String> = roster
            .names
            .iter()
            .zip(&roster.descriptions)
            .map(|(name, description)| {
                format!("{name}: {description}").split_whitespace().collect::<Vec<_>>().join(" ")
            })
            .collect();
        lines.join("\n").trim().to_owned()
    }

    fn render_prompt(&self, roster: &Roster, candidates: &[&str]) -> Result<String, RunError> {
        let roles = Value::String(Self::roles(roster));
        let participants = Value::String(repr_value(&json!(candidates)));
        let history = Value::String(self.history());
        let fields = [("roles", &roles), ("participants", &participants), ("history", &history)];
        crate::pyrepr::format_named(&self.prompt, &fields)
            .map_err(|error| RunError::new(error.error_type, error.message))
    }

    /// Asks the model until it names a valid speaker or the attempts run out.
    async fn ask(
        &mut self,
        roster: &Roster,
        candidates: &[&str],
        events: &mut TeamEvents<'_, '_>,
    ) -> Result<usize, RunError> {
        let prompt = self.render_prompt(roster, candidates)?;
        let family = self.client.model_info().family;
        let mut messages = if OPENAI_FAMILIES.contains(&family.as_str()) {
            vec![LlmMessage::SystemMessage { content: prompt }]
        } else {
            vec![LlmMessage::UserMessage { content: prompt, source: "user".to_owned() }]
        };
        let candidate_list = repr_value(&json!(candidates));

        for attempt in 1..=self.max_attempts {
            let answer = self.call(messages.clone(), events).await?;
            messages.push(LlmMessage::AssistantMessage {
                content: AssistantContent::Text(answer.clone()),
                thought: None,
                source: "selector".to_owned(),
            });
            let mentions = mentioned(&answer, &roster.names);
            let feedback = match mentions.as_slice() {
                [] => format!("No valid name was mentioned. Please select from: {candidate_list}."),
                [index] if !self.allow_repeated_speaker && self.previous == Some(*index) => {
                    format!("Repeated speaker is not allowed, please select a different name from: {candidate_list}.")
                }
                [index] => return Ok(*index),
                _ => {
                    format!("Expected exactly one name to be mentioned. Please select only one from: {candidate_list}.")
                }
            };
            tracing::debug!(run_id = %events.context.run_id(), team = %self.label, attempt, answer = %answer, "selector answer rejected");
            messages.push(LlmMessage::UserMessage { content: feedback, source: "user".to_owned() });
        }

        if let Some(previous) = self.previous {
            tracing::warn!(run_id = %events.context.run_id(), team = %self.label, attempts = self.max_attempts, "selector failed; the previous speaker speaks again");
            return Ok(previous);
        }
        tracing::warn!(run_id = %events.context.run_id(), team = %self.label, attempts = self.max_attempts, "selector failed; the first candidate speaks");
        let first = candidates.first().copied().unwrap_or_default();
        Ok(roster.names.iter().position(|name| name == first).unwrap_or(0))
    }

    /// Makes one selection call; a streamed answer is announced in chunk events and a
    /// SelectorEvent when the team emits its events.
    async fn call(&self, messages: Vec<LlmMessage>, events: &mut TeamEvents<'_, '_>) -> Result<String, RunError> {
        let request = CreateRequest::new(messages);
        let manager = "SelectorGroupChatManager";
        let result = if self.streaming {
            // AgentChat streams whenever `model_client_streaming` is set but shows the pieces
            // only when the team emits its events.
            let chunks = ChunkEvents { source: manager, full_message_id: None, publish: events.emit_team_events };
            events.context.call_model_stream(&self.label, self.client.as_ref(), &request, chunks).await?
        } else {
            events.context.call_model(&self.label, self.client.as_ref(), &request).await?
        };
        let CreateContent::Text(answer) = result.content else {
            return Err(RunError::new(
                "AssertionError",
                "the selector model answered with function calls instead of a name",
            ));
        };
        if self.streaming && events.emit_team_events {
            let event = AgentMessage::new(MessageKind::SelectorEvent, manager, Value::String(answer.clone()));
            events.context.emit(&event).await?;
        }
        Ok(answer)
    }
}

/// Returns the indexes of the names `answer` mentions once or more, in roster order, as
/// AgentChat's `_mentioned_agents` finds them.
fn mentioned(answer: &str, names: &[String]) -> Vec<usize> {
    let padded: Vec<char> = format!(" {answer} ").chars().collect();
    names
        .iter()
        .enumerate()
        .filter(|(_, name)| {
            let forms = [name.to_string(), name.replace('_', " "), name.replace('_', "\\_")];
            count_mentions(&padded, &forms) > 0
        })
        .map(|(index, _)| index)
        .collect()
}

/// Counts non-overlapping matches of any of `forms` (tried in order at each position) with a
/// non-word character on both sides, like `re.findall(r"(?<=\W)(a|b|c)(?=\W)", text)`.
fn count_mentions(text: &[char], forms: &[String]) -> usize {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let forms: Vec<Vec<char>> = forms.iter().map(|form| form.chars().collect()).collect();
    let mut count = 0;
    let mut position = 1;
    while position < text.len() {
        let matched = forms.iter().find(|form| {
            let end = position + form.len();
            !form.is_empty()
                && end < text.len()
                && text[position..end] == form[..]
                && !is_word(text[position - 1])
                && !is_word(text[end])
        });
        match matched {
            Some(form) => {
                count += 1;
                position += form.len();
            }
            None => position += 1,
        }
    }
    count
}

#[async_trait]
impl SpeakerSelection for Selector {
    fn manager_name(&self) -> &'static str {
        "SelectorGroupChatManager"
    }

    fn observe(&mut self, messages: &[AgentMessage]) {
        for message in messages.iter().filter(|message| message.kind.is_chat_message()) {
            if message.kind == MessageKind::HandoffMessage {
                let carried: Vec<LlmMessage> =
                    serde_json::from_value(message.extra.get("context").cloned().unwrap_or(Value::Null))
                        .unwrap_or_default();
                carried.into_iter().for_each(|llm_message| self.context.add(llm_message));
            }
            self.context.add(message.to_model_message());
        }
    }

    async fn select(
        &mut self,
        _thread: &[AgentMessage],
        roster: &Roster,
        events: &mut TeamEvents<'_, '_>,
    ) -> Result<usize, RunError> {
        let candidates: Vec<&str> = roster
            .names
            .iter()
            .enumerate()
            .filter(|(index, _)| self.allow_repeated_speaker || self.previous != Some(*index))
            .map(|(_, name)| name.as_str())
            .collect();
        let speaker = match candidates.as_slice() {
            [only] => roster.names.iter().position(|name| name == only).unwrap_or(0),
            _ => self.ask(roster, &candidates, events).await?,
        };
        self.previous = Some(speaker);
        Ok(speaker)
    }

    fn save(&self) -> Value {
        json!({"previous_speaker_index": self.previous})
    }

    fn load(&mut self, state: &Value) -> Result<(), RunError> {
        self.previous = state["previous_speaker_index"].as_u64().and_then(|index| usize::try_from(index).ok());
        // The context is rebuilt from the restored thread, which the team replays through
        // `observe`; start it empty so nothing is counted twice.
        self.context.load(&json!({"messages": []})).map_err(|error| RunError::new("ValueError", error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn mentions_match_word_boundaries() {
        let roster = names(&["planner", "coder", "reviewer"]);
        assert_eq!(mentioned("coder", &roster), vec![1]);
        assert_eq!(mentioned("coder or reviewer", &roster), vec![1, 2]);
        assert_eq!(mentioned("the encoders", &roster), Vec::<usize>::new());
    }

    #[test]
    fn underscores_may_be_spaces() {
        let roster = names(&["story_writer", "editor"]);
        assert_eq!(mentioned("Pick the story writer", &roster), vec![0]);
        assert_eq!(mentioned("story\\_writer", &roster), vec![0]);
    }
}
