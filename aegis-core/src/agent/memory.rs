//! `ListMemory`: facts added to the model context before every reply.
//!
//! AutoGen's `ListMemory.update_context` appends one system message listing every entry,
//! numbered in insertion order, on each turn (so the context grows by one such message per
//! turn), and the agent reports the entries in a `MemoryQueryEvent`.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::agent::context::ModelContext;
use crate::component::ComponentModel;
use crate::error::FieldError;
use crate::model::LlmMessage;
use crate::registry::{BuildResult, parse_config};

/// The `provider` string AutoGen dumps for this memory.
pub const PROVIDER: &str = "autogen_core.memory.ListMemory";

/// A list of memory entries in AutoGen's `MemoryContent` shape
/// (`content`, `mime_type`, `metadata`).
#[derive(Clone, Debug, PartialEq)]
pub struct ListMemory {
    name: Option<String>,
    contents: Vec<Value>,
}

impl ListMemory {
    /// Creates a memory with `contents`; each entry gets a `metadata` key (null when absent).
    pub fn new(name: Option<String>, contents: Vec<Map<String, Value>>) -> ListMemory {
        let contents = contents
            .into_iter()
            .map(|mut entry| {
                entry.entry("metadata").or_insert(Value::Null);
                Value::Object(entry)
            })
            .collect();
        ListMemory { name, contents }
    }

    /// Builds a memory from its component.
    pub fn from_component(component: &ComponentModel, resolved_provider: &str) -> BuildResult<ListMemory> {
        if resolved_provider != PROVIDER {
            return Err(vec![
                FieldError::new(
                    "provider",
                    "unsupported",
                    format!("memory provider '{resolved_provider}' is not supported yet"),
                )
                .with_fix(format!("use {PROVIDER}")),
            ]);
        }
        #[derive(Deserialize)]
        struct Config {
            #[serde(default)]
            name: Option<String>,
            #[serde(default)]
            memory_contents: Vec<Map<String, Value>>,
        }
        let config: Config = parse_config(component)?;
        Ok(ListMemory::new(config.name, config.memory_contents))
    }

    /// Returns the memory's name, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// Adds the entries to `context` as one system message and returns them, or returns
    /// `None` (adding nothing) when the memory is empty.
    pub fn update_context(&self, context: &mut ModelContext) -> Option<Vec<Value>> {
        if self.contents.is_empty() {
            return None;
        }
        let lines: Vec<String> = self
            .contents
            .iter()
            .enumerate()
            .map(|(index, entry)| {
                format!("{}. {}", index + 1, crate::pyrepr::str_value(entry.get("content").unwrap_or(&Value::Null)))
            })
            .collect();
        let text = format!("\nRelevant memory content (in chronological order):\n{}\n", lines.join("\n"));
        context.add(LlmMessage::SystemMessage { content: text });
        Some(self.contents.clone())
    }
}
