//! Errors of the Aegis service API: what a caller of [`Aegis`](crate::Aegis) can get back.
//!
//! Validation problems are collected, not returned one at a time: a user fixing a team JSON
//! wants every problem in one round trip. Each [`FieldError`] names the field as a JSON path
//! (`component.config.participants[1].config.model_client.provider`) and, where it can, the fix.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::storage::StorageError;

/// One problem with one field of a request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldError {
    /// JSON path of the field, such as `run_task.content`.
    pub field: String,
    /// Stable machine-readable code, such as `missing`, `invalid_type` or `unknown_provider`.
    pub code: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it, when that is not obvious from the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl FieldError {
    /// Creates a problem report for `field`.
    pub fn new(field: impl Into<String>, code: impl Into<String>, message: impl Into<String>) -> FieldError {
        FieldError { field: field.into(), code: code.into(), message: message.into(), fix: None }
    }

    /// Adds how to fix the problem.
    pub fn with_fix(mut self, fix: impl Into<String>) -> FieldError {
        self.fix = Some(fix.into());
        self
    }

    /// Prefixes the field path with `parent` (`config` + `name` gives `config.name`).
    pub fn under(mut self, parent: &str) -> FieldError {
        self.field = join_path(parent, &self.field);
        self
    }
}

/// Joins JSON path segments; an index segment (`[1]`) attaches without a dot.
pub fn join_path(parent: &str, child: &str) -> String {
    match (parent.is_empty(), child.is_empty()) {
        (true, _) => child.to_owned(),
        (_, true) => parent.to_owned(),
        _ if child.starts_with('[') => format!("{parent}{child}"),
        _ => format!("{parent}.{child}"),
    }
}

/// Splits serde's "missing field `x`" message into the field name, so the problem can name the
/// field itself rather than the object that lacks it.
pub fn missing_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("missing field `")?;
    rest.split('`').next()
}

/// Rewords a serde message for API users: JSON's type names instead of Rust's (`expected
/// u64` becomes `expected a non-negative integer`, `expected struct ComponentModel` becomes
/// `expected an object`).
pub fn plain_serde_message(message: &str) -> String {
    let mut text = message.to_owned();
    for (rust, json) in [
        ("expected u8", "expected a non-negative integer"),
        ("expected u16", "expected a non-negative integer"),
        ("expected u32", "expected a non-negative integer"),
        ("expected u64", "expected a non-negative integer"),
        ("expected usize", "expected a non-negative integer"),
        ("expected i8", "expected an integer"),
        ("expected i16", "expected an integer"),
        ("expected i32", "expected an integer"),
        ("expected i64", "expected an integer"),
        ("expected isize", "expected an integer"),
        ("expected f32", "expected a number"),
        ("expected f64", "expected a number"),
        ("expected a map", "expected an object"),
        ("expected a sequence", "expected a list"),
        ("expected a borrowed string", "expected a string"),
    ] {
        text = text.replace(rust, json);
    }
    if let Some(start) = text.find("expected struct ") {
        let name_end = text[start + 16..]
            .find(|c: char| !c.is_alphanumeric() && c != '_')
            .map_or(text.len(), |end| start + 16 + end);
        text.replace_range(start..name_end, "expected an object");
    }
    text
}

/// The kind of resource an error is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResourceKind {
    /// A task.
    Task,
    /// A team.
    Team,
    /// A session.
    Session,
    /// A run.
    Run,
}

impl fmt::Display for ResourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ResourceKind::Task => "task",
            ResourceKind::Team => "team",
            ResourceKind::Session => "session",
            ResourceKind::Run => "run",
        })
    }
}

/// A failed service call.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A resource the request names does not exist.
    #[error("{kind} {id} not found")]
    NotFound {
        /// What kind of resource.
        kind: ResourceKind,
        /// The id that was looked up.
        id: Uuid,
        /// The request field that named it, such as `session_id`.
        field: String,
    },
    /// The request is well-formed JSON but its content is invalid.
    #[error("{}", summarise(.0))]
    Invalid(Vec<FieldError>),
    /// The request conflicts with the state of the resource, such as a delete of a task
    /// that sessions still use.
    #[error("{message}")]
    Conflict {
        /// What conflicts and how to resolve it.
        message: String,
        /// The problem, with the ids involved and the fix.
        errors: Vec<FieldError>,
    },
    /// The store failed.
    #[error("storage failed: {0}")]
    Storage(#[from] StorageError),
    /// The service does not take the request now (it is shutting down); retry later,
    /// possibly against another instance.
    #[error("{message}")]
    Unavailable {
        /// What is unavailable and why.
        message: String,
        /// Seconds after which a retry may succeed.
        retry_after_s: u64,
    },
}

fn summarise(errors: &[FieldError]) -> String {
    match errors {
        [] => "invalid request".to_owned(),
        [only] => format!("invalid field {}: {}", only.field, only.message),
        [first, rest @ ..] => {
            format!("invalid field {}: {} (and {} more problems)", first.field, first.message, rest.len())
        }
    }
}

impl Error {
    /// Creates an error for one invalid field.
    pub fn invalid(field: impl Into<String>, code: impl Into<String>, message: impl Into<String>) -> Error {
        Error::Invalid(vec![FieldError::new(field, code, message)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_types_become_json_types() {
        assert_eq!(
            plain_serde_message("invalid type: string \"x\", expected u64"),
            "invalid type: string \"x\", expected a non-negative integer"
        );
        assert_eq!(
            plain_serde_message("invalid type: integer `5`, expected struct ComponentModel"),
            "invalid type: integer `5`, expected an object"
        );
    }

    #[test]
    fn missing_field_is_extracted() {
        assert_eq!(missing_field("missing field `name`"), Some("name"));
        assert_eq!(missing_field("unknown variant"), None);
    }
}
