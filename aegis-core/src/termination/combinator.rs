//! `AndTerminationCondition` and `OrTerminationCondition`.
//!
//! Or checks every part on each delta and joins the reasons of the parts that fire on the
//! same delta with `", "`, in list order. And checks only the parts that have not fired yet,
//! keeps their reasons in the order they fired across deltas, and fires once every part has.

use crate::message::AgentMessage;
use crate::termination::TerminationCondition;

/// The `provider` string AutoGen dumps for [`AndTermination`].
pub const AND_PROVIDER: &str = "autogen_agentchat.base.AndTerminationCondition";
/// The `provider` string AutoGen dumps for [`OrTermination`].
pub const OR_PROVIDER: &str = "autogen_agentchat.base.OrTerminationCondition";

/// Fires when any part fires.
pub struct OrTermination {
    conditions: Vec<Box<dyn TerminationCondition>>,
}

impl OrTermination {
    /// Combines `conditions`.
    pub fn new(conditions: Vec<Box<dyn TerminationCondition>>) -> OrTermination {
        OrTermination { conditions }
    }
}

impl TerminationCondition for OrTermination {
    fn check(&mut self, delta: &[AgentMessage]) -> Option<String> {
        if self.terminated() {
            return None;
        }
        let reasons: Vec<String> = self.conditions.iter_mut().filter_map(|condition| condition.check(delta)).collect();
        if reasons.is_empty() { None } else { Some(reasons.join(", ")) }
    }

    fn terminated(&self) -> bool {
        self.conditions.iter().any(|condition| condition.terminated())
    }

    fn reset(&mut self) {
        self.conditions.iter_mut().for_each(|condition| condition.reset());
    }
}

/// Fires when every part has fired, possibly on different deltas.
pub struct AndTermination {
    conditions: Vec<Box<dyn TerminationCondition>>,
    reasons: Vec<String>,
}

impl AndTermination {
    /// Combines `conditions`.
    pub fn new(conditions: Vec<Box<dyn TerminationCondition>>) -> AndTermination {
        AndTermination { conditions, reasons: Vec::new() }
    }
}

impl TerminationCondition for AndTermination {
    fn check(&mut self, delta: &[AgentMessage]) -> Option<String> {
        if self.terminated() {
            return None;
        }
        let mut all_fired = true;
        for condition in self.conditions.iter_mut().filter(|condition| !condition.terminated()) {
            match condition.check(delta) {
                Some(reason) => self.reasons.push(reason),
                None => all_fired = false,
            }
        }
        if all_fired { Some(self.reasons.join(", ")) } else { None }
    }

    fn terminated(&self) -> bool {
        self.conditions.iter().all(|condition| condition.terminated())
    }

    fn reset(&mut self) {
        self.conditions.iter_mut().for_each(|condition| condition.reset());
        self.reasons.clear();
    }
}
