//! An in-process [`Storage`]: for embedding without a database, unit tests and benchmarks.
//!
//! Everything lives in one mutex-guarded state and is lost when the process ends. The lease
//! protocol is the same as in the durable stores, so engine behaviour tested here carries over.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use crate::message::AgentMessage;
use crate::resource::{Run, RunSpec, RunStatus, Session, Task, Team};
use crate::storage::{
    Lease, ListFilter, RequeueReport, RunFilter, RunOutcome, Storage, StorageError, StorageErrorKind,
    interrupted_outcome,
};
use crate::timestamp::Timestamp;

/// A [`Storage`] kept in memory.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    tasks: BTreeMap<Uuid, Task>,
    teams: BTreeMap<Uuid, Team>,
    sessions: BTreeMap<Uuid, Session>,
    runs: BTreeMap<Uuid, StoredRun>,
    /// `created` runs in id (and so creation) order.
    queue: BTreeSet<Uuid>,
}

#[derive(Debug)]
struct StoredRun {
    spec: RunSpec,
    lease: Option<(String, Timestamp)>,
}

impl MemoryStorage {
    /// Creates an empty store.
    pub fn new() -> MemoryStorage {
        MemoryStorage::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind, still consistent per field.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn newest<T: Clone>(rows: &BTreeMap<Uuid, T>, limit: Option<usize>) -> Vec<T> {
    rows.values().rev().take(limit.unwrap_or(usize::MAX)).cloned().collect()
}

fn insert_new<T>(rows: &mut BTreeMap<Uuid, T>, id: Uuid, row: T) -> Result<(), StorageError> {
    if rows.contains_key(&id) {
        return Err(StorageError::new(StorageErrorKind::Conflict, format!("a row with id {id} already exists")));
    }
    rows.insert(id, row);
    Ok(())
}

impl State {
    /// Returns the run if `lease` still holds it.
    fn held(&mut self, lease: &Lease) -> Result<&mut StoredRun, StorageError> {
        let run = self.runs.get_mut(&lease.run_id).ok_or_else(|| StorageError::lease_lost(lease.run_id, lease.attempt))?;
        let owner_matches = run.lease.as_ref().is_some_and(|(owner, _)| *owner == lease.owner);
        let is_held = run.spec.run.status == RunStatus::Active && run.spec.run.attempt == lease.attempt && owner_matches;
        if !is_held {
            return Err(StorageError::lease_lost(lease.run_id, lease.attempt));
        }
        Ok(run)
    }
}

#[async_trait]
impl Storage for MemoryStorage {
    async fn insert_task(&self, task: &Task) -> Result<(), StorageError> {
        insert_new(&mut self.state().tasks, task.id, task.clone())
    }

    async fn get_task(&self, id: Uuid) -> Result<Option<Task>, StorageError> {
        Ok(self.state().tasks.get(&id).cloned())
    }

    async fn list_tasks(&self, filter: &ListFilter) -> Result<Vec<Task>, StorageError> {
        Ok(newest(&self.state().tasks, filter.limit))
    }

    async fn insert_team(&self, team: &Team) -> Result<(), StorageError> {
        insert_new(&mut self.state().teams, team.id, team.clone())
    }

    async fn get_team(&self, id: Uuid) -> Result<Option<Team>, StorageError> {
        Ok(self.state().teams.get(&id).cloned())
    }

    async fn list_teams(&self, filter: &ListFilter) -> Result<Vec<Team>, StorageError> {
        Ok(newest(&self.state().teams, filter.limit))
    }

    async fn insert_session(&self, session: &Session) -> Result<(), StorageError> {
        insert_new(&mut self.state().sessions, session.id, session.clone())
    }

    async fn get_session(&self, id: Uuid) -> Result<Option<Session>, StorageError> {
        Ok(self.state().sessions.get(&id).cloned())
    }

    async fn list_sessions(&self, filter: &ListFilter) -> Result<Vec<Session>, StorageError> {
        Ok(newest(&self.state().sessions, filter.limit))
    }

    async fn insert_run(&self, spec: &RunSpec) -> Result<(), StorageError> {
        let mut state = self.state();
        let id = spec.run.id;
        insert_new(&mut state.runs, id, StoredRun { spec: spec.clone(), lease: None })?;
        if spec.run.status == RunStatus::Created {
            state.queue.insert(id);
        }
        Ok(())
    }

    async fn get_run(&self, id: Uuid) -> Result<Option<Run>, StorageError> {
        Ok(self.state().runs.get(&id).map(|stored| stored.spec.run.clone()))
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>, StorageError> {
        let state = self.state();
        let runs = state
            .runs
            .values()
            .rev()
            .filter(|stored| filter.session_id.is_none_or(|id| stored.spec.run.session_id == id))
            .take(filter.limit.unwrap_or(usize::MAX))
            .map(|stored| stored.spec.run.clone())
            .collect();
        Ok(runs)
    }

    async fn claim_run(&self, owner: &str, lease: Duration) -> Result<Option<(RunSpec, Lease)>, StorageError> {
        let mut state = self.state();
        let Some(id) = state.queue.pop_first() else {
            return Ok(None);
        };
        let Some(stored) = state.runs.get_mut(&id) else {
            return Ok(None);
        };
        let now = Timestamp::now();
        let expires_at = now.saturating_add(lease);
        stored.spec.run.status = RunStatus::Active;
        stored.spec.run.started_at = Some(now);
        stored.lease = Some((owner.to_owned(), expires_at));
        let granted = Lease { run_id: id, owner: owner.to_owned(), attempt: stored.spec.run.attempt, expires_at };
        Ok(Some((stored.spec.clone(), granted)))
    }

    async fn renew_lease(&self, lease: &Lease, duration: Duration) -> Result<Lease, StorageError> {
        let mut state = self.state();
        let stored = state.held(lease)?;
        let expires_at = Timestamp::now().saturating_add(duration);
        stored.lease = Some((lease.owner.clone(), expires_at));
        Ok(Lease { expires_at, ..lease.clone() })
    }

    async fn append_message(&self, lease: &Lease, message: &AgentMessage) -> Result<(), StorageError> {
        let mut state = self.state();
        state.held(lease)?.spec.run.messages.push(message.clone());
        Ok(())
    }

    async fn finish_run(&self, lease: &Lease, outcome: &RunOutcome) -> Result<(), StorageError> {
        let mut state = self.state();
        let stored = state.held(lease)?;
        let run = &mut stored.spec.run;
        run.status = outcome.status.clone();
        run.team_result = outcome.team_result.clone();
        run.error_message = outcome.error_message.clone();
        run.error_details = outcome.error_details.clone();
        run.finished_at = Some(outcome.finished_at);
        run.estimated_completion_time = None;
        stored.lease = None;
        Ok(())
    }

    async fn requeue_expired(&self, max_attempts: u32) -> Result<RequeueReport, StorageError> {
        let mut state = self.state();
        let now = Timestamp::now();
        let mut report = RequeueReport::default();
        let expired: Vec<Uuid> = state
            .runs
            .values()
            .filter(|stored| stored.spec.run.status == RunStatus::Active)
            .filter(|stored| stored.lease.as_ref().is_none_or(|(_, expires_at)| *expires_at <= now))
            .map(|stored| stored.spec.run.id)
            .collect();

        for id in expired {
            let Some(stored) = state.runs.get_mut(&id) else { continue };
            let run = &mut stored.spec.run;
            stored.lease = None;
            run.messages.clear();
            if run.attempt >= max_attempts {
                let outcome = interrupted_outcome(run.attempt);
                run.status = outcome.status;
                run.error_message = outcome.error_message;
                run.error_details = outcome.error_details;
                run.finished_at = Some(outcome.finished_at);
                run.estimated_completion_time = None;
                report.exhausted.push(id);
            } else {
                run.status = RunStatus::Created;
                run.attempt += 1;
                run.started_at = None;
                state.queue.insert(id);
                report.requeued.push(id);
            }
        }
        Ok(report)
    }
}
