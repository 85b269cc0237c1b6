//! Registration of the built-in teams.

use std::sync::Arc;

use serde_json::Value;

use crate::agent::Agent;
use crate::component::ComponentModel;
use crate::error::{FieldError, join_path};
use crate::registry::{BuildContext, BuildResult, Registry, nested_component, parse_config, under};
use crate::team::{RoundRobinGroupChat, Team, round_robin};

/// Registers the built-in teams and their AutoGen aliases.
pub(crate) fn register(registry: &mut Registry) {
    registry.register_team(round_robin::PROVIDER, Arc::new(build_round_robin));
    registry.register_alias("RoundRobinGroupChat", round_robin::PROVIDER);
}

fn build_round_robin(component: &ComponentModel, context: &BuildContext<'_>) -> BuildResult<Box<dyn Team>> {
    let config: crate::team::RoundRobinGroupChatConfig = parse_config(component)?;
    let participants = build_participants(component, context)?;
    let termination = match nested_component(component, "termination_condition")? {
        Some(termination) => Some(
            context
                .registry
                .build_termination(&termination, context)
                .map_err(|errors| under(errors, "config.termination_condition"))?,
        ),
        None => None,
    };
    Ok(Box::new(RoundRobinGroupChat::new(participants, termination, &config)))
}

/// Builds `config.participants`, collecting the problems of every participant.
fn build_participants(component: &ComponentModel, context: &BuildContext<'_>) -> BuildResult<Vec<Box<dyn Agent>>> {
    let Some(list) = component.config.get("participants").and_then(Value::as_array) else {
        return Err(vec![FieldError::new("config.participants", "missing", "a team needs a participants list")
            .with_fix("add at least one agent component to config.participants")]);
    };
    if list.is_empty() {
        return Err(vec![FieldError::new("config.participants", "empty", "a team needs at least one participant")]);
    }

    let mut agents = Vec::with_capacity(list.len());
    let mut problems = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for (index, value) in list.iter().enumerate() {
        let path = format!("config.participants[{index}]");
        let participant: ComponentModel = match serde_json::from_value(value.clone()) {
            Ok(participant) => participant,
            Err(error) => {
                problems.push(FieldError::new(&path, "invalid_component", format!("not a component: {error}")));
                continue;
            }
        };
        match context.registry.build_agent(&participant, context) {
            Ok(agent) => {
                if names.iter().any(|name| name == agent.name()) {
                    problems.push(
                        FieldError::new(join_path(&path, "config.name"), "duplicate", format!("participant name '{}' is used twice", agent.name()))
                            .with_fix("give every participant a unique name"),
                    );
                }
                names.push(agent.name().to_owned());
                agents.push(agent);
            }
            Err(errors) => problems.extend(under(errors, &path)),
        }
    }
    if problems.is_empty() { Ok(agents) } else { Err(problems) }
}
