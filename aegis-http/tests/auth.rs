//! API keys, per-user isolation, rate limits and token budgets, over the real server on
//! 127.0.0.1:0 with a temporary SQLite file and the mock provider on loopback. The bind and
//! flag checks start the real `aegis` binary.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

use aegis_core::ProviderEnv;
use aegis_http::auth::{ApiKeys, AuthConfig};
use aegis_http::limits::LimitsConfig;
use aegis_http::mock::{MockConfig, MockProvider};
use aegis_http::server::{RunningServer, ServeConfig, start};
use common::{Api, run_body, session_body, task_body, team_body};

const ALICE_KEY: &str = "alice-key-7f3c9a1e5b";
const BOB_KEY: &str = "bob-key-2d8e6f4a0c91";

/// Starts a server with Alice's and Bob's keys on `db`, calling `mock`.
async fn start_server(db: &Path, mock: &MockProvider, limits: LimitsConfig) -> RunningServer {
    let mut serve = ServeConfig::new(db, "127.0.0.1:0".parse().unwrap());
    serve.provider_env = ProviderEnv::with_openai_base_url(mock.base_url());
    let keys: ApiKeys = format!("{ALICE_KEY}=alice,{BOB_KEY}=bob").parse().unwrap();
    serve.auth = AuthConfig::with_keys(keys);
    serve.limits = limits;
    start(serve).await.unwrap()
}

/// Builds a client of `server` that sends `Authorization: <authorization>`, or no header.
fn client(server: &RunningServer, authorization: Option<&str>) -> Api {
    let mut headers = HeaderMap::new();
    if let Some(value) = authorization {
        headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
    }
    let http = reqwest::Client::builder().default_headers(headers).build().unwrap();
    Api { http, base: format!("http://{}", server.addr()) }
}

fn user(server: &RunningServer, key: &str) -> Api {
    client(server, Some(&format!("Bearer {key}")))
}

/// Sends `method` to an `/api/v1` path with an optional JSON body; returns status, headers
/// and body.
async fn send(api: &Api, method: &str, path: &str, body: Option<&Value>) -> (u16, HeaderMap, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = api.http.request(method, format!("{}/api/v1{path}", api.base));
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.json().await.unwrap_or(Value::Null))
}

/// Removes `created_by_user_id`, which the server fills in from the key.
fn without_user(mut body: Value) -> Value {
    body.as_object_mut().unwrap().remove("created_by_user_id");
    body
}

/// The ids of one user's task, team, session and finished run.
struct Rows {
    task: String,
    team: String,
    session: String,
    run: String,
}

async fn create(api: &Api, path: &str, body: &Value) -> Value {
    let (status, _, created) = send(api, "POST", path, Some(body)).await;
    assert_eq!(status, 201, "POST {path}: {created}");
    created["data"].clone()
}

/// Creates a task, team, session and run as `api`'s user and waits for the run to end.
async fn create_rows(api: &Api) -> Rows {
    let task = create(api, "/task", &without_user(task_body())).await;
    let team = create(api, "/team", &without_user(team_body(None))).await;
    let (task_id, team_id) = (task["id"].as_str().unwrap(), team["id"].as_str().unwrap());
    let session = create(api, "/session", &without_user(session_body(task_id, team_id))).await;
    let session_id = session["id"].as_str().unwrap();
    let run = create(api, "/run", &without_user(run_body(session_id, task_id))).await;
    let run_id = run["id"].as_str().unwrap();
    api.wait_terminal(run_id, Duration::from_secs(30)).await;
    Rows { task: task_id.to_owned(), team: team_id.to_owned(), session: session_id.to_owned(), run: run_id.to_owned() }
}

#[tokio::test]
async fn missing_or_invalid_key_is_401() {
    let mock = MockProvider::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new().unwrap();
    let server = start_server(&dir.path().join("aegis.db"), &mock, LimitsConfig::default()).await;

    let cases = [
        (None, "Bearer", "missing"),
        (Some("Basic YWxpY2U6c2VjcmV0"), "Bearer", "missing"),
        (Some("Bearer "), "Bearer", "missing"),
        (Some("Bearer not-a-configured-key"), "Bearer error=\"invalid_token\"", "invalid_api_key"),
        (Some(&*format!("Bearer {ALICE_KEY}x")), "Bearer error=\"invalid_token\"", "invalid_api_key"),
    ];
    for (authorization, challenge, code) in cases {
        let api = client(&server, authorization);
        for (method, path) in
            [("GET", "/task"), ("POST", "/task"), ("GET", "/run/0190d7a0-0000-7000-8000-000000000000")]
        {
            let (status, headers, body) = send(&api, method, path, Some(&json!({"name": "x"}))).await;
            assert_eq!(status, 401, "{method} {path} with {authorization:?}: {body}");
            assert_eq!(headers[WWW_AUTHENTICATE], challenge, "{authorization:?}");
            assert_eq!(body["data"], Value::Null);
            assert_eq!(body["meta"]["errors"][0]["field"], "Authorization", "{body}");
            assert_eq!(body["meta"]["errors"][0]["code"], code, "{body}");
            assert!(body["meta"]["errors"][0]["fix"].is_string(), "{body}");
        }
    }
    let (_, _, listed) = send(&user(&server, ALICE_KEY), "GET", "/task", None).await;
    assert_eq!(listed["data"], json!([]), "a rejected POST created nothing");

    let (status, _, body) = send(&client(&server, Some(&format!("bearer {ALICE_KEY}"))), "GET", "/task", None).await;
    assert_eq!(status, 200, "the scheme is case-insensitive: {body}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn public_routes_need_no_key() {
    let mock = MockProvider::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new().unwrap();
    let server = start_server(&dir.path().join("aegis.db"), &mock, LimitsConfig::default()).await;
    let http = reqwest::Client::new();

    let health = http.get(format!("http://{}/healthz", server.addr())).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok");
    // A route that other parts of the server may add; whether it exists or not, no key is asked.
    let readiness = http.get(format!("http://{}/readyz", server.addr())).send().await.unwrap();
    assert_ne!(readiness.status(), 401, "/readyz asked for a key");
    // Swagger UI (`/docs` redirects to `/docs/`) and the OpenAPI document are served without a key.
    for path in ["/docs", "/docs/index.html", "/api/v1/openapi.json"] {
        let response = http.get(format!("http://{}{path}", server.addr())).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn metrics_need_a_key() {
    let mock = MockProvider::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new().unwrap();
    let server = start_server(&dir.path().join("aegis.db"), &mock, LimitsConfig::default()).await;
    let url = format!("http://{}/metrics", server.addr());

    let anonymous = reqwest::get(&url).await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let scraped = reqwest::Client::new().get(&url).bearer_auth(ALICE_KEY).send().await.unwrap();
    assert_eq!(scraped.status(), 200);
    assert!(scraped.text().await.unwrap().contains("aegis_"), "the scrape lists aegis metrics");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn users_see_only_their_own_rows() {
    let mock = MockProvider::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new().unwrap();
    let server = start_server(&dir.path().join("aegis.db"), &mock, LimitsConfig::default()).await;
    let (alice, bob) = (user(&server, ALICE_KEY), user(&server, BOB_KEY));
    let rows = create_rows(&alice).await;
    let bobs = create_rows(&bob).await;

    let resources = [("task", &rows.task), ("team", &rows.team), ("session", &rows.session), ("run", &rows.run)];
    for (kind, id) in resources {
        let (status, _, own) = send(&alice, "GET", &format!("/{kind}/{id}"), None).await;
        assert_eq!(status, 200, "{kind}: {own}");
        assert_eq!(own["data"]["created_by_user_id"], "alice", "the key's user owns the {kind}");

        let (status, _, listed) = send(&alice, "GET", &format!("/{kind}?archived=any"), None).await;
        assert_eq!(status, 200, "{listed}");
        let ids: Vec<&str> = listed["data"].as_array().unwrap().iter().map(|row| row["id"].as_str().unwrap()).collect();
        assert_eq!(ids, [id.as_str()], "Alice lists only her {kind}");

        let (_, _, listed) = send(&bob, "GET", &format!("/{kind}?archived=any"), None).await;
        assert!(!listed.to_string().contains(id.as_str()), "Bob's {kind} list shows Alice's row: {listed}");
        assert_eq!(listed["data"].as_array().unwrap().len(), 1, "Bob lists only his {kind}: {listed}");

        let mut attempts = vec![
            ("GET", format!("/{kind}/{id}"), None),
            ("PATCH", format!("/{kind}/{id}"), Some(json!({"archived": true}))),
            ("DELETE", format!("/{kind}/{id}?cascade=true"), None),
        ];
        if kind == "run" {
            attempts.push(("GET", format!("/run/{id}?wait=1"), None));
            attempts.push(("GET", format!("/run/{id}/messages"), None));
            attempts.push(("GET", format!("/run/{id}/stream"), None));
            attempts.push(("POST", format!("/run/{id}/cancel"), None));
        }
        for (method, path, body) in attempts {
            let (status, _, answer) = send(&bob, method, &path, body.as_ref()).await;
            assert_eq!(status, 404, "Bob's {method} {path}: {answer}");
            assert_eq!(answer["meta"]["errors"][0]["code"], "not_found", "{answer}");
        }

        let (status, _, still) = send(&alice, "GET", &format!("/{kind}/{id}"), None).await;
        assert_eq!(status, 200, "{still}");
        assert_eq!(still["data"]["archived"], false, "Bob's PATCH changed Alice's {kind}");
    }

    let (status, _, messages) = send(&alice, "GET", &format!("/run/{}/messages", rows.run), None).await;
    assert_eq!(status, 200, "{messages}");
    assert!(!messages["data"].as_array().unwrap().is_empty(), "{messages}");
    let (status, _, deleted) = send(&bob, "DELETE", &format!("/task/{}?cascade=true", bobs.task), None).await;
    assert_eq!(status, 200, "Bob deletes his own rows: {deleted}");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn naming_another_user_is_403() {
    let mock = MockProvider::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new().unwrap();
    let server = start_server(&dir.path().join("aegis.db"), &mock, LimitsConfig::default()).await;
    let alice = user(&server, ALICE_KEY);
    let rows = create_rows(&alice).await;

    let bodies = [
        ("/task", task_body()),
        ("/team", team_body(None)),
        ("/session", session_body(&rows.task, &rows.team)),
        ("/run", run_body(&rows.session, &rows.task)),
    ];
    for (path, mut body) in bodies {
        body["created_by_user_id"] = json!("bob");
        let (status, _, answer) = send(&alice, "POST", path, Some(&body)).await;
        assert_eq!(status, 403, "POST {path}: {answer}");
        assert_eq!(answer["meta"]["errors"][0]["field"], "created_by_user_id", "{answer}");
        assert!(answer["message"].as_str().unwrap().contains("created_by_user_id"), "{answer}");

        body["created_by_user_id"] = json!("alice");
        let (status, _, answer) = send(&alice, "POST", path, Some(&body)).await;
        assert_eq!(status, 201, "naming oneself is allowed: POST {path}: {answer}");
    }

    let (status, _, answer) = send(&alice, "GET", "/run?created_by_user_id=bob", None).await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(answer["meta"]["errors"][0]["field"], "created_by_user_id");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn references_to_other_users_rows_are_404() {
    let mock = MockProvider::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new().unwrap();
    let server = start_server(&dir.path().join("aegis.db"), &mock, LimitsConfig::default()).await;
    let (alice, bob) = (user(&server, ALICE_KEY), user(&server, BOB_KEY));
    let rows = create_rows(&alice).await;
    let bobs = create_rows(&bob).await;

    let cases = [
        ("/session", without_user(session_body(&rows.task, &bobs.team)), "task_id"),
        ("/session", without_user(session_body(&bobs.task, &rows.team)), "team_id"),
        ("/run", without_user(run_body(&rows.session, &rows.task)), "session_id"),
    ];
    for (path, body, field) in cases {
        let (status, _, answer) = send(&bob, "POST", path, Some(&body)).await;
        assert_eq!(status, 404, "POST {path}: {answer}");
        assert_eq!(answer["meta"]["errors"][0]["field"], field, "{answer}");
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn idempotency_keys_are_per_user() {
    let mock = MockProvider::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new().unwrap();
    let server = start_server(&dir.path().join("aegis.db"), &mock, LimitsConfig::default()).await;
    let body = without_user(task_body());

    let mut ids = Vec::new();
    for key in [ALICE_KEY, BOB_KEY, ALICE_KEY] {
        let api = user(&server, key);
        let response = api
            .http
            .post(format!("{}/api/v1/task", api.base))
            .header("Idempotency-Key", "same-key")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let created: Value = response.json().await.unwrap();
        ids.push(created["data"]["id"].as_str().unwrap().to_owned());
    }
    assert_ne!(ids[0], ids[1], "Bob's key reused Alice's task");
    assert_eq!(ids[0], ids[2], "Alice's retry created a second task");
    let (status, _, bobs) = send(&user(&server, BOB_KEY), "GET", &format!("/task/{}", ids[1]), None).await;
    assert_eq!(status, 200);
    assert_eq!(bobs["data"]["created_by_user_id"], "bob");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn rate_limit_is_429_with_retry_after() {
    let mock = MockProvider::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new().unwrap();
    // A tenth of a request per second: the burst of two is spent at once, and the next
    // request is ten seconds away, far longer than the requests below take.
    let mut limits = LimitsConfig::default();
    limits.rate_limit_rps = Some(0.1);
    let server = start_server(&dir.path().join("aegis.db"), &mock, limits).await;
    let (alice, bob) = (user(&server, ALICE_KEY), user(&server, BOB_KEY));

    for _ in 0..2 {
        let (status, _, body) = send(&alice, "GET", "/task", None).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, headers, body) = send(&alice, "GET", "/task", None).await;
    assert_eq!(status, 429, "{body}");
    let retry_after: u64 = headers[RETRY_AFTER].to_str().unwrap().parse().unwrap();
    assert!((1..=10).contains(&retry_after), "Retry-After {retry_after}");
    assert_eq!(body["data"], Value::Null);
    assert_eq!(body["meta"]["errors"][0]["code"], "rate_limited", "{body}");

    let (status, _, body) = send(&bob, "GET", "/task", None).await;
    assert_eq!(status, 200, "Bob's key has its own bucket: {body}");
    let health = reqwest::get(format!("http://{}/healthz", server.addr())).await.unwrap();
    assert_eq!(health.status(), 200, "public routes are not limited");
    server.stop().await.unwrap();
}

#[tokio::test]
async fn token_budget_fails_later_runs() {
    let mock = MockProvider::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("aegis.db");
    let mut limits = LimitsConfig::default();
    limits.token_budget = Some(1);
    let server = start_server(&db, &mock, limits.clone()).await;
    let (alice, bob) = (user(&server, ALICE_KEY), user(&server, BOB_KEY));

    let rows = create_rows(&alice).await;
    let (_, _, first) = send(&alice, "GET", &format!("/run/{}", rows.run), None).await;
    assert_eq!(first["data"]["status"], "complete", "the first run is under the budget: {first}");
    let usage = &first["data"]["team_result"]["usage"];
    let used = usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap();
    assert!(used > 0, "the mock reports usage: {usage}");
    let calls = mock.requests().len();

    let second = create(&alice, "/run", &without_user(run_body(&rows.session, &rows.task))).await;
    let second = alice.wait_terminal(second["id"].as_str().unwrap(), Duration::from_secs(30)).await;
    assert_eq!(second["status"], "error", "{second}");
    assert_eq!(second["error_details"]["type"], "BudgetExceededError", "{second}");
    let message = second["error_message"].as_str().unwrap();
    assert!(message.starts_with("BudgetExceededError: "), "{message}");
    assert!(message.contains(&format!("used {used} tokens")), "{message}");
    assert!(message.contains("budget of 1 tokens"), "{message}");
    assert!(message.contains("--token-budget"), "{message}");
    assert_eq!(mock.requests().len(), calls, "a run over the budget called the model");

    create_rows(&bob).await;
    let (_, _, bobs) = send(&bob, "GET", "/run", None).await;
    assert_eq!(bobs["data"][0]["status"], "complete", "the budget is per user: {bobs}");
    server.stop().await.unwrap();

    // Usage is read from the store, so the budget still applies after a restart.
    let restarted = start_server(&db, &mock, limits).await;
    let alice = user(&restarted, ALICE_KEY);
    let third = create(&alice, "/run", &without_user(run_body(&rows.session, &rows.task))).await;
    let third = alice.wait_terminal(third["id"].as_str().unwrap(), Duration::from_secs(30)).await;
    assert_eq!(third["error_details"]["type"], "BudgetExceededError", "{third}");
    restarted.stop().await.unwrap();
}

#[tokio::test]
async fn token_budget_stops_run_between_calls() {
    let mock = MockProvider::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new().unwrap();
    let mut limits = LimitsConfig::default();
    limits.token_budget = Some(1);
    let server = start_server(&dir.path().join("aegis.db"), &mock, limits).await;
    let alice = user(&server, ALICE_KEY);

    // One agent taking three turns makes three model calls; the first one uses the budget.
    let agent = team_body(None)["component"].clone();
    let team = json!({"component": {
        "provider": "autogen_agentchat.teams.RoundRobinGroupChat",
        "component_type": "team",
        "config": {"participants": [agent], "max_turns": 3}
    }});
    let task = create(&alice, "/task", &without_user(task_body())).await;
    let team = create(&alice, "/team", &team).await;
    let (task_id, team_id) = (task["id"].as_str().unwrap(), team["id"].as_str().unwrap());
    let session = create(&alice, "/session", &without_user(session_body(task_id, team_id))).await;
    let run = create(&alice, "/run", &without_user(run_body(session["id"].as_str().unwrap(), task_id))).await;
    let run = alice.wait_terminal(run["id"].as_str().unwrap(), Duration::from_secs(30)).await;

    assert_eq!(run["status"], "error", "{run}");
    assert_eq!(run["error_details"]["type"], "BudgetExceededError", "{run}");
    assert_eq!(mock.requests().len(), 1, "the run called the model after the budget was used");
    assert_eq!(run["messages"].as_array().unwrap().len(), 1, "the first reply is kept: {run}");
    assert!(run["team_result"]["usage"]["prompt_tokens"].as_u64().unwrap() > 0, "{run}");
    server.stop().await.unwrap();
}

/// Starts `aegis serve` with `args` on a fresh database and returns the child.
fn spawn_binary(db: &Path, args: &[&str]) -> tokio::process::Child {
    Command::new(env!("CARGO_BIN_EXE_aegis"))
        .arg("serve")
        .arg("--db")
        .arg(db)
        .args(args)
        .env_remove("AEGIS_API_KEYS")
        .env_remove("AEGIS_ALLOW_UNAUTHENTICATED")
        .env_remove("AEGIS_BIND")
        .env("AEGIS_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the aegis binary starts")
}

/// Waits for the child to exit and returns its stderr.
async fn failed_start(mut child: tokio::process::Child) -> String {
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait()).await.expect("exits").unwrap();
    assert!(!status.success(), "the server started");
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).await.unwrap();
    stderr
}

#[tokio::test]
async fn open_bind_without_keys_is_rejected() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("aegis.db");

    let stderr = failed_start(spawn_binary(&db, &["--bind", "0.0.0.0:0"])).await;
    assert!(stderr.contains("refusing to listen on 0.0.0.0:0"), "{stderr}");
    assert!(stderr.contains("--api-keys"), "{stderr}");
    assert!(stderr.contains("--allow-unauthenticated"), "{stderr}");
    assert!(!db.exists(), "a rejected start created the database");

    let mut child = spawn_binary(&db, &["--bind", "0.0.0.0:0", "--allow-unauthenticated"]);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await.unwrap().unwrap();
    assert!(line.is_some_and(|line| line.starts_with("listening on 0.0.0.0:")), "the opted-out server did not start");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn bad_api_keys_fail_without_echo() {
    let dir = TempDir::new().unwrap();
    let secret = "leaky-secret-value";
    let stderr = failed_start(spawn_binary(&dir.path().join("aegis.db"), &["--api-keys", secret])).await;
    assert!(stderr.contains("invalid --api-keys"), "{stderr}");
    assert!(stderr.contains("KEY=USER_ID"), "{stderr}");
    assert!(!stderr.contains(secret), "the key was printed: {stderr}");

    let stderr = failed_start(spawn_binary(&dir.path().join("aegis.db"), &["--rate-limit-rps", "5"])).await;
    assert!(stderr.contains("no keys are configured"), "{stderr}");
}
