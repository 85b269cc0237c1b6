//! Executing one claimed run: build the team from the run's snapshot, feed it the task
//! message, record every message under the lease, and store the outcome.

use std::time::Instant;

use async_trait::async_trait;
use serde_json::Value;

use crate::engine::Shared;
use crate::message::{AgentMessage, MessageKind};
use crate::pyjson;
use crate::registry::Overrides;
use crate::resource::{RunSpec, RunTask, TaskMessageType, TaskResult, TeamResult};
use crate::run::{MessageSink, RunContext, RunError, RunErrorKind};
use crate::storage::{Lease, RunOutcome, Storage, StorageErrorKind};

pub(crate) async fn execute(shared: &Shared, spec: RunSpec, lease: Lease) {
    let run_id = spec.run.id;
    let session_id = spec.run.session_id;
    let attempt = lease.attempt;
    tracing::info!(%run_id, %session_id, attempt, "run started");

    let heartbeat = keep_lease(shared, lease.clone());
    let work = run_team(shared, &spec, &lease);
    let outcome = tokio::select! {
        outcome = work => outcome,
        () = heartbeat => {
            tracing::warn!(%run_id, attempt, "lease lost; abandoning the run to its newer attempt");
            return;
        }
    };
    let Some(outcome) = outcome else {
        tracing::warn!(%run_id, attempt, "lease lost while recording; abandoning the run to its newer attempt");
        return;
    };

    match shared.storage.finish_run(&lease, &outcome).await {
        Ok(()) => {
            let status = outcome.status.as_str();
            match &outcome.error_message {
                Some(error) => tracing::warn!(%run_id, %session_id, attempt, status, error = %error, "run ended"),
                None => tracing::info!(%run_id, %session_id, attempt, status, "run ended"),
            }
        }
        Err(error) if *error.kind() == StorageErrorKind::LeaseLost => {
            tracing::warn!(%run_id, attempt, "lease lost before the outcome was stored; a newer attempt owns the run");
        }
        Err(error) => {
            // The lease will expire and the sweep re-queues the run, so nothing is lost.
            tracing::error!(%run_id, attempt, %error, "storing the run outcome failed");
        }
    }
}

/// Renews the lease until renewal reports it lost; never returns while the lease holds.
async fn keep_lease(shared: &Shared, mut lease: Lease) {
    loop {
        tokio::time::sleep(shared.config.heartbeat).await;
        match shared.storage.renew_lease(&lease, shared.config.lease).await {
            Ok(renewed) => lease = renewed,
            Err(error) if *error.kind() == StorageErrorKind::LeaseLost => return,
            Err(error) => {
                // A transient store failure: the next beat tries again before the lease runs out.
                tracing::warn!(run_id = %lease.run_id, %error, "renewing the lease failed");
            }
        }
    }
}

/// Runs the team; returns `None` when the lease was lost and nothing may be written.
async fn run_team(shared: &Shared, spec: &RunSpec, lease: &Lease) -> Option<RunOutcome> {
    let started = Instant::now();
    let overrides = Overrides::from_team_metadata(&spec.team_metadata);
    let mut team = match shared.registry.build_team(&spec.team_component, &overrides) {
        Ok(team) => team,
        Err(problems) => {
            let list: Vec<String> = problems.iter().map(|problem| format!("{}: {}", problem.field, problem.message)).collect();
            let error = RunError::new("ValueError", format!("the team component does not build: {}", list.join("; ")));
            return Some(failed(None, error));
        }
    };

    let dict_replies = spec.run.run_task.message_type == TaskMessageType::Dict;
    let mut sink = StoreSink { storage: shared.storage.as_ref(), lease, dict_replies, messages: Vec::new() };
    let mut context = RunContext::new(spec.run.id, &mut sink);
    let task = task_message(&spec.run.run_task);
    let result = tokio::time::timeout(shared.config.run_timeout, team.run(task, &mut context)).await;
    let usage = context.usage();

    let partial = |stop_reason: Option<String>, messages: Vec<AgentMessage>| TeamResult {
        task_result: Some(TaskResult { messages, stop_reason }),
        usage,
        duration: started.elapsed().as_secs_f64(),
    };
    let outcome = match result {
        Ok(Ok(outcome)) => RunOutcome::complete(partial(outcome.stop_reason, sink.messages)),
        Ok(Err(error)) if error.kind == RunErrorKind::LeaseLost => return None,
        Ok(Err(error)) => failed(Some(partial(None, sink.messages)), error),
        Err(_elapsed) => {
            let seconds = shared.config.run_timeout.as_secs_f64();
            let error = RunError::new("RunTimeoutError", format!("the run did not finish within {seconds} seconds"));
            failed(Some(partial(None, sink.messages)), error)
        }
    };
    Some(outcome)
}

fn failed(team_result: Option<TeamResult>, error: RunError) -> RunOutcome {
    RunOutcome::error(team_result, error.error_message, *error.details)
}

/// Builds the task message: text as given, a dict as Python's `json.dumps` text.
fn task_message(run_task: &RunTask) -> AgentMessage {
    let content = match (&run_task.message_type, &run_task.content) {
        (TaskMessageType::Text, Value::String(text)) => text.clone(),
        (_, content) => pyjson::dumps(content),
    };
    AgentMessage::text(&run_task.source, content)
}

/// Records messages in the store under the run's lease.
struct StoreSink<'a> {
    storage: &'a dyn Storage,
    lease: &'a Lease,
    dict_replies: bool,
    messages: Vec<AgentMessage>,
}

#[async_trait]
impl MessageSink for StoreSink<'_> {
    async fn emit(&mut self, message: &AgentMessage) -> Result<(), RunError> {
        let stored = if self.dict_replies { as_dict(message) } else { None };
        let stored = stored.unwrap_or_else(|| message.clone());
        match self.storage.append_message(self.lease, &stored).await {
            Ok(()) => {
                self.messages.push(stored);
                Ok(())
            }
            Err(error) if *error.kind() == StorageErrorKind::LeaseLost => Err(RunError::lease_lost(error.to_string())),
            Err(error) => Err(RunError::new("StorageError", format!("recording a message failed: {error}"))),
        }
    }
}

/// Returns the message as a `dict` message when its text is a JSON object (optionally inside
/// one ```json fence), as dict-mode runs store replies.
fn as_dict(message: &AgentMessage) -> Option<AgentMessage> {
    if message.kind != MessageKind::TextMessage {
        return None;
    }
    let text = message.content.as_str()?.trim();
    let unfenced = text
        .strip_prefix("```json")
        .or_else(|| text.strip_prefix("```"))
        .and_then(|rest| rest.trim_end().strip_suffix("```"))
        .map_or(text, str::trim);
    let object = match serde_json::from_str::<Value>(unfenced) {
        Ok(Value::Object(object)) => object,
        _ => return None,
    };
    Some(AgentMessage { kind: MessageKind::Dict, content: Value::Object(object), ..message.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dict_reply_parses_fenced_json() {
        let message = AgentMessage::text("grader", "```json\n{\"satisfactory\": true}\n```");
        let dict = as_dict(&message).unwrap();
        assert_eq!(dict.kind, MessageKind::Dict);
        assert_eq!(dict.content, json!({"satisfactory": true}));
    }

    #[test]
    fn dict_reply_rejects_non_objects() {
        assert!(as_dict(&AgentMessage::text("a", "[1, 2]")).is_none());
        assert!(as_dict(&AgentMessage::text("a", "looks good")).is_none());
    }

    #[test]
    fn dict_task_is_python_json() {
        let run_task = RunTask {
            source: "string".to_owned(),
            content: json!({"question": "A", "model_answer": "B"}),
            message_type: TaskMessageType::Dict,
        };
        let message = task_message(&run_task);
        assert_eq!(message.content, json!("{\"question\": \"A\", \"model_answer\": \"B\"}"));
        assert_eq!(message.source, "string");
    }
}
