//! Structured output: replies that must be JSON following a schema, published as
//! `StructuredMessage[<name>]`.
//!
//! AgentChat builds a pydantic model from the `StructuredMessageFactory`'s JSON schema and
//! validates the reply with `model_validate_json`. Aegis checks the reply against the schema's
//! top-level `properties`, `required` and `type`s, reports failures with pydantic's first line
//! (`1 validation error for Grade`), and orders the fields as the schema does, as pydantic's
//! dump would.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::component::ComponentModel;
use crate::message::{AgentMessage, MessageKind};
use crate::model::{JsonOutput, JsonSchemaFormat};
use crate::registry::{BuildResult, parse_config};
use crate::run::RunError;

/// The `provider` string AutoGen dumps for the factory.
pub const PROVIDER: &str = "autogen_agentchat.messages.StructuredMessageFactory";

/// The content model of an agent's structured replies.
#[derive(Clone, Debug, PartialEq)]
pub struct StructuredOutput {
    name: String,
    schema: Value,
    format_string: Option<String>,
}

impl StructuredOutput {
    /// Creates the output model `name` with a JSON `schema`.
    pub fn new(name: impl Into<String>, schema: Value, format_string: Option<String>) -> StructuredOutput {
        StructuredOutput { name: name.into(), schema, format_string }
    }

    /// Builds the output model from a `StructuredMessageFactory` component.
    pub fn from_component(component: &ComponentModel) -> BuildResult<StructuredOutput> {
        #[derive(Deserialize)]
        struct Config {
            json_schema: Value,
            #[serde(default)]
            content_model_name: Option<String>,
            #[serde(default)]
            format_string: Option<String>,
        }
        let config: Config = parse_config(component)?;
        let title = config.json_schema.get("title").and_then(Value::as_str).map(str::to_owned);
        let name = config.content_model_name.or(title).unwrap_or_else(|| "StructuredContent".to_owned());
        Ok(StructuredOutput::new(name, config.json_schema, config.format_string))
    }

    /// Returns the reply format to request from the model.
    pub fn json_output(&self) -> JsonOutput {
        JsonOutput::JsonSchema(JsonSchemaFormat { name: self.name.clone(), schema: self.schema.clone(), strict: false })
    }

    /// Validates a reply and builds the `StructuredMessage[<name>]` to publish.
    pub fn message(&self, source: &str, reply: &str) -> Result<AgentMessage, RunError> {
        let content = self.validate(reply)?;
        let mut message = AgentMessage::new(MessageKind::structured(&self.name), source, Value::Object(content));
        if let Some(format_string) = &self.format_string {
            message.extra.insert("format_string".to_owned(), Value::String(format_string.clone()));
        }
        Ok(message)
    }

    fn validate(&self, reply: &str) -> Result<Map<String, Value>, RunError> {
        let parsed: Value =
            serde_json::from_str(reply).map_err(|error| self.invalid(1, &format!("Invalid JSON: {error}")))?;
        let Value::Object(mut object) = parsed else {
            return Err(self.invalid(1, "Input should be an object"));
        };

        let properties = self.schema.get("properties").and_then(Value::as_object).cloned().unwrap_or_default();
        let required: Vec<&str> = self
            .schema
            .get("required")
            .and_then(Value::as_array)
            .map_or_else(Vec::new, |list| list.iter().filter_map(Value::as_str).collect());
        let mut problems = Vec::new();
        let mut content = Map::new();
        for (field, field_schema) in &properties {
            match object.remove(field) {
                Some(value) if accepts(field_schema, &value) => {
                    content.insert(field.clone(), value);
                }
                Some(value) => problems.push(format!("{field}: input {value} does not match the schema")),
                None if required.contains(&field.as_str()) => problems.push(format!("{field}: field required")),
                None => {
                    content.insert(field.clone(), field_schema.get("default").cloned().unwrap_or(Value::Null));
                }
            }
        }
        if problems.is_empty() { Ok(content) } else { Err(self.invalid(problems.len(), &problems.join("; "))) }
    }

    fn invalid(&self, count: usize, detail: &str) -> RunError {
        let plural = if count == 1 { "" } else { "s" };
        tracing::warn!(model = %self.name, detail, "structured reply failed validation");
        RunError::new("ValidationError", format!("{count} validation error{plural} for {}", self.name))
    }
}

/// Returns whether `value` has a type the property schema allows. Schemas without `type`
/// (or with `anyOf`/`oneOf` of typed schemas) are checked as far as they say.
fn accepts(schema: &Value, value: &Value) -> bool {
    if let Some(options) = schema.get("anyOf").or_else(|| schema.get("oneOf")).and_then(Value::as_array) {
        return options.iter().any(|option| accepts(option, value));
    }
    match schema.get("type") {
        Some(Value::String(kind)) => has_type(kind, value),
        Some(Value::Array(kinds)) => kinds.iter().filter_map(Value::as_str).any(|kind| has_type(kind, value)),
        _ => true,
    }
}

fn has_type(kind: &str, value: &Value) -> bool {
    match kind {
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        // pydantic accepts a float without a fractional part as an integer.
        "integer" => value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|float| float.fract() == 0.0),
        "number" => value.is_number(),
        "array" => value.is_array(),
        "object" => value.is_object(),
        "null" => value.is_null(),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn grade() -> StructuredOutput {
        let schema = json!({
            "properties": {"reasoning": {"type": "string"}, "satisfactory": {"type": "boolean"}, "score": {"type": "integer"}},
            "required": ["reasoning", "satisfactory", "score"],
            "title": "Grade",
            "type": "object"
        });
        StructuredOutput::new("Grade", schema, None)
    }

    #[test]
    fn valid_reply_keeps_schema_order() {
        let message =
            grade().message("grader", r#"{"score": 10, "satisfactory": true, "reasoning": "ok", "extra": 1}"#).unwrap();
        assert_eq!(message.kind.as_str(), "StructuredMessage[Grade]");
        let keys: Vec<&String> = message.content.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["reasoning", "satisfactory", "score"]);
    }

    #[test]
    fn invalid_json_is_one_error() {
        let error = grade().message("grader", "Looks fine.").unwrap_err();
        assert_eq!(error.error_message, "ValidationError: 1 validation error for Grade");
    }

    #[test]
    fn missing_and_mistyped_fields_are_counted() {
        let error = grade().message("grader", r#"{"reasoning": 3}"#).unwrap_err();
        assert_eq!(error.error_message, "ValidationError: 3 validation errors for Grade");
    }
}
