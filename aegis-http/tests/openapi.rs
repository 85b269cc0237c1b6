//! The OpenAPI document: the served copy equals the checked-in `docs/openapi.json`, it
//! describes every route, every route it describes is served, and real responses match
//! their schemas.
//!
//! The router and the document are built from the same `utoipa_axum` route calls, so a route
//! cannot be served undocumented. These tests guard the rest: the checked-in file, the list
//! of routes clients rely on, and that each documented method reaches a handler.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::PathBuf;

use reqwest::Method;
use serde_json::Value;

use aegis_core::ProviderEnv;
use aegis_http::mock::{MockConfig, MockProvider};
use common::{Api, sqlite_server, text_run_body};

/// The command that rewrites `docs/openapi.json` from the served document.
const UPDATE_COMMAND: &str = "AEGIS_UPDATE_OPENAPI=1 cargo test -p aegis-http --test openapi";

/// Every route and method of the API, as `routes/mod.rs` serves them.
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
    ("GET", "/api/v1/openapi.json"),
    ("GET", "/api/v1/task"),
    ("POST", "/api/v1/task"),
    ("GET", "/api/v1/task/{id}"),
    ("PATCH", "/api/v1/task/{id}"),
    ("DELETE", "/api/v1/task/{id}"),
    ("GET", "/api/v1/team"),
    ("POST", "/api/v1/team"),
    ("POST", "/api/v1/team/validate"),
    ("GET", "/api/v1/team/{id}"),
    ("PATCH", "/api/v1/team/{id}"),
    ("DELETE", "/api/v1/team/{id}"),
    ("GET", "/api/v1/session"),
    ("POST", "/api/v1/session"),
    ("GET", "/api/v1/session/{id}"),
    ("PATCH", "/api/v1/session/{id}"),
    ("DELETE", "/api/v1/session/{id}"),
    ("GET", "/api/v1/run"),
    ("POST", "/api/v1/run"),
    ("GET", "/api/v1/run/{id}"),
    ("PATCH", "/api/v1/run/{id}"),
    ("DELETE", "/api/v1/run/{id}"),
    ("GET", "/api/v1/run/{id}/messages"),
    ("POST", "/api/v1/run/{id}/cancel"),
    ("GET", "/api/v1/run/{id}/stream"),
];

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE"];

fn checked_in_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json")
}

/// Collects the `(METHOD, path)` pairs the document describes.
fn documented(spec: &Value) -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if METHODS.contains(&method.to_uppercase().as_str()) {
                operations.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    operations
}

async fn served_document(base: &str) -> (String, Value) {
    let response = reqwest::get(format!("{base}/api/v1/openapi.json")).await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("application/json"), "content type {content_type}");
    let text = response.text().await.unwrap();
    let spec = serde_json::from_str(&text).unwrap();
    (text, spec)
}

#[tokio::test]
async fn served_document_matches_checked_in_file() {
    let (server, _dir) = sqlite_server(|_| {}).await;
    let (served, _) = served_document(&format!("http://{}", server.addr())).await;

    let path = checked_in_path();
    if std::env::var_os("AEGIS_UPDATE_OPENAPI").is_some() {
        std::fs::write(&path, &served).unwrap();
        eprintln!("wrote {}", path.display());
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        served == checked_in,
        "docs/openapi.json differs from the document the server serves; if the change is intended, \
         rewrite the file with `{UPDATE_COMMAND}` and commit it"
    );
    server.stop().await.unwrap();
}

#[tokio::test]
async fn document_is_openapi_3_1_with_optional_bearer() {
    let spec = serde_json::to_value(aegis_http::openapi()).unwrap();

    assert_eq!(spec["openapi"], "3.1.0");
    assert_eq!(spec["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    assert_eq!(spec["security"], serde_json::json!([{}, {"bearer": []}]), "bearer must stay optional");
    assert!(spec["components"]["schemas"]["ErrorEnvelope"].is_object());
    assert_eq!(spec["paths"]["/healthz"]["get"]["security"], serde_json::json!([{}]));
    assert_eq!(spec["paths"]["/api/v1/openapi.json"]["get"]["security"], serde_json::json!([{}]));
}

/// Collects every `$ref` in `value`.
fn references(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get("$ref") {
                found.push(target.clone());
            }
            map.values().for_each(|inner| references(inner, found));
        }
        Value::Array(items) => items.iter().for_each(|inner| references(inner, found)),
        _ => {}
    }
}

#[tokio::test]
async fn document_references_resolve() {
    let spec = serde_json::to_value(aegis_http::openapi()).unwrap();
    let mut found = Vec::new();
    references(&spec, &mut found);

    assert!(!found.is_empty());
    for target in found {
        let pointer = target.strip_prefix('#').unwrap_or_else(|| panic!("external reference {target}"));
        assert!(spec.pointer(pointer).is_some(), "{target} does not resolve");
    }
}

#[tokio::test]
async fn document_lists_every_route() {
    let spec = serde_json::to_value(aegis_http::openapi()).unwrap();
    let expected: BTreeSet<(String, String)> =
        ROUTES.iter().map(|(method, path)| ((*method).to_owned(), (*path).to_owned())).collect();

    assert_eq!(documented(&spec), expected);
}

#[tokio::test]
async fn document_describes_inputs_and_errors() {
    let spec = serde_json::to_value(aegis_http::openapi()).unwrap();
    let paths = &spec["paths"];
    let parameter_names = |operation: &Value| -> Vec<String> {
        operation["parameters"]
            .as_array()
            .map(|list| list.iter().map(|parameter| parameter["name"].as_str().unwrap().to_owned()).collect())
            .unwrap_or_default()
    };

    let create_run = &paths["/api/v1/run"]["post"];
    assert!(parameter_names(create_run).contains(&"Idempotency-Key".to_owned()));
    assert!(create_run["requestBody"]["content"]["application/json"]["schema"].is_object());
    for status in ["201", "400", "413", "415", "422", "500", "503"] {
        assert!(create_run["responses"][status].is_object(), "POST /run has no {status} response");
    }
    assert_eq!(create_run["responses"]["413"]["$ref"], "#/components/responses/PayloadTooLarge");

    let get_run = &paths["/api/v1/run/{id}"]["get"];
    assert_eq!(parameter_names(get_run), ["id", "wait"]);
    assert!(get_run["responses"]["404"].is_object());

    let list_runs = parameter_names(&paths["/api/v1/run"]["get"]);
    for name in ["limit", "order", "cursor", "archived", "session_id", "status", "created_after"] {
        assert!(list_runs.contains(&name.to_owned()), "GET /run lacks ?{name}");
    }
    for resource in ["task", "team", "session"] {
        let delete = &paths[format!("/api/v1/{resource}/{{id}}")]["delete"];
        assert!(parameter_names(delete).contains(&"cascade".to_owned()), "DELETE /{resource} lacks ?cascade");
        assert!(delete["responses"]["409"].is_object(), "DELETE /{resource} lacks 409");
    }

    let stream = &paths["/api/v1/run/{id}/stream"]["get"]["responses"]["200"]["content"];
    assert!(stream["text/event-stream"].is_object(), "{stream}");
    let cancel = &paths["/api/v1/run/{id}/cancel"]["post"];
    assert!(cancel["requestBody"].is_object());
}

/// Sends every documented method of every documented path and checks that a handler
/// handled it: no 405, and no 404 from the router's fallback (whose error names `path`). The
/// methods a path does not document must get 405.
#[tokio::test]
async fn every_documented_route_is_served() {
    let (server, _dir) = sqlite_server(|_| {}).await;
    let base = format!("http://{}", server.addr());
    let (_, spec) = served_document(&base).await;
    let client = reqwest::Client::new();
    let operations = documented(&spec);
    let paths: BTreeSet<&String> = operations.iter().map(|(_, path)| path).collect();
    let unknown_id = "0195c641-0d8e-7061-a65b-79051d4929ca";

    for path in paths {
        let url = format!("{base}{}", path.replace("{id}", unknown_id));
        for method in METHODS {
            let response = client
                .request(Method::from_bytes(method.as_bytes()).unwrap(), &url)
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let is_documented = operations.contains(&((*method).to_owned(), path.clone()));
            if is_documented {
                assert_ne!(status, 405, "{method} {path}: {body}");
                let fallback_404 = status == 404 && body["meta"]["errors"][0]["field"] == "path";
                assert!(!fallback_404, "{method} {path} reached no handler: {body}");
            } else {
                assert_eq!(status, 405, "{method} {path} is served but not documented: {body}");
            }
        }
    }
    server.stop().await.unwrap();
}

#[tokio::test]
async fn swagger_ui_is_served_offline() {
    let (server, _dir) = sqlite_server(|_| {}).await;
    let base = format!("http://{}", server.addr());

    let page = reqwest::get(format!("{base}/docs/")).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(page.text().await.unwrap().contains("swagger-ui"));

    let initializer = reqwest::get(format!("{base}/docs/swagger-initializer.js")).await.unwrap();
    assert_eq!(initializer.status(), 200);
    assert!(initializer.text().await.unwrap().contains("/api/v1/openapi.json"));

    let missing = reqwest::get(format!("{base}/docs/no-such-file.js")).await.unwrap();
    assert_eq!(missing.status(), 404);
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["data"], Value::Null);
    assert_eq!(body["meta"]["errors"][0]["code"], "not_found");
    server.stop().await.unwrap();
}

/// Escapes a path for a JSON pointer.
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Returns how `body` breaks the document's schema for `status` of `method path`. The
/// document is the schema's root, so its `$ref`s resolve.
fn schema_errors(spec: &Value, method: &str, path: &str, status: u16, body: &Value) -> Vec<String> {
    let mut response_pointer = format!("/paths/{}/{method}/responses/{status}", escape(path));
    let response = spec.pointer(&response_pointer).unwrap_or_else(|| {
        panic!("{method} {path} documents no {status} response");
    });
    if let Some(target) = response["$ref"].as_str() {
        response_pointer = target.trim_start_matches('#').to_owned();
    }
    let schema_pointer = format!("{response_pointer}/content/application~1json/schema");
    assert!(spec.pointer(&schema_pointer).is_some(), "{method} {path} {status}: no schema");

    // The pointer becomes a URI fragment, where braces must be percent-encoded.
    let mut root = spec.clone();
    root["$ref"] = Value::String(format!("#{}", schema_pointer.replace('{', "%7B").replace('}', "%7D")));
    let validator = jsonschema::validator_for(&root).unwrap();
    validator.iter_errors(body).map(|error| format!("{error} at {}", error.instance_path())).collect()
}

fn check_response(spec: &Value, method: &str, path: &str, status: u16, body: &Value) {
    let errors = schema_errors(spec, method, path, status, body);
    assert!(errors.is_empty(), "{method} {path} {status} does not match its schema: {errors:?}\n{body}");
}

#[tokio::test]
async fn schema_check_rejects_wrong_shapes() {
    let spec = serde_json::to_value(aegis_http::openapi()).unwrap();
    let wrong_id = serde_json::json!({"message": "Data got correctly", "meta": {}, "data": {"id": 5}});
    let error_with_data = serde_json::json!({"message": "x", "meta": {"errors": []}, "data": {}});

    assert!(!schema_errors(&spec, "get", "/api/v1/task/{id}", 200, &wrong_id).is_empty());
    assert!(!schema_errors(&spec, "get", "/api/v1/task/{id}", 404, &error_with_data).is_empty());
}

/// Sends real requests and checks each response, success and error, against its schema.
#[tokio::test]
async fn responses_match_their_schemas() {
    let mock = MockProvider::start(MockConfig::default()).await.unwrap();
    let base_url = mock.base_url();
    let (server, _dir) =
        sqlite_server(|config| config.provider_env = ProviderEnv::with_openai_base_url(base_url)).await;
    let api = Api::new(server.addr());
    let spec = serde_json::to_value(aegis_http::openapi()).unwrap();
    let (task_id, team_id, session_id) = api.tutorial_session(None).await;
    let unknown = "0195c641-0d8e-7061-a65b-79051d4929ca";

    let (status, run) = api.post("/run", &text_run_body(&session_id, &task_id, "Name a capital city.")).await;
    check_response(&spec, "post", "/api/v1/run", status, &run);
    let run_id = run["data"]["id"].as_str().unwrap().to_owned();
    api.wait_terminal(&run_id, std::time::Duration::from_secs(30)).await;

    let reads = [
        ("/api/v1/task", "/task".to_owned()),
        ("/api/v1/task/{id}", format!("/task/{task_id}")),
        ("/api/v1/team", "/team".to_owned()),
        ("/api/v1/team/{id}", format!("/team/{team_id}")),
        ("/api/v1/session", "/session".to_owned()),
        ("/api/v1/session/{id}", format!("/session/{session_id}")),
        ("/api/v1/run", "/run".to_owned()),
        ("/api/v1/run/{id}", format!("/run/{run_id}")),
        ("/api/v1/run/{id}", format!("/run/{run_id}?wait=0")),
        ("/api/v1/run/{id}/messages", format!("/run/{run_id}/messages")),
        ("/api/v1/task/{id}", format!("/task/{unknown}")),
        ("/api/v1/run", "/run?limit=-1".to_owned()),
    ];
    for (template, path) in reads {
        let (status, body) = api.get(&path).await;
        check_response(&spec, "get", template, status, &body);
    }

    let (status, body) = api.post("/team/validate", &common::team_body(None)).await;
    check_response(&spec, "post", "/api/v1/team/validate", status, &body);
    let (status, body) = api.post(&format!("/run/{run_id}/cancel"), &serde_json::json!({})).await;
    check_response(&spec, "post", "/api/v1/run/{id}/cancel", status, &body);
    let (status, body) = api.post("/task", &serde_json::json!({"name": 5})).await;
    assert_eq!(status, 422);
    check_response(&spec, "post", "/api/v1/task", status, &body);

    let client = reqwest::Client::new();
    let delete = client.delete(format!("{}/api/v1/task/{task_id}", api.base)).send().await.unwrap();
    let status = delete.status().as_u16();
    assert_eq!(status, 409);
    check_response(&spec, "delete", "/api/v1/task/{id}", status, &delete.json().await.unwrap());
    let delete = client.delete(format!("{}/api/v1/run/{run_id}", api.base)).send().await.unwrap();
    let status = delete.status().as_u16();
    assert_eq!(status, 200);
    check_response(&spec, "delete", "/api/v1/run/{id}", status, &delete.json().await.unwrap());
    server.stop().await.unwrap();
}
