//! A model client written in Rust and registered under its own `provider` string.
//!
//! `ShoutingClient` implements [`ModelClient`] without any network: it upper-cases the last
//! user message. The example registers it with [`Registry::register_model_client`], stores a
//! team whose AssistantAgent names the new provider in its component JSON, runs one task
//! through the worker pool and prints the stored reply and token usage.
//!
//! ```sh
//! cargo run --example custom_model_client
//! ```

use std::sync::Arc;
use std::time::Duration;

use aegis_core::model::{
    CreateContent, CreateRequest, CreateResult, FinishReason, LlmMessage, ModelClient, ModelError,
};
use aegis_core::registry::BuildContext;
use aegis_core::{
    Aegis, ComponentModel, EngineConfig, FieldError, MemoryStorage, NewTask, ProviderEnv, Registry, RequestUsage,
};
use anyhow::{Context, bail};
use async_trait::async_trait;
use serde_json::{Value, json};

/// The `provider` string team components use to ask for this client.
const PROVIDER: &str = "my_company.models.ShoutingClient";

/// A client that replies with the last user message in capitals.
struct ShoutingClient {
    model: String,
}

#[async_trait]
impl ModelClient for ShoutingClient {
    fn model(&self) -> &str {
        &self.model
    }

    fn provider(&self) -> &str {
        "shouting"
    }

    async fn create(&self, request: &CreateRequest) -> Result<CreateResult, ModelError> {
        let last_user = request.messages.iter().rev().find_map(|message| match message {
            LlmMessage::UserMessage { content, .. } => Some(content.as_str()),
            _ => None,
        });
        let reply = last_user.unwrap_or("NOTHING TO SAY").to_uppercase();

        // Usage counts words here; a real client copies the provider's token counts, and
        // Aegis sums them into the run's `team_result.usage`.
        let words = |text: &str| text.split_whitespace().count() as u64;
        let prompt_tokens = last_user.map_or(0, words);
        Ok(CreateResult {
            finish_reason: FinishReason::Stop,
            usage: RequestUsage { prompt_tokens, completion_tokens: words(&reply) },
            content: CreateContent::Text(reply),
            cached: false,
            thought: None,
        })
    }
}

/// Builds the client from its component; `config.model` is required.
fn build_shouting(
    component: &ComponentModel,
    context: &BuildContext<'_>,
) -> Result<Arc<dyn ModelClient>, Vec<FieldError>> {
    let Some(model) = component.config.get("model").and_then(Value::as_str) else {
        return Err(vec![FieldError::new("config.model", "missing", "missing field `model`")]);
    };
    // A session's `team_metadata.model` overrides the component's model name.
    let model = context.overrides.model.clone().unwrap_or_else(|| model.to_owned());
    Ok(Arc::new(ShoutingClient { model }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut registry = Registry::with_builtins(ProviderEnv::default());
    registry.register_model_client(PROVIDER, Arc::new(build_shouting));
    let aegis =
        Aegis::new(Arc::new(MemoryStorage::new()), registry, EngineConfig::default()).map_err(anyhow::Error::msg)?;
    let workers = aegis.start();

    let task = aegis.create_task(NewTask::named("Shout back")).await?;
    let team = aegis
        .create_team(serde_json::from_value(json!({"component": {
            "provider": "autogen_agentchat.agents.AssistantAgent",
            "component_type": "agent",
            "config": {
                "name": "shouter",
                "model_client": {"provider": PROVIDER, "component_type": "model", "config": {"model": "shout-1"}},
                "system_message": "Repeat the user, loudly.",
            },
        }}))?)
        .await?;
    let session =
        aegis.create_session(serde_json::from_value(json!({"task_id": task.id, "team_id": team.id}))?).await?;
    let run = aegis
        .create_run(serde_json::from_value(json!({
            "session_id": session.id,
            "task_id": task.id,
            "run_task": {"source": "user", "content": "custom clients plug straight in", "message_type": "text"},
        }))?)
        .await?;

    let finished = loop {
        let current = aegis.get_run(run.id).await?;
        if current.finished_at.is_some() {
            break current;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    workers.stop().await;

    if let Some(error) = finished.error_message {
        bail!("run failed: {error}");
    }
    let result = finished.team_result.context("a finished run has a team_result")?;
    let messages = result.task_result.map(|task| task.messages).unwrap_or_default();
    for message in &messages {
        println!("{}: {}", message.source, message.content);
    }
    println!(
        "usage: {} prompt tokens, {} completion tokens",
        result.usage.prompt_tokens, result.usage.completion_tokens
    );
    Ok(())
}
