//! Registration of the built-in teams, and the rejection of AgentChat teams Aegis does not
//! run yet.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::agent::ModelContext;
use crate::component::ComponentModel;
use crate::error::{FieldError, join_path};
use crate::registry::{BuildContext, BuildResult, Registry, nested_component, parse_config, under};
use crate::team::group_chat::{GroupChatConfig, Participant};
use crate::team::{
    GroupChat, RoundRobin, RoundRobinGroupChatConfig, Selector, SelectorConfig, SwarmSelection, Team, round_robin,
    selector, swarm,
};
use crate::termination::TerminationCondition;

/// AgentChat teams that load in Python but that Aegis rejects, with the reason.
pub(crate) const UNSUPPORTED: &[(&str, &str)] = &[
    ("autogen_agentchat.teams.MagenticOneGroupChat", "its orchestrator's ledger prompts are not implemented"),
    ("autogen_agentchat.teams.GraphFlow", "graph-based execution (DiGraph edges and conditions) is not implemented"),
];

/// Registers the built-in teams and their class-name aliases.
pub(crate) fn register(registry: &mut Registry) {
    registry.register_team(round_robin::PROVIDER, Arc::new(build_round_robin));
    registry.register_alias("RoundRobinGroupChat", round_robin::PROVIDER);
    registry.register_team(selector::PROVIDER, Arc::new(build_selector));
    registry.register_alias("SelectorGroupChat", selector::PROVIDER);
    registry.register_team(swarm::PROVIDER, Arc::new(build_swarm));
    registry.register_alias("Swarm", swarm::PROVIDER);
    for (provider, reason) in UNSUPPORTED {
        registry.register_unsupported(*provider, *reason);
    }
}

fn build_round_robin(component: &ComponentModel, context: &BuildContext<'_>) -> BuildResult<Box<dyn Team>> {
    let config: RoundRobinGroupChatConfig = parse_config(component)?;
    let (participants, termination) = build_members(component, context)?;
    Ok(Box::new(GroupChat::new(participants, termination, &config.group, "RoundRobinGroupChat", RoundRobin::default())))
}

fn build_swarm(component: &ComponentModel, context: &BuildContext<'_>) -> BuildResult<Box<dyn Team>> {
    let config: GroupChatConfig = parse_config(component)?;
    let (participants, termination) = build_members(component, context)?;
    Ok(Box::new(GroupChat::new(participants, termination, &config, "Swarm", SwarmSelection::default())))
}

fn build_selector(component: &ComponentModel, context: &BuildContext<'_>) -> BuildResult<Box<dyn Team>> {
    let config: SelectorConfig = parse_config(component)?;
    let team_name = config.group.name.clone().unwrap_or_else(|| "SelectorGroupChat".to_owned());
    let mut problems = Vec::new();

    let client = match nested_component(component, "model_client")? {
        Some(client) => context
            .model_client(&format!("{team_name}/selector"), &client)
            .map_err(|errors| under(errors, "config.model_client")),
        None => Err(vec![FieldError::new(
            "config.model_client",
            "missing",
            "a SelectorGroupChat needs a model_client to pick speakers",
        )]),
    };
    let selector_context = match nested_component(component, "model_context")? {
        Some(model_context) => {
            let provider = context.registry.resolve(&model_context.provider);
            ModelContext::from_component(&model_context, provider)
                .map_err(|errors| under(errors, "config.model_context"))
        }
        None => Ok(ModelContext::default()),
    };
    if config.max_selector_attempts < 1 {
        problems.push(FieldError::new(
            "config.max_selector_attempts",
            "invalid_value",
            "max_selector_attempts must be at least 1",
        ));
    }
    let members = build_members(component, context);
    if let Ok((participants, _)) = &members
        && participants.len() < 2
    {
        problems.push(
            FieldError::new(
                "config.participants",
                "invalid_value",
                "a SelectorGroupChat needs at least two participants",
            )
            .with_fix("add a participant, or use a RoundRobinGroupChat for a single agent"),
        );
    }

    let (client, selector_context, members) = match (client, selector_context, members) {
        (Ok(client), Ok(selector_context), Ok(members)) if problems.is_empty() => (client, selector_context, members),
        (client, selector_context, members) => {
            problems.extend(client.err().unwrap_or_default());
            problems.extend(selector_context.err().unwrap_or_default());
            problems.extend(members.err().unwrap_or_default());
            return Err(problems);
        }
    };
    let (participants, termination) = members;
    let selection = Selector::new(&config, client, selector_context, &team_name);
    Ok(Box::new(GroupChat::new(participants, termination, &config.group, "SelectorGroupChat", selection)))
}

type Members = (Vec<Participant>, Option<Box<dyn TerminationCondition>>);

/// Builds `config.participants` and `config.termination_condition`, collecting the problems
/// of both.
fn build_members(component: &ComponentModel, context: &BuildContext<'_>) -> BuildResult<Members> {
    let participants = build_participants(component, context);
    let termination = match nested_component(component, "termination_condition") {
        Ok(Some(termination)) => context
            .registry
            .build_termination(&termination, context)
            .map(Some)
            .map_err(|errors| under(errors, "config.termination_condition")),
        Ok(None) => Ok(None),
        Err(errors) => Err(errors),
    };
    match (participants, termination) {
        (Ok(participants), Ok(termination)) => Ok((participants, termination)),
        (participants, termination) => {
            let mut problems = participants.err().unwrap_or_default();
            problems.extend(termination.err().unwrap_or_default());
            Err(problems)
        }
    }
}

/// Builds `config.participants`: agents, or teams nested as one participant.
fn build_participants(component: &ComponentModel, context: &BuildContext<'_>) -> BuildResult<Vec<Participant>> {
    let Some(list) = component.config.get("participants").and_then(Value::as_array) else {
        return Err(vec![
            FieldError::new("config.participants", "missing", "a team needs a participants list")
                .with_fix("add at least one agent component to config.participants"),
        ]);
    };
    if list.is_empty() {
        return Err(vec![FieldError::new("config.participants", "empty", "a team needs at least one participant")]);
    }

    let mut participants: Vec<Participant> = Vec::with_capacity(list.len());
    let mut problems = Vec::new();
    for (index, value) in list.iter().enumerate() {
        let path = format!("config.participants[{index}]");
        let member: ComponentModel = match ComponentModel::deserialize(value) {
            Ok(member) => member,
            Err(error) => {
                problems.push(FieldError::new(&path, "invalid_component", format!("not a component: {error}")));
                continue;
            }
        };
        match context.registry.build_participant(&member, context) {
            Ok(participant) => {
                if participants.iter().any(|earlier| earlier.name() == participant.name()) {
                    problems.push(
                        FieldError::new(
                            join_path(&path, "config.name"),
                            "duplicate",
                            format!("participant name '{}' is used twice", participant.name()),
                        )
                        .with_fix("give every participant a unique name"),
                    );
                }
                participants.push(participant);
            }
            Err(errors) => problems.extend(under(errors, &path)),
        }
    }
    if problems.is_empty() { Ok(participants) } else { Err(problems) }
}
