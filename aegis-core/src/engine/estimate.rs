//! Estimates of when a queued or executing run ends: its `estimated_completion_time`.
//!
//! The estimate is deliberately cheap, because it is computed on every read of a run that is
//! not terminal and `GET /run/{id}` is the hottest route:
//!
//! - The typical duration `d` of a run is the median of how long the last [`SAMPLE`] finished
//!   runs of the run's team took (runs that ended `complete` or `error`). A team without
//!   finished runs uses the median over every team, and a store without any uses
//!   [`DEFAULT_DURATION`]. Medians are cached per team for [`CACHE_TTL`], so a burst of
//!   reads costs one query per team and interval, however many sessions share the team. The
//!   team of each session is cached for good, because a session's team never changes.
//! - An `active` run ends at `started_at + d`. Once that has passed, the estimate is
//!   [`OVERDUE_MARGIN`] from now, so it never lies in the past.
//! - A `created` run waits for the `p` runs queued ahead of it (older `created` runs of every
//!   session, one indexed count), which this process's `w` workers take `w` at a time:
//!   it ends at `now + (floor(p / w) + 1) * d`.
//! - A terminal run has no estimate.
//!
//! NOTE: `w` is this process's worker count. With several replicas sharing a store, queued
//! runs start sooner than estimated. A count of the workers of every replica would fix that.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::resource::{Run, RunStatus};
use crate::storage::{Storage, StorageError};
use crate::timestamp::Timestamp;

/// Finished runs whose durations make up the median.
pub const SAMPLE: usize = 20;

/// The typical duration assumed before any run has finished: a guess, replaced by measured
/// medians as soon as one run ends.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(30);

/// How long a median stays cached.
pub const CACHE_TTL: Duration = Duration::from_secs(5);

/// How far ahead of now an overdue active run is estimated to end.
pub const OVERDUE_MARGIN: Duration = Duration::from_secs(5);

/// The maximum number of cached medians, and of cached teams of sessions. Beyond it, stale
/// medians are dropped first, and teams of sessions all at once.
const MAX_CACHED: usize = 10_000;

/// A median read from the store; `None` when there were no finished runs to take it from.
#[derive(Clone, Copy, Debug)]
struct Cached {
    read_at: Instant,
    median: Option<Duration>,
}

impl Cached {
    fn is_fresh(&self, now: Instant) -> bool {
        now.duration_since(self.read_at) < CACHE_TTL
    }
}

/// Computes `estimated_completion_time` with a short-lived cache of typical durations.
#[derive(Debug)]
pub(crate) struct Estimator {
    workers: u64,
    /// The team of each session seen, by session id.
    teams: RwLock<HashMap<Uuid, Uuid>>,
    /// Medians by team id. The key `None` is the median over every team.
    medians: RwLock<HashMap<Option<Uuid>, Cached>>,
}

impl Estimator {
    /// Creates an estimator for a process that executes `workers` runs at once.
    pub(crate) fn new(workers: usize) -> Estimator {
        Estimator {
            workers: u64::try_from(workers.max(1)).unwrap_or(u64::MAX),
            teams: RwLock::default(),
            medians: RwLock::default(),
        }
    }

    /// Sets `run.estimated_completion_time`. A store failure leaves it `None` and is logged,
    /// because a read of the run itself succeeded and should not fail for its estimate.
    pub(crate) async fn fill(&self, storage: &dyn Storage, run: &mut Run) {
        run.estimated_completion_time = match self.estimate(storage, run).await {
            Ok(estimate) => estimate,
            Err(error) => {
                tracing::warn!(run_id = %run.id, %error, "estimating the completion time of a run failed");
                None
            }
        };
    }

    /// Fills the estimates of several runs, as [`Estimator::fill`] does.
    pub(crate) async fn fill_all(&self, storage: &dyn Storage, runs: &mut [Run]) {
        for run in runs {
            self.fill(storage, run).await;
        }
    }

    async fn estimate(&self, storage: &dyn Storage, run: &Run) -> Result<Option<Timestamp>, StorageError> {
        let now = Timestamp::now();
        match run.status {
            RunStatus::Active => {
                let typical = self.typical_duration(storage, run.session_id).await?;
                let expected = run.started_at.unwrap_or(now).saturating_add(typical);
                Ok(Some(expected.max(now.saturating_add(OVERDUE_MARGIN))))
            }
            RunStatus::Created => {
                let ahead = storage.count_queued_before(run.created_at, run.id).await?;
                let typical = self.typical_duration(storage, run.session_id).await?;
                let rounds = u32::try_from(ahead / self.workers + 1).unwrap_or(u32::MAX);
                Ok(Some(now.saturating_add(typical.saturating_mul(rounds))))
            }
            _ => Ok(None),
        }
    }

    /// Returns the median duration for runs of the session's team, falling back as the module
    /// docs describe.
    async fn typical_duration(&self, storage: &dyn Storage, session_id: Uuid) -> Result<Duration, StorageError> {
        if let Some(median) = self.team_median(storage, session_id).await? {
            return Ok(median);
        }
        let overall = match self.cached(None) {
            Some(cached) => cached,
            None => self.store(None, median(storage.recent_run_durations(None, SAMPLE).await?)),
        };
        Ok(overall.unwrap_or(DEFAULT_DURATION))
    }

    async fn team_median(&self, storage: &dyn Storage, session_id: Uuid) -> Result<Option<Duration>, StorageError> {
        // A session deleted before its team was cached has no team: its runs fall back to
        // every team's median.
        let Some(team_id) = self.team_of(storage, session_id).await? else {
            return Ok(None);
        };
        if let Some(cached) = self.cached(Some(team_id)) {
            return Ok(cached);
        }
        let durations = storage.recent_run_durations(Some(team_id), SAMPLE).await?;
        Ok(self.store(Some(team_id), median(durations)))
    }

    /// Returns the team of a session, from the cache or else from the store.
    async fn team_of(&self, storage: &dyn Storage, session_id: Uuid) -> Result<Option<Uuid>, StorageError> {
        let cached = self.teams.read().unwrap_or_else(PoisonError::into_inner).get(&session_id).copied();
        if cached.is_some() {
            return Ok(cached);
        }

        let Some(session) = storage.get_session(session_id).await? else {
            return Ok(None);
        };
        let mut teams = self.teams.write().unwrap_or_else(PoisonError::into_inner);
        if teams.len() >= MAX_CACHED {
            teams.clear();
        }
        teams.insert(session_id, session.team_id);
        Ok(Some(session.team_id))
    }

    /// Returns the cached median of `key` if it is fresh; the outer `None` is a miss.
    #[allow(clippy::option_option)]
    fn cached(&self, key: Option<Uuid>) -> Option<Option<Duration>> {
        let medians = self.medians.read().unwrap_or_else(PoisonError::into_inner);
        medians.get(&key).filter(|cached| cached.is_fresh(Instant::now())).map(|cached| cached.median)
    }

    fn store(&self, key: Option<Uuid>, median: Option<Duration>) -> Option<Duration> {
        let now = Instant::now();
        let mut medians = self.medians.write().unwrap_or_else(PoisonError::into_inner);
        if medians.len() >= MAX_CACHED {
            medians.retain(|_, cached| cached.is_fresh(now));
            if medians.len() >= MAX_CACHED {
                medians.clear();
            }
        }
        medians.insert(key, Cached { read_at: now, median });
        median
    }
}

/// Returns the median of `durations` (the mean of the middle two for an even count), `None`
/// for none.
fn median(mut durations: Vec<Duration>) -> Option<Duration> {
    durations.sort_unstable();
    let middle = durations.len() / 2;
    match durations.len() {
        0 => None,
        len if len % 2 == 1 => durations.get(middle).copied(),
        _ => {
            let (low, high) = (durations.get(middle - 1)?, durations.get(middle)?);
            Some((*low + *high) / 2)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::Arc;

    use super::*;
    use crate::MemoryStorage;
    use crate::storage::RunOutcome;
    use crate::storage::testkit;

    fn seconds(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&value| Duration::from_secs(value)).collect()
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(seconds(&[9, 1, 5])), Some(Duration::from_secs(5)));
        assert_eq!(median(seconds(&[4, 1, 2, 3])), Some(Duration::from_millis(2500)));
        assert_eq!(median(Vec::new()), None);
    }

    /// Stores a session of a new team and returns it.
    async fn session(store: &dyn Storage) -> crate::resource::Session {
        let (task, team) = (testkit::task("estimates"), testkit::team("estimates"));
        let session = testkit::session(&task, &team);
        store.insert_task(&task).await.unwrap();
        store.insert_team(&team).await.unwrap();
        store.insert_session(&session).await.unwrap();
        session
    }

    #[tokio::test]
    async fn queued_runs_wait_for_worker_rounds() {
        let store: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let session = session(store.as_ref()).await;
        let mut runs = Vec::new();
        for _ in 0..5 {
            let spec = testkit::run_spec(&session);
            store.insert_run(&spec).await.unwrap();
            runs.push(spec.run);
        }
        let estimator = Estimator::new(2);
        let before = Timestamp::now();
        estimator.fill_all(store.as_ref(), &mut runs).await;

        // Without history every run takes DEFAULT_DURATION: queue positions 0 to 4 with two
        // workers wait 1, 1, 2, 2 and 3 rounds.
        let rounds: Vec<u64> = runs
            .iter()
            .map(|run| {
                let waited = run.estimated_completion_time.unwrap().seconds_since(before);
                (waited / DEFAULT_DURATION.as_secs_f64()).floor() as u64
            })
            .collect();
        assert_eq!(rounds, [1, 1, 2, 2, 3]);
    }

    #[tokio::test]
    async fn active_runs_use_team_median() {
        let store: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let session = session(store.as_ref()).await;
        for seconds in [10, 20, 90] {
            store.insert_run(&testkit::run_spec(&session)).await.unwrap();
            let (spec, lease) = store.claim_run("test", Duration::from_secs(60)).await.unwrap().unwrap();
            let mut outcome = RunOutcome::complete(Default::default());
            outcome.finished_at = spec.run.started_at.unwrap().saturating_add(Duration::from_secs(seconds));
            store.finish_run(&lease, &outcome).await.unwrap();
        }
        store.insert_run(&testkit::run_spec(&session)).await.unwrap();
        let (spec, _lease) = store.claim_run("test", Duration::from_secs(60)).await.unwrap().unwrap();

        let mut run = spec.run;
        Estimator::new(4).fill(store.as_ref(), &mut run).await;
        let expected = run.started_at.unwrap().saturating_add(Duration::from_secs(20));
        assert_eq!(run.estimated_completion_time, Some(expected), "started_at plus the median of 10, 20 and 90 s");
    }

    /// Finishes one run of `session` that took `seconds`.
    async fn finish_one(store: &dyn Storage, session: &crate::resource::Session, seconds: u64) {
        store.insert_run(&testkit::run_spec(session)).await.unwrap();
        let (spec, lease) = store.claim_run("test", Duration::from_secs(60)).await.unwrap().unwrap();
        let mut outcome = RunOutcome::complete(Default::default());
        outcome.finished_at = spec.run.started_at.unwrap().saturating_add(Duration::from_secs(seconds));
        store.finish_run(&lease, &outcome).await.unwrap();
    }

    #[tokio::test]
    async fn sessions_of_one_team_share_median() {
        let store: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let first = session(store.as_ref()).await;
        let team = store.get_team(first.team_id).await.unwrap().unwrap();
        let task = store.get_task(first.task_id).await.unwrap().unwrap();
        let second = testkit::session(&task, &team);
        store.insert_session(&second).await.unwrap();
        finish_one(store.as_ref(), &first, 10).await;

        let estimator = Estimator::new(1);
        let mut run = testkit::run_spec(&first).run;
        run.status = RunStatus::Active;
        run.started_at = Some(Timestamp::now());
        estimator.fill(store.as_ref(), &mut run).await;
        let first_estimate = run.estimated_completion_time.unwrap().seconds_since(run.started_at.unwrap());

        // A much longer run ends, but within the cache's lifetime the second session of the
        // team still gets the median cached for the first.
        finish_one(store.as_ref(), &second, 1_000).await;
        let mut other = testkit::run_spec(&second).run;
        other.status = RunStatus::Active;
        other.started_at = run.started_at;
        estimator.fill(store.as_ref(), &mut other).await;
        let second_estimate = other.estimated_completion_time.unwrap().seconds_since(other.started_at.unwrap());

        assert!((first_estimate - 10.0).abs() < 0.01, "{first_estimate}");
        assert!((second_estimate - 10.0).abs() < 0.01, "{second_estimate}");
    }

    #[tokio::test]
    async fn overdue_and_terminal_runs() {
        let store: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
        let session = session(store.as_ref()).await;
        let mut overdue = testkit::run_spec(&session).run;
        overdue.status = RunStatus::Active;
        overdue.started_at = Some(Timestamp::from_unix_micros(0).unwrap());
        let before = Timestamp::now();
        let estimator = Estimator::new(1);
        estimator.fill(store.as_ref(), &mut overdue).await;
        let estimate = overdue.estimated_completion_time.unwrap();
        assert!(estimate >= before.saturating_add(OVERDUE_MARGIN), "an overdue run ends a margin after now");

        let mut finished = testkit::run_spec(&session).run;
        finished.status = RunStatus::Complete;
        estimator.fill(store.as_ref(), &mut finished).await;
        assert_eq!(finished.estimated_completion_time, None, "a terminal run has no estimate");
    }
}
