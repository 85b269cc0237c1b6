//! The [`Storage`] trait: everything Aegis keeps, and the lease protocol runs are executed
//! under.
//!
//! # Leases and fencing
//!
//! A worker executes a run only while it holds the run's lease. [`Storage::claim_run`] moves
//! one `created` run to `active` and returns a [`Lease`]: the owner, the expiry and the run's
//! `attempt`, which doubles as the fencing token. [`Storage::insert_run_claimed`] may also
//! claim a new run as it stores it. Every write a worker makes on behalf of a
//! run ([`Storage::append_message`], [`Storage::renew_lease`], [`Storage::finish_run`]) names
//! its lease, and the store rejects it with [`StorageErrorKind::LeaseLost`] unless the run is
//! still `active` under that owner and attempt. A worker that stalled past its expiry and whose
//! run was re-queued (with the next attempt number) therefore cannot overwrite the new
//! attempt's work, however late its writes arrive. The store judges expiry by its own clock,
//! so several processes sharing one database agree on it.
//!
//! Implementations must make every accepted write durable before returning: a run that
//! `insert_run` accepted must survive a crash of the process.
//!
//! # Cancellation
//!
//! [`Storage::request_cancel`] ends a `created` run as `stopped` at once, in the same atomic
//! step that a claim would take, so a cancelled run never starts. For an `active` run it only
//! records the request. The process holding the lease polls [`Storage::cancel_requests`]
//! about once a second with one query for all of its runs, and its worker then aborts the run
//! and finishes it as `stopped`. A run whose
//! worker died after a cancel request ends `stopped` at the next sweep instead of being
//! re-queued. Requests travel through the store, not process memory, so a replica can cancel
//! a run another replica executes.
//!
//! # Events
//!
//! Every change a follower of a run can see is also stored as a [`RunEvent`] with a sequence
//! number that grows over the run's whole life: status changes (including each new attempt)
//! and messages. Events are written in the same atomic step as the change itself and are never
//! deleted when an attempt is abandoned, so a stream resumed from its last event id misses and
//! repeats nothing, whichever process serves it.
//!
//! # Session order
//!
//! [`Storage::claim_run`] honours per-session limits taken from the run's `team_metadata`
//! snapshot by [`session_limit`]: with `continue_conversation: true` one run of the session is
//! active at a time, in creation order; with `max_concurrent_runs: N` at most `N` are.

mod components;
pub mod memory;
pub mod page;
#[cfg(feature = "testkit")]
pub mod testkit;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::component::ComponentModel;
use crate::message::AgentMessage;
use crate::resource::{
    BatchItem, ErrorDetails, Run, RunDocument, RunSpec, RunStatus, Session, Task, TaskResult, Team, TeamResult,
};
use crate::timestamp::Timestamp;

/// A run as [`Storage::get_run_document`] reads it.
#[derive(Debug)]
#[non_exhaustive]
pub enum StoredRun {
    /// The final JSON of a terminal run, ready to send.
    Encoded(RunDocument),
    /// The decoded run, whose `estimated_completion_time` the service still has to set.
    Decoded(Box<Run>),
}

pub use components::ComponentCache;
pub use memory::MemoryStorage;
pub use page::{Cursor, CursorKey, DEFAULT_LIMIT, Keyset, Listing, MAX_LIMIT, Page, PageRequest, SortOrder};

/// The kind of a store failure.
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
        StorageError::new(
            StorageErrorKind::LeaseLost,
            format!("run {run_id} is no longer held under attempt {attempt}"),
        )
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

/// The end of a run: its status, result and error.
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
    /// The team's state after a complete run of a session with `continue_conversation`, which
    /// the store keeps as the session's state in the same atomic step.
    pub session_state: Option<Value>,
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
            session_state: None,
        }
    }

    /// Describes a cancelled run: `stop_reason` is the cancel reason and `messages` those the
    /// run produced before it was stopped.
    pub fn stopped(reason: &str, messages: Vec<AgentMessage>, team_result: Option<TeamResult>) -> RunOutcome {
        let task_result = TaskResult { messages, stop_reason: Some(reason.to_owned()) };
        let team_result = match team_result {
            Some(result) => TeamResult { task_result: Some(task_result), ..result },
            None => TeamResult { task_result: Some(task_result), ..TeamResult::default() },
        };
        RunOutcome {
            status: RunStatus::Stopped,
            team_result: Some(team_result),
            error_message: None,
            error_details: None,
            finished_at: Timestamp::now(),
            session_state: None,
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
            session_state: None,
        }
    }

    /// Applies the outcome to `run`: status, result, errors and `finished_at`, and clears
    /// `estimated_completion_time`.
    pub fn apply_to(&self, run: &mut Run) {
        run.status = self.status.clone();
        run.team_result = self.team_result.clone();
        run.error_message = self.error_message.clone();
        run.error_details = self.error_details.clone();
        run.finished_at = Some(self.finished_at);
        run.estimated_completion_time = None;
    }
}

/// A change of a run, as stored for its event stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunEvent {
    /// Position in the run's events, from 1, growing across attempts and never reused.
    pub seq: u64,
    /// What changed.
    #[serde(flatten)]
    pub kind: RunEventKind,
}

/// The change a [`RunEvent`] reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RunEventKind {
    /// The run's status or attempt changed. A new attempt means the earlier attempt's
    /// messages were discarded.
    Status {
        /// The new status.
        status: RunStatus,
        /// The attempt the status belongs to.
        attempt: u32,
    },
    /// The run's current attempt produced a message.
    Message {
        /// The attempt that produced the message.
        attempt: u32,
        /// The message as stored.
        message: Box<AgentMessage>,
    },
}

impl RunEventKind {
    /// Returns the status event of `run` as it is now.
    pub fn status_of(run: &Run) -> RunEventKind {
        RunEventKind::Status { status: run.status.clone(), attempt: run.attempt }
    }
}

/// A stored `Idempotency-Key`: which request first used it and which resource it created.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct IdempotencyRecord {
    /// The operation the key belongs to, such as `POST /api/v1/run`; keys of different
    /// operations never collide.
    pub scope: String,
    /// The client's key.
    pub key: String,
    /// The first request's body as JSON text; a retry must carry an equal body.
    pub request: String,
    /// The resource the first request created (or is creating).
    pub resource_id: Uuid,
    /// When the key was first used.
    pub created_at: Timestamp,
}

impl IdempotencyRecord {
    /// Creates a record for a first use of `key`.
    pub fn new(
        scope: impl Into<String>,
        key: impl Into<String>,
        request: impl Into<String>,
        resource_id: Uuid,
    ) -> IdempotencyRecord {
        IdempotencyRecord {
            scope: scope.into(),
            key: key.into(),
            request: request.into(),
            resource_id,
            created_at: Timestamp::now(),
        }
    }
}

/// Returns the limit on active runs of a session that a run's `team_metadata` snapshot sets.
/// `continue_conversation: true` means 1 (runs take turns in creation order). Otherwise the
/// limit is `max_concurrent_runs` when that is a positive integer, else there is none.
pub fn session_limit(team_metadata: &Map<String, Value>) -> Option<u32> {
    if team_metadata.get("continue_conversation").and_then(Value::as_bool) == Some(true) {
        return Some(1);
    }
    let limit = team_metadata.get("max_concurrent_runs")?.as_u64()?;
    u32::try_from(limit).ok().filter(|&limit| limit > 0)
}

/// Returns whether runs of the session share team state from run to run.
pub fn continues_conversation(team_metadata: &Map<String, Value>) -> bool {
    team_metadata.get("continue_conversation").and_then(Value::as_bool) == Some(true)
}

/// Which runs a listing returns, and which page of them. Every condition that is set must
/// hold; an unset one admits every run.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct RunFilter {
    /// The page: size, order and the cursor it starts after.
    pub page: PageRequest,
    /// Only runs of this session.
    pub session_id: Option<Uuid>,
    /// Only runs of this task.
    pub task_id: Option<Uuid>,
    /// Only runs in this status.
    pub status: Option<RunStatus>,
    /// Only runs with this `created_by_user_id`.
    pub created_by_user_id: Option<String>,
    /// `Some(false)`: only runs not archived; `Some(true)`: only archived runs; `None`: both.
    pub archived: Option<bool>,
    /// Only runs created at or after this instant.
    pub created_after: Option<Timestamp>,
    /// Only runs created strictly before this instant.
    pub created_before: Option<Timestamp>,
}

impl RunFilter {
    /// Lists the runs of one session, first page of the default size.
    pub fn session(session_id: Uuid) -> RunFilter {
        RunFilter { session_id: Some(session_id), ..RunFilter::default() }
    }

    /// Returns whether `run` meets every condition except the page. Stores that filter in
    /// memory use it; SQL stores express the same conditions in their `WHERE` clause.
    pub fn matches(&self, run: &Run) -> bool {
        self.session_id.is_none_or(|id| run.session_id == id)
            && self.task_id.is_none_or(|id| run.task_id == id)
            && self.status.as_ref().is_none_or(|status| run.status == *status)
            && self.created_by_user_id.as_ref().is_none_or(|user| run.created_by_user_id.as_ref() == Some(user))
            && self.archived.is_none_or(|archived| run.archived == archived)
            && self.created_after.is_none_or(|after| run.created_at >= after)
            && self.created_before.is_none_or(|before| run.created_at < before)
    }
}

/// Which tasks, teams or sessions a listing returns, and which page of them. Every
/// condition that is set must hold; an unset one admits every row.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct ListFilter {
    /// The page: size, order and the cursor it starts after.
    pub page: PageRequest,
    /// `Some(false)`: only rows not archived; `Some(true)`: only archived rows; `None`: both.
    pub archived: Option<bool>,
    /// Only rows with this `created_by_user_id`.
    pub created_by_user_id: Option<String>,
    /// Sessions only: only sessions of this task. Listings of tasks and teams ignore it.
    pub task_id: Option<Uuid>,
    /// Sessions only: only sessions of this team. Listings of tasks and teams ignore it.
    pub team_id: Option<Uuid>,
}

impl ListFilter {
    /// Lists the first page of `limit` rows in `order`, archived or not.
    pub fn first(limit: usize, order: SortOrder) -> ListFilter {
        ListFilter { page: PageRequest::first(limit, order), ..ListFilter::default() }
    }

    /// Returns whether a row with these fields meets the conditions that apply to every
    /// resource (`archived`, `created_by_user_id`).
    pub fn matches_common(&self, archived: bool, created_by_user_id: Option<&String>) -> bool {
        self.archived.is_none_or(|wanted| archived == wanted)
            && self.created_by_user_id.as_ref().is_none_or(|user| created_by_user_id == Some(user))
    }

    /// Returns whether `session` meets every condition except the page.
    pub fn matches_session(&self, session: &Session) -> bool {
        self.matches_common(session.archived, session.created_by_user_id.as_ref())
            && self.task_id.is_none_or(|id| session.task_id == id)
            && self.team_id.is_none_or(|id| session.team_id == id)
    }
}

/// A row [`Storage::delete`] removes, with the rows that hang off it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeleteTarget {
    /// A task; its sessions and runs are its dependants.
    Task(Uuid),
    /// A team; its sessions and their runs are its dependants.
    Team(Uuid),
    /// A session; its runs are its dependants.
    Session(Uuid),
    /// A run, with its messages, events and batch items. Runs have no dependants.
    Run(Uuid),
}

/// The rows that depend on a delete target.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Dependants {
    /// Sessions that would go with the target.
    pub sessions: Vec<Uuid>,
    /// Runs that would go with the target.
    pub runs: Vec<Uuid>,
}

impl Dependants {
    /// Creates the list of dependants.
    pub fn new(sessions: Vec<Uuid>, runs: Vec<Uuid>) -> Dependants {
        Dependants { sessions, runs }
    }

    /// Returns whether nothing depends on the target.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty() && self.runs.is_empty()
    }
}

/// What [`Storage::delete`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeleteOutcome {
    /// No row has the target's id.
    NotFound,
    /// The target and the dependants listed are gone.
    Deleted(Dependants),
    /// Nothing was deleted because rows depend on the target and `cascade` was false.
    HasDependants(Dependants),
    /// Nothing was deleted because these runs would go and are not terminal.
    RunsNotTerminal(Vec<Uuid>),
}

/// Runs that a sweep of expired leases re-queued or ended.
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct RequeueReport {
    /// Runs put back to `created` with the next attempt number.
    pub requeued: Vec<Uuid>,
    /// Runs that had used every attempt and were ended as `error`.
    pub exhausted: Vec<Uuid>,
    /// Runs with a cancel request that were ended as `stopped`.
    pub stopped: Vec<Uuid>,
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
    /// Lists the page of tasks that `filter` selects, ordered by `(created_at, id)` as
    /// [`page`] describes.
    async fn list_tasks(&self, filter: &ListFilter) -> Result<Page<Task>, StorageError>;

    /// Stores a new team.
    async fn insert_team(&self, team: &Team) -> Result<(), StorageError>;
    /// Reads a team.
    async fn get_team(&self, id: Uuid) -> Result<Option<Team>, StorageError>;
    /// Reads the component of a team, which every new run of the team snapshots. The default
    /// reads the team; a store that keeps components decoded can share one instead of
    /// copying it for every run.
    async fn get_team_component(&self, id: Uuid) -> Result<Option<Arc<ComponentModel>>, StorageError> {
        Ok(self.get_team(id).await?.map(|team| Arc::new(team.component)))
    }
    /// Lists the page of teams that `filter` selects, ordered by `(created_at, id)` as
    /// [`page`] describes.
    async fn list_teams(&self, filter: &ListFilter) -> Result<Page<Team>, StorageError>;

    /// Stores a new session.
    async fn insert_session(&self, session: &Session) -> Result<(), StorageError>;
    /// Reads a session.
    async fn get_session(&self, id: Uuid) -> Result<Option<Session>, StorageError>;
    /// Lists the page of sessions that `filter` selects, ordered by `(created_at, id)` as
    /// [`page`] describes.
    async fn list_sessions(&self, filter: &ListFilter) -> Result<Page<Session>, StorageError>;

    /// Replaces a stored task with `task` (same id). Returns `false` when no task has its id.
    async fn update_task(&self, task: &Task) -> Result<bool, StorageError>;
    /// Replaces a stored team with `team` (same id). Returns `false` when no team has its id.
    async fn update_team(&self, team: &Team) -> Result<bool, StorageError>;
    /// Replaces a stored session with `session` (same id, task and team). Returns `false`
    /// when no session has its id.
    async fn update_session(&self, session: &Session) -> Result<bool, StorageError>;
    /// Sets a run's `archived` flag, the only field of a run a client may change. Returns the
    /// run after the change, `None` for an unknown id.
    async fn set_run_archived(&self, id: Uuid, archived: bool) -> Result<Option<Run>, StorageError>;

    /// Deletes `target` atomically, with its dependants when `cascade` is true. Deletes
    /// nothing when rows depend on it and `cascade` is false, or when a run that would go is
    /// not terminal. Deleting a run also deletes its messages, events, batch items and the
    /// idempotency keys that created it (their stored request holds the run's task), and a
    /// session's counters and team state go with it. Deleted data must not stay readable in
    /// the store's files (see the backend's docs for how far it guarantees this).
    async fn delete(&self, target: DeleteTarget, cascade: bool) -> Result<DeleteOutcome, StorageError>;
    /// Deletes up to `limit` terminal runs that finished before `finished_before`, as
    /// [`Storage::delete`] deletes a run, and returns their ids. For retention.
    async fn delete_finished_runs(&self, finished_before: Timestamp, limit: usize) -> Result<Vec<Uuid>, StorageError>;

    /// Stores a new `created` run with its snapshots; durable when this returns.
    async fn insert_run(&self, spec: &RunSpec) -> Result<(), StorageError>;
    /// Stores a new run as [`Storage::insert_run`] does and, in the same write, claims it
    /// under `lease` (attempt 1) as of `started_at` when no `created` run waits in the queue
    /// and the run's session is below its `session_limit`. Returns whether it claimed the run.
    /// A claimed run is stored `active` with both its `created` and `active` events.
    ///
    /// A process with a free worker calls this instead of `insert_run`, so a new run starts
    /// without waiting for a claim round, and the queue keeps its order because a run waiting
    /// there makes the store decline. The default always declines: it stores the run queued,
    /// which is correct for every store, only slower to start.
    async fn insert_run_claimed(
        &self,
        spec: &RunSpec,
        lease: &Lease,
        started_at: Timestamp,
    ) -> Result<bool, StorageError> {
        let _ = (lease, started_at);
        self.insert_run(spec).await?;
        Ok(false)
    }
    /// Reads a run with the messages produced so far.
    async fn get_run(&self, id: Uuid) -> Result<Option<Run>, StorageError>;
    /// Lists the page of runs that `filter` selects, with their messages, ordered by
    /// `(created_at, id)` as [`page`] describes.
    async fn list_runs(&self, filter: &RunFilter) -> Result<Page<Run>, StorageError>;
    /// Reads a run for a response. A store that keeps the final JSON of terminal runs returns
    /// it as [`StoredRun::Encoded`]; the default decodes the run with [`Storage::get_run`].
    async fn get_run_document(&self, id: Uuid) -> Result<Option<StoredRun>, StorageError> {
        Ok(self.get_run(id).await?.map(|run| StoredRun::Decoded(Box::new(run))))
    }
    /// Lists runs for a response as [`Storage::list_runs`] selects them, each as
    /// [`Storage::get_run_document`] returns it.
    async fn list_run_documents(&self, filter: &RunFilter) -> Result<Page<StoredRun>, StorageError> {
        Ok(self.list_runs(filter).await?.map(|run| StoredRun::Decoded(Box::new(run))))
    }
    /// Counts the `created` runs, of every session, that come before the run with key
    /// `(created_at, id)` in claim order. It is the run's place in the queue as an estimate:
    /// a per-session limit can let a later run start first.
    async fn count_queued_before(&self, created_at: Timestamp, id: Uuid) -> Result<u64, StorageError>;
    /// Returns how long the `limit` most recently finished runs executed (`finished_at -
    /// started_at`), newest first. `team_id` selects the runs of one team (the team of the
    /// run's session when it was accepted); `None` selects runs of every team. Only runs that
    /// ended `complete` or `error` count, because a cancelled run shows little about how long
    /// a run takes.
    async fn recent_run_durations(&self, team_id: Option<Uuid>, limit: usize) -> Result<Vec<Duration>, StorageError>;

    /// Claims the oldest `created` run for `owner` for `lease` and marks it `active`.
    async fn claim_run(&self, owner: &str, lease: Duration) -> Result<Option<(RunSpec, Lease)>, StorageError>;
    /// Extends a lease by `lease` from now.
    async fn renew_lease(&self, lease: &Lease, duration: Duration) -> Result<Lease, StorageError>;
    /// Appends a message to the run's current attempt.
    async fn append_message(&self, lease: &Lease, message: &AgentMessage) -> Result<(), StorageError>;
    /// Ends the run and releases its lease.
    async fn finish_run(&self, lease: &Lease, outcome: &RunOutcome) -> Result<(), StorageError>;
    /// Re-queues `active` runs whose lease expired and drops the abandoned attempt's
    /// messages. Runs that already used `max_attempts` attempts end as `error` instead, and
    /// runs with a cancel request end as `stopped` with their messages.
    async fn requeue_expired(&self, max_attempts: u32) -> Result<RequeueReport, StorageError>;
    /// Gives a held run back to the queue (a worker shutting down): `created` with the next
    /// attempt, dropping the abandoned attempt's messages.
    async fn release_run(&self, lease: &Lease) -> Result<(), StorageError>;

    /// Cancels a run: a `created` run ends `stopped` at once with `reason` as its
    /// `stop_reason`, an `active` run gets a cancel request (the first reason wins), and a
    /// terminal run is left as it is. Returns the run after the change, `None` for an
    /// unknown id.
    async fn request_cancel(&self, run_id: Uuid, reason: &str) -> Result<Option<Run>, StorageError>;
    /// Lists the `active` runs leased to `owner` that have a cancel request, with its reason.
    async fn cancel_requests(&self, owner: &str) -> Result<Vec<(Uuid, String)>, StorageError>;

    /// Returns up to `limit` events of a run with a sequence number above `after`, in order.
    async fn list_run_events(&self, run_id: Uuid, after: u64, limit: usize) -> Result<Vec<RunEvent>, StorageError>;

    /// Returns the value of a per-session counter and increments it, atomically and durably,
    /// so concurrent callers never get the same value. Counters start at 0.
    async fn next_session_counter(&self, session_id: Uuid, counter: &str) -> Result<u64, StorageError>;
    /// Returns the team state the last complete run of a `continue_conversation` session left.
    async fn session_state(&self, session_id: Uuid) -> Result<Option<Value>, StorageError>;

    /// Stores the first use of an idempotency key, or returns the record already stored for
    /// the same scope and key (whatever its request), atomically.
    async fn put_idempotency_key(&self, record: &IdempotencyRecord) -> Result<IdempotencyRecord, StorageError>;

    /// Records the result of one item of a held batch run. Item results survive re-queues,
    /// so a later attempt skips finished items.
    async fn save_batch_item(&self, lease: &Lease, item: &BatchItem) -> Result<(), StorageError>;
    /// Returns the recorded item results of a batch run, by index.
    async fn batch_items(&self, run_id: Uuid) -> Result<Vec<BatchItem>, StorageError>;

    /// Sums the tokens (prompt plus completion, from `team_result.usage`) of the stored runs
    /// whose `created_by_user_id` is `user_id`. Runs without a result count zero, and deleted
    /// runs no longer count.
    async fn tokens_used_by(&self, user_id: &str) -> Result<u64, StorageError>;
    /// Checks that the store can serve requests: the backend completes a read and its schema
    /// is at the version this build migrates to. Fails with [`StorageErrorKind::Unavailable`]
    /// naming what is wrong. Cheap enough for a readiness probe every few seconds.
    async fn ready(&self) -> Result<(), StorageError>;
    /// Counts the runs in `status`, such as the queue depth (`created` runs), for metrics.
    async fn count_runs(&self, status: RunStatus) -> Result<u64, StorageError>;

    /// Returns whether other processes may write to this store. Waiters (long polls and event
    /// streams) are woken by this process's own writes, so they poll often only when another
    /// process can change a run unseen. The default, `true`, is right for any shared database.
    fn shared_with_other_processes(&self) -> bool {
        true
    }
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

/// The `stop_reason` of a run cancelled without a reason.
pub const DEFAULT_CANCEL_REASON: &str = "cancelled by user";
