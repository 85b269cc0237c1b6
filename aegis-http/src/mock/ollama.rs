//! Ollama's native `/api/chat` as the mock speaks it: one JSON object, or newline-delimited
//! JSON objects when streaming, the last with `"done": true` and the token counts
//! (`prompt_eval_count`, `eval_count`).

use serde_json::{Value, json};

use super::completion::{Answer, Completion};

/// Builds a non-streamed reply.
pub(super) fn message(completion: &Completion, answer: &Answer) -> Value {
    let message = match answer {
        Answer::Text(pieces) => json!({"role": "assistant", "content": pieces.concat()}),
        Answer::ToolCalls(calls) => json!({"role": "assistant", "content": "", "tool_calls": tool_calls(calls)}),
    };
    final_line(completion, answer, message)
}

/// Builds the lines of a streamed reply: one per text piece (or one with the tool calls),
/// then the final `done` line.
pub(super) fn stream_lines(completion: &Completion, answer: &Answer) -> Vec<String> {
    let partial = |message: Value| json!({"model": completion.model, "created_at": created_at(completion), "message": message, "done": false});
    let mut lines: Vec<Value> = match answer {
        Answer::Text(pieces) => {
            pieces.iter().map(|piece| partial(json!({"role": "assistant", "content": piece}))).collect()
        }
        Answer::ToolCalls(calls) => {
            vec![partial(json!({"role": "assistant", "content": "", "tool_calls": tool_calls(calls)}))]
        }
    };
    lines.push(final_line(completion, answer, json!({"role": "assistant", "content": ""})));
    lines.into_iter().map(|line| line.to_string()).collect()
}

fn final_line(completion: &Completion, answer: &Answer, message: Value) -> Value {
    json!({
        "model": completion.model,
        "created_at": created_at(completion),
        "message": message,
        "done": true,
        "done_reason": "stop",
        "total_duration": 1_000_000,
        "prompt_eval_count": completion.prompt_tokens,
        "eval_count": answer.completion_tokens(),
    })
}

/// Ollama sends arguments as a JSON object; text that is not one is kept under `raw`.
fn tool_calls(calls: &[(String, String)]) -> Value {
    let calls: Vec<Value> = calls
        .iter()
        .map(|(name, arguments)| {
            let arguments = match serde_json::from_str::<Value>(arguments) {
                Ok(value @ Value::Object(_)) => value,
                _ => json!({"raw": arguments}),
            };
            json!({"function": {"name": name, "arguments": arguments}})
        })
        .collect();
    Value::Array(calls)
}

fn created_at(completion: &Completion) -> String {
    let format = time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp(i64::try_from(completion.created).unwrap_or(0))
        .ok()
        .and_then(|moment| moment.format(&format).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}
