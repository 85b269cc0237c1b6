//! Operations over the real `aegis` binary: `/readyz`, `/metrics` after runs of every
//! outcome, request ids, the TOML configuration file and its documentation, `aegis backup`
//! under writes, `aegis mock-provider`, and readiness of a PostgreSQL store that goes away.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::Command;

use aegis_core::Storage;
use aegis_http::mock::{MockConfig, MockProvider, MockReply};
use aegis_http::server::{ServeConfig, StoreChoice, start};
use aegis_store_postgres::testing::TestDatabase;
use aegis_store_sqlite::SqliteStore;
use common::process::{AegisProcess, args, create_run, read_listening_line, session_with, wait_run, wait_status};
use common::{Api, run_body};

const AEGIS: &str = env!("CARGO_BIN_EXE_aegis");

/// Reads `/metrics` and returns every sample by its full series name, such as
/// `aegis_runs_total{status="complete",error_type=""}`.
async fn scrape(api: &Api) -> HashMap<String, f64> {
    let response = api.http.get(format!("{}/metrics", api.base)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = response.text().await.unwrap();
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse().unwrap())
        })
        .collect()
}

fn sample(samples: &HashMap<String, f64>, series: &str) -> f64 {
    *samples.get(series).unwrap_or_else(|| panic!("no series {series} in {samples:#?}"))
}

#[tokio::test]
async fn metrics_count_runs_of_each_outcome() {
    let mock = MockProvider::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("aegis.db").to_string_lossy().into_owned();
    let server = AegisProcess::start(&args(&[&["--db", db.as_str()]]), &mock.base_url()).await;
    let api = &server.api;
    let (task_id, session_id) = session_with(api, json!({"max_concurrent_runs": 1})).await;

    // complete, after one retry of a 429 that requests no wait
    mock.push(MockReply::rate_limited(0));
    mock.push(MockReply::text("{\"satisfactory\": true}"));
    let complete = create_run(api, &run_body(&session_id, &task_id)).await;
    assert_eq!(wait_run(api, &complete).await["status"], "complete");

    // error: a 400 is not retried
    mock.push(MockReply::openai_error(400, "the prompt is invalid", "invalid_request_error"));
    let failed = create_run(api, &run_body(&session_id, &task_id)).await;
    let failed = wait_run(api, &failed).await;
    assert_eq!(failed["status"], "error", "{failed}");
    let error_type = failed["error_details"]["type"].as_str().unwrap().to_owned();

    // stopped: a model call that hangs, with a second run queued behind it in the session
    mock.push(MockReply::text("{\"satisfactory\": true}").delayed(Duration::from_secs(60)));
    let hanging = create_run(api, &run_body(&session_id, &task_id)).await;
    wait_status(api, &hanging, "active").await;
    let queued = create_run(api, &run_body(&session_id, &task_id)).await;

    let busy = scrape(api).await;
    assert_eq!(sample(&busy, "aegis_queue_depth"), 1.0, "the queued run waits");
    assert_eq!(sample(&busy, "aegis_runs_active"), 1.0, "the hanging run executes");

    let (status, body) = api.post(&format!("/run/{queued}/cancel"), &Value::Null).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api.post(&format!("/run/{hanging}/cancel"), &Value::Null).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(wait_run(api, &hanging).await["status"], "stopped");

    let done = scrape(api).await;
    assert_eq!(sample(&done, "aegis_runs_total{status=\"complete\",error_type=\"\"}"), 1.0);
    assert_eq!(sample(&done, &format!("aegis_runs_total{{status=\"error\",error_type=\"{error_type}\"}}")), 1.0);
    assert_eq!(sample(&done, "aegis_runs_total{status=\"stopped\",error_type=\"\"}"), 1.0);
    assert_eq!(sample(&done, "aegis_runs_active"), 0.0);
    assert_eq!(sample(&done, "aegis_queue_depth"), 0.0);

    // The hanging call was aborted by the cancel, so two calls finished: one per ended run.
    let model = "provider=\"openai\",model=\"gpt-4o-mini\"";
    assert_eq!(sample(&done, &format!("aegis_model_call_duration_seconds_count{{{model}}}")), 2.0);
    assert_eq!(sample(&done, &format!("aegis_model_call_duration_seconds_bucket{{{model},le=\"+Inf\"}}")), 2.0);
    assert!(sample(&done, &format!("aegis_model_tokens_total{{{model},kind=\"prompt\"}}")) > 0.0);
    assert!(sample(&done, &format!("aegis_model_tokens_total{{{model},kind=\"completion\"}}")) > 0.0);
    assert_eq!(sample(&done, "aegis_model_retries_total{provider=\"openai\"}"), 1.0);

    // Route templates, never raw paths with ids.
    assert_eq!(sample(&done, "aegis_http_requests_total{route=\"/api/v1/run\",method=\"POST\",status=\"201\"}"), 4.0);
    assert_eq!(
        sample(&done, "aegis_http_requests_total{route=\"/api/v1/run/{id}/cancel\",method=\"POST\",status=\"200\"}"),
        2.0
    );
    assert!(done.keys().all(|series| !series.contains(&hanging)), "no series names a run id");
    assert!(sample(&done, "aegis_http_request_duration_seconds_count{route=\"/api/v1/run/{id}\"}") >= 1.0);
    server.stop().await;
}

#[tokio::test]
async fn readyz_and_request_ids() {
    let mock = MockProvider::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("aegis.db").to_string_lossy().into_owned();
    let server = AegisProcess::start(&args(&[&["--db", db.as_str()]]), &mock.base_url()).await;
    let http = &server.api.http;
    let base = &server.api.base;

    let ready = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    let generated = ready.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(uuid::Uuid::parse_str(&generated).unwrap().get_version_num(), 7, "{generated}");
    let body: Value = ready.json().await.unwrap();
    assert_eq!(body["data"]["store"], "ok", "{body}");

    let echoed = http.get(format!("{base}/api/v1/task")).header("x-request-id", "trace-42").send().await.unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-42");
    let missing = http.get(format!("{base}/no/such/path")).header("x-request-id", "trace-43").send().await.unwrap();
    assert_eq!(missing.status(), 404);
    assert_eq!(missing.headers()["x-request-id"], "trace-43", "errors carry the id too");
    let spaced = http.get(format!("{base}/healthz")).header("x-request-id", "not valid").send().await.unwrap();
    assert_ne!(spaced.headers()["x-request-id"], "not valid", "an id with spaces is replaced");
    server.stop().await;
}

#[tokio::test]
async fn json_logs_carry_request_and_run_fields() {
    let mock = MockProvider::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("aegis.db");
    let mut child = Command::new(AEGIS)
        .args(["serve", "--bind", "127.0.0.1:0", "--log-format", "json", "--db"])
        .arg(&db)
        .env_remove("AEGIS_CONFIG")
        .env("AEGIS_LOG", "info,aegis_core=debug")
        .env("OPENAI_BASE_URL", mock.base_url())
        .env("OPENAI_API_KEY", "sk-test-key")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let api = Api::new(read_listening_line(child.stdout.take().unwrap()).await.parse().unwrap());
    let response = api
        .http
        .get(format!("{}/api/v1/task/{}", api.base, uuid::Uuid::now_v7()))
        .header("x-request-id", "log-check-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let (task_id, session_id) = session_with(&api, json!({})).await;
    let run_id = create_run(&api, &run_body(&session_id, &task_id)).await;
    assert_eq!(wait_run(&api, &run_id).await["status"], "complete");

    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut request, mut model_call) = (None, None);
    while request.is_none() || model_call.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line()).await.unwrap().unwrap().unwrap();
        let event: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        if event["fields"]["message"] == "request finished" && event["span"]["request_id"] == "log-check-1" {
            request = Some(event);
        } else if event["fields"]["message"] == "model call finished" {
            model_call = Some(event);
        }
    }

    let request = request.unwrap();
    assert_eq!(request["span"]["method"], "GET", "{request}");
    assert_eq!(request["span"]["route"], "/api/v1/task/{id}", "{request}");
    assert_eq!(request["span"]["status"], 404, "{request}");

    let model_call = model_call.unwrap();
    let spans = model_call["spans"].as_array().unwrap();
    let run_span = spans.iter().find(|span| span["name"] == "run").unwrap_or_else(|| panic!("{model_call}"));
    assert_eq!(run_span["run_id"], run_id.as_str(), "{model_call}");
    assert_eq!(run_span["session_id"], session_id.as_str(), "{model_call}");
    assert_eq!(model_call["fields"]["agent"], "automarking_agent", "{model_call}");
    assert_eq!(model_call["fields"]["gen_ai.request.model"], "gpt-4o-mini", "{model_call}");
    assert!(model_call["fields"]["gen_ai.usage.input_tokens"].as_u64().unwrap() > 0, "{model_call}");
    child.kill().await.unwrap();
}

/// Starts `aegis serve` with `extra` arguments and environment, stops it with SIGTERM once it
/// is ready, and returns its exit status and output.
async fn serve_with(extra: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let mut command = Command::new(AEGIS);
    command
        .args(["serve", "--bind", "127.0.0.1:0"])
        .args(extra)
        .env_remove("AEGIS_DB")
        .env_remove("AEGIS_CONFIG")
        .env_remove("AEGIS_DATABASE_URL")
        .env("AEGIS_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    // A server that starts is stopped once /readyz responds, by which time its signal
    // handlers are installed.
    if let Ok(Ok(Some(line))) = tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await {
        let addr = line.strip_prefix("listening on ").unwrap().to_owned();
        let ready = reqwest::get(format!("http://{addr}/readyz")).await.unwrap();
        assert_eq!(ready.status(), 200);
        let pid = child.id().unwrap().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().await.unwrap();
    }
    child.wait_with_output().await.unwrap()
}

fn write_config(dir: &Path, text: &str) -> String {
    let path = dir.join("aegis.toml");
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[tokio::test]
async fn config_file_precedence() {
    let dir = TempDir::new().unwrap();
    let from_file = dir.path().join("file.db");
    let from_env = dir.path().join("env.db");
    let from_flag = dir.path().join("flag.db");
    let config = write_config(dir.path(), &format!("db = {:?}\nworkers = 3\n", from_file.to_str().unwrap()));

    let output = serve_with(&["--config", &config], &[]).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(from_file.exists(), "the file's db is used when nothing else sets one");

    let env_db = from_env.to_str().unwrap();
    let output = serve_with(&[], &[("AEGIS_CONFIG", &config), ("AEGIS_DB", env_db)]).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(from_env.exists(), "the environment beats the file");

    let flag_db = from_flag.to_str().unwrap();
    let output = serve_with(&["--config", &config, "--db", flag_db], &[("AEGIS_DB", env_db)]).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(from_flag.exists(), "the flag beats the environment and the file");
}

#[tokio::test]
async fn config_file_errors_name_the_key() {
    let dir = TempDir::new().unwrap();
    let cases = [
        ("run_timeout = 5\n", "`run_timeout`", "did you mean `run-timeout`?"),
        ("wrokers = 5\n", "`wrokers`", "did you mean `workers`?"),
        ("workers = \"many\"\n", "invalid value for `workers`", "many"),
        ("workers = [1, 2]\n", "invalid value for `workers`", "array"),
        ("workers = \n", "not valid TOML", "aegis.toml"),
    ];
    for (text, first, second) in cases {
        let config = write_config(dir.path(), text);
        let output = serve_with(&["--config", &config, "--db", "/nonexistent/dir/x.db"], &[]).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{text}: {stderr}");
        assert!(stderr.contains(first), "{text}: {stderr}");
        assert!(stderr.contains(second), "{text}: {stderr}");
    }
}

#[tokio::test]
async fn second_server_on_one_file_is_refused() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("aegis.db").to_string_lossy().into_owned();
    let first = AegisProcess::start(&["--db".to_owned(), db.clone()], "http://127.0.0.1:9").await;

    let output = serve_with(&["--db", &db], &[]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("in use by another process"), "{stderr}");

    // The kernel releases the lock of a killed process, so a restart needs no clean-up.
    first.kill().await;
    let output = serve_with(&["--db", &db], &[]).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[tokio::test]
async fn bad_log_filter_is_reported() {
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("aegis.db").to_string_lossy().into_owned();
    let output = serve_with(&["--db", &db], &[("AEGIS_LOG", "garbage=[[")]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("AEGIS_LOG is not a valid filter"), "{stderr}");
}

#[tokio::test]
async fn env_errors_name_the_variable() {
    let output = serve_with(&[], &[("AEGIS_WORKERS", "many")]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("--workers"), "{stderr}");
    assert!(stderr.contains("environment variable AEGIS_WORKERS"), "{stderr}");

    let output = serve_with(&["--workers", "many"], &[("AEGIS_WORKERS", "8")]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(!stderr.contains("environment variable"), "a typed flag is not blamed on the environment: {stderr}");

    let output = serve_with(&["--workers=many"], &[("AEGIS_WORKERS", "8")]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(!stderr.contains("environment variable"), "`--flag=value` is typed too: {stderr}");

    let output = serve_with(&[], &[("AEGIS_PROVIDER_HTTP", "http3")]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("environment variable AEGIS_PROVIDER_HTTP"), "{stderr}");

    // Two settings that conflict are not a bad value, so no variable is blamed.
    let output = serve_with(&[], &[("AEGIS_DB", "/tmp/x.db"), ("AEGIS_DATABASE_URL", "postgres://127.0.0.1/x")]).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(!stderr.contains("environment variable"), "{stderr}");

    // `--bind` belongs to two subcommands, each with its own variable.
    let output = Command::new(AEGIS)
        .arg("mock-provider")
        .env("AEGIS_BIND", "127.0.0.1:0")
        .env("AEGIS_MOCK_BIND", "nowhere")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("environment variable AEGIS_MOCK_BIND"), "{stderr}");
}

/// Returns the long flags (without dashes) and environment variables that `aegis
/// <subcommand> --help` lists, leaving out `--help`.
async fn help_settings(subcommand: &str) -> (Vec<String>, Vec<String>) {
    let output = Command::new(AEGIS).args([subcommand, "--help"]).output().await.unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();

    let mut flags = Vec::new();
    for line in help.lines().filter(|line| line.trim_start().starts_with('-')) {
        let Some(start) = line.find("--") else { continue };
        let flag: String = line[start + 2..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
        if flag != "help" {
            flags.push(flag);
        }
    }
    let variables = help
        .lines()
        .filter_map(|line| line.find("[env: ").map(|start| &line[start + 6..]))
        .map(|rest| rest.chars().take_while(|c| *c != '=' && *c != ']').collect())
        .collect();
    (flags, variables)
}

#[tokio::test]
async fn every_flag_is_documented() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/CONFIGURATION.md")).unwrap();
    for subcommand in ["serve", "backup", "mock-provider"] {
        let section = docs
            .split("\n## ")
            .find(|section| section.starts_with(&format!("`aegis {subcommand}`")))
            .unwrap_or_else(|| panic!("docs/CONFIGURATION.md has no section for aegis {subcommand}"));
        let (flags, variables) = help_settings(subcommand).await;
        assert!(!flags.is_empty(), "aegis {subcommand} --help lists flags");
        for flag in &flags {
            assert!(section.contains(&format!("| `--{flag}` |")), "aegis {subcommand}: --{flag} is not documented");
        }
        for variable in &variables {
            assert!(section.contains(&format!("`{variable}`")), "aegis {subcommand}: {variable} is not documented");
        }
    }
    let (serve_flags, _) = help_settings("serve").await;
    assert!(serve_flags.len() >= 15, "{serve_flags:?}");
}

#[tokio::test]
async fn backup_while_server_writes() {
    let mock = MockProvider::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new().unwrap();
    let db = dir.path().join("aegis.db");
    let db_arg = db.to_string_lossy().into_owned();
    let server = AegisProcess::start(&args(&[&["--db", db_arg.as_str()]]), &mock.base_url()).await;
    let api = server.api.clone();
    let (task_id, session_id) = session_with(&api, json!({})).await;
    let first = create_run(&api, &run_body(&session_id, &task_id)).await;
    wait_run(&api, &first).await;

    // Runs keep being created while the backups are taken.
    let writer = {
        let api = api.clone();
        let (task_id, session_id) = (task_id.clone(), session_id.clone());
        tokio::spawn(async move {
            let mut created = Vec::new();
            for _ in 0..40 {
                created.push(create_run(&api, &run_body(&session_id, &task_id)).await);
            }
            created
        })
    };
    let mut backups = Vec::new();
    for index in 0..3 {
        let out = dir.path().join(format!("backup-{index}.db"));
        let output = Command::new(AEGIS).args(["backup", "--db", &db_arg, "--out"]).arg(&out).output().await.unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.starts_with("backed up "), "{stdout}");
        backups.push(out);
    }
    let created = writer.await.unwrap();
    server.stop().await;

    let again = Command::new(AEGIS).args(["backup", "--db", &db_arg, "--out"]).arg(&backups[0]).output().await.unwrap();
    assert!(!again.status.success(), "a backup never overwrites a file");
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let task_id = task_id.parse().unwrap();
    let first = first.parse().unwrap();
    for backup in &backups {
        let store = SqliteStore::open_default(backup).await.unwrap();
        assert!(store.get_task(task_id).await.unwrap().is_some(), "{}", backup.display());
        let run = store.get_run(first).await.unwrap().expect("the run before the backup is in it");
        assert_eq!(run.status.as_str(), "complete");
        store.ready().await.unwrap();
        store.close().await;
    }
    // Each backup is a snapshot taken after the one before, so it contains every run the
    // earlier one contains.
    let mut previous: Vec<String> = Vec::new();
    for backup in &backups {
        let store = SqliteStore::open_default(backup).await.unwrap();
        let mut present = Vec::new();
        for run_id in &created {
            if store.get_run(run_id.parse().unwrap()).await.unwrap().is_some() {
                present.push(run_id.clone());
            }
        }
        assert!(previous.iter().all(|run_id| present.contains(run_id)), "{} lost runs", backup.display());
        previous = present;
        store.close().await;
    }
}

#[tokio::test]
async fn mock_provider_subcommand_serves_and_guards_binds() {
    let mut child = Command::new(AEGIS)
        .args(["mock-provider", "--bind", "127.0.0.1:0", "--model", "cli-mock", "--reply", "echo"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr = read_listening_line(child.stdout.take().unwrap()).await;
    let http = reqwest::Client::new();
    let models: Value = http.get(format!("http://{addr}/v1/models")).send().await.unwrap().json().await.unwrap();
    assert_eq!(models["data"][0]["id"], "cli-mock", "{models}");
    let reply: Value = http
        .post(format!("http://{addr}/v1/chat/completions"))
        .json(&json!({"model": "cli-mock", "messages": [{"role": "user", "content": "hello"}]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reply["choices"][0]["message"]["content"], "mock reply to: hello", "{reply}");
    let pid = child.id().unwrap().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().await.unwrap();
    assert!(child.wait().await.unwrap().success());

    let refused = Command::new(AEGIS).args(["mock-provider", "--bind", "0.0.0.0:0"]).output().await.unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--allow-non-loopback"));
}

/// Forwards TCP connections from a loopback port to `target` until aborted; aborting closes
/// every forwarded connection, as a database that went away would.
async fn start_proxy(target: String) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else { return };
            let target = target.clone();
            connections.spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn readyz_fails_when_postgres_goes_away() {
    let Some(database) = TestDatabase::create("readyz_fails_when_postgres_goes_away").await else {
        return;
    };
    let config: tokio_postgres::Config = database.url().parse().unwrap();
    let tokio_postgres::config::Host::Tcp(host) = &config.get_hosts()[0] else {
        panic!("the test database must be reached over TCP: {:?}", config.get_hosts());
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let (proxy_addr, proxy) = start_proxy(format!("{host}:{port}")).await;
    let proxied = database.url().replacen(&format!("{host}:{port}"), &proxy_addr.to_string(), 1);
    assert_ne!(proxied, database.url(), "the URL names host and port");

    let store = StoreChoice::Postgres { url: proxied, pool_size: 2 };
    let server = start(ServeConfig::with_store(store, "127.0.0.1:0".parse().unwrap())).await.unwrap();
    let api = Api::new(server.addr());
    let ready = api.http.get(format!("{}/readyz", api.base)).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    proxy.abort();
    let _ = proxy.await;
    let response = api.http.get(format!("{}/readyz", api.base)).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["meta"]["errors"][0]["field"], "store", "{body}");
    assert!(body["message"].as_str().unwrap().starts_with("Not ready: "), "{body}");
    assert_eq!(body["data"], Value::Null);

    let health = api.http.get(format!("{}/healthz", api.base)).send().await.unwrap();
    assert_eq!(health.status(), 200, "the process is still up");
    server.stop().await.unwrap();
    database.drop_database().await;
}
