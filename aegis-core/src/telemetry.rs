//! The engine's metrics, recorded through the [`metrics`] facade.
//!
//! `aegis-core` records and never exports: each function here updates a counter, gauge or
//! histogram in whatever recorder the process installed, and does nothing when none is. The
//! `aegis` server installs a Prometheus recorder and serves it at `/metrics`; an embedding
//! application can install any other `metrics` recorder. Every name starts with `aegis_`.
//!
//! Model and provider labels come from team components, so a deployment that lets clients
//! name arbitrary models gets one series per name.

use std::time::Duration;

use metrics::{Unit, counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram};

use crate::message::RequestUsage;
use crate::storage::RunOutcome;

/// Runs that ended, by `status` and `error_type` (empty unless the status is `error`).
pub const RUNS_TOTAL: &str = "aegis_runs_total";
/// Runs this process executes now.
pub const RUNS_ACTIVE: &str = "aegis_runs_active";
/// Runs stored as `created` and not yet started, in the whole store.
pub const QUEUE_DEPTH: &str = "aegis_queue_depth";
/// Duration of model calls, by `provider` and `model`, retries included.
pub const MODEL_CALL_DURATION: &str = "aegis_model_call_duration_seconds";
/// Tokens of successful model calls, by `provider`, `model` and `kind` (`prompt` or
/// `completion`).
pub const MODEL_TOKENS_TOTAL: &str = "aegis_model_tokens_total";
/// Retries of failed model calls, by `provider`.
pub const MODEL_RETRIES_TOTAL: &str = "aegis_model_retries_total";

/// Registers the help text and unit of every engine metric with the installed recorder, so
/// an exporter can print them. Safe to call more than once.
pub fn describe() {
    describe_counter!(RUNS_TOTAL, "Runs that ended, by status and error type.");
    describe_gauge!(RUNS_ACTIVE, "Runs this process is executing.");
    describe_gauge!(QUEUE_DEPTH, "Runs created and not started yet, in the whole store.");
    describe_histogram!(MODEL_CALL_DURATION, Unit::Seconds, "Duration of model calls, retries included.");
    describe_counter!(MODEL_TOKENS_TOTAL, "Tokens of successful model calls, by kind (prompt or completion).");
    describe_counter!(MODEL_RETRIES_TOTAL, "Retries of failed model calls.");
}

/// Counts a run whose outcome was stored.
pub(crate) fn run_ended(outcome: &RunOutcome) {
    let error_type = outcome.error_details.as_ref().map(|details| details.error_type.clone()).unwrap_or_default();
    counter!(RUNS_TOTAL, "status" => outcome.status.as_str().to_owned(), "error_type" => error_type).increment(1);
}

/// Counts a run that a sweep ended without a worker (`stopped`, or `error` with
/// `error_type`).
pub(crate) fn run_ended_by_sweep(status: &'static str, error_type: &'static str) {
    counter!(RUNS_TOTAL, "status" => status, "error_type" => error_type).increment(1);
}

/// Tracks one run executing in this process: the gauge goes up now and down when the
/// returned guard drops, however the execution ends.
pub(crate) fn run_active() -> ActiveRun {
    gauge!(RUNS_ACTIVE).increment(1.0);
    ActiveRun
}

/// Decrements [`RUNS_ACTIVE`] when dropped.
#[derive(Debug)]
pub(crate) struct ActiveRun;

impl Drop for ActiveRun {
    fn drop(&mut self) {
        gauge!(RUNS_ACTIVE).decrement(1.0);
    }
}

/// Records a finished model call: its duration, and its tokens when it succeeded.
pub(crate) fn model_call(provider: &str, model: &str, elapsed: Duration, usage: Option<RequestUsage>) {
    let (provider, model) = (provider.to_owned(), model.to_owned());
    histogram!(MODEL_CALL_DURATION, "provider" => provider.clone(), "model" => model.clone())
        .record(elapsed.as_secs_f64());
    let Some(usage) = usage else {
        return;
    };
    counter!(MODEL_TOKENS_TOTAL, "provider" => provider.clone(), "model" => model.clone(), "kind" => "prompt")
        .increment(usage.prompt_tokens);
    counter!(MODEL_TOKENS_TOTAL, "provider" => provider, "model" => model, "kind" => "completion")
        .increment(usage.completion_tokens);
}

/// Counts one retry of a model call.
pub(crate) fn model_retry(provider: &str) {
    counter!(MODEL_RETRIES_TOTAL, "provider" => provider.to_owned()).increment(1);
}
