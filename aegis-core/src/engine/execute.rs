//! Executing one claimed run: build the team from the run's snapshot, feed it the task
//! message, record every message under the lease, and store the outcome.
//!
//! The team's future runs beside two others: the heartbeat, which ends the run silently when
//! the lease is lost (a newer attempt owns the run), and the run's cancellation token. When
//! the token fires, the team's future is dropped where it waits, which also aborts an
//! in-flight model call, and the run ends `stopped` with the messages it recorded so far, or
//! (during shutdown) goes back to the queue.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;
use tracing::Instrument;

use crate::engine::Shared;
use crate::engine::batch;
use crate::engine::budget;
use crate::engine::control::{RunControl, Running, Stop};
use crate::message::{AgentMessage, MessageKind, RequestUsage};
use crate::pyjson;
use crate::registry::Overrides;
use crate::resource::{RunSpec, RunTask, TaskMessageType, TaskResult, TeamResult};
use crate::run::{MessageSink, RunContext, RunError, RunErrorKind};
use crate::storage::{Lease, RunOutcome, Storage, StorageErrorKind, continues_conversation, session_limit};
use crate::team::Team;

/// The longest `team_metadata.run_timeout_s` a session may set: one day.
const MAX_RUN_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// The worker's next step once a run stops executing.
enum Ending {
    /// Store this outcome.
    Finish(Box<RunOutcome>),
    /// Hand the run back to the queue (shutdown).
    Release,
    /// Write nothing: the lease is gone.
    LeaseLost,
}

/// Executes a claimed run whose `control` the dispatcher registered, and stores how it ended.
pub(crate) async fn execute(shared: &Arc<Shared>, spec: RunSpec, lease: Lease, control: Arc<RunControl>) {
    let run_id = spec.run.id;
    let session_id = spec.run.session_id;
    let attempt = lease.attempt;
    shared.running.notify_change(run_id);
    let _active = crate::telemetry::run_active();
    tracing::debug!(%run_id, %session_id, attempt, "run started");

    // Model calls open their spans inside this one, so their events carry the session too.
    let span = tracing::info_span!("run", %run_id, %session_id, attempt);
    let ending = supervise(shared, &spec, &lease, &control).instrument(span).await;
    match ending {
        Ending::Finish(outcome) => store_outcome(shared, &lease, &outcome, session_id).await,
        Ending::Release => match shared.storage.release_run(&lease).await {
            Ok(()) => tracing::info!(%run_id, %session_id, attempt, "run released to the queue for the next start"),
            Err(error) => {
                tracing::warn!(%run_id, attempt, %error, "releasing the run failed; it is re-queued when its lease expires")
            }
        },
        Ending::LeaseLost => tracing::warn!(%run_id, attempt, "lease lost; abandoning the run to its newer attempt"),
    }

    shared.running.unregister(run_id, &control);
    // The session's next run may wait for this one to end, and the dispatcher would find it
    // only at its next poll.
    if session_limit(&spec.team_metadata).is_some() {
        shared.wake.notify_one();
    }
}

async fn store_outcome(shared: &Shared, lease: &Lease, outcome: &RunOutcome, session_id: uuid::Uuid) {
    let (run_id, attempt) = (lease.run_id, lease.attempt);
    match shared.storage.finish_run(lease, outcome).await {
        Ok(()) => {
            crate::telemetry::run_ended(outcome);
            let status = outcome.status.as_str();
            match &outcome.error_message {
                Some(error) => tracing::warn!(%run_id, %session_id, attempt, status, error = %error, "run ended"),
                None => tracing::debug!(%run_id, %session_id, attempt, status, "run ended"),
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

/// Runs the team under the lease, the deadline and the cancellation token.
async fn supervise(shared: &Shared, spec: &RunSpec, lease: &Lease, control: &RunControl) -> Ending {
    let started = Instant::now();
    let deadline = run_timeout(shared, spec);
    let dict_replies = spec.run.run_task.message_type == TaskMessageType::Dict;
    let mut sink = StoreSink {
        storage: shared.storage.as_ref(),
        running: &shared.running,
        lease,
        dict_replies,
        messages: Vec::new(),
        control,
    };

    let finished = {
        let work = tokio::time::timeout(deadline, attempt(shared, spec, lease, &mut sink));
        tokio::select! {
            finished = work => Some(finished),
            () = keep_lease(shared, lease.clone()) => return Ending::LeaseLost,
            () = control.token.cancelled() => None,
        }
    };
    let duration = started.elapsed().as_secs_f64();

    let Some(finished) = finished else {
        return match control.stop_reason() {
            Some(Stop::Cancel(reason)) => {
                let result = TeamResult { usage: usage_of(&sink.messages), duration, ..TeamResult::default() };
                Ending::Finish(Box::new(RunOutcome::stopped(&reason, sink.messages, Some(result))))
            }
            Some(Stop::Release) | None => Ending::Release,
        };
    };

    let partial = |messages: Vec<AgentMessage>, stop_reason: Option<String>, usage: RequestUsage| TeamResult {
        task_result: Some(TaskResult { messages, stop_reason }),
        usage,
        duration,
        ..TeamResult::default()
    };
    let outcome = match finished {
        Err(_elapsed) => {
            let seconds = deadline.as_secs_f64();
            let unit = if seconds == 1.0 { "second" } else { "seconds" };
            let error = RunError::new("RunTimeoutError", format!("the run did not finish within {seconds} {unit}"));
            let usage = usage_of(&sink.messages);
            failed(Some(partial(sink.messages, None, usage)), error)
        }
        Ok(Attempt::Team { result: Ok(stop_reason), usage, state }) => {
            let mut outcome = RunOutcome::complete(partial(sink.messages, stop_reason, usage));
            outcome.session_state = state;
            outcome
        }
        Ok(Attempt::Team { result: Err(error), .. }) if error.kind == RunErrorKind::LeaseLost => {
            return Ending::LeaseLost;
        }
        Ok(Attempt::Team { result: Err(error), usage, .. }) => failed(Some(partial(sink.messages, None, usage)), error),
        Ok(Attempt::Batch(Ok(mut result))) => {
            result.duration = duration;
            RunOutcome::complete(result)
        }
        Ok(Attempt::Batch(Err(error))) if error.kind == RunErrorKind::LeaseLost => return Ending::LeaseLost,
        Ok(Attempt::Batch(Err(error))) => failed(None, error),
    };
    Ending::Finish(Box::new(outcome))
}

/// The end of one attempt's execution.
enum Attempt {
    /// A single team execution: its stop reason or failure, the tokens it used, and the team
    /// state to keep for the session's next run.
    Team { result: Result<Option<String>, RunError>, usage: RequestUsage, state: Option<Value> },
    /// A batch run: the assembled result, or the failure that ended the whole run.
    Batch(Result<TeamResult, RunError>),
}

async fn attempt(shared: &Shared, spec: &RunSpec, lease: &Lease, sink: &mut StoreSink<'_>) -> Attempt {
    let allowance = match budget::allowance(shared, &spec.run).await {
        Ok(allowance) => allowance,
        Err(error) if spec.run.batch_mode => return Attempt::Batch(Err(error)),
        Err(error) => return Attempt::Team { result: Err(error), usage: RequestUsage::default(), state: None },
    };
    if spec.run.batch_mode {
        return Attempt::Batch(batch::run_batch(shared, spec, lease).await);
    }

    let mut team = match build_team(shared, spec) {
        Ok(team) => team,
        Err(error) => return Attempt::Team { result: Err(error), usage: RequestUsage::default(), state: None },
    };
    let continues = continues_conversation(&spec.team_metadata);
    if continues && let Err(error) = restore_state(shared, spec, team.as_mut()).await {
        return Attempt::Team { result: Err(error), usage: RequestUsage::default(), state: None };
    }

    let mut context = RunContext::new(spec.run.id, sink);
    if let Some(allowance) = allowance {
        context.limit_tokens(allowance);
    }
    let result = team.run(task_message(&spec.run.run_task), &mut context).await;
    let usage = context.usage();
    let state = continues.then(|| team.save_state());
    Attempt::Team { result: result.map(|outcome| outcome.stop_reason), usage, state }
}

/// Builds the run's team from its snapshot, with the session's overrides.
pub(crate) fn build_team(shared: &Shared, spec: &RunSpec) -> Result<Box<dyn Team>, RunError> {
    let mut overrides = Overrides::from_team_metadata(&spec.team_metadata);
    overrides.stub_error_step = spec.stub_error_step;
    shared.registry.build_team(&spec.team_component, &overrides).map_err(|problems| {
        let list: Vec<String> =
            problems.iter().map(|problem| format!("{}: {}", problem.field, problem.message)).collect();
        RunError::new("ValueError", format!("the team component does not build: {}", list.join("; ")))
    })
}

/// Loads the team state the session's last complete run left, if any.
async fn restore_state(shared: &Shared, spec: &RunSpec, team: &mut dyn Team) -> Result<(), RunError> {
    let state =
        shared.storage.session_state(spec.run.session_id).await.map_err(|error| {
            RunError::new("StorageError", format!("reading the session's team state failed: {error}"))
        })?;
    match state {
        Some(state) => team.load_state(&state),
        None => Ok(()),
    }
}

/// Returns the run's deadline: the session's `run_timeout_s` when it is a positive number of
/// seconds, else the engine's default.
fn run_timeout(shared: &Shared, spec: &RunSpec) -> Duration {
    let seconds = spec.team_metadata.get("run_timeout_s").and_then(Value::as_f64).filter(|seconds| *seconds > 0.0);
    match seconds {
        Some(seconds) => Duration::try_from_secs_f64(seconds).unwrap_or(MAX_RUN_TIMEOUT).min(MAX_RUN_TIMEOUT),
        None => shared.config.run_timeout,
    }
}

/// Sums the token counts recorded on messages.
pub(crate) fn usage_of(messages: &[AgentMessage]) -> RequestUsage {
    let mut usage = RequestUsage::default();
    for message in messages {
        if let Some(counts) = message.models_usage {
            usage.add(counts);
        }
    }
    usage
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
                tracing::warn!(run_id = %lease.run_id, attempt = lease.attempt, %error, "renewing the lease failed");
            }
        }
    }
}

fn failed(team_result: Option<TeamResult>, error: RunError) -> RunOutcome {
    RunOutcome::error(team_result, error.error_message, *error.details)
}

/// Builds the task message: text as given, a dict as Python's `json.dumps` text.
pub(crate) fn task_message(run_task: &RunTask) -> AgentMessage {
    let content = match (&run_task.message_type, &run_task.content) {
        (TaskMessageType::Text, Value::String(text)) => text.clone(),
        (_, content) => pyjson::dumps(content),
    };
    AgentMessage::text(&run_task.source, content)
}

/// Records messages in the store under the run's lease and passes chunks to live followers.
struct StoreSink<'a> {
    storage: &'a dyn Storage,
    running: &'a Running,
    lease: &'a Lease,
    dict_replies: bool,
    messages: Vec<AgentMessage>,
    control: &'a RunControl,
}

#[async_trait]
impl MessageSink for StoreSink<'_> {
    async fn emit(&mut self, message: &AgentMessage) -> Result<(), RunError> {
        let stored = if self.dict_replies { as_dict(message) } else { None };
        let stored = stored.unwrap_or_else(|| message.clone());
        match self.storage.append_message(self.lease, &stored).await {
            Ok(()) => {
                self.messages.push(stored);
                self.running.notify_change(self.lease.run_id);
                Ok(())
            }
            Err(error) if *error.kind() == StorageErrorKind::LeaseLost => Err(RunError::lease_lost(error.to_string())),
            Err(error) => Err(RunError::new("StorageError", format!("recording a message failed: {error}"))),
        }
    }

    fn emit_transient(&mut self, message: &AgentMessage) {
        self.control.publish_chunk(message);
    }
}

/// Returns the message as a `dict` message when its text is a JSON object (optionally inside
/// one ```json fence), as dict-mode runs store replies.
pub(crate) fn as_dict(message: &AgentMessage) -> Option<AgentMessage> {
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
