//! Tests of the mock provider over real loopback HTTP with `reqwest`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::*;

async fn start_default() -> MockProvider {
    MockProvider::start(MockConfig::default()).await.unwrap()
}

fn chat_body(user: &str) -> Value {
    json!({
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You are an AI grader."},
            {"role": "user", "content": user},
        ],
    })
}

async fn post_chat(provider: &MockProvider, body: &Value) -> reqwest::Response {
    reqwest::Client::new().post(format!("{}/chat/completions", provider.base_url())).json(body).send().await.unwrap()
}

async fn chat_json(provider: &MockProvider, body: &Value) -> Value {
    let response = post_chat(provider, body).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

fn content(completion: &Value) -> &str {
    completion["choices"][0]["message"]["content"].as_str().unwrap()
}

/// Returns the `data:` payloads of an SSE body, in order.
fn sse_payloads(text: &str) -> Vec<String> {
    text.lines().filter_map(|line| line.strip_prefix("data: ")).map(str::to_owned).collect()
}

#[tokio::test]
async fn completion_has_openai_shape() {
    let provider = start_default().await;
    provider.push(MockReply::text("Canberra is the capital"));

    let completion = chat_json(&provider, &chat_body("Name the capital of Australia")).await;

    assert!(completion["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(completion["object"], "chat.completion");
    assert!(completion["created"].as_u64().unwrap() > 0);
    assert_eq!(completion["model"], "gpt-4o-mini");
    let choice = &completion["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "Canberra is the capital");
    assert!(choice["message"].get("tool_calls").is_none());
    assert_eq!(choice["finish_reason"], "stop");
    // 5 words of system prompt plus 5 of user message, and 4 words of answer.
    assert_eq!(completion["usage"], json!({"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}));
    provider.shutdown().await;
}

#[tokio::test]
async fn scripted_replies_come_in_order() {
    let provider = MockProvider::start(MockConfig::default().with_default_reply(DefaultReply::Echo)).await.unwrap();
    provider.push(MockReply::text("first"));
    provider.push(MockReply::ToolCalls(vec![
        ("lookup".to_owned(), r#"{"city": "Paris"}"#.to_owned()),
        ("convert".to_owned(), "not json".to_owned()),
    ]));
    provider.push(MockReply::text("third"));
    assert_eq!(provider.queued(), 3);

    let first = chat_json(&provider, &chat_body("one")).await;
    assert_eq!(content(&first), "first");

    let second = chat_json(&provider, &chat_body("two")).await;
    let message = &second["choices"][0]["message"];
    assert_eq!(message["content"], Value::Null);
    assert_eq!(message["tool_calls"][0]["type"], "function");
    assert_eq!(message["tool_calls"][0]["function"]["name"], "lookup");
    assert_eq!(message["tool_calls"][0]["function"]["arguments"], r#"{"city": "Paris"}"#);
    assert_eq!(message["tool_calls"][1]["function"]["name"], "convert");
    assert_eq!(message["tool_calls"][1]["function"]["arguments"], "not json");
    assert_ne!(message["tool_calls"][0]["id"], message["tool_calls"][1]["id"]);
    assert_eq!(second["choices"][0]["finish_reason"], "tool_calls");

    let third = chat_json(&provider, &chat_body("three")).await;
    assert_eq!(content(&third), "third");

    let fourth = chat_json(&provider, &chat_body("four")).await;
    assert_eq!(content(&fourth), "mock reply to: four");
    assert_eq!(provider.queued(), 0);
    provider.shutdown().await;
}

#[tokio::test]
async fn requests_are_recorded_in_order() {
    let provider = start_default().await;
    let client = reqwest::Client::new();
    client
        .post(format!("{}/chat/completions", provider.base_url()))
        .bearer_auth("sk-first")
        .header("x-trace", "abc")
        .json(&chat_body("hello"))
        .send()
        .await
        .unwrap();
    client.get(format!("{}/models", provider.base_url())).send().await.unwrap();

    let requests = provider.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path, "/v1/chat/completions");
    assert_eq!(requests[0].authorization(), Some("Bearer sk-first"));
    assert_eq!(requests[0].bearer_token(), Some("sk-first"));
    assert_eq!(requests[0].header("X-Trace"), Some("abc"));
    assert_eq!(requests[0].body["messages"][1]["content"], "hello");
    assert_eq!(requests[1].method, "GET");
    assert_eq!(requests[1].path, "/v1/models");
    assert_eq!(requests[1].authorization(), None);
    assert_eq!(requests[1].body, Value::Null);
    provider.shutdown().await;
}

#[tokio::test]
async fn request_log_can_be_turned_off() {
    let provider = MockProvider::start(MockConfig::default().with_request_log(false)).await.unwrap();
    chat_json(&provider, &chat_body("hello")).await;
    assert!(provider.requests().is_empty());
    provider.shutdown().await;
}

#[tokio::test]
async fn models_lists_configured_model() {
    let provider = MockProvider::start(MockConfig::default().with_model("tiny-grader")).await.unwrap();
    let response = reqwest::get(format!("{}/models", provider.base_url())).await.unwrap();
    assert_eq!(response.status(), 200);
    let models: Value = response.json().await.unwrap();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "tiny-grader");
    assert_eq!(models["data"][0]["object"], "model");

    // A request without a model gets the configured one.
    let completion = chat_json(&provider, &json!({"messages": [{"role": "user", "content": "hi"}]})).await;
    assert_eq!(completion["model"], "tiny-grader");
    provider.shutdown().await;
}

#[tokio::test]
async fn unknown_path_and_method_are_rejected() {
    let provider = start_default().await;
    let client = reqwest::Client::new();

    let missing = client.get(format!("{}/embeddings", provider.base_url())).send().await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");

    let wrong_method = client.get(format!("{}/chat/completions", provider.base_url())).send().await.unwrap();
    assert_eq!(wrong_method.status(), 405);
    assert_eq!(provider.requests().len(), 2);
    provider.shutdown().await;
}

#[tokio::test]
async fn invalid_body_keeps_queued_reply() {
    let provider = start_default().await;
    provider.push(MockReply::text("kept"));
    let client = reqwest::Client::new();
    let url = format!("{}/chat/completions", provider.base_url());

    let not_json = client.post(&url).body("{not json").send().await.unwrap();
    assert_eq!(not_json.status(), 400);
    let without_messages = client.post(&url).json(&json!({"model": "m"})).send().await.unwrap();
    assert_eq!(without_messages.status(), 400);
    let body: Value = without_messages.json().await.unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("messages"));
    assert_eq!(provider.queued(), 1);

    let completion = chat_json(&provider, &chat_body("now")).await;
    assert_eq!(content(&completion), "kept");
    provider.shutdown().await;
}

#[tokio::test]
async fn rate_limit_error_has_retry_after() {
    let provider = start_default().await;
    provider.push(MockReply::rate_limited(7));

    let response = post_chat(&provider, &chat_body("hi")).await;

    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    provider.shutdown().await;
}

#[tokio::test]
async fn html_error_is_served_verbatim() {
    let provider = start_default().await;
    let page = "<html><body>502 Bad Gateway</body></html>";
    provider.push(MockReply::error(502, page));

    let response = post_chat(&provider, &chat_body("hi")).await;

    assert_eq!(response.status(), 502);
    assert_eq!(response.headers()["content-type"], "text/html; charset=utf-8");
    assert_eq!(response.text().await.unwrap(), page);
    provider.shutdown().await;
}

#[tokio::test]
async fn non_completion_body_with_200() {
    let provider = start_default().await;
    provider.push(MockReply::Error {
        status: 200,
        body: "{\"unexpected\": true}".to_owned(),
        headers: vec![
            ("content-type".to_owned(), "application/x-custom".to_owned()),
            ("x-a".to_owned(), "1".to_owned()),
        ],
    });

    let response = post_chat(&provider, &chat_body("hi")).await;

    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-custom");
    assert_eq!(response.headers()["x-a"], "1");
    assert_eq!(response.text().await.unwrap(), "{\"unexpected\": true}");
    provider.shutdown().await;
}

#[tokio::test]
async fn invalid_scripted_status_gives_500() {
    let provider = start_default().await;
    provider.push(MockReply::error(42, "nope"));
    provider.push(MockReply::Error {
        status: 500,
        body: String::new(),
        headers: vec![("bad name".to_owned(), "v".to_owned())],
    });

    let status = post_chat(&provider, &chat_body("hi")).await;
    assert_eq!(status.status(), 500);
    assert!(status.text().await.unwrap().contains("invalid status code 42"));

    let header = post_chat(&provider, &chat_body("hi")).await;
    assert_eq!(header.status(), 500);
    assert!(header.text().await.unwrap().contains("invalid header name"));
    provider.shutdown().await;
}

#[tokio::test]
async fn delayed_reply_waits_at_least_delay() {
    let provider = start_default().await;
    let delay = Duration::from_millis(300);
    provider.push(MockReply::text("late").delayed(delay));

    let started = Instant::now();
    let completion = chat_json(&provider, &chat_body("hi")).await;

    assert!(started.elapsed() >= delay, "answered after {:?}", started.elapsed());
    assert_eq!(content(&completion), "late");
    provider.shutdown().await;
}

#[tokio::test]
async fn configured_latency_delays_every_response() {
    let latency = Duration::from_millis(200);
    let provider = MockProvider::start(MockConfig::default().with_latency(latency)).await.unwrap();

    let started = Instant::now();
    let response = reqwest::get(format!("{}/models", provider.base_url())).await.unwrap();

    assert_eq!(response.status(), 200);
    assert!(started.elapsed() >= latency, "answered after {:?}", started.elapsed());
    provider.shutdown().await;
}

#[tokio::test]
async fn disconnect_closes_without_response() {
    let provider = start_default().await;
    provider.push(MockReply::Disconnect);
    let client = reqwest::Client::new();
    let url = format!("{}/chat/completions", provider.base_url());

    let error = client.post(&url).json(&chat_body("hi")).send().await.unwrap_err();
    assert!(error.status().is_none(), "expected a connection error, got {error:?}");
    assert!(!error.is_timeout(), "{error:?}");

    // The server keeps serving other connections, and the failed request is in the log.
    let response = client.post(&url).json(&chat_body("again")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(provider.requests().len(), 2);
    provider.shutdown().await;
}

#[tokio::test]
async fn hang_ends_at_shutdown() {
    let provider = start_default().await;
    provider.push(MockReply::Hang);
    let url = format!("{}/chat/completions", provider.base_url());

    let client_timeout = reqwest::Client::new().post(&url).json(&chat_body("hi")).timeout(Duration::from_millis(300));
    let error = client_timeout.send().await.unwrap_err();
    assert!(error.is_timeout(), "{error:?}");

    provider.push(MockReply::Hang);
    let pending = tokio::spawn(reqwest::Client::new().post(&url).json(&chat_body("hi")).send());
    while provider.queued() > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    provider.shutdown().await;

    let result = pending.await.unwrap();
    let error = result.unwrap_err();
    assert!(error.status().is_none(), "expected a connection error, got {error:?}");
}

#[tokio::test]
async fn shutdown_closes_the_port() {
    let provider = start_default().await;
    let url = format!("{}/models", provider.base_url());
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 200);

    provider.shutdown().await;

    let error = reqwest::get(&url).await.unwrap_err();
    assert!(error.is_connect(), "{error:?}");
}

#[tokio::test]
async fn drop_stops_the_server() {
    let provider = start_default().await;
    let url = format!("{}/models", provider.base_url());
    drop(provider);

    // Dropping only fires the signal, so the socket closes shortly after.
    let mut closed = false;
    for _ in 0..100 {
        if reqwest::get(&url).await.is_err() {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(closed, "the server still answers after drop");
}

#[tokio::test]
async fn required_key_rejects_others() {
    let provider = MockProvider::start(MockConfig::default().with_api_key("sk-right")).await.unwrap();
    provider.push(MockReply::text("allowed"));
    let client = reqwest::Client::new();
    let url = format!("{}/chat/completions", provider.base_url());

    let missing = client.post(&url).json(&chat_body("hi")).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key");
    assert_eq!(body["error"]["type"], "invalid_request_error");

    let wrong = client.post(&url).bearer_auth("sk-wrong").json(&chat_body("hi")).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let text = wrong.text().await.unwrap();
    assert!(!text.contains("sk-wrong"), "the error repeats the key: {text}");
    assert_eq!(provider.queued(), 1, "a rejected request must not use up a reply");

    let right = client.post(&url).bearer_auth("sk-right").json(&chat_body("hi")).send().await.unwrap();
    assert_eq!(right.status(), 200);
    let completion: Value = right.json().await.unwrap();
    assert_eq!(content(&completion), "allowed");

    let models = client.get(format!("{}/models", provider.base_url())).send().await.unwrap();
    assert_eq!(models.status(), 401);

    let sent: Vec<Option<String>> =
        provider.requests().iter().map(|request| request.authorization().map(str::to_owned)).collect();
    assert_eq!(sent, [None, Some("Bearer sk-wrong".to_owned()), Some("Bearer sk-right".to_owned()), None]);
    provider.shutdown().await;
}

#[tokio::test]
async fn stream_sends_chunks_then_done() {
    let provider = start_default().await;
    provider.push(MockReply::stream(["Hel", "lo ", "world"]));
    let mut body = chat_body("hi");
    body["stream"] = json!(true);

    let response = post_chat(&provider, &body).await;

    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let payloads = sse_payloads(&response.text().await.unwrap());
    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> =
        payloads[..payloads.len() - 1].iter().map(|payload| serde_json::from_str(payload).unwrap()).collect();
    // Role chunk, three content chunks, finish chunk.
    assert_eq!(chunks.len(), 5);
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk");
        assert_eq!(chunk["id"], chunks[0]["id"]);
        assert!(chunk.get("usage").is_none(), "usage without include_usage: {chunk}");
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks.iter().filter_map(|chunk| chunk["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(text, "Hello world");
    assert_eq!(chunks[4]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[3]["choices"][0]["finish_reason"], Value::Null);
    provider.shutdown().await;
}

#[tokio::test]
async fn stream_usage_chunk_when_requested() {
    let provider = start_default().await;
    provider.push(MockReply::stream(["two words", " more"]));
    let mut body = chat_body("count me");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});

    let response = post_chat(&provider, &body).await;
    let payloads = sse_payloads(&response.text().await.unwrap());

    assert_eq!(payloads.last().map(String::as_str), Some("[DONE]"));
    let usage_chunk: Value = serde_json::from_str(&payloads[payloads.len() - 2]).unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    assert_eq!(usage_chunk["usage"], json!({"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}));
    let first: Value = serde_json::from_str(&payloads[0]).unwrap();
    assert_eq!(first["usage"], Value::Null);
    assert!(first.get("usage").is_some());
    provider.shutdown().await;
}

#[tokio::test]
async fn text_reply_streams_as_one_chunk() {
    let provider = start_default().await;
    provider.push(MockReply::text("whole answer"));
    let mut body = chat_body("hi");
    body["stream"] = json!(true);

    let payloads = sse_payloads(&post_chat(&provider, &body).await.text().await.unwrap());

    assert_eq!(payloads.len(), 4);
    let content_chunk: Value = serde_json::from_str(&payloads[1]).unwrap();
    assert_eq!(content_chunk["choices"][0]["delta"]["content"], "whole answer");
    assert_eq!(payloads[3], "[DONE]");
    provider.shutdown().await;
}

#[tokio::test]
async fn stream_reply_without_stream_joins_chunks() {
    let provider = start_default().await;
    provider.push(MockReply::stream(["a", "b", "c"]));

    let completion = chat_json(&provider, &chat_body("hi")).await;

    assert_eq!(content(&completion), "abc");
    provider.shutdown().await;
}

fn automark_request(model_answer: &str, student_answer: &str) -> Value {
    let task = json!({
        "question": "Why do we have seasons on Earth?",
        "model_answer": model_answer,
        "student_answer": student_answer,
        "max_marks": 2,
    });
    chat_body(&task.to_string())
}

#[tokio::test]
async fn automark_passes_reference_answer() {
    let provider = start_default().await;
    let reference = "The tilt of the Earth's axis changes the angle of sunlight across the year.";

    let completion = chat_json(&provider, &automark_request(reference, reference)).await;

    let grade: Value = serde_json::from_str(content(&completion)).unwrap();
    assert_eq!(grade["satisfactory"], true);
    assert_eq!(grade["completeness_score"], 10);
    assert_eq!(grade["relevance_score"], 10);
    let confidence = grade["confidence_score"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&confidence), "{confidence}");
    assert!(grade["reasoning"].as_str().unwrap().contains("satisfactory"));
    provider.shutdown().await;
}

#[tokio::test]
async fn automark_fails_unrelated_answer() {
    let provider = start_default().await;
    let reference = "The tilt of the Earth's axis changes the angle of sunlight across the year.";

    let completion = chat_json(&provider, &automark_request(reference, "Bananas are rich in potassium.")).await;

    let grade: Value = serde_json::from_str(content(&completion)).unwrap();
    assert_eq!(grade["satisfactory"], false);
    assert_eq!(grade["completeness_score"], 0);
    assert_eq!(grade["relevance_score"], 0);
    provider.shutdown().await;
}

#[tokio::test]
async fn automark_echoes_plain_text() {
    let provider = start_default().await;

    let completion = chat_json(&provider, &chat_body("Grade this.")).await;

    assert_eq!(content(&completion), "mock reply to: Grade this.");
    provider.shutdown().await;
}

#[tokio::test]
async fn echo_default_ignores_grading_json() {
    let provider = MockProvider::start(MockConfig::default().with_default_reply(DefaultReply::Echo)).await.unwrap();
    let request = automark_request("a b", "a b");
    let user = request["messages"][1]["content"].as_str().unwrap().to_owned();

    let completion = chat_json(&provider, &request).await;

    assert_eq!(content(&completion), format!("mock reply to: {user}"));
    provider.shutdown().await;
}

#[tokio::test]
async fn fixed_default_repeats_reply() {
    let config = MockConfig::default().with_default_reply(DefaultReply::Fixed(MockReply::error(503, "busy")));
    let provider = MockProvider::start(config).await.unwrap();

    for _ in 0..2 {
        let response = post_chat(&provider, &chat_body("hi")).await;
        assert_eq!(response.status(), 503);
    }
    provider.shutdown().await;
}

#[tokio::test]
async fn start_rejects_non_loopback_address() {
    let addr: SocketAddr = "0.0.0.0:0".parse().unwrap();

    let error = MockProvider::start(MockConfig::default().with_addr(addr)).await.unwrap_err();

    assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    assert!(error.to_string().contains("0.0.0.0:0"), "{error}");
}
