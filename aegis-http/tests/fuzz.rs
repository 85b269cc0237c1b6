//! A deterministic fuzz test of every route and method of the API.
//!
//! The routes come from the served OpenAPI document, so a new route is fuzzed without a
//! change here. Each operation gets malformed, truncated, deeply nested, oversized and
//! invalid UTF-8 bodies. Every field of a valid body is replaced in turn by values of other
//! types, huge strings and odd Unicode. Paths get bad ids, each documented query parameter
//! gets bad values, and headers get odd values. Every response must be below 500, arrive whole on a
//! connection that stays usable, and be an error envelope when it is an error. Afterwards
//! the server must still respond to `/healthz`.
//!
//! The generator is seeded (`AEGIS_FUZZ_SEED` overrides the seed), so a failure repeats.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::{Value, json};

use aegis_core::ProviderEnv;
use aegis_http::mock::{MockConfig, MockProvider};
use common::{Api, sqlite_server, team_body, text_run_body};

const DEFAULT_SEED: u64 = 0x00AE_6150;

/// Path segments that are not ids.
const BAD_IDS: &[&str] = &[
    "not-a-uuid",
    "0",
    "-1",
    "00000000-0000-0000-0000-00000000000g",
    "0195c641-0d8e-7061-a65b-79051d4929ca-extra",
    "%00",
    "%FF%FE",
    "%E2%80%AE",
    "..%2F..%2Fetc%2Fpasswd",
    "%F0%9F%92%A9",
    "{id}",
    "null",
];

/// Values tried for every documented query parameter.
const BAD_QUERY_VALUES: &[&str] = &[
    "-1",
    "0",
    "1e309",
    "-1e309",
    "NaN",
    "inf",
    "99999999999999999999999",
    "garbage",
    "",
    "%FF",
    "%00",
    "true%00",
    "%E2%80%AE",
    "0195c641-0d8e-7061-a65b-79051d4929ca",
    "2025-13-45T99:99:99Z",
];

/// Whole query strings tried on every operation.
const BAD_QUERIES: &[&str] = &[
    "limit=-1",
    "limit=1e309",
    "cursor=garbage",
    "cursor=%FF%FF",
    "cursor=eyJ4IjoxfQ",
    "wait=1e309",
    "wait=-0.0001",
    "wait=NaN",
    "cascade=maybe",
    "order=sideways",
    "status=nope",
    "created_after=yesterday",
    "limit=1&limit=2&limit=-3",
    "%",
    "&&&=&",
    "a=b=c",
    "limit",
    "=",
    "%zz=1",
];

/// Bodies that are not JSON or not a JSON object.
const MALFORMED_BODIES: &[&str] = &[
    "",
    "{",
    "}",
    "{\"name\":",
    "{\"name\": \"x\",}",
    "[1, 2",
    "nul",
    "null",
    "[]",
    "42",
    "\"text\"",
    "{\"a\": 1} trailing",
    "{\"a\" 1}",
    "{'name': 'single quotes'}",
    "{\"name\": \"\\ud800\"}",
    "{\"name\": \"\\u0000\"}",
    "\u{FEFF}{\"name\": \"bom\"}",
    "{\"name\": 1e99999}",
    "{\"name\": -0}",
];

/// Content types sent with a valid body.
const CONTENT_TYPES: &[&str] = &[
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "application/json; charset=utf-16",
    "application/problem+json",
    "application/json;;;",
    "*/*",
    "",
    "application/",
];

/// One operation of the document.
struct Operation {
    method: Method,
    template: String,
    id: String,
    query: Vec<String>,
}

struct Fuzzer {
    client: reqwest::Client,
    base: String,
    rng: StdRng,
    seed: u64,
    sent: usize,
    task_id: String,
    team_id: String,
    session_id: String,
    run_id: String,
}

/// What one request carries besides its method and URL.
#[derive(Default)]
struct Extra<'a> {
    body: Option<Vec<u8>>,
    content_type: Option<&'a str>,
    headers: Vec<(HeaderName, HeaderValue)>,
}

impl Fuzzer {
    /// Sends one request and checks the response; returns its status.
    async fn send(&mut self, method: &Method, path_and_query: &str, extra: Extra<'_>) -> u16 {
        self.sent += 1;
        let preview =
            extra.body.as_deref().map(|body| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned());
        let label = format!(
            "{method} {path_and_query} (seed {:#x}, request {}, content type {:?}, headers {:?}, body {preview:?})",
            self.seed, self.sent, extra.content_type, extra.headers
        );
        let mut request = self.client.request(method.clone(), format!("{}{path_and_query}", self.base));
        if let Some(content_type) = extra.content_type {
            request = request.header("content-type", content_type);
        }
        for (name, value) in extra.headers {
            request = request.header(name, value);
        }
        if let Some(body) = extra.body {
            request = request.body(body);
        }

        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => panic!("{label}: no response: {error:?}"),
        };
        let status = response.status().as_u16();
        let content_type =
            response.headers().get("content-type").map(|value| value.to_str().unwrap_or_default().to_owned());
        if content_type.as_deref() == Some("text/event-stream") {
            // A stream lasts as long as its run; its status is all this test needs.
            assert_eq!(status, 200, "{label}");
            return status;
        }
        let bytes = match response.bytes().await {
            Ok(bytes) => bytes,
            Err(error) => panic!("{label}: the response body was cut off: {error:?}"),
        };
        assert!(status < 500, "{label}: status {status}: {}", String::from_utf8_lossy(&bytes));

        if status >= 400 {
            assert_eq!(content_type.as_deref(), Some("application/json"), "{label}: status {status}");
            let body: Value = serde_json::from_slice(&bytes).unwrap_or_else(|error| panic!("{label}: {error}"));
            assert!(body["message"].is_string(), "{label}: {body}");
            assert_eq!(body["data"], Value::Null, "{label}: {body}");
            assert!(body["meta"]["errors"].is_array(), "{label}: {body}");
        }
        status
    }

    /// Returns the operation's path with its parameters replaced by `value`.
    fn fill(template: &str, value: &str) -> String {
        let mut path = String::new();
        let mut rest = template;
        while let Some(start) = rest.find('{') {
            let end = rest[start..].find('}').map_or(rest.len(), |offset| start + offset + 1);
            path.push_str(&rest[..start]);
            path.push_str(value);
            rest = &rest[end..];
        }
        path.push_str(rest);
        path
    }

    /// Returns the path with the id of an existing resource of the path's kind.
    fn existing(&self, template: &str) -> String {
        let id = if template.starts_with("/api/v1/task/") {
            &self.task_id
        } else if template.starts_with("/api/v1/team/") {
            &self.team_id
        } else if template.starts_with("/api/v1/session/") {
            &self.session_id
        } else {
            &self.run_id
        };
        Fuzzer::fill(template, id)
    }

    /// Returns a valid body for the operation, which the field mutations start from.
    fn valid_body(&self, operation: &Operation) -> Value {
        match operation.id.as_str() {
            "create_task" => common::task_body(),
            "create_team" | "validate_team" => team_body(None),
            "create_session" => common::session_body(&self.task_id, &self.team_id),
            "create_run" => text_run_body(&self.session_id, &self.task_id, "Name a capital city."),
            "update_task" | "update_team" => json!({"name": "renamed", "description": "d", "archived": false}),
            "update_session" => json!({"name": "renamed", "team_metadata": {"model": "gpt-4o-mini"}}),
            "update_run" => json!({"archived": false}),
            "cancel_run" => json!({"reason": "fuzz"}),
            _ => json!({"name": "any"}),
        }
    }

    fn random_uuid(&mut self) -> String {
        uuid::Builder::from_random_bytes(self.rng.random()).into_uuid().to_string()
    }

    fn random_bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.rng.random()).collect()
    }

    async fn fuzz_paths(&mut self, operation: &Operation) {
        if !operation.template.contains('{') {
            return;
        }
        let mut values: Vec<String> = BAD_IDS.iter().map(|value| (*value).to_owned()).collect();
        values.push(self.random_uuid());
        values.push("a".repeat(4000));
        for value in values {
            let path = Fuzzer::fill(&operation.template, &value);
            let extra =
                Extra { body: Some(b"{}".to_vec()), content_type: Some("application/json"), ..Extra::default() };
            let status = self.send(&operation.method, &path, extra).await;
            assert!(matches!(status, 400 | 404 | 414 | 422 | 431), "{} {path}: status {status}", operation.method);
        }
    }

    async fn fuzz_queries(&mut self, operation: &Operation) {
        let path = self.existing(&operation.template);
        let mut queries: Vec<String> = BAD_QUERIES.iter().map(|query| (*query).to_owned()).collect();
        for name in &operation.query {
            for value in BAD_QUERY_VALUES {
                queries.push(format!("{name}={value}"));
            }
        }
        for query in queries {
            // A valid `cascade=true` would delete the resources the other cases use.
            if query.contains("cascade=true") {
                continue;
            }
            self.send(&operation.method, &format!("{path}?{query}"), Extra::default()).await;
        }
    }

    async fn fuzz_bodies(&mut self, operation: &Operation) {
        let path = self.existing(&operation.template);
        let valid = serde_json::to_vec(&self.valid_body(operation)).unwrap();
        let mut bodies: Vec<Vec<u8>> = MALFORMED_BODIES.iter().map(|body| body.as_bytes().to_vec()).collect();

        for _ in 0..6 {
            let cut = self.rng.random_range(0..valid.len());
            bodies.push(valid[..cut].to_vec());
        }
        let len = self.rng.random_range(1..512);
        bodies.push(self.random_bytes(len));
        bodies.push(b"{\"name\": \"\xff\xfe\xc0\xaf\"}".to_vec());
        bodies.push(format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes());
        bodies.push(format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000)).into_bytes());
        bodies.push("[".repeat(100_000).into_bytes());
        bodies.push(vec![b' '; aegis_http::DEFAULT_MAX_BODY_BYTES + 1]);

        for body in bodies {
            let extra = Extra { body: Some(body), content_type: Some("application/json"), ..Extra::default() };
            self.send(&operation.method, &path, extra).await;
        }

        for content_type in CONTENT_TYPES {
            let extra = Extra { body: Some(valid.clone()), content_type: Some(content_type), ..Extra::default() };
            self.send(&operation.method, &path, extra).await;
        }
    }

    /// Replaces every field of the valid body, one at a time, with values of other types.
    async fn fuzz_fields(&mut self, operation: &Operation) {
        let path = self.existing(&operation.template);
        let valid = self.valid_body(operation);
        let mut pointers = Vec::new();
        collect_pointers(&valid, String::new(), &mut pointers);

        let replacements = [
            json!(12345),
            json!(-1.5e300),
            json!(u64::MAX),
            json!([]),
            json!([1, "a", null, {}]),
            json!({}),
            json!({"x": {"y": []}}),
            Value::Null,
            json!(true),
            json!(""),
            json!("x".repeat(200_000)),
            json!("\u{0}\u{202E}\u{FEFF}\u{1F4A9}e\u{301}\u{10FFFF}\u{FFFD}"),
            nested_array(120),
        ];
        for pointer in &pointers {
            for replacement in &replacements {
                let mut body = valid.clone();
                *body.pointer_mut(pointer).unwrap() = replacement.clone();
                let extra = Extra {
                    body: Some(serde_json::to_vec(&body).unwrap()),
                    content_type: Some("application/json"),
                    ..Extra::default()
                };
                self.send(&operation.method, &path, extra).await;
            }
        }
    }

    async fn fuzz_headers(&mut self, operation: &Operation) {
        let path = self.existing(&operation.template);
        let odd_values: Vec<HeaderValue> = vec![
            HeaderValue::from_static(""),
            HeaderValue::from_static("-1"),
            HeaderValue::from_static("99999999999999999999999"),
            HeaderValue::from_bytes(b"\xff\xfe").unwrap(),
            HeaderValue::from_str(&"k".repeat(8000)).unwrap(),
        ];
        for name in ["idempotency-key", "last-event-id", "content-length"] {
            for value in &odd_values {
                if name == "content-length" && value.as_bytes().iter().any(|byte| !byte.is_ascii_digit()) {
                    // reqwest refuses to send a non-numeric Content-Length.
                    continue;
                }
                let extra = Extra {
                    body: Some(b"{}".to_vec()),
                    content_type: Some("application/json"),
                    headers: vec![(HeaderName::from_static(name), value.clone())],
                };
                self.send(&operation.method, &path, extra).await;
            }
        }
    }
}

/// Collects the JSON pointer of every object field and array item in `value`.
fn collect_pointers(value: &Value, prefix: String, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let pointer = format!("{prefix}/{}", key.replace('~', "~0").replace('/', "~1"));
                out.push(pointer.clone());
                collect_pointers(inner, pointer, out);
            }
        }
        Value::Array(items) => {
            for (index, inner) in items.iter().enumerate() {
                let pointer = format!("{prefix}/{index}");
                out.push(pointer.clone());
                collect_pointers(inner, pointer, out);
            }
        }
        _ => {}
    }
}

/// Builds an array nested `depth` levels deep. Inside a body it stays just under serde_json's
/// limit of 128, so the service, not the parser, handles the depth.
fn nested_array(depth: usize) -> Value {
    let mut value = json!(1);
    for _ in 0..depth {
        value = json!([value]);
    }
    value
}

/// Reads the operations of the served document.
async fn operations(api: &Api) -> Vec<Operation> {
    let response = reqwest::get(format!("{}/api/v1/openapi.json", api.base)).await.unwrap();
    let spec: Value = response.json().await.unwrap();
    let mut operations = Vec::new();
    for (template, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let Ok(method) = Method::from_bytes(method.to_uppercase().as_bytes()) else { continue };
            let query = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|parameter| parameter["in"] == "query")
                .map(|parameter| parameter["name"].as_str().unwrap().to_owned())
                .collect();
            let id = operation["operationId"].as_str().unwrap_or_default().to_owned();
            operations.push(Operation { method, template: template.clone(), id, query });
        }
    }
    operations
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_survives_bad_input() {
    let mock = MockProvider::start(MockConfig::default()).await.unwrap();
    let base_url = mock.base_url();
    let (server, _dir) = sqlite_server(|config| {
        config.provider_env = ProviderEnv::with_openai_base_url(base_url);
        config.shutdown_grace = Duration::from_secs(1);
    })
    .await;
    let api = Api::new(server.addr());
    let (task_id, team_id, session_id) = api.tutorial_session(None).await;
    let (status, run) = api.post("/run", &text_run_body(&session_id, &task_id, "Name a capital city.")).await;
    assert_eq!(status, 201, "{run}");
    let run_id = run["data"]["id"].as_str().unwrap().to_owned();

    let seed = std::env::var("AEGIS_FUZZ_SEED").ok().and_then(|text| text.parse().ok()).unwrap_or(DEFAULT_SEED);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let mut fuzzer = Fuzzer {
        client,
        base: api.base.clone(),
        rng: StdRng::seed_from_u64(seed),
        seed,
        sent: 0,
        task_id,
        team_id,
        session_id,
        run_id,
    };

    let operations = operations(&api).await;
    assert!(operations.len() >= 26, "the document lists {} operations", operations.len());
    for operation in &operations {
        fuzzer.fuzz_paths(operation).await;
        fuzzer.fuzz_queries(operation).await;
        fuzzer.fuzz_bodies(operation).await;
        fuzzer.fuzz_fields(operation).await;
        fuzzer.fuzz_headers(operation).await;
    }

    let health = reqwest::get(format!("{}/healthz", api.base)).await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "ok");
    eprintln!("sent {} requests with seed {seed:#x}", fuzzer.sent);
    server.stop().await.unwrap();
}
