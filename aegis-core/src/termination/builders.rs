//! Registration of the built-in termination conditions.

use std::sync::Arc;

use crate::component::ComponentModel;
use crate::registry::{BuildContext, BuildResult, Registry, parse_config};
use crate::termination::{MaxMessageTermination, TerminationCondition, TextMentionTermination, max_message, text_mention};

/// Registers the built-in termination conditions and their AutoGen aliases.
pub(crate) fn register(registry: &mut Registry) {
    registry.register_termination(max_message::PROVIDER, Arc::new(build_max_message));
    registry.register_alias("MaxMessageTermination", max_message::PROVIDER);
    registry.register_termination(text_mention::PROVIDER, Arc::new(build_text_mention));
    registry.register_alias("TextMentionTermination", text_mention::PROVIDER);
}

fn build_max_message(component: &ComponentModel, _context: &BuildContext<'_>) -> BuildResult<Box<dyn TerminationCondition>> {
    Ok(Box::new(MaxMessageTermination::new(parse_config(component)?)))
}

fn build_text_mention(component: &ComponentModel, _context: &BuildContext<'_>) -> BuildResult<Box<dyn TerminationCondition>> {
    Ok(Box::new(TextMentionTermination::new(parse_config(component)?)))
}
