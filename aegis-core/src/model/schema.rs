//! Structured output: reading a component's `response_format`, and checking a reply against
//! the JSON schema it asked for.
//!
//! A provider that supports `json_schema` usually enforces it, but OpenAI-compatible servers
//! vary and `strict: false` enforces nothing, so Aegis checks the text itself with the
//! `jsonschema` crate. A reply that is not JSON, or JSON that fails the schema, is a
//! `JSONSchemaValidationError`, as in LiteLLM. Tool calls are not checked, because they reply
//! with calls rather than the formatted text.

use serde_json::Value;

use crate::model::{CreateContent, CreateResult, JsonOutput, JsonSchemaFormat, ModelError, ModelErrorKind};

/// Parses a component's `response_format`: `{"type": "text"}`, `{"type": "json_object"}` or
/// `{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}`. The bare
/// `{"type": "json_object"}` is a leniency over AutoGen's config, because it is what users
/// write for OpenAI's JSON mode.
pub(crate) fn parse_response_format(value: &Value) -> Result<Option<JsonOutput>, String> {
    let kind = value.get("type").and_then(Value::as_str);
    match kind {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(JsonOutput::JsonObject)),
        Some("json_schema") => {
            let Some(spec) = value.get("json_schema") else {
                return Err("response_format of type json_schema needs a `json_schema` object".to_owned());
            };
            let format: JsonSchemaFormat = serde_json::from_value(spec.clone())
                .map_err(|error| format!("response_format.json_schema is invalid: {error}"))?;
            check_schema(&format.schema)?;
            Ok(Some(JsonOutput::JsonSchema(format)))
        }
        _ => Err(format!(
            "response_format must have type `text`, `json_object` or `json_schema`, got {}",
            value.get("type").map_or_else(|| "no type".to_owned(), Value::to_string)
        )),
    }
}

/// Checks that `schema` is a valid JSON schema.
pub(crate) fn check_schema(schema: &Value) -> Result<(), String> {
    jsonschema::validator_for(schema).map(|_| ()).map_err(|error| format!("the JSON schema is invalid: {error}"))
}

/// Checks a text reply against the schema of `format`, if the call asked for one, and
/// returns the error when it fails.
pub(crate) fn output_error(
    result: &CreateResult,
    format: Option<&JsonOutput>,
    provider: &str,
    model: &str,
) -> Option<ModelError> {
    let Some(JsonOutput::JsonSchema(format)) = format else {
        return None;
    };
    let CreateContent::Text(text) = &result.content else {
        return None;
    };
    let fail = |message: String| ModelError::new(ModelErrorKind::JSONSchemaValidationError, message, provider, model);

    let instance: Value = match serde_json::from_str(text) {
        Ok(instance) => instance,
        Err(error) => {
            return Some(fail(format!("model output is not valid JSON for schema `{}`: {error}", format.name)));
        }
    };
    let validator = match jsonschema::validator_for(&format.schema) {
        Ok(validator) => validator,
        Err(error) => return Some(fail(format!("the JSON schema `{}` is invalid: {error}", format.name))),
    };
    let error = validator.validate(&instance).err()?;
    let path = error.instance_path().to_string();
    let place = if path.is_empty() { "the top level".to_owned() } else { path };
    Some(fail(format!("model output does not match schema `{}` at {place}: {error}", format.name)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::model::FinishReason;

    fn text_result(text: &str) -> CreateResult {
        CreateResult {
            finish_reason: FinishReason::Stop,
            content: CreateContent::Text(text.to_owned()),
            usage: Default::default(),
            cached: false,
            thought: None,
        }
    }

    #[test]
    fn bare_json_object_is_accepted() {
        assert_eq!(parse_response_format(&json!({"type": "json_object"})), Ok(Some(JsonOutput::JsonObject)));
        assert_eq!(parse_response_format(&json!({"type": "text"})), Ok(None));
        assert!(parse_response_format(&json!({"type": "xml"})).is_err());
        assert!(parse_response_format(&json!({"type": "json_schema"})).is_err());
        let invalid = json!({"type": "json_schema", "json_schema": {"name": "G", "schema": {"type": 5}}});
        assert!(parse_response_format(&invalid).is_err());
    }

    #[test]
    fn output_failing_schema_is_rejected() {
        let spec = json!({"type": "json_schema", "json_schema": {"name": "Grade", "schema": {
            "type": "object", "properties": {"score": {"type": "integer"}}, "required": ["score"]}}});
        let format = parse_response_format(&spec).unwrap();

        assert!(output_error(&text_result(r#"{"score": 3}"#), format.as_ref(), "openai", "m").is_none());
        let wrong = output_error(&text_result(r#"{"score": "high"}"#), format.as_ref(), "openai", "m").unwrap();
        assert_eq!(wrong.kind, ModelErrorKind::JSONSchemaValidationError);
        assert!(wrong.message.contains("/score"), "{}", wrong.message);
        let not_json = output_error(&text_result("score: 3"), format.as_ref(), "openai", "m").unwrap();
        assert_eq!(not_json.kind, ModelErrorKind::JSONSchemaValidationError);
    }
}
