//! [`Aegis`]: the service API over a store, a registry and the run engine.
//!
//! Everything the REST API offers is a method here, so an application that embeds Aegis gets
//! the same validation and the same guarantees as a client of the bundled server.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::component::ComponentModel;
use crate::engine::control::{RunChanges, Stop};
use crate::engine::estimate::Estimator;
use crate::engine::{self, EngineConfig, Shared, Workers};
use crate::error::join_path;
use crate::error::{Error, FieldError, ResourceKind};
use crate::message::AgentMessage;
use crate::model::stub;
use crate::registry::Registry;
use crate::resource::{
    NewRun, NewSession, NewTask, NewTeam, Run, RunDocument, RunPatch, RunSpec, RunStatus, Session, SessionPatch, Task,
    TaskMessageType, TaskPatch, Team, TeamPatch,
};
use crate::secret::restore_masked;
use crate::storage::page::paginate_positions;
use crate::storage::{
    DEFAULT_CANCEL_REASON, DeleteOutcome, DeleteTarget, Dependants, IdempotencyRecord, Lease, ListFilter, Page,
    PageRequest, RunEvent, RunFilter, Storage, StorageError, StorageErrorKind, StoredRun, session_limit,
};
use crate::timestamp::Timestamp;

/// The longest a `wait` for a run may last.
pub const MAX_WAIT: Duration = Duration::from_secs(60);

/// How often a waiter re-reads the store when nothing in this process woke it, which bounds
/// how late it sees changes made by another process sharing the store.
// NOTE: a waiter on one replica learns up to this late that another replica finished its run,
// and under load that delay dominates cross-replica latency. A store-level change feed
// (PostgreSQL's LISTEN/NOTIFY) would wake it at once and could replace the poll.
const WAIT_POLL: Duration = Duration::from_millis(500);

/// The same for a store no other process writes: every change wakes its waiters, so the poll
/// is only a safety net. Polling at [`WAIT_POLL`] there would cost two store reads a second
/// per waiter, which dominates the CPU time with thousands of long polls open.
const LOCAL_WAIT_POLL: Duration = Duration::from_secs(5);

/// How long a cancel waits for an active run to end before it returns the run as it is.
const CANCEL_WAIT: Duration = Duration::from_secs(10);

/// The seconds a client is told to wait before retrying a run rejected during shutdown.
const RETRY_AFTER_SHUTDOWN_S: u64 = 5;

/// The longest `team_metadata.run_timeout_s`: one day, in seconds.
const MAX_RUN_TIMEOUT_S: f64 = 86_400.0;

/// Whether an `Idempotency-Key` was seen before.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdempotentRequest {
    /// First use: create the resource with this id.
    New(Uuid),
    /// A retry of an earlier request with an equal body: return (or, if its creation failed,
    /// create) the resource with this id.
    Repeat(Uuid),
}

/// An Aegis instance: resources, validation and the run engine over one store.
///
/// Cloning is cheap and every clone refers to the same instance.
#[derive(Clone)]
pub struct Aegis {
    shared: Arc<Shared>,
    estimator: Arc<Estimator>,
}

impl std::fmt::Debug for Aegis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aegis")
            .field("owner", &self.shared.owner)
            .field("config", &self.shared.config)
            .finish_non_exhaustive()
    }
}

impl Aegis {
    /// Creates an instance. Call [`Aegis::start`] to execute runs.
    pub fn new(storage: Arc<dyn Storage>, registry: Registry, config: EngineConfig) -> Result<Aegis, String> {
        config.validate()?;
        let owner = format!("worker-{}", Uuid::now_v7());
        let estimator = Arc::new(Estimator::new(config.workers));
        let shared = Shared::new(storage, registry, config, owner);
        Ok(Aegis { shared: Arc::new(shared), estimator })
    }

    /// Starts the worker pool. Runs created before the start are picked up too.
    pub fn start(&self) -> Workers {
        Workers::start(Arc::clone(&self.shared))
    }

    /// Returns the store.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.shared.storage
    }

    /// Returns the registry.
    pub fn registry(&self) -> &Registry {
        &self.shared.registry
    }

    /// Creates a task.
    pub async fn create_task(&self, new: NewTask) -> Result<Task, Error> {
        self.create_task_with_id(Uuid::now_v7(), new).await
    }

    /// Creates a task with a given id (one an [`IdempotentRequest`] reserved).
    pub async fn create_task_with_id(&self, id: Uuid, new: NewTask) -> Result<Task, Error> {
        if new.name.trim().is_empty() {
            return Err(Error::Invalid(vec![
                FieldError::new("name", "empty", "name must not be empty")
                    .with_fix("give the task a name, such as \"Automarking Task\""),
            ]));
        }
        let now = Timestamp::now();
        let task = Task {
            id,
            name: new.name,
            description: new.description,
            version: new.version,
            created_by_user_id: new.created_by_user_id,
            archived: new.archived,
            created_at: now,
            updated_at: now,
        };
        self.shared.storage.insert_task(&task).await?;
        Ok(task)
    }

    /// Reads a task.
    pub async fn get_task(&self, id: Uuid) -> Result<Task, Error> {
        let task = self.shared.storage.get_task(id).await?;
        task.ok_or(Error::NotFound { kind: ResourceKind::Task, id, field: "id".to_owned() })
    }

    /// Lists the page of tasks that `filter` selects.
    pub async fn list_tasks(&self, filter: &ListFilter) -> Result<Page<Task>, Error> {
        check_keyset_cursor(&filter.page)?;
        Ok(self.shared.storage.list_tasks(filter).await?)
    }

    /// Validates a team component, returning every problem with its path under `component`.
    pub fn validate_team(&self, component: &crate::component::ComponentModel) -> Vec<FieldError> {
        self.shared.registry.validate_team(component).into_iter().map(|problem| problem.under("component")).collect()
    }

    /// Creates a team after checking that its component builds.
    pub async fn create_team(&self, new: NewTeam) -> Result<Team, Error> {
        self.create_team_with_id(Uuid::now_v7(), new).await
    }

    /// Creates a team with a given id (one an [`IdempotentRequest`] reserved).
    pub async fn create_team_with_id(&self, id: Uuid, new: NewTeam) -> Result<Team, Error> {
        let problems = self.validate_team(&new.component);
        if !problems.is_empty() {
            return Err(Error::Invalid(problems));
        }
        let now = Timestamp::now();
        let team = Team {
            id,
            name: new.name.or_else(|| new.component.label.clone()),
            description: new.description.or_else(|| new.component.description.clone()),
            component: new.component,
            created_by_user_id: new.created_by_user_id,
            archived: new.archived,
            created_at: now,
            updated_at: now,
        };
        self.shared.storage.insert_team(&team).await?;
        Ok(team)
    }

    /// Reads a team.
    pub async fn get_team(&self, id: Uuid) -> Result<Team, Error> {
        let team = self.shared.storage.get_team(id).await?;
        team.ok_or(Error::NotFound { kind: ResourceKind::Team, id, field: "id".to_owned() })
    }

    /// Lists the page of teams that `filter` selects.
    pub async fn list_teams(&self, filter: &ListFilter) -> Result<Page<Team>, Error> {
        check_keyset_cursor(&filter.page)?;
        Ok(self.shared.storage.list_teams(filter).await?)
    }

    /// Creates a session after checking that its task and team exist.
    pub async fn create_session(&self, new: NewSession) -> Result<Session, Error> {
        self.create_session_with_id(Uuid::now_v7(), new).await
    }

    /// Creates a session with a given id (one an [`IdempotentRequest`] reserved).
    pub async fn create_session_with_id(&self, id: Uuid, new: NewSession) -> Result<Session, Error> {
        let problems = validate_team_metadata(&new.team_metadata);
        if !problems.is_empty() {
            return Err(Error::Invalid(problems));
        }
        if self.shared.storage.get_task(new.task_id).await?.is_none() {
            return Err(Error::NotFound { kind: ResourceKind::Task, id: new.task_id, field: "task_id".to_owned() });
        }
        if self.shared.storage.get_team(new.team_id).await?.is_none() {
            return Err(Error::NotFound { kind: ResourceKind::Team, id: new.team_id, field: "team_id".to_owned() });
        }
        let now = Timestamp::now();
        let session = Session {
            id,
            task_id: new.task_id,
            team_id: new.team_id,
            name: new.name,
            created_by_user_id: new.created_by_user_id,
            archived: new.archived,
            team_metadata: new.team_metadata,
            created_at: now,
            updated_at: now,
        };
        self.shared.storage.insert_session(&session).await?;
        Ok(session)
    }

    /// Reads a session.
    pub async fn get_session(&self, id: Uuid) -> Result<Session, Error> {
        let session = self.shared.storage.get_session(id).await?;
        session.ok_or(Error::NotFound { kind: ResourceKind::Session, id, field: "id".to_owned() })
    }

    /// Lists the page of sessions that `filter` selects.
    pub async fn list_sessions(&self, filter: &ListFilter) -> Result<Page<Session>, Error> {
        check_keyset_cursor(&filter.page)?;
        Ok(self.shared.storage.list_sessions(filter).await?)
    }

    /// Accepts a run: validates it, stores it durably with snapshots of the team component and
    /// the session's `team_metadata`, and starts it on a free worker or wakes the dispatcher.
    /// Returns without waiting for the run to execute. The returned run is `created`, or
    /// `active` when it started here.
    pub async fn create_run(&self, new: NewRun) -> Result<Run, Error> {
        self.create_run_with_id(Uuid::now_v7(), new).await
    }

    /// Accepts a run with a given id (one an [`IdempotentRequest`] reserved); see
    /// [`Aegis::create_run`]. Fails with [`Error::Unavailable`] once shutdown began.
    pub async fn create_run_with_id(&self, id: Uuid, new: NewRun) -> Result<Run, Error> {
        if self.shared.is_draining() {
            return Err(Error::Unavailable {
                message: "the server is shutting down and accepts no new runs".to_owned(),
                retry_after_s: RETRY_AFTER_SHUTDOWN_S,
            });
        }
        let Some(session) = self.shared.storage.get_session(new.session_id).await? else {
            return Err(Error::NotFound {
                kind: ResourceKind::Session,
                id: new.session_id,
                field: "session_id".to_owned(),
            });
        };
        let mut problems = validate_run(&new);
        if new.task_id != session.task_id {
            problems.push(
                FieldError::new(
                    "task_id",
                    "mismatch",
                    format!(
                        "task {} is not the task of session {} (which is {})",
                        new.task_id, session.id, session.task_id
                    ),
                )
                .with_fix(format!("send task_id {} or use a session of task {}", session.task_id, new.task_id)),
            );
        }
        if !problems.is_empty() {
            return Err(Error::Invalid(problems));
        }
        let Some(team_component) = self.shared.storage.get_team_component(session.team_id).await? else {
            return Err(Error::NotFound {
                kind: ResourceKind::Team,
                id: session.team_id,
                field: "session_id".to_owned(),
            });
        };

        // The stub's position is taken now, so concurrent runs get different positions and a
        // re-queued run keeps its own. A position taken by a run whose insert then fails is
        // skipped.
        let model = session.team_metadata.get("model").and_then(Value::as_str);
        let stub_error_step = match stub::is_selected(model) {
            true => Some(self.shared.storage.next_session_counter(session.id, stub::MODEL).await?),
            false => None,
        };

        let run = Run {
            id,
            session_id: new.session_id,
            task_id: new.task_id,
            run_task: new.run_task,
            batch_mode: new.batch_mode,
            created_by_user_id: new.created_by_user_id,
            archived: new.archived,
            status: RunStatus::Created,
            attempt: 1,
            team_result: None,
            error_message: None,
            error_details: None,
            created_at: Timestamp::now(),
            started_at: None,
            finished_at: None,
            estimated_completion_time: None,
            messages: Vec::new(),
        };
        let spec = RunSpec { run, team_component, team_metadata: session.team_metadata, stub_error_step };
        let mut run = self.admit(spec).await?;
        tracing::debug!(run_id = %run.id, session_id = %run.session_id, status = run.status.as_str(), "run accepted");
        self.estimator.fill(self.shared.storage.as_ref(), &mut run).await;
        Ok(run)
    }

    /// Stores a new run and returns it as stored. With a worker slot free, the store is asked
    /// to claim the run in the same write, and the run starts here at once. That saves the
    /// dispatcher's claim round, a second write of the run and the wait for both. Without a
    /// free slot, or when the store declines (another run waits in the queue, or the session
    /// is at its limit), the run waits in the queue for the dispatcher.
    async fn admit(&self, mut spec: RunSpec) -> Result<Run, Error> {
        // A session with a limit on its active runs starts them in creation order, which only
        // the queue keeps: a run started here could pass an older run of the same session
        // whose insert has not reached the store yet.
        if session_limit(&spec.team_metadata).is_some() {
            return self.enqueue(spec).await;
        }
        let Some(slot) = self.shared.free_slot() else {
            return self.enqueue(spec).await;
        };

        // Registered before the draining check, so that a shutdown beginning meanwhile either
        // finds the run among those it waits for or is seen here. An id that is registered
        // already belongs to a concurrent request with the same `Idempotency-Key`. This request
        // then inserts the run queued, and the store keeps whichever insert comes first.
        let id = spec.run.id;
        let Some(control) = self.shared.running.register_new(id) else {
            return self.enqueue(spec).await;
        };
        if self.shared.is_draining() {
            self.shared.running.unregister(id, &control);
            return self.enqueue(spec).await;
        }

        let started_at = Timestamp::now();
        let lease = Lease {
            run_id: id,
            owner: self.shared.owner.clone(),
            attempt: spec.run.attempt,
            expires_at: started_at.saturating_add(self.shared.config.lease),
        };
        let claimed = match self.shared.storage.insert_run_claimed(&spec, &lease, started_at).await {
            Ok(claimed) => claimed,
            Err(error) => {
                self.shared.running.unregister(id, &control);
                return Err(error.into());
            }
        };
        if !claimed {
            self.shared.running.unregister(id, &control);
            self.shared.wake.notify_one();
            return Ok(spec.run);
        }

        spec.run.status = RunStatus::Active;
        spec.run.started_at = Some(started_at);
        let run = spec.run.clone();
        engine::spawn_run(&self.shared, spec, lease, control, slot);
        Ok(run)
    }

    /// Stores a new run in the queue and wakes the dispatcher.
    async fn enqueue(&self, spec: RunSpec) -> Result<Run, Error> {
        self.shared.storage.insert_run(&spec).await?;
        self.shared.wake.notify_one();
        Ok(spec.run)
    }

    /// Cancels a run: a `created` run ends `stopped` without starting, an `active` run is
    /// aborted (its in-flight model call too) and ends `stopped` with the messages it
    /// produced. `reason` (default "cancelled by user") becomes the `stop_reason`. A
    /// terminal run is returned unchanged. Waits a bounded time for an active run to end.
    pub async fn cancel_run(&self, id: Uuid, reason: Option<String>) -> Result<Run, Error> {
        let reason =
            reason.filter(|reason| !reason.trim().is_empty()).unwrap_or_else(|| DEFAULT_CANCEL_REASON.to_owned());
        let Some(run) = self.shared.storage.request_cancel(id, &reason).await? else {
            return Err(Error::NotFound { kind: ResourceKind::Run, id, field: "id".to_owned() });
        };
        self.shared.running.notify_change(id);
        if run.status != RunStatus::Active {
            tracing::info!(run_id = %id, status = run.status.as_str(), "cancel request answered without stopping a worker");
            return Ok(self.with_estimate(run).await);
        }

        // The local worker stops at once; a worker in another process learns of the request
        // at its next poll of the store.
        let local = self.shared.running.stop(id, Stop::Cancel(reason));
        tracing::info!(run_id = %id, session_id = %run.session_id, attempt = run.attempt, local, "cancel requested");
        self.wait_run(id, CANCEL_WAIT).await
    }

    /// Waits as [`Aegis::wait_run`] does and returns the run encoded as the API returns it.
    pub async fn wait_run_document(&self, id: Uuid, timeout: Duration) -> Result<RunDocument, Error> {
        encode_run(&self.wait_run(id, timeout).await?)
    }

    /// Returns the run once it is terminal, or as it is after `timeout` (at most
    /// [`MAX_WAIT`]), or when the service shuts down.
    pub async fn wait_run(&self, id: Uuid, timeout: Duration) -> Result<Run, Error> {
        let deadline = tokio::time::Instant::now() + timeout.min(MAX_WAIT);
        let mut changes = self.shared.running.subscribe_run(id);
        loop {
            changes.mark_seen();
            let run = self.read_run(id).await?;
            if run.status.is_terminal() || tokio::time::Instant::now() >= deadline {
                return Ok(self.with_estimate(run).await);
            }
            tokio::select! {
                () = changes.changed() => {}
                () = tokio::time::sleep(self.change_poll_interval()) => {}
                () = tokio::time::sleep_until(deadline) => {}
                () = self.shared.closed.cancelled() => return Ok(self.with_estimate(run).await),
            }
        }
    }

    /// Returns how often a waiter on a run re-reads the store when this process reported no
    /// change: often when other processes share the store, rarely when none does.
    pub fn change_poll_interval(&self) -> Duration {
        match self.shared.storage.shared_with_other_processes() {
            true => WAIT_POLL,
            false => LOCAL_WAIT_POLL,
        }
    }

    /// Returns up to `limit` stored events of a run after sequence number `after`.
    pub async fn run_events(&self, id: Uuid, after: u64, limit: usize) -> Result<Vec<RunEvent>, Error> {
        Ok(self.shared.storage.list_run_events(id, after, limit).await?)
    }

    /// Subscribes to the token chunks of a run while this process executes it; chunks are
    /// never stored or replayed.
    pub fn subscribe_chunks(&self, id: Uuid) -> Option<broadcast::Receiver<AgentMessage>> {
        self.shared.running.subscribe_chunks(id)
    }

    /// Returns a receiver that wakes whenever a run of this process changes. Changes made by
    /// another process sharing the store do not wake it, so followers poll as well.
    pub fn subscribe_changes(&self) -> watch::Receiver<u64> {
        self.shared.running.subscribe_changes()
    }

    /// Returns a subscription that wakes whenever this process changes the run `id`. Changes
    /// made by another process sharing the store do not wake it, so followers poll as well.
    pub fn subscribe_run_changes(&self, id: Uuid) -> RunChanges {
        self.shared.running.subscribe_run(id)
    }

    /// Returns a token that fires once shutdown has handed every run back, when streams and
    /// long polls should end.
    pub fn closed(&self) -> CancellationToken {
        self.shared.closed.clone()
    }

    /// Returns whether shutdown began.
    pub fn is_draining(&self) -> bool {
        self.shared.is_draining()
    }

    /// Records the first use of `key` for the operation `scope` with request body `request`,
    /// or recognises a retry. A retry whose body differs from the first one is invalid.
    pub async fn idempotent_request(
        &self,
        scope: &str,
        key: &str,
        request: &Value,
    ) -> Result<IdempotentRequest, Error> {
        if key.is_empty() || key.len() > 255 {
            return Err(Error::Invalid(vec![
                FieldError::new(
                    "Idempotency-Key",
                    "invalid_value",
                    format!("the key must be 1 to 255 characters long, got {}", key.len()),
                )
                .with_fix("send a unique string such as a UUID"),
            ]));
        }
        let text = serde_json::to_string(request).unwrap_or_default();
        let record = IdempotencyRecord::new(scope, key, text, Uuid::now_v7());
        let stored = self.shared.storage.put_idempotency_key(&record).await?;
        if stored.resource_id == record.resource_id {
            return Ok(IdempotentRequest::New(stored.resource_id));
        }

        // JSON objects compare regardless of key order.
        let first: Value = serde_json::from_str(&stored.request).unwrap_or(Value::Null);
        if first != *request {
            return Err(Error::Invalid(vec![
                FieldError::new(
                    "Idempotency-Key",
                    "idempotency_key_reused",
                    format!("the key {key:?} was already used with a different request body"),
                )
                .with_fix("send the same body as the first request, or use a new key for a new request"),
            ]));
        }
        Ok(IdempotentRequest::Repeat(stored.resource_id))
    }

    /// Changes the fields of a task that `patch` sets.
    pub async fn update_task(&self, id: Uuid, patch: TaskPatch) -> Result<Task, Error> {
        let mut task = self.get_task(id).await?;
        if let Some(name) = patch.name {
            if name.trim().is_empty() {
                return Err(Error::Invalid(vec![
                    FieldError::new("name", "empty", "name must not be empty")
                        .with_fix("give the task a name, or leave name out to keep it"),
                ]));
            }
            task.name = name;
        }
        task.description = patch.description.or(task.description);
        task.version = patch.version.or(task.version);
        task.archived = patch.archived.unwrap_or(task.archived);
        task.updated_at = Timestamp::now();

        if !self.shared.storage.update_task(&task).await? {
            return Err(Error::NotFound { kind: ResourceKind::Task, id, field: "id".to_owned() });
        }
        Ok(task)
    }

    /// Changes the fields of a team that `patch` sets. A new component must build, and the
    /// secrets it sends back masked keep their stored values.
    pub async fn update_team(&self, id: Uuid, patch: TeamPatch) -> Result<Team, Error> {
        let mut team = self.get_team(id).await?;
        if let Some(mut component) = patch.component {
            let stored = serde_json::to_value(&team.component).unwrap_or(Value::Null);
            restore_masked(&mut component, &stored);
            let component: ComponentModel = serde_path_to_error::deserialize(component).map_err(|error| {
                let path = error.path().to_string();
                let path = join_path("component", if path == "." { "" } else { &path });
                Error::Invalid(vec![
                    FieldError::new(path, "invalid_type", error.into_inner().to_string())
                        .with_fix("send an AutoGen component object with provider and config"),
                ])
            })?;
            let problems = self.validate_team(&component);
            if !problems.is_empty() {
                return Err(Error::Invalid(problems));
            }
            team.component = component;
        }
        team.name = patch.name.or(team.name);
        team.description = patch.description.or(team.description);
        team.archived = patch.archived.unwrap_or(team.archived);
        team.updated_at = Timestamp::now();

        if !self.shared.storage.update_team(&team).await? {
            return Err(Error::NotFound { kind: ResourceKind::Team, id, field: "id".to_owned() });
        }
        Ok(team)
    }

    /// Changes the fields of a session that `patch` sets. Secrets in `team_metadata` sent back
    /// masked keep their stored values.
    pub async fn update_session(&self, id: Uuid, patch: SessionPatch) -> Result<Session, Error> {
        let mut session = self.get_session(id).await?;
        if let Some(metadata) = patch.team_metadata {
            let mut metadata = Value::Object(metadata);
            restore_masked(&mut metadata, &Value::Object(session.team_metadata.clone()));
            let Value::Object(metadata) = metadata else {
                return Err(Error::Invalid(vec![FieldError::new(
                    "team_metadata",
                    "invalid_type",
                    "expected an object",
                )]));
            };
            let problems = validate_team_metadata(&metadata);
            if !problems.is_empty() {
                return Err(Error::Invalid(problems));
            }
            session.team_metadata = metadata;
        }
        session.name = patch.name.or(session.name);
        session.archived = patch.archived.unwrap_or(session.archived);
        session.updated_at = Timestamp::now();

        if !self.shared.storage.update_session(&session).await? {
            return Err(Error::NotFound { kind: ResourceKind::Session, id, field: "id".to_owned() });
        }
        Ok(session)
    }

    /// Archives or restores a run; the only change a client may make to a run.
    pub async fn update_run(&self, id: Uuid, patch: RunPatch) -> Result<Run, Error> {
        let Some(archived) = patch.archived else {
            return self.get_run(id).await;
        };
        let run = self.shared.storage.set_run_archived(id, archived).await?;
        let run = run.ok_or(Error::NotFound { kind: ResourceKind::Run, id, field: "id".to_owned() })?;
        Ok(self.with_estimate(run).await)
    }

    /// Deletes a task, team, session or run. Rows that depend on it (sessions, runs) make it
    /// a [`Error::Conflict`] unless `cascade` is true, and so does a run that would go and is
    /// not terminal (cancel it first). Returns what went with the target.
    pub async fn delete(&self, target: DeleteTarget, cascade: bool) -> Result<Dependants, Error> {
        let (kind, id) = match target {
            DeleteTarget::Task(id) => (ResourceKind::Task, id),
            DeleteTarget::Team(id) => (ResourceKind::Team, id),
            DeleteTarget::Session(id) => (ResourceKind::Session, id),
            DeleteTarget::Run(id) => (ResourceKind::Run, id),
        };

        match self.shared.storage.delete(target, cascade).await? {
            DeleteOutcome::Deleted(dependants) => {
                tracing::info!(%kind, %id, sessions = dependants.sessions.len(), runs = dependants.runs.len(), "deleted");
                Ok(dependants)
            }
            DeleteOutcome::NotFound => Err(Error::NotFound { kind, id, field: "id".to_owned() }),
            DeleteOutcome::HasDependants(dependants) => {
                let message = format!("{kind} {id} is used by {}", describe_dependants(&dependants));
                let problem = FieldError::new("id", "has_dependants", &message).with_fix(
                    "delete the dependants first, or repeat the request with ?cascade=true to delete them with it",
                );
                Err(Error::Conflict { message, errors: vec![problem] })
            }
            DeleteOutcome::RunsNotTerminal(runs) => {
                let message = format!("{kind} {id} cannot be deleted while runs are not finished: {}", list_ids(&runs));
                let problem = FieldError::new("id", "run_not_terminal", &message)
                    .with_fix("cancel the runs (POST /run/{id}/cancel) or wait until they end, then delete again");
                Err(Error::Conflict { message, errors: vec![problem] })
            }
        }
    }

    /// Deletes up to `limit` terminal runs that finished more than `age` ago, with their
    /// messages, and returns their ids.
    pub async fn delete_runs_older_than(&self, age: Duration, limit: usize) -> Result<Vec<Uuid>, Error> {
        let now = Timestamp::now().as_datetime();
        let cutoff = time::Duration::try_from(age).ok().and_then(|age| now.checked_sub(age));
        // An age reaching past the earliest representable time leaves no run old enough.
        let Some(cutoff) = cutoff else {
            return Ok(Vec::new());
        };
        Ok(self.shared.storage.delete_finished_runs(Timestamp::from_datetime(cutoff), limit).await?)
    }

    /// Reads a run with the messages produced so far and its `estimated_completion_time`.
    pub async fn get_run(&self, id: Uuid) -> Result<Run, Error> {
        let run = self.read_run(id).await?;
        Ok(self.with_estimate(run).await)
    }

    /// Reads a run as stored, without computing its estimate.
    async fn read_run(&self, id: Uuid) -> Result<Run, Error> {
        let run = self.shared.storage.get_run(id).await?;
        run.ok_or(Error::NotFound { kind: ResourceKind::Run, id, field: "id".to_owned() })
    }

    /// Sets `estimated_completion_time` as [`crate::engine::estimate`] describes: a timestamp
    /// while the run is `created` or `active`, `None` once it is terminal.
    async fn with_estimate(&self, mut run: Run) -> Run {
        self.estimator.fill(self.shared.storage.as_ref(), &mut run).await;
        run
    }

    /// Reads a run as [`Aegis::get_run`] does, encoded as the API returns it. A terminal run's
    /// JSON comes from the store as it is when the store keeps it, which spares decoding and
    /// encoding it again.
    pub async fn get_run_document(&self, id: Uuid) -> Result<RunDocument, Error> {
        let stored = self.shared.storage.get_run_document(id).await?;
        let stored = stored.ok_or(Error::NotFound { kind: ResourceKind::Run, id, field: "id".to_owned() })?;
        match stored {
            StoredRun::Encoded(document) => Ok(document),
            StoredRun::Decoded(run) => encode_run(&self.with_estimate(*run).await),
        }
    }

    /// Lists runs as [`Aegis::list_runs`] does, each encoded as [`Aegis::get_run_document`]
    /// returns it.
    pub async fn list_run_documents(&self, filter: &RunFilter) -> Result<Page<RunDocument>, Error> {
        check_run_filter(filter)?;
        let page = self.shared.storage.list_run_documents(filter).await?;
        let mut items = Vec::with_capacity(page.items.len());
        for stored in page.items {
            match stored {
                StoredRun::Encoded(document) => items.push(document),
                StoredRun::Decoded(run) => items.push(encode_run(&self.with_estimate(*run).await)?),
            }
        }
        Ok(Page::new(items, page.next_cursor))
    }

    /// Lists the page of runs that `filter` selects, with their messages.
    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Page<Run>, Error> {
        check_run_filter(filter)?;
        let mut page = self.shared.storage.list_runs(filter).await?;
        self.estimator.fill_all(self.shared.storage.as_ref(), &mut page.items).await;
        Ok(page)
    }

    /// Lists a page of the messages of a run's current attempt. Positions count from 1 in
    /// the order the run produced them.
    pub async fn list_run_messages(&self, id: Uuid, page: &PageRequest) -> Result<Page<AgentMessage>, Error> {
        let run = self.read_run(id).await?;
        paginate_positions(run.messages, page).map_err(|problem| Error::Invalid(vec![problem]))
    }
}

/// Checks a run filter's cursor and time range before it reaches the store.
fn check_run_filter(filter: &RunFilter) -> Result<(), Error> {
    check_keyset_cursor(&filter.page)?;
    if let (Some(after), Some(before)) = (filter.created_after, filter.created_before)
        && after >= before
    {
        return Err(Error::Invalid(vec![
            FieldError::new(
                "created_before",
                "invalid_value",
                format!("created_before ({before}) is not later than created_after ({after})"),
            )
            .with_fix("give a range whose end is later than its start, or leave one end out"),
        ]));
    }
    Ok(())
}

/// Encodes a run for a response. A run always encodes (its maps have string keys), so a
/// failure is reported as a store failure rather than a panic.
fn encode_run(run: &Run) -> Result<RunDocument, Error> {
    RunDocument::encode(run).map_err(|error| {
        Error::Storage(StorageError::new(StorageErrorKind::Backend, format!("encoding run {} failed: {error}", run.id)))
    })
}

/// Names the dependants: counts and the first few ids.
fn describe_dependants(dependants: &Dependants) -> String {
    let mut parts = Vec::new();
    if !dependants.sessions.is_empty() {
        parts.push(format!("{} session(s) ({})", dependants.sessions.len(), list_ids(&dependants.sessions)));
    }
    if !dependants.runs.is_empty() {
        parts.push(format!("{} run(s) ({})", dependants.runs.len(), list_ids(&dependants.runs)));
    }
    parts.join(" and ")
}

/// Lists up to five ids, then how many more there are.
fn list_ids(ids: &[Uuid]) -> String {
    let shown: Vec<String> = ids.iter().take(5).map(Uuid::to_string).collect();
    match ids.len() > 5 {
        true => format!("{}, and {} more", shown.join(", "), ids.len() - 5),
        false => shown.join(", "),
    }
}

/// Rejects a message-position cursor passed to a listing of stored rows.
fn check_keyset_cursor(page: &PageRequest) -> Result<(), Error> {
    page.after_keyset().map(|_| ()).map_err(|problem| Error::Invalid(vec![problem]))
}

/// Checks `run_task` against its `message_type`.
fn validate_run(new: &NewRun) -> Vec<FieldError> {
    if new.batch_mode {
        return validate_batch(new);
    }
    let mut problems = Vec::new();
    let content = &new.run_task.content;
    match &new.run_task.message_type {
        TaskMessageType::Text if !content.is_string() => problems.push(
            FieldError::new(
                "run_task.content",
                "invalid_type",
                format!("expected a string for message_type \"text\", got {}", kind_of(content)),
            )
            .with_fix("send the task text as a string, or set message_type to \"dict\" for an object"),
        ),
        TaskMessageType::Dict if !content.is_object() => problems.push(
            FieldError::new(
                "run_task.content",
                "invalid_type",
                format!("expected an object for message_type \"dict\", got {}", kind_of(content)),
            )
            .with_fix("send an object such as {\"question\": \"...\"}, or set message_type to \"text\" for a string"),
        ),
        TaskMessageType::Other(value) => problems.push(
            FieldError::new("run_task.message_type", "invalid_value", format!("unknown message_type \"{value}\""))
                .with_fix(format!("use one of: {}", TaskMessageType::known_values().join(", "))),
        ),
        _ => {}
    }
    problems
}

/// Checks `run_task` of a batch run: `dict` with an array of objects.
fn validate_batch(new: &NewRun) -> Vec<FieldError> {
    let mut problems = Vec::new();
    if new.run_task.message_type != TaskMessageType::Dict {
        problems.push(
            FieldError::new("run_task.message_type", "invalid_value", "batch_mode requires message_type \"dict\"")
                .with_fix("set message_type to \"dict\" and content to an array of objects"),
        );
    }
    let Value::Array(items) = &new.run_task.content else {
        problems.push(
            FieldError::new(
                "run_task.content",
                "invalid_type",
                format!("expected an array of objects for batch_mode, got {}", kind_of(&new.run_task.content)),
            )
            .with_fix("send the items as an array, such as [{\"question\": \"...\"}, ...]"),
        );
        return problems;
    };
    if items.is_empty() {
        problems.push(
            FieldError::new("run_task.content", "empty", "a batch needs at least one item")
                .with_fix("add items to the array"),
        );
    }
    for (index, item) in items.iter().enumerate() {
        if !item.is_object() {
            problems.push(
                FieldError::new(
                    format!("run_task.content[{index}]"),
                    "invalid_type",
                    format!("expected an object, got {}", kind_of(item)),
                )
                .with_fix("make every item of the batch a JSON object"),
            );
        }
    }
    problems
}

/// Checks the `team_metadata` keys the engine reads.
fn validate_team_metadata(metadata: &Map<String, Value>) -> Vec<FieldError> {
    let mut problems = Vec::new();
    if let Some(value) = metadata.get("model").filter(|value| !value.is_string() && !value.is_null()) {
        problems.push(
            FieldError::new(
                "team_metadata.model",
                "invalid_type",
                format!("expected a string, got {}", kind_of(value)),
            )
            .with_fix("give the model name, such as \"gpt-4o-mini\""),
        );
    }
    if let Some(value) = metadata.get("continue_conversation").filter(|value| !value.is_boolean() && !value.is_null()) {
        problems.push(
            FieldError::new(
                "team_metadata.continue_conversation",
                "invalid_type",
                format!("expected a boolean, got {}", kind_of(value)),
            )
            .with_fix("use true or false"),
        );
    }
    if let Some(value) = metadata.get("max_concurrent_runs").filter(|value| !value.is_null()) {
        let valid = value.as_u64().is_some_and(|limit| (1..=u64::from(u32::MAX)).contains(&limit));
        if !valid {
            problems.push(
                FieldError::new(
                    "team_metadata.max_concurrent_runs",
                    "invalid_value",
                    format!("expected a positive integer, got {value}"),
                )
                .with_fix("use a whole number of runs, such as 4, or leave the key out for no limit"),
            );
        }
    }
    if let Some(value) = metadata.get("run_timeout_s").filter(|value| !value.is_null()) {
        let valid = value.as_f64().is_some_and(|seconds| seconds > 0.0 && seconds <= MAX_RUN_TIMEOUT_S);
        if !valid {
            problems.push(
                FieldError::new(
                    "team_metadata.run_timeout_s",
                    "invalid_value",
                    format!("expected a number of seconds above 0 and at most {MAX_RUN_TIMEOUT_S}, got {value}"),
                )
                .with_fix("use a deadline in seconds, such as 300, or leave the key out for the server default"),
            );
        }
    }
    problems
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
