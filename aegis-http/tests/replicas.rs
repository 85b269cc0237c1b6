//! Three `aegis` replicas on one PostgreSQL database. A run created through one replica is
//! read, waited on, streamed and cancelled through the others. Idempotency keys and the stub
//! error sequence are shared. A replica killed with SIGKILL leaves its runs to the others, and
//! each run ends exactly once. Leases and polls are short (CLI flags) so the tests stay quick.
//!
//! Each test creates a database of its own on the server `AEGIS_TEST_DATABASE_URL` names. The
//! tests are skipped (with a line on stderr) when it is unset, unless `CI` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use futures::future::join_all;
use serde_json::{Value, json};

use aegis_http::mock::{MockConfig, MockProvider, MockReply};
use aegis_store_postgres::testing::TestDatabase;
use common::process::{AegisProcess, args, create_run, session_with, wait_run, wait_status};
use common::{Api, run_body};

/// Engine flags for quick tests: a 1.5 s lease renewed every 0.5 s, polls every 0.1 s, and a
/// small pool, since several replicas of several tests share one PostgreSQL server.
const FAST: &[&str] = &["--lease-ms", "1500", "--heartbeat-ms", "500", "--poll-ms", "100", "--database-pool-size", "8"];

/// Starts one replica on `database_url` with the quick engine flags and `extra`.
async fn start_replica(database_url: &str, base_url: &str, extra: &[&str]) -> AegisProcess {
    AegisProcess::start(&args(&[&["--database-url", database_url], FAST, extra]), base_url).await
}

/// Starts three replicas at once, so their schema migrations race.
async fn start_three(database_url: &str, base_url: &str, extra: &[&str]) -> [AegisProcess; 3] {
    let started = join_all((0..3).map(|_| start_replica(database_url, base_url, extra))).await;
    started.try_into().ok().unwrap()
}

/// Reads a run's SSE stream until `end`; returns `(event, data)` of every event.
async fn read_stream(api: &Api, run_id: &str) -> Vec<(String, Value)> {
    let mut response = api.http.get(format!("{}/api/v1/run/{run_id}/stream", api.base)).send().await.unwrap();
    assert_eq!(response.status(), 200);

    let mut buffer = String::new();
    let mut events = Vec::new();
    while let Some(bytes) = tokio::time::timeout(Duration::from_secs(30), response.chunk()).await.unwrap().unwrap() {
        buffer.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut event, mut data) = ("message".to_owned(), String::new());
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("event:") {
                    event = value.trim().to_owned();
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push_str(value.trim_start());
                }
            }
            if !data.is_empty() {
                events.push((event, serde_json::from_str(&data).unwrap()));
            }
        }
    }
    events
}

#[tokio::test]
async fn create_stream_cancel_across_replicas() {
    let Some(database) = TestDatabase::create("create_stream_cancel_across_replicas").await else {
        return;
    };
    let mock = MockProvider::start(MockConfig::default()).await.unwrap();
    let [a, b, c] = start_three(database.url(), &mock.base_url(), &[]).await;
    let (task_id, session_id) = session_with(&a.api, json!({})).await;

    // A run stuck in a model call on whichever replica claims it.
    mock.push(MockReply::text("{\"satisfactory\": true}").delayed(Duration::from_secs(60)));
    let run_id = create_run(&a.api, &run_body(&session_id, &task_id)).await;
    let stream = tokio::spawn({
        let (api, run_id) = (b.api.clone(), run_id.clone());
        async move { read_stream(&api, &run_id).await }
    });
    let waiter = tokio::spawn({
        let (api, run_id) = (b.api.clone(), run_id.clone());
        async move { wait_run(&api, &run_id).await }
    });
    wait_status(&c.api, &run_id, "active").await;

    let (status, body) =
        c.api.post(&format!("/run/{run_id}/cancel"), &json!({"reason": "sent to another replica"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["status"], "stopped", "the cancel reached the replica executing the run: {body}");
    assert_eq!(body["data"]["team_result"]["task_result"]["stop_reason"], "sent to another replica");

    let waited = waiter.await.unwrap();
    assert_eq!(waited["status"], "stopped", "a long poll on another replica sees the end: {waited}");
    let events = stream.await.unwrap();
    let names: Vec<&str> = events.iter().map(|(event, _)| event.as_str()).collect();
    assert_eq!(names, ["status", "status", "status", "end"], "{events:?}");
    let statuses: Vec<&Value> = events[..3].iter().map(|(_, data)| &data["status"]).collect();
    assert_eq!(statuses, [&json!("created"), &json!("active"), &json!("stopped")], "{events:?}");
    assert_eq!(events[3].1["status"], "stopped");
    let (status, read) = a.api.get(&format!("/run/{run_id}")).await;
    assert_eq!(status, 200);
    assert_eq!(read["data"], body["data"], "every replica reads the same run");

    for replica in [a, b, c] {
        replica.stop().await;
    }
    database.drop_database().await;
}

#[tokio::test]
async fn replicas_share_keys_and_stub_sequence() {
    let Some(database) = TestDatabase::create("replicas_share_keys_and_stub_sequence").await else {
        return;
    };
    let mock = MockProvider::start(MockConfig::default()).await.unwrap();
    let replicas = start_three(database.url(), &mock.base_url(), &[]).await;
    let (task_id, session_id) = session_with(&replicas[0].api, json!({"model": "stub_error_sequence"})).await;

    // An Idempotency-Key first used on one replica returns the same run on the others.
    let body = run_body(&session_id, &task_id);
    let mut ids = Vec::new();
    for replica in &replicas {
        let response = replica
            .api
            .http
            .post(format!("{}/api/v1/run", replica.api.base))
            .header("Idempotency-Key", "shared-key")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let created: Value = response.json().await.unwrap();
        ids.push(created["data"]["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(ids[1], ids[0], "the second replica returns the first run");
    assert_eq!(ids[2], ids[0], "the third replica returns the first run");

    // The stub error sequence goes on from replica to replica: the keyed run took position 0.
    let expected = ["AuthenticationError", "NotFoundError", "BadRequestError"];
    let mut run_ids = Vec::new();
    for replica in &replicas {
        run_ids.push(create_run(&replica.api, &body).await);
    }
    let first = wait_run(&replicas[2].api, &ids[0]).await;
    assert_eq!(first["error_details"]["type"], "RateLimitError", "{first}");
    for (position, run_id) in run_ids.iter().enumerate() {
        let run = wait_run(&replicas[(position + 1) % 3].api, run_id).await;
        assert_eq!(run["status"], "error", "run {position}: {run}");
        assert_eq!(run["error_details"]["type"], expected[position], "run {position}: {run}");
    }

    for replica in replicas {
        replica.stop().await;
    }
    database.drop_database().await;
}

#[tokio::test]
async fn kill_nine_replica_runs_end_once() {
    const RUNS: usize = 100;
    let Some(database) = TestDatabase::create("kill_nine_replica_runs_end_once").await else {
        return;
    };
    let mock = MockProvider::start(MockConfig::default().with_latency(Duration::from_millis(1500))).await.unwrap();
    let [victim, b, c] = start_three(database.url(), &mock.base_url(), &["--workers", "20"]).await;
    let (task_id, session_id) = session_with(&b.api, json!({})).await;

    let mut run_ids = Vec::new();
    for index in 0..RUNS {
        let api = [&victim.api, &b.api, &c.api][index % 3];
        run_ids.push(create_run(api, &run_body(&session_id, &task_id)).await);
    }
    // The first run ending means the first wave of 60 runs is done and the next is in flight.
    wait_run(&b.api, &run_ids[0]).await;
    victim.kill().await;

    let mut interrupted = 0;
    for (index, run_id) in run_ids.iter().enumerate() {
        let api = if index % 2 == 0 { &b.api } else { &c.api };
        let run = wait_run(api, run_id).await;
        assert_eq!(run["status"], "complete", "{run}");
        let messages = run["team_result"]["task_result"]["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 1, "one reply per run, never a duplicate: {run}");
        assert_eq!(run["messages"].as_array().unwrap().len(), 1, "{run}");
        if run["attempt"].as_u64().unwrap() > 1 {
            interrupted += 1;
        }
    }
    assert!(interrupted > 0, "some runs were held by the killed replica and ran again");

    // The stored events show each run ending exactly once, whatever its attempts.
    for run_id in &run_ids {
        let events = read_stream(&c.api, run_id).await;
        let endings = events
            .iter()
            .filter(|(event, data)| {
                event == "status" && matches!(data["status"].as_str(), Some("complete" | "error" | "stopped"))
            })
            .count();
        assert_eq!(endings, 1, "run {run_id} ended once: {events:?}");
        let last_attempt =
            events.iter().filter(|(event, _)| event == "status").filter_map(|(_, data)| data["attempt"].as_u64()).max();
        let (_, run) = b.api.get(&format!("/run/{run_id}")).await;
        assert_eq!(last_attempt, run["data"]["attempt"].as_u64(), "the last status event is of the final attempt");
    }

    b.stop().await;
    c.stop().await;
    database.drop_database().await;
}
