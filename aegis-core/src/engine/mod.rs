//! The run engine: a bounded pool of workers that claims runs from the store and executes
//! them under a lease.
//!
//! One dispatcher task per process claims `created` runs while a worker slot is free and
//! spawns each onto its own task. While claims keep finding runs, the dispatcher sends up to
//! 256 of them at once, which the SQLite store commits in one transaction. A run created in
//! this process while a slot is free skips the dispatcher: the service takes the slot and the
//! store claims the run as it inserts it, unless the store declines.
//! Creating a run wakes the dispatcher at once; a periodic poll
//! catches runs created by other processes and runs whose lease expired. While a run executes,
//! a heartbeat renews its lease every [`EngineConfig::heartbeat`]; if a renewal reports the
//! lease lost, the worker drops the run without writing anything, because a newer attempt owns
//! it. A run never depends on the HTTP connection that created it: it lives in the store and
//! in this pool only.
//!
//! The dispatcher also polls the store about once a [`EngineConfig::poll_interval`] for
//! cancel requests against this process's runs (see [`control`] for how a run is stopped), so
//! a cancel sent to another process sharing the store reaches the run within that interval.
//!
//! Shutdown ([`Workers::shutdown`]) stops claiming, lets the executing runs finish within a
//! grace period while their heartbeats continue, then hands the rest back to the queue with
//! the next attempt number, so the next start executes them again.

mod batch;
pub(crate) mod budget;
pub(crate) mod control;
pub mod estimate;
mod execute;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use crate::engine::control::RunChanges;
use crate::engine::control::{RunControl, Running, Stop};
use crate::registry::Registry;
use crate::resource::RunSpec;
use crate::storage::{Lease, Storage};

/// Claims the dispatcher sends at once at most while runs are queued. Each round waits for a
/// writer transaction that also carries every other queued write, so a burst of runs starts
/// sooner with bigger rounds. 256 is the SQLite writer's batch limit.
const MAX_CLAIM_BATCH: usize = 256;

/// How long shutdown waits for released runs to be handed back to the store.
const RELEASE_WAIT: Duration = Duration::from_secs(10);

/// Settings of the run engine.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct EngineConfig {
    /// Runs executed at once by this process. Runs wait on model calls, not CPU, so the
    /// default is far above the core count.
    pub workers: usize,
    /// How long a claim lasts without a heartbeat.
    pub lease: Duration,
    /// How often a running run renews its lease; at most a third of `lease`, so two renewals
    /// can fail before the lease expires.
    pub heartbeat: Duration,
    /// Attempts a run gets before an interrupted run ends as `error`.
    pub max_attempts: u32,
    /// Deadline of one run; a run still going then ends with `RunTimeoutError`.
    pub run_timeout: Duration,
    /// How often the dispatcher looks for work it was not woken for and for cancel requests.
    pub poll_interval: Duration,
    /// Items of one batch run executed at once.
    pub batch_concurrency: usize,
    /// Tokens (prompt plus completion) each user's runs may use in total, summed from the
    /// store. A run of a user at or over the budget fails with `BudgetExceededError` instead of
    /// making its next model call. `None` sets no budget.
    pub token_budget: Option<u64>,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            workers: 256,
            lease: Duration::from_secs(15),
            heartbeat: Duration::from_secs(5),
            max_attempts: 3,
            run_timeout: Duration::from_secs(600),
            poll_interval: Duration::from_secs(1),
            batch_concurrency: 8,
            token_budget: None,
        }
    }
}

impl EngineConfig {
    /// Checks the settings against each other.
    pub fn validate(&self) -> Result<(), String> {
        if self.workers == 0 {
            return Err("workers must be at least 1".to_owned());
        }
        if self.run_timeout.is_zero() {
            return Err("the run timeout must be positive; every run would time out at once".to_owned());
        }
        if self.heartbeat.is_zero() || self.heartbeat * 3 > self.lease {
            return Err(format!(
                "the heartbeat interval ({:?}) must be positive and at most a third of the lease ({:?})",
                self.heartbeat, self.lease
            ));
        }
        if self.max_attempts == 0 {
            return Err("max_attempts must be at least 1".to_owned());
        }
        if self.batch_concurrency == 0 {
            return Err("batch_concurrency must be at least 1".to_owned());
        }
        Ok(())
    }
}

/// State shared by the dispatcher, the workers and the service API.
pub(crate) struct Shared {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) config: EngineConfig,
    pub(crate) wake: Notify,
    pub(crate) owner: String,
    /// The runs this process executes.
    pub(crate) running: Running,
    /// Worker slots: one permit per run this process executes.
    slots: Arc<Semaphore>,
    /// Set once the worker pool started; before that no run starts in this process.
    started: AtomicBool,
    /// Set once shutdown began: no new runs are accepted or claimed.
    pub(crate) draining: AtomicBool,
    /// Fired when shutdown has handed every run back: streams and long polls end.
    pub(crate) closed: CancellationToken,
}

impl Shared {
    pub(crate) fn new(storage: Arc<dyn Storage>, registry: Registry, config: EngineConfig, owner: String) -> Shared {
        Shared {
            storage,
            registry: Arc::new(registry),
            slots: Arc::new(Semaphore::new(config.workers)),
            config,
            wake: Notify::new(),
            owner,
            running: Running::default(),
            started: AtomicBool::new(false),
            draining: AtomicBool::new(false),
            closed: CancellationToken::new(),
        }
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Takes a worker slot for a run that starts at once, when the pool runs, is not draining
    /// and has a slot free.
    pub(crate) fn free_slot(&self) -> Option<OwnedSemaphorePermit> {
        if !self.started.load(Ordering::SeqCst) || self.is_draining() {
            return None;
        }
        Arc::clone(&self.slots).try_acquire_owned().ok()
    }
}

/// Executes a claimed run on its own task; the run's worker slot is freed when it ends.
pub(crate) fn spawn_run(
    shared: &Arc<Shared>,
    spec: RunSpec,
    lease: Lease,
    control: Arc<RunControl>,
    slot: OwnedSemaphorePermit,
) {
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        execute::execute(&shared, spec, lease, control).await;
        drop(slot);
    });
}

/// The running worker pool of one process.
#[derive(Debug)]
pub struct Workers {
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    dispatcher: JoinHandle<()>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("owner", &self.owner).field("config", &self.config).finish_non_exhaustive()
    }
}

impl Workers {
    pub(crate) fn start(shared: Arc<Shared>) -> Workers {
        shared.started.store(true, Ordering::SeqCst);
        let shutdown = CancellationToken::new();
        let dispatcher = tokio::spawn(dispatch(Arc::clone(&shared), shutdown.clone()));
        Workers { shared, shutdown, dispatcher }
    }

    /// Returns how many runs this process executes right now.
    pub fn active_runs(&self) -> usize {
        self.shared.running.len()
    }

    /// Shuts the pool down gracefully: stops accepting and claiming runs, waits up to `grace`
    /// for the executing runs to end (their leases stay renewed meanwhile), then hands the
    /// remaining runs back to the queue with the next attempt number and waits for the
    /// dispatcher to exit. Returns at once when no run is executing.
    pub async fn shutdown(self, grace: Duration) {
        let shared = Arc::clone(&self.shared);

        // The dispatcher registers a claimed run before its next await, so once it has
        // exited every run this process will execute is in the table.
        self.stop().await;

        let active = shared.running.len();
        if active > 0 {
            tracing::info!(active, grace_s = grace.as_secs_f64(), "waiting for active runs to finish");
        }
        if !wait_until_idle(&shared, grace).await {
            let remaining = shared.running.len();
            tracing::warn!(remaining, "grace period over; releasing the remaining runs to the queue");
            shared.running.stop_all(&Stop::Release);
            if !wait_until_idle(&shared, RELEASE_WAIT).await {
                let remaining = shared.running.len();
                tracing::error!(
                    remaining,
                    "runs were not released in time; they are re-queued when their leases expire"
                );
            }
        }
        shared.closed.cancel();
    }

    /// Stops claiming new runs and waits for the dispatcher to exit. Runs already executing
    /// go on until they end or the process exits; runs cut off by an exit are re-queued by the
    /// next start once their lease expires.
    pub async fn stop(self) {
        self.shared.draining.store(true, Ordering::SeqCst);
        self.shutdown.cancel();
        if let Err(error) = self.dispatcher.await {
            tracing::error!(%error, "run dispatcher panicked");
        }
    }
}

/// Waits until no run executes, or `limit` passes; returns whether the pool is idle.
async fn wait_until_idle(shared: &Shared, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    let mut changes = shared.running.subscribe_changes();
    loop {
        changes.borrow_and_update();
        if shared.running.len() == 0 {
            return true;
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return shared.running.len() == 0 },
            () = tokio::time::sleep_until(deadline) => return shared.running.len() == 0,
        }
    }
}

async fn dispatch(shared: Arc<Shared>, shutdown: CancellationToken) {
    let slots = Arc::clone(&shared.slots);
    let mut next_sweep = tokio::time::Instant::now();
    let mut next_cancel_poll = tokio::time::Instant::now();
    let mut claim_batch = 1;
    let mut full_rounds = 0;
    tracing::info!(owner = %shared.owner, workers = shared.config.workers, "run dispatcher started");

    loop {
        let now = tokio::time::Instant::now();
        if now >= next_sweep {
            sweep_expired(&shared).await;
            next_sweep = now + shared.config.lease.min(Duration::from_secs(5));
        }
        if now >= next_cancel_poll {
            poll_cancel_requests(&shared).await;
            next_cancel_poll = now + shared.config.poll_interval;
        }

        if shared.is_draining() {
            tokio::select! {
                () = tokio::time::sleep(shared.config.poll_interval) => continue,
                () = shutdown.cancelled() => break,
            }
        }

        // Wait for a free slot, but not past the next poll, so sweeps and cancel requests
        // are handled while every slot is busy.
        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = tokio::time::sleep(shared.config.poll_interval) => continue,
            () = shutdown.cancelled() => break,
        };

        // Claims sent at once reach the SQLite writer together, which commits them in one
        // transaction. The batch doubles once two rounds in a row found a run for every claim,
        // and falls back to one claim as soon as the queue runs dry. Runs that arrive one at a
        // time so cost two claims each (one finds the run, one finds the queue empty), as
        // they did before batching.
        let mut permits = vec![permit];
        while permits.len() < claim_batch {
            match Arc::clone(&slots).try_acquire_owned() {
                Ok(permit) => permits.push(permit),
                Err(_) => break,
            }
        }
        let claim = || shared.storage.claim_run(&shared.owner, shared.config.lease);
        let results = match permits.len() {
            1 => vec![claim().await],
            _ => futures::future::join_all(permits.iter().map(|_| claim())).await,
        };

        let mut queue_empty = false;
        let mut failure = None;
        for (permit, result) in permits.into_iter().zip(results) {
            match result {
                Ok(Some((spec, lease))) => {
                    let control = shared.running.register(spec.run.id);
                    spawn_run(&shared, spec, lease, control, permit);
                }
                Ok(None) => queue_empty = true,
                Err(error) => failure = Some(error),
            }
        }

        if let Some(error) = failure {
            (claim_batch, full_rounds) = (1, 0);
            tracing::error!(%error, "claiming a run failed; retrying after the poll interval");
            tokio::select! {
                () = tokio::time::sleep(shared.config.poll_interval) => {}
                () = shutdown.cancelled() => break,
            }
        } else if queue_empty {
            (claim_batch, full_rounds) = (1, 0);
            tokio::select! {
                () = shared.wake.notified() => {}
                () = tokio::time::sleep(shared.config.poll_interval) => {}
                () = shutdown.cancelled() => break,
            }
        } else {
            full_rounds += 1;
            if full_rounds >= 2 {
                claim_batch = (claim_batch * 2).min(MAX_CLAIM_BATCH);
            }
        }
    }
    tracing::info!(owner = %shared.owner, "run dispatcher stopped");
}

/// Stops the runs of this process that have a cancel request in the store.
async fn poll_cancel_requests(shared: &Shared) {
    if shared.running.len() == 0 {
        return;
    }
    match shared.storage.cancel_requests(&shared.owner).await {
        Ok(requests) => {
            for (run_id, reason) in requests {
                if shared.running.stop(run_id, Stop::Cancel(reason)) {
                    tracing::info!(%run_id, "stopping run on a cancel request");
                }
            }
        }
        Err(error) => tracing::warn!(%error, "reading cancel requests failed; retrying at the next poll"),
    }
}

async fn sweep_expired(shared: &Shared) {
    match shared.storage.requeue_expired(shared.config.max_attempts).await {
        Ok(report) => {
            for run_id in &report.requeued {
                tracing::warn!(%run_id, "re-queued run whose lease expired");
            }
            for run_id in &report.exhausted {
                tracing::error!(%run_id, "run interrupted too often; ended as error");
                crate::telemetry::run_ended_by_sweep("error", "RunInterruptedError");
            }
            for run_id in &report.stopped {
                tracing::info!(%run_id, "ended cancelled run whose worker stopped as stopped");
                crate::telemetry::run_ended_by_sweep("stopped", "");
            }
            let changed = report.requeued.iter().chain(&report.exhausted).chain(&report.stopped);
            let mut any = false;
            for run_id in changed {
                shared.running.notify_change(*run_id);
                any = true;
            }
            if any {
                shared.wake.notify_one();
            }
        }
        Err(error) => tracing::error!(%error, "re-queueing expired runs failed"),
    }
}
