//! The Chat Completions wire format: AutoGen messages out, completions and stream chunks in.
//!
//! Decoding is deliberately tolerant, because OpenAI-compatible servers differ in details and
//! OpenAI itself adds fields: every field is optional, unknown fields are ignored, `content:
//! null` is empty text, `tool_calls: []` is no call, an unknown or empty `finish_reason` is
//! `unknown`, and usage keys beyond the two counted ones are skipped. Only a body that has no
//! choice with a message is rejected, as `APIResponseValidationError`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::message::RequestUsage;
use crate::model::{AssistantContent, ChunkSink, CreateContent, CreateResult, FinishReason, FunctionCall, LlmMessage};

/// Converts one AutoGen LLM message into Chat Completions messages.
pub(crate) fn to_openai_messages(message: &LlmMessage) -> Vec<Value> {
    match message {
        LlmMessage::SystemMessage { content } => vec![json!({"role": "system", "content": content})],
        LlmMessage::UserMessage { content, source } => {
            let mut value = json!({"role": "user", "content": content});
            add_name(&mut value, source);
            vec![value]
        }
        LlmMessage::AssistantMessage { content, source, .. } => {
            let mut value = match content {
                AssistantContent::Text(text) => json!({"role": "assistant", "content": text}),
                AssistantContent::FunctionCalls(calls) => {
                    let calls: Vec<Value> = calls
                        .iter()
                        .map(|call| {
                            json!({"id": call.id, "type": "function",
                                   "function": {"name": call.name, "arguments": call.arguments}})
                        })
                        .collect();
                    json!({"role": "assistant", "content": Value::Null, "tool_calls": calls})
                }
            };
            add_name(&mut value, source);
            vec![value]
        }
        LlmMessage::FunctionExecutionResultMessage { content } => content
            .iter()
            .map(|result| json!({"role": "tool", "content": result.content, "tool_call_id": result.call_id}))
            .collect(),
    }
}

/// Adds `name` when the source is a valid OpenAI participant name (`^[a-zA-Z0-9_-]{1,64}$`);
/// the API rejects the whole request otherwise.
fn add_name(message: &mut Value, source: &str) {
    let valid = !source.is_empty()
        && source.len() <= 64
        && source.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if valid && let Value::Object(map) = message {
        map.insert("name".to_owned(), Value::String(source.to_owned()));
    }
}

/// Maps a provider's finish reason to AutoGen's. Calls win over an unknown or missing reason.
pub(crate) fn finish_reason(reason: Option<&str>, has_calls: bool) -> FinishReason {
    match reason {
        Some("stop") => FinishReason::Stop,
        Some("length") => FinishReason::Length,
        Some("tool_calls" | "function_call") => FinishReason::FunctionCalls,
        Some("content_filter") => FinishReason::ContentFilter,
        _ if has_calls => FinishReason::FunctionCalls,
        _ => FinishReason::Unknown,
    }
}

#[derive(Deserialize)]
struct CompletionBody {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<UsageBody>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<ChoiceMessage>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct ChoiceMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallBody>>,
    #[serde(default)]
    reasoning_content: Option<String>,
}

#[derive(Deserialize)]
struct ToolCallBody {
    #[serde(default)]
    id: String,
    function: ToolFunctionBody,
}

#[derive(Deserialize)]
struct ToolFunctionBody {
    name: String,
    #[serde(default)]
    arguments: String,
}

#[derive(Clone, Copy, Deserialize)]
struct UsageBody {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
}

impl From<UsageBody> for RequestUsage {
    fn from(usage: UsageBody) -> RequestUsage {
        RequestUsage {
            prompt_tokens: usage.prompt_tokens.unwrap_or(0),
            completion_tokens: usage.completion_tokens.unwrap_or(0),
        }
    }
}

/// Parses a 200 response body into a result, or explains why it is not a completion.
pub(crate) fn parse_completion(text: &str) -> Result<CreateResult, String> {
    let body: CompletionBody = serde_json::from_str(text)
        .map_err(|error| format!("provider returned a body that is not a chat completion: {error}"))?;
    let Some(choice) = body.choices.into_iter().next() else {
        return Err("provider returned a chat completion without choices".to_owned());
    };
    let message = choice.message.ok_or("provider returned a choice without a message")?;

    let calls: Vec<FunctionCall> = message
        .tool_calls
        .unwrap_or_default()
        .into_iter()
        .map(|call| FunctionCall { id: call.id, name: call.function.name, arguments: call.function.arguments })
        .collect();
    let finish_reason = finish_reason(choice.finish_reason.as_deref(), !calls.is_empty());
    let content = if calls.is_empty() {
        CreateContent::Text(message.content.unwrap_or_default())
    } else {
        CreateContent::FunctionCalls(calls)
    };
    let usage = body.usage.map(RequestUsage::from).unwrap_or_default();

    Ok(CreateResult { finish_reason, content, usage, cached: false, thought: message.reasoning_content })
}

#[derive(Deserialize)]
struct ChunkBody {
    #[serde(default)]
    choices: Option<Vec<ChunkChoice>>,
    #[serde(default)]
    usage: Option<UsageBody>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    delta: Option<Delta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<ToolCallDelta>>,
    #[serde(default)]
    reasoning_content: Option<String>,
}

#[derive(Deserialize)]
struct ToolCallDelta {
    #[serde(default)]
    index: Option<u64>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    arguments: Option<String>,
}

/// What one `data:` payload of a stream turned out to be.
pub(crate) enum ChunkOutcome {
    /// A chunk was applied (possibly one with no choices or no delta).
    Applied,
    /// The `[DONE]` marker.
    Done,
    /// An `{"error": ...}` payload.
    Error(Value),
}

/// Builds a completion from `chat.completion.chunk` payloads, passing text to a sink as it
/// arrives.
#[derive(Default)]
pub(crate) struct ChunkAssembler {
    text: String,
    thought: String,
    calls: BTreeMap<u64, FunctionCall>,
    finish_reason: Option<String>,
    usage: Option<RequestUsage>,
}

impl ChunkAssembler {
    /// Applies one `data:` payload. Returns an error message when it is not a chunk.
    pub(crate) fn apply(&mut self, data: &str, sink: &mut dyn ChunkSink) -> Result<ChunkOutcome, String> {
        if data.trim() == "[DONE]" {
            return Ok(ChunkOutcome::Done);
        }
        let chunk: ChunkBody = serde_json::from_str(data)
            .map_err(|error| format!("provider sent a stream event that is not a chunk: {error}"))?;
        if let Some(error) = chunk.error.filter(|error| !error.is_null()) {
            return Ok(ChunkOutcome::Error(error));
        }
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage.into());
        }

        // Only the first choice is read, as `create` does; `n > 1` is not supported.
        let Some(choice) = chunk.choices.and_then(|choices| choices.into_iter().next()) else {
            return Ok(ChunkOutcome::Applied);
        };
        if let Some(reason) = choice.finish_reason.filter(|reason| !reason.is_empty()) {
            self.finish_reason = Some(reason);
        }
        let Some(delta) = choice.delta else {
            return Ok(ChunkOutcome::Applied);
        };
        if let Some(text) = delta.content.filter(|text| !text.is_empty()) {
            sink.on_chunk(&text);
            self.text.push_str(&text);
        }
        if let Some(thought) = delta.reasoning_content {
            self.thought.push_str(&thought);
        }
        for call in delta.tool_calls.unwrap_or_default() {
            self.apply_call(call);
        }
        Ok(ChunkOutcome::Applied)
    }

    /// Merges a tool call fragment: the first fragment of an index carries the id and name,
    /// later ones append argument text.
    fn apply_call(&mut self, call: ToolCallDelta) {
        let index = call.index.unwrap_or(self.calls.len() as u64);
        let entry = self.calls.entry(index).or_insert_with(|| FunctionCall {
            id: String::new(),
            arguments: String::new(),
            name: String::new(),
        });
        if let Some(id) = call.id.filter(|id| !id.is_empty()) {
            entry.id = id;
        }
        let Some(function) = call.function else {
            return;
        };
        if let Some(name) = function.name.filter(|name| !name.is_empty()) {
            entry.name = name;
        }
        if let Some(arguments) = function.arguments {
            entry.arguments.push_str(&arguments);
        }
    }

    /// Returns whether a finish reason arrived, which means the answer is complete even if
    /// the stream then ends without `[DONE]`.
    pub(crate) fn has_finished(&self) -> bool {
        self.finish_reason.is_some()
    }

    /// Returns the assembled completion.
    pub(crate) fn finish(self) -> CreateResult {
        let calls: Vec<FunctionCall> = self.calls.into_values().collect();
        let finish_reason = finish_reason(self.finish_reason.as_deref(), !calls.is_empty());
        let content =
            if calls.is_empty() { CreateContent::Text(self.text) } else { CreateContent::FunctionCalls(calls) };
        let thought = Some(self.thought).filter(|thought| !thought.is_empty());
        CreateResult { finish_reason, content, usage: self.usage.unwrap_or_default(), cached: false, thought }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pieces(Vec<String>);

    impl ChunkSink for Pieces {
        fn on_chunk(&mut self, text: &str) {
            self.0.push(text.to_owned());
        }
    }

    #[test]
    fn completion_tolerates_nulls_and_unknown_fields() {
        let text = r#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":null,"tool_calls":[]},
            "finish_reason":"weird"}],"usage":{"prompt_tokens":3,"completion_tokens":1,"extra":{"a":1}},"service_tier":"new"}"#;
        let result = parse_completion(text).unwrap();
        assert_eq!(result.content, CreateContent::Text(String::new()));
        assert_eq!(result.finish_reason, FinishReason::Unknown);
        assert_eq!(result.usage, RequestUsage { prompt_tokens: 3, completion_tokens: 1 });
    }

    #[test]
    fn completion_without_choices_is_invalid() {
        assert!(parse_completion(r#"{"choices":[]}"#).is_err());
        assert!(parse_completion("<html>").is_err());
        assert!(parse_completion(r#"{"choices":[{"finish_reason":"stop"}]}"#).is_err());
    }

    #[test]
    fn assembler_merges_tool_call_fragments() {
        let mut assembler = ChunkAssembler::default();
        let mut sink = Pieces(Vec::new());
        let payloads = [
            r#"{"choices":[{"delta":{"role":"assistant","tool_calls":[{"index":0,"id":"c1","function":{"name":"f","arguments":""}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":"}}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]},"finish_reason":"tool_calls"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2,"total_tokens":6}}"#,
        ];
        for payload in payloads {
            assert!(matches!(assembler.apply(payload, &mut sink).unwrap(), ChunkOutcome::Applied));
        }
        let result = assembler.finish();
        let expected = FunctionCall { id: "c1".to_owned(), arguments: r#"{"a":1}"#.to_owned(), name: "f".to_owned() };
        assert_eq!(result.content, CreateContent::FunctionCalls(vec![expected]));
        assert_eq!(result.finish_reason, FinishReason::FunctionCalls);
        assert_eq!(result.usage, RequestUsage { prompt_tokens: 4, completion_tokens: 2 });
        assert!(sink.0.is_empty());
    }
}
