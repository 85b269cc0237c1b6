//! Prometheus metrics: the process's recorder and the `GET /metrics` handler.
//!
//! The engine in `aegis-core` records through the `metrics` crate, a facade in the way `log`
//! and `tracing` are: a library calls `counter!` or `histogram!` and the binary decides where
//! the values go. That keeps the core free of any exporter and of HTTP, and lets an embedding
//! application install its own recorder. This module installs `metrics-exporter-prometheus`'s
//! recorder with its HTTP listener feature off, and the API router renders it at `/metrics`
//! in the Prometheus text format, so the metrics share the server's address, port and
//! middleware. The `prometheus-client` crate was the alternative; it would need a registry
//! handle passed down into the engine.
//!
//! The recorder is process-wide: [`crate::app`] installs it the first time it builds a
//! router, and every server in the process reports into it. When another recorder is
//! already installed, `/metrics` returns 503 and the other recorder keeps every value.
//!
//! Every name starts with `aegis_`. The HTTP series use the matched route template (such as
//! `/api/v1/run/{id}`), not the raw path, so the number of series stays bounded; requests that
//! match no route count as `unmatched`. `aegis_queue_depth` is read from the store at scrape
//! time. `aegis_core::telemetry` lists the engine's metrics.

use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics::{Unit, describe_counter, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use aegis_core::telemetry::{MODEL_CALL_DURATION, QUEUE_DEPTH};
use aegis_core::{Aegis, FieldError, RunStatus};

use crate::error::ApiError;

/// Requests served, by `route`, `method` and `status`.
pub(crate) const HTTP_REQUESTS_TOTAL: &str = "aegis_http_requests_total";
/// Time from receiving a request to sending its response head, by `route`.
pub(crate) const HTTP_REQUEST_DURATION: &str = "aegis_http_request_duration_seconds";

/// Bucket bounds of request durations, in seconds. Reads take milliseconds; a long poll
/// (`?wait=`) or a cancel that waits for its worker can take up to a minute.
const HTTP_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Bucket bounds of model call durations, in seconds, retries and backoff included.
const MODEL_BUCKETS: &[f64] = &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0];

/// How often histogram samples are folded into their buckets between scrapes, which
/// bounds the memory that unscraped samples take.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// The content type of the Prometheus text exposition format, version 0.0.4.
const TEXT_FORMAT: &str = "text/plain; version=0.0.4; charset=utf-8";

static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// Installs the Prometheus recorder on first use and returns its handle, or `None` when the
/// process already had another recorder.
pub(crate) fn handle() -> Option<&'static PrometheusHandle> {
    HANDLE.get_or_init(install).as_ref()
}

fn install() -> Option<PrometheusHandle> {
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Full(HTTP_REQUEST_DURATION.to_owned()), HTTP_BUCKETS)
        .and_then(|builder| {
            builder.set_buckets_for_metric(Matcher::Full(MODEL_CALL_DURATION.to_owned()), MODEL_BUCKETS)
        });
    let recorder = match builder {
        Ok(builder) => builder.build_recorder(),
        Err(error) => {
            tracing::error!(%error, "building the prometheus recorder failed; /metrics returns 503");
            return None;
        }
    };
    let handle = recorder.handle();
    if let Err(error) = metrics::set_global_recorder(recorder) {
        tracing::warn!(%error, "another metrics recorder is installed; /metrics returns 503");
        return None;
    }

    describe_counter!(HTTP_REQUESTS_TOTAL, "HTTP requests served, by route template, method and status.");
    describe_histogram!(HTTP_REQUEST_DURATION, Unit::Seconds, "Time to the response head, by route template.");
    aegis_core::telemetry::describe();
    spawn_upkeep(handle.clone());
    Some(handle)
}

/// Folds histogram samples on a thread of its own, so it runs with or without an async
/// runtime and outlives any one server.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new().name("aegis-metrics-upkeep".to_owned()).spawn(move || {
        loop {
            std::thread::sleep(UPKEEP_INTERVAL);
            handle.run_upkeep();
        }
    });
    if let Err(error) = spawned {
        tracing::warn!(%error, "starting the metrics upkeep thread failed; samples are folded at each scrape only");
    }
}

/// `GET /metrics`: every metric of the process in the Prometheus text format, with the queue
/// depth read from the store now.
#[utoipa::path(
    get, path = "/metrics", tag = "service", operation_id = "metrics",
    responses(
        (status = 200, description = "Every metric in the Prometheus text format (version 0.0.4); names start with `aegis_`.", content_type = "text/plain", body = String),
        (status = 401, description = "The server checks API keys, and the request has no valid key.", body = crate::openapi::schemas::ErrorEnvelope),
        (status = 503, description = "Another metrics recorder is installed in this process.", body = crate::openapi::schemas::ErrorEnvelope),
    ),
)]
pub(crate) async fn render(State(aegis): State<Aegis>) -> Response {
    let Some(handle) = handle() else {
        let message = "Metrics are unavailable because another metrics recorder is installed in this process";
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
            .with_error(FieldError::new("", "unavailable", message.to_lowercase()))
            .into_response();
    };

    match aegis.storage().count_runs(RunStatus::Created).await {
        Ok(depth) => metrics::gauge!(QUEUE_DEPTH).set(depth as f64),
        // NOTE: the gauge keeps its last value when the store fails; /readyz reports the cause.
        Err(error) => tracing::warn!(%error, "reading the queue depth for /metrics failed"),
    }
    handle.run_upkeep();
    ([(header::CONTENT_TYPE, TEXT_FORMAT)], handle.render()).into_response()
}
