//! `estimated_completion_time` over the real `aegis` binary: one worker and a slow mock model
//! keep runs queued, so the estimates of queued, executing and finished runs can be compared.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use serde_json::{Value, json};
use tempfile::TempDir;

use aegis_core::Timestamp;
use aegis_http::mock::{MockConfig, MockProvider, MockReply};
use common::process::{AegisProcess, args, create_run, session_with, wait_run, wait_status};
use common::{Api, run_body};

/// Reads the `estimated_completion_time` of a run document.
fn estimate(run: &Value) -> Timestamp {
    let text = run["estimated_completion_time"].as_str().unwrap_or_else(|| panic!("no estimate in {run}"));
    Timestamp::parse(text).unwrap()
}

/// Reads the first `status` event of a run's stream and returns its data.
async fn first_status_event(api: &Api, run_id: &str) -> Value {
    let url = format!("{}/api/v1/run/{run_id}/stream", api.base);
    let mut response = api.http.get(url).send().await.unwrap();
    let mut text = String::new();
    loop {
        let chunk = tokio::time::timeout(Duration::from_secs(10), response.chunk()).await.expect("the stream stalled");
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap().expect("the stream ended early")));
        let Some(event) = text.split("\n\n").find(|event| event.contains("event: status")) else { continue };
        let data = event.lines().find_map(|line| line.strip_prefix("data: ")).expect("a status event has data");
        return serde_json::from_str(data).unwrap();
    }
}

#[tokio::test]
async fn estimates_follow_queue_position() {
    let mock = MockProvider::start(MockConfig::default()).await.unwrap();
    // The first run occupies the only worker while the test reads the queued runs.
    mock.push(MockReply::text("{\"satisfactory\": true}").delayed(Duration::from_secs(5)));
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("aegis.db").to_string_lossy().into_owned();
    let server = AegisProcess::start(&args(&[&["--db", db.as_str(), "--workers", "1"]]), &mock.base_url()).await;
    let api = &server.api;
    let (task_id, session_id) = session_with(api, json!({})).await;

    let (status, created) = api.post("/run", &run_body(&session_id, &task_id)).await;
    assert_eq!(status, 201, "{created}");
    assert!(created["data"]["estimated_completion_time"].is_string(), "POST /run returns an estimate: {created}");
    assert_eq!(created["data"]["status"], "active", "the free worker takes the run as it is created: {created}");
    assert!(created["data"]["started_at"].is_string(), "a run taken at creation has started: {created}");
    let first = created["data"]["id"].as_str().unwrap().to_owned();
    let mut queued = Vec::new();
    for _ in 0..3 {
        queued.push(create_run(api, &run_body(&session_id, &task_id)).await);
    }

    let active = wait_status(api, &first, "active").await;
    let started_at = Timestamp::parse(active["started_at"].as_str().unwrap()).unwrap();
    assert!(estimate(&active) > started_at, "an active run ends after it started: {active}");

    // With one worker, each run further back in the queue waits one more run's duration.
    let mut previous = estimate(&active);
    for run_id in &queued {
        let (_, body) = api.get(&format!("/run/{run_id}")).await;
        assert_eq!(body["data"]["status"], "created", "the worker is busy with the first run: {body}");
        let current = estimate(&body["data"]);
        assert!(current > previous, "run {run_id} is further back but is estimated to end sooner: {body}");
        previous = current;
    }

    let (_, listed) = api.get(&format!("/run?session_id={session_id}&order=asc")).await;
    let listed: Vec<Timestamp> = listed["data"].as_array().unwrap().iter().map(estimate).collect();
    assert_eq!(listed.len(), 4, "the list has every run");
    assert!(listed.windows(2).all(|pair| pair[0] < pair[1]), "listed estimates grow with the queue: {listed:?}");

    let (_, waited) = api.get(&format!("/run/{}?wait=0.1", queued[0])).await;
    assert!(waited["data"]["estimated_completion_time"].is_string(), "a long poll returns the estimate: {waited}");

    let status_event = first_status_event(api, &queued[2]).await;
    assert_eq!(status_event["status"], "created", "{status_event}");
    assert!(status_event["estimated_completion_time"].is_string(), "a status event carries the estimate");

    for run_id in std::iter::once(&first).chain(&queued) {
        let run = wait_run(api, run_id).await;
        assert_eq!(run["status"], "complete", "{run}");
        assert_eq!(run["estimated_completion_time"], Value::Null, "a finished run has no estimate: {run}");
    }
    server.stop().await;
}
