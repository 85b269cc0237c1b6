//! Per-key limits: the request rate of each API key, and the settings of the per-user token
//! budget, which the run engine enforces.
//!
//! The rate limit is a token bucket per key. A bucket contains up to [`BURST_SECONDS`] seconds'
//! worth of requests (at least [`MIN_BURST`]), so a client may send a short burst after a
//! quiet spell, and refills at the configured rate. A request that finds the bucket empty gets
//! 429 in the error envelope with `Retry-After`, the whole seconds until the bucket contains a
//! request again. Buckets live in the memory of one process, so with several replicas behind
//! a load balancer a key may send up to the rate to each replica.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use aegis_core::FieldError;

use crate::auth::caller::Caller;
use crate::error::ApiError;

/// The capacity of a bucket, in seconds of requests at the configured rate.
pub const BURST_SECONDS: f64 = 2.0;

/// The minimum capacity of a bucket, in requests, so a rate below one request per second
/// still admits a request and its retry.
pub const MIN_BURST: f64 = 2.0;

/// Limits on what each API key may do.
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct LimitsConfig {
    /// Requests per second each API key may send, per process; `None` sets no limit.
    pub rate_limit_rps: Option<f64>,
    /// Tokens (prompt plus completion) each user's runs may use in total; `None` sets no
    /// budget. The engine checks it before each model call (see `EngineConfig::token_budget`).
    pub token_budget: Option<u64>,
}

impl LimitsConfig {
    /// Checks the settings: a rate must be a positive number.
    pub fn validate(&self) -> Result<(), String> {
        match self.rate_limit_rps {
            Some(rps) if !(rps.is_finite() && rps > 0.0) => Err(format!(
                "the rate limit must be a positive number of requests per second, got {rps}; leave it out for no limit"
            )),
            _ => Ok(()),
        }
    }
}

/// The buckets of every key, indexed by the key's position.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rps: f64,
    capacity: f64,
    buckets: Box<[Mutex<Bucket>]>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

impl RateLimiter {
    /// Creates full buckets for `keys` keys, each refilled at `rps` requests per second.
    pub(crate) fn new(rps: f64, keys: usize) -> RateLimiter {
        let capacity = (rps * BURST_SECONDS).max(MIN_BURST);
        let now = Instant::now();
        let buckets = (0..keys).map(|_| Mutex::new(Bucket { tokens: capacity, refilled_at: now })).collect();
        RateLimiter { rps, capacity, buckets }
    }

    /// Takes one request from the bucket of key `index` at `now`, or returns how long until
    /// the bucket contains one.
    fn acquire(&self, index: usize, now: Instant) -> Result<(), Duration> {
        let Some(bucket) = self.buckets.get(index) else {
            return Ok(());
        };
        // A panic while holding the lock leaves two plain numbers, still usable.
        let mut bucket = bucket.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let elapsed = now.saturating_duration_since(bucket.refilled_at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rps).min(self.capacity);
        bucket.refilled_at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rps))
    }
}

/// Rejects a request with 429 when the caller's key has used up its rate. Anonymous requests
/// and servers without a rate limit pass.
pub(crate) async fn limit_rate(State(limiter): State<Arc<RateLimiter>>, request: Request, next: Next) -> Response {
    let Some(Caller::User { user_id, key_index }) = request.extensions().get::<Caller>() else {
        return next.run(request).await;
    };
    match limiter.acquire(*key_index, Instant::now()) {
        Ok(()) => next.run(request).await,
        Err(wait) => {
            let retry_after_s = retry_after_seconds(wait);
            tracing::debug!(user_id = &**user_id, retry_after_s, "request rejected: rate limit reached");
            too_many_requests(limiter.rps, retry_after_s).into_response()
        }
    }
}

/// Rounds a wait up to whole seconds, at least one, as `Retry-After` takes it.
fn retry_after_seconds(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

fn too_many_requests(rps: f64, retry_after_s: u64) -> ApiError {
    let message = format!("the API key sent more than {rps} requests per second");
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "Rate limit reached; retry later.")
        .with_error(
            FieldError::new("Authorization", "rate_limited", message)
                .with_fix(format!("retry after {retry_after_s} seconds, and send requests at most at this rate")),
        )
        .with_retry_after(retry_after_s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_refills() {
        let limiter = RateLimiter::new(1.0, 2);
        let start = Instant::now();
        assert!(limiter.acquire(0, start).is_ok());
        assert!(limiter.acquire(0, start).is_ok(), "a rate of 1/s still admits a burst of two");
        let wait = limiter.acquire(0, start).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        assert!(limiter.acquire(1, start).is_ok(), "each key has its own bucket");
        assert!(limiter.acquire(0, start + Duration::from_millis(1000)).is_ok(), "one second refills one request");
    }

    #[test]
    fn retry_after_is_whole_seconds_at_least_one() {
        assert_eq!(retry_after_seconds(Duration::from_millis(10)), 1);
        assert_eq!(retry_after_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_seconds(Duration::ZERO), 1);
    }

    #[test]
    fn rate_must_be_positive() {
        for rps in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let limits = LimitsConfig { rate_limit_rps: Some(rps), ..LimitsConfig::default() };
            assert!(limits.validate().is_err(), "{rps}");
        }
        assert!(LimitsConfig { rate_limit_rps: Some(0.5), ..LimitsConfig::default() }.validate().is_ok());
    }
}
