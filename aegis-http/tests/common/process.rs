//! The real `aegis` binary as a child process, for end-to-end tests.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use super::{Api, session_body, task_body, team_body};

/// A running `aegis serve` process.
pub struct AegisProcess {
    pub child: Child,
    pub api: Api,
}

impl AegisProcess {
    /// Starts `aegis serve --bind 127.0.0.1:0` with `args` (store and engine flags), model
    /// calls going to `base_url` with the key `sk-test-key`, and waits for its
    /// `listening on` line.
    pub async fn start(args: &[String], base_url: &str) -> AegisProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_aegis"))
            .args(["serve", "--bind", "127.0.0.1:0"])
            .args(args)
            .env_remove("AEGIS_DB")
            .env_remove("AEGIS_DATABASE_URL")
            .env("OPENAI_BASE_URL", base_url)
            .env("OPENAI_API_KEY", "sk-test-key")
            .env("AEGIS_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("the aegis binary starts");

        let addr = read_listening_line(child.stdout.take().unwrap()).await;
        AegisProcess { child, api: Api::new(addr.parse().unwrap()) }
    }

    /// Sends a signal such as `-TERM` with `kill`.
    pub async fn signal(&self, signal: &str) {
        let pid = self.child.id().unwrap().to_string();
        let status = Command::new("kill").args([signal, &pid]).status().await.unwrap();
        assert!(status.success(), "kill {signal} failed");
    }

    /// Kills the process with SIGKILL: no shutdown code runs.
    pub async fn kill(mut self) {
        self.signal("-KILL").await;
        self.child.wait().await.unwrap();
    }

    /// Sends SIGTERM and waits for a clean exit.
    pub async fn stop(mut self) {
        self.signal("-TERM").await;
        let exit = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .expect("the server exits after SIGTERM");
        assert!(exit.unwrap().success(), "the server exited with an error");
    }
}

/// Reads a child's first stdout line, `listening on <addr>` (as `aegis serve` and `aegis
/// mock-provider` print it), and returns the address.
pub async fn read_listening_line(stdout: tokio::process::ChildStdout) -> String {
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the process prints its address within 30 s")
        .unwrap()
        .expect("the process printed a line");
    line.strip_prefix("listening on ").unwrap_or_else(|| panic!("unexpected first line: {line}")).to_owned()
}

/// Joins flag lists into owned arguments.
pub fn args(parts: &[&[&str]]) -> Vec<String> {
    parts.iter().flat_map(|part| part.iter().map(|arg| (*arg).to_owned())).collect()
}

/// Creates a task, the tutorial team and a session with `team_metadata`; returns the task and
/// session ids.
pub async fn session_with(api: &Api, team_metadata: Value) -> (String, String) {
    let (_, task) = api.post("/task", &task_body()).await;
    let task_id = task["data"]["id"].as_str().unwrap().to_owned();
    let (_, team) = api.post("/team", &team_body(None)).await;
    let team_id = team["data"]["id"].as_str().unwrap().to_owned();
    let mut body = session_body(&task_id, &team_id);
    body["team_metadata"] = team_metadata;
    let (status, session) = api.post("/session", &body).await;
    assert_eq!(status, 201, "{session}");
    (task_id, session["data"]["id"].as_str().unwrap().to_owned())
}

/// Creates a run and returns its id.
pub async fn create_run(api: &Api, body: &Value) -> String {
    let (status, created) = api.post("/run", body).await;
    assert_eq!(status, 201, "{created}");
    created["data"]["id"].as_str().unwrap().to_owned()
}

/// Long-polls a run until it is terminal.
pub async fn wait_run(api: &Api, run_id: &str) -> Value {
    for _ in 0..10 {
        let (status, body) = api.get(&format!("/run/{run_id}?wait=30")).await;
        assert_eq!(status, 200, "{body}");
        if matches!(body["data"]["status"].as_str(), Some("complete" | "error" | "stopped")) {
            return body["data"].clone();
        }
    }
    panic!("run {run_id} did not end");
}

/// Polls a run until its status is `expected`, for up to 30 s.
pub async fn wait_status(api: &Api, run_id: &str, expected: &str) -> Value {
    for _ in 0..1500 {
        let (_, body) = api.get(&format!("/run/{run_id}")).await;
        if body["data"]["status"] == expected {
            return body["data"].clone();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("run {run_id} never became {expected}");
}
