//! Retries of failed model calls: exponential backoff with jitter, and the provider's own
//! `Retry-After` when it sends one.
//!
//! A provider that says when to come back knows its load better than any backoff curve, so
//! `Retry-After` wins over the computed delay, and jitter is only ever added on top of it: a
//! shorter wait would just earn another 429. A wait longer than [`RetryPolicy::max_wait`]
//! fails the call at once, because a run that sleeps for minutes looks hung to its caller.

use std::future::Future;
use std::time::Duration;

use rand::Rng;

use crate::model::ModelError;

/// When and how often to repeat a failed call.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: u32,
    /// Delay before the first retry; doubled for each later one.
    pub initial_backoff: Duration,
    /// Upper bound of the computed backoff.
    pub max_backoff: Duration,
    /// Longest server-requested wait that is honoured; a longer one fails the call.
    pub max_wait: Duration,
}

impl RetryPolicy {
    /// Returns the default policy with `max_retries` retries.
    pub fn with_max_retries(max_retries: u32) -> RetryPolicy {
        RetryPolicy {
            max_retries,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            max_wait: Duration::from_secs(60),
        }
    }

    /// Calls `attempt` until it succeeds, fails in a way not worth repeating, or runs out of
    /// retries. The returned error's `attempts` counts every call made.
    pub async fn run<F, Fut, T>(&self, model: &str, mut attempt: F) -> Result<T, ModelError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, ModelError>>,
    {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut error = match attempt().await {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            error.attempts = attempts;

            let retries_left = attempts <= self.max_retries;
            if !retries_left || !error.kind.is_retryable() || is_quota_exhausted(&error) {
                return Err(error);
            }
            let Some(delay) = self.delay(attempts, error.retry_after) else {
                return Err(error);
            };

            tracing::warn!(
                gen_ai.request.model = model,
                attempt = attempts,
                reason = %error.kind,
                status = error.status_code,
                delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                "retrying model call"
            );
            tokio::time::sleep(delay).await;
        }
    }

    /// Returns the wait before retry number `attempt`, or `None` when the provider asked for a
    /// wait longer than [`RetryPolicy::max_wait`].
    fn delay(&self, attempt: u32, retry_after: Option<f64>) -> Option<Duration> {
        let exponent = attempt.saturating_sub(1).min(16);
        let backoff = self.initial_backoff.saturating_mul(1 << exponent).min(self.max_backoff);
        let jitter = rand::rng().random_range(0.0..=0.25);
        let Some(seconds) = retry_after else {
            return Some(backoff.mul_f64(1.0 + jitter));
        };
        let requested = Duration::try_from_secs_f64(seconds).ok()?;
        if requested > self.max_wait {
            return None;
        }
        Some(requested + backoff.mul_f64(jitter))
    }
}

/// A 429 that says the account is out of credit will not clear by waiting.
fn is_quota_exhausted(error: &ModelError) -> bool {
    error.message.contains("insufficient_quota") || error.message.contains("exceeded your current quota")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_never_shortened() {
        let policy = RetryPolicy::with_max_retries(2);
        for _ in 0..50 {
            let delay = policy.delay(1, Some(2.0)).unwrap();
            assert!(delay >= Duration::from_secs(2));
        }
    }

    #[test]
    fn retry_after_beyond_cap_fails() {
        let policy = RetryPolicy::with_max_retries(2);
        assert!(policy.delay(1, Some(3600.0)).is_none());
    }

    #[test]
    fn backoff_doubles_up_to_cap() {
        let policy = RetryPolicy::with_max_retries(10);
        let first = policy.delay(1, None).unwrap();
        let tenth = policy.delay(10, None).unwrap();
        assert!(first >= Duration::from_millis(500) && first <= Duration::from_millis(625));
        assert!(tenth <= Duration::from_secs(10));
    }
}
