//! Tools an agent's model can call, and the workbenches that hold them.
//!
//! AgentChat's `FunctionTool` carries Python source code, which Aegis never executes. Instead
//! a Rust application registers [`Tool`]s in the [`Registry`](crate::Registry). A
//! `FunctionTool` component whose `name` matches a registered tool binds to it, and its source
//! is ignored. A [`Workbench`] is AgentChat's `StaticWorkbench` (or `StaticStreamWorkbench`):
//! a fixed list of tools, optionally renamed for the model through `tool_overrides`.

pub(crate) mod builders;

pub use builders::{FUNCTION_TOOL, STATIC_STREAM_WORKBENCH, STATIC_WORKBENCH};

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;
use serde_json::Value;

use crate::model::ToolSchema;

/// A function the model may call, implemented in Rust.
#[async_trait]
pub trait Tool: Send + Sync {
    /// Returns the tool's name, as the model calls it and as `FunctionTool.name` binds it.
    fn name(&self) -> &str;

    /// Returns what the tool does, for the model.
    fn description(&self) -> &str;

    /// Returns the JSON schema of the arguments object.
    fn parameters(&self) -> Value;

    /// Runs the tool on the parsed arguments. `Ok` is the result text; `Err` is an error
    /// text the model sees as a failed call (`is_error: true`).
    async fn call(&self, arguments: Value) -> Result<String, String>;
}

/// A tool as one workbench presents it: possibly renamed or redescribed.
#[derive(Clone)]
struct Entry {
    tool: Arc<dyn Tool>,
    name: String,
    description: String,
}

/// A renaming from a workbench's `tool_overrides`.
#[derive(Clone, Debug, Default, Deserialize)]
#[non_exhaustive]
pub struct ToolOverride {
    /// The name the model sees instead of the tool's own.
    #[serde(default)]
    pub name: Option<String>,
    /// The description the model sees instead of the tool's own.
    #[serde(default)]
    pub description: Option<String>,
}

/// A fixed set of tools.
#[derive(Clone, Default)]
pub struct Workbench {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for Workbench {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.entries.iter().map(|entry| entry.name.as_str()).collect();
        f.debug_struct("Workbench").field("tools", &names).finish()
    }
}

/// The outcome of one call through a workbench.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolOutput {
    /// Result text, or the error text.
    pub content: String,
    /// Whether the call failed.
    pub is_error: bool,
}

impl Workbench {
    /// Creates a workbench of `tools`, each presented under the name and description in
    /// `overrides` (keyed by the tool's own name) when given, else its own.
    pub fn new(tools: Vec<(Arc<dyn Tool>, Option<String>)>, overrides: &HashMap<String, ToolOverride>) -> Workbench {
        let entries = tools
            .into_iter()
            .map(|(tool, description)| {
                let over = overrides.get(tool.name()).cloned().unwrap_or_default();
                let name = over.name.unwrap_or_else(|| tool.name().to_owned());
                let description = over.description.or(description).unwrap_or_else(|| tool.description().to_owned());
                Entry { tool, name, description }
            })
            .collect();
        Workbench { entries }
    }

    /// Returns the schemas the model is offered, in order.
    pub fn schemas(&self) -> Vec<ToolSchema> {
        self.entries
            .iter()
            .map(|entry| ToolSchema {
                name: entry.name.clone(),
                description: entry.description.clone(),
                parameters: entry.tool.parameters(),
                strict: false,
            })
            .collect()
    }

    /// Returns whether a tool is presented under `name`.
    pub fn has(&self, name: &str) -> bool {
        self.entries.iter().any(|entry| entry.name == name)
    }

    /// Returns the names the tools are presented under.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|entry| entry.name.as_str())
    }

    /// Calls the tool presented under `name`; `None` when there is none.
    pub async fn call(&self, name: &str, arguments: Value) -> Option<ToolOutput> {
        let entry = self.entries.iter().find(|entry| entry.name == name)?;
        let output = match entry.tool.call(arguments).await {
            Ok(content) => ToolOutput { content, is_error: false },
            Err(content) => ToolOutput { content, is_error: true },
        };
        Some(output)
    }
}
