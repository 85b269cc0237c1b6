//! Model contexts: which of an agent's remembered messages go into each prompt.
//!
//! An agent stores every LLM message it has seen or produced; the context decides the view
//! the model gets, as AutoGen's chat completion contexts do: all of them (Unbounded), the last
//! `buffer_size` (Buffered), or the first `head_size` and last `tail_size` with a placeholder
//! between (HeadAndTail). A view never starts with a function result whose call was cut off,
//! and the head never ends with a call whose result was cut off, because providers reject
//! such prompts.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::component::ComponentModel;
use crate::error::FieldError;
use crate::model::{AssistantContent, LlmMessage};
use crate::registry::{BuildResult, parse_config};

/// The `provider` strings AutoGen dumps for the contexts.
pub mod providers {
    /// Keeps every message.
    pub const UNBOUNDED: &str = "autogen_core.model_context.UnboundedChatCompletionContext";
    /// Keeps the last `buffer_size` messages.
    pub const BUFFERED: &str = "autogen_core.model_context.BufferedChatCompletionContext";
    /// Keeps the first `head_size` and the last `tail_size` messages.
    pub const HEAD_AND_TAIL: &str = "autogen_core.model_context.HeadAndTailChatCompletionContext";
}

/// Which messages a prompt includes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ContextWindow {
    /// Every message.
    Unbounded,
    /// The last `buffer_size` messages.
    Buffered {
        /// How many messages to keep.
        buffer_size: usize,
    },
    /// The first `head_size` and last `tail_size` messages.
    HeadAndTail {
        /// Messages kept from the start.
        head_size: usize,
        /// Messages kept from the end.
        tail_size: usize,
    },
}

/// An agent's remembered LLM messages and the window its prompts see.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelContext {
    window: ContextWindow,
    messages: Vec<LlmMessage>,
}

#[derive(Serialize, Deserialize)]
struct ContextState {
    messages: Vec<LlmMessage>,
}

impl Default for ModelContext {
    fn default() -> ModelContext {
        ModelContext::new(ContextWindow::Unbounded, Vec::new())
    }
}

impl ModelContext {
    /// Creates a context holding `initial_messages`.
    pub fn new(window: ContextWindow, initial_messages: Vec<LlmMessage>) -> ModelContext {
        ModelContext { window, messages: initial_messages }
    }

    /// Builds a context from its component.
    pub fn from_component(component: &ComponentModel, resolved_provider: &str) -> BuildResult<ModelContext> {
        #[derive(Deserialize)]
        struct Config {
            #[serde(default)]
            initial_messages: Option<Vec<LlmMessage>>,
            #[serde(default)]
            buffer_size: Option<usize>,
            #[serde(default)]
            head_size: Option<usize>,
            #[serde(default)]
            tail_size: Option<usize>,
        }
        let config: Config = parse_config(component)?;
        let positive = |key: &str, value: Option<usize>| match value {
            Some(size) if size > 0 => Ok(size),
            Some(_) => Err(vec![FieldError::new(
                format!("config.{key}"),
                "invalid_value",
                format!("{key} must be greater than 0"),
            )]),
            None => Err(vec![FieldError::new(format!("config.{key}"), "missing", format!("{key} is required"))]),
        };
        let window = match resolved_provider {
            providers::UNBOUNDED => ContextWindow::Unbounded,
            providers::BUFFERED => {
                ContextWindow::Buffered { buffer_size: positive("buffer_size", config.buffer_size)? }
            }
            providers::HEAD_AND_TAIL => ContextWindow::HeadAndTail {
                head_size: positive("head_size", config.head_size)?,
                tail_size: positive("tail_size", config.tail_size)?,
            },
            other => {
                return Err(vec![
                    FieldError::new(
                        "provider",
                        "unsupported",
                        format!("model context provider '{other}' is not supported yet"),
                    )
                    .with_fix(format!(
                        "use one of: {}, {}, {}",
                        providers::UNBOUNDED,
                        providers::BUFFERED,
                        providers::HEAD_AND_TAIL
                    )),
                ]);
            }
        };
        Ok(ModelContext::new(window, config.initial_messages.unwrap_or_default()))
    }

    /// Remembers a message.
    pub fn add(&mut self, message: LlmMessage) {
        self.messages.push(message);
    }

    /// Returns the messages the next prompt includes, after the system message.
    pub fn view(&self) -> Vec<LlmMessage> {
        match self.window {
            ContextWindow::Unbounded => self.messages.clone(),
            ContextWindow::Buffered { buffer_size } => {
                let start = self.messages.len().saturating_sub(buffer_size);
                drop_leading_result(&self.messages[start..]).to_vec()
            }
            ContextWindow::HeadAndTail { head_size, tail_size } => self.head_and_tail(head_size, tail_size),
        }
    }

    fn head_and_tail(&self, head_size: usize, tail_size: usize) -> Vec<LlmMessage> {
        let total = self.messages.len();
        if total <= head_size + tail_size {
            return self.messages.clone();
        }

        let mut head = &self.messages[..head_size.min(total)];
        if let Some(LlmMessage::AssistantMessage { content: AssistantContent::FunctionCalls(_), .. }) = head.last() {
            head = &head[..head.len() - 1];
        }
        let tail = drop_leading_result(&self.messages[total - tail_size..]);
        let skipped = total - head_size - tail_size;

        let mut view = head.to_vec();
        view.push(LlmMessage::UserMessage {
            content: format!("Skipped {skipped} messages."),
            source: "System".to_owned(),
        });
        view.extend_from_slice(tail);
        view
    }

    /// Returns the remembered messages as JSON, for an agent's saved state.
    pub fn save(&self) -> Value {
        serde_json::to_value(ContextState { messages: self.messages.clone() }).unwrap_or(Value::Null)
    }

    /// Restores messages [`ModelContext::save`] returned.
    pub fn load(&mut self, state: &Value) -> Result<(), String> {
        let state: ContextState = serde_json::from_value(state.clone()).map_err(|error| error.to_string())?;
        self.messages = state.messages;
        Ok(())
    }
}

fn drop_leading_result(messages: &[LlmMessage]) -> &[LlmMessage] {
    match messages.first() {
        Some(LlmMessage::FunctionExecutionResultMessage { .. }) => &messages[1..],
        _ => messages,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(text: &str) -> LlmMessage {
        LlmMessage::UserMessage { content: text.to_owned(), source: "user".to_owned() }
    }

    #[test]
    fn buffered_keeps_last_messages() {
        let mut context = ModelContext::new(ContextWindow::Buffered { buffer_size: 2 }, vec![user("a")]);
        context.add(user("b"));
        context.add(user("c"));
        assert_eq!(context.view(), vec![user("b"), user("c")]);
    }

    #[test]
    fn head_and_tail_inserts_placeholder() {
        let messages = ["a", "b", "c", "d", "e"].map(user).to_vec();
        let context = ModelContext::new(ContextWindow::HeadAndTail { head_size: 1, tail_size: 2 }, messages);
        let skipped =
            LlmMessage::UserMessage { content: "Skipped 2 messages.".to_owned(), source: "System".to_owned() };
        assert_eq!(context.view(), vec![user("a"), skipped, user("d"), user("e")]);
    }

    #[test]
    fn state_round_trips() {
        let mut context = ModelContext::default();
        context.add(user("a"));
        let mut restored = ModelContext::default();
        restored.load(&context.save()).unwrap();
        assert_eq!(restored.view(), vec![user("a")]);
    }
}
