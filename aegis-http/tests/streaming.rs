//! Token chunks of a streaming agent reach a client following the run's event stream, and
//! are never stored.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use tempfile::TempDir;

use aegis_core::ProviderEnv;
use aegis_http::mock::{MockConfig, MockProvider, MockReply};
use aegis_http::server::{ServeConfig, start};
use common::{Api, session_body, task_body, team_body, text_run_body};

/// Reads SSE events (`event` name and `data` JSON) until the `end` event.
async fn read_events(response: reqwest::Response) -> Vec<(String, Value)> {
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    while let Some(piece) =
        tokio::time::timeout(Duration::from_secs(30), body.next()).await.expect("the stream stalled")
    {
        buffer.push_str(&String::from_utf8_lossy(&piece.unwrap()));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let name = block.lines().find_map(|line| line.strip_prefix("event:")).map(str::trim).unwrap_or("message");
            let data: String = block.lines().filter_map(|line| line.strip_prefix("data:")).map(str::trim).collect();
            if data.is_empty() {
                continue;
            }
            events.push((name.to_owned(), serde_json::from_str(&data).unwrap()));
            if name == "end" {
                return events;
            }
        }
    }
    events
}

#[tokio::test]
async fn streaming_agent_sends_chunks_live() {
    let mock = MockProvider::start(MockConfig::default()).await.unwrap();
    let dir = TempDir::new().unwrap();
    let mut serve = ServeConfig::new(dir.path().join("aegis.db"), "127.0.0.1:0".parse().unwrap());
    serve.provider_env = ProviderEnv::with_openai_base_url(mock.base_url());
    let server = start(serve).await.unwrap();
    let api = Api::new(server.addr());

    let (_, task) = api.post("/task", &task_body()).await;
    let task_id = task["data"]["id"].as_str().unwrap().to_owned();
    let mut team = team_body(None);
    team["component"]["config"]["model_client_stream"] = json!(true);
    let (status, team) = api.post("/team", &team).await;
    assert_eq!(status, 201, "{team}");
    let (_, session) = api.post("/session", &session_body(&task_id, team["data"]["id"].as_str().unwrap())).await;
    let session_id = session["data"]["id"].as_str().unwrap().to_owned();

    // The delay gives the follower time to connect before the first piece is sent.
    let pieces = vec!["Hel".to_owned(), "lo, ".to_owned(), "world".to_owned()];
    mock.push(MockReply::Delay(Duration::from_millis(700), Box::new(MockReply::Stream(pieces))));
    let (_, created) = api.post("/run", &text_run_body(&session_id, &task_id, "Greet me.")).await;
    let run_id = created["data"]["id"].as_str().unwrap().to_owned();
    let response = api.http.get(format!("{}/api/v1/run/{run_id}/stream", api.base)).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let events = read_events(response).await;

    let chunks: Vec<&Value> = events.iter().filter(|(name, _)| name == "chunk").map(|(_, data)| data).collect();
    let texts: Vec<&str> = chunks.iter().map(|chunk| chunk["content"].as_str().unwrap()).collect();
    assert_eq!(texts, ["Hel", "lo, ", "world"], "{events:?}");
    assert!(chunks.iter().all(|chunk| chunk["type"] == "ModelClientStreamingChunkEvent"));

    let first_chunk = events.iter().position(|(name, _)| name == "chunk").unwrap();
    let reply =
        events.iter().position(|(name, data)| name == "message" && data["source"] == "automarking_agent").unwrap();
    assert!(first_chunk < reply, "chunks must arrive before the stored reply: {events:?}");
    let (_, end) = events.last().unwrap();
    assert_eq!(end["status"], "complete", "{end}");
    assert_eq!(end["team_result"]["task_result"]["messages"][0]["content"], "Hello, world");

    let run = api.wait_terminal(&run_id, Duration::from_secs(10)).await;
    let stored = run["messages"].as_array().unwrap();
    assert!(
        stored.iter().all(|message| message["type"] != "ModelClientStreamingChunkEvent"),
        "chunks were stored: {run}"
    );
    assert_eq!(mock.requests()[0].body["stream"], true);
    server.stop().await.unwrap();
}
