//! API behaviour through the router, over a real SQLite file and a mock provider on loopback.
//!
//! Validation cases go through one data-driven [`check`] helper that drives the `Router` with
//! `oneshot`; run execution goes through a server bound to 127.0.0.1:0.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tempfile::TempDir;
use tower::ServiceExt;

use aegis_core::{Aegis, EngineConfig, ProviderEnv, Registry};
use aegis_http::mock::{MockConfig, MockProvider, MockReply};
use aegis_http::server::{RunningServer, ServeConfig, start};
use aegis_store_sqlite::{SqliteConfig, SqliteStore};
use common::{Api, run_body, session_body, task_body, team_body, text_run_body};

/// A router over a fresh SQLite file; workers are not started.
async fn router() -> (Router, TempDir) {
    let dir = TempDir::new().unwrap();
    let store = SqliteStore::open(dir.path().join("aegis.db"), SqliteConfig::default()).await.unwrap();
    let aegis =
        Aegis::new(Arc::new(store), Registry::with_builtins(ProviderEnv::default()), EngineConfig::default()).unwrap();
    (aegis_http::app(aegis), dir)
}

async fn send(app: &Router, method: &str, path: &str, body: Option<&str>, content_type: Option<&str>) -> (u16, Value) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(content_type) = content_type {
        request = request.header(header::CONTENT_TYPE, content_type);
    }
    let request = request.body(body.map_or_else(Body::empty, |text| Body::from(text.to_owned()))).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn post_json(app: &Router, path: &str, body: &Value) -> (u16, Value) {
    send(app, "POST", path, Some(&body.to_string()), Some("application/json")).await
}

/// One request and what its response must show.
struct Case<'a> {
    name: &'a str,
    method: &'a str,
    path: String,
    body: Option<String>,
    content_type: Option<&'a str>,
    status: u16,
    /// Expected `field` of the first error, when the response is an error.
    field: Option<&'a str>,
}

impl<'a> Case<'a> {
    fn post(name: &'a str, path: &str, body: impl Into<String>, status: u16, field: Option<&'a str>) -> Case<'a> {
        Case {
            name,
            method: "POST",
            path: path.to_owned(),
            body: Some(body.into()),
            content_type: Some("application/json"),
            status,
            field,
        }
    }
}

async fn check(app: &Router, cases: &[Case<'_>]) {
    for case in cases {
        let (status, body) = send(app, case.method, &case.path, case.body.as_deref(), case.content_type).await;
        assert_eq!(status, case.status, "{}: {body}", case.name);
        if status >= 400 {
            assert!(
                body["message"].as_str().is_some_and(|message| !message.is_empty()),
                "{}: no message in {body}",
                case.name
            );
            assert_eq!(body["data"], Value::Null, "{}: error with data: {body}", case.name);
            assert!(body["meta"]["errors"].is_array(), "{}: no meta.errors in {body}", case.name);
        }
        if let Some(field) = case.field {
            assert_eq!(body["meta"]["errors"][0]["field"], field, "{}: {body}", case.name);
        }
    }
}

#[tokio::test]
async fn tutorial_bodies_are_accepted_with_documented_fields() {
    let (app, _dir) = router().await;

    let (status, task) = post_json(&app, "/api/v1/task", &task_body()).await;
    assert_eq!(status, 201);
    assert_eq!(task["message"], "Task created.");
    assert_eq!(task["data"]["name"], "Automarking Task");
    assert_eq!(task["data"]["description"], "Evaluate student responses for correctness.");
    let task_id = task["data"]["id"].as_str().unwrap().to_owned();
    assert_eq!(uuid::Uuid::parse_str(&task_id).unwrap().get_version_num(), 7);

    let (status, team) = post_json(&app, "/api/v1/team", &team_body(None)).await;
    assert_eq!(status, 201, "{team}");
    assert_eq!(team["message"], "Team created.");
    assert_eq!(team["data"]["component"], team_body(None)["component"]);
    let team_id = team["data"]["id"].as_str().unwrap().to_owned();

    let (status, session) = post_json(&app, "/api/v1/session", &session_body(&task_id, &team_id)).await;
    assert_eq!(status, 201, "{session}");
    assert_eq!(session["message"], "Session created.");
    assert_eq!(session["data"]["task_id"], task_id.as_str());
    assert_eq!(session["data"]["team_id"], team_id.as_str());
    let session_id = session["data"]["id"].as_str().unwrap().to_owned();

    let (status, run) = post_json(&app, "/api/v1/run", &run_body(&session_id, &task_id)).await;
    assert_eq!(status, 201, "{run}");
    assert_eq!(run["message"], "Run created.");
    assert_eq!(run["meta"], json!({}));
    let data = &run["data"];
    assert_eq!(data["run_task"], run_body(&session_id, &task_id)["run_task"]);
    assert_eq!(data["status"], "created");
    assert_eq!(data["messages"], json!([]));
    for field in [
        "id",
        "session_id",
        "task_id",
        "run_task",
        "batch_mode",
        "created_by_user_id",
        "archived",
        "status",
        "team_result",
        "error_message",
        "error_details",
        "created_at",
        "started_at",
        "finished_at",
        "estimated_completion_time",
        "messages",
    ] {
        assert!(data.get(field).is_some(), "run lacks {field}: {data}");
    }
    assert!(data["created_at"].as_str().unwrap().ends_with('Z'));

    let run_id = data["id"].as_str().unwrap();
    let (status, got) = send(&app, "GET", &format!("/api/v1/run/{run_id}"), None, None).await;
    assert_eq!(status, 200);
    assert_eq!(got["message"], "Data got correctly");
    assert_eq!(got["data"]["id"], run_id);

    let (status, listed) = send(&app, "GET", "/api/v1/run", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(listed["data"][0]["id"], run_id);
}

#[tokio::test]
async fn invalid_requests_get_clear_errors() {
    let (app, _dir) = router().await;
    let (_, task) = post_json(&app, "/api/v1/task", &task_body()).await;
    let task_id = task["data"]["id"].as_str().unwrap().to_owned();
    let (_, team) = post_json(&app, "/api/v1/team", &team_body(None)).await;
    let team_id = team["data"]["id"].as_str().unwrap().to_owned();
    let (_, session) = post_json(&app, "/api/v1/session", &session_body(&task_id, &team_id)).await;
    let session_id = session["data"]["id"].as_str().unwrap().to_owned();
    let (_, other_task) = post_json(&app, "/api/v1/task", &task_body()).await;
    let other_task_id = other_task["data"]["id"].as_str().unwrap().to_owned();
    let unknown = "0195c641-0d8e-7061-a65b-79051d4929ca";

    let mut text_with_object = text_run_body(&session_id, &task_id, "x");
    text_with_object["run_task"]["content"] = json!({"a": 1});
    let mut dict_with_string = run_body(&session_id, &task_id);
    dict_with_string["run_task"]["content"] = json!("plain");
    let mut unknown_type = run_body(&session_id, &task_id);
    unknown_type["run_task"]["message_type"] = json!("xml");
    let mut missing_source = run_body(&session_id, &task_id);
    missing_source["run_task"].as_object_mut().unwrap().remove("source");
    let mut bad_provider = team_body(None);
    bad_provider["component"]["config"]["model_client"]["provider"] = json!("acme.Model");
    let mut no_name = team_body(None);
    no_name["component"]["config"].as_object_mut().unwrap().remove("name");
    let mut no_model = team_body(None);
    no_model["component"]["config"]["model_client"]["config"].as_object_mut().unwrap().remove("model");

    let cases = [
        Case::post("malformed json", "/api/v1/task", "{\"name\": ", 400, None),
        Case::post("not an object", "/api/v1/task", "[1]", 422, None),
        Case::post("missing name", "/api/v1/task", "{}", 422, Some("name")),
        Case::post("empty name", "/api/v1/task", r#"{"name": " "}"#, 422, Some("name")),
        Case::post("name of wrong type", "/api/v1/task", r#"{"name": 5}"#, 422, Some("name")),
        Case::post(
            "session unknown task",
            "/api/v1/session",
            session_body(unknown, &team_id).to_string(),
            404,
            Some("task_id"),
        ),
        Case::post(
            "session unknown team",
            "/api/v1/session",
            session_body(&task_id, unknown).to_string(),
            404,
            Some("team_id"),
        ),
        Case::post(
            "session bad uuid",
            "/api/v1/session",
            session_body("nope", &team_id).to_string(),
            422,
            Some("task_id"),
        ),
        Case::post(
            "run unknown session",
            "/api/v1/run",
            run_body(unknown, &task_id).to_string(),
            404,
            Some("session_id"),
        ),
        Case::post(
            "run task mismatch",
            "/api/v1/run",
            run_body(&session_id, &other_task_id).to_string(),
            422,
            Some("task_id"),
        ),
        Case::post("text with object", "/api/v1/run", text_with_object.to_string(), 422, Some("run_task.content")),
        Case::post("dict with string", "/api/v1/run", dict_with_string.to_string(), 422, Some("run_task.content")),
        Case::post("unknown message type", "/api/v1/run", unknown_type.to_string(), 422, Some("run_task.message_type")),
        Case::post("missing nested field", "/api/v1/run", missing_source.to_string(), 422, Some("run_task.source")),
        Case::post(
            "unknown model provider",
            "/api/v1/team",
            bad_provider.to_string(),
            422,
            Some("component.config.model_client.provider"),
        ),
        Case::post(
            "model missing",
            "/api/v1/team",
            no_model.to_string(),
            422,
            Some("component.config.model_client.config"),
        ),
        Case::post("agent name missing", "/api/v1/team", no_name.to_string(), 422, Some("component.config.name")),
        Case { content_type: Some("text/plain"), ..Case::post("wrong content type", "/api/v1/task", "{}", 415, None) },
        Case { method: "GET", body: None, ..Case::post("unknown route", "/api/v1/nothing", "", 404, None) },
        Case { method: "DELETE", body: None, ..Case::post("wrong method", "/api/v1/task", "", 405, None) },
        Case {
            method: "GET",
            body: None,
            ..Case::post("run not found", &format!("/api/v1/run/{unknown}"), "", 404, None)
        },
        Case { method: "GET", body: None, ..Case::post("id not a uuid", "/api/v1/task/abc", "", 422, Some("id")) },
    ];
    check(&app, &cases).await;
}

#[tokio::test]
async fn team_secrets_are_masked_in_responses() {
    let (app, _dir) = router().await;
    let mut body = team_body(Some("http://127.0.0.1:9/v1"));
    body["component"]["config"]["model_client"]["config"]["api_key"] = json!("sk-secret-value");

    let (status, created) = post_json(&app, "/api/v1/team", &body).await;
    assert_eq!(status, 201, "{created}");
    let id = created["data"]["id"].as_str().unwrap();
    let (_, got) = send(&app, "GET", &format!("/api/v1/team/{id}"), None, None).await;
    let (_, listed) = send(&app, "GET", "/api/v1/team", None, None).await;

    for response in [&created, &got, &listed] {
        assert!(!response.to_string().contains("sk-secret-value"), "secret leaked: {response}");
    }
    assert_eq!(got["data"]["component"]["config"]["model_client"]["config"]["api_key"], "**********");
}

#[tokio::test]
async fn header_and_metadata_secrets_are_masked() {
    let (app, _dir) = router().await;
    let mut body = team_body(Some("http://127.0.0.1:9/v1"));
    body["component"]["config"]["model_client"]["config"]["default_headers"] =
        json!({"Authorization": "Bearer sk-header-secret", "X-Trace": "visible"});
    let (status, team) = post_json(&app, "/api/v1/team", &body).await;
    assert_eq!(status, 201, "{team}");
    let headers = &team["data"]["component"]["config"]["model_client"]["config"]["default_headers"];
    assert_eq!(headers["Authorization"], "**********");
    assert_eq!(headers["X-Trace"], "visible");

    let (_, task) = post_json(&app, "/api/v1/task", &task_body()).await;
    let mut session = session_body(task["data"]["id"].as_str().unwrap(), team["data"]["id"].as_str().unwrap());
    session["team_metadata"] = json!({"model": "gpt-4o", "api_key": "sk-metadata-secret"});
    let (status, created) = post_json(&app, "/api/v1/session", &session).await;
    assert_eq!(status, 201, "{created}");
    let id = created["data"]["id"].as_str().unwrap();
    let (_, got) = send(&app, "GET", &format!("/api/v1/session/{id}"), None, None).await;
    let (_, listed) = send(&app, "GET", "/api/v1/session", None, None).await;

    for response in [&team, &created, &got, &listed] {
        let text = response.to_string();
        assert!(!text.contains("sk-header-secret"), "header secret leaked: {text}");
        assert!(!text.contains("sk-metadata-secret"), "metadata secret leaked: {text}");
    }
    assert_eq!(got["data"]["team_metadata"]["model"], "gpt-4o");
}

/// A server with its own database and a mock provider that `OPENAI_BASE_URL` points at.
async fn server_with_mock(config: MockConfig) -> (RunningServer, MockProvider, TempDir) {
    let mock = MockProvider::start(config).await.unwrap();
    let dir = TempDir::new().unwrap();
    let mut serve = ServeConfig::new(dir.path().join("aegis.db"), "127.0.0.1:0".parse().unwrap());
    serve.provider_env = ProviderEnv::with_openai_base_url(mock.base_url());
    let server = start(serve).await.unwrap();
    (server, mock, dir)
}

#[tokio::test]
async fn dict_run_stores_json_reply_as_dict() {
    let (server, mock, _dir) = server_with_mock(MockConfig::default()).await;
    let api = Api::new(server.addr());
    let (task_id, _, session_id) = api.tutorial_session(None).await;
    mock.push(MockReply::Text("```json\n{\"reasoning\": \"ok\", \"satisfactory\": true}\n```".to_owned()));

    let (status, created) = api.post("/run", &run_body(&session_id, &task_id)).await;
    assert_eq!(status, 201, "{created}");
    let run = api.wait_terminal(created["data"]["id"].as_str().unwrap(), Duration::from_secs(20)).await;

    assert_eq!(run["status"], "complete", "{run}");
    let messages = run["team_result"]["task_result"]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 1, "{run}");
    assert_eq!(messages[0]["type"], "dict");
    assert_eq!(messages[0]["source"], "automarking_agent");
    assert_eq!(messages[0]["content"], json!({"reasoning": "ok", "satisfactory": true}));
    assert_eq!(run["team_result"]["task_result"]["stop_reason"], Value::Null);
    assert_eq!(run["messages"], run["team_result"]["task_result"]["messages"]);
    for field in ["id", "source", "models_usage", "metadata", "created_at", "type", "content"] {
        assert!(messages[0].get(field).is_some(), "message lacks {field}");
    }

    let sent = mock.requests();
    assert_eq!(sent.len(), 1);
    let prompt = &sent[0].body["messages"];
    assert_eq!(prompt[0]["role"], "system");
    assert_eq!(
        prompt[1]["content"],
        "{\"question\": \"Name 3 capital cities in Australia.\", \"model_answer\": \"Canberra, Sydney, ...\", \"student_answer\": \"Canberra,...\"}"
    );
    assert_eq!(sent[0].body["model"], "gpt-4o-mini");

    let (status, listed) = api.get(&format!("/run/{}/messages", run["id"].as_str().unwrap())).await;
    assert_eq!(status, 200);
    assert_eq!(listed["data"], run["messages"]);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn text_run_keeps_text_message() {
    let (server, mock, _dir) = server_with_mock(MockConfig::default()).await;
    let api = Api::new(server.addr());
    let (task_id, _, session_id) = api.tutorial_session(None).await;
    mock.push(MockReply::Text("{\"looks\": \"like json\"}".to_owned()));

    let (_, created) = api.post("/run", &text_run_body(&session_id, &task_id, "Grade this.")).await;
    let run = api.wait_terminal(created["data"]["id"].as_str().unwrap(), Duration::from_secs(20)).await;

    let message = &run["team_result"]["task_result"]["messages"][0];
    assert_eq!(message["type"], "TextMessage", "{run}");
    assert_eq!(message["content"], "{\"looks\": \"like json\"}");
    assert_eq!(mock.requests()[0].body["messages"][1]["content"], "Grade this.");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn provider_error_fails_run_with_details() {
    let (server, mock, _dir) = server_with_mock(MockConfig::default()).await;
    let api = Api::new(server.addr());
    let (task_id, _, session_id) = api.tutorial_session(None).await;
    let body = r#"{"error": {"message": "Incorrect API key provided", "type": "invalid_request_error", "code": "invalid_api_key"}}"#;
    mock.push(MockReply::Error { status: 401, body: body.to_owned(), headers: Vec::new() });

    let (_, created) = api.post("/run", &run_body(&session_id, &task_id)).await;
    let run = api.wait_terminal(created["data"]["id"].as_str().unwrap(), Duration::from_secs(20)).await;

    assert_eq!(run["status"], "error");
    assert_eq!(run["error_message"], "litellm.AuthenticationError: Incorrect API key provided");
    let details = &run["error_details"];
    assert_eq!(details["type"], "AuthenticationError");
    assert_eq!(details["message"], "Incorrect API key provided");
    assert_eq!(details["status_code"], 401);
    assert_eq!(details["llm_provider"], "openai");
    assert_eq!(details["model"], "gpt-4o-mini");
    assert_eq!(mock.requests().len(), 1, "a 401 must not be retried");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn env_key_goes_only_to_env_host() {
    let trusted = MockProvider::start(MockConfig::default()).await.unwrap();
    let foreign = MockProvider::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new().unwrap();
    let mut serve = ServeConfig::new(dir.path().join("aegis.db"), "127.0.0.1:0".parse().unwrap());
    serve.provider_env = ProviderEnv::with_openai_base_url(trusted.base_url());
    serve.provider_env.openai_api_key = aegis_core::secret::Secret::new("sk-env-key");
    let server = start(serve).await.unwrap();
    let api = Api::new(server.addr());

    let (task_id, _, trusted_session) = api.tutorial_session(None).await;
    let (_, team) = api.post("/team", &team_body(Some(&foreign.base_url()))).await;
    let (_, session) = api.post("/session", &session_body(&task_id, team["data"]["id"].as_str().unwrap())).await;
    let foreign_session = session["data"]["id"].as_str().unwrap().to_owned();

    for session_id in [&trusted_session, &foreign_session] {
        let (_, created) = api.post("/run", &run_body(session_id, &task_id)).await;
        let run = api.wait_terminal(created["data"]["id"].as_str().unwrap(), Duration::from_secs(20)).await;
        assert_eq!(run["status"], "complete", "{run}");
    }

    assert_eq!(trusted.requests()[0].authorization(), Some("Bearer sk-env-key"));
    assert_eq!(foreign.requests().len(), 1);
    assert_eq!(foreign.requests()[0].authorization(), None, "the env key leaked to a team's own base_url");
    server.stop().await.unwrap();
}
