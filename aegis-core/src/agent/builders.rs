//! Registration of the built-in agents.

use std::sync::Arc;

use crate::agent::{Agent, AssistantAgent, assistant};
use crate::component::ComponentModel;
use crate::error::FieldError;
use crate::registry::{BuildContext, BuildResult, Registry, nested_component, parse_config, under};

/// Registers the built-in agents and their AutoGen aliases.
pub(crate) fn register(registry: &mut Registry) {
    registry.register_agent(assistant::PROVIDER, Arc::new(build_assistant));
    registry.register_alias("AssistantAgent", assistant::PROVIDER);
}

fn build_assistant(component: &ComponentModel, context: &BuildContext<'_>) -> BuildResult<Box<dyn Agent>> {
    let config: assistant::AssistantAgentConfig = parse_config(component)?;
    let Some(client_component) = nested_component(component, "model_client")? else {
        return Err(vec![FieldError::new("config.model_client", "missing", "an AssistantAgent needs a model_client")
            .with_fix("add a model client component, such as autogen_ext.models.openai.OpenAIChatCompletionClient")]);
    };
    let client = context
        .registry
        .build_model_client(&client_component, context)
        .map_err(|errors| under(errors, "config.model_client"))?;
    Ok(Box::new(AssistantAgent::new(config, client)))
}
