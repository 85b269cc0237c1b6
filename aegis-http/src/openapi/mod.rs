//! The OpenAPI 3.1 document of the API, served at `GET /api/v1/openapi.json`, and Swagger UI
//! at `/docs`.
//!
//! The paths come from the `#[utoipa::path]` attributes on the handlers. The same
//! `utoipa_axum` calls that route a handler add its path to the document (see
//! `routes/mod.rs`), so the router cannot serve a route that the document leaves out. This
//! module adds what every operation shares: the error responses, derived from each
//! operation's parameters and body by [`finish`], and the bearer security scheme.
//!
//! The bearer scheme is declared optional (`security: [{}, {"bearer": []}]`): the document
//! stays true on a server that checks API keys and on one that does not.
//!
//! `docs/openapi.json` is a checked-in copy; `tests/openapi.rs` fails when it differs from the
//! served document and names the command that rewrites it.

pub(crate) mod schemas;

use std::sync::OnceLock;

use axum::Router;
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Components, ContentBuilder, Ref, RefOr, ResponseBuilder};
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::error::ApiError;
use crate::openapi::schemas::{Archived, ErrorEnvelope, Order};

/// The path of the document.
pub(crate) const SPEC_PATH: &str = "/api/v1/openapi.json";

/// The path of Swagger UI.
pub(crate) const DOCS_PATH: &str = "/docs";

/// The name of the bearer security scheme in `components.securitySchemes`.
const BEARER: &str = "bearer";

/// The description of the `Idempotency-Key` header of the create routes.
pub(crate) const IDEMPOTENCY_KEY: &str = "A client-chosen key, such as a UUID. A retry with the same key and \
     body returns the resource the first request created instead of creating another; the same key with a \
     different body gets 422.";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Aegis API",
        description = "Run AutoGen-compatible multi-agent LLM teams. Every response is an envelope \
            `{\"message\", \"meta\", \"data\"}`; errors have `data: null` and their problems in \
            `meta.errors`, each with a `field`, a `code`, a `message` and often a `fix`. Unknown \
            routes get 404 and known routes with another method get 405, in the same envelope.",
        license(name = "MIT OR Apache-2.0", identifier = "MIT OR Apache-2.0"),
    ),
    tags(
        (name = "tasks", description = "Catalogue entries: what to do."),
        (name = "teams", description = "AutoGen team components: who does it."),
        (name = "sessions", description = "A task linked to a team, with `team_metadata` overrides."),
        (name = "runs", description = "One execution of a session's team on one task message."),
        (name = "service", description = "Health and this document."),
    ),
    components(schemas(ErrorEnvelope, Order, Archived))
)]
struct ApiDoc;

/// Returns the document's fixed parts (info, tags, shared schemas), before paths are added.
pub(crate) fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Completes a document whose paths were collected from the handlers: adds the optional
/// bearer scheme and, to every operation, the error responses its inputs can cause.
pub(crate) fn finish(mut spec: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    let components = spec.components.get_or_insert_with(Default::default);
    add_error_components(components);
    let mut bearer = Http::new(HttpAuthScheme::Bearer);
    bearer.description = Some(
        "An API key as `Authorization: Bearer <key>`, on servers started with API keys. Other servers \
         ignore the header."
            .to_owned(),
    );
    components.security_schemes.insert(BEARER.to_owned(), RefOr::T(SecurityScheme::Http(bearer)));
    spec.security = Some(vec![SecurityRequirement::default(), SecurityRequirement::new(BEARER, Vec::<String>::new())]);

    for (path, item) in spec.paths.paths.iter_mut() {
        let is_api = path.starts_with("/api/v1/") && path != SPEC_PATH;
        for operation in operations(item) {
            add_error_responses(operation, is_api);
        }
    }
    spec
}

/// Returns Swagger UI at [`DOCS_PATH`], reading the document from [`SPEC_PATH`]. Its files
/// are compiled in (utoipa-swagger-ui's `vendored` feature), so it works offline.
pub(crate) fn swagger_ui<S: Clone + Send + Sync + 'static>() -> Router<S> {
    SwaggerUi::new(DOCS_PATH).config(Config::new([SPEC_PATH])).into()
}

/// Returns the document as pretty-printed JSON with a final newline: the form of the
/// checked-in `docs/openapi.json`.
pub(crate) fn document_json() -> Result<String, serde_json::Error> {
    let mut text = serde_json::to_string_pretty(&crate::routes::document())?;
    text.push('\n');
    Ok(text)
}

#[utoipa::path(
    get, path = "/api/v1/openapi.json", tag = "service", operation_id = "openapi", security(()),
    responses((status = 200, description = "This document, OpenAPI 3.1.", body = Object)),
)]
pub(crate) async fn serve_document() -> Result<Response, ApiError> {
    // The document depends on the code only, so it is built once per process.
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    let text = match DOCUMENT.get() {
        Some(text) => text,
        None => {
            let text = document_json().map_err(|error| {
                tracing::error!(%error, "serialising the openapi document failed");
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Serialising the OpenAPI document failed.")
            })?;
            DOCUMENT.get_or_init(|| text)
        }
    };
    Ok(([(CONTENT_TYPE, "application/json")], text.as_str()).into_response())
}

fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.patch]
        .into_iter()
        .filter_map(Option::as_mut)
}

/// The shared error responses: status, name in `components.responses`, description.
const ERROR_RESPONSES: &[(&str, &str, &str)] = &[
    ("400", "BadRequest", "The body is not valid JSON, or the query string cannot be parsed."),
    (
        "401",
        "Unauthorized",
        "The server checks API keys, and the request has no `Authorization: Bearer` key or one that matches no key.",
    ),
    ("403", "Forbidden", "The body or a list filter names another user in `created_by_user_id`."),
    ("404", "NotFound", "No resource has this id, or it belongs to another user."),
    (
        "413",
        "PayloadTooLarge",
        "The body is larger than the server accepts (`aegis serve --max-body-bytes`, 1 MiB by default).",
    ),
    (
        "415",
        "UnsupportedMediaType",
        "The body has a content type other than JSON; send `Content-Type: application/json`.",
    ),
    (
        "422",
        "UnprocessableContent",
        "A field, path parameter, query parameter or header is invalid; `meta.errors` names it.",
    ),
    (
        "429",
        "TooManyRequests",
        "The API key sent more requests than the server's rate limit allows; `Retry-After` gives the seconds to wait.",
    ),
    ("500", "InternalServerError", "The store failed; the request can be retried."),
    (
        "503",
        "ServiceUnavailable",
        "The store is unavailable, or the server is shutting down and accepts no new runs; retry after the \
         `Retry-After` seconds when the header is present.",
    ),
];

/// Adds [`ERROR_RESPONSES`] to `components.responses`.
fn add_error_components(components: &mut Components) {
    for (_, name, description) in ERROR_RESPONSES {
        let schema = Ref::from_schema_name("ErrorEnvelope");
        let content = ContentBuilder::new().schema(Some(schema)).build();
        let response = ResponseBuilder::new().description(*description).content("application/json", content).build();
        components.responses.insert((*name).to_owned(), RefOr::T(response));
    }
}

/// Adds references to the error responses that the operation's inputs can cause, unless
/// the handler's attribute lists the status already with a more specific description.
fn add_error_responses(operation: &mut Operation, is_api: bool) {
    let (mut in_path, mut in_query, mut in_header) = (false, false, false);
    for parameter in operation.parameters.iter().flatten() {
        if let RefOr::T(parameter) = parameter {
            match parameter.parameter_in {
                ParameterIn::Path => in_path = true,
                ParameterIn::Query => in_query = true,
                ParameterIn::Header => in_header = true,
                _ => {}
            }
        }
    }
    let has_body = operation.request_body.is_some();

    for (status, name, _) in ERROR_RESPONSES {
        let applies = match *status {
            "400" => has_body || in_query,
            "404" => in_path,
            "403" => is_api && (has_body || in_query),
            "413" | "415" => has_body,
            "422" => has_body || in_path || in_query || in_header,
            _ => is_api,
        };
        if applies {
            let reference = RefOr::Ref(Ref::new(format!("#/components/responses/{name}")));
            operation.responses.responses.entry((*status).to_owned()).or_insert(reference);
        }
    }
}
