//! AutoGen's component model: the JSON envelope every agent, team, model client and
//! termination condition is dumped in.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A component as `dump_component()` writes it.
///
/// `provider` names the implementation (a Python import path or one of AutoGen's short
/// aliases), `component_type` its role, `component_version` the version of its config schema.
/// `version` is kept for round-tripping only: like AutoGen, Aegis reads `component_version`.
/// Unknown keys are kept in `rest`, so a component stored by Aegis reads back as it was given.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ComponentModel {
    /// Implementation path or alias, such as `autogen_agentchat.agents.AssistantAgent`.
    pub provider: String,
    /// Role: `agent`, `team`, `model`, `termination`, ...
    #[serde(default)]
    pub component_type: Option<String>,
    /// Version of the component class; kept as given, not interpreted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<Value>,
    /// Version of the config schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component_version: Option<Value>,
    /// Human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Human-readable label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The implementation's configuration.
    #[serde(default)]
    pub config: Value,
    /// Keys outside AutoGen's component schema, kept as given.
    #[serde(flatten)]
    pub rest: Map<String, Value>,
}

impl ComponentModel {
    /// Returns `component_version` as a number, defaulting to 1 like AutoGen.
    pub fn schema_version(&self) -> u64 {
        self.component_version.as_ref().and_then(Value::as_u64).unwrap_or(1)
    }
}
