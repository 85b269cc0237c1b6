//! The provider clients (OpenAI, Azure OpenAI, Anthropic, Ollama) against the mock provider
//! over loopback HTTP: LiteLLM error classification, retries and `Retry-After`, deadlines,
//! streaming, tolerant decoding, keys and registration.
//!
//! Every client gets a retry policy with millisecond backoffs, so retry tests stay fast; only
//! waits that a test measures (a `retry-after-ms`, a deadline) take a few hundred ms.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use aegis_core::model::anthropic::AnthropicClient;
use aegis_core::model::ollama::OllamaClient;
use aegis_core::model::openai::OpenAiClient;
use aegis_core::model::retry::RetryPolicy;
use aegis_core::model::{ChunkSink, CreateContent, CreateRequest, FinishReason, JsonOutput, LlmMessage, ModelClient};
use aegis_core::secret::Secret;
use aegis_core::{ModelError, ModelErrorKind, ProviderEnv, RequestUsage, RunError};
use aegis_http::mock::{MockConfig, MockProvider, MockReply};
use serde_json::{Value, json};

/// Collects streamed text pieces.
#[derive(Default)]
struct Pieces(Vec<String>);

impl ChunkSink for Pieces {
    fn on_chunk(&mut self, text: &str) {
        self.0.push(text.to_owned());
    }
}

fn fast_retries(max_retries: u32) -> RetryPolicy {
    RetryPolicy::with_max_retries(max_retries)
        .with_initial_backoff(Duration::from_millis(1))
        .with_max_backoff(Duration::from_millis(5))
        .with_max_wait(Duration::from_secs(2))
}

fn prompt() -> CreateRequest {
    CreateRequest::new(vec![
        LlmMessage::SystemMessage { content: "You are a grader.".to_owned() },
        LlmMessage::UserMessage { content: "Grade this answer".to_owned(), source: "user".to_owned() },
    ])
}

async fn start() -> MockProvider {
    MockProvider::start(MockConfig::default()).await.unwrap()
}

/// An OpenAI client for `provider`, with `extra` merged into its config.
fn openai(provider: &MockProvider, extra: Value, max_retries: u32) -> OpenAiClient {
    let mut config = json!({"model": "gpt-4o-mini", "base_url": provider.base_url()});
    for (key, value) in extra.as_object().unwrap() {
        config[key] = value.clone();
    }
    OpenAiClient::from_config(&config, &ProviderEnv::default(), reqwest::Client::new())
        .unwrap()
        .with_retry_policy(fast_retries(max_retries))
}

async fn create_error(client: &dyn ModelClient) -> ModelError {
    client.create(&prompt()).await.expect_err("the call should fail")
}

fn text_of(content: &CreateContent) -> &str {
    match content {
        CreateContent::Text(text) => text,
        CreateContent::FunctionCalls(calls) => panic!("expected text, got calls {calls:?}"),
    }
}

/// One row of LiteLLM's classification: a scripted response and the class it must become.
struct Row {
    status: u16,
    body: &'static str,
    kind: ModelErrorKind,
    retried: bool,
}

const fn row(status: u16, body: &'static str, kind: ModelErrorKind, retried: bool) -> Row {
    Row { status, body, kind, retried }
}

#[tokio::test]
async fn classification_follows_litellm_table() {
    use ModelErrorKind as K;
    let rows = [
        row(
            400,
            r#"{"error":{"message":"too long","type":"invalid_request_error","code":"context_length_exceeded"}}"#,
            K::ContextWindowExceededError,
            false,
        ),
        row(
            400,
            r#"{"error":{"message":"This model's maximum context length is 8192 tokens","type":"invalid_request_error"}}"#,
            K::ContextWindowExceededError,
            false,
        ),
        row(
            400,
            r#"{"error":{"message":"blocked","type":"invalid_request_error","code":"content_policy_violation"}}"#,
            K::ContentPolicyViolationError,
            false,
        ),
        row(400, r#"{"error":{"message":"filtered","code":"content_filter"}}"#, K::ContentPolicyViolationError, false),
        row(
            401,
            r#"{"error":{"message":"Incorrect API key provided","code":"invalid_api_key"}}"#,
            K::AuthenticationError,
            false,
        ),
        row(402, r#"{"error":{"message":"payment required"}}"#, K::PaymentRequiredError, false),
        row(403, r#"{"error":{"message":"forbidden"}}"#, K::PermissionDeniedError, false),
        row(404, r#"{"error":{"message":"no such path"}}"#, K::NotFoundError, false),
        row(
            400,
            r#"{"error":{"message":"The model `x` does not exist","code":"model_not_found"}}"#,
            K::NotFoundError,
            false,
        ),
        row(408, r#"{"error":{"message":"request timeout"}}"#, K::Timeout, true),
        row(409, r#"{"error":{"message":"conflict"}}"#, K::BadRequestError, true),
        row(422, r#"{"error":{"message":"unprocessable"}}"#, K::UnprocessableEntityError, false),
        row(
            429,
            r#"{"error":{"message":"You've hit the rate limit","type":"requests","code":"rate_limit_exceeded"}}"#,
            K::RateLimitError,
            true,
        ),
        row(
            429,
            r#"{"error":{"message":"You exceeded your quota","type":"insufficient_quota","code":"insufficient_quota"}}"#,
            K::RateLimitError,
            false,
        ),
        row(400, r#"{"error":{"message":"bad value","code":400}}"#, K::BadRequestError, false),
        row(418, "I'm a teapot", K::BadRequestError, false),
        row(500, r#"{"error":{"message":"server error","type":"server_error"}}"#, K::InternalServerError, true),
        row(502, "<html><body><h1>502 Bad Gateway</h1></body></html>", K::BadGatewayError, true),
        row(503, r#"{"error":{"message":"overloaded"}}"#, K::ServiceUnavailableError, true),
        row(504, "", K::Timeout, true),
        row(599, r#"{"error":{"message":"odd"}}"#, K::APIError, true),
    ];

    for row in rows {
        let provider = start().await;
        let client = openai(&provider, json!({}), 2);
        for _ in 0..3 {
            provider.push(MockReply::error(row.status, row.body));
        }

        let error = create_error(&client).await;

        let context = format!("status {} body {}", row.status, row.body);
        assert_eq!(error.kind, row.kind, "{context}");
        assert_eq!(error.status_code, Some(row.status), "{context}");
        let expected_attempts = if row.retried { 3 } else { 1 };
        assert_eq!(error.attempts, expected_attempts, "{context}");
        assert_eq!(provider.requests().len(), expected_attempts as usize, "{context}");
        assert_eq!(error.llm_provider, "openai");
        assert_eq!(error.model, "gpt-4o-mini");
    }
}

#[tokio::test]
async fn bad_gateway_html_gets_short_message() {
    let provider = start().await;
    provider.push(MockReply::error(502, "<html><body>Bad Gateway</body></html>"));

    let error = create_error(&openai(&provider, json!({}), 0)).await;

    assert_eq!(error.error_message(), "litellm.BadGatewayError: provider returned HTTP 502");
}

#[tokio::test]
async fn run_error_carries_litellm_details() {
    let provider = start().await;
    provider.push(MockReply::openai_error(401, "Incorrect API key provided.", "invalid_request_error"));

    let error = RunError::from(create_error(&openai(&provider, json!({}), 2)).await);

    assert_eq!(error.error_message, "litellm.AuthenticationError: Incorrect API key provided.");
    assert_eq!(error.details.error_type, "AuthenticationError");
    assert_eq!(error.details.message, "Incorrect API key provided.");
    assert_eq!(error.details.status_code, Some(401));
    assert_eq!(error.details.llm_provider.as_deref(), Some("openai"));
    assert_eq!(error.details.model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(error.details.attempts, 1);
}

#[tokio::test]
async fn ok_status_without_completion_is_validation_error() {
    let provider = start().await;
    provider.push(MockReply::error(200, r#"{"object":"list","data":[]}"#));
    provider.push(MockReply::error(200, "<html>login page</html>"));
    let client = openai(&provider, json!({}), 2);

    for _ in 0..2 {
        let error = create_error(&client).await;
        assert_eq!(error.kind, ModelErrorKind::APIResponseValidationError);
        assert_eq!(error.status_code, Some(200));
        assert_eq!(error.attempts, 1);
    }
}

#[tokio::test]
async fn refused_connection_is_connection_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let config = json!({"model": "m", "base_url": format!("http://{addr}/v1")});
    let client = OpenAiClient::from_config(&config, &ProviderEnv::default(), reqwest::Client::new())
        .unwrap()
        .with_retry_policy(fast_retries(1));

    let error = create_error(&client).await;

    assert_eq!(error.kind, ModelErrorKind::APIConnectionError);
    assert_eq!(error.status_code, None);
    assert_eq!(error.attempts, 2);
}

#[tokio::test]
async fn reset_connection_is_retried() {
    let provider = start().await;
    provider.push(MockReply::Disconnect);
    provider.push(MockReply::text("recovered"));

    let result = openai(&provider, json!({}), 2).create(&prompt()).await.unwrap();

    assert_eq!(text_of(&result.content), "recovered");
    assert_eq!(provider.requests().len(), 2);
}

#[tokio::test]
async fn reset_connections_exhaust_retries() {
    let provider = start().await;
    for _ in 0..2 {
        provider.push(MockReply::Disconnect);
    }

    let error = create_error(&openai(&provider, json!({}), 1)).await;

    assert_eq!(error.kind, ModelErrorKind::APIConnectionError);
    assert_eq!(error.attempts, 2);
}

#[tokio::test]
async fn deadline_from_component_timeout() {
    let provider = start().await;
    provider.push(MockReply::Hang);
    let client = openai(&provider, json!({"timeout": 0.2}), 0);

    let started = Instant::now();
    let error = create_error(&client).await;

    assert_eq!(error.kind, ModelErrorKind::Timeout);
    assert_eq!(error.status_code, None);
    assert!(error.message.contains("timed out"), "{}", error.message);
    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn deadline_applies_to_streams() {
    let provider = start().await;
    provider.push(MockReply::Hang);
    let client = openai(&provider, json!({"timeout": 0.2}), 0);

    let error = client.create_stream(&prompt(), &mut Pieces::default()).await.unwrap_err();

    assert_eq!(error.kind, ModelErrorKind::Timeout);
}

#[tokio::test]
async fn retry_after_ms_is_honoured() {
    let provider = start().await;
    provider.push(MockReply::Error {
        status: 429,
        body: r#"{"error":{"message":"slow down","code":"rate_limit_exceeded"}}"#.to_owned(),
        headers: vec![("retry-after-ms".to_owned(), "300".to_owned())],
    });
    provider.push(MockReply::text("done"));

    let started = Instant::now();
    let result = openai(&provider, json!({}), 2).create(&prompt()).await.unwrap();

    assert_eq!(text_of(&result.content), "done");
    assert!(started.elapsed() >= Duration::from_millis(300), "waited {:?}", started.elapsed());
}

#[tokio::test]
async fn retry_after_seconds_is_honoured() {
    let provider = start().await;
    provider.push(MockReply::Error {
        status: 503,
        body: r#"{"error":{"message":"busy"}}"#.to_owned(),
        headers: vec![("retry-after".to_owned(), "0.25".to_owned())],
    });
    provider.push(MockReply::text("done"));

    let started = Instant::now();
    openai(&provider, json!({}), 2).create(&prompt()).await.unwrap();

    assert!(started.elapsed() >= Duration::from_millis(250), "waited {:?}", started.elapsed());
}

#[tokio::test]
async fn retry_after_beyond_cap_fails_at_once() {
    let provider = start().await;
    provider.push(MockReply::rate_limited(3600));
    provider.push(MockReply::text("never served"));

    let error = create_error(&openai(&provider, json!({}), 2)).await;

    assert_eq!(error.kind, ModelErrorKind::RateLimitError);
    assert_eq!(error.attempts, 1);
    assert_eq!(provider.queued(), 1);
}

#[tokio::test]
async fn max_retries_from_component() {
    let provider = start().await;
    for _ in 0..5 {
        provider.push(MockReply::error(500, r#"{"error":{"message":"boom"}}"#));
    }
    let config = json!({"model": "m", "base_url": provider.base_url(), "max_retries": 3});
    let client = OpenAiClient::from_config(&config, &ProviderEnv::default(), reqwest::Client::new()).unwrap();
    // The component's `max_retries` sets the count; only the backoff is shortened here.
    let client = client.with_retry_policy(fast_retries(3));

    let error = create_error(&client).await;

    assert_eq!(error.attempts, 4);
    assert_eq!(provider.queued(), 1);
}

#[tokio::test]
async fn tolerant_decoding_of_completions() {
    let provider = start().await;
    let bodies = [
        r#"{"id":"a","object":"chat.completion","service_tier":"galactic","system_fingerprint":null,
            "choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[],"refusal":null,"annotations":[]},
            "finish_reason":"","logprobs":null}],
            "usage":{"prompt_tokens":7,"completion_tokens":0,"total_tokens":7,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0}}}"#,
        r#"{"choices":[{"message":{"content":"fine"},"finish_reason":"end_of_universe"}],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#,
        r#"{"choices":[{"message":{"content":"no usage","unknown":{"deep":[1,2]}},"finish_reason":null}]}"#,
    ];
    for body in bodies {
        provider.push(MockReply::error(200, body));
    }
    let client = openai(&provider, json!({}), 0);

    let empty = client.create(&prompt()).await.unwrap();
    assert_eq!(text_of(&empty.content), "");
    assert_eq!(empty.finish_reason, FinishReason::Unknown);
    assert_eq!(empty.usage, RequestUsage { prompt_tokens: 7, completion_tokens: 0 });

    let fine = client.create(&prompt()).await.unwrap();
    assert_eq!(text_of(&fine.content), "fine");
    assert_eq!(fine.finish_reason, FinishReason::Unknown);
    assert_eq!(fine.usage, RequestUsage { prompt_tokens: 3, completion_tokens: 1 });

    let no_usage = client.create(&prompt()).await.unwrap();
    assert_eq!(no_usage.usage, RequestUsage::default());
}

#[tokio::test]
async fn usage_is_reported_per_call() {
    let provider = start().await;
    provider.push(MockReply::text("three word answer"));

    let result = openai(&provider, json!({}), 0).create(&prompt()).await.unwrap();

    // The mock counts words: 4 of system prompt and 3 of user message, 3 of answer.
    assert_eq!(result.usage, RequestUsage { prompt_tokens: 7, completion_tokens: 3 });
}

#[tokio::test]
async fn config_keys_reach_the_request() {
    let provider = MockProvider::start(MockConfig::default().with_api_key("sk-config")).await.unwrap();
    provider.push(MockReply::text("{}"));
    let client = openai(
        &provider,
        json!({"api_key": "sk-config", "organization": "org-7", "default_headers": {"x-team": "graders"},
               "temperature": 0.1, "seed": 42, "stop": ["END"], "user": "u-1",
               "response_format": {"type": "json_object"}}),
        0,
    );

    client.create(&prompt()).await.unwrap();

    let request = &provider.requests()[0];
    assert_eq!(request.path, "/v1/chat/completions");
    assert_eq!(request.bearer_token(), Some("sk-config"));
    assert_eq!(request.header("openai-organization"), Some("org-7"));
    assert_eq!(request.header("x-team"), Some("graders"));
    assert_eq!(request.body["temperature"], json!(0.1));
    assert_eq!(request.body["seed"], json!(42));
    assert_eq!(request.body["stop"], json!(["END"]));
    assert_eq!(request.body["user"], json!("u-1"));
    assert_eq!(request.body["response_format"], json!({"type": "json_object"}));
    assert_eq!(request.body["messages"][0], json!({"role": "system", "content": "You are a grader."}));
    assert!(request.body.get("stream").is_none());
}

#[tokio::test]
async fn env_key_only_reaches_its_host() {
    let trusted = start().await;
    let other = start().await;
    trusted.push(MockReply::text("a"));
    other.push(MockReply::text("b"));
    let mut env = ProviderEnv::with_openai_base_url(trusted.base_url());
    env.openai_api_key = Secret::new("sk-env");

    let to_trusted =
        OpenAiClient::from_config(&json!({"model": "m", "api_key": "**********"}), &env, reqwest::Client::new())
            .unwrap();
    to_trusted.create(&prompt()).await.unwrap();
    let to_other =
        OpenAiClient::from_config(&json!({"model": "m", "base_url": other.base_url()}), &env, reqwest::Client::new())
            .unwrap();
    to_other.create(&prompt()).await.unwrap();

    assert_eq!(trusted.requests()[0].bearer_token(), Some("sk-env"));
    assert_eq!(other.requests()[0].authorization(), None);
}

#[tokio::test]
async fn json_schema_output_is_validated() {
    let provider = start().await;
    provider.push(MockReply::text(r#"{"score": 4}"#));
    provider.push(MockReply::text(r#"{"score": "four"}"#));
    provider.push(MockReply::text("four"));
    let format = json!({"type": "json_schema", "json_schema": {"name": "Grade", "strict": true, "schema": {
        "type": "object", "properties": {"score": {"type": "integer"}}, "required": ["score"],
        "additionalProperties": false}}});
    let client = openai(&provider, json!({"response_format": format}), 2);

    let valid = client.create(&prompt()).await.unwrap();
    assert_eq!(text_of(&valid.content), r#"{"score": 4}"#);
    let wrong_type = create_error(&client).await;
    assert_eq!(wrong_type.kind, ModelErrorKind::JSONSchemaValidationError);
    assert!(wrong_type.message.contains("Grade"), "{}", wrong_type.message);
    assert_eq!(wrong_type.attempts, 1);
    let not_json = create_error(&client).await;
    assert_eq!(not_json.kind, ModelErrorKind::JSONSchemaValidationError);

    let sent = &provider.requests()[0].body["response_format"];
    assert_eq!(sent["type"], "json_schema");
    assert_eq!(sent["json_schema"]["name"], "Grade");
}

#[tokio::test]
async fn request_json_output_overrides_config() {
    let provider = start().await;
    provider.push(MockReply::text("{}"));
    let client = openai(&provider, json!({"response_format": {"type": "text"}}), 0);
    let mut request = prompt();
    request.json_output = Some(JsonOutput::JsonObject);

    client.create(&request).await.unwrap();

    assert_eq!(provider.requests()[0].body["response_format"], json!({"type": "json_object"}));
}

// Streaming.

/// Formats an SSE `data:` event.
fn data(payload: &str) -> String {
    format!("data: {payload}\n\n")
}

fn content_chunk(text: &str) -> String {
    data(&json!({"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]}).to_string())
}

fn finish_chunk() -> String {
    data(r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#)
}

#[tokio::test]
async fn stream_delivers_pieces_and_usage() {
    let provider = start().await;
    provider.push(MockReply::stream(["Can", "berra"]));
    let client = openai(&provider, json!({}), 0);
    let mut pieces = Pieces::default();

    let result = client.create_stream(&prompt(), &mut pieces).await.unwrap();

    assert_eq!(pieces.0, ["Can", "berra"]);
    assert_eq!(text_of(&result.content), "Canberra");
    assert_eq!(result.finish_reason, FinishReason::Stop);
    assert_eq!(result.usage, RequestUsage { prompt_tokens: 7, completion_tokens: 1 });
    let body = &provider.requests()[0].body;
    assert_eq!(body["stream"], json!(true));
    assert_eq!(body["stream_options"], json!({"include_usage": true}));
}

#[tokio::test]
async fn stream_tolerates_comments_retry_and_split_events() {
    let provider = start().await;
    let split = content_chunk("Hello");
    let (first_half, second_half) = split.split_at(split.len() / 2);
    provider.push(MockReply::raw([
        ": keep-alive\n\n".to_owned(),
        "retry: 3000\n\n".to_owned(),
        ":\n\n".to_owned(),
        data(r#"{"choices":[{"index":0,"delta":{"role":"assistant"},"finish_reason":null}]}"#),
        first_half.to_owned(),
        second_half.to_owned(),
        data(r#"{"choices":[]}"#),
        data(r#"{"choices":[{"index":0,"finish_reason":null}]}"#),
        data(r#"{"id":"x","object":"chat.completion.chunk","service_tier":"new","choices":[{"index":0,"delta":{"content":" world","refusal":null}}]}"#),
        finish_chunk(),
        data(r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":2,"total_tokens":7,"completion_tokens_details":{"reasoning_tokens":0}}}"#),
        "data: [DONE]\n\n".to_owned(),
    ]));
    let mut pieces = Pieces::default();

    let result = openai(&provider, json!({}), 0).create_stream(&prompt(), &mut pieces).await.unwrap();

    assert_eq!(pieces.0, ["Hello", " world"]);
    assert_eq!(text_of(&result.content), "Hello world");
    assert_eq!(result.finish_reason, FinishReason::Stop);
    assert_eq!(result.usage, RequestUsage { prompt_tokens: 5, completion_tokens: 2 });
}

#[tokio::test]
async fn stream_cut_midway_is_mid_stream_error() {
    let provider = start().await;
    provider.push(MockReply::raw_cut([content_chunk("Partial"), content_chunk(" answer")]));
    provider.push(MockReply::text("never served"));
    let mut pieces = Pieces::default();

    let error = openai(&provider, json!({}), 2).create_stream(&prompt(), &mut pieces).await.unwrap_err();

    assert_eq!(error.kind, ModelErrorKind::MidStreamFallbackError);
    assert_eq!(error.attempts, 1);
    assert_eq!(pieces.0, ["Partial", " answer"]);
    assert_eq!(provider.queued(), 1);
}

#[tokio::test]
async fn stream_ending_early_is_not_truncated_silently() {
    let provider = start().await;
    provider.push(MockReply::raw([content_chunk("Half an")]));

    let error = openai(&provider, json!({}), 2).create_stream(&prompt(), &mut Pieces::default()).await.unwrap_err();

    assert_eq!(error.kind, ModelErrorKind::MidStreamFallbackError);
    assert!(error.message.contains("ended before"), "{}", error.message);
}

#[tokio::test]
async fn stream_without_done_after_finish_is_complete() {
    let provider = start().await;
    provider.push(MockReply::raw([content_chunk("Whole"), finish_chunk()]));

    let result = openai(&provider, json!({}), 0).create_stream(&prompt(), &mut Pieces::default()).await.unwrap();

    assert_eq!(text_of(&result.content), "Whole");
    assert_eq!(result.finish_reason, FinishReason::Stop);
}

#[tokio::test]
async fn empty_stream_is_validation_error() {
    let provider = start().await;
    provider.push(MockReply::raw([": nothing here\n\n"]));

    let error = openai(&provider, json!({}), 2).create_stream(&prompt(), &mut Pieces::default()).await.unwrap_err();

    assert_eq!(error.kind, ModelErrorKind::APIResponseValidationError);
    assert_eq!(error.attempts, 1);
}

#[tokio::test]
async fn error_event_before_content_is_classified_and_retried() {
    let provider = start().await;
    provider.push(MockReply::raw([data(r#"{"error":{"message":"Overloaded","type":"server_error","code":503}}"#)]));
    provider.push(MockReply::raw([data(r#"{"error":{"message":"Overloaded","type":"server_error","code":503}}"#)]));
    provider.push(MockReply::stream(["ok"]));

    let result = openai(&provider, json!({}), 2).create_stream(&prompt(), &mut Pieces::default()).await.unwrap();
    assert_eq!(text_of(&result.content), "ok");

    provider.push(MockReply::raw([data(r#"{"error":{"message":"Overloaded","type":"server_error","code":503}}"#)]));
    let error = openai(&provider, json!({}), 0).create_stream(&prompt(), &mut Pieces::default()).await.unwrap_err();
    assert_eq!(error.kind, ModelErrorKind::ServiceUnavailableError);
    assert_eq!(error.status_code, Some(503));
    assert_eq!(error.message, "Overloaded");
}

#[tokio::test]
async fn error_event_after_content_is_mid_stream_error() {
    let provider = start().await;
    provider.push(MockReply::raw([
        content_chunk("Start"),
        data(r#"{"error":{"message":"context too long","code":"context_length_exceeded"}}"#),
    ]));
    provider.push(MockReply::text("never served"));
    let mut pieces = Pieces::default();

    let error = openai(&provider, json!({}), 2).create_stream(&prompt(), &mut pieces).await.unwrap_err();

    assert_eq!(error.kind, ModelErrorKind::MidStreamFallbackError);
    assert!(error.message.contains("ContextWindowExceededError"), "{}", error.message);
    assert_eq!(error.attempts, 1);
    assert_eq!(pieces.0, ["Start"]);
    assert_eq!(provider.queued(), 1);
}

#[tokio::test]
async fn stream_error_status_is_retried() {
    let provider = start().await;
    provider.push(MockReply::rate_limited(0));
    provider.push(MockReply::stream(["fine"]));

    let result = openai(&provider, json!({}), 2).create_stream(&prompt(), &mut Pieces::default()).await.unwrap();

    assert_eq!(text_of(&result.content), "fine");
    assert_eq!(provider.requests().len(), 2);
}

#[tokio::test]
async fn stream_assembles_tool_calls() {
    let provider = start().await;
    provider.push(MockReply::tool_call("lookup", r#"{"city":"Paris"}"#));

    let result = openai(&provider, json!({}), 0).create_stream(&prompt(), &mut Pieces::default()).await.unwrap();

    let CreateContent::FunctionCalls(calls) = result.content else { panic!("expected calls") };
    assert_eq!(calls[0].name, "lookup");
    assert_eq!(calls[0].arguments, r#"{"city":"Paris"}"#);
    assert_eq!(result.finish_reason, FinishReason::FunctionCalls);
}

// Azure OpenAI.

fn azure_config(provider: &MockProvider) -> Value {
    json!({"azure_endpoint": format!("http://{}", provider.addr()), "azure_deployment": "grader-4o",
           "api_version": "2024-06-01", "model": "gpt-4o", "api_key": "az-key"})
}

#[tokio::test]
async fn azure_uses_deployment_url_and_api_key_header() {
    let provider = MockProvider::start(MockConfig::default().with_api_key("az-key")).await.unwrap();
    provider.push(MockReply::text("azure says hi"));
    let client = aegis_core::model::azure::from_config(
        &azure_config(&provider),
        &ProviderEnv::default(),
        reqwest::Client::new(),
    )
    .unwrap()
    .with_retry_policy(fast_retries(0));

    let result = client.create(&prompt()).await.unwrap();

    assert_eq!(text_of(&result.content), "azure says hi");
    assert_eq!(client.provider(), "azure");
    let request = &provider.requests()[0];
    assert_eq!(request.path, "/openai/deployments/grader-4o/chat/completions");
    assert_eq!(request.query.as_deref(), Some("api-version=2024-06-01"));
    assert_eq!(request.header("api-key"), Some("az-key"));
    assert_eq!(request.authorization(), None);
}

#[tokio::test]
async fn azure_errors_name_azure() {
    let provider = start().await;
    provider.push(MockReply::error(
        404,
        r#"{"error":{"code":"DeploymentNotFound","message":"The API deployment for this resource does not exist."}}"#,
    ));
    let client = aegis_core::model::azure::from_config(
        &azure_config(&provider),
        &ProviderEnv::default(),
        reqwest::Client::new(),
    )
    .unwrap()
    .with_retry_policy(fast_retries(2));

    let error = create_error(&client).await;

    assert_eq!(error.kind, ModelErrorKind::NotFoundError);
    assert_eq!(error.llm_provider, "azure");
    assert_eq!(error.model, "gpt-4o");
}

#[tokio::test]
async fn azure_streams() {
    let provider = start().await;
    provider.push(MockReply::stream(["a", "b"]));
    let client = aegis_core::model::azure::from_config(
        &azure_config(&provider),
        &ProviderEnv::default(),
        reqwest::Client::new(),
    )
    .unwrap();
    let mut pieces = Pieces::default();

    let result = client.create_stream(&prompt(), &mut pieces).await.unwrap();

    assert_eq!(pieces.0, ["a", "b"]);
    assert_eq!(text_of(&result.content), "ab");
}

// Anthropic.

fn anthropic(provider: &MockProvider, extra: Value, max_retries: u32) -> AnthropicClient {
    let mut config =
        json!({"model": "claude-3-5-haiku", "base_url": format!("http://{}", provider.addr()), "api_key": "sk-ant"});
    for (key, value) in extra.as_object().unwrap() {
        config[key] = value.clone();
    }
    AnthropicClient::from_config(&config, &ProviderEnv::default(), reqwest::Client::new())
        .unwrap()
        .with_retry_policy(fast_retries(max_retries))
}

fn named(event: &str, data: &str) -> String {
    format!("event: {event}\ndata: {data}\n\n")
}

#[tokio::test]
async fn anthropic_sends_messages_api_request() {
    let provider = MockProvider::start(MockConfig::default().with_api_key("sk-ant")).await.unwrap();
    provider.push(MockReply::text("Canberra"));
    let client = anthropic(&provider, json!({"temperature": 0.3, "top_k": 5, "stop_sequences": ["STOP"]}), 0);

    let result = client.create(&prompt()).await.unwrap();

    assert_eq!(text_of(&result.content), "Canberra");
    assert_eq!(result.finish_reason, FinishReason::Stop);
    assert_eq!(result.usage, RequestUsage { prompt_tokens: 7, completion_tokens: 1 });
    let request = &provider.requests()[0];
    assert_eq!(request.path, "/v1/messages");
    assert_eq!(request.header("x-api-key"), Some("sk-ant"));
    assert_eq!(request.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(request.authorization(), None);
    assert_eq!(request.body["system"], "You are a grader.");
    assert_eq!(request.body["max_tokens"], 4096);
    assert_eq!(request.body["top_k"], 5);
    assert_eq!(request.body["stop_sequences"], json!(["STOP"]));
    assert_eq!(request.body["messages"][0]["role"], "user");
    assert_eq!(request.body["messages"][0]["content"][0]["text"], "Grade this answer");
}

#[tokio::test]
async fn anthropic_streams_named_events() {
    let provider = start().await;
    provider.push(MockReply::stream(["Can", "berra"]));
    let mut pieces = Pieces::default();

    let result = anthropic(&provider, json!({}), 0).create_stream(&prompt(), &mut pieces).await.unwrap();

    assert_eq!(pieces.0, ["Can", "berra"]);
    assert_eq!(text_of(&result.content), "Canberra");
    assert_eq!(result.finish_reason, FinishReason::Stop);
    assert_eq!(result.usage, RequestUsage { prompt_tokens: 7, completion_tokens: 1 });
    assert_eq!(provider.requests()[0].body["stream"], true);
}

#[tokio::test]
async fn anthropic_streams_tool_use() {
    let provider = start().await;
    provider.push(MockReply::tool_call("lookup", r#"{"city":"Perth"}"#));

    let result = anthropic(&provider, json!({}), 0).create_stream(&prompt(), &mut Pieces::default()).await.unwrap();

    let CreateContent::FunctionCalls(calls) = result.content else { panic!("expected calls") };
    assert_eq!(calls[0].name, "lookup");
    assert_eq!(calls[0].arguments, r#"{"city":"Perth"}"#);
    assert_eq!(result.finish_reason, FinishReason::FunctionCalls);
}

#[tokio::test]
async fn anthropic_error_event_is_classified() {
    let provider = start().await;
    let overloaded = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
    provider.push(MockReply::raw([named("error", overloaded)]));
    provider.push(MockReply::raw([
        named("message_start", r#"{"type":"message_start","message":{"usage":{"input_tokens":3,"output_tokens":1}}}"#),
        named(
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
        ),
        named("error", r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"}}"#),
    ]));

    let before = anthropic(&provider, json!({}), 0).create_stream(&prompt(), &mut Pieces::default()).await.unwrap_err();
    assert_eq!(before.kind, ModelErrorKind::APIError);
    assert_eq!(before.status_code, Some(529));
    assert_eq!(before.message, "Overloaded");

    let after = anthropic(&provider, json!({}), 2).create_stream(&prompt(), &mut Pieces::default()).await.unwrap_err();
    assert_eq!(after.kind, ModelErrorKind::MidStreamFallbackError);
    assert!(after.message.contains("RateLimitError"), "{}", after.message);
    assert_eq!(after.attempts, 1);
}

#[tokio::test]
async fn anthropic_stream_without_stop_is_error() {
    let provider = start().await;
    provider.push(MockReply::raw([
        ": comment\n\n".to_owned(),
        named("ping", r#"{"type":"ping"}"#),
        named(
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}"#,
        ),
    ]));

    let error = anthropic(&provider, json!({}), 0).create_stream(&prompt(), &mut Pieces::default()).await.unwrap_err();

    assert_eq!(error.kind, ModelErrorKind::MidStreamFallbackError);
}

#[tokio::test]
async fn anthropic_http_errors_are_classified() {
    let provider = start().await;
    provider.push(MockReply::error(429, r#"{"type":"error","error":{"type":"rate_limit_error","message":"Number of requests has exceeded your rate limit"}}"#));
    provider.push(MockReply::error(400, r#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 250000 tokens > 200000 maximum"}}"#));
    provider.push(MockReply::error(200, r#"{"type":"completion","completion":"legacy"}"#));
    let client = anthropic(&provider, json!({}), 0);

    assert_eq!(create_error(&client).await.kind, ModelErrorKind::RateLimitError);
    assert_eq!(create_error(&client).await.kind, ModelErrorKind::ContextWindowExceededError);
    let invalid = create_error(&client).await;
    assert_eq!(invalid.kind, ModelErrorKind::APIResponseValidationError);
    assert_eq!(invalid.llm_provider, "anthropic");
}

#[tokio::test]
async fn anthropic_env_key_only_reaches_its_host() {
    let trusted = start().await;
    let other = start().await;
    trusted.push(MockReply::text("a"));
    other.push(MockReply::text("b"));
    let mut env = ProviderEnv::default();
    env.anthropic_api_key = Secret::new("sk-ant-env");
    env.anthropic_base_url = Some(format!("http://{}", trusted.addr()));

    let to_trusted = AnthropicClient::from_config(&json!({"model": "c"}), &env, reqwest::Client::new()).unwrap();
    to_trusted.create(&prompt()).await.unwrap();
    let config = json!({"model": "c", "base_url": format!("http://{}", other.addr())});
    AnthropicClient::from_config(&config, &env, reqwest::Client::new()).unwrap().create(&prompt()).await.unwrap();

    assert_eq!(trusted.requests()[0].header("x-api-key"), Some("sk-ant-env"));
    assert_eq!(other.requests()[0].header("x-api-key"), None);
}

// Ollama.

fn ollama(provider: &MockProvider, extra: Value, max_retries: u32) -> OllamaClient {
    let mut config = json!({"model": "llama3.2", "host": provider.addr().to_string()});
    for (key, value) in extra.as_object().unwrap() {
        config[key] = value.clone();
    }
    OllamaClient::from_config(&config, &ProviderEnv::default(), reqwest::Client::new())
        .unwrap()
        .with_retry_policy(fast_retries(max_retries))
}

#[tokio::test]
async fn ollama_uses_native_chat() {
    let provider = start().await;
    provider.push(MockReply::text(r#"{"ok": true}"#));
    let client =
        ollama(&provider, json!({"options": {"temperature": 0, "num_ctx": 4096}, "response_format": "json"}), 0);

    let result = client.create(&prompt()).await.unwrap();

    assert_eq!(text_of(&result.content), r#"{"ok": true}"#);
    assert_eq!(result.finish_reason, FinishReason::Stop);
    assert_eq!(result.usage, RequestUsage { prompt_tokens: 7, completion_tokens: 2 });
    let request = &provider.requests()[0];
    assert_eq!(request.path, "/api/chat");
    assert_eq!(request.body["stream"], false);
    assert_eq!(request.body["format"], "json");
    assert_eq!(request.body["options"], json!({"temperature": 0, "num_ctx": 4096}));
}

#[tokio::test]
async fn ollama_streams_ndjson() {
    let provider = start().await;
    provider.push(MockReply::stream(["Can", "berra"]));
    let mut pieces = Pieces::default();

    let result = ollama(&provider, json!({}), 0).create_stream(&prompt(), &mut pieces).await.unwrap();

    assert_eq!(pieces.0, ["Can", "berra"]);
    assert_eq!(text_of(&result.content), "Canberra");
    assert_eq!(result.usage, RequestUsage { prompt_tokens: 7, completion_tokens: 1 });
}

#[tokio::test]
async fn ollama_stream_split_lines_and_cut() {
    let provider = start().await;
    let line = r#"{"model":"llama3.2","message":{"role":"assistant","content":"Hel"},"done":false}"#;
    let (head, tail) = line.split_at(20);
    provider.push(MockReply::raw([
        head.to_owned(),
        format!("{tail}\n\n"),
        "{\"message\":{\"role\":\"assistant\",\"content\":\"lo\"},\"done\":false}\n".to_owned(),
        "{\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,\"done_reason\":\"stop\",\"prompt_eval_count\":4,\"eval_count\":2,\"extra\":1}\n".to_owned(),
    ]));
    provider.push(MockReply::raw_cut([format!("{line}\n")]));
    let mut pieces = Pieces::default();

    let result = ollama(&provider, json!({}), 0).create_stream(&prompt(), &mut pieces).await.unwrap();
    assert_eq!(pieces.0, ["Hel", "lo"]);
    assert_eq!(result.usage, RequestUsage { prompt_tokens: 4, completion_tokens: 2 });

    let error = ollama(&provider, json!({}), 2).create_stream(&prompt(), &mut Pieces::default()).await.unwrap_err();
    assert_eq!(error.kind, ModelErrorKind::MidStreamFallbackError);
    assert_eq!(error.attempts, 1);
}

#[tokio::test]
async fn ollama_errors_are_classified() {
    let provider = start().await;
    provider.push(MockReply::error(404, r#"{"error":"model \"llama9\" not found, try pulling it first"}"#));
    provider.push(MockReply::raw(["{\"error\":\"an unknown error was encountered while running the model\"}\n"]));
    let client = ollama(&provider, json!({}), 0);

    let missing = create_error(&client).await;
    assert_eq!(missing.kind, ModelErrorKind::NotFoundError);
    assert!(missing.message.contains("llama9"), "{}", missing.message);
    assert_eq!(missing.llm_provider, "ollama");

    let in_stream = client.create_stream(&prompt(), &mut Pieces::default()).await.unwrap_err();
    assert_eq!(in_stream.kind, ModelErrorKind::APIError);
    assert!(in_stream.message.contains("unknown error"), "{}", in_stream.message);
}

// Registration.

#[test]
fn every_provider_and_alias_builds() {
    let mut registry = aegis_core::Registry::with_builtins(ProviderEnv::default());
    // Azure has no default host, so its endpoints must be allowed explicitly.
    registry.allow_model_host("*.openai.azure.com").unwrap();
    let configs = [
        ("autogen_ext.models.openai.OpenAIChatCompletionClient", json!({"model": "m"})),
        ("OpenAIChatCompletionClient", json!({"model": "m"})),
        ("openai_chat_completion_client", json!({"model": "m"})),
        (
            "autogen_ext.models.openai.AzureOpenAIChatCompletionClient",
            json!({"azure_endpoint": "https://r.openai.azure.com", "azure_deployment": "d", "api_version": "v"}),
        ),
        (
            "AzureOpenAIChatCompletionClient",
            json!({"azure_endpoint": "https://r.openai.azure.com", "azure_deployment": "d", "api_version": "v"}),
        ),
        (
            "azure_openai_chat_completion_client",
            json!({"azure_endpoint": "https://r.openai.azure.com", "azure_deployment": "d", "api_version": "v"}),
        ),
        ("autogen_ext.models.anthropic.AnthropicChatCompletionClient", json!({"model": "claude"})),
        ("autogen_ext.models.ollama.OllamaChatCompletionClient", json!({"model": "llama3.2"})),
        ("OllamaChatCompletionClient", json!({"model": "llama3.2", "host": "127.0.0.1"})),
    ];
    for (provider, config) in configs {
        let component: aegis_core::ComponentModel = serde_json::from_value(json!({
            "provider": "autogen_agentchat.agents.AssistantAgent",
            "component_type": "agent",
            "config": {"name": "a", "model_client": {"provider": provider, "component_type": "model", "config": config}},
        }))
        .unwrap();
        let errors = registry.validate_team(&component);
        assert!(errors.is_empty(), "{provider}: {errors:?}");
    }
}
