//! Registration of the built-in model clients.

use std::sync::Arc;

use crate::component::ComponentModel;
use crate::error::FieldError;
use crate::model::ModelClient;
use crate::model::anthropic::{self, AnthropicClient};
use crate::model::azure;
use crate::model::ollama::{self, OllamaClient};
use crate::model::openai::{self, OpenAiClient};
use crate::model::replay::{self, ReplayClient};
use crate::registry::{BuildContext, BuildResult, Registry};

/// Registers the built-in model clients and their AutoGen aliases.
pub(crate) fn register(registry: &mut Registry) {
    registry.register_model_client(openai::PROVIDER, Arc::new(build_openai));
    registry.register_alias("OpenAIChatCompletionClient", openai::PROVIDER);
    registry.register_alias("openai_chat_completion_client", openai::PROVIDER);
    registry.register_model_client(azure::PROVIDER, Arc::new(build_azure));
    registry.register_alias("AzureOpenAIChatCompletionClient", azure::PROVIDER);
    registry.register_alias("azure_openai_chat_completion_client", azure::PROVIDER);
    registry.register_model_client(anthropic::PROVIDER, Arc::new(build_anthropic));
    registry.register_alias("AnthropicChatCompletionClient", anthropic::PROVIDER);
    registry.register_model_client(ollama::PROVIDER, Arc::new(build_ollama));
    registry.register_alias("OllamaChatCompletionClient", ollama::PROVIDER);
    registry.register_model_client(replay::PROVIDER, Arc::new(build_replay));
    registry.register_alias("ReplayChatCompletionClient", replay::PROVIDER);
}

fn build_openai(component: &ComponentModel, context: &BuildContext<'_>) -> BuildResult<Arc<dyn ModelClient>> {
    let mut client = OpenAiClient::from_config(&component.config, context.env(), context.http().clone())
        .map_err(|message| vec![FieldError::new("config", "invalid_config", message)])?;
    context.check_model_host("config.base_url", client.endpoint())?;
    if let Some(model) = &context.overrides.model {
        client.set_model(model.clone());
    }
    Ok(Arc::new(client))
}

fn build_azure(component: &ComponentModel, context: &BuildContext<'_>) -> BuildResult<Arc<dyn ModelClient>> {
    let mut client = azure::from_config(&component.config, context.env(), context.http().clone())
        .map_err(|message| vec![FieldError::new("config", "invalid_config", message)])?;
    context.check_model_host("config.azure_endpoint", client.endpoint())?;
    if let Some(model) = &context.overrides.model {
        client.set_model(model.clone());
    }
    Ok(Arc::new(client))
}

fn build_anthropic(component: &ComponentModel, context: &BuildContext<'_>) -> BuildResult<Arc<dyn ModelClient>> {
    let mut client = AnthropicClient::from_config(&component.config, context.env(), context.http().clone())
        .map_err(|message| vec![FieldError::new("config", "invalid_config", message)])?;
    context.check_model_host("config.base_url", client.endpoint())?;
    if let Some(model) = &context.overrides.model {
        client.set_model(model.clone());
    }
    Ok(Arc::new(client))
}

fn build_ollama(component: &ComponentModel, context: &BuildContext<'_>) -> BuildResult<Arc<dyn ModelClient>> {
    let mut client = OllamaClient::from_config(&component.config, context.env(), context.http().clone())
        .map_err(|message| vec![FieldError::new("config", "invalid_config", message)])?;
    context.check_model_host("config.host", client.endpoint())?;
    if let Some(model) = &context.overrides.model {
        client.set_model(model.clone());
    }
    Ok(Arc::new(client))
}

fn build_replay(component: &ComponentModel, _context: &BuildContext<'_>) -> BuildResult<Arc<dyn ModelClient>> {
    let client = ReplayClient::from_config(&component.config)
        .map_err(|message| vec![FieldError::new("config.chat_completions", "invalid_config", message)])?;
    Ok(Arc::new(client))
}
