//! `TimeoutTermination`: stop once a duration has passed since the condition was created or
//! last reset.
//!
//! The clock starts when the team is built, which in Aegis is when the run starts; the
//! run's own deadline (`run_timeout`) bounds every run independently of this condition.

use std::time::{Duration, Instant};

use crate::message::AgentMessage;
use crate::termination::TerminationCondition;

/// The `provider` string AutoGen dumps for this condition.
pub const PROVIDER: &str = "autogen_agentchat.conditions.TimeoutTermination";

/// Stops the team at the first check after `timeout_seconds`.
#[derive(Clone, Debug)]
pub struct TimeoutTermination {
    timeout_seconds: f64,
    started: Instant,
    terminated: bool,
}

impl TimeoutTermination {
    /// Creates the condition; `timeout_seconds` must be finite and not negative.
    pub fn new(timeout_seconds: f64) -> TimeoutTermination {
        TimeoutTermination { timeout_seconds, started: Instant::now(), terminated: false }
    }
}

impl TerminationCondition for TimeoutTermination {
    fn check(&mut self, _delta: &[AgentMessage]) -> Option<String> {
        if self.terminated {
            return None;
        }
        let limit = Duration::try_from_secs_f64(self.timeout_seconds).unwrap_or(Duration::MAX);
        if self.started.elapsed() < limit {
            return None;
        }
        self.terminated = true;
        // AgentChat formats the float with Python's repr: `0.0`, not `0`.
        Some(format!("Timeout of {} seconds reached", crate::pyrepr::repr_float(self.timeout_seconds)))
    }

    fn terminated(&self) -> bool {
        self.terminated
    }

    fn reset(&mut self) {
        self.terminated = false;
        self.started = Instant::now();
    }
}
