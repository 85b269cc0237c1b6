//! The run engine: a bounded pool of workers that claims runs from the store and executes
//! them under a lease.
//!
//! One dispatcher task per process claims `created` runs while a worker slot is free and
//! spawns each onto its own task. Creating a run wakes the dispatcher at once; a periodic poll
//! catches runs created by other processes and runs whose lease expired. While a run executes,
//! a heartbeat renews its lease every [`EngineConfig::heartbeat`]; if a renewal reports the
//! lease lost, the worker drops the run without writing anything, because a newer attempt owns
//! it. A run never depends on the HTTP connection that created it: it lives in the store and
//! in this pool only.

mod execute;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::registry::Registry;
use crate::storage::Storage;


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
    /// How often the dispatcher looks for work it was not woken for.
    pub poll_interval: Duration,
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
        }
    }
}

impl EngineConfig {
    /// Checks the settings against each other.
    pub fn validate(&self) -> Result<(), String> {
        if self.workers == 0 {
            return Err("workers must be at least 1".to_owned());
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
}

/// The running worker pool of one process.
#[derive(Debug)]
pub struct Workers {
    shutdown: CancellationToken,
    dispatcher: JoinHandle<()>,
}

impl Workers {
    pub(crate) fn start(shared: Arc<Shared>) -> Workers {
        let shutdown = CancellationToken::new();
        let dispatcher = tokio::spawn(dispatch(shared, shutdown.clone()));
        Workers { shutdown, dispatcher }
    }

    /// Stops claiming new runs and waits for the dispatcher to exit. Runs already executing
    /// go on until they end or the process exits; runs cut off by an exit are re-queued by the
    /// next start once their lease expires.
    pub async fn stop(self) {
        self.shutdown.cancel();
        if let Err(error) = self.dispatcher.await {
            tracing::error!(%error, "run dispatcher panicked");
        }
    }
}

async fn dispatch(shared: Arc<Shared>, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(shared.config.workers));
    let mut next_sweep = tokio::time::Instant::now();
    tracing::info!(owner = %shared.owner, workers = shared.config.workers, "run dispatcher started");

    loop {
        if tokio::time::Instant::now() >= next_sweep {
            sweep_expired(&shared).await;
            next_sweep = tokio::time::Instant::now() + shared.config.lease.min(Duration::from_secs(5));
        }

        let permit = tokio::select! {
            permit = slots.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = shutdown.cancelled() => break,
        };

        match shared.storage.claim_run(&shared.owner, shared.config.lease).await {
            Ok(Some((spec, lease))) => {
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    execute::execute(&shared, spec, lease).await;
                    drop(permit);
                });
            }
            Ok(None) => {
                drop(permit);
                tokio::select! {
                    () = shared.wake.notified() => {}
                    () = tokio::time::sleep(shared.config.poll_interval) => {}
                    () = shutdown.cancelled() => break,
                }
            }
            Err(error) => {
                drop(permit);
                tracing::error!(%error, "claiming a run failed; retrying after the poll interval");
                tokio::select! {
                    () = tokio::time::sleep(shared.config.poll_interval) => {}
                    () = shutdown.cancelled() => break,
                }
            }
        }
    }
    tracing::info!(owner = %shared.owner, "run dispatcher stopped");
}

async fn sweep_expired(shared: &Shared) {
    match shared.storage.requeue_expired(shared.config.max_attempts).await {
        Ok(report) => {
            for run_id in &report.requeued {
                tracing::warn!(%run_id, "re-queued run whose lease expired");
            }
            for run_id in &report.exhausted {
                tracing::error!(%run_id, "run interrupted too often; ended as error");
            }
        }
        Err(error) => tracing::error!(%error, "re-queueing expired runs failed"),
    }
}
