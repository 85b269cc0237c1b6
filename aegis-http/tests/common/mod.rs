//! Helpers shared by the API tests: the tutorial's request bodies, a server over a real
//! SQLite file, and polling a run until it ends.

#![allow(dead_code, unreachable_pub)]

pub mod process;

use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The tutorial's task body.
pub fn task_body() -> Value {
    json!({
        "name": "Automarking Task",
        "description": "Evaluate student responses for correctness.",
        "version": "1.0.0",
        "created_by_user_id": "<user_id>"
    })
}

/// The tutorial's team body, with the model client pointed at `base_url` when given.
pub fn team_body(base_url: Option<&str>) -> Value {
    let mut body = json!({
        "component": {
            "provider": "autogen_agentchat.agents.AssistantAgent",
            "component_type": "agent",
            "version": 1,
            "component_version": 1,
            "description": "An agent that evaluates student responses based on predefined grading criteria.",
            "label": "Automarking Assistant",
            "config": {
                "name": "automarking_agent",
                "model_client": {
                    "provider": "autogen_ext.models.openai.OpenAIChatCompletionClient",
                    "component_type": "model",
                    "version": 1,
                    "component_version": 1,
                    "description": "Chat completion client for OpenAI hosted models.",
                    "label": "OpenAIChatCompletionClient",
                    "config": {
                        "model": "gpt-4o-mini"
                    }
                },
                "description": "An agent that evaluates student responses for correctness and provides grading feedback.",
                "system_message": "You are an AI grader. Your task is to evaluate student responses based on the provided grading rubric. Provide structured feedback including reasoning, a binary satisfactory flag, and scores for relevance and completeness. Respond in JSON format.",
                "model_client_stream": false
            }
        }
    });
    if let Some(url) = base_url {
        body["component"]["config"]["model_client"]["config"]["base_url"] = json!(url);
    }
    body
}

/// The tutorial's session body.
pub fn session_body(task_id: &str, team_id: &str) -> Value {
    json!({
        "task_id": task_id,
        "team_id": team_id,
        "created_by_user_id": "<user_id>",
        "archived": false,
        "team_metadata": {}
    })
}

/// The tutorial's run body.
pub fn run_body(session_id: &str, task_id: &str) -> Value {
    json!({
        "session_id": session_id,
        "task_id": task_id,
        "run_task": {
            "source": "string",
            "content": {
                "question": "Name 3 capital cities in Australia.",
                "model_answer": "Canberra, Sydney, ...",
                "student_answer": "Canberra,..."
            },
            "message_type": "dict"
        },
        "batch_mode": false,
        "created_by_user_id": "3fa85f64-5717-4562-b3fc-2c963f66afa6",
        "archived": false
    })
}

/// A run body with a text task.
pub fn text_run_body(session_id: &str, task_id: &str, text: &str) -> Value {
    json!({
        "session_id": session_id,
        "task_id": task_id,
        "run_task": {"source": "user", "content": text, "message_type": "text"}
    })
}

/// A blocking-free HTTP client for a server at `base` (`http://127.0.0.1:PORT`).
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
}

impl Api {
    pub fn new(addr: std::net::SocketAddr) -> Api {
        Api { http: reqwest::Client::new(), base: format!("http://{addr}") }
    }

    /// POSTs JSON to an `/api/v1` path and returns the status and body.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self.http.post(format!("{}/api/v1{path}", self.base)).json(body).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// GETs an `/api/v1` path and returns the status and body.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self.http.get(format!("{}/api/v1{path}", self.base)).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Creates the tutorial's task, team (model at `base_url`) and session; returns their ids.
    pub async fn tutorial_session(&self, base_url: Option<&str>) -> (String, String, String) {
        let (status, task) = self.post("/task", &task_body()).await;
        assert_eq!(status, 201, "{task}");
        let task_id = task["data"]["id"].as_str().unwrap().to_owned();
        let (status, team) = self.post("/team", &team_body(base_url)).await;
        assert_eq!(status, 201, "{team}");
        let team_id = team["data"]["id"].as_str().unwrap().to_owned();
        let (status, session) = self.post("/session", &session_body(&task_id, &team_id)).await;
        assert_eq!(status, 201, "{session}");
        let session_id = session["data"]["id"].as_str().unwrap().to_owned();
        (task_id, team_id, session_id)
    }

    /// Polls a run until it is terminal; panics after `timeout`.
    pub async fn wait_terminal(&self, run_id: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let (status, body) = self.get(&format!("/run/{run_id}")).await;
            assert_eq!(status, 200, "{body}");
            let run = body["data"].clone();
            if matches!(run["status"].as_str(), Some("complete" | "error" | "stopped")) {
                return run;
            }
            assert!(Instant::now() < deadline, "run {run_id} did not end in time: {run}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Starts the server on 127.0.0.1:0 over a fresh SQLite file in a temporary directory, after
/// `configure` has changed its settings.
pub async fn sqlite_server(
    configure: impl FnOnce(&mut aegis_http::server::ServeConfig),
) -> (aegis_http::server::RunningServer, tempfile::TempDir) {
    let dir = tempfile::TempDir::new().unwrap();
    let mut config = aegis_http::server::ServeConfig::new(dir.path().join("aegis.db"), "127.0.0.1:0".parse().unwrap());
    configure(&mut config);
    let server = aegis_http::server::start(config).await.unwrap();
    (server, dir)
}
