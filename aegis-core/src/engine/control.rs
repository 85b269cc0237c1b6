//! What the rest of the process can do to the runs this process executes: stop one (cancel or
//! release to the queue), follow its token chunks, and learn that some run changed.
//!
//! Each executing run has a [`RunControl`] in the [`Running`] table for as long as its worker
//! holds the lease. Stopping a run fires its cancellation token, which the worker selects on
//! beside the team's future: the future is dropped at its next await point, which aborts an
//! in-flight model call too (dropping a request future closes its connection). The stop
//! reason says what the worker does next: finish the run as `stopped`, or hand it back to the
//! queue during shutdown.
//!
//! Change notification is a counter in a `watch` channel that every run write of this process
//! bumps. Waiters re-read the store when it moves, and poll as well, because another process
//! sharing the store bumps no counter here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::message::AgentMessage;

/// Token chunks a live follower can fall behind by before it misses some; chunks are never
/// replayed, so a slow follower only loses display pieces.
const CHUNK_BUFFER: usize = 256;

/// Why an executing run is being stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// A user cancelled the run: it ends `stopped` with this reason.
    Cancel(String),
    /// The process is shutting down: the run goes back to the queue.
    Release,
}

/// The handle of one executing run.
#[derive(Debug)]
pub(crate) struct RunControl {
    pub(crate) token: CancellationToken,
    stop: Mutex<Option<Stop>>,
    pub(crate) chunks: broadcast::Sender<AgentMessage>,
}

impl RunControl {
    /// Returns why the run was stopped, if it was.
    pub(crate) fn stop_reason(&self) -> Option<Stop> {
        lock(&self.stop).clone()
    }

    /// Stops the run. The first reason wins, so a cancel that raced a release stays a cancel
    /// only if it came first.
    fn stop(&self, reason: Stop) {
        lock(&self.stop).get_or_insert(reason);
        self.token.cancel();
    }
}

/// The runs this process executes, and the change counter.
#[derive(Debug)]
pub(crate) struct Running {
    runs: Mutex<HashMap<Uuid, Arc<RunControl>>>,
    changes: watch::Sender<u64>,
}

impl Default for Running {
    fn default() -> Running {
        Running { runs: Mutex::new(HashMap::new()), changes: watch::channel(0).0 }
    }
}

impl Running {
    /// Registers a run whose lease this process just took.
    pub(crate) fn register(&self, run_id: Uuid) -> Arc<RunControl> {
        let control = Arc::new(RunControl {
            token: CancellationToken::new(),
            stop: Mutex::new(None),
            chunks: broadcast::channel(CHUNK_BUFFER).0,
        });
        lock(&self.runs).insert(run_id, Arc::clone(&control));
        control
    }

    /// Forgets a run whose worker is done with it.
    pub(crate) fn remove(&self, run_id: Uuid) {
        lock(&self.runs).remove(&run_id);
    }

    /// Stops one run if this process executes it; returns whether it does.
    pub(crate) fn stop(&self, run_id: Uuid, reason: Stop) -> bool {
        let control = lock(&self.runs).get(&run_id).cloned();
        match control {
            Some(control) => {
                control.stop(reason);
                true
            }
            None => false,
        }
    }

    /// Stops every run this process executes.
    pub(crate) fn stop_all(&self, reason: &Stop) {
        let controls: Vec<Arc<RunControl>> = lock(&self.runs).values().cloned().collect();
        for control in controls {
            control.stop(reason.clone());
        }
    }

    /// Returns how many runs this process executes.
    pub(crate) fn len(&self) -> usize {
        lock(&self.runs).len()
    }

    /// Subscribes to the token chunks of a run this process executes.
    pub(crate) fn subscribe_chunks(&self, run_id: Uuid) -> Option<broadcast::Receiver<AgentMessage>> {
        lock(&self.runs).get(&run_id).map(|control| control.chunks.subscribe())
    }

    /// Tells waiters that some run changed.
    pub(crate) fn notify_change(&self) {
        self.changes.send_modify(|count| *count = count.wrapping_add(1));
    }

    /// Returns a receiver that wakes when some run of this process changes.
    pub(crate) fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded maps stay consistent after a panic: each operation is one insert or remove.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
