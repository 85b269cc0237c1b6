//! The per-user token budget: a run whose user has used up [`EngineConfig::token_budget`]
//! fails with `BudgetExceededError` instead of calling a model.
//!
//! Usage is summed from the store ([`Storage::tokens_used_by`]), not counted in memory, so
//! the budget applies across restarts and across replicas sharing one database.
//!
//! NOTE: the budget is checked once, when a run starts executing. A run that starts under
//! the budget finishes even if it crosses it, and runs of one user that start at the same
//! time all pass the check, so a user can overshoot by the usage of their concurrent runs.
//!
//! NOTE: the stores sum over every stored run of the user at each run start, which grows
//! with the user's history; a per-user counter updated when a run finishes would remove the
//! scan.
//!
//! [`EngineConfig::token_budget`]: crate::engine::EngineConfig::token_budget
//! [`Storage::tokens_used_by`]: crate::storage::Storage::tokens_used_by

use crate::engine::Shared;
use crate::resource::Run;
use crate::run::RunError;

/// The `error_details.type` of a run rejected by the budget.
pub(crate) const BUDGET_EXCEEDED: &str = "BudgetExceededError";

/// Fails when the run's user has used their token budget. Runs without a user and servers
/// without a budget always pass.
pub(crate) async fn check(shared: &Shared, run: &Run) -> Result<(), RunError> {
    let (Some(budget), Some(user_id)) = (shared.config.token_budget, run.created_by_user_id.as_deref()) else {
        return Ok(());
    };
    let used = shared.storage.tokens_used_by(user_id).await.map_err(|error| {
        RunError::new("StorageError", format!("reading the token usage of user {user_id:?} failed: {error}"))
    })?;
    if used < budget {
        return Ok(());
    }
    tracing::warn!(run_id = %run.id, user_id, used, budget, "token budget exceeded; the run makes no model call");
    Err(RunError::new(BUDGET_EXCEEDED, exceeded_message(user_id, used, budget)))
}

fn exceeded_message(user_id: &str, used: u64, budget: u64) -> String {
    format!(
        "user {user_id:?} has used {used} tokens, which reaches the token budget of {budget} tokens per user; \
         raise the budget with `aegis serve --token-budget` (AEGIS_TOKEN_BUDGET), or delete runs of this user \
         that are no longer needed, since only stored runs count"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_budget_usage_and_fix() {
        let message = exceeded_message("alice", 1200, 1000);
        assert!(message.contains("1200 tokens"), "{message}");
        assert!(message.contains("1000 tokens"), "{message}");
        assert!(message.contains("--token-budget"), "{message}");
    }
}
