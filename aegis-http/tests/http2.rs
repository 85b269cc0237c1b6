//! HTTP/2 on both legs of a run: the real `aegis` binary calls the mock provider over HTTP/2
//! when started with `--provider-http http2` and over HTTP/1.1 by default, and the server
//! serves API clients that speak HTTP/2 without TLS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;

use aegis_http::mock::{MockConfig, MockProvider};
use common::process::{AegisProcess, args, create_run, wait_run};
use common::{Api, run_body};

/// Runs the tutorial team once against a fresh mock on a server started with `flags`, and
/// returns the HTTP version of every model call the mock received.
async fn model_call_versions(flags: &[&str]) -> Vec<String> {
    let provider = MockProvider::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("aegis.db").to_string_lossy().into_owned();
    let server = AegisProcess::start(&args(&[&["--db", db.as_str()], flags]), &provider.base_url()).await;

    let (task_id, _team_id, session_id) = server.api.tutorial_session(Some(&provider.base_url())).await;
    let run_id = create_run(&server.api, &run_body(&session_id, &task_id)).await;
    let run = wait_run(&server.api, &run_id).await;
    assert_eq!(run["status"], "complete", "{run}");

    server.stop().await;
    let versions = provider.requests().iter().map(|request| request.http_version.clone()).collect();
    provider.shutdown().await;
    versions
}

#[tokio::test]
async fn model_calls_http2_flag() {
    let versions = model_call_versions(&["--provider-http", "http2", "--provider-pools", "2"]).await;
    assert!(!versions.is_empty(), "the run made no model call");
    assert!(versions.iter().all(|version| version == "HTTP/2.0"), "{versions:?}");
}

#[tokio::test]
async fn model_calls_http1_default() {
    let versions = model_call_versions(&[]).await;
    assert!(!versions.is_empty(), "the run made no model call");
    assert!(versions.iter().all(|version| version == "HTTP/1.1"), "{versions:?}");
}

#[tokio::test]
async fn pools_flag_out_of_range() {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_aegis"))
        .args(["serve", "--bind", "127.0.0.1:0", "--provider-pools", "0"])
        .env_remove("AEGIS_PROVIDER_POOLS")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--provider-pools"), "{stderr}");
    assert!(stderr.contains("from 1 to 1024"), "{stderr}");
}

#[tokio::test]
async fn api_serves_http2_clients() {
    let provider = MockProvider::start(MockConfig::default()).await.unwrap();
    let (server, _dir) = common::sqlite_server(|config| {
        config.provider_env = aegis_core::ProviderEnv::default();
    })
    .await;
    let http = reqwest::Client::builder().http2_prior_knowledge().timeout(Duration::from_secs(30)).build().unwrap();
    let api = Api { http: http.clone(), base: format!("http://{}", server.addr()) };

    let (task_id, _team_id, session_id) = api.tutorial_session(Some(&provider.base_url())).await;
    let (status, created) = api.post("/run", &run_body(&session_id, &task_id)).await;
    assert_eq!(status, 201, "{created}");
    let run_id = created["data"]["id"].as_str().unwrap();

    let response = http.get(format!("{}/api/v1/run/{run_id}?wait=20", api.base)).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["status"], "complete", "{body}");

    server.stop().await.unwrap();
    provider.shutdown().await;
}
