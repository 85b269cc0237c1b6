//! The system under test: an Aegis server (started in this process, or one already running on
//! loopback), the mock model provider it calls, and the JSON API client that sets up the
//! task, team and sessions.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::Url;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::runtime::Runtime;

use aegis::core::ProviderEnv;
use aegis::core::model::ProviderHttpVersion;
use aegis::http::mock::{MockConfig, MockProvider};
use aegis::http::server::{RunningServer, ServeConfig, start};

/// Whose CPU time and memory the report shows.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Measured {
    /// The server runs in this process: the process's figures, minus the CPU time of the load
    /// generator's own threads.
    InProcess,
    /// The server is this process.
    Pid(u32),
    /// A running server whose process id was not given: no CPU or memory figures.
    Unknown,
}

/// Settings of the in-process server and of the mock provider.
#[derive(Clone, Debug)]
pub(crate) struct TargetConfig {
    /// URL of a running server; `None` starts one in this process.
    pub(crate) server: Option<String>,
    /// Process id of the running server.
    pub(crate) server_pid: Option<u32>,
    /// Chat Completions base URL of a running model provider; `None` starts the mock.
    pub(crate) model_base_url: Option<String>,
    /// Delay the mock adds before every response.
    pub(crate) model_latency: Duration,
    /// SQLite file of the in-process server; `None` uses a temporary directory.
    pub(crate) db: Option<PathBuf>,
    /// Engine workers of the in-process server.
    pub(crate) workers: usize,
    /// Whether the in-process server speaks HTTP/2 to its model provider (the mock accepts it).
    pub(crate) provider_http2: bool,
}

/// The running system under test. [`Target::stop`] shuts down what this process started.
pub(crate) struct Target {
    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub(crate) base: String,
    /// The Chat Completions base URL the team's model client calls.
    pub(crate) model_base_url: String,
    pub(crate) measured: Measured,
    server: Option<RunningServer>,
    mock: Option<MockProvider>,
    // Removed after the server closed its database.
    _db_dir: Option<TempDir>,
}

impl Target {
    /// Starts the mock on `mock_runtime` and the server on `server_runtime`, unless the config
    /// names running ones.
    pub(crate) fn start(
        config: &TargetConfig,
        server_runtime: &Runtime,
        mock_runtime: &Runtime,
    ) -> anyhow::Result<Target> {
        if let Some(url) = &config.server {
            check_loopback(url, "--server")?;
        }

        let mut mock = None;
        let model_base_url = match &config.model_base_url {
            Some(url) => {
                check_loopback(url, "--model-base-url")?;
                url.trim_end_matches('/').to_owned()
            }
            None => {
                let mock_config = MockConfig::default().with_latency(config.model_latency).with_request_log(false);
                let started = mock_runtime
                    .block_on(MockProvider::start(mock_config))
                    .context("starting the mock provider failed")?;
                let url = started.base_url();
                mock = Some(started);
                url
            }
        };

        if let Some(url) = &config.server {
            let measured = match config.server_pid {
                Some(pid) => {
                    crate::proc_stats::check_process(pid)?;
                    Measured::Pid(pid)
                }
                None => Measured::Unknown,
            };
            let base = url.trim_end_matches('/').to_owned();
            return Ok(Target { base, model_base_url, measured, server: None, mock, _db_dir: None });
        }

        let (db, db_dir) = match &config.db {
            Some(db) => (db.clone(), None),
            None => {
                let dir = tempfile::tempdir().context("creating a temporary directory for the database failed")?;
                (dir.path().join("aegis.db"), Some(dir))
            }
        };
        let mut serve = ServeConfig::new(db, SocketAddr::from(([127, 0, 0, 1], 0)));
        // The team names its model provider, so no key from the environment is needed or sent.
        serve.provider_env = ProviderEnv::default();
        serve.engine.workers = config.workers;
        if config.provider_http2 {
            serve.provider_http.version = ProviderHttpVersion::Http2;
            serve.provider_http.pools = config.workers.div_ceil(STREAMS_PER_CONNECTION).max(1);
        }
        let server = server_runtime.block_on(start(serve)).context("starting the Aegis server failed")?;
        let base = format!("http://{}", server.addr());
        Ok(Target { base, model_base_url, measured: Measured::InProcess, server: Some(server), mock, _db_dir: db_dir })
    }

    /// Stops the in-process server and the mock, if this process started them.
    pub(crate) fn stop(mut self, server_runtime: &Runtime, mock_runtime: &Runtime) -> anyhow::Result<()> {
        if let Some(server) = self.server.take() {
            server_runtime.block_on(server.stop())?;
        }
        if let Some(mock) = self.mock.take() {
            mock_runtime.block_on(mock.shutdown());
        }
        Ok(())
    }
}

/// Rejects any URL that is not plain HTTP to a loopback address, so the load never leaves the
/// machine.
pub(crate) fn check_loopback(url: &str, option: &str) -> anyhow::Result<()> {
    let parsed =
        Url::parse(url).with_context(|| format!("{option} {url:?} is not a URL; use http://127.0.0.1:PORT"))?;
    if parsed.scheme() != "http" {
        bail!("{option} {url:?} must use http://; the load generator only talks to loopback servers");
    }
    let host = parsed.host_str().unwrap_or_default();
    let ip = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>();
    let loopback = host == "localhost" || ip.is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!("{option} {url:?} is not a loopback address; use 127.0.0.1, [::1] or localhost");
    }
    Ok(())
}

/// A JSON client for the Aegis API that unwraps the `data` of the envelope.
#[derive(Clone)]
pub(crate) struct Api {
    pub(crate) http: reqwest::Client,
    /// `http://127.0.0.1:PORT/api/v1`.
    pub(crate) base: String,
}

/// Requests one HTTP/2 connection carries at once. A hyper server, the Aegis server and the
/// mock included, allows at most 200 streams per connection, and extra requests would queue.
pub(crate) const STREAMS_PER_CONNECTION: usize = 100;

impl Api {
    /// Creates a client over HTTP/1.1 that keeps up to `connections` idle connections.
    pub(crate) fn new(base: &str, connections: usize) -> anyhow::Result<Api> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(connections)
            .timeout(Duration::from_secs(120))
            .build()
            .context("building the HTTP client failed")?;
        Ok(Api { http, base: format!("{base}/api/v1") })
    }

    /// Creates a client over HTTP/2 without TLS (prior knowledge), with one connection for all
    /// its requests.
    pub(crate) fn new_http2(base: &str) -> anyhow::Result<Api> {
        let http = reqwest::Client::builder()
            .http2_prior_knowledge()
            .timeout(Duration::from_secs(120))
            .build()
            .context("building the HTTP/2 client failed")?;
        Ok(Api { http, base: format!("{base}/api/v1") })
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let response = self.http.post(format!("{}{path}", self.base)).json(body).send().await?;
        Api::data(response).await
    }

    pub(crate) async fn data(response: reqwest::Response) -> anyhow::Result<Value> {
        let status = response.status();
        let body: Value = response.json().await.context("the server returned a body that is not JSON")?;
        if !status.is_success() {
            return Err(StatusError { status: status.as_u16(), body }.into());
        }
        Ok(body["data"].clone())
    }
}

/// A response whose status is not a success.
#[derive(Debug)]
pub(crate) struct StatusError {
    pub(crate) status: u16,
    body: Value,
}

impl std::fmt::Display for StatusError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the server returned HTTP {}: {}", self.status, self.body)
    }
}

impl std::error::Error for StatusError {}

/// The ids a run needs: its session and that session's task.
#[derive(Clone, Debug)]
pub(crate) struct SessionIds {
    pub(crate) session_id: String,
    pub(crate) task_id: String,
}

/// Creates a task, the team (one AssistantAgent calling `model_base_url`) and `count`
/// sessions of it.
pub(crate) async fn set_up(
    api: &Api,
    model_base_url: &str,
    stream: bool,
    count: usize,
) -> anyhow::Result<Vec<SessionIds>> {
    let task = api
        .post("/task", &json!({"name": "Load test", "version": "1.0.0"}))
        .await
        .context("creating the task failed")?;
    let task_id = task["id"].as_str().context("the task has no id")?.to_owned();
    let team = api.post("/team", &team_body(model_base_url, stream)).await.context("creating the team failed")?;
    let team_id = team["id"].as_str().context("the team has no id")?.to_owned();

    let mut sessions = Vec::with_capacity(count);
    for _ in 0..count {
        let body = json!({"task_id": task_id, "team_id": team_id, "name": "load test worker"});
        let session = api.post("/session", &body).await.context("creating a session failed")?;
        let session_id = session["id"].as_str().context("the session has no id")?.to_owned();
        sessions.push(SessionIds { session_id, task_id: task_id.clone() });
    }
    Ok(sessions)
}

/// Builds the body of `POST /run`: one automarking question, as the tutorial sends it.
pub(crate) fn run_body(ids: &SessionIds) -> Value {
    json!({
        "session_id": ids.session_id,
        "task_id": ids.task_id,
        "run_task": {
            "source": "teacher",
            "message_type": "dict",
            "content": {
                "question": "Name 3 capital cities in Australia.",
                "model_answer": "Canberra, Sydney, Melbourne",
                "student_answer": "Canberra"
            }
        }
    })
}

/// Builds the team of the tutorial's grader: one AssistantAgent, one model call per run.
fn team_body(model_base_url: &str, stream: bool) -> Value {
    json!({
        "component": {
            "provider": "autogen_agentchat.agents.AssistantAgent",
            "component_type": "agent",
            "version": 1,
            "component_version": 1,
            "label": "Load test grader",
            "config": {
                "name": "automarking_agent",
                "model_client": {
                    "provider": "autogen_ext.models.openai.OpenAIChatCompletionClient",
                    "component_type": "model",
                    "version": 1,
                    "component_version": 1,
                    "config": {
                        "model": "gpt-4o-mini",
                        "base_url": model_base_url,
                        // The mock checks no key; a real key is never needed on loopback.
                        "api_key": "sk-loadgen",
                        "temperature": 0,
                        "response_format": {"type": "json_object"}
                    }
                },
                "system_message": "You are an AI grader. Respond in JSON format.",
                "model_client_stream": stream
            }
        }
    })
}
