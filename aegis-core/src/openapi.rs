//! OpenAPI schemas (`utoipa::ToSchema`) for the types whose serde form a derive cannot see:
//! [`Timestamp`], which travels as an RFC 3339 string, and the string enums of
//! [`wire_enum!`](crate::wire_enum), which read values they do not know.
//!
//! The structs derive `ToSchema` where they are declared, behind the same `openapi` feature.
//! This module describes types only; serving the document is `aegis-http`'s job.

use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use crate::message::MessageKind;
use crate::resource::{RunStatus, TaskMessageType};
use crate::timestamp::Timestamp;

impl PartialSchema for Timestamp {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
            .description(Some("RFC 3339 time in UTC with microsecond precision and a `Z` suffix."))
            .examples(["2025-03-24T05:56:31.511798Z"])
            .into()
    }
}

impl ToSchema for Timestamp {}

/// Builds a string schema limited to `values`.
fn string_enum(description: &str, values: &[&str]) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
        .enum_values(Some(values.iter().copied()))
        .into()
}

impl PartialSchema for RunStatus {
    fn schema() -> RefOr<Schema> {
        string_enum(
            "Life-cycle state of a run: `created`, then `active`, then `complete`, `error` or `stopped`.",
            RunStatus::known_values(),
        )
    }
}

impl ToSchema for RunStatus {}

impl PartialSchema for TaskMessageType {
    fn schema() -> RefOr<Schema> {
        string_enum(
            "How `run_task.content` is read: `text` (a string, sent as is) or `dict` (an object, sent as \
             Python's `json.dumps` text of it).",
            TaskMessageType::known_values(),
        )
    }
}

impl ToSchema for TaskMessageType {}

impl PartialSchema for MessageKind {
    fn schema() -> RefOr<Schema> {
        // Not an enum: structured-output messages are named `StructuredMessage[<model>]`, and a
        // newer AgentChat may add types that are kept as they were spelled.
        let known = MessageKind::known_values().join(", ");
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(format!("AgentChat's message type name; known values: {known}.")))
            .examples(["TextMessage"])
            .into()
    }
}

impl ToSchema for MessageKind {}
