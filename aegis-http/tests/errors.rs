//! Every error status of the API over the real server, each in the one error envelope:
//! 400, 404, 405, 413 (default and configured limit, by Content-Length and chunked), 415 and
//! 422.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use futures::stream;
use reqwest::{Body, Method};
use serde_json::{Value, json};

use common::process::AegisProcess;
use common::sqlite_server;

/// Sends a request and returns the status and the parsed body.
async fn send(
    client: &reqwest::Client,
    method: Method,
    url: &str,
    content_type: Option<&str>,
    body: Body,
) -> (u16, Value) {
    let mut request = client.request(method, url).body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let content_type = response.headers().get("content-type").map(|value| value.to_str().unwrap().to_owned());
    assert_eq!(content_type.as_deref(), Some("application/json"), "status {status} is not JSON");
    (status, response.json().await.unwrap())
}

/// Checks the error envelope and returns its first problem.
fn first_error(body: &Value) -> &Value {
    assert!(body["message"].as_str().is_some_and(|message| !message.is_empty()), "{body}");
    assert_eq!(body["data"], Value::Null, "{body}");
    &body["meta"]["errors"][0]
}

#[tokio::test]
async fn unknown_route_is_404() {
    let (server, _dir) = sqlite_server(|_| {}).await;
    let client = reqwest::Client::new();
    let base = format!("http://{}", server.addr());

    for path in ["/api/v1/nothing", "/api/v2/task", "/", "/api/v1/task/x/y/z"] {
        let (status, body) = send(&client, Method::GET, &format!("{base}{path}"), None, Body::from("")).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(first_error(&body)["code"], "not_found", "{path}: {body}");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn wrong_method_is_405() {
    let (server, _dir) = sqlite_server(|_| {}).await;
    let client = reqwest::Client::new();
    let base = format!("http://{}", server.addr());

    for (method, path) in [(Method::PUT, "/api/v1/task"), (Method::DELETE, "/api/v1/run"), (Method::POST, "/healthz")] {
        let (status, body) = send(&client, method.clone(), &format!("{base}{path}"), None, Body::from("")).await;
        assert_eq!(status, 405, "{method} {path}");
        assert_eq!(first_error(&body)["code"], "method_not_allowed", "{body}");
        assert!(first_error(&body)["fix"].as_str().is_some_and(|fix| !fix.is_empty()), "{body}");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn non_json_content_type_is_415() {
    let (server, _dir) = sqlite_server(|_| {}).await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/api/v1/task", server.addr());

    let (status, body) = send(&client, Method::POST, &url, Some("text/plain"), Body::from(r#"{"name": "t"}"#)).await;

    assert_eq!(status, 415);
    assert_eq!(first_error(&body)["code"], "unsupported_media_type");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn malformed_json_is_400_and_invalid_field_422() {
    let (server, _dir) = sqlite_server(|_| {}).await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/api/v1/task", server.addr());

    let (status, body) = send(&client, Method::POST, &url, Some("application/json"), Body::from("{\"name\": ")).await;
    assert_eq!(status, 400);
    assert_eq!(first_error(&body)["code"], "malformed_json");

    let (status, body) =
        send(&client, Method::POST, &url, Some("application/json"), Body::from(r#"{"name": 5}"#)).await;
    assert_eq!(status, 422);
    assert_eq!(first_error(&body)["field"], "name");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn body_errors_name_field_and_fix() {
    let (server, _dir) = sqlite_server(|_| {}).await;
    let client = reqwest::Client::new();
    let base = format!("http://{}/api/v1", server.addr());
    let session = "0190d7a0-6b6c-7a4e-9f3c-2f1d1c1b0a09";

    // (method, path, body, field, code, words the fix must contain)
    let cases = [
        (Method::POST, "/task".to_owned(), json!({"name": 5}), "name", "invalid_type", "string"),
        (
            Method::POST,
            "/task".to_owned(),
            json!({"name": "a", "archived": "yes"}),
            "archived",
            "invalid_type",
            "true or false",
        ),
        (
            Method::POST,
            "/task".to_owned(),
            json!({"created_by_user_id": 5}),
            "created_by_user_id",
            "invalid_type",
            "string",
        ),
        (Method::POST, "/task".to_owned(), json!([]), "body", "invalid_type", "JSON object"),
        (Method::POST, "/task".to_owned(), json!("text"), "body", "invalid_type", "JSON object"),
        (Method::POST, "/run".to_owned(), json!({"batch_mode": "no"}), "batch_mode", "invalid_type", "true or false"),
        (
            Method::POST,
            "/session".to_owned(),
            json!({"task_id": "zzz", "team_id": session}),
            "task_id",
            "invalid_value",
            "UUID",
        ),
        (
            Method::PATCH,
            format!("/session/{session}"),
            json!({"team_metadata": [1]}),
            "team_metadata",
            "invalid_type",
            "JSON object",
        ),
    ];
    for (method, path, request, field, code, fix_words) in cases {
        let (status, body) = send(
            &client,
            method.clone(),
            &format!("{base}{path}"),
            Some("application/json"),
            Body::from(request.to_string()),
        )
        .await;
        let case = format!("{method} {path} {request}");
        assert_eq!(status, 422, "{case}: {body}");
        let problem = first_error(&body);
        assert_eq!(problem["field"], field, "{case}: {body}");
        assert_eq!(problem["code"], code, "{case}: {body}");
        let message = problem["message"].as_str().unwrap_or_default();
        assert!(
            !message.contains("invalid type") && !message.contains("UUID parsing"),
            "{case}: raw serde wording: {body}"
        );
        let fix = problem["fix"].as_str().unwrap_or_default();
        assert!(fix.contains(fix_words), "{case}: the fix must say '{fix_words}': {body}");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn model_timeout_out_of_range_is_422() {
    let (server, _dir) = sqlite_server(|_| {}).await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/api/v1/team", server.addr());

    for timeout in [json!(1e300), json!(1e20), json!(-5), json!(0)] {
        let mut team = common::team_body(None);
        team["component"]["config"]["model_client"]["config"]["timeout"] = timeout.clone();
        let (status, body) =
            send(&client, Method::POST, &url, Some("application/json"), Body::from(team.to_string())).await;
        assert_eq!(status, 422, "timeout {timeout}: {body}");
        let message = first_error(&body)["message"].as_str().unwrap_or_default();
        assert!(message.contains("timeout must be a number of seconds"), "timeout {timeout}: {body}");
    }

    let mut team = common::team_body(None);
    team["component"]["config"]["model_client"]["config"]["timeout"] = json!(30.5);
    let (status, body) =
        send(&client, Method::POST, &url, Some("application/json"), Body::from(team.to_string())).await;
    assert_eq!(status, 201, "{body}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn body_over_default_limit_is_413() {
    let (server, _dir) = sqlite_server(|_| {}).await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/api/v1/task", server.addr());
    let name = "x".repeat(aegis_http::DEFAULT_MAX_BODY_BYTES);
    let body = json!({"name": name}).to_string();

    let (status, error) = send(&client, Method::POST, &url, Some("application/json"), Body::from(body)).await;

    assert_eq!(status, 413);
    let problem = first_error(&error);
    assert_eq!(problem["code"], "body_too_large");
    assert!(problem["message"].as_str().unwrap().contains("1048576 bytes"), "{error}");
    assert!(problem["fix"].as_str().unwrap().contains("--max-body-bytes"), "{error}");
    server.stop().await.unwrap();
}

/// A route that reads no body (a GET) still gets one read: a server that responds and closes
/// with body bytes unread makes its TCP stack send a reset, and the client then loses the
/// response. The fuzz test found this with bodies of 20 to 100 KB on `GET /api/v1/task`.
/// NOTE: the reset depends on timing; this sequence did not reproduce it alone on a 2-core
/// machine, so `tests/fuzz.rs`, which did, is the stronger check.
#[tokio::test]
async fn unread_body_does_not_reset_connection() {
    let (server, _dir) = sqlite_server(|_| {}).await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/api/v1/task", server.addr());
    let bodies = [
        "{".to_owned(),
        format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)),
        format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000)),
        "[".repeat(100_000),
    ];

    for round in 0..5 {
        for (index, body) in bodies.iter().enumerate() {
            let response = client.get(&url).header("content-type", "application/json").body(body.clone()).send().await;
            let response = response.unwrap_or_else(|error| panic!("round {round}, body {index}: {error:?}"));
            assert_eq!(response.status(), 200, "round {round}, body {index}");
            let page: Value = response.json().await.unwrap();
            assert!(page["data"].is_array(), "round {round}, body {index}: {page}");
        }
    }
    server.stop().await.unwrap();
}

/// The same for an oversized body: the server reads past the limit before its 413, so the
/// client receives the 413 instead of a reset.
#[tokio::test]
async fn oversized_bodies_get_413_not_reset() {
    let (server, _dir) = sqlite_server(|_| {}).await;
    let client = reqwest::Client::new();
    let base = format!("http://{}", server.addr());

    for round in 0..40 {
        let (status, _) =
            send(&client, Method::GET, &format!("{base}/api/v1/task?limit=-1"), None, Body::from("")).await;
        assert_eq!(status, 422, "round {round}");
        let body = vec![b' '; aegis_http::DEFAULT_MAX_BODY_BYTES + 1 + round * 4096];
        let url = format!("{base}/api/v1/team/0195c641-0d8e-7061-a65b-79051d4929ca");
        let (status, error) = send(&client, Method::GET, &url, Some("application/json"), Body::from(body)).await;
        assert_eq!(status, 413, "round {round}");
        assert_eq!(first_error(&error)["code"], "body_too_large");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn body_under_default_limit_is_accepted() {
    let (server, _dir) = sqlite_server(|_| {}).await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/api/v1/task", server.addr());
    let body = json!({"name": "x".repeat(900 * 1024)}).to_string();

    let (status, created) = send(&client, Method::POST, &url, Some("application/json"), Body::from(body)).await;

    assert_eq!(status, 201, "{}", created["message"]);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn configured_limit_applies_to_chunked_bodies() {
    let (server, _dir) = sqlite_server(|config| config.max_body_bytes = 1000).await;
    let client = reqwest::Client::new();
    let url = format!("http://{}/api/v1/task", server.addr());

    let small = json!({"name": "x".repeat(500)}).to_string();
    let (status, _) = send(&client, Method::POST, &url, Some("application/json"), Body::from(small)).await;
    assert_eq!(status, 201);

    // A stream body has no Content-Length, so the limit ends it while the handler reads it.
    let chunks: Vec<Result<String, std::io::Error>> =
        vec![Ok("{\"name\": \"".to_owned()), Ok("x".repeat(2000)), Ok("\"}".to_owned())];
    let body = Body::wrap_stream(stream::iter(chunks));
    let (status, error) = send(&client, Method::POST, &url, Some("application/json"), body).await;
    assert_eq!(status, 413, "{error}");
    assert!(first_error(&error)["message"].as_str().unwrap().contains("1000 bytes"), "{error}");

    let keyed = client
        .post(&url)
        .header("idempotency-key", "k-1")
        .header("content-type", "application/json")
        .body(json!({"name": "x".repeat(2000)}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(keyed.status(), 413);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn max_body_bytes_flag_sets_limit() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("aegis.db").to_string_lossy().into_owned();
    let args = ["--db".to_owned(), db, "--max-body-bytes".to_owned(), "200".to_owned()];
    let server = AegisProcess::start(&args, "http://127.0.0.1:9").await;
    let client = reqwest::Client::new();
    let url = format!("{}/api/v1/task", server.api.base);

    let body = json!({"name": "x".repeat(300)}).to_string();
    let (status, error) = send(&client, Method::POST, &url, Some("application/json"), Body::from(body)).await;

    assert_eq!(status, 413);
    assert!(first_error(&error)["message"].as_str().unwrap().contains("200 bytes"), "{error}");
    server.stop().await;
}
