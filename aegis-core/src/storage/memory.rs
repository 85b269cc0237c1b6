//! An in-process [`Storage`]: for embedding without a database, unit tests and benchmarks.
//!
//! Everything lives in one mutex-guarded state and is lost when the process ends. The lease
//! protocol is the same as in the durable stores, so engine behaviour tested here carries over.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use uuid::Uuid;

use crate::component::ComponentModel;
use crate::message::AgentMessage;
use crate::resource::{BatchItem, Run, RunSpec, RunStatus, Session, Task, Team};
use crate::storage::{
    DeleteOutcome, DeleteTarget, Dependants, IdempotencyRecord, Keyset, Lease, ListFilter, Page, RequeueReport,
    RunEvent, RunEventKind, RunFilter, RunOutcome, Storage, StorageError, StorageErrorKind, interrupted_outcome,
    session_limit,
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
    /// Components of `teams` shared with the runs that snapshot them, made on the first
    /// read and dropped when the team changes or goes.
    components: HashMap<Uuid, Arc<ComponentModel>>,
    sessions: BTreeMap<Uuid, Session>,
    runs: BTreeMap<Uuid, StoredRun>,
    /// `created` runs in id (and so creation) order.
    queue: BTreeSet<Uuid>,
    counters: HashMap<(Uuid, String), u64>,
    session_states: HashMap<Uuid, Value>,
    idempotency: HashMap<(String, String), IdempotencyRecord>,
}

#[derive(Debug)]
struct StoredRun {
    spec: RunSpec,
    /// The team of the run's session when the run was accepted.
    team_id: Option<Uuid>,
    lease: Option<(String, Timestamp)>,
    cancel_reason: Option<String>,
    events: Vec<RunEvent>,
    batch_items: BTreeMap<usize, BatchItem>,
}

impl StoredRun {
    fn push_event(&mut self, kind: RunEventKind) {
        let seq = self.events.len() as u64 + 1;
        self.events.push(RunEvent { seq, kind });
    }

    fn push_status(&mut self) {
        let kind = RunEventKind::status_of(&self.spec.run);
        self.push_event(kind);
    }

    /// Ends the run with `outcome` and releases its lease.
    fn finish(&mut self, outcome: &RunOutcome) {
        outcome.apply_to(&mut self.spec.run);
        self.lease = None;
        self.cancel_reason = None;
        self.push_status();
    }

    /// Puts the run back to `created` with the next attempt and without its messages.
    fn requeue(&mut self) {
        let run = &mut self.spec.run;
        run.status = RunStatus::Created;
        run.attempt += 1;
        run.started_at = None;
        run.messages.clear();
        self.lease = None;
        self.push_status();
    }
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

/// Cuts the page of `rows` that `filter` selects, where `matches` applies the conditions.
fn list_page<T: Clone>(
    rows: &BTreeMap<Uuid, T>,
    filter: &ListFilter,
    matches: impl Fn(&T) -> bool,
    key: impl Fn(&T) -> Keyset,
) -> Page<T> {
    let selected = rows.values().filter(|row| matches(row)).cloned().collect();
    filter.page.paginate(selected, key)
}

/// Replaces the row with `id`, returning whether there was one.
fn replace<T: Clone>(rows: &mut BTreeMap<Uuid, T>, id: Uuid, row: &T) -> bool {
    let Some(stored) = rows.get_mut(&id) else {
        return false;
    };
    *stored = row.clone();
    true
}

fn run_key(run: &Run) -> Keyset {
    Keyset::new(run.created_at, run.id)
}

fn insert_new<T>(rows: &mut BTreeMap<Uuid, T>, id: Uuid, row: T) -> Result<(), StorageError> {
    if rows.contains_key(&id) {
        return Err(StorageError::new(StorageErrorKind::Conflict, format!("a row with id {id} already exists")));
    }
    rows.insert(id, row);
    Ok(())
}

impl State {
    /// Returns the rows that depend on `target`, `None` when the target does not exist.
    fn dependants(&self, target: DeleteTarget) -> Option<Dependants> {
        let sessions: Vec<Uuid> = match target {
            DeleteTarget::Task(id) => {
                self.tasks.get(&id)?;
                self.sessions.values().filter(|session| session.task_id == id).map(|session| session.id).collect()
            }
            DeleteTarget::Team(id) => {
                self.teams.get(&id)?;
                self.sessions.values().filter(|session| session.team_id == id).map(|session| session.id).collect()
            }
            DeleteTarget::Session(id) => {
                self.sessions.get(&id)?;
                Vec::new()
            }
            DeleteTarget::Run(id) => {
                self.runs.get(&id)?;
                return Some(Dependants::default());
            }
        };
        let runs = self
            .runs
            .values()
            .map(|stored| &stored.spec.run)
            .filter(|run| match target {
                DeleteTarget::Task(id) => run.task_id == id || sessions.contains(&run.session_id),
                DeleteTarget::Session(id) => run.session_id == id,
                _ => sessions.contains(&run.session_id),
            })
            .map(|run| run.id)
            .collect();
        Some(Dependants { sessions, runs })
    }

    fn remove_run(&mut self, id: Uuid) {
        self.runs.remove(&id);
        self.queue.remove(&id);
        self.idempotency.retain(|_, record| record.resource_id != id);
    }

    fn remove_session(&mut self, id: Uuid) {
        self.sessions.remove(&id);
        self.session_states.remove(&id);
        self.counters.retain(|(session_id, _), _| *session_id != id);
        self.idempotency.retain(|_, record| record.resource_id != id);
    }

    /// Stores a new run, queued when it is `created`.
    fn insert_run(&mut self, spec: &RunSpec) -> Result<(), StorageError> {
        let id = spec.run.id;
        let team_id = self.sessions.get(&spec.run.session_id).map(|session| session.team_id);
        let mut stored = StoredRun {
            spec: spec.clone(),
            team_id,
            lease: None,
            cancel_reason: None,
            events: Vec::new(),
            batch_items: BTreeMap::new(),
        };
        stored.push_status();
        insert_new(&mut self.runs, id, stored)?;
        if spec.run.status == RunStatus::Created {
            self.queue.insert(id);
        }
        Ok(())
    }

    /// Returns the oldest `created` run whose session is below its limit of active runs.
    fn next_claimable(&self) -> Option<Uuid> {
        let mut active: Option<HashMap<Uuid, u32>> = None;
        for id in &self.queue {
            let Some(stored) = self.runs.get(id) else { continue };
            let Some(limit) = session_limit(&stored.spec.team_metadata) else {
                return Some(*id);
            };
            // Counted once per claim and only when a queued run has a limit.
            let active = active.get_or_insert_with(|| {
                let mut counts = HashMap::new();
                for run in self.runs.values().filter(|run| run.spec.run.status == RunStatus::Active) {
                    *counts.entry(run.spec.run.session_id).or_insert(0) += 1;
                }
                counts
            });
            if active.get(&stored.spec.run.session_id).copied().unwrap_or(0) < limit {
                return Some(*id);
            }
        }
        None
    }

    /// Returns the run if `lease` still holds it.
    fn held(&mut self, lease: &Lease) -> Result<&mut StoredRun, StorageError> {
        let run =
            self.runs.get_mut(&lease.run_id).ok_or_else(|| StorageError::lease_lost(lease.run_id, lease.attempt))?;
        let owner_matches = run.lease.as_ref().is_some_and(|(owner, _)| *owner == lease.owner);
        let is_held =
            run.spec.run.status == RunStatus::Active && run.spec.run.attempt == lease.attempt && owner_matches;
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

    async fn list_tasks(&self, filter: &ListFilter) -> Result<Page<Task>, StorageError> {
        let matches = |task: &Task| filter.matches_common(task.archived, task.created_by_user_id.as_ref());
        Ok(list_page(&self.state().tasks, filter, matches, |task| Keyset::new(task.created_at, task.id)))
    }

    async fn insert_team(&self, team: &Team) -> Result<(), StorageError> {
        insert_new(&mut self.state().teams, team.id, team.clone())
    }

    async fn get_team(&self, id: Uuid) -> Result<Option<Team>, StorageError> {
        Ok(self.state().teams.get(&id).cloned())
    }

    async fn get_team_component(&self, id: Uuid) -> Result<Option<Arc<ComponentModel>>, StorageError> {
        let mut state = self.state();
        if let Some(component) = state.components.get(&id) {
            return Ok(Some(Arc::clone(component)));
        }
        let Some(team) = state.teams.get(&id) else {
            return Ok(None);
        };
        let component = Arc::new(team.component.clone());
        state.components.insert(id, Arc::clone(&component));
        Ok(Some(component))
    }

    async fn list_teams(&self, filter: &ListFilter) -> Result<Page<Team>, StorageError> {
        let matches = |team: &Team| filter.matches_common(team.archived, team.created_by_user_id.as_ref());
        Ok(list_page(&self.state().teams, filter, matches, |team| Keyset::new(team.created_at, team.id)))
    }

    async fn insert_session(&self, session: &Session) -> Result<(), StorageError> {
        insert_new(&mut self.state().sessions, session.id, session.clone())
    }

    async fn get_session(&self, id: Uuid) -> Result<Option<Session>, StorageError> {
        Ok(self.state().sessions.get(&id).cloned())
    }

    async fn list_sessions(&self, filter: &ListFilter) -> Result<Page<Session>, StorageError> {
        let matches = |session: &Session| filter.matches_session(session);
        Ok(list_page(&self.state().sessions, filter, matches, |session| Keyset::new(session.created_at, session.id)))
    }

    async fn update_task(&self, task: &Task) -> Result<bool, StorageError> {
        Ok(replace(&mut self.state().tasks, task.id, task))
    }

    async fn update_team(&self, team: &Team) -> Result<bool, StorageError> {
        let mut state = self.state();
        state.components.remove(&team.id);
        Ok(replace(&mut state.teams, team.id, team))
    }

    async fn update_session(&self, session: &Session) -> Result<bool, StorageError> {
        Ok(replace(&mut self.state().sessions, session.id, session))
    }

    async fn set_run_archived(&self, id: Uuid, archived: bool) -> Result<Option<Run>, StorageError> {
        let mut state = self.state();
        let Some(stored) = state.runs.get_mut(&id) else {
            return Ok(None);
        };
        stored.spec.run.archived = archived;
        Ok(Some(stored.spec.run.clone()))
    }

    async fn delete(&self, target: DeleteTarget, cascade: bool) -> Result<DeleteOutcome, StorageError> {
        let mut state = self.state();
        let Some(dependants) = state.dependants(target) else {
            return Ok(DeleteOutcome::NotFound);
        };
        if !dependants.is_empty() && !cascade {
            return Ok(DeleteOutcome::HasDependants(dependants));
        }
        let mut doomed_runs = dependants.runs.clone();
        if let DeleteTarget::Run(id) = target {
            doomed_runs.push(id);
        }
        let not_terminal: Vec<Uuid> = doomed_runs
            .iter()
            .filter(|id| state.runs.get(id).is_some_and(|stored| !stored.spec.run.status.is_terminal()))
            .copied()
            .collect();
        if !not_terminal.is_empty() {
            return Ok(DeleteOutcome::RunsNotTerminal(not_terminal));
        }

        for id in doomed_runs {
            state.remove_run(id);
        }
        for id in &dependants.sessions {
            state.remove_session(*id);
        }
        match target {
            DeleteTarget::Task(id) => {
                state.tasks.remove(&id);
            }
            DeleteTarget::Team(id) => {
                state.teams.remove(&id);
                state.components.remove(&id);
            }
            DeleteTarget::Session(id) => state.remove_session(id),
            DeleteTarget::Run(_) => {}
        }
        Ok(DeleteOutcome::Deleted(dependants))
    }

    async fn delete_finished_runs(&self, finished_before: Timestamp, limit: usize) -> Result<Vec<Uuid>, StorageError> {
        let mut state = self.state();
        let expired: Vec<Uuid> = state
            .runs
            .values()
            .map(|stored| &stored.spec.run)
            .filter(|run| run.status.is_terminal() && run.finished_at.is_some_and(|at| at < finished_before))
            .map(|run| run.id)
            .take(limit)
            .collect();
        for id in &expired {
            state.remove_run(*id);
        }
        Ok(expired)
    }

    async fn insert_run(&self, spec: &RunSpec) -> Result<(), StorageError> {
        self.state().insert_run(spec)
    }

    async fn insert_run_claimed(
        &self,
        spec: &RunSpec,
        lease: &Lease,
        started_at: Timestamp,
    ) -> Result<bool, StorageError> {
        let mut state = self.state();
        state.insert_run(spec)?;
        let id = spec.run.id;
        if state.queue.len() != 1 || state.next_claimable() != Some(id) {
            return Ok(false);
        }
        state.queue.remove(&id);
        let Some(stored) = state.runs.get_mut(&id) else {
            return Ok(false);
        };
        stored.spec.run.status = RunStatus::Active;
        stored.spec.run.started_at = Some(started_at);
        stored.spec.run.attempt = lease.attempt;
        stored.lease = Some((lease.owner.clone(), lease.expires_at));
        stored.push_status();
        Ok(true)
    }

    async fn get_run(&self, id: Uuid) -> Result<Option<Run>, StorageError> {
        Ok(self.state().runs.get(&id).map(|stored| stored.spec.run.clone()))
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Page<Run>, StorageError> {
        let state = self.state();
        let selected = state
            .runs
            .values()
            .filter(|stored| filter.matches(&stored.spec.run) && filter.page.admits(&run_key(&stored.spec.run)))
            .map(|stored| stored.spec.run.clone())
            .collect();
        Ok(filter.page.paginate(selected, run_key))
    }

    async fn count_queued_before(&self, created_at: Timestamp, id: Uuid) -> Result<u64, StorageError> {
        let state = self.state();
        let key = Keyset::new(created_at, id);
        let ahead = state
            .queue
            .iter()
            .filter_map(|queued| state.runs.get(queued))
            .filter(|stored| run_key(&stored.spec.run) < key)
            .count();
        Ok(ahead as u64)
    }

    async fn recent_run_durations(&self, team_id: Option<Uuid>, limit: usize) -> Result<Vec<Duration>, StorageError> {
        let state = self.state();
        let mut finished: Vec<(Timestamp, Duration)> = state
            .runs
            .values()
            .filter(|stored| team_id.is_none() || stored.team_id == team_id)
            .filter(|stored| matches!(stored.spec.run.status, RunStatus::Complete | RunStatus::Error))
            .filter_map(|stored| {
                let run = &stored.spec.run;
                let (started_at, finished_at) = (run.started_at?, run.finished_at?);
                Some((finished_at, finished_at.duration_since(started_at)))
            })
            .collect();
        finished.sort_by_key(|(finished_at, _)| std::cmp::Reverse(*finished_at));
        Ok(finished.into_iter().take(limit).map(|(_, duration)| duration).collect())
    }

    async fn claim_run(&self, owner: &str, lease: Duration) -> Result<Option<(RunSpec, Lease)>, StorageError> {
        let mut state = self.state();
        let Some(id) = state.next_claimable() else {
            return Ok(None);
        };
        state.queue.remove(&id);
        let Some(stored) = state.runs.get_mut(&id) else {
            return Ok(None);
        };
        let now = Timestamp::now();
        let expires_at = now.saturating_add(lease);
        stored.spec.run.status = RunStatus::Active;
        stored.spec.run.started_at = Some(now);
        stored.lease = Some((owner.to_owned(), expires_at));
        stored.push_status();
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
        let stored = state.held(lease)?;
        stored.spec.run.messages.push(message.clone());
        stored.push_event(RunEventKind::Message { attempt: lease.attempt, message: Box::new(message.clone()) });
        Ok(())
    }

    async fn finish_run(&self, lease: &Lease, outcome: &RunOutcome) -> Result<(), StorageError> {
        let mut state = self.state();
        let stored = state.held(lease)?;
        stored.finish(outcome);
        let session_id = stored.spec.run.session_id;
        if let Some(team_state) = &outcome.session_state {
            state.session_states.insert(session_id, team_state.clone());
        }
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
            if let Some(reason) = stored.cancel_reason.clone() {
                let outcome = RunOutcome::stopped(&reason, stored.spec.run.messages.clone(), None);
                stored.finish(&outcome);
                report.stopped.push(id);
            } else if stored.spec.run.attempt >= max_attempts {
                stored.spec.run.messages.clear();
                stored.finish(&interrupted_outcome(stored.spec.run.attempt));
                report.exhausted.push(id);
            } else {
                stored.requeue();
                state.queue.insert(id);
                report.requeued.push(id);
            }
        }
        Ok(report)
    }

    async fn release_run(&self, lease: &Lease) -> Result<(), StorageError> {
        let mut state = self.state();
        state.held(lease)?.requeue();
        state.queue.insert(lease.run_id);
        Ok(())
    }

    async fn request_cancel(&self, run_id: Uuid, reason: &str) -> Result<Option<Run>, StorageError> {
        let mut state = self.state();
        let Some(stored) = state.runs.get_mut(&run_id) else {
            return Ok(None);
        };
        match stored.spec.run.status {
            RunStatus::Created => {
                stored.finish(&RunOutcome::stopped(reason, Vec::new(), None));
                let run = stored.spec.run.clone();
                state.queue.remove(&run_id);
                Ok(Some(run))
            }
            RunStatus::Active => {
                stored.cancel_reason.get_or_insert_with(|| reason.to_owned());
                Ok(Some(stored.spec.run.clone()))
            }
            _ => Ok(Some(stored.spec.run.clone())),
        }
    }

    async fn cancel_requests(&self, owner: &str) -> Result<Vec<(Uuid, String)>, StorageError> {
        let state = self.state();
        let requests = state
            .runs
            .values()
            .filter(|stored| stored.spec.run.status == RunStatus::Active)
            .filter(|stored| stored.lease.as_ref().is_some_and(|(holder, _)| holder == owner))
            .filter_map(|stored| stored.cancel_reason.clone().map(|reason| (stored.spec.run.id, reason)))
            .collect();
        Ok(requests)
    }

    async fn list_run_events(&self, run_id: Uuid, after: u64, limit: usize) -> Result<Vec<RunEvent>, StorageError> {
        let state = self.state();
        let Some(stored) = state.runs.get(&run_id) else {
            return Ok(Vec::new());
        };
        let events = stored.events.iter().filter(|event| event.seq > after).take(limit).cloned().collect();
        Ok(events)
    }

    async fn next_session_counter(&self, session_id: Uuid, counter: &str) -> Result<u64, StorageError> {
        let mut state = self.state();
        let value = state.counters.entry((session_id, counter.to_owned())).or_insert(0);
        let current = *value;
        *value += 1;
        Ok(current)
    }

    async fn session_state(&self, session_id: Uuid) -> Result<Option<Value>, StorageError> {
        Ok(self.state().session_states.get(&session_id).cloned())
    }

    async fn put_idempotency_key(&self, record: &IdempotencyRecord) -> Result<IdempotencyRecord, StorageError> {
        let mut state = self.state();
        let key = (record.scope.clone(), record.key.clone());
        Ok(state.idempotency.entry(key).or_insert_with(|| record.clone()).clone())
    }

    async fn save_batch_item(&self, lease: &Lease, item: &BatchItem) -> Result<(), StorageError> {
        let mut state = self.state();
        state.held(lease)?.batch_items.insert(item.index, item.clone());
        Ok(())
    }

    async fn batch_items(&self, run_id: Uuid) -> Result<Vec<BatchItem>, StorageError> {
        let state = self.state();
        let items = state.runs.get(&run_id).map(|stored| stored.batch_items.values().cloned().collect());
        Ok(items.unwrap_or_default())
    }

    async fn tokens_used_by(&self, user_id: &str) -> Result<u64, StorageError> {
        let state = self.state();
        let total = state
            .runs
            .values()
            .map(|stored| &stored.spec.run)
            .filter(|run| run.created_by_user_id.as_deref() == Some(user_id))
            .filter_map(|run| run.team_result.as_ref())
            .map(|result| result.usage.prompt_tokens.saturating_add(result.usage.completion_tokens))
            .fold(0_u64, u64::saturating_add);
        Ok(total)
    }

    async fn ready(&self) -> Result<(), StorageError> {
        // Memory has no connection to lose and no schema to migrate.
        Ok(())
    }

    async fn count_runs(&self, status: RunStatus) -> Result<u64, StorageError> {
        let state = self.state();
        let count = state.runs.values().filter(|stored| stored.spec.run.status == status).count();
        Ok(u64::try_from(count).unwrap_or(u64::MAX))
    }

    fn shared_with_other_processes(&self) -> bool {
        // Only this process writes the store, and it wakes the waiters of every run it changes.
        false
    }
}
