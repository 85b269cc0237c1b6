//! End-to-end tests of the real `aegis` binary: a child process on 127.0.0.1:0 with a
//! temporary SQLite file, calling the mock provider over loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use aegis_http::mock::{MockConfig, MockProvider, MockReply};
use common::process::{AegisProcess, args};
use common::run_body;

/// Starts the binary on a SQLite file with the default engine settings.
async fn start_server(db: &Path, base_url: &str) -> AegisProcess {
    let db = db.to_string_lossy().into_owned();
    AegisProcess::start(&args(&[&["--db", db.as_str()]]), base_url).await
}

#[tokio::test]
async fn binary_runs_tutorial_and_survives_restart() {
    let mock = MockProvider::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("aegis.db");

    let server = start_server(&db, &mock.base_url()).await;
    let (task_id, _, session_id) = server.api.tutorial_session(None).await;
    let (status, created) = server.api.post("/run", &run_body(&session_id, &task_id)).await;
    assert_eq!(status, 201, "{created}");
    let run_id = created["data"]["id"].as_str().unwrap().to_owned();
    let run = server.api.wait_terminal(&run_id, Duration::from_secs(30)).await;

    assert_eq!(run["status"], "complete", "{run}");
    let reply = &run["team_result"]["task_result"]["messages"][0];
    assert_eq!(reply["type"], "dict", "the mock grades in JSON: {run}");
    assert!(reply["content"]["satisfactory"].is_boolean(), "{reply}");
    assert!(run["finished_at"].is_string());
    assert_eq!(mock.requests()[0].authorization(), Some("Bearer sk-test-key"));
    server.stop().await;

    let restarted = start_server(&db, &mock.base_url()).await;
    let (status, again) = restarted.api.get(&format!("/run/{run_id}")).await;
    assert_eq!(status, 200);
    assert_eq!(again["data"], run, "the run changed across a restart");
    let (_, sessions) = restarted.api.get("/session").await;
    assert_eq!(sessions["data"][0]["id"], session_id.as_str());
    restarted.stop().await;
}

#[tokio::test]
async fn slow_answer_is_active_then_complete() {
    let mock = MockProvider::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new().unwrap();
    let server = start_server(&dir.path().join("aegis.db"), &mock.base_url()).await;
    let (task_id, _, session_id) = server.api.tutorial_session(None).await;
    mock.push(MockReply::Delay(
        Duration::from_millis(1500),
        Box::new(MockReply::Text("{\"satisfactory\": false}".to_owned())),
    ));

    let (_, created) = server.api.post("/run", &run_body(&session_id, &task_id)).await;
    let run_id = created["data"]["id"].as_str().unwrap().to_owned();
    let mut seen_active = false;
    for _ in 0..100 {
        let (_, body) = server.api.get(&format!("/run/{run_id}")).await;
        if body["data"]["status"] == "active" {
            seen_active = true;
            assert!(body["data"]["started_at"].is_string(), "{body}");
            assert_eq!(body["data"]["messages"], Value::Array(Vec::new()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(seen_active, "the run was never observed active during a 1.5 s model call");

    let run = server.api.wait_terminal(&run_id, Duration::from_secs(30)).await;
    assert_eq!(run["status"], "complete", "{run}");
    assert_eq!(run["team_result"]["task_result"]["messages"][0]["content"]["satisfactory"], false);
    server.stop().await;
}

#[tokio::test]
async fn server_errors_are_retried_then_reported() {
    let mock = MockProvider::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new().unwrap();
    let server = start_server(&dir.path().join("aegis.db"), &mock.base_url()).await;
    let (task_id, _, session_id) = server.api.tutorial_session(None).await;
    let unavailable = || MockReply::Error {
        status: 503,
        body: r#"{"error": {"message": "overloaded", "type": "server_error"}}"#.to_owned(),
        headers: Vec::new(),
    };

    // One failure, then success: the retry hides it.
    mock.push(unavailable());
    mock.push(MockReply::Text("{\"satisfactory\": true}".to_owned()));
    let (_, created) = server.api.post("/run", &run_body(&session_id, &task_id)).await;
    let run = server.api.wait_terminal(created["data"]["id"].as_str().unwrap(), Duration::from_secs(30)).await;
    assert_eq!(run["status"], "complete", "{run}");
    assert_eq!(mock.requests().len(), 2);

    // Three failures exhaust the default two retries.
    for _ in 0..3 {
        mock.push(unavailable());
    }
    let (_, created) = server.api.post("/run", &run_body(&session_id, &task_id)).await;
    let run = server.api.wait_terminal(created["data"]["id"].as_str().unwrap(), Duration::from_secs(30)).await;
    assert_eq!(run["status"], "error", "{run}");
    assert_eq!(run["error_message"], "litellm.ServiceUnavailableError: overloaded");
    assert_eq!(run["error_details"]["status_code"], 503);
    assert_eq!(run["error_details"]["attempts"], 3);
    assert_eq!(mock.requests().len(), 5);

    // A 502 gateway page is classified from the status alone.
    for _ in 0..3 {
        mock.push(MockReply::Error {
            status: 502,
            body: "<html><body>Bad Gateway</body></html>".to_owned(),
            headers: Vec::new(),
        });
    }
    let (_, created) = server.api.post("/run", &run_body(&session_id, &task_id)).await;
    let run = server.api.wait_terminal(created["data"]["id"].as_str().unwrap(), Duration::from_secs(30)).await;
    assert_eq!(run["error_details"]["type"], "BadGatewayError", "{run}");
    server.stop().await;
}
