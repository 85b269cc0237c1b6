//! The automarking walk-through: the tutorial's five steps against a real Aegis server.
//!
//! ```text
//! cargo run --release --example automarking
//! ```
//!
//! The example starts the Aegis server in this process on the embedded SQLite default
//! (`./aegis.db`), then walks the tutorial over HTTP: create a task, a team (one
//! AssistantAgent), a session and one run per student answer, and reads each result back. It
//! prints the model's verdict beside the human grade and ends with the agreement rate.
//!
//! With `OPENAI_API_KEY` (and optionally `OPENAI_BASE_URL`) set, the runs call that provider.
//! Otherwise the example starts the bundled mock provider on 127.0.0.1, whose lexical grader
//! only stands in for a model: its agreement rate says nothing about model quality.
//! `--server http://HOST:PORT` walks the steps against a server that is already running.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use serde::Deserialize;
use serde_json::{Value, json};

use aegis::core::ProviderEnv;
use aegis::http::mock::{MockConfig, MockProvider};
use aegis::http::server::{ServeConfig, start};

#[derive(Parser)]
#[command(about = "Walk the Aegis tutorial: mark real student answers and compare with human grades")]
struct Args {
    /// Graded answers, one JSON object per line.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/data/saf-sample.jsonl"))]
    answers: PathBuf,

    /// Number of answers to mark, from the start of the file; at least 1.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    limit: Option<u64>,

    /// SQLite database file of the in-process server.
    #[arg(long, default_value = "./aegis.db")]
    db: PathBuf,

    /// Use this running server instead of starting one, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    server: Option<String>,

    /// API key for a --server that has keys configured, sent as `Authorization: Bearer`.
    #[arg(long, env = "AEGIS_API_KEY", hide_env_values = true, requires = "server")]
    api_key: Option<String>,

    /// Model name for the team's OpenAIChatCompletionClient.
    #[arg(long, default_value = "gpt-4o-mini")]
    model: String,

    /// Seconds to wait for all runs to finish.
    #[arg(long, default_value_t = 600)]
    timeout: u64,
}

/// One graded answer of the data set.
#[derive(Debug, Deserialize)]
struct GradedAnswer {
    id: String,
    question: String,
    model_answer: String,
    student_answer: String,
    human_label: String,
    human_score: f64,
    expected_satisfactory: Option<bool>,
}

impl GradedAnswer {
    /// Returns the human verdict; partially correct answers count as satisfactory from half marks.
    fn human_satisfactory(&self) -> bool {
        self.expected_satisfactory.unwrap_or(self.human_score >= 0.5)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let answers = read_answers(&args.answers, args.limit)?;

    let mut mock = None;
    let mut server = None;
    let base = match &args.server {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => {
            let provider_env = match std::env::var("OPENAI_API_KEY") {
                Ok(key) if !key.trim().is_empty() => {
                    println!("model provider: {} (from OPENAI_API_KEY)", provider_host());
                    ProviderEnv::from_process_env()
                }
                _ => {
                    let started = MockProvider::start(MockConfig::default())
                        .await
                        .context("starting the mock provider failed")?;
                    println!(
                        "model provider: bundled mock at {} (set OPENAI_API_KEY to use a real model)",
                        started.base_url()
                    );
                    let env = ProviderEnv::with_openai_base_url(started.base_url());
                    mock = Some(started);
                    env
                }
            };
            let mut config = ServeConfig::new(&args.db, "127.0.0.1:0".parse()?);
            config.provider_env = provider_env;
            let running = start(config).await.context("starting the Aegis server failed")?;
            println!("aegis server: http://{} on {}", running.addr(), args.db.display());
            let url = format!("http://{}", running.addr());
            server = Some(running);
            url
        }
    };

    let client = Client { http: http_client(args.api_key.as_deref())?, base: format!("{base}/api/v1") };
    let outcome = walk(&client, &args, &answers).await;

    if let Some(running) = server {
        running.stop().await?;
    }
    if let Some(started) = mock {
        started.shutdown().await;
    }
    outcome
}

fn provider_host() -> String {
    std::env::var("OPENAI_BASE_URL").unwrap_or_else(|_| aegis::core::model::OPENAI_DEFAULT_BASE_URL.to_owned())
}

fn read_answers(path: &PathBuf, limit: Option<u64>) -> anyhow::Result<Vec<GradedAnswer>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {} failed", path.display()))?;
    let mut answers = Vec::new();
    for (index, line) in text.lines().enumerate().filter(|(_, line)| !line.trim().is_empty()) {
        let answer: GradedAnswer = serde_json::from_str(line)
            .with_context(|| format!("{} line {} is not a graded answer", path.display(), index + 1))?;
        answers.push(answer);
    }
    answers.truncate(limit.map_or(usize::MAX, |limit| usize::try_from(limit).unwrap_or(usize::MAX)));
    if answers.is_empty() {
        bail!("{} contains no answers; give a JSONL file of graded answers", path.display());
    }
    Ok(answers)
}

/// A JSON client for the Aegis API that unwraps the `data` of the envelope.
struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let response = self.http.post(format!("{}{path}", self.base)).json(body).send().await?;
        Client::data(response).await
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let response = self.http.get(format!("{}{path}", self.base)).send().await?;
        Client::data(response).await
    }

    async fn data(response: reqwest::Response) -> anyhow::Result<Value> {
        let status = response.status();
        let body: Value = response.json().await.context("the server returned a body that is not JSON")?;
        if !status.is_success() {
            bail!("the server returned {status}: {body}");
        }
        Ok(body["data"].clone())
    }
}

async fn walk(client: &Client, args: &Args, answers: &[GradedAnswer]) -> anyhow::Result<()> {
    println!("\nstep 1: create the automarking task");
    let task = client
        .post(
            "/task",
            &json!({
                "name": "Automarking Task",
                "description": "Evaluate student responses for correctness.",
                "version": "1.0.0",
                "created_by_user_id": "automarking-example",
            }),
        )
        .await?;
    let task_id = task["id"].as_str().context("task without id")?.to_owned();
    println!("  task {task_id}");

    println!("step 2: create the team (one AssistantAgent)");
    let team = client.post("/team", &team_body(&args.model)).await?;
    let team_id = team["id"].as_str().context("team without id")?.to_owned();
    println!("  team {team_id}");

    println!("step 3: create a session linking them");
    let session = client
        .post(
            "/session",
            &json!({
                "task_id": task_id,
                "team_id": team_id,
                "created_by_user_id": "automarking-example",
                "archived": false,
                "team_metadata": {},
            }),
        )
        .await?;
    let session_id = session["id"].as_str().context("session without id")?.to_owned();
    println!("  session {session_id}");

    println!("step 4: create one run per student answer ({} answers)", answers.len());
    let started = Instant::now();
    let mut run_ids = Vec::with_capacity(answers.len());
    for answer in answers {
        let run = client
            .post(
                "/run",
                &json!({
                    "session_id": session_id,
                    "task_id": task_id,
                    "run_task": {
                        "source": "teacher",
                        "content": {
                            "question": answer.question,
                            "model_answer": answer.model_answer,
                            "student_answer": answer.student_answer,
                        },
                        "message_type": "dict",
                    },
                    "batch_mode": false,
                    "created_by_user_id": "automarking-example",
                    "archived": false,
                }),
            )
            .await?;
        run_ids.push(run["id"].as_str().context("run without id")?.to_owned());
    }

    println!("step 5: retrieve the results\n");
    println!("{:<36} {:<18} {:<6} {:<6} agree", "answer", "human label", "human", "model");
    let deadline = Instant::now() + Duration::from_secs(args.timeout);
    let mut agreed = 0;
    let mut marked = 0;
    let mut failed = 0;
    for (answer, run_id) in answers.iter().zip(&run_ids) {
        let run = wait_for(client, run_id, deadline).await?;
        let human = answer.human_satisfactory();
        match verdict(&run) {
            Some(model) => {
                marked += 1;
                agreed += usize::from(model == human);
                let mark = if model == human { "yes" } else { "no" };
                println!("{:<36} {:<18} {:<6} {:<6} {mark}", answer.id, answer.human_label, human, model);
            }
            None => {
                failed += 1;
                let reason = run["error_message"].as_str().unwrap_or("the reply had no satisfactory flag");
                println!("{:<36} {:<18} {:<6} {:<6} ({reason})", answer.id, answer.human_label, human, "-");
            }
        }
    }

    let elapsed = started.elapsed().as_secs_f64();
    println!("\nmarked {marked} of {} answers in {elapsed:.1} s; {failed} without a verdict", answers.len());
    if marked > 0 {
        let rate = 100.0 * agreed as f64 / marked as f64;
        println!("agreement with the human grades: {agreed}/{marked} = {rate:.1}%");
    }
    if marked == 0 {
        bail!("no run produced a verdict");
    }
    Ok(())
}

/// Builds the tutorial's team: one AssistantAgent grading with an OpenAI-compatible model.
fn team_body(model: &str) -> Value {
    json!({
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
                    "config": {"model": model, "temperature": 0, "response_format": {"type": "json_object"}}
                },
                "description": "An agent that evaluates student responses for correctness and provides grading feedback.",
                "system_message": "You are an AI grader. Your task is to evaluate student responses based on the provided grading rubric. Provide structured feedback including reasoning, a binary satisfactory flag, and scores for relevance and completeness. Respond in JSON format.",
                "model_client_stream": false
            }
        }
    })
}

/// Polls a run until it is terminal or the deadline passes.
async fn wait_for(client: &Client, run_id: &str, deadline: Instant) -> anyhow::Result<Value> {
    loop {
        let run = client.get(&format!("/run/{run_id}")).await?;
        let status = run["status"].as_str().unwrap_or_default();
        if matches!(status, "complete" | "error" | "stopped") {
            return Ok(run);
        }
        if Instant::now() >= deadline {
            bail!("run {run_id} is still {status} after the timeout; raise --timeout");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads the `satisfactory` flag of the grader's reply, stored as a `dict` message.
fn verdict(run: &Value) -> Option<bool> {
    let messages = run["team_result"]["task_result"]["messages"].as_array()?;
    let reply = messages.iter().rev().find(|message| message["type"] == "dict")?;
    reply["content"]["satisfactory"].as_bool()
}

/// Builds the HTTP client, sending `api_key` with every request when there is one.
fn http_client(api_key: Option<&str>) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(key) = api_key {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
            .context("the API key contains characters that cannot go in an HTTP header")?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    reqwest::Client::builder().default_headers(headers).build().context("building the HTTP client failed")
}
