//! The [`Storage`] trait: everything Aegis keeps, and the lease protocol runs are executed
//! under.
//!
//! # Leases and fencing
//!
//! A worker executes a run only while it holds the run's lease. [`Storage::claim_run`] moves
//! one `created` run to `active` and returns a [`Lease`]: the owner, the expiry and the run's
//! `attempt`, which doubles as the fencing token. Every write a worker makes on behalf of a
//! run ([`Storage::append_message`], [`Storage::renew_lease`], [`Storage::finish_run`]) names
//! its lease, and the store rejects it with [`StorageErrorKind::LeaseLost`] unless the run is
//! still `active` under that owner and attempt. A worker that stalled past its expiry and whose
//! run was re-queued (with the next attempt number) therefore cannot overwrite the new
//! attempt's work, however late its writes arrive. The store judges expiry by its own clock,
//! so several processes sharing one database agree on it.
//!
//! Implementations must make every accepted write durable before returning: a run that
//! `insert_run` accepted must survive a crash of the process.

pub mod memory;
#[cfg(feature = "testkit")]
pub mod testkit;

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use uuid::Uuid;

use crate::message::AgentMessage;
use crate::resource::{ErrorDetails, Run, RunSpec, RunStatus, Session, Task, Team, TeamResult};
use crate::timestamp::Timestamp;

pub use memory::MemoryStorage;

/// What went wrong in a store.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorageErrorKind {
    /// The run is no longer held under the lease the write named.
    LeaseLost,
    /// A row with the same id already exists.
    Conflict,
    /// The backend failed (I/O, corruption, a full disk, a lost connection).
    Backend,
    /// The store is shutting down or not ready.
    Unavailable,
}

/// A failed store operation.
#[derive(Debug)]
pub struct StorageError {
    kind: StorageErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl StorageError {
    /// Creates an error of `kind`.
    pub fn new(kind: StorageErrorKind, message: impl Into<String>) -> StorageError {
        StorageError { kind, message: message.into(), source: None }
    }

    /// Wraps a backend error.
    pub fn backend(message: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> StorageError {
        StorageError { kind: StorageErrorKind::Backend, message: message.into(), source: Some(Box::new(source)) }
    }

    /// Creates the error a write under a stale lease gets.
    pub fn lease_lost(run_id: Uuid, attempt: u32) -> StorageError {
        StorageError::new(StorageErrorKind::LeaseLost, format!("run {run_id} is no longer held under attempt {attempt}"))
    }

    /// Returns the kind of failure.
    pub fn kind(&self) -> &StorageErrorKind {
        &self.kind
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|source| source as &(dyn std::error::Error + 'static))
    }
}

/// A worker's claim on a run: its fencing token for every write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The claimed run.
    pub run_id: Uuid,
    /// The claiming worker's owner id (one per process).
    pub owner: String,
    /// The run's attempt number at the claim: the fencing token.
    pub attempt: u32,
    /// When the lease runs out unless renewed.
    pub expires_at: Timestamp,
}

/// How a run ended.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct RunOutcome {
    /// `complete`, `error` or `stopped`.
    pub status: RunStatus,
    /// The result, possibly partial for failed runs.
    pub team_result: Option<TeamResult>,
    /// `<Type>: <message>` of a failed run.
    pub error_message: Option<String>,
    /// Structured facts about a failed run.
    pub error_details: Option<ErrorDetails>,
    /// End of execution.
    pub finished_at: Timestamp,
}

impl RunOutcome {
    /// Describes a normal end.
    pub fn complete(team_result: TeamResult) -> RunOutcome {
        RunOutcome {
            status: RunStatus::Complete,
            team_result: Some(team_result),
            error_message: None,
            error_details: None,
            finished_at: Timestamp::now(),
        }
    }

    /// Describes a failure; `team_result` keeps what the team produced before it.
    pub fn error(team_result: Option<TeamResult>, error_message: String, error_details: ErrorDetails) -> RunOutcome {
        RunOutcome {
            status: RunStatus::Error,
            team_result,
            error_message: Some(error_message),
            error_details: Some(error_details),
            finished_at: Timestamp::now(),
        }
    }
}

/// Which runs a listing returns.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct RunFilter {
    /// Only runs of this session.
    pub session_id: Option<Uuid>,
    /// At most this many runs, newest first.
    pub limit: Option<usize>,
}

impl RunFilter {
    /// Lists the runs of one session.
    pub fn session(session_id: Uuid) -> RunFilter {
        RunFilter { session_id: Some(session_id), limit: None }
    }
}

/// Which rows a listing of tasks, teams or sessions returns.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ListFilter {
    /// At most this many rows, newest first.
    pub limit: Option<usize>,
}

/// Runs that a sweep of expired leases re-queued or ended.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct RequeueReport {
    /// Runs put back to `created` with the next attempt number.
    pub requeued: Vec<Uuid>,
    /// Runs that had used every attempt and were ended as `error`.
    pub exhausted: Vec<Uuid>,
}

/// Persistent state of Aegis: resources, run queue, leases and run messages.
///
/// Implementations: [`MemoryStorage`] (in process, for embedding, unit tests and benchmarks)
/// and the SQLite store of `aegis-store-sqlite`. Plugin crates can add more.
#[async_trait]
pub trait Storage: Send + Sync {
    /// Stores a new task.
    async fn insert_task(&self, task: &Task) -> Result<(), StorageError>;
    /// Reads a task.
    async fn get_task(&self, id: Uuid) -> Result<Option<Task>, StorageError>;
    /// Lists tasks, newest first.
    async fn list_tasks(&self, filter: &ListFilter) -> Result<Vec<Task>, StorageError>;

    /// Stores a new team.
    async fn insert_team(&self, team: &Team) -> Result<(), StorageError>;
    /// Reads a team.
    async fn get_team(&self, id: Uuid) -> Result<Option<Team>, StorageError>;
    /// Lists teams, newest first.
    async fn list_teams(&self, filter: &ListFilter) -> Result<Vec<Team>, StorageError>;

    /// Stores a new session.
    async fn insert_session(&self, session: &Session) -> Result<(), StorageError>;
    /// Reads a session.
    async fn get_session(&self, id: Uuid) -> Result<Option<Session>, StorageError>;
    /// Lists sessions, newest first.
    async fn list_sessions(&self, filter: &ListFilter) -> Result<Vec<Session>, StorageError>;

    /// Stores a new `created` run with its snapshots; durable when this returns.
    async fn insert_run(&self, spec: &RunSpec) -> Result<(), StorageError>;
    /// Reads a run with the messages produced so far.
    async fn get_run(&self, id: Uuid) -> Result<Option<Run>, StorageError>;
    /// Lists runs with their messages, newest first.
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<Run>, StorageError>;

    /// Claims the oldest `created` run for `owner` for `lease` and marks it `active`.
    async fn claim_run(&self, owner: &str, lease: Duration) -> Result<Option<(RunSpec, Lease)>, StorageError>;
    /// Extends a lease by `lease` from now.
    async fn renew_lease(&self, lease: &Lease, duration: Duration) -> Result<Lease, StorageError>;
    /// Appends a message to the run's current attempt.
    async fn append_message(&self, lease: &Lease, message: &AgentMessage) -> Result<(), StorageError>;
    /// Ends the run and releases its lease.
    async fn finish_run(&self, lease: &Lease, outcome: &RunOutcome) -> Result<(), StorageError>;
    /// Re-queues `active` runs whose lease expired, dropping the abandoned attempt's
    /// messages; runs that already used `max_attempts` attempts end as `error` instead.
    async fn requeue_expired(&self, max_attempts: u32) -> Result<RequeueReport, StorageError>;
}

/// Returns the outcome of a run that was interrupted (its worker died or shut down) once too
/// often. Stores use it in [`Storage::requeue_expired`] so every backend words it the same.
pub fn interrupted_outcome(attempts: u32) -> RunOutcome {
    let message = format!(
        "the run was interrupted {attempts} times (its worker stopped before the run ended) and will not be retried"
    );
    let details = ErrorDetails {
        error_type: "RunInterruptedError".to_owned(),
        message: message.clone(),
        status_code: None,
        llm_provider: None,
        model: None,
        attempts,
    };
    RunOutcome::error(None, format!("RunInterruptedError: {message}"), details)
}
