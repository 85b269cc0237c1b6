//! The closed loop: each worker creates a run on its own session, waits until the run is
//! terminal (`GET /run/{id}?wait=`, which long-polls), records the create-to-terminal latency,
//! and starts the next run at once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;

use crate::target::{Api, SessionIds, StatusError, run_body};

/// Limits of one closed loop.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LoopConfig {
    /// No worker starts a run after this long.
    pub(crate) duration: Duration,
    /// No more runs than this are started, when set.
    pub(crate) max_runs: Option<u64>,
    /// Seconds one long poll may wait (`?wait=`).
    pub(crate) wait_s: u64,
    /// A run still not terminal this long after its creation counts as an error.
    pub(crate) run_timeout: Duration,
}

/// Latencies, failures and duration of one closed loop.
#[derive(Debug, Default)]
pub(crate) struct LoopStats {
    /// Create-to-terminal latency of every run that ended `complete`.
    pub(crate) latencies: Vec<Duration>,
    /// When each of those runs ended, counted from the loop's start.
    pub(crate) ends: Vec<Duration>,
    /// Failures by kind: HTTP errors, runs that ended `error` or `stopped`, timeouts.
    pub(crate) errors: BTreeMap<String, u64>,
    /// From the first run's creation until the last worker stopped.
    pub(crate) elapsed: Duration,
}

impl LoopStats {
    fn error(&mut self, kind: String) {
        *self.errors.entry(kind).or_default() += 1;
    }

    /// Runs completed per second between the first completion and `duration`, after which
    /// no run starts. The overall rate (completions over `elapsed`) also counts the first
    /// model latency, when nothing can end yet. It counts the drain after `duration` too,
    /// when fewer runs are in flight. This rate leaves both out; `None` when no run ended in
    /// between.
    pub(crate) fn steady_runs_per_s(&self, duration: Duration) -> Option<f64> {
        let first = self.ends.iter().min()?;
        let window = duration.checked_sub(*first).filter(|window| !window.is_zero())?;
        let ended = self.ends.iter().filter(|end| **end <= duration).count();
        Some(ended as f64 / window.as_secs_f64())
    }
}

/// Runs one worker per session until the duration or the run count is reached, then waits
/// for the runs in flight. Worker `i` talks to `replicas[i % replicas.len()]`. A hard bound
/// of `duration + run_timeout` plus a margin ends workers that still hang, counting each as
/// an error.
pub(crate) async fn run(replicas: &[Api], sessions: Vec<SessionIds>, config: LoopConfig) -> LoopStats {
    let stats = Arc::new(Mutex::new(LoopStats::default()));
    let started_runs = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + config.duration;

    let mut workers = tokio::task::JoinSet::new();
    for (index, ids) in sessions.into_iter().enumerate() {
        let api = replicas[index % replicas.len()].clone();
        let (stats, started_runs) = (Arc::clone(&stats), Arc::clone(&started_runs));
        workers.spawn(async move {
            while Instant::now() < deadline {
                let ticket = started_runs.fetch_add(1, Ordering::Relaxed);
                if config.max_runs.is_some_and(|max| ticket >= max) {
                    break;
                }
                let created = Instant::now();
                let outcome = one_run(&api, &ids, &config).await;
                let latency = created.elapsed();
                let mut stats = stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                match outcome {
                    Ok(()) => {
                        stats.latencies.push(latency);
                        stats.ends.push(started.elapsed());
                    }
                    Err(kind) => stats.error(kind),
                }
            }
        });
    }

    let bound = config.duration + config.run_timeout + Duration::from_secs(10);
    let all_done = async { while workers.join_next().await.is_some() {} };
    if tokio::time::timeout(bound, all_done).await.is_err() {
        let cut_off = workers.len() as u64;
        workers.abort_all();
        let mut stats = stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *stats.errors.entry("worker cut off at the time bound".to_owned()).or_default() += cut_off;
    }

    let mut stats = std::mem::take(&mut *stats.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    stats.elapsed = started.elapsed();
    stats
}

/// Creates one run and long-polls it until it is terminal. Returns the kind of failure, if
/// any, as the error.
async fn one_run(api: &Api, ids: &SessionIds, config: &LoopConfig) -> Result<(), String> {
    let created = Instant::now();
    let run = post_run(api, ids).await.map_err(|error| format!("POST /run: {}", error_kind(&error)))?;
    let id = run["id"].as_str().ok_or("POST /run: the response has no run id")?.to_owned();
    let mut status = run["status"].as_str().unwrap_or_default().to_owned();

    let url = format!("{}/run/{id}?wait={}", api.base, config.wait_s);
    while !is_terminal(&status) {
        if created.elapsed() >= config.run_timeout {
            return Err(format!("run still {status} after {} s", config.run_timeout.as_secs()));
        }
        let run = get_json(api, &url).await.map_err(|error| format!("GET /run/{{id}}: {}", error_kind(&error)))?;
        status = run["status"].as_str().unwrap_or_default().to_owned();
    }
    match status.as_str() {
        "complete" => Ok(()),
        other => Err(format!("run ended {other}")),
    }
}

async fn post_run(api: &Api, ids: &SessionIds) -> anyhow::Result<Value> {
    let response =
        api.http.post(format!("{}/run", api.base)).json(&run_body(ids)).send().await.context("sending failed")?;
    Api::data(response).await
}

async fn get_json(api: &Api, url: &str) -> anyhow::Result<Value> {
    let response = api.http.get(url).send().await.context("sending failed")?;
    Api::data(response).await
}

/// Names a failed request by its HTTP status or transport failure, so the report counts
/// failures by kind rather than one line per run.
fn error_kind(error: &anyhow::Error) -> String {
    if let Some(status) = error.downcast_ref::<StatusError>() {
        return format!("HTTP {}", status.status);
    }
    match error.downcast_ref::<reqwest::Error>() {
        Some(error) if error.is_timeout() => "timed out".to_owned(),
        Some(error) if error.is_connect() => "connection failed".to_owned(),
        Some(error) if error.is_decode() => "invalid response body".to_owned(),
        Some(_) => "request failed".to_owned(),
        None => format!("{error:#}"),
    }
}

pub(crate) fn is_terminal(status: &str) -> bool {
    matches!(status, "complete" | "error" | "stopped")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_rate_leaves_out_start_and_drain() {
        let check = |ends_s: &[u64], duration_s: u64, expected: Option<f64>| {
            let stats = LoopStats {
                ends: ends_s.iter().map(|end| Duration::from_secs(*end)).collect(),
                ..LoopStats::default()
            };
            assert_eq!(stats.steady_runs_per_s(Duration::from_secs(duration_s)), expected, "ends {ends_s:?}");
        };

        check(&[5, 6, 7, 61], 60, Some(3.0 / 55.0));
        check(&[10, 10, 20, 30], 20, Some(3.0 / 10.0));
        check(&[], 60, None);
        check(&[60, 61], 60, None);
    }
}
