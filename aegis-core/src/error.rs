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

/// An example UUID for fixes, in the version-7 form the server issues.
const EXAMPLE_UUID: &str = "0190d7a0-6b6c-7a4e-9f3c-2f1d1c1b0a09";

/// Rewords serde's message in JSON terms as `expected X, got Y` and derives a fix from what
/// was expected, so every shape error shows the client what to send. Returns the message and
/// the fix.
pub fn readable_serde_message(message: &str) -> (String, String) {
    let message = plain_serde_message(message);
    let message = message.as_str();
    if message.starts_with("UUID parsing failed")
        || message.contains("expected a UUID")
        || message.contains("expected UUID")
    {
        return (
            format!("expected a UUID such as {EXAMPLE_UUID}"),
            format!("send a UUID such as {EXAMPLE_UUID}, the id returned when the resource was created"),
        );
    }
    let (message, expected) =
        match message.strip_prefix("invalid type: ").and_then(|rest| rest.rsplit_once(", expected ")) {
            Some((got, expected)) => (format!("expected {expected}, got {got}"), expected.to_owned()),
            None => {
                let expected = message.rsplit_once(", expected ").map_or("", |(_, expected)| expected);
                (message.to_owned(), expected.to_owned())
            }
        };
    let fix = if expected.starts_with("one of ") {
        format!("send {expected}")
    } else {
        match expected.as_str() {
            "a string" => "send a string, in double quotes".to_owned(),
            "a boolean" => "send true or false, without quotes".to_owned(),
            "an object" => "send a JSON object".to_owned(),
            "a list" => "send a JSON array".to_owned(),
            "an integer" => "send a whole number".to_owned(),
            "a non-negative integer" => "send a whole number of 0 or more".to_owned(),
            "a number" => "send a number".to_owned(),
            "" => "send the value the API reference documents for this field".to_owned(),
            other => format!("send {other}"),
        }
    };
    (message, fix)
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
        [first, second] => {
            format!("invalid field {}: {} (and 1 more problem, in {})", first.field, first.message, second.field)
        }
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
    fn summary_counts_problems() {
        let error = |field: &str| FieldError::new(field, "invalid_value", "is wrong");
        assert_eq!(summarise(&[error("a")]), "invalid field a: is wrong");
        assert_eq!(summarise(&[error("a"), error("b")]), "invalid field a: is wrong (and 1 more problem, in b)");
        assert_eq!(summarise(&[error("a"), error("b"), error("c")]), "invalid field a: is wrong (and 2 more problems)");
    }

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
    fn shape_errors_read_plainly_with_a_fix() {
        for (message, expected_message, fix_part) in [
            ("invalid type: integer `5`, expected a string", "expected a string, got integer `5`", "send a string"),
            (
                "invalid type: string \"yes\", expected a boolean",
                "expected a boolean, got string \"yes\"",
                "true or false",
            ),
            ("invalid type: sequence, expected an object", "expected an object, got sequence", "JSON object"),
            ("UUID parsing failed: invalid character", "expected a UUID such as", "send a UUID"),
            ("unknown variant `x`, expected one of `a`, `b`", "unknown variant `x`", "send one of `a`, `b`"),
            ("something else", "something else", "API reference"),
        ] {
            let (readable, fix) = readable_serde_message(message);
            assert!(readable.starts_with(expected_message), "{message}: {readable}");
            assert!(fix.contains(fix_part), "{message}: {fix}");
        }
    }

    #[test]
    fn missing_field_is_extracted() {
        assert_eq!(missing_field("missing field `name`"), Some("name"));
        assert_eq!(missing_field("unknown variant"), None);
    }
}
