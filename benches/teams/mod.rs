//! Team components shared by the benchmarks, in the shape AutoGen 0.7's `dump_component`
//! writes them: every agent carries its workbench and model context, and every component its
//! version, label and description, as a team stored through the API does.
//!
//! Each bench target compiles this module on its own, so a target may leave some of the
//! builders unused.
#![allow(dead_code)]

use serde_json::{Value, json};

/// Returns the `model_info` AutoGen dumps for a replay client.
fn model_info() -> Value {
    json!({"vision": false, "function_calling": false, "json_output": false, "family": "unknown", "structured_output": false})
}

/// A `ReplayChatCompletionClient` that returns `replies` in order.
pub(crate) fn replay_client(replies: &[&str]) -> Value {
    json!({
        "provider": "autogen_ext.models.replay.ReplayChatCompletionClient",
        "component_type": "replay_chat_completion_client",
        "version": 1,
        "component_version": 1,
        "description": "A mock chat completion client that replays predefined responses using an index-based approach.",
        "label": "ReplayChatCompletionClient",
        "config": {"chat_completions": replies, "model_info": model_info()}
    })
}

/// Returns an `OpenAIChatCompletionClient` as the automarking tutorial stores it.
pub(crate) fn openai_client() -> Value {
    json!({
        "provider": "autogen_ext.models.openai.OpenAIChatCompletionClient",
        "component_type": "model",
        "version": 1,
        "component_version": 1,
        "description": "Chat completion client for OpenAI hosted models.",
        "label": "OpenAIChatCompletionClient",
        "config": {"model": "gpt-4o-mini", "temperature": 0, "response_format": {"type": "json_object"}}
    })
}

/// Returns an `AssistantAgent` called `name` that uses `model_client`.
pub(crate) fn assistant(name: &str, model_client: Value) -> Value {
    json!({
        "provider": "autogen_agentchat.agents.AssistantAgent",
        "component_type": "agent",
        "version": 2,
        "component_version": 2,
        "description": "An agent that provides assistance with tool use.",
        "label": "AssistantAgent",
        "config": {
            "name": name,
            "model_client": model_client,
            "workbench": [{
                "provider": "autogen_core.tools.StaticStreamWorkbench",
                "component_type": "workbench",
                "version": 1,
                "component_version": 1,
                "description": "A workbench that provides a static set of tools that do not change after each tool execution, and supports streaming results.",
                "label": "StaticStreamWorkbench",
                "config": {"tools": [], "tool_overrides": {}}
            }],
            "model_context": {
                "provider": "autogen_core.model_context.UnboundedChatCompletionContext",
                "component_type": "chat_completion_context",
                "version": 1,
                "component_version": 1,
                "description": "An unbounded chat completion context that keeps a view of the all the messages.",
                "label": "UnboundedChatCompletionContext",
                "config": {}
            },
            "description": format!("The {name} of the team."),
            "system_message": format!("You are {name}. Answer in one short paragraph."),
            "model_client_stream": false,
            "reflect_on_tool_use": false,
            "tool_call_summary_format": "{result}",
            "max_tool_iterations": 1,
            "metadata": {}
        }
    })
}

/// Returns a `MaxMessageTermination`, which counts the task message too, as AgentChat does.
pub(crate) fn max_messages(max_messages: u64) -> Value {
    json!({
        "provider": "autogen_agentchat.conditions.MaxMessageTermination",
        "component_type": "termination",
        "version": 1,
        "component_version": 1,
        "description": "Terminate the conversation after a maximum number of messages have been exchanged.",
        "label": "MaxMessageTermination",
        "config": {"max_messages": max_messages, "include_agent_event": false}
    })
}

/// Returns one bare agent with one scripted reply: a one-agent team that stops after that reply.
pub(crate) fn one_agent() -> Value {
    assistant("grader", replay_client(&["{\"satisfactory\": true, \"reasoning\": \"The answer names Canberra.\"}"]))
}

/// Returns a `RoundRobinGroupChat` of three agents that ends after six replies (two per agent).
pub(crate) fn round_robin_three() -> Value {
    let participants = vec![
        assistant("planner", replay_client(&["Plan: write add(a, b).", "Plan: done."])),
        assistant("coder", replay_client(&["def add(a, b): return a + b", "Added a docstring."])),
        assistant("reviewer", replay_client(&["Looks right.", "Approved."])),
    ];
    json!({
        "provider": "autogen_agentchat.teams.RoundRobinGroupChat",
        "component_type": "team",
        "version": 1,
        "component_version": 1,
        "description": "A team that runs a group chat with participants taking turns in a round-robin fashion to publish a message to all.",
        "label": "RoundRobinGroupChat",
        "config": {
            "name": "RoundRobinGroupChat",
            "description": "A team of agents.",
            "participants": participants,
            // Seven messages: the task and six replies.
            "termination_condition": max_messages(7),
            "emit_team_events": false
        }
    })
}

/// Returns a `SelectorGroupChat` of three agents whose replay selector picks each agent once,
/// so the run makes six model calls: three selections and three replies.
pub(crate) fn selector_three() -> Value {
    selector_team(
        vec![
            assistant("planner", replay_client(&["Plan: write add(a, b)."])),
            assistant("coder", replay_client(&["def add(a, b): return a + b"])),
            assistant("reviewer", replay_client(&["Looks right."])),
        ],
        replay_client(&["planner", "coder", "reviewer"]),
    )
}

/// Returns a `SelectorGroupChat` whose agents and selector call OpenAI: the realistic shape
/// for the component build benchmark, where no model is called.
pub(crate) fn selector_three_openai() -> Value {
    selector_team(
        vec![
            assistant("planner", openai_client()),
            assistant("coder", openai_client()),
            assistant("reviewer", openai_client()),
        ],
        openai_client(),
    )
}

fn selector_team(participants: Vec<Value>, model_client: Value) -> Value {
    json!({
        "provider": "autogen_agentchat.teams.SelectorGroupChat",
        "component_type": "team",
        "version": 1,
        "component_version": 1,
        "description": "A group chat team that have participants takes turn to publish a message to all, using a ChatCompletion model to select the next speaker after each message.",
        "label": "SelectorGroupChat",
        "config": {
            "name": "SelectorGroupChat",
            "description": "A team of agents.",
            "participants": participants,
            "model_client": model_client,
            // Four messages: the task and three replies.
            "termination_condition": max_messages(4),
            "selector_prompt": "You are in a role play game. The following roles are available:\n{roles}.\nRead the following conversation. Then select the next role from {participants} to play. Only return the role.\n\n{history}\n\nRead the above conversation. Then select the next role from {participants} to play. Only return the role.\n",
            "allow_repeated_speaker": false,
            "max_selector_attempts": 3,
            "emit_team_events": false,
            "model_client_streaming": false
        }
    })
}

/// Returns the automarking tutorial's grader: one `AssistantAgent` on OpenAI.
pub(crate) fn automarking_agent() -> Value {
    assistant("automarking_agent", openai_client())
}
