//! Retries of failed model calls: exponential backoff with jitter, and the provider's own
//! `Retry-After` when it sends one.
//!
//! A provider that says when to come back knows its load better than any backoff curve, so
//! `Retry-After` wins over the computed delay, and jitter is only ever added on top of it: a
//! shorter wait would just earn another 429. A wait longer than [`RetryPolicy::max_wait`]
//! fails the call at once, because a run that sleeps for minutes looks hung to its caller.
//!
//! Which failures are retried is [`ModelError::is_retryable`]'s decision (408, 409, 429, 5xx,
//! connection failures and client deadlines). Each retry is logged as a `warn` event with the
//! attempt, the reason and the wait; the run id comes from the `model call` span that
//! [`RunContext`](crate::run::RunContext) opens around every call.

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

    /// Sets the delay before the first retry.
    #[must_use]
    pub fn with_initial_backoff(mut self, initial_backoff: Duration) -> RetryPolicy {
        self.initial_backoff = initial_backoff;
        self
    }

    /// Sets the upper bound of the computed backoff.
    #[must_use]
    pub fn with_max_backoff(mut self, max_backoff: Duration) -> RetryPolicy {
        self.max_backoff = max_backoff;
        self
    }

    /// Sets the longest server-requested wait that is honoured.
    #[must_use]
    pub fn with_max_wait(mut self, max_wait: Duration) -> RetryPolicy {
        self.max_wait = max_wait;
        self
    }

    /// Calls `attempt` until it succeeds, fails in a way not worth repeating, or runs out of
    /// retries. The returned error's `attempts` counts every call made.
    pub async fn run<F, Fut, T>(&self, provider: &str, model: &str, mut attempt: F) -> Result<T, ModelError>
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

            let Some(delay) = self.retry_delay(provider, model, &error) else {
                return Err(error);
            };
            tokio::time::sleep(delay).await;
        }
    }

    /// Decides whether a call that failed with `error` (whose `attempts` counts the calls made
    /// so far) is repeated, and after which wait. Logs the retry, or why a retryable error is
    /// not retried. Clients that cannot use [`RetryPolicy::run`], such as a streaming call
    /// that writes to a borrowed sink, loop on this instead.
    pub fn retry_delay(&self, provider: &str, model: &str, error: &ModelError) -> Option<Duration> {
        let attempts = error.attempts;
        if attempts > self.max_retries || !error.is_retryable() {
            return None;
        }
        let Some(delay) = self.delay(attempts, error.retry_after) else {
            tracing::warn!(
                provider,
                gen_ai.request.model = model,
                attempt = attempts,
                reason = %error.kind,
                retry_after_s = error.retry_after,
                "not retrying model call because the provider asked for a wait beyond max_wait"
            );
            return None;
        };

        tracing::warn!(
            provider,
            gen_ai.request.model = model,
            attempt = attempts,
            reason = %error.kind,
            status = error.status_code,
            delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            "retrying model call"
        );
        crate::telemetry::model_retry(provider);
        Some(delay)
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
