//! List routes through the router: pages (`limit`, `order`, `cursor`), the `meta` they
//! return, and every filter, over a real SQLite file.
//!
//! Filter cases go through one data-driven [`check`] helper that compares the ids a listing
//! returns with the ids it must return, in order.

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

async fn router() -> (Router, TempDir) {
    let dir = TempDir::new().unwrap();
    let store = SqliteStore::open(dir.path().join("aegis.db"), SqliteConfig::default()).await.unwrap();
    let aegis =
        Aegis::new(Arc::new(store), Registry::with_builtins(ProviderEnv::default()), EngineConfig::default()).unwrap();
    (aegis_http::app(aegis), dir)
}

async fn send(app: &Router, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
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
    let (status, created) = send(app, "POST", path, Some(&body)).await;
    assert_eq!(status, 201, "POST {path}: {created}");
    created["data"]["id"].as_str().unwrap().to_owned()
}

fn ids(listed: &Value) -> Vec<String> {
    listed["data"].as_array().unwrap().iter().map(|row| row["id"].as_str().unwrap().to_owned()).collect()
}

/// A listing and the ids it must return, in order; or the status and error field of a
/// rejected query.
struct Case<'a> {
    name: &'a str,
    path: String,
    expected: Result<Vec<&'a String>, (u16, &'a str)>,
}

async fn check(app: &Router, cases: &[Case<'_>]) {
    for case in cases {
        let (status, body) = send(app, "GET", &case.path, None).await;
        match &case.expected {
            Ok(expected) => {
                assert_eq!(status, 200, "{}: {body}", case.name);
                let expected: Vec<String> = expected.iter().map(|id| (*id).clone()).collect();
                assert_eq!(ids(&body), expected, "{}", case.name);
            }
            Err((expected_status, field)) => {
                assert_eq!(status, *expected_status, "{}: {body}", case.name);
                assert_eq!(body["data"], Value::Null, "{}: {body}", case.name);
                assert_eq!(body["meta"]["errors"][0]["field"], *field, "{}: {body}", case.name);
            }
        }
    }
}

#[tokio::test]
async fn pages_walk_every_list() {
    let (app, _dir) = router().await;
    let mut tasks = Vec::new();
    for index in 0..5 {
        tasks.push(create(&app, "/api/v1/task", json!({"name": format!("task {index}")})).await);
    }

    let mut walked = Vec::new();
    let mut path = "/api/v1/task?limit=2".to_owned();
    loop {
        let (status, page) = send(&app, "GET", &path, None).await;
        assert_eq!(status, 200, "{page}");
        walked.extend(ids(&page));
        let has_more = page["meta"]["has_more"].as_bool().unwrap();
        assert_eq!(has_more, page["meta"]["next_cursor"].is_string(), "has_more matches next_cursor: {page}");
        if !has_more {
            break;
        }
        let cursor = page["meta"]["next_cursor"].as_str().unwrap();
        assert!(cursor.bytes().all(|byte| byte.is_ascii_alphanumeric()), "the cursor is URL-safe: {cursor}");
        path = format!("/api/v1/task?limit=2&cursor={cursor}");
    }
    let newest_first: Vec<String> = tasks.iter().rev().cloned().collect();
    assert_eq!(walked, newest_first, "limit=2 walks every task once, newest first");

    let (_, ascending) = send(&app, "GET", "/api/v1/task?order=asc&limit=100", None).await;
    assert_eq!(ids(&ascending), tasks, "order=asc lists the oldest first");
    assert_eq!(ascending["meta"]["has_more"], false);
    assert_eq!(ascending["meta"]["next_cursor"], Value::Null);

    let (_, first) = send(&app, "GET", "/api/v1/task?limit=1", None).await;
    let desc_cursor = first["meta"]["next_cursor"].as_str().unwrap().to_owned();
    let (_, default_page) = send(&app, "GET", "/api/v1/task", None).await;
    assert_eq!(ids(&default_page).len(), 5, "the default limit of 20 holds all five");

    check(
        &app,
        &[
            Case {
                name: "cursor keeps its order",
                path: format!("/api/v1/task?limit=1&cursor={desc_cursor}"),
                expected: Ok(vec![&tasks[3]]),
            },
            Case {
                name: "order differs from the cursor's",
                path: format!("/api/v1/task?order=asc&cursor={desc_cursor}"),
                expected: Err((422, "order")),
            },
            Case { name: "limit above 100", path: "/api/v1/task?limit=101".to_owned(), expected: Err((422, "limit")) },
            Case { name: "limit 0", path: "/api/v1/task?limit=0".to_owned(), expected: Err((422, "limit")) },
            Case {
                name: "limit not a number",
                path: "/api/v1/team?limit=many".to_owned(),
                expected: Err((422, "limit")),
            },
            Case {
                name: "unknown order",
                path: "/api/v1/session?order=newest".to_owned(),
                expected: Err((422, "order")),
            },
            Case {
                name: "forged cursor",
                path: "/api/v1/run?cursor=0123abcd".to_owned(),
                expected: Err((422, "cursor")),
            },
            Case {
                name: "cursor not hex",
                path: "/api/v1/run?cursor=%FF%FE".to_owned(),
                expected: Err((422, "cursor")),
            },
        ],
    )
    .await;
}

#[tokio::test]
async fn filters_select_rows() {
    let (app, _dir) = router().await;
    let task = create(&app, "/api/v1/task", task_body()).await;
    let other_task = create(&app, "/api/v1/task", json!({"name": "other", "created_by_user_id": "teacher-2"})).await;
    let archived_task = create(&app, "/api/v1/task", json!({"name": "old", "archived": true})).await;
    let team = create(&app, "/api/v1/team", team_body(None)).await;
    let other_team = create(&app, "/api/v1/team", team_body(None)).await;

    let session = create(&app, "/api/v1/session", session_body(&task, &team)).await;
    let session_other_team = create(&app, "/api/v1/session", session_body(&task, &other_team)).await;
    let session_other_task = create(&app, "/api/v1/session", session_body(&other_task, &team)).await;

    let run = create(&app, "/api/v1/run", run_body(&session, &task)).await;
    let mut archived_body = run_body(&session, &task);
    archived_body["archived"] = json!(true);
    archived_body["created_by_user_id"] = json!("teacher-2");
    let archived_run = create(&app, "/api/v1/run", archived_body).await;
    let other_run = create(&app, "/api/v1/run", run_body(&session_other_task, &other_task)).await;
    let (_, cancelled) = send(&app, "POST", &format!("/api/v1/run/{other_run}/cancel"), None).await;
    assert_eq!(cancelled["data"]["status"], "stopped");

    let (_, listed) = send(&app, "GET", &format!("/api/v1/run/{run}"), None).await;
    let created_at = listed["data"]["created_at"].as_str().unwrap().to_owned();
    let (_, listed) = send(&app, "GET", &format!("/api/v1/run/{other_run}"), None).await;
    let last_created_at = listed["data"]["created_at"].as_str().unwrap().to_owned();

    check(
        &app,
        &[
            Case {
                name: "archived tasks hidden",
                path: "/api/v1/task?order=asc".to_owned(),
                expected: Ok(vec![&task, &other_task]),
            },
            Case {
                name: "archived tasks only",
                path: "/api/v1/task?archived=true".to_owned(),
                expected: Ok(vec![&archived_task]),
            },
            Case {
                name: "archived and not",
                path: "/api/v1/task?archived=any&order=asc".to_owned(),
                expected: Ok(vec![&task, &other_task, &archived_task]),
            },
            Case {
                name: "archived not a flag",
                path: "/api/v1/task?archived=yes".to_owned(),
                expected: Err((422, "archived")),
            },
            Case {
                name: "tasks by user",
                path: "/api/v1/task?created_by_user_id=teacher-2".to_owned(),
                expected: Ok(vec![&other_task]),
            },
            Case { name: "teams", path: "/api/v1/team?order=asc".to_owned(), expected: Ok(vec![&team, &other_team]) },
            Case {
                name: "sessions by task",
                path: format!("/api/v1/session?task_id={task}&order=asc"),
                expected: Ok(vec![&session, &session_other_team]),
            },
            Case {
                name: "sessions by team",
                path: format!("/api/v1/session?team_id={team}&order=asc"),
                expected: Ok(vec![&session, &session_other_task]),
            },
            Case {
                name: "sessions by task and team",
                path: format!("/api/v1/session?team_id={team}&task_id={task}"),
                expected: Ok(vec![&session]),
            },
            Case {
                name: "sessions by a bad id",
                path: "/api/v1/session?team_id=7".to_owned(),
                expected: Err((422, "team_id")),
            },
            Case {
                name: "runs hide archived",
                path: "/api/v1/run?order=asc".to_owned(),
                expected: Ok(vec![&run, &other_run]),
            },
            Case {
                name: "runs by session",
                path: format!("/api/v1/run?session_id={session}&archived=any"),
                expected: Ok(vec![&archived_run, &run]),
            },
            Case {
                name: "runs by task",
                path: format!("/api/v1/run?task_id={other_task}"),
                expected: Ok(vec![&other_run]),
            },
            Case {
                name: "runs by status",
                path: "/api/v1/run?status=stopped".to_owned(),
                expected: Ok(vec![&other_run]),
            },
            Case {
                name: "runs by unknown status",
                path: "/api/v1/run?status=done".to_owned(),
                expected: Err((422, "status")),
            },
            Case {
                name: "runs by user",
                path: "/api/v1/run?created_by_user_id=teacher-2&archived=true".to_owned(),
                expected: Ok(vec![&archived_run]),
            },
            Case {
                name: "runs in a created-at range",
                path: format!("/api/v1/run?created_after={created_at}&created_before={last_created_at}&archived=any"),
                expected: Ok(vec![&archived_run, &run]),
            },
            Case {
                name: "runs with an empty range",
                path: format!("/api/v1/run?created_after={last_created_at}&created_before={created_at}"),
                expected: Err((422, "created_before")),
            },
            Case {
                name: "runs after a bad time",
                path: "/api/v1/run?created_after=yesterday".to_owned(),
                expected: Err((422, "created_after")),
            },
        ],
    )
    .await;
}

#[tokio::test]
async fn run_messages_are_paged() {
    let (app, _dir) = router().await;
    let task = create(&app, "/api/v1/task", task_body()).await;
    let team = create(&app, "/api/v1/team", team_body(None)).await;
    let session = create(&app, "/api/v1/session", session_body(&task, &team)).await;
    let run = create(&app, "/api/v1/run", run_body(&session, &task)).await;

    let (status, messages) = send(&app, "GET", &format!("/api/v1/run/{run}/messages?limit=5"), None).await;
    assert_eq!(status, 200, "{messages}");
    assert_eq!(messages["data"], json!([]));
    assert_eq!(messages["meta"], json!({"next_cursor": null, "has_more": false}));

    // A cursor of another list is rejected rather than restarting the walk.
    let (_, tasks) = send(&app, "GET", "/api/v1/task?limit=0", None).await;
    assert_eq!(tasks["meta"]["errors"][0]["field"], "limit");
    create(&app, "/api/v1/task", json!({"name": "second"})).await;
    let (_, page) = send(&app, "GET", "/api/v1/task?limit=1&order=asc", None).await;
    let task_cursor = page["meta"]["next_cursor"].as_str().unwrap();
    let foreign =
        |name, path: &str| Case { name, path: format!("{path}?cursor={task_cursor}"), expected: Err((422, "cursor")) };
    check(
        &app,
        &[
            foreign("task cursor on messages", &format!("/api/v1/run/{run}/messages")),
            foreign("task cursor on runs", "/api/v1/run"),
            foreign("task cursor on teams", "/api/v1/team"),
            foreign("task cursor on sessions", "/api/v1/session"),
        ],
    )
    .await;
    let (status, body) = send(&app, "GET", &format!("/api/v1/run?cursor={task_cursor}"), None).await;
    assert_eq!(status, 422, "{body}");
    let problem = &body["meta"]["errors"][0];
    assert_eq!(problem["code"], "cursor_mismatch", "{body}");
    assert!(problem["fix"].as_str().is_some_and(|fix| fix.contains("drop cursor")), "{body}");

    // The cursor still works on its own list.
    let (status, body) = send(&app, "GET", &format!("/api/v1/task?cursor={task_cursor}"), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body).len(), 1, "{body}");
}
