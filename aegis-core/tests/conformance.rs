//! AgentChat conformance: every recorded case in `tests/fixtures/conformance` runs through
//! the registry and a team, and must reproduce AgentChat 0.7.5's messages, stop reason,
//! error, token usage, streamed items and the prompts each model client received.
//!
//! One [`check`] helper runs a case and returns its differences; the test runs all cases and
//! reports every failing case with its first differences, so one run shows the whole state.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use aegis_core::model::{ChunkSink, CreateRequest, CreateResult, JsonOutput, ModelInfo};
use aegis_core::run::{MessageSink, RunContext};
use aegis_core::{AgentMessage, ComponentModel, ModelClient, ModelError, ProviderEnv, Registry, RunError};

/// Cases where the recorded `expected` is not what Aegis should do, and what to compare
/// against instead.
enum Deviation {
    /// The JSON run differs from the Python run by design of the dump; compare against
    /// `roundtrip_observed`, which is what AgentChat itself did with the JSON.
    UseRoundtripObserved,
    /// AgentChat 0.7.5 fails the run because a team does not register the
    /// `StructuredMessage[<name>]` type; Aegis publishes the structured reply instead.
    StructuredReplyPublished,
}

fn deviation(name: &str) -> Option<Deviation> {
    match name {
        "shared_client_instance" => Some(Deviation::UseRoundtripObserved),
        "automark_structured_output" => Some(Deviation::StructuredReplyPublished),
        _ => None,
    }
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/conformance")
}

fn load_cases() -> Vec<Value> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json") && !path.ends_with("index.json"))
        .collect();
    paths.sort();
    paths.iter().map(|path| serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()).collect()
}

/// A model client that records every request before passing it on.
struct Recording {
    owner: String,
    inner: Arc<dyn ModelClient>,
    log: Arc<Mutex<Vec<Value>>>,
}

impl Recording {
    fn record(&self, method: &str, request: &CreateRequest) {
        let mut entry = json!({
            "client": self.owner,
            "method": method,
            "messages": serde_json::to_value(&request.messages).unwrap(),
        });
        if !request.tools.is_empty() {
            entry["tools"] = serde_json::to_value(&request.tools).unwrap();
        }
        match &request.json_output {
            Some(JsonOutput::JsonSchema(format)) => {
                entry["json_output"] = json!({"model": format.name, "schema": format.schema})
            }
            Some(_) => entry["json_output"] = json!(true),
            None => {}
        }
        if let Some(choice) = &request.tool_choice {
            entry["tool_choice"] = json!(choice);
        }
        self.log.lock().unwrap().push(entry);
    }
}

#[async_trait]
impl ModelClient for Recording {
    fn model(&self) -> &str {
        self.inner.model()
    }

    fn provider(&self) -> &str {
        self.inner.provider()
    }

    fn model_info(&self) -> ModelInfo {
        self.inner.model_info()
    }

    async fn create(&self, request: &CreateRequest) -> Result<CreateResult, ModelError> {
        self.record("create", request);
        self.inner.create(request).await
    }

    async fn create_stream(
        &self,
        request: &CreateRequest,
        chunks: &mut dyn ChunkSink,
    ) -> Result<CreateResult, ModelError> {
        self.record("create_stream", request);
        self.inner.create_stream(request, chunks).await
    }
}

/// Records what a run stores and, in order, everything it streams.
#[derive(Default)]
struct StreamSink {
    stored: Vec<AgentMessage>,
    streamed: Vec<AgentMessage>,
}

#[async_trait]
impl MessageSink for StreamSink {
    async fn emit(&mut self, message: &AgentMessage) -> Result<(), RunError> {
        self.stored.push(message.clone());
        self.streamed.push(message.clone());
        Ok(())
    }

    fn emit_transient(&mut self, message: &AgentMessage) {
        self.streamed.push(message.clone());
    }
}

/// What a run produced, in the case file's shapes.
struct Observed {
    messages: Vec<Value>,
    stop_reason: Value,
    error: Option<String>,
    usage: Vec<Value>,
    prompts: Vec<Value>,
    stream: Vec<Value>,
}

/// Reduces a message to the case shape: `source`, `type`, `content` and `extra` (every
/// other field, with a chunk's `full_message_id` turned into `full_message_ref`).
fn case_shape(message: &AgentMessage, stored: &[AgentMessage]) -> Value {
    let mut extra: Map<String, Value> = message.extra.clone();
    if let Some(id) = extra.remove("full_message_id") {
        let index = stored.iter().position(|candidate| Some(candidate.id.as_str()) == id.as_str());
        extra.insert("full_message_ref".to_owned(), json!(index));
    } else if message.kind.as_str() == "ModelClientStreamingChunkEvent" {
        extra.insert("full_message_ref".to_owned(), Value::Null);
    }
    if !message.metadata.is_empty() {
        extra.insert("metadata".to_owned(), Value::Object(message.metadata.clone()));
    }
    let mut shape = json!({"source": message.source, "type": message.kind.as_str(), "content": message.content});
    if !extra.is_empty() {
        shape["extra"] = Value::Object(extra);
    }
    shape
}

async fn run_case(case: &Value) -> Result<Observed, String> {
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut registry = Registry::with_builtins(ProviderEnv::default());
    let hook_log = Arc::clone(&log);
    registry.set_model_client_hook(Arc::new(move |owner: &str, inner: Arc<dyn ModelClient>| -> Arc<dyn ModelClient> {
        Arc::new(Recording { owner: owner.to_owned(), inner, log: Arc::clone(&hook_log) })
    }));

    let component: ComponentModel = serde_json::from_value(case["team"].clone()).map_err(|error| error.to_string())?;
    let mut team = registry
        .build_team(&component, &Default::default())
        .map_err(|errors| format!("team does not build: {errors:?}"))?;

    let task = AgentMessage::text("user", case["task"].as_str().unwrap());
    let mut sink = StreamSink::default();
    let mut context = RunContext::new(uuid::Uuid::now_v7(), &mut sink);
    let outcome = team.run(task.clone(), &mut context).await;

    let mut stored = vec![task.clone()];
    stored.extend(sink.stored.iter().cloned());
    let mut streamed = vec![task];
    streamed.extend(sink.streamed.iter().cloned());
    let (stop_reason, error) = match outcome {
        Ok(outcome) => (json!(outcome.stop_reason), None),
        Err(error) => (Value::Null, Some(error.error_message)),
    };
    let prompts = log.lock().unwrap().clone();
    Ok(Observed {
        messages: stored.iter().map(|message| case_shape(message, &stored)).collect(),
        stop_reason,
        error,
        usage: stored.iter().map(|message| json!(message.models_usage)).collect(),
        prompts,
        stream: streamed.iter().map(|message| case_shape(message, &stored)).collect(),
    })
}

/// Returns the first difference between two JSON values, with its path.
fn first_difference(path: &str, expected: &Value, actual: &Value) -> Option<String> {
    match (expected, actual) {
        (Value::Array(left), Value::Array(right)) => {
            for (index, (left, right)) in left.iter().zip(right).enumerate() {
                if let Some(difference) = first_difference(&format!("{path}[{index}]"), left, right) {
                    return Some(difference);
                }
            }
            (left.len() != right.len())
                .then(|| format!("{path}: expected {} items, got {}: {}", left.len(), right.len(), actual))
        }
        (Value::Object(left), Value::Object(right)) => {
            for (key, value) in left {
                let other = right.get(key).unwrap_or(&Value::Null);
                if let Some(difference) = first_difference(&format!("{path}.{key}"), value, other) {
                    return Some(difference);
                }
            }
            right
                .keys()
                .find(|key| !left.contains_key(*key))
                .map(|key| format!("{path}.{key}: unexpected {}", right[key]))
        }
        _ => (expected != actual).then(|| format!("{path}: expected {expected}, got {actual}")),
    }
}

/// Runs one case and returns its differences from what it records (empty when it passes).
async fn check(case: &Value) -> Vec<String> {
    let name = case["name"].as_str().unwrap();
    let observed = match run_case(case).await {
        Ok(observed) => observed,
        Err(problem) => return vec![problem],
    };

    let recorded = match deviation(name) {
        Some(Deviation::UseRoundtripObserved) => {
            let observed_json = &case["roundtrip_observed"];
            json!({
                "messages": observed_json["messages"],
                "stop_reason": observed_json["stop_reason"],
                "error": observed_json["error"],
                "usage": observed_json["usage"],
                "prompts": observed_json["prompts"],
                "stream": observed_json["stream"],
            })
        }
        Some(Deviation::StructuredReplyPublished) => return check_structured_reply(case, &observed),
        None => json!({
            "messages": case["expected"]["messages"],
            "stop_reason": case["expected"]["stop_reason"],
            "error": case["expected"]["error"],
            "usage": case["expected_usage"],
            "prompts": case["expected_prompts"],
            "stream": case["expected_stream"],
        }),
    };

    let mut differences = Vec::new();
    let expected_error = recorded["error"]["message_first_line"].as_str().map(str::to_owned);
    let pairs = [
        ("messages", &recorded["messages"], json!(observed.messages)),
        ("stop_reason", &recorded["stop_reason"], observed.stop_reason.clone()),
        ("error", &json!(expected_error), json!(observed.error)),
        ("usage", &recorded["usage"], json!(observed.usage)),
        ("prompts", &recorded["prompts"], json!(observed.prompts)),
        ("stream", &recorded["stream"], json!(observed.stream)),
    ];
    for (field, expected, actual) in pairs {
        if let Some(difference) = first_difference(field, expected, &actual) {
            differences.push(difference);
        }
    }
    differences
}

/// The structured-output case AgentChat fails on its own defect: Aegis must send the recorded
/// prompt and publish the replayed JSON as `StructuredMessage[<name>]` after the task.
fn check_structured_reply(case: &Value, observed: &Observed) -> Vec<String> {
    let mut differences = Vec::new();
    if let Some(difference) = first_difference("prompts", &case["expected_prompts"], &json!(observed.prompts)) {
        differences.push(difference);
    }
    if let Some(error) = &observed.error {
        differences.push(format!("error: expected none, got {error}"));
    }
    let agent = &case["team"]["config"]["participants"][0]["config"];
    let reply: Value =
        serde_json::from_str(agent["model_client"]["config"]["chat_completions"][0].as_str().unwrap()).unwrap();
    let model = agent["structured_message_factory"]["config"]["content_model_name"].as_str().unwrap();
    let expected = json!({"source": agent["name"], "type": format!("StructuredMessage[{model}]"), "content": reply});
    if let Some(difference) =
        first_difference("messages", &json!([case["expected"]["messages"][0], expected]), &json!(observed.messages))
    {
        differences.push(difference);
    }
    if observed.stop_reason.is_null() {
        differences.push("stop_reason: expected the termination condition to fire".to_owned());
    }
    differences
}

#[tokio::test]
async fn check_reports_tampered_case() {
    let mut case = load_cases().into_iter().find(|case| case["name"] == "swarm_ping_pong").unwrap();
    case["expected"]["stop_reason"] = json!("Text 'TERMINATE' mentioned");
    case["expected_prompts"][1]["messages"][0]["content"] = json!("You are alice.");
    let differences = check(&case).await;
    assert_eq!(differences.len(), 2, "{differences:?}");
    assert!(differences[0].starts_with("stop_reason"), "{differences:?}");
    assert!(differences[1].starts_with("prompts[1].messages[0].content"), "{differences:?}");
}

#[tokio::test]
async fn conformance_cases_match_agentchat() {
    let cases = load_cases();
    assert_eq!(cases.len(), 59, "the fixture directory holds 59 cases");

    let mut failures = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let differences = check(case).await;
        if differences.is_empty() {
            println!("pass {name}");
        } else {
            println!("FAIL {name}");
            for difference in &differences {
                println!("    {difference}");
            }
            failures.push(name.to_owned());
        }
    }
    println!("{} of {} cases pass", cases.len() - failures.len(), cases.len());
    assert!(failures.is_empty(), "failing cases: {failures:?}");
}
