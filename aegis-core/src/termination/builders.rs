//! Registration of the built-in termination conditions.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::component::ComponentModel;
use crate::error::FieldError;
use crate::registry::{BuildContext, BuildResult, Registry, parse_config, under};
use crate::termination::message_match::providers;
use crate::termination::{
    AndTermination, ExternalTermination, FunctionCallTermination, HandoffTermination, MaxMessageTermination,
    OrTermination, SourceMatchTermination, StopMessageTermination, TerminationCondition, TextMentionTermination,
    TextMessageTermination, TimeoutTermination, TokenUsageTermination, TokenUsageTerminationConfig, combinator,
    external, max_message, text_mention, timeout, token_usage,
};

type Built = BuildResult<Box<dyn TerminationCondition>>;
type Builder = fn(&ComponentModel, &BuildContext<'_>) -> Built;

/// Registers the built-in termination conditions and their class-name aliases.
pub(crate) fn register(registry: &mut Registry) {
    let builders: [(&str, Builder); 12] = [
        (max_message::PROVIDER, build_max_message),
        (text_mention::PROVIDER, build_text_mention),
        (providers::STOP_MESSAGE, build_stop_message),
        (token_usage::PROVIDER, build_token_usage),
        (timeout::PROVIDER, build_timeout),
        (providers::HANDOFF, build_handoff),
        (providers::SOURCE_MATCH, build_source_match),
        (providers::TEXT_MESSAGE, build_text_message),
        (providers::FUNCTION_CALL, build_function_call),
        (external::PROVIDER, build_external),
        (combinator::AND_PROVIDER, build_and),
        (combinator::OR_PROVIDER, build_or),
    ];
    for (provider, builder) in builders {
        registry.register_termination(provider, Arc::new(builder));
        if let Some((_, class)) = provider.rsplit_once('.') {
            registry.register_alias(class, provider);
        }
    }
    // The combinators' private module path, which import-based loading also accepts.
    registry.register_alias("autogen_agentchat.base._termination.AndTerminationCondition", combinator::AND_PROVIDER);
    registry.register_alias("autogen_agentchat.base._termination.OrTerminationCondition", combinator::OR_PROVIDER);
}

fn build_max_message(component: &ComponentModel, _context: &BuildContext<'_>) -> Built {
    Ok(Box::new(MaxMessageTermination::new(parse_config(component)?)))
}

fn build_text_mention(component: &ComponentModel, _context: &BuildContext<'_>) -> Built {
    Ok(Box::new(TextMentionTermination::new(parse_config(component)?)))
}

fn build_stop_message(_component: &ComponentModel, _context: &BuildContext<'_>) -> Built {
    Ok(Box::new(StopMessageTermination::new()))
}

fn build_token_usage(component: &ComponentModel, _context: &BuildContext<'_>) -> Built {
    let config: TokenUsageTerminationConfig = parse_config(component)?;
    if config.max_total_token.is_none() && config.max_prompt_token.is_none() && config.max_completion_token.is_none() {
        return Err(vec![
            FieldError::new("config", "missing", "a TokenUsageTermination needs at least one limit")
                .with_fix("set max_total_token, max_prompt_token or max_completion_token"),
        ]);
    }
    Ok(Box::new(TokenUsageTermination::new(config)))
}

fn build_timeout(component: &ComponentModel, _context: &BuildContext<'_>) -> Built {
    #[derive(Deserialize)]
    struct Config {
        timeout_seconds: f64,
    }
    let config: Config = parse_config(component)?;
    if !config.timeout_seconds.is_finite() || config.timeout_seconds < 0.0 {
        return Err(vec![FieldError::new(
            "config.timeout_seconds",
            "invalid_value",
            format!("timeout_seconds must be a finite number of seconds, not negative, got {}", config.timeout_seconds),
        )]);
    }
    Ok(Box::new(TimeoutTermination::new(config.timeout_seconds)))
}

fn build_handoff(component: &ComponentModel, _context: &BuildContext<'_>) -> Built {
    #[derive(Deserialize)]
    struct Config {
        target: String,
    }
    let config: Config = parse_config(component)?;
    Ok(Box::new(HandoffTermination::new(config.target)))
}

fn build_source_match(component: &ComponentModel, _context: &BuildContext<'_>) -> Built {
    #[derive(Deserialize)]
    struct Config {
        sources: Vec<String>,
    }
    let config: Config = parse_config(component)?;
    Ok(Box::new(SourceMatchTermination::new(config.sources)))
}

fn build_text_message(component: &ComponentModel, _context: &BuildContext<'_>) -> Built {
    #[derive(Deserialize)]
    struct Config {
        #[serde(default)]
        source: Option<String>,
    }
    let config: Config = parse_config(component)?;
    Ok(Box::new(TextMessageTermination::new(config.source)))
}

fn build_function_call(component: &ComponentModel, _context: &BuildContext<'_>) -> Built {
    #[derive(Deserialize)]
    struct Config {
        function_name: String,
    }
    let config: Config = parse_config(component)?;
    Ok(Box::new(FunctionCallTermination::new(config.function_name)))
}

fn build_external(_component: &ComponentModel, _context: &BuildContext<'_>) -> Built {
    Ok(Box::new(ExternalTermination::new()))
}

fn build_and(component: &ComponentModel, context: &BuildContext<'_>) -> Built {
    Ok(Box::new(AndTermination::new(build_parts(component, context)?)))
}

fn build_or(component: &ComponentModel, context: &BuildContext<'_>) -> Built {
    Ok(Box::new(OrTermination::new(build_parts(component, context)?)))
}

/// Builds `config.conditions`, collecting the problems of every part.
fn build_parts(
    component: &ComponentModel,
    context: &BuildContext<'_>,
) -> BuildResult<Vec<Box<dyn TerminationCondition>>> {
    let Some(list) = component.config.get("conditions").and_then(Value::as_array) else {
        return Err(vec![FieldError::new(
            "config.conditions",
            "missing",
            "a combined condition needs a conditions list",
        )]);
    };
    let mut parts = Vec::with_capacity(list.len());
    let mut problems = Vec::new();
    for (index, value) in list.iter().enumerate() {
        let path = format!("config.conditions[{index}]");
        let part: ComponentModel = match serde_json::from_value(value.clone()) {
            Ok(part) => part,
            Err(error) => {
                problems.push(FieldError::new(&path, "invalid_component", format!("not a component: {error}")));
                continue;
            }
        };
        match context.registry.build_termination(&part, context) {
            Ok(condition) => parts.push(condition),
            Err(errors) => problems.extend(under(errors, &path)),
        }
    }
    if problems.is_empty() { Ok(parts) } else { Err(problems) }
}
