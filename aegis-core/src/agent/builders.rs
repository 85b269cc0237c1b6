//! Registration of the built-in agents, and the rejection of AgentChat agents Aegis does
//! not run yet.

use std::sync::Arc;

use serde_json::Value;

use crate::agent::assistant::{self, AssistantAgentConfig};
use crate::agent::handoff::{Handoff, HandoffSpec};
use crate::agent::{Agent, AssistantAgent, ListMemory, ModelContext, StructuredOutput, memory};
use crate::component::ComponentModel;
use crate::error::{FieldError, join_path};
use crate::registry::{BuildContext, BuildResult, Registry, nested_component, parse_config, under};
use crate::tool::Workbench;
use crate::tool::builders::{build_tool_list, build_workbench};

/// AgentChat agents that load in Python but that Aegis rejects, with the reason.
pub(crate) const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "autogen_agentchat.agents.UserProxyAgent",
        "it waits for a human to type a reply, and Aegis runs teams unattended",
    ),
    ("autogen_agentchat.agents.CodeExecutorAgent", "it executes model-written code, which Aegis does not do"),
    (
        "autogen_agentchat.agents.SocietyOfMindAgent",
        "it wraps an inner team behind one agent; nest the team as a participant instead",
    ),
];

/// Registers the built-in agents and their class-name aliases.
pub(crate) fn register(registry: &mut Registry) {
    registry.register_agent(assistant::PROVIDER, Arc::new(build_assistant));
    registry.register_alias("AssistantAgent", assistant::PROVIDER);
    registry.register_alias("autogen_agentchat.agents._assistant_agent.AssistantAgent", assistant::PROVIDER);
    for (provider, reason) in UNSUPPORTED {
        registry.register_unsupported(*provider, *reason);
    }
}

fn build_assistant(component: &ComponentModel, context: &BuildContext<'_>) -> BuildResult<Box<dyn Agent>> {
    let config: AssistantAgentConfig = parse_config(component)?;
    let mut problems = Vec::new();

    let client = match nested_component(component, "model_client")? {
        Some(client) => {
            context.model_client(&config.name, &client).map_err(|errors| under(errors, "config.model_client"))
        }
        None => Err(vec![
            FieldError::new("config.model_client", "missing", "an AssistantAgent needs a model_client")
                .with_fix("add a model client component, such as autogen_ext.models.openai.OpenAIChatCompletionClient"),
        ]),
    };
    let workbenches = collect(build_workbenches(component, context), &mut problems);
    let handoffs = collect(build_handoffs(component), &mut problems);
    let model_context = collect(build_model_context(component, context), &mut problems);
    let memory = collect(build_memory(component, context), &mut problems);
    let output = collect(build_structured_output(component), &mut problems);
    if !crate::agent::is_python_identifier(&config.name) {
        problems.push(
            FieldError::new(
                "config.name",
                "invalid_value",
                format!("agent name '{}' is not a valid Python identifier", config.name),
            )
            .with_fix("start the name with a letter or _ and use only letters, digits and _, such as grader_1"),
        );
    }
    if config.max_tool_iterations < 1 {
        problems.push(FieldError::new(
            "config.max_tool_iterations",
            "invalid_value",
            "max_tool_iterations must be at least 1",
        ));
    }
    let client = collect(client, &mut problems);
    if let (Some(client), Some(handoffs)) = (&client, &handoffs)
        && !handoffs.is_empty()
        && !client.model_info().function_calling
    {
        problems.push(
            FieldError::new(
                "config.handoffs",
                "invalid_value",
                "the model does not support function calling, which is needed for handoffs",
            )
            .with_fix("set model_info.function_calling to true on the model client, or remove the handoffs"),
        );
    }
    if let (Some(workbenches), Some(handoffs)) = (&workbenches, &handoffs) {
        problems.extend(check_tool_names(workbenches, handoffs));
    }

    let (Some(client), Some(workbenches), Some(handoffs), Some(model_context), Some(memory), Some(output)) =
        (client, workbenches, handoffs, model_context, memory, output)
    else {
        return Err(problems);
    };
    if !problems.is_empty() {
        return Err(problems);
    }
    let mut agent = AssistantAgent::new(config, client)
        .with_workbenches(workbenches)
        .with_handoffs(handoffs)
        .with_model_context(model_context)
        .with_memory(memory);
    if let Some(output) = output {
        agent = agent.with_structured_output(output);
    }
    Ok(Box::new(agent))
}

/// Keeps a built part, or moves its problems to `problems`.
fn collect<T>(result: BuildResult<T>, problems: &mut Vec<FieldError>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(errors) => {
            problems.extend(errors);
            None
        }
    }
}

/// Builds the workbenches: a list (component version 2), one object (version 1) or a
/// `tools` list (AgentChat 0.4), which becomes one workbench.
fn build_workbenches(component: &ComponentModel, context: &BuildContext<'_>) -> BuildResult<Vec<Workbench>> {
    let tools = component.config.get("tools").filter(|value| !value.is_null());
    let workbench = component.config.get("workbench").filter(|value| !value.is_null());
    if let (Some(tools), Some(_)) = (tools, workbench)
        && tools.as_array().is_some_and(|list| !list.is_empty())
    {
        return Err(vec![
            FieldError::new("config.tools", "conflict", "tools cannot be used with a workbench")
                .with_fix("move the tools into the workbench's tools list"),
        ]);
    }

    let items: Vec<(String, &Value)> = match workbench {
        Some(Value::Array(list)) => {
            list.iter().enumerate().map(|(index, item)| (format!("config.workbench[{index}]"), item)).collect()
        }
        Some(object) => vec![("config.workbench".to_owned(), object)],
        None => {
            let tools = build_tool_list(tools, "config.tools", context)?;
            return Ok(vec![Workbench::new(tools, &Default::default())]);
        }
    };
    let mut workbenches = Vec::with_capacity(items.len());
    let mut problems = Vec::new();
    for (path, item) in items {
        let built = serde_json::from_value::<ComponentModel>(item.clone())
            .map_err(|error| vec![FieldError::new(&path, "invalid_component", format!("not a component: {error}"))])
            .and_then(|workbench| build_workbench(&workbench, context).map_err(|errors| under(errors, &path)));
        match built {
            Ok(workbench) => workbenches.push(workbench),
            Err(errors) => problems.extend(errors),
        }
    }
    if problems.is_empty() { Ok(workbenches) } else { Err(problems) }
}

fn build_handoffs(component: &ComponentModel) -> BuildResult<Vec<Handoff>> {
    let Some(list) = component.config.get("handoffs").filter(|value| !value.is_null()) else {
        return Ok(Vec::new());
    };
    let specs: Vec<HandoffSpec> = serde_json::from_value(list.clone()).map_err(|error| {
        vec![FieldError::new(
            "config.handoffs",
            "invalid_config",
            format!("expected a list of target names or handoff objects: {error}"),
        )]
    })?;
    let handoffs: Vec<Handoff> = specs.into_iter().map(Handoff::from_spec).collect();

    let mut problems = Vec::new();
    for (index, handoff) in handoffs.iter().enumerate() {
        if !Handoff::valid_name(&handoff.name) {
            problems.push(FieldError::new(
                format!("config.handoffs[{index}].name"),
                "invalid_value",
                format!("handoff name '{}' is not a valid identifier", handoff.name),
            ));
        }
        if handoffs[..index].iter().any(|earlier| earlier.name == handoff.name) {
            problems.push(FieldError::new(
                format!("config.handoffs[{index}].name"),
                "duplicate",
                format!("handoff name '{}' is used twice", handoff.name),
            ));
        }
    }
    if problems.is_empty() { Ok(handoffs) } else { Err(problems) }
}

/// Rejects tool names used twice and handoffs that clash with a tool, as AgentChat does.
fn check_tool_names(workbenches: &[Workbench], handoffs: &[Handoff]) -> Vec<FieldError> {
    let mut problems = Vec::new();
    let names: Vec<&str> = workbenches.iter().flat_map(Workbench::names).collect();
    for (index, name) in names.iter().enumerate() {
        if names[..index].contains(name) {
            problems.push(FieldError::new(
                "config.workbench",
                "duplicate",
                format!("tool name '{name}' is used twice"),
            ));
        }
    }
    for (index, handoff) in handoffs.iter().enumerate() {
        if names.contains(&handoff.name.as_str()) || names.contains(&handoff.target.as_str()) {
            problems.push(FieldError::new(
                format!("config.handoffs[{index}]"),
                "conflict",
                format!("handoff '{}' has the name of a tool; handoff names must differ from tool names", handoff.name),
            ));
        }
    }
    problems
}

fn build_model_context(component: &ComponentModel, context: &BuildContext<'_>) -> BuildResult<ModelContext> {
    let Some(model_context) = nested_component(component, "model_context")? else {
        return Ok(ModelContext::default());
    };
    let provider = context.registry.resolve(&model_context.provider);
    ModelContext::from_component(&model_context, provider).map_err(|errors| under(errors, "config.model_context"))
}

fn build_memory(component: &ComponentModel, context: &BuildContext<'_>) -> BuildResult<Vec<ListMemory>> {
    let Some(list) = component.config.get("memory").filter(|value| !value.is_null()) else {
        return Ok(Vec::new());
    };
    let Some(items) = list.as_array() else {
        return Err(vec![FieldError::new("config.memory", "invalid_type", "expected a list of memory components")]);
    };
    let mut memories = Vec::with_capacity(items.len());
    let mut problems = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let path = format!("config.memory[{index}]");
        let built = serde_json::from_value::<ComponentModel>(item.clone())
            .map_err(|error| vec![FieldError::new(&path, "invalid_component", format!("not a component: {error}"))])
            .and_then(|memory| {
                let provider = context.registry.resolve(&memory.provider);
                ListMemory::from_component(&memory, provider).map_err(|errors| under(errors, &path))
            });
        match built {
            Ok(memory) => memories.push(memory),
            Err(errors) => problems.extend(errors),
        }
    }
    if problems.is_empty() { Ok(memories) } else { Err(problems) }
}

fn build_structured_output(component: &ComponentModel) -> BuildResult<Option<StructuredOutput>> {
    let Some(factory) = nested_component(component, "structured_message_factory")? else {
        return Ok(None);
    };
    let path = join_path("config", "structured_message_factory");
    StructuredOutput::from_component(&factory).map(Some).map_err(|errors| under(errors, &path))
}

/// Registers the aliases of the components an agent nests (contexts, memory, workbenches).
pub(crate) fn register_nested_aliases(registry: &mut Registry) {
    registry.register_alias("UnboundedChatCompletionContext", crate::agent::context::providers::UNBOUNDED);
    registry.register_alias("BufferedChatCompletionContext", crate::agent::context::providers::BUFFERED);
    registry.register_alias("HeadAndTailChatCompletionContext", crate::agent::context::providers::HEAD_AND_TAIL);
    registry.register_alias("ListMemory", memory::PROVIDER);
    registry.register_alias("StaticWorkbench", crate::tool::builders::STATIC_WORKBENCH);
    registry.register_alias("StaticStreamWorkbench", crate::tool::builders::STATIC_STREAM_WORKBENCH);
    registry.register_alias("FunctionTool", crate::tool::builders::FUNCTION_TOOL);
}
