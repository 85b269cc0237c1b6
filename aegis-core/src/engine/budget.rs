//! The per-user token budget: a run whose user has used up [`EngineConfig::token_budget`]
//! fails with `BudgetExceededError` instead of calling a model.
//!
//! Usage is summed from the store ([`Storage::tokens_used_by`]), not counted in memory, so
//! the budget applies across restarts and across replicas sharing one database. When a run
//! starts, the worker reads what the user's stored runs used and fails the run at once if
//! that reaches the budget. Otherwise the run's [`RunContext`] gets an [`Allowance`] and checks
//! it before every model call, adding the run's own usage so far.
//!
//! NOTE: runs of one user that execute at the same time do not see each other's usage until
//! they finish. The items of a batch run are checked only when the run starts. So a user can
//! overshoot the budget by the usage of their concurrent runs and batch items.
//!
//! [`EngineConfig::token_budget`]: crate::engine::EngineConfig::token_budget
//! [`Storage::tokens_used_by`]: crate::storage::Storage::tokens_used_by
//! [`RunContext`]: crate::run::RunContext

use crate::engine::Shared;
use crate::message::RequestUsage;
use crate::resource::Run;
use crate::run::RunError;

/// The `error_details.type` of a run rejected by the budget.
pub(crate) const BUDGET_EXCEEDED: &str = "BudgetExceededError";

/// The tokens a run's user may still use: their budget and what their stored runs had used
/// when this run started.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Allowance {
    user_id: String,
    budget: u64,
    used_before: u64,
}

impl Allowance {
    /// Fails once the stored usage plus `run_usage` (this run's calls so far) reaches the
    /// budget.
    pub(crate) fn check(&self, run_id: uuid::Uuid, run_usage: RequestUsage) -> Result<(), RunError> {
        let used = self.used_before.saturating_add(run_usage.prompt_tokens).saturating_add(run_usage.completion_tokens);
        if used < self.budget {
            return Ok(());
        }
        let (user_id, budget) = (self.user_id.as_str(), self.budget);
        tracing::warn!(%run_id, user_id, used, budget, "token budget exceeded; the run makes no further model call");
        Err(RunError::new(BUDGET_EXCEEDED, exceeded_message(user_id, used, budget)))
    }
}

/// Reads the run's user's usage from the store and returns their allowance, or fails when
/// they have already used their budget. Runs without a user and servers without a budget get
/// no allowance.
pub(crate) async fn allowance(shared: &Shared, run: &Run) -> Result<Option<Allowance>, RunError> {
    let (Some(budget), Some(user_id)) = (shared.config.token_budget, run.created_by_user_id.as_deref()) else {
        return Ok(None);
    };
    let used_before = shared.storage.tokens_used_by(user_id).await.map_err(|error| {
        RunError::new("StorageError", format!("reading the token usage of user {user_id:?} failed: {error}"))
    })?;
    let allowance = Allowance { user_id: user_id.to_owned(), budget, used_before };
    allowance.check(run.id, RequestUsage::default())?;
    Ok(Some(allowance))
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
    fn allowance_counts_stored_and_run_usage() {
        let allowance = Allowance { user_id: "alice".to_owned(), budget: 100, used_before: 60 };
        let run_id = uuid::Uuid::now_v7();
        assert!(allowance.check(run_id, RequestUsage { prompt_tokens: 30, completion_tokens: 9 }).is_ok());

        let error = allowance.check(run_id, RequestUsage { prompt_tokens: 30, completion_tokens: 10 }).unwrap_err();
        assert_eq!(error.details.error_type, BUDGET_EXCEEDED);
        assert!(error.error_message.contains("used 100 tokens"), "{}", error.error_message);
        assert!(error.error_message.contains("budget of 100 tokens"), "{}", error.error_message);
        assert!(error.error_message.contains("--token-budget"), "{}", error.error_message);
    }
}
