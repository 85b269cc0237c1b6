//! PATCH and DELETE through the router: changed fields, masked secrets that survive a round
//! trip, 409 naming dependants, cascades and terminal-only run deletion.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tempfile::TempDir;
use tower::ServiceExt;

use aegis_core::{Aegis, EngineConfig, ProviderEnv, Registry};
use aegis_store_sqlite::{SqliteConfig, SqliteStore};
use common::{run_body, session_body, task_body, team_body};

async fn router() -> (Router, Aegis, TempDir) {
    let dir = TempDir::new().unwrap();
    let store = SqliteStore::open(dir.path().join("aegis.db"), SqliteConfig::default()).await.unwrap();
    let aegis =
        Aegis::new(Arc::new(store), Registry::with_builtins(ProviderEnv::default()), EngineConfig::default()).unwrap();
    (aegis_http::app(aegis.clone()), aegis, dir)
}

async fn send(app: &Router, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = Request::builder().method(method).uri(path);
    if body.is_some() {
        request = request.header(header::CONTENT_TYPE, "application/json");
    }
    let request = request.body(body.map_or_else(Body::empty, |value| Body::from(value.to_string()))).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

async fn create(app: &Router, path: &str, body: Value) -> String {
    let (status, created) = send(app, "POST", path, Some(body)).await;
    assert_eq!(status, 201, "POST {path}: {created}");
    created["data"]["id"].as_str().unwrap().to_owned()
}

/// One request, its expected status, and the expected value at a JSON pointer.
struct Case<'a> {
    name: &'a str,
    method: &'a str,
    path: String,
    body: Option<Value>,
    status: u16,
    pointer: &'a str,
    expected: Value,
}

async fn check(app: &Router, cases: Vec<Case<'_>>) {
    for case in cases {
        let (status, body) = send(app, case.method, &case.path, case.body).await;
        assert_eq!(status, case.status, "{}: {body}", case.name);
        assert_eq!(body.pointer(case.pointer), Some(&case.expected), "{}: {body}", case.name);
    }
}

fn case<'a>(
    name: &'a str,
    method: &'a str,
    path: String,
    body: Option<Value>,
    status: u16,
    pointer: &'a str,
    expected: Value,
) -> Case<'a> {
    Case { name, method, path, body, status, pointer, expected }
}

#[tokio::test]
async fn patch_changes_fields() {
    let (app, aegis, _dir) = router().await;
    let task = create(&app, "/api/v1/task", task_body()).await;
    let mut secret_team = team_body(None);
    secret_team["component"]["config"]["model_client"]["config"]["api_key"] = json!("sk-stored");
    let team = create(&app, "/api/v1/team", secret_team).await;
    let mut session_with_key = session_body(&task, &team);
    session_with_key["team_metadata"] = json!({"model": "gpt-4o", "grader_api_key": "gk-stored"});
    let session = create(&app, "/api/v1/session", session_with_key).await;
    let run = create(&app, "/api/v1/run", run_body(&session, &task)).await;

    let (_, read) = send(&app, "GET", &format!("/api/v1/team/{team}"), None).await;
    let mut component = read["data"]["component"].clone();
    assert_eq!(component["config"]["model_client"]["config"]["api_key"], "**********", "the key is masked");
    component["config"]["model_client"]["config"]["model"] = json!("gpt-4.1");
    let key_pointer = "/data/component/config/model_client/config/api_key";

    check(
        &app,
        vec![
            case(
                "task name",
                "PATCH",
                format!("/api/v1/task/{task}"),
                Some(json!({"name": "Renamed"})),
                200,
                "/data/name",
                json!("Renamed"),
            ),
            case(
                "task keeps version",
                "GET",
                format!("/api/v1/task/{task}"),
                None,
                200,
                "/data/version",
                json!("1.0.0"),
            ),
            case(
                "task empty name",
                "PATCH",
                format!("/api/v1/task/{task}"),
                Some(json!({"name": " "})),
                422,
                "/meta/errors/0/field",
                json!("name"),
            ),
            case(
                "task wrong type",
                "PATCH",
                format!("/api/v1/task/{task}"),
                Some(json!({"archived": "yes"})),
                422,
                "/meta/errors/0/field",
                json!("archived"),
            ),
            case(
                "task archived",
                "PATCH",
                format!("/api/v1/task/{task}"),
                Some(json!({"archived": true})),
                200,
                "/data/archived",
                json!(true),
            ),
            case(
                "unknown task",
                "PATCH",
                format!("/api/v1/task/{}", uuid::Uuid::now_v7()),
                Some(json!({})),
                404,
                "/meta/errors/0/field",
                json!("id"),
            ),
            case(
                "team masked round trip",
                "PATCH",
                format!("/api/v1/team/{team}"),
                Some(json!({"component": component})),
                200,
                key_pointer,
                json!("**********"),
            ),
            case(
                "team new model",
                "GET",
                format!("/api/v1/team/{team}"),
                None,
                200,
                "/data/component/config/model_client/config/model",
                json!("gpt-4.1"),
            ),
            case(
                "team invalid component",
                "PATCH",
                format!("/api/v1/team/{team}"),
                Some(json!({"component": {"provider": "nope.Unknown", "config": {}}})),
                422,
                "/meta/errors/0/field",
                json!("component.provider"),
            ),
            case(
                "team name",
                "PATCH",
                format!("/api/v1/team/{team}"),
                Some(json!({"name": "Grader"})),
                200,
                "/data/name",
                json!("Grader"),
            ),
            case(
                "session metadata masked round trip",
                "PATCH",
                format!("/api/v1/session/{session}"),
                Some(json!({"team_metadata": {"model": "gpt-4.1", "grader_api_key": "**********"}})),
                200,
                "/data/team_metadata/grader_api_key",
                json!("**********"),
            ),
            case(
                "session invalid metadata",
                "PATCH",
                format!("/api/v1/session/{session}"),
                Some(json!({"team_metadata": {"max_concurrent_runs": 0}})),
                422,
                "/meta/errors/0/field",
                json!("team_metadata.max_concurrent_runs"),
            ),
            case(
                "run archived",
                "PATCH",
                format!("/api/v1/run/{run}"),
                Some(json!({"archived": true})),
                200,
                "/data/archived",
                json!(true),
            ),
            case(
                "run status not patchable",
                "PATCH",
                format!("/api/v1/run/{run}"),
                Some(json!({"status": "complete"})),
                200,
                "/data/status",
                json!("created"),
            ),
        ],
    )
    .await;

    // The stored values survived the masked round trips.
    let team = aegis.get_team(team.parse().unwrap()).await.unwrap();
    assert_eq!(team.component.config["model_client"]["config"]["api_key"], "sk-stored");
    let session = aegis.get_session(session.parse().unwrap()).await.unwrap();
    assert_eq!(session.team_metadata["grader_api_key"], "gk-stored");
    assert_eq!(session.team_metadata["model"], "gpt-4.1");
}

#[tokio::test]
async fn delete_checks_dependants() {
    let (app, _aegis, _dir) = router().await;
    let task = create(&app, "/api/v1/task", task_body()).await;
    let team = create(&app, "/api/v1/team", team_body(None)).await;
    let session = create(&app, "/api/v1/session", session_body(&task, &team)).await;
    let run = create(&app, "/api/v1/run", run_body(&session, &task)).await;

    let (status, conflict) = send(&app, "DELETE", &format!("/api/v1/task/{task}"), None).await;
    assert_eq!(status, 409, "{conflict}");
    let message = conflict["message"].as_str().unwrap();
    assert!(message.contains(&session) && message.contains(&run), "409 names the dependants: {message}");
    assert_eq!(conflict["meta"]["errors"][0]["code"], "has_dependants");

    check(
        &app,
        vec![
            case(
                "team in use",
                "DELETE",
                format!("/api/v1/team/{team}"),
                None,
                409,
                "/meta/errors/0/code",
                json!("has_dependants"),
            ),
            case(
                "session in use",
                "DELETE",
                format!("/api/v1/session/{session}"),
                None,
                409,
                "/meta/errors/0/code",
                json!("has_dependants"),
            ),
            case(
                "queued run",
                "DELETE",
                format!("/api/v1/run/{run}"),
                None,
                409,
                "/meta/errors/0/code",
                json!("run_not_terminal"),
            ),
            case(
                "cascade over a queued run",
                "DELETE",
                format!("/api/v1/task/{task}?cascade=true"),
                None,
                409,
                "/meta/errors/0/code",
                json!("run_not_terminal"),
            ),
            case(
                "bad cascade",
                "DELETE",
                format!("/api/v1/task/{task}?cascade=1"),
                None,
                422,
                "/meta/errors/0/field",
                json!("cascade"),
            ),
            case("cancel", "POST", format!("/api/v1/run/{run}/cancel"), None, 200, "/data/status", json!("stopped")),
            case("stopped run", "DELETE", format!("/api/v1/run/{run}"), None, 200, "/data/id", json!(run)),
            case("deleted run", "GET", format!("/api/v1/run/{run}"), None, 404, "/meta/errors/0/field", json!("id")),
            case(
                "deleted run messages",
                "GET",
                format!("/api/v1/run/{run}/messages"),
                None,
                404,
                "/meta/errors/0/field",
                json!("id"),
            ),
            case(
                "cascade",
                "DELETE",
                format!("/api/v1/team/{team}?cascade=true"),
                None,
                200,
                "/data/deleted_sessions",
                json!([session]),
            ),
            case(
                "session went along",
                "GET",
                format!("/api/v1/session/{session}"),
                None,
                404,
                "/meta/errors/0/field",
                json!("id"),
            ),
            case("unused task", "DELETE", format!("/api/v1/task/{task}"), None, 200, "/data/deleted_runs", json!([])),
            case(
                "deleted task",
                "DELETE",
                format!("/api/v1/task/{task}"),
                None,
                404,
                "/meta/errors/0/field",
                json!("id"),
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn retention_past_earliest_time_deletes_nothing() {
    let (_app, aegis, _dir) = router().await;
    for age in [std::time::Duration::MAX, std::time::Duration::from_secs(36_500 * 86_400)] {
        let deleted = aegis.delete_runs_older_than(age, 100).await.unwrap();
        assert!(deleted.is_empty(), "{age:?}");
    }
}
