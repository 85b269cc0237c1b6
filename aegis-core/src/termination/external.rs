//! `ExternalTermination`: stop when the embedding application says so.
//!
//! AgentChat's `ExternalTermination.set()` is called from the running Python process. A
//! component loaded from JSON has no such caller, so the condition loads and never fires
//! unless a Rust application keeps its [`ExternalTrigger`]. Cancelling a run through the API
//! is a separate mechanism and does not go through this condition.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::message::AgentMessage;
use crate::termination::TerminationCondition;

/// The `provider` string AutoGen dumps for this condition.
pub const PROVIDER: &str = "autogen_agentchat.conditions.ExternalTermination";

/// Sets an [`ExternalTermination`] from outside the run.
#[derive(Clone, Debug, Default)]
pub struct ExternalTrigger {
    requested: Arc<AtomicBool>,
}

impl ExternalTrigger {
    /// Asks the team to stop at its next check.
    pub fn set(&self) {
        self.requested.store(true, Ordering::SeqCst);
    }
}

/// Fires at the first check after its trigger was set.
#[derive(Debug, Default)]
pub struct ExternalTermination {
    trigger: ExternalTrigger,
    terminated: bool,
}

impl ExternalTermination {
    /// Creates the condition.
    pub fn new() -> ExternalTermination {
        ExternalTermination::default()
    }

    /// Returns a handle that sets this condition.
    pub fn trigger(&self) -> ExternalTrigger {
        self.trigger.clone()
    }
}

impl TerminationCondition for ExternalTermination {
    fn check(&mut self, _delta: &[AgentMessage]) -> Option<String> {
        if self.terminated || !self.trigger.requested.load(Ordering::SeqCst) {
            return None;
        }
        self.terminated = true;
        Some("External termination requested".to_owned())
    }

    fn terminated(&self) -> bool {
        self.terminated
    }

    fn reset(&mut self) {
        self.terminated = false;
        self.trigger.requested.store(false, Ordering::SeqCst);
    }
}
