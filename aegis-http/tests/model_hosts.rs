//! The allow-list of model hosts over the real `aegis` binary. A team naming a host that is not
//! allowed is rejected with the field and the flag that would allow it, and operator patterns
//! admit hosts. A stored team whose host is no longer allowed fails when its run builds it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Stdio;

use serde_json::{Value, json};
use tempfile::TempDir;

use aegis_http::mock::{MockConfig, MockProvider};
use common::process::{AegisProcess, args, create_run, wait_run};
use common::{run_body, session_body, task_body, team_body};

/// The path of the tutorial team's model client URL in `POST /team` errors.
const BASE_URL_FIELD: &str = "component.config.model_client.config.base_url";

async fn start_server(db: &Path, base_url: &str, extra: &[&str]) -> AegisProcess {
    let db = db.to_string_lossy().into_owned();
    AegisProcess::start(&args(&[&["--db", db.as_str()], extra]), base_url).await
}

/// Asserts that `body` is a 422 envelope whose only problem is `host` at [`BASE_URL_FIELD`].
fn assert_host_rejected(status: u16, body: &Value, host: &str) {
    assert_eq!(status, 422, "{body}");
    let errors = body["meta"]["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{body}");
    assert_eq!(errors[0]["field"], BASE_URL_FIELD, "{body}");
    assert_eq!(errors[0]["code"], "host_not_allowed", "{body}");
    let message = errors[0]["message"].as_str().unwrap();
    assert!(message.contains(&format!("`{host}`")), "the message names the host: {message}");
    let fix = errors[0]["fix"].as_str().unwrap();
    assert!(fix.contains(&format!("--allow-model-host {host}")), "the fix names the flag: {fix}");
    assert!(fix.contains("AEGIS_ALLOW_MODEL_HOSTS"), "the fix names the variable: {fix}");
}

#[tokio::test]
async fn foreign_host_is_rejected() {
    let mock = MockProvider::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new().unwrap();
    let server = start_server(&dir.path().join("aegis.db"), &mock.base_url(), &[]).await;
    let api = &server.api;
    let foreign = team_body(Some("https://models.evil.example:8443/v1"));

    let (status, body) = api.post("/team", &foreign).await;
    assert_host_rejected(status, &body, "models.evil.example:8443");

    let (status, body) = api.post("/team/validate", &foreign).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["valid"], false, "{body}");
    assert_eq!(body["data"]["errors"][0]["field"], BASE_URL_FIELD, "{body}");
    assert_eq!(body["data"]["errors"][0]["code"], "host_not_allowed", "{body}");

    let (status, created) = api.post("/team", &team_body(Some(&mock.base_url()))).await;
    assert_eq!(status, 201, "a loopback host is allowed: {created}");
    let team_id = created["data"]["id"].as_str().unwrap();
    let response = api
        .http
        .patch(format!("{}/api/v1/team/{team_id}", api.base))
        .json(&json!({"component": foreign["component"]}))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    assert_host_rejected(status, &body, "models.evil.example:8443");

    let (status, body) = api.post("/team", &team_body(Some("https://api.openai.com/v1"))).await;
    assert_eq!(status, 201, "the provider's default host is allowed: {body}");
    server.stop().await;
}

#[tokio::test]
async fn allowed_host_flag_admits_team() {
    let mock = MockProvider::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("aegis.db");
    let extra = ["--allow-model-host", "*.models.example", "--allow-model-host", "gpu.internal:8000"];
    let server = start_server(&db, &mock.base_url(), &extra).await;
    let api = &server.api;

    let (status, body) = api.post("/team", &team_body(Some("https://eu.MODELS.example/v1"))).await;
    assert_eq!(status, 201, "a subdomain of the wildcard is allowed: {body}");
    let (status, body) = api.post("/team", &team_body(Some("http://gpu.internal:8000/v1"))).await;
    assert_eq!(status, 201, "the host and port given are allowed: {body}");
    let (status, body) = api.post("/team", &team_body(Some("http://gpu.internal:9000/v1"))).await;
    assert_host_rejected(status, &body, "gpu.internal:9000");

    // A stored team whose host the next start no longer allows fails when its run builds it.
    let (_, task) = api.post("/task", &task_body()).await;
    let task_id = task["data"]["id"].as_str().unwrap().to_owned();
    let (_, team) = api.post("/team", &team_body(Some("https://eu.models.example/v1"))).await;
    let team_id = team["data"]["id"].as_str().unwrap();
    let (status, session) = api.post("/session", &session_body(&task_id, team_id)).await;
    assert_eq!(status, 201, "{session}");
    let session_id = session["data"]["id"].as_str().unwrap().to_owned();
    server.stop().await;

    let restarted = start_server(&db, &mock.base_url(), &[]).await;
    let run_id = create_run(&restarted.api, &run_body(&session_id, &task_id)).await;
    let run = wait_run(&restarted.api, &run_id).await;
    assert_eq!(run["status"], "error", "{run}");
    let error = run["error_message"].as_str().unwrap();
    assert!(error.contains("eu.models.example"), "the error names the host: {error}");
    assert!(mock.requests().is_empty(), "no model was called");
    restarted.stop().await;
}

#[tokio::test]
async fn invalid_pattern_stops_start() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("aegis.db");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_aegis"))
        .args(["serve", "--bind", "127.0.0.1:0", "--allow-model-host", "https://models.example/v1"])
        .arg("--db")
        .arg(&db)
        .env("AEGIS_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .await
        .unwrap();
    assert!(!output.status.success(), "the server must not start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("https://models.example/v1"), "the error names the pattern: {stderr}");
    assert!(!db.exists(), "a bad setting never creates the database");
}
