//! [`Aegis`]: the service API over a store, a registry and the run engine.
//!
//! Everything the REST API offers is a method here, so an application that embeds Aegis gets
//! the same validation and the same guarantees as a client of the bundled server.

use std::sync::Arc;

use serde_json::Value;
use uuid::Uuid;

use crate::engine::{EngineConfig, Shared, Workers};
use crate::error::{Error, FieldError, ResourceKind};
use crate::registry::Registry;
use crate::resource::{
    NewRun, NewSession, NewTask, NewTeam, Run, RunSpec, RunStatus, Session, Task, TaskMessageType, Team,
};
use crate::storage::{ListFilter, RunFilter, Storage};
use crate::timestamp::Timestamp;

/// An Aegis instance: resources, validation and the run engine over one store.
///
/// Cloning is cheap and every clone refers to the same instance.
#[derive(Clone)]
pub struct Aegis {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Aegis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aegis").field("owner", &self.shared.owner).field("config", &self.shared.config).finish_non_exhaustive()
    }
}

impl Aegis {
    /// Creates an instance. Call [`Aegis::start`] to execute runs.
    pub fn new(storage: Arc<dyn Storage>, registry: Registry, config: EngineConfig) -> Result<Aegis, String> {
        config.validate()?;
        let owner = format!("worker-{}", Uuid::now_v7());
        let shared = Shared { storage, registry: Arc::new(registry), config, wake: tokio::sync::Notify::new(), owner };
        Ok(Aegis { shared: Arc::new(shared) })
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
        if new.name.trim().is_empty() {
            return Err(Error::Invalid(vec![
                FieldError::new("name", "empty", "name must not be empty").with_fix("give the task a name, such as \"Automarking Task\""),
            ]));
        }
        let now = Timestamp::now();
        let task = Task {
            id: Uuid::now_v7(),
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

    /// Lists tasks, newest first.
    pub async fn list_tasks(&self) -> Result<Vec<Task>, Error> {
        Ok(self.shared.storage.list_tasks(&ListFilter::default()).await?)
    }

    /// Validates a team component, returning every problem with its path under `component`.
    pub fn validate_team(&self, component: &crate::component::ComponentModel) -> Vec<FieldError> {
        self.shared.registry.validate_team(component).into_iter().map(|problem| problem.under("component")).collect()
    }

    /// Creates a team after checking that its component builds.
    pub async fn create_team(&self, new: NewTeam) -> Result<Team, Error> {
        let problems = self.validate_team(&new.component);
        if !problems.is_empty() {
            return Err(Error::Invalid(problems));
        }
        let now = Timestamp::now();
        let team = Team {
            id: Uuid::now_v7(),
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

    /// Lists teams, newest first.
    pub async fn list_teams(&self) -> Result<Vec<Team>, Error> {
        Ok(self.shared.storage.list_teams(&ListFilter::default()).await?)
    }

    /// Creates a session after checking that its task and team exist.
    pub async fn create_session(&self, new: NewSession) -> Result<Session, Error> {
        if self.shared.storage.get_task(new.task_id).await?.is_none() {
            return Err(Error::NotFound { kind: ResourceKind::Task, id: new.task_id, field: "task_id".to_owned() });
        }
        if self.shared.storage.get_team(new.team_id).await?.is_none() {
            return Err(Error::NotFound { kind: ResourceKind::Team, id: new.team_id, field: "team_id".to_owned() });
        }
        let now = Timestamp::now();
        let session = Session {
            id: Uuid::now_v7(),
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

    /// Lists sessions, newest first.
    pub async fn list_sessions(&self) -> Result<Vec<Session>, Error> {
        Ok(self.shared.storage.list_sessions(&ListFilter::default()).await?)
    }

    /// Accepts a run: validates it, stores it durably with snapshots of the team component and
    /// the session's `team_metadata`, and wakes the workers. Returns before the run executes.
    pub async fn create_run(&self, new: NewRun) -> Result<Run, Error> {
        let Some(session) = self.shared.storage.get_session(new.session_id).await? else {
            return Err(Error::NotFound { kind: ResourceKind::Session, id: new.session_id, field: "session_id".to_owned() });
        };
        let mut problems = validate_run(&new);
        if new.task_id != session.task_id {
            problems.push(
                FieldError::new(
                    "task_id",
                    "mismatch",
                    format!("task {} is not the task of session {} (which is {})", new.task_id, session.id, session.task_id),
                )
                .with_fix(format!("send task_id {} or use a session of task {}", session.task_id, new.task_id)),
            );
        }
        if !problems.is_empty() {
            return Err(Error::Invalid(problems));
        }
        let Some(team) = self.shared.storage.get_team(session.team_id).await? else {
            return Err(Error::NotFound { kind: ResourceKind::Team, id: session.team_id, field: "session_id".to_owned() });
        };

        let run = Run {
            id: Uuid::now_v7(),
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
        let spec = RunSpec { run, team_component: team.component, team_metadata: session.team_metadata };
        self.shared.storage.insert_run(&spec).await?;
        self.shared.wake.notify_one();
        tracing::info!(run_id = %spec.run.id, session_id = %spec.run.session_id, "run accepted");
        Ok(spec.run)
    }

    /// Reads a run with the messages produced so far.
    pub async fn get_run(&self, id: Uuid) -> Result<Run, Error> {
        let run = self.shared.storage.get_run(id).await?;
        run.ok_or(Error::NotFound { kind: ResourceKind::Run, id, field: "id".to_owned() })
    }

    /// Lists runs, newest first, optionally of one session.
    pub async fn list_runs(&self, session_id: Option<Uuid>) -> Result<Vec<Run>, Error> {
        let filter = RunFilter { session_id, ..RunFilter::default() };
        Ok(self.shared.storage.list_runs(&filter).await?)
    }
}

/// Checks `run_task` against its `message_type`.
fn validate_run(new: &NewRun) -> Vec<FieldError> {
    let mut problems = Vec::new();
    let content = &new.run_task.content;
    match &new.run_task.message_type {
        TaskMessageType::Text if !content.is_string() => problems.push(
            FieldError::new("run_task.content", "invalid_type", format!("expected a string for message_type \"text\", got {}", kind_of(content)))
                .with_fix("send the task text as a string, or set message_type to \"dict\" for an object"),
        ),
        TaskMessageType::Dict if !content.is_object() => problems.push(
            FieldError::new("run_task.content", "invalid_type", format!("expected an object for message_type \"dict\", got {}", kind_of(content)))
                .with_fix("send an object such as {\"question\": \"...\"}, or set message_type to \"text\" for a string"),
        ),
        TaskMessageType::Other(value) => problems.push(
            FieldError::new("run_task.message_type", "invalid_value", format!("unknown message_type \"{value}\""))
                .with_fix(format!("use one of: {}", TaskMessageType::known_values().join(", "))),
        ),
        _ => {}
    }
    if new.batch_mode {
        // TODO: batch runs (one team execution per item of a list) are not implemented; lift
        // this rejection when the engine executes them.
        problems.push(
            FieldError::new("batch_mode", "unsupported", "batch_mode true is not supported yet")
                .with_fix("send one run per item with batch_mode false"),
        );
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
