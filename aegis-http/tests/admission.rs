//! Runs that may start in the POST that creates them, over the in-process server on a real
//! SQLite file and the mock provider. Every run this process executes must keep its handle in
//! the running table, however the POST that created it ended, because cancels, token streams
//! and shutdown find the run there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use uuid::Uuid;

use aegis_core::storage::StorageErrorKind;
use aegis_core::{Error, NewRun};
use aegis_http::mock::{MockConfig, MockProvider};
use aegis_http::server::RunningServer;
use common::{Api, run_body, session_body, sqlite_server};

/// Starts a mock provider that delays every response by 30 s, so runs stay `active`.
async fn slow_mock() -> MockProvider {
    let mut config = MockConfig::default();
    config.latency = Duration::from_secs(30);
    MockProvider::start(config).await.unwrap()
}

/// Starts the server with a short shutdown grace, so stopping it does not wait for the mock.
async fn start_server(poll_interval: Duration) -> (RunningServer, tempfile::TempDir, Api) {
    let (server, dir) = sqlite_server(|config| {
        config.engine.poll_interval = poll_interval;
        config.shutdown_grace = Duration::from_millis(200);
    })
    .await;
    let api = Api::new(server.addr());
    (server, dir, api)
}

/// Returns the ids of the runs among `ids` that are `active` in the store but have no handle
/// in the running table of the server, which executes every run in these tests.
async fn untracked_runs(server: &RunningServer, ids: &[String]) -> Vec<String> {
    let mut untracked = Vec::new();
    for id in ids {
        let run = server.aegis().get_run(id.parse().unwrap()).await.unwrap();
        if run.status.as_str() == "active" && server.aegis().subscribe_chunks(run.id).is_none() {
            untracked.push(id.clone());
        }
    }
    untracked
}

/// Polls until every run of `ids` has left `created`, and panics after 20 s.
async fn wait_started(api: &Api, ids: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(20);
    for id in ids {
        loop {
            let (status, body) = api.get(&format!("/run/{id}")).await;
            assert_eq!(status, 200, "{body}");
            if body["data"]["status"] != "created" {
                break;
            }
            assert!(Instant::now() < deadline, "run {id} did not start: {body}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test]
async fn duplicate_create_keeps_handle() {
    let mock = slow_mock().await;
    let (server, _dir, api) = start_server(Duration::from_secs(1)).await;
    let (task_id, _team_id, session_id) = api.tutorial_session(Some(&mock.base_url())).await;

    let (status, created) = api.post("/run", &run_body(&session_id, &task_id)).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["data"]["status"], "active", "a free worker starts the run at once: {created}");
    let id = created["data"]["id"].as_str().unwrap().to_owned();

    // The second of two requests with one Idempotency-Key creates the run under the same id.
    let session: Uuid = session_id.parse().unwrap();
    let task: Uuid = task_id.parse().unwrap();
    let again = server.aegis().create_run_with_id(id.parse().unwrap(), NewRun::text(session, task, "again")).await;
    match again {
        Err(Error::Storage(error)) => assert_eq!(*error.kind(), StorageErrorKind::Conflict, "{error}"),
        other => panic!("a second create under one id must conflict, got {other:?}"),
    }
    assert_eq!(untracked_runs(&server, std::slice::from_ref(&id)).await, Vec::<String>::new());

    let (status, cancelled) = api.post(&format!("/run/{id}/cancel"), &Value::Null).await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["data"]["status"], "stopped", "the cancel reached the executing run: {cancelled}");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_concurrent_posts_keep_handle() {
    let mock = slow_mock().await;
    let (server, _dir, api) = start_server(Duration::from_secs(1)).await;
    let (task_id, _team_id, session_id) = api.tutorial_session(Some(&mock.base_url())).await;
    let body = run_body(&session_id, &task_id);

    // Both requests of a pair usually miss the run when they look it up, so both create it.
    let mut ids = Vec::new();
    for pair in 0..20 {
        let key = format!("retry-{pair}");
        let send =
            || api.http.post(format!("{}/api/v1/run", api.base)).header("Idempotency-Key", &key).json(&body).send();
        let (first, second) = tokio::join!(send(), send());
        let (first, second) = (first.unwrap(), second.unwrap());
        assert_eq!((first.status().as_u16(), second.status().as_u16()), (201, 201));
        let first: Value = first.json().await.unwrap();
        let second: Value = second.json().await.unwrap();
        assert_eq!(first["data"]["id"], second["data"]["id"], "both requests name one run");
        ids.push(first["data"]["id"].as_str().unwrap().to_owned());
    }
    wait_started(&api, &ids).await;

    assert_eq!(untracked_runs(&server, &ids).await, Vec::<String>::new(), "active runs without a handle");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declined_runs_keep_handle() {
    let mock = slow_mock().await;
    // A short poll has the dispatcher claim the declined runs while their POSTs still run.
    let (server, _dir, api) = start_server(Duration::from_millis(2)).await;
    let (task_id, team_id, free_session) = api.tutorial_session(Some(&mock.base_url())).await;

    // A run that waits behind its session's active run makes the store decline every new run.
    let mut body = session_body(&task_id, &team_id);
    body["team_metadata"] = json!({"continue_conversation": true});
    let (_, session) = api.post("/session", &body).await;
    let blocked = session["data"]["id"].as_str().unwrap().to_owned();
    let (_, first) = api.post("/run", &run_body(&blocked, &task_id)).await;
    assert_eq!(first["data"]["status"], "created", "a session with a limit queues its runs: {first}");
    let (_, waiting) = api.post("/run", &run_body(&blocked, &task_id)).await;
    assert_eq!(waiting["data"]["status"], "created", "{waiting}");

    let mut ids = Vec::new();
    for _ in 0..10 {
        let body = run_body(&free_session, &task_id);
        let answers = futures::future::join_all((0..20).map(|_| api.post("/run", &body))).await;
        for (status, answer) in answers {
            assert_eq!(status, 201, "{answer}");
            assert_eq!(answer["data"]["status"], "created", "a waiting run makes the store decline: {answer}");
            ids.push(answer["data"]["id"].as_str().unwrap().to_owned());
        }
    }
    wait_started(&api, &ids).await;

    assert_eq!(untracked_runs(&server, &ids).await, Vec::<String>::new(), "active runs without a handle");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn limited_session_runs_back_to_back() {
    let mock = MockProvider::start(MockConfig::default()).await.unwrap();
    // A poll far longer than the test: the second run must start because the first ended.
    let (server, _dir, api) = start_server(Duration::from_secs(600)).await;
    let (task_id, team_id, _) = api.tutorial_session(Some(&mock.base_url())).await;
    let mut body = session_body(&task_id, &team_id);
    body["team_metadata"] = json!({"continue_conversation": true});
    let (_, session) = api.post("/session", &body).await;
    let session_id = session["data"]["id"].as_str().unwrap().to_owned();

    let mut ids = Vec::new();
    for _ in 0..3 {
        let (status, created) = api.post("/run", &run_body(&session_id, &task_id)).await;
        assert_eq!(status, 201, "{created}");
        assert_eq!(created["data"]["status"], "created", "a session with a limit queues its runs: {created}");
        ids.push(created["data"]["id"].as_str().unwrap().to_owned());
    }

    let mut started = Vec::new();
    for id in &ids {
        let (status, run) = api.get(&format!("/run/{id}?wait=20")).await;
        assert_eq!(status, 200, "{run}");
        assert_eq!(run["data"]["status"], "complete", "run {id} waited for a poll: {run}");
        started.push(run["data"]["started_at"].as_str().unwrap().to_owned());
    }
    assert!(started.windows(2).all(|pair| pair[0] < pair[1]), "runs started out of creation order: {started:?}");
    server.stop().await.unwrap();
}
