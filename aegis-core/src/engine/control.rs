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
//! Change notification is per run. A waiter subscribes to one run and is woken only when this
//! process writes that run, so a long poll or a stream re-reads its run once per change of its
//! own run, not once per change of any run. Waiters poll as well, because a write by another
//! process sharing the store wakes no waiter here. A process-wide counter also moves on every change,
//! for waiters that watch the whole pool (shutdown).

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::message::AgentMessage;

/// Token chunks a live follower can fall behind by before it misses some; chunks are never
/// replayed, so a slow follower only loses display pieces. The buffer is allocated in full
/// when the first follower subscribes, so runs without a follower (most of them) pay nothing.
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
    /// Created by the first follower: with thousands of runs in flight, a buffer per run
    /// would cost tens of KiB each for no reader.
    chunks: OnceLock<broadcast::Sender<AgentMessage>>,
}

impl RunControl {
    fn new() -> Arc<RunControl> {
        Arc::new(RunControl { token: CancellationToken::new(), stop: Mutex::new(None), chunks: OnceLock::new() })
    }

    /// Returns why the run was stopped, if it was.
    pub(crate) fn stop_reason(&self) -> Option<Stop> {
        lock(&self.stop).clone()
    }

    /// Passes a token chunk to the live followers, if there are any.
    pub(crate) fn publish_chunk(&self, message: &AgentMessage) {
        if let Some(sender) = self.chunks.get() {
            // A follower that left in the meantime is no error: chunks are never replayed.
            let _ = sender.send(message.clone());
        }
    }

    /// Subscribes to the run's token chunks from now on.
    fn subscribe_chunks(&self) -> broadcast::Receiver<AgentMessage> {
        self.chunks.get_or_init(|| broadcast::channel(CHUNK_BUFFER).0).subscribe()
    }

    /// Stops the run. The first reason wins, so a cancel that raced a release stays a cancel
    /// only if it came first.
    fn stop(&self, reason: Stop) {
        lock(&self.stop).get_or_insert(reason);
        self.token.cancel();
    }
}

/// The runs this process executes, and the change counters.
#[derive(Debug)]
pub(crate) struct Running {
    runs: Mutex<HashMap<Uuid, Arc<RunControl>>>,
    changes: watch::Sender<u64>,
    /// A counter for each run that someone waits on; an entry goes with its last waiter.
    run_changes: Arc<Mutex<HashMap<Uuid, watch::Sender<u64>>>>,
}

impl Default for Running {
    fn default() -> Running {
        Running {
            runs: Mutex::new(HashMap::new()),
            changes: watch::channel(0).0,
            run_changes: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

impl Running {
    /// Registers a run whose lease this process just took.
    pub(crate) fn register(&self, run_id: Uuid) -> Arc<RunControl> {
        let control = RunControl::new();
        lock(&self.runs).insert(run_id, Arc::clone(&control));
        control
    }

    /// Registers a run that this process is about to create and start, unless `run_id` is
    /// registered already. Two requests with one `Idempotency-Key` create the run under one
    /// id, and the second must neither replace nor later remove the first one's control.
    pub(crate) fn register_new(&self, run_id: Uuid) -> Option<Arc<RunControl>> {
        match lock(&self.runs).entry(run_id) {
            Entry::Occupied(_) => None,
            Entry::Vacant(entry) => Some(Arc::clone(entry.insert(RunControl::new()))),
        }
    }

    /// Forgets a run whose worker is done with it, or one registered by
    /// [`Running::register_new`] that did not start here. The entry is removed only while it
    /// is still `control`. A declined run waits in the queue, and the dispatcher may have
    /// claimed and registered it meanwhile. A run whose lease expired may also have been
    /// claimed again by this process while its first attempt winds down. Wakes the waiters on
    /// the pool, because a shutdown may be waiting for this run.
    pub(crate) fn unregister(&self, run_id: Uuid, control: &Arc<RunControl>) {
        {
            let mut runs = lock(&self.runs);
            if runs.get(&run_id).is_some_and(|registered| Arc::ptr_eq(registered, control)) {
                runs.remove(&run_id);
            }
        }
        self.notify_change(run_id);
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
        let control = lock(&self.runs).get(&run_id).cloned();
        control.map(|control| control.subscribe_chunks())
    }

    /// Tells the waiters of `run_id`, and those of the whole pool, that the run changed.
    pub(crate) fn notify_change(&self, run_id: Uuid) {
        if let Some(sender) = lock(&self.run_changes).get(&run_id) {
            sender.send_modify(|count| *count = count.wrapping_add(1));
        }
        // Only shutdown watches the whole pool, and it subscribes before it reads the pool's
        // state, so a change without watchers needs no wake-up, which saves one per run change.
        if self.changes.receiver_count() > 0 {
            self.changes.send_modify(|count| *count = count.wrapping_add(1));
        }
    }

    /// Returns a receiver that wakes when some run of this process changes.
    pub(crate) fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Returns a receiver that wakes when this process changes the run `run_id`.
    pub(crate) fn subscribe_run(&self, run_id: Uuid) -> RunChanges {
        let receiver = lock(&self.run_changes).entry(run_id).or_insert_with(|| watch::channel(0).0).subscribe();
        RunChanges { run_id, receiver: Some(receiver), table: Arc::clone(&self.run_changes) }
    }
}

/// A subscription to the changes of one run; dropping the last one of a run drops its counter.
#[derive(Debug)]
pub struct RunChanges {
    run_id: Uuid,
    /// Always `Some` until `drop`, which drops it while it holds the table's lock.
    receiver: Option<watch::Receiver<u64>>,
    table: Arc<Mutex<HashMap<Uuid, watch::Sender<u64>>>>,
}

impl RunChanges {
    /// Marks the changes so far as seen.
    pub fn mark_seen(&mut self) {
        if let Some(receiver) = &mut self.receiver {
            receiver.borrow_and_update();
        }
    }

    /// Waits until the run changes after the last [`RunChanges::mark_seen`]. Never returns
    /// while the run does not change, so callers select it beside a poll interval.
    pub async fn changed(&mut self) {
        // The table keeps the sender while the receiver lives, so neither early exit happens.
        // Waiting forever is what a run that never changes looks like.
        let Some(receiver) = &mut self.receiver else {
            return std::future::pending().await;
        };
        if receiver.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for RunChanges {
    fn drop(&mut self) {
        let mut table = lock(&self.table);
        // Dropping the receiver under the lock keeps two waiters that leave at once from each
        // seeing the other's receiver and both leaving the counter behind.
        self.receiver = None;
        if table.get(&self.run_id).is_some_and(|sender| sender.receiver_count() == 0) {
            table.remove(&self.run_id);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded maps stay consistent after a panic: each operation is one insert or remove.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_wakes_only_its_run() {
        let running = Running::default();
        let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
        let mut first_changes = running.subscribe_run(first);
        let mut second_changes = running.subscribe_run(second);
        first_changes.mark_seen();
        second_changes.mark_seen();

        running.notify_change(first);
        let has_changed = |changes: &RunChanges| changes.receiver.as_ref().unwrap().has_changed().unwrap();
        assert!(has_changed(&first_changes), "the changed run's waiter was not woken");
        assert!(!has_changed(&second_changes), "another run's waiter was woken");
    }

    #[test]
    fn unregister_keeps_claimed_control() {
        let running = Running::default();
        let run_id = Uuid::now_v7();
        let created = running.register_new(run_id).unwrap();
        assert!(running.register_new(run_id).is_none(), "a second create of one id replaced the first one's control");

        // The store declined the run, and the dispatcher claimed it before the POST unregistered.
        let claimed = running.register(run_id);
        running.unregister(run_id, &created);
        assert!(running.stop(run_id, Stop::Cancel("test".to_owned())), "the claimed run's control was removed");
        assert!(claimed.token.is_cancelled(), "the cancel did not reach the claimed run");
        assert!(!created.token.is_cancelled(), "the cancel reached the declined registration");
    }

    #[test]
    fn stale_attempt_keeps_new_control() {
        let running = Running::default();
        let run_id = Uuid::now_v7();
        let stale = running.register(run_id);

        // The lease expired and this process claimed the run again before the first attempt ended.
        let fresh = running.register(run_id);
        running.unregister(run_id, &stale);
        assert!(running.stop(run_id, Stop::Cancel("test".to_owned())), "the new attempt's control was removed");
        assert!(fresh.token.is_cancelled(), "the cancel did not reach the new attempt");

        running.unregister(run_id, &fresh);
        assert!(!running.stop(run_id, Stop::Cancel("test".to_owned())), "the ended attempt is still registered");
    }

    #[test]
    fn last_waiter_drops_run_counter() {
        let running = Running::default();
        let run_id = Uuid::now_v7();
        let first = running.subscribe_run(run_id);
        let second = running.subscribe_run(run_id);

        drop(first);
        assert!(lock(&running.run_changes).contains_key(&run_id), "a waiter is left, so the counter must stay");
        drop(second);
        assert!(lock(&running.run_changes).is_empty(), "the counter outlived its last waiter");
    }
}
