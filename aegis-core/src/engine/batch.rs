//! Batch runs: one team execution per item of a `dict` run whose content is an array.
//!
//! Items run concurrently up to [`EngineConfig::batch_concurrency`](crate::EngineConfig), each
//! with a team built afresh from the run's snapshot, so items share no conversation. One
//! failing item fails only itself. Each item's result is stored under the lease as soon as it
//! ends, and a later attempt of the run (after a crash or a shutdown) reads those results back
//! and executes only the items that have none, so a finished item is never executed twice.
//!
//! NOTE: an item's messages appear only in its `task_result`, not in the run's `messages` or
//! its event stream.

use std::collections::BTreeMap;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use serde_json::Value;

use crate::engine::Shared;
use crate::engine::execute::{as_dict, build_team, task_message, usage_of};
use crate::message::AgentMessage;
use crate::resource::{BatchCounts, BatchItem, RunSpec, RunStatus, RunTask, TaskMessageType, TaskResult, TeamResult};
use crate::run::{MessageSink, RunContext, RunError, VecSink};
use crate::storage::{Lease, StorageErrorKind};

/// Executes the items that have no stored result yet and assembles the run's result.
pub(crate) async fn run_batch(shared: &Shared, spec: &RunSpec, lease: &Lease) -> Result<TeamResult, RunError> {
    let Value::Array(items) = &spec.run.run_task.content else {
        return Err(RunError::new("ValueError", "a batch run's run_task.content must be an array"));
    };

    let stored =
        shared.storage.batch_items(spec.run.id).await.map_err(|error| {
            RunError::new("StorageError", format!("reading the finished batch items failed: {error}"))
        })?;
    let mut results: BTreeMap<usize, BatchItem> = stored.into_iter().map(|item| (item.index, item)).collect();
    if !results.is_empty() {
        tracing::info!(run_id = %spec.run.id, attempt = lease.attempt, finished = results.len(), "resuming batch run");
    }

    // A plain FuturesUnordered topped up to the limit, because a `buffer_unordered` stream
    // over borrowing closures trips the compiler's higher-ranked lifetime check in
    // `tokio::spawn`.
    let pending: Vec<(usize, &Value)> =
        items.iter().enumerate().filter(|(index, _)| !results.contains_key(index)).collect();
    let mut pending = pending.into_iter();
    let concurrency = shared.config.batch_concurrency.max(1);
    let mut executing = FuturesUnordered::new();
    loop {
        while executing.len() < concurrency {
            let Some((index, item)) = pending.next() else { break };
            executing.push(run_item(shared, spec, lease, index, item));
        }
        let Some(item) = executing.next().await else { break };
        let item = item?;
        results.insert(item.index, item);
    }

    let items: Vec<BatchItem> = results.into_values().collect();
    let mut counts = BatchCounts::default();
    let mut usage = crate::message::RequestUsage::default();
    for item in &items {
        match item.status {
            RunStatus::Complete => counts.complete += 1,
            _ => counts.error += 1,
        }
        if let Some(task_result) = &item.task_result {
            usage.add(usage_of(&task_result.messages));
        }
    }
    Ok(TeamResult { task_result: None, items: Some(items), counts: Some(counts), usage, duration: 0.0 })
}

/// Executes one item and stores its result; fails only when the store does.
async fn run_item(
    shared: &Shared,
    spec: &RunSpec,
    lease: &Lease,
    index: usize,
    item: &Value,
) -> Result<BatchItem, RunError> {
    let run_task = RunTask { content: item.clone(), message_type: TaskMessageType::Dict, ..spec.run.run_task.clone() };
    let mut sink = DictSink(VecSink::default());
    let outcome = match build_team(shared, spec) {
        Ok(mut team) => {
            let mut context = RunContext::new(spec.run.id, &mut sink);
            team.run(task_message(&run_task), &mut context).await.map(|outcome| outcome.stop_reason)
        }
        Err(error) => Err(error),
    };

    let messages = sink.0.messages;
    let result = match outcome {
        Ok(stop_reason) => BatchItem {
            index,
            status: RunStatus::Complete,
            task_result: Some(TaskResult { messages, stop_reason }),
            error_message: None,
            error_details: None,
        },
        Err(error) => BatchItem {
            index,
            status: RunStatus::Error,
            task_result: Some(TaskResult { messages, stop_reason: None }),
            error_message: Some(error.error_message),
            error_details: Some(*error.details),
        },
    };
    tracing::debug!(run_id = %spec.run.id, attempt = lease.attempt, index, status = result.status.as_str(), "batch item ended");

    match shared.storage.save_batch_item(lease, &result).await {
        Ok(()) => Ok(result),
        Err(error) if *error.kind() == StorageErrorKind::LeaseLost => Err(RunError::lease_lost(error.to_string())),
        Err(error) => Err(RunError::new("StorageError", format!("recording batch item {index} failed: {error}"))),
    }
}

/// Keeps an item's messages in memory, storing JSON-object replies as `dict` messages.
struct DictSink(VecSink);

#[async_trait::async_trait]
impl MessageSink for DictSink {
    async fn emit(&mut self, message: &AgentMessage) -> Result<(), RunError> {
        let stored = as_dict(message).unwrap_or_else(|| message.clone());
        self.0.emit(&stored).await
    }
}
