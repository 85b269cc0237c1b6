//! The durable run engine over the real `aegis` binary and its SQLite file: crash recovery,
//! cancellation, streaming, graceful shutdown, idempotent retries, batch runs, continued
//! conversations and the stub error sequence. Leases and polls are short (CLI flags) so the
//! crash tests stay quick.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tempfile::TempDir;

use aegis_http::mock::{MockConfig, MockProvider, MockReply};
use common::process::{AegisProcess, args, create_run, session_with, wait_run, wait_status};
use common::{Api, run_body, task_body};

/// Engine flags for quick crash tests: a 1.5 s lease renewed every 0.5 s.
const FAST: &[&str] = &["--lease-ms", "1500", "--heartbeat-ms", "500", "--poll-ms", "100"];

/// Starts the binary on a SQLite file with the quick engine flags and `extra`.
async fn start_server(db: &Path, base_url: &str, extra: &[&str]) -> AegisProcess {
    let db = db.to_string_lossy().into_owned();
    AegisProcess::start(&args(&[&["--db", db.as_str()], FAST, extra]), base_url).await
}

#[tokio::test]
async fn stub_sequence_cycles_and_survives_restart() {
    let expected = [
        ("RateLimitError", json!(429)),
        ("AuthenticationError", json!(401)),
        ("NotFoundError", json!(404)),
        ("BadRequestError", json!(400)),
        ("UnprocessableEntityError", json!(422)),
        ("UnsupportedParamsError", json!(400)),
        ("UnsupportedEndpointError", json!(400)),
        ("Timeout", json!(408)),
        ("PermissionDeniedError", json!(403)),
        ("ContextWindowExceededError", json!(400)),
        ("PaymentRequiredError", json!(402)),
        ("RejectedRequestError", json!(400)),
        ("ContentPolicyViolationError", json!(400)),
        ("InternalServerError", json!(500)),
        ("ServiceUnavailableError", json!(503)),
        ("BadGatewayError", json!(502)),
        ("APIError", json!(500)),
        ("APIConnectionError", json!(500)),
        ("APIResponseValidationError", json!(500)),
        ("OpenAIError", Value::Null),
        ("JSONSchemaValidationError", json!(500)),
    ];
    let mock = MockProvider::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("aegis.db");
    let server = start_server(&db, &mock.base_url(), &[]).await;
    let (task_id, session_id) = session_with(&server.api, json!({"model": "stub_error_sequence"})).await;

    let mut run_ids = Vec::new();
    for _ in 0..=expected.len() {
        run_ids.push(create_run(&server.api, &run_body(&session_id, &task_id)).await);
    }
    for (position, run_id) in run_ids.iter().enumerate() {
        let run = wait_run(&server.api, run_id).await;
        let (error_type, status_code) = &expected[position % expected.len()];
        let details = &run["error_details"];
        assert_eq!(run["status"], "error", "run {position}: {run}");
        assert_eq!(details["type"], *error_type, "run {position}: {run}");
        assert_eq!(details["status_code"], *status_code, "run {position}: {run}");
        assert_eq!(details["llm_provider"], "openai", "run {position}");
        assert_eq!(details["model"], "stub_error_sequence", "run {position}");
        assert_eq!(details["attempts"], 1, "run {position}");
        let message = details["message"].as_str().unwrap();
        assert_eq!(run["error_message"], format!("litellm.{error_type}: {message}"), "run {position}");
    }
    let first = wait_run(&server.api, &run_ids[0]).await;
    assert_eq!(first["error_message"], "litellm.RateLimitError: You've hit the rate limit");
    assert!(mock.requests().is_empty(), "the stub never calls a provider");
    server.stop().await;

    let restarted = start_server(&db, &mock.base_url(), &[]).await;
    let run_id = create_run(&restarted.api, &run_body(&session_id, &task_id)).await;
    let run = wait_run(&restarted.api, &run_id).await;
    assert_eq!(run["error_details"]["type"], "AuthenticationError", "the position survives a restart: {run}");
    restarted.stop().await;
}

#[tokio::test]
async fn kill_nine_with_hundred_runs_loses_none() {
    const RUNS: usize = 100;
    let mock = MockProvider::start(MockConfig::default().with_latency(Duration::from_millis(1500))).await.unwrap();
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("aegis.db");
    let server = start_server(&db, &mock.base_url(), &["--workers", "40"]).await;
    let (task_id, session_id) = session_with(&server.api, json!({})).await;

    let mut run_ids = Vec::new();
    for _ in 0..RUNS {
        run_ids.push(create_run(&server.api, &run_body(&session_id, &task_id)).await);
    }
    // The first run ending means the first wave of 40 runs is done and the next is in flight.
    wait_run(&server.api, &run_ids[0]).await;
    server.kill().await;

    let restarted = start_server(&db, &mock.base_url(), &["--workers", "40"]).await;
    let mut interrupted = 0;
    for run_id in &run_ids {
        let run = wait_run(&restarted.api, run_id).await;
        assert_eq!(run["status"], "complete", "{run}");
        let messages = run["team_result"]["task_result"]["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 1, "one reply per run, never a duplicate: {run}");
        assert_eq!(run["messages"].as_array().unwrap().len(), 1, "{run}");
        if run["attempt"].as_u64().unwrap() > 1 {
            interrupted += 1;
        }
    }
    assert!(interrupted > 0, "some runs were active at the kill and ran again");
    restarted.stop().await;
}

#[tokio::test]
async fn cancel_races() {
    let mock = MockProvider::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new().unwrap();
    let server = start_server(&dir.path().join("aegis.db"), &mock.base_url(), &[]).await;
    let api = &server.api;
    let (task_id, session_id) = session_with(api, json!({"max_concurrent_runs": 1})).await;

    // A run stuck in a model call, and one queued behind it in the same session.
    mock.push(MockReply::text("{\"satisfactory\": true}").delayed(Duration::from_secs(60)));
    let active = create_run(api, &run_body(&session_id, &task_id)).await;
    let queued = create_run(api, &run_body(&session_id, &task_id)).await;
    wait_status(api, &active, "active").await;
    // A run may be `active` from its POST on, before its model call is sent. Cancelling then
    // would test no abort, and would leave the delayed reply to the next run.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while mock.requests().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the active run never called the model");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let (status, body) = api.post(&format!("/run/{queued}/cancel"), &Value::Null).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["status"], "stopped", "a created run stops at once: {body}");
    assert_eq!(body["data"]["started_at"], Value::Null, "it never started");
    assert_eq!(body["data"]["team_result"]["task_result"]["stop_reason"], "cancelled by user");

    let (status, body) = api.post(&format!("/run/{active}/cancel"), &json!({"reason": "rubric changed"})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "Run cancelled.");
    let run = &body["data"];
    assert_eq!(run["status"], "stopped", "the model call was aborted: {run}");
    assert_eq!(run["team_result"]["task_result"]["stop_reason"], "rubric changed");
    assert_eq!(run["team_result"]["task_result"]["messages"], json!([]), "no message was produced");

    // Cancelling again, with an empty body and no content type, changes nothing.
    let response = api.http.post(format!("{}/api/v1/run/{active}/cancel", api.base)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let again: Value = response.json().await.unwrap();
    assert_eq!(again["data"], *run, "a second cancel returns the stopped run unchanged");
    assert_eq!(again["message"], "Run already finished; nothing to cancel.", "{again}");

    // A finished run stays as it ended.
    let done = create_run(api, &run_body(&session_id, &task_id)).await;
    let finished = wait_run(api, &done).await;
    assert_eq!(finished["status"], "complete", "{finished}");
    let (status, body) = api.post(&format!("/run/{done}/cancel"), &json!({"reason": "too late"})).await;
    assert_eq!(status, 200);
    assert_eq!(body["data"], finished, "cancelling a complete run changes nothing");
    assert_eq!(body["message"], "Run already finished; nothing to cancel.", "{body}");

    let (status, body) = api.post(&format!("/run/{done}/cancel"), &json!({"reason": 7})).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["meta"]["errors"][0]["field"], "reason");
    server.stop().await;
}

/// Reads an SSE response until `end`; returns `(id, event, data)` of every event.
async fn read_stream(api: &Api, run_id: &str, last_event_id: Option<&str>) -> Vec<(Option<String>, String, String)> {
    let mut request = api.http.get(format!("{}/api/v1/run/{run_id}/stream", api.base));
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id);
    }
    let mut response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");

    let mut buffer = String::new();
    let mut events = Vec::new();
    while let Some(bytes) = tokio::time::timeout(Duration::from_secs(30), response.chunk()).await.unwrap().unwrap() {
        buffer.push_str(&String::from_utf8_lossy(&bytes));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let (mut id, mut event, mut data) = (None, "message".to_owned(), String::new());
            for line in block.lines() {
                if let Some(value) = line.strip_prefix("id:") {
                    id = Some(value.trim().to_owned());
                } else if let Some(value) = line.strip_prefix("event:") {
                    event = value.trim().to_owned();
                } else if let Some(value) = line.strip_prefix("data:") {
                    data.push_str(value.trim_start());
                }
            }
            if !data.is_empty() {
                events.push((id, event, data));
            }
        }
    }
    events
}

#[tokio::test]
async fn stream_resumes_after_last_event_id() {
    let mock = MockProvider::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new().unwrap();
    let server = start_server(&dir.path().join("aegis.db"), &mock.base_url(), &[]).await;
    let api = &server.api;
    let (task_id, session_id) = session_with(api, json!({})).await;
    mock.push(MockReply::text("{\"satisfactory\": true}").delayed(Duration::from_millis(300)));
    let run_id = create_run(api, &run_body(&session_id, &task_id)).await;

    let events = read_stream(api, &run_id, None).await;
    let names: Vec<&str> = events.iter().map(|(_, event, _)| event.as_str()).collect();
    assert_eq!(names, ["status", "status", "message", "status", "end"], "{events:?}");
    let ids: Vec<u64> = events.iter().filter_map(|(id, _, _)| id.as_ref()).map(|id| id.parse().unwrap()).collect();
    assert_eq!(ids, [1, 2, 3, 4], "ids grow by one: {events:?}");
    let message: Value = serde_json::from_str(&events[2].2).unwrap();
    assert_eq!(message["type"], "dict");
    let end: Value = serde_json::from_str(&events[4].2).unwrap();
    assert_eq!(end["status"], "complete");
    assert_eq!(end["id"], run_id.as_str());

    let resumed = read_stream(api, &run_id, Some("2")).await;
    assert_eq!(resumed.len(), 3, "events after 2 and the end: {resumed:?}");
    assert_eq!(resumed[0], events[2], "the stream resumes at the message");
    assert_eq!(resumed[1], events[3]);
    assert_eq!(resumed[2].1, "end");

    let (status, body) = api.get(&format!("/run/{run_id}/stream")).await;
    assert_eq!(status, 200, "{body}");
    let response = api
        .http
        .get(format!("{}/api/v1/run/{run_id}/stream", api.base))
        .header("Last-Event-ID", "x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422, "a malformed Last-Event-ID names the header");
    server.stop().await;
}

#[tokio::test]
async fn sigterm_drains_then_requeues() {
    let mock = MockProvider::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("aegis.db");
    let server = start_server(&db, &mock.base_url(), &["--shutdown-grace", "2"]).await;
    let (task_id, session_id) = session_with(&server.api, json!({})).await;
    mock.push(MockReply::text("{\"satisfactory\": true}").delayed(Duration::from_secs(60)));
    let run_id = create_run(&server.api, &run_body(&session_id, &task_id)).await;
    wait_status(&server.api, &run_id, "active").await;

    let api = server.api.clone();
    server.signal("-TERM").await;
    let mut rejected = None;
    for _ in 0..100 {
        let response = api
            .http
            .post(format!("{}/api/v1/run", api.base))
            .json(&run_body(&session_id, &task_id))
            .send()
            .await
            .unwrap();
        if response.status() == 503 {
            rejected = Some(response.headers().get("retry-after").map(|value| value.to_str().unwrap().to_owned()));
            break;
        }
        assert_eq!(response.status(), 201, "runs are accepted until the signal arrives");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(rejected, Some(Some("5".to_owned())), "new runs get 503 with Retry-After while draining");
    let (status, body) = api.get(&format!("/run/{run_id}")).await;
    assert_eq!(status, 200, "reads are served while draining: {body}");
    let mut child = server.child;
    let exit = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("the server exits after the grace period");
    assert!(exit.unwrap().success());

    let restarted = start_server(&db, &mock.base_url(), &[]).await;
    let run = wait_run(&restarted.api, &run_id).await;
    assert_eq!(run["status"], "complete", "the released run ran again after the restart: {run}");
    assert_eq!(run["attempt"], 2, "{run}");
    restarted.stop().await;

    // An idle server exits at once.
    let idle = start_server(&db, &mock.base_url(), &["--shutdown-grace", "600"]).await;
    idle.stop().await;
}

#[tokio::test]
async fn idempotency_key_replays_original() {
    let mock = MockProvider::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new().unwrap();
    let server = start_server(&dir.path().join("aegis.db"), &mock.base_url(), &[]).await;
    let api = &server.api;
    let (task_id, session_id) = session_with(api, json!({})).await;
    let post = |path: &str, key: &str, body: &Value| {
        api.http.post(format!("{}/api/v1{path}", api.base)).header("Idempotency-Key", key).json(body).send()
    };

    let body = run_body(&session_id, &task_id);
    let first: Value = post("/run", "run-1", &body).await.unwrap().json().await.unwrap();
    let response = post("/run", "run-1", &body).await.unwrap();
    assert_eq!(response.status(), 201);
    let second: Value = response.json().await.unwrap();
    assert_eq!(second["data"]["id"], first["data"]["id"], "a retry returns the original run");

    let mut changed = body.clone();
    changed["run_task"]["content"]["student_answer"] = json!("Perth");
    let response = post("/run", "run-1", &changed).await.unwrap();
    assert_eq!(response.status(), 422);
    let rejected: Value = response.json().await.unwrap();
    assert_eq!(rejected["meta"]["errors"][0]["field"], "Idempotency-Key", "{rejected}");

    let task_first: Value = post("/task", "task-1", &task_body()).await.unwrap().json().await.unwrap();
    let task_again: Value = post("/task", "task-1", &task_body()).await.unwrap().json().await.unwrap();
    assert_eq!(task_first["data"]["id"], task_again["data"]["id"]);

    let (_, runs) = api.get(&format!("/run?session_id={session_id}")).await;
    assert_eq!(runs["data"].as_array().unwrap().len(), 1, "retries created no second run");
    wait_run(api, first["data"]["id"].as_str().unwrap()).await;
    assert_eq!(mock.requests().len(), 1, "the run executed once");
    server.stop().await;
}

#[tokio::test]
async fn batch_of_fifty_with_five_failures() {
    let mock = MockProvider::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new().unwrap();
    let server = start_server(&dir.path().join("aegis.db"), &mock.base_url(), &[]).await;
    let api = &server.api;
    let (task_id, session_id) = session_with(api, json!({})).await;
    for _ in 0..5 {
        mock.push(MockReply::openai_error(400, "invalid item", "invalid_request_error"));
    }

    let items: Vec<Value> = (0..50)
        .map(|index| json!({"question": "Name a capital.", "student_answer": format!("answer {index}")}))
        .collect();
    let mut body = run_body(&session_id, &task_id);
    body["batch_mode"] = json!(true);
    body["run_task"]["content"] = Value::Array(items);
    let run_id = create_run(api, &body).await;
    let run = wait_run(api, &run_id).await;

    assert_eq!(run["status"], "complete", "{run}");
    let result = &run["team_result"];
    assert_eq!(result["task_result"], Value::Null);
    assert_eq!(result["counts"], json!({"complete": 45, "error": 5}));
    let items = result["items"].as_array().unwrap();
    let indexes: Vec<u64> = items.iter().map(|item| item["index"].as_u64().unwrap()).collect();
    assert_eq!(indexes, (0..50).collect::<Vec<u64>>(), "items are in input order");
    for item in items {
        match item["status"].as_str().unwrap() {
            "complete" => assert_eq!(item["task_result"]["messages"].as_array().unwrap().len(), 1, "{item}"),
            "error" => assert_eq!(item["error_details"]["type"], "BadRequestError", "{item}"),
            other => panic!("unexpected item status {other}"),
        }
    }
    assert!(result["duration"].as_f64().unwrap() > 0.0);
    assert_eq!(mock.requests().len(), 50, "each item called the model once");

    let mut invalid = run_body(&session_id, &task_id);
    invalid["batch_mode"] = json!(true);
    invalid["run_task"]["content"] = json!([{"question": "A"}, "not an object"]);
    let (status, rejected) = api.post("/run", &invalid).await;
    assert_eq!(status, 422);
    assert_eq!(rejected["meta"]["errors"][0]["field"], "run_task.content[1]", "{rejected}");
    server.stop().await;
}

#[tokio::test]
async fn continued_conversation_carries_state() {
    let mock = MockProvider::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new().unwrap();
    let server = start_server(&dir.path().join("aegis.db"), &mock.base_url(), &[]).await;
    let api = &server.api;
    let (task_id, session_id) = session_with(api, json!({"continue_conversation": true})).await;
    mock.push(MockReply::text("{\"turn\": 1}").delayed(Duration::from_millis(300)));
    mock.push(MockReply::text("{\"turn\": 2}"));
    mock.push(MockReply::text("{\"turn\": 3}"));

    let mut run_ids = Vec::new();
    for turn in 1..=3 {
        let body = common::text_run_body(&session_id, &task_id, &format!("question {turn}"));
        run_ids.push(create_run(api, &body).await);
    }
    for run_id in &run_ids {
        assert_eq!(wait_run(api, run_id).await["status"], "complete");
    }

    let requests = mock.requests();
    assert_eq!(requests.len(), 3);
    let contents = |index: usize| -> Vec<String> {
        requests[index].body["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|message| message["content"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    let third = contents(2);
    let expected_tail: Vec<String> =
        ["question 1", "{\"turn\": 1}", "question 2", "{\"turn\": 2}", "question 3"].map(str::to_owned).to_vec();
    assert!(third.ends_with(&expected_tail), "the third run sees the first two: {third:?}");
    assert!(contents(1).ends_with(&expected_tail[..3]), "runs execute in creation order: {:?}", contents(1));

    let seen: HashSet<&str> = run_ids.iter().map(String::as_str).collect();
    assert_eq!(seen.len(), 3);
    server.stop().await;
}
