//! Every component AgentChat 0.5.7 and 0.7.5 dumped (`tests/fixtures/autogen`) loads in Aegis,
//! or is rejected with the reason `docs/COMPATIBILITY.md` gives for its provider.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

use aegis_core::tool::Tool;
use aegis_core::{ComponentModel, ProviderEnv, Registry};

/// Providers Aegis rejects on purpose, with the error code it uses.
const REJECTED: &[(&str, &str)] = &[
    ("autogen_agentchat.agents.UserProxyAgent", "unsupported"),
    ("autogen_agentchat.agents.CodeExecutorAgent", "unsupported"),
    ("autogen_agentchat.agents.SocietyOfMindAgent", "unsupported"),
    ("autogen_agentchat.teams.MagenticOneGroupChat", "unsupported"),
    ("autogen_agentchat.teams.GraphFlow", "unsupported"),
];

/// Model client providers that load once a builder for them is registered; until then they
/// must be rejected as unknown, with the known providers listed.
const OPTIONAL_MODEL_CLIENTS: &[&str] = &[
    "autogen_ext.models.openai.AzureOpenAIChatCompletionClient",
    "autogen_ext.models.anthropic.AnthropicChatCompletionClient",
    "autogen_ext.models.ollama.OllamaChatCompletionClient",
];

/// The Rust side of the dumped `add` FunctionTool.
struct Add;

#[async_trait]
impl Tool for Add {
    fn name(&self) -> &str {
        "add"
    }

    fn description(&self) -> &str {
        "Add two numbers"
    }

    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}, "required": ["a", "b"]})
    }

    async fn call(&self, arguments: Value) -> Result<String, String> {
        let a = arguments["a"].as_i64().ok_or("a must be an integer")?;
        let b = arguments["b"].as_i64().ok_or("b must be an integer")?;
        Ok((a + b).to_string())
    }
}

fn entries() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/autogen");
    let mut entries = Vec::new();
    for file in ["components_0.5.7.json", "components_0.7.5.json"] {
        let all: serde_json::Map<String, Value> =
            serde_json::from_str(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap();
        entries.extend(all.into_iter().map(|(name, value)| (format!("{file}:{name}"), value)));
    }
    entries
}

fn component(value: &Value) -> Option<ComponentModel> {
    if value.get("ERROR").is_some() {
        return None;
    }
    Some(serde_json::from_value(value.clone()).unwrap())
}

#[test]
fn every_dumped_component_loads_or_is_rejected() {
    let mut registry = Registry::with_builtins(ProviderEnv::default());
    registry.register_tool(Arc::new(Add));
    // The dumped components name example hosts such as example.openai.azure.com; this test
    // is about their shape, and aegis-http/tests/model_hosts.rs covers the allow-list.
    registry.allow_model_host("*").unwrap();

    let mut checked = 0;
    for (name, value) in entries() {
        let Some(component) = component(&value) else {
            assert!(
                value["ERROR"].as_str().is_some_and(|message| !message.is_empty()),
                "{name}: an ERROR entry without a message"
            );
            continue;
        };
        checked += 1;
        let problems = registry.validate_component(&component);
        let rejected = REJECTED.iter().find(|(provider, _)| *provider == component.provider);
        let optional = OPTIONAL_MODEL_CLIENTS.contains(&component.provider.as_str());
        match (rejected, optional) {
            (Some((_, code)), _) => {
                assert_eq!(problems.len(), 1, "{name}: {problems:?}");
                assert_eq!(problems[0].code, *code, "{name}: {problems:?}");
                assert!(problems[0].message.contains("not supported yet"), "{name}: {problems:?}");
                assert!(
                    problems[0]
                        .fix
                        .as_deref()
                        .is_some_and(|fix| fix.contains("autogen_agentchat.teams.RoundRobinGroupChat")),
                    "{name}: {problems:?}"
                );
            }
            (None, true) if !problems.is_empty() => {
                assert_eq!(problems[0].code, "unknown_provider", "{name}: {problems:?}");
                assert!(
                    problems[0].fix.as_deref().is_some_and(|fix| fix.contains("OpenAIChatCompletionClient")),
                    "{name}: {problems:?}"
                );
            }
            _ => assert!(problems.is_empty(), "{name} does not load: {problems:?}"),
        }
    }
    assert!(checked >= 70, "only {checked} components checked");
}

#[test]
fn function_tool_without_rust_tool_is_rejected() {
    let registry = Registry::with_builtins(ProviderEnv::default());
    for (name, value) in entries()
        .into_iter()
        .filter(|(name, _)| name.ends_with(":FunctionTool") || name.ends_with(":AssistantAgent_tools_handoffs"))
    {
        let problems = registry.validate_component(&component(&value).unwrap());
        assert_eq!(problems.len(), 1, "{name}: {problems:?}");
        assert_eq!(problems[0].code, "unknown_tool", "{name}: {problems:?}");
        assert!(problems[0].field.ends_with("config.name"), "{name}: {problems:?}");
        assert!(problems[0].message.contains("'add'"), "{name}: {problems:?}");
    }
}

#[test]
fn agent_names_must_be_python_identifiers() {
    let mut registry = Registry::with_builtins(ProviderEnv::default());
    registry.allow_model_host("*").unwrap();
    let (_, dumped) = entries().into_iter().find(|(name, _)| name.ends_with(":AssistantAgent_min")).unwrap();

    // AgentChat raises "The agent name must be a valid Python identifier." for these.
    for bad in ["bad name!", "1st", "", "grader-1", "a.b"] {
        let mut value = dumped.clone();
        value["config"]["name"] = json!(bad);
        let problems = registry.validate_component(&component(&value).unwrap());
        assert_eq!(problems.len(), 1, "{bad:?}: {problems:?}");
        assert_eq!(problems[0].field, "config.name", "{bad:?}: {problems:?}");
        assert!(problems[0].fix.as_deref().is_some_and(|fix| !fix.is_empty()), "{bad:?}: {problems:?}");
    }
    // str.isidentifier() accepts letters of any script and keywords.
    for good in ["grader", "_private", "agent_2", "überprüfer", "class"] {
        let mut value = dumped.clone();
        value["config"]["name"] = json!(good);
        let problems = registry.validate_component(&component(&value).unwrap());
        assert!(problems.is_empty(), "{good:?}: {problems:?}");
    }
}
