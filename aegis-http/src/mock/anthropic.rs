//! Anthropic's Messages API as the mock speaks it: a `message` object, or the named SSE
//! events of a streamed message.
//!
//! The event sequence follows Anthropic's streaming documentation: `message_start` (with the
//! input tokens), a `ping`, per content block a `content_block_start`, its deltas
//! (`text_delta` or `input_json_delta`) and a `content_block_stop`, then `message_delta` (stop
//! reason and output tokens) and `message_stop`.

use serde_json::{Value, json};

use super::completion::{Answer, Completion};

/// Builds a non-streamed `message` object.
pub(super) fn message(completion: &Completion, answer: &Answer) -> Value {
    let content: Vec<Value> = match answer {
        Answer::Text(pieces) => vec![json!({"type": "text", "text": pieces.concat()})],
        Answer::ToolCalls(calls) => calls
            .iter()
            .enumerate()
            .map(|(index, (name, arguments))| {
                json!({"type": "tool_use", "id": tool_id(completion, index), "name": name, "input": input_of(arguments)})
            })
            .collect(),
    };
    json!({
        "id": format!("msg_mock_{}", completion.sequence),
        "type": "message",
        "role": "assistant",
        "model": completion.model,
        "content": content,
        "stop_reason": stop_reason(answer),
        "stop_sequence": null,
        "usage": {"input_tokens": completion.prompt_tokens, "output_tokens": answer.completion_tokens()},
    })
}

/// Builds the `(event name, data)` pairs of a streamed message.
pub(super) fn stream_events(completion: &Completion, answer: &Answer) -> Vec<(&'static str, String)> {
    let mut events = vec![
        (
            "message_start",
            json!({"type": "message_start", "message": {
                "id": format!("msg_mock_{}", completion.sequence), "type": "message", "role": "assistant",
                "model": completion.model, "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": completion.prompt_tokens, "output_tokens": 1},
            }}),
        ),
        ("ping", json!({"type": "ping"})),
    ];

    match answer {
        Answer::Text(pieces) => {
            events.push(block_start(0, json!({"type": "text", "text": ""})));
            for piece in pieces {
                events.push(block_delta(0, json!({"type": "text_delta", "text": piece})));
            }
            events.push(block_stop(0));
        }
        Answer::ToolCalls(calls) => {
            for (index, (name, arguments)) in calls.iter().enumerate() {
                let block = json!({"type": "tool_use", "id": tool_id(completion, index), "name": name, "input": {}});
                events.push(block_start(index, block));
                events.push(block_delta(index, json!({"type": "input_json_delta", "partial_json": arguments})));
                events.push(block_stop(index));
            }
        }
    }

    events.push((
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop_reason(answer), "stop_sequence": null},
               "usage": {"output_tokens": answer.completion_tokens()}}),
    ));
    events.push(("message_stop", json!({"type": "message_stop"})));
    events.into_iter().map(|(name, data)| (name, data.to_string())).collect()
}

fn block_start(index: usize, block: Value) -> (&'static str, Value) {
    ("content_block_start", json!({"type": "content_block_start", "index": index, "content_block": block}))
}

fn block_delta(index: usize, delta: Value) -> (&'static str, Value) {
    ("content_block_delta", json!({"type": "content_block_delta", "index": index, "delta": delta}))
}

fn block_stop(index: usize) -> (&'static str, Value) {
    ("content_block_stop", json!({"type": "content_block_stop", "index": index}))
}

fn tool_id(completion: &Completion, index: usize) -> String {
    format!("toolu_mock_{}_{index}", completion.sequence)
}

/// Parses scripted arguments into the `input` object. Text that is not a JSON object is kept
/// under `raw`, because Anthropic's `input` is always an object.
fn input_of(arguments: &str) -> Value {
    match serde_json::from_str::<Value>(arguments) {
        Ok(value @ Value::Object(_)) => value,
        _ => json!({"raw": arguments}),
    }
}

fn stop_reason(answer: &Answer) -> &'static str {
    match answer {
        Answer::Text(_) => "end_turn",
        Answer::ToolCalls(_) => "tool_use",
    }
}
