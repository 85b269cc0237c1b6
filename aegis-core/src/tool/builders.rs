//! Building tools and workbenches from their components.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;

use crate::component::ComponentModel;
use crate::error::FieldError;
use crate::registry::{BuildContext, BuildResult, parse_config, under};
use crate::tool::{Tool, ToolOverride, Workbench};

/// A bound tool and the description its component gives it, if any.
pub(crate) type BoundTool = (Arc<dyn Tool>, Option<String>);

/// The `provider` of AutoGen's Python function tool.
pub const FUNCTION_TOOL: &str = "autogen_core.tools.FunctionTool";
/// The `provider` of AutoGen's static workbench.
pub const STATIC_WORKBENCH: &str = "autogen_core.tools.StaticWorkbench";
/// The `provider` of AutoGen's static workbench with streaming tool results.
pub const STATIC_STREAM_WORKBENCH: &str = "autogen_core.tools.StaticStreamWorkbench";

/// Builds a tool component: a `FunctionTool` binds to the registered Rust tool of its name;
/// the tool's description is the component's when it has one.
pub(crate) fn build_tool(component: &ComponentModel, context: &BuildContext<'_>) -> BuildResult<BoundTool> {
    let provider = context.registry.resolve(&component.provider);
    if provider != FUNCTION_TOOL {
        return Err(vec![
            FieldError::new("provider", "unknown_provider", format!("unknown tool provider '{}'", component.provider))
                .with_fix(format!("use {FUNCTION_TOOL} with the name of a tool registered in the Aegis registry")),
        ]);
    }

    #[derive(Deserialize)]
    struct Config {
        name: String,
        #[serde(default)]
        description: Option<String>,
    }
    let config: Config = parse_config(component)?;
    match context.registry.tool(&config.name) {
        Some(tool) => Ok((tool, config.description.filter(|text| !text.is_empty()))),
        None => {
            let known = context.registry.tool_names();
            let fix = if known.is_empty() {
                "register a Rust tool of this name in the registry (no tools are registered)".to_owned()
            } else {
                format!("use one of the registered tools: {}", known.join(", "))
            };
            Err(vec![
                FieldError::new(
                    "config.name",
                    "unknown_tool",
                    format!(
                        "FunctionTool '{}' has no registered Rust tool; Aegis never runs a tool's Python source_code",
                        config.name
                    ),
                )
                .with_fix(fix),
            ])
        }
    }
}

/// Builds a workbench component (`StaticWorkbench` or `StaticStreamWorkbench`).
pub(crate) fn build_workbench(component: &ComponentModel, context: &BuildContext<'_>) -> BuildResult<Workbench> {
    let provider = context.registry.resolve(&component.provider);
    if provider != STATIC_WORKBENCH && provider != STATIC_STREAM_WORKBENCH {
        return Err(vec![
            FieldError::new(
                "provider",
                "unsupported",
                format!("workbench provider '{}' is not supported yet", component.provider),
            )
            .with_fix(format!("use {STATIC_WORKBENCH} or {STATIC_STREAM_WORKBENCH}")),
        ]);
    }

    #[derive(Deserialize)]
    struct Config {
        #[serde(default)]
        tool_overrides: HashMap<String, ToolOverride>,
    }
    let config: Config = parse_config(component)?;
    let tools = build_tool_list(component.config.get("tools"), "config.tools", context)?;
    Ok(Workbench::new(tools, &config.tool_overrides))
}

/// Builds a list of tool components at `path`, collecting every problem.
pub(crate) fn build_tool_list(
    list: Option<&Value>,
    path: &str,
    context: &BuildContext<'_>,
) -> BuildResult<Vec<BoundTool>> {
    let Some(list) = list.filter(|value| !value.is_null()) else {
        return Ok(Vec::new());
    };
    let Some(items) = list.as_array() else {
        return Err(vec![FieldError::new(path, "invalid_type", "expected a list of tool components")]);
    };
    let mut tools = Vec::with_capacity(items.len());
    let mut problems = Vec::new();
    for (index, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{index}]");
        match serde_json::from_value::<ComponentModel>(item.clone()) {
            Ok(tool) => match build_tool(&tool, context) {
                Ok(built) => tools.push(built),
                Err(errors) => problems.extend(under(errors, &item_path)),
            },
            Err(error) => {
                problems.push(FieldError::new(item_path, "invalid_component", format!("not a component: {error}")))
            }
        }
    }
    if problems.is_empty() { Ok(tools) } else { Err(problems) }
}
