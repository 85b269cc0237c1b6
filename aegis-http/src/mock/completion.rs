//! The Chat Completions wire format as the mock speaks it: reading the prompt out of a
//! request body, and writing completions, stream chunks and error bodies.
//!
//! Token usage is a word count (whitespace-separated words of every message's text for the
//! prompt, of the answer for the completion). It is deterministic and close enough in size to
//! real token counts for budget and usage tests, but it is not a tokenizer.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

/// The content of one answer before it is put in either response format.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum Answer {
    /// Text in pieces. A streamed answer sends one chunk per piece, and a plain completion
    /// joins them.
    Text(Vec<String>),
    /// Tool calls as `(name, arguments)` pairs.
    ToolCalls(Vec<(String, String)>),
}

impl Answer {
    pub(super) fn completion_tokens(&self) -> u64 {
        match self {
            Answer::Text(pieces) => count_words(&pieces.concat()),
            Answer::ToolCalls(calls) => {
                calls.iter().map(|(name, arguments)| count_words(name) + count_words(arguments)).sum()
            }
        }
    }
}

/// The fields that every response to one request shares.
#[derive(Clone, Debug)]
pub(super) struct Completion {
    pub(super) sequence: u64,
    id: String,
    pub(super) created: u64,
    pub(super) model: String,
    pub(super) prompt_tokens: u64,
}

impl Completion {
    /// Starts the response to request number `sequence` with `prompt_tokens` words.
    pub(super) fn new(sequence: u64, model: String, prompt_tokens: u64) -> Completion {
        let created = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs());
        Completion { sequence, id: format!("chatcmpl-mock-{sequence}"), created, model, prompt_tokens }
    }

    /// Builds a `chat.completion` object.
    pub(super) fn body(&self, answer: &Answer) -> Value {
        let message = match answer {
            Answer::Text(pieces) => json!({"role": "assistant", "content": pieces.concat()}),
            Answer::ToolCalls(calls) => json!({
                "role": "assistant",
                "content": null,
                "tool_calls": self.tool_calls(calls, false),
            }),
        };

        json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason(answer)}],
            "usage": self.usage(answer),
        })
    }

    /// Builds the `data:` payloads of a streamed answer, ending with `[DONE]`.
    ///
    /// The first chunk carries the role, then come the content or tool call chunks and a chunk
    /// with the finish reason. When `include_usage` is true every chunk has `"usage": null`
    /// and a last chunk with no choices carries the usage, as OpenAI's stream does.
    pub(super) fn stream_payloads(&self, answer: &Answer, include_usage: bool) -> Vec<String> {
        let mut deltas = vec![(json!({"role": "assistant", "content": ""}), Value::Null)];
        match answer {
            Answer::Text(pieces) => {
                deltas.extend(pieces.iter().map(|piece| (json!({"content": piece}), Value::Null)));
            }
            Answer::ToolCalls(calls) => {
                deltas.push((json!({"tool_calls": self.tool_calls(calls, true)}), Value::Null));
            }
        }
        deltas.push((json!({}), Value::String(finish_reason(answer).to_owned())));

        let mut payloads: Vec<String> = deltas
            .into_iter()
            .map(|(delta, finish)| {
                let choices = json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
                self.chunk(choices, include_usage.then_some(Value::Null)).to_string()
            })
            .collect();
        if include_usage {
            payloads.push(self.chunk(json!([]), Some(self.usage(answer))).to_string());
        }
        payloads.push("[DONE]".to_owned());
        payloads
    }

    fn chunk(&self, choices: Value, usage: Option<Value>) -> Value {
        let mut chunk = Map::new();
        chunk.insert("id".to_owned(), json!(self.id));
        chunk.insert("object".to_owned(), json!("chat.completion.chunk"));
        chunk.insert("created".to_owned(), json!(self.created));
        chunk.insert("model".to_owned(), json!(self.model));
        chunk.insert("choices".to_owned(), choices);
        if let Some(usage) = usage {
            chunk.insert("usage".to_owned(), usage);
        }
        Value::Object(chunk)
    }

    /// Builds the `tool_calls` array. Stream deltas also carry each call's `index`.
    fn tool_calls(&self, calls: &[(String, String)], with_index: bool) -> Value {
        let calls: Vec<Value> = calls
            .iter()
            .enumerate()
            .map(|(index, (name, arguments))| {
                let mut call = json!({
                    "id": format!("call_mock_{}_{index}", self.sequence),
                    "type": "function",
                    "function": {"name": name, "arguments": arguments},
                });
                if with_index && let Value::Object(map) = &mut call {
                    map.insert("index".to_owned(), json!(index));
                }
                call
            })
            .collect();
        Value::Array(calls)
    }

    fn usage(&self, answer: &Answer) -> Value {
        let completion_tokens = answer.completion_tokens();
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
        })
    }
}

fn finish_reason(answer: &Answer) -> &'static str {
    match answer {
        Answer::Text(_) => "stop",
        Answer::ToolCalls(_) => "tool_calls",
    }
}

/// Returns the text of a message's `content`: a string as it is, or the `text` of every
/// content part joined by newlines. Image parts and missing content give no text.
pub(super) fn message_text(message: &Value) -> String {
    match message.get("content") {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => {
            let texts: Vec<&str> = parts.iter().filter_map(|part| part.get("text").and_then(Value::as_str)).collect();
            texts.join("\n")
        }
        _ => String::new(),
    }
}

/// Returns the text of the last message with role `user`, or an empty string when there is
/// none.
pub(super) fn last_user_text(messages: &[Value]) -> String {
    messages
        .iter()
        .rev()
        .find(|message| message.get("role").and_then(Value::as_str) == Some("user"))
        .map(message_text)
        .unwrap_or_default()
}

/// Counts the prompt's tokens as the words of every message's text.
pub(super) fn prompt_tokens(messages: &[Value]) -> u64 {
    messages.iter().map(|message| count_words(&message_text(message))).sum()
}

pub(super) fn count_words(text: &str) -> u64 {
    text.split_whitespace().map(|_| 1).sum()
}

/// Builds an OpenAI-style error body.
pub(super) fn error_body(message: &str, error_type: &str, code: Option<&str>) -> Value {
    json!({"error": {"message": message, "type": error_type, "param": null, "code": code}})
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a panic is how a test reports failure")]
mod tests {
    use super::*;

    #[test]
    fn message_text_joins_text_parts() {
        let message = json!({"role": "user", "content": [
            {"type": "text", "text": "first"},
            {"type": "image_url", "image_url": {"url": "data:"}},
            {"type": "text", "text": "second"},
        ]});
        assert_eq!(message_text(&message), "first\nsecond");
        assert_eq!(message_text(&json!({"role": "assistant", "content": null})), "");
    }

    #[test]
    fn usage_counts_words() {
        let messages = vec![
            json!({"role": "system", "content": "be brief"}),
            json!({"role": "user", "content": "  what is  two plus two "}),
        ];
        let completion = Completion::new(1, "m".to_owned(), prompt_tokens(&messages));
        let body = completion.body(&Answer::Text(vec!["four".to_owned(), " it is".to_owned()]));
        assert_eq!(body["usage"], json!({"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}));
        assert_eq!(body["choices"][0]["message"]["content"], "four it is");
    }

    #[test]
    fn stream_tool_call_delta_has_index() {
        let completion = Completion::new(3, "m".to_owned(), 0);
        let payloads = completion.stream_payloads(&Answer::ToolCalls(vec![("f".to_owned(), "{}".to_owned())]), false);
        let call: Value = serde_json::from_str(&payloads[1]).unwrap();
        assert_eq!(call["choices"][0]["delta"]["tool_calls"][0]["index"], 0);
        assert_eq!(call["choices"][0]["delta"]["tool_calls"][0]["function"]["name"], "f");
        let last_chunk: Value = serde_json::from_str(&payloads[2]).unwrap();
        assert_eq!(last_chunk["choices"][0]["finish_reason"], "tool_calls");
        assert!(last_chunk.get("usage").is_none());
        assert_eq!(payloads[3], "[DONE]");
    }
}
