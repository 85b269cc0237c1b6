//! Handoffs: tools that pass the conversation to another agent.
//!
//! A handoff is offered to the model as a parameterless tool, `transfer_to_<target>`
//! lower-cased unless the component names it. Calling it makes the agent's reply a
//! `HandoffMessage` to the target, which a `Swarm` uses to pick the next speaker.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::model::ToolSchema;

/// One handoff of an agent, in AgentChat's `Handoff` shape with its defaults filled in.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Handoff {
    /// The agent (or `user`) the conversation goes to.
    pub target: String,
    /// The tool description the model sees.
    pub description: String,
    /// The tool name the model calls.
    pub name: String,
    /// The content of the HandoffMessage (and of the tool's result).
    pub message: String,
}

/// A handoff as components write it: a bare target name or an object.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum HandoffSpec {
    Target(String),
    Full {
        target: String,
        #[serde(default)]
        description: Option<String>,
        #[serde(default)]
        name: Option<String>,
        #[serde(default)]
        message: Option<String>,
    },
}

impl Handoff {
    /// Creates a handoff to `target` with AgentChat's default name, description and message.
    pub fn to(target: impl Into<String>) -> Handoff {
        Handoff::with_defaults(target.into(), None, None, None)
    }

    pub(crate) fn from_spec(spec: HandoffSpec) -> Handoff {
        match spec {
            HandoffSpec::Target(target) => Handoff::with_defaults(target, None, None, None),
            HandoffSpec::Full { target, description, name, message } => {
                Handoff::with_defaults(target, description, name, message)
            }
        }
    }

    fn with_defaults(
        target: String,
        description: Option<String>,
        name: Option<String>,
        message: Option<String>,
    ) -> Handoff {
        // AgentChat treats empty strings as unset.
        let set = |value: Option<String>| value.filter(|text| !text.is_empty());
        Handoff {
            description: set(description).unwrap_or_else(|| format!("Handoff to {target}.")),
            name: set(name).unwrap_or_else(|| format!("transfer_to_{target}").to_lowercase()),
            message: set(message)
                .unwrap_or_else(|| format!("Transferred to {target}, adopting the role of {target} immediately.")),
            target,
        }
    }

    /// Returns the tool schema the model is offered.
    pub fn schema(&self) -> ToolSchema {
        ToolSchema {
            name: self.name.clone(),
            description: self.description.clone(),
            parameters: json!({"type": "object", "properties": {}, "required": [], "additionalProperties": false}),
            strict: true,
        }
    }

    /// Returns whether `name` is a valid Python identifier, as AgentChat requires of handoff
    /// names.
    pub(crate) fn valid_name(name: &str) -> bool {
        crate::agent::is_python_identifier(name)
    }
}

impl From<Handoff> for Value {
    fn from(handoff: Handoff) -> Value {
        json!({"target": handoff.target, "description": handoff.description, "name": handoff.name, "message": handoff.message})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_lower_case_the_tool_name() {
        let handoff = Handoff::to("Bob");
        assert_eq!(handoff.name, "transfer_to_bob");
        assert_eq!(handoff.description, "Handoff to Bob.");
        assert_eq!(handoff.message, "Transferred to Bob, adopting the role of Bob immediately.");
    }
}
