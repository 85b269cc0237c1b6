//! The embedded SQLite implementation of the Aegis [`Storage`] trait: [`SqliteStore`].
//!
//! One database file stores every task, team, session, run and run message. The store opens
//! it in WAL mode with foreign keys on, brings its schema up to date with versioned
//! migrations (`PRAGMA user_version`) and rejects a file written by a newer version.
//!
//! # Threading
//!
//! No SQLite call runs on the async runtime's worker threads:
//!
//! - **Writes** go to one dedicated writer thread through a channel. The thread commits the
//!   writes that queued up while it was busy in one transaction (group commit), each in its
//!   own savepoint so one failed write does not undo the others. A write's future resolves
//!   only after its transaction committed.
//! - **Reads** run on Tokio's blocking thread pool (`spawn_blocking`) with a small pool of
//!   read-only connections. WAL mode lets them run while the writer commits.
//!
//! So the store must be used from inside a Tokio runtime (either flavour).
//!
//! # Durability
//!
//! With the default [`Synchronous::Normal`] a committed write survives a crash of the
//! process. [`Synchronous::Full`] also makes it survive a power loss or an operating system
//! crash, at the cost of an `fsync` per commit.
//!
//! # One process per file
//!
//! A store assumes that its process is the only one executing runs from the file. At open it
//! re-queues every `active` run (see [`SqliteConfig::requeue_on_open`]), because those runs
//! lost their worker when the previous process ended.
//!
//! NOTE: nothing enforces this yet. A second process that opens the same file re-queues the
//! runs the first one is executing. Fencing then rejects the first process's writes for those
//! runs, so each run still ends once, but its earlier attempt's work is lost.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//!
//! use aegis_core::{Aegis, EngineConfig, NewTask, ProviderEnv, Registry, Storage};
//! use aegis_store_sqlite::{SqliteConfig, SqliteStore, Synchronous};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("aegis.db");
//!
//! let config = SqliteConfig::default().with_synchronous(Synchronous::Full);
//! let store = SqliteStore::open(&path, config).await?;
//! let aegis = Aegis::new(Arc::new(store), Registry::with_builtins(ProviderEnv::default()), EngineConfig::default())?;
//! let task = aegis.create_task(NewTask::named("Automarking Task")).await?;
//! drop(aegis);
//!
//! // The task is in the file, so a store opened later reads it back.
//! let reopened = SqliteStore::open_default(&path).await?;
//! assert_eq!(reopened.get_task(task.id).await?, Some(task));
//! reopened.close().await;
//! # Ok(())
//! # }
//! ```

mod backup;
mod config;
mod deletion;
mod documents;
mod error;
mod events;
mod listing;
mod lock;
mod probe;
mod reader;
mod runs;
mod schema;
mod sessions;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use aegis_core::storage::{
    ComponentCache, DeleteOutcome, DeleteTarget, IdempotencyRecord, Lease, ListFilter, Page, RequeueReport, RunEvent,
    RunEventKind, RunFilter, RunOutcome, StorageError, StoredRun,
};
use aegis_core::{AgentMessage, BatchItem, ComponentModel, Run, RunSpec, Session, Storage, Task, Team, Timestamp};
use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

pub use backup::{BackupError, BackupReport, backup};
pub use config::{SqliteConfig, Synchronous};
pub use error::StoreOpenError;
use error::corrupt;
pub use schema::SCHEMA_VERSION;

use documents::{Document, Table};
use lock::FileLock;
use reader::ReaderPool;
use runs::{EncodedClaim, EncodedRun, Requeue};
use writer::Writer;

/// A [`Storage`] in one SQLite file. The crate docs describe its threads and durability.
#[derive(Debug)]
pub struct SqliteStore {
    path: PathBuf,
    writer: Writer,
    readers: Arc<ReaderPool>,
    requeued_on_open: RequeueReport,
    /// Components of claimed runs, keyed by the text in the run row. Used by claims only, so
    /// only the writer thread takes the lock.
    components: Arc<Mutex<ComponentCache>>,
    /// Components of teams, keyed by the text of the team's document, for runs that start
    /// in the write that stores them.
    team_components: Arc<Mutex<ComponentCache>>,
    /// Held while the store is open, so no second store writes the file.
    _lock: FileLock,
}

impl SqliteStore {
    /// Opens the database at `path`, creating the file if it does not exist, and migrates
    /// its schema.
    ///
    /// Fails with [`StoreOpenError::NewerSchema`] when the file was written by a newer
    /// version of this crate. With [`SqliteConfig::requeue_on_open`] set, every `active` run
    /// in the file is re-queued (or ended, once it used `max_attempts`) before this returns,
    /// and [`SqliteStore::requeued_on_open`] lists them.
    pub async fn open(path: impl AsRef<Path>, config: SqliteConfig) -> Result<SqliteStore, StoreOpenError> {
        config.validate()?;
        let path = path.as_ref().to_owned();
        let lock = FileLock::acquire(&path)?;

        // The writer creates and migrates the file, so it must be ready before the
        // read-only connections open it.
        let (writer, requeued_on_open) = Writer::start(&path, &config).await?;
        let readers = ReaderPool::open(path.clone(), config).await?;

        Ok(SqliteStore {
            path,
            writer,
            readers,
            requeued_on_open,
            components: Arc::default(),
            team_components: Arc::default(),
            _lock: lock,
        })
    }

    /// Opens the database at `path` with [`SqliteConfig::default`].
    pub async fn open_default(path: impl AsRef<Path>) -> Result<SqliteStore, StoreOpenError> {
        SqliteStore::open(path, SqliteConfig::default()).await
    }

    /// Returns the database file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Returns the runs that [`SqliteStore::open`] found `active` and re-queued or ended.
    pub fn requeued_on_open(&self) -> &RequeueReport {
        &self.requeued_on_open
    }

    /// Closes the store and waits until the writer thread has committed every write already
    /// sent and closed its connection.
    ///
    /// Dropping the store without closing it also lets the writer thread finish those writes
    /// and exit, but in the background.
    pub async fn close(self) {
        let SqliteStore { writer, readers, .. } = self;
        drop(readers);
        writer.close().await;
    }

    /// Encodes `value` here, on the caller's thread, so the writer thread spends its time on
    /// SQLite only.
    async fn update_document<T: Serialize>(
        &self,
        table: Table,
        mut document: Document,
        value: &T,
    ) -> Result<bool, StorageError> {
        document.json =
            serde_json::to_string(value).map_err(|error| error::encode_failed(table.kind(), document.id, error))?;
        self.writer.write(move |conn| documents::update(conn, table, &document)).await
    }

    async fn insert_document<T: Serialize>(
        &self,
        table: Table,
        mut document: Document,
        value: &T,
    ) -> Result<(), StorageError> {
        document.json =
            serde_json::to_string(value).map_err(|error| error::encode_failed(table.kind(), document.id, error))?;
        self.writer.write(move |conn| documents::insert(conn, table, &document)).await
    }
}

#[async_trait]
impl Storage for SqliteStore {
    async fn insert_task(&self, task: &Task) -> Result<(), StorageError> {
        let document = Document::new(task.id, task.created_at, task.archived, task.created_by_user_id.clone(), None);
        self.insert_document(Table::Tasks, document, task).await
    }

    async fn get_task(&self, id: Uuid) -> Result<Option<Task>, StorageError> {
        self.readers.read_now(move |conn| documents::get(conn, Table::Tasks, id)).await
    }

    async fn list_tasks(&self, filter: &ListFilter) -> Result<Page<Task>, StorageError> {
        let filter = filter.clone();
        self.readers.read(move |conn| documents::list(conn, Table::Tasks, &filter)).await
    }

    async fn insert_team(&self, team: &Team) -> Result<(), StorageError> {
        let document = Document::new(team.id, team.created_at, team.archived, team.created_by_user_id.clone(), None);
        self.insert_document(Table::Teams, document, team).await
    }

    async fn get_team(&self, id: Uuid) -> Result<Option<Team>, StorageError> {
        self.readers.read_now(move |conn| documents::get(conn, Table::Teams, id)).await
    }

    async fn get_team_component(&self, id: Uuid) -> Result<Option<Arc<ComponentModel>>, StorageError> {
        let cache = Arc::clone(&self.team_components);
        self.readers
            .read_now_single(move |conn| {
                let Some(text) = documents::get_text(conn, Table::Teams, id)? else {
                    return Ok(None);
                };
                let mut cache = cache.lock().unwrap_or_else(PoisonError::into_inner);
                let component = cache
                    .get_or_decode_with(text, |text| serde_json::from_str::<Team>(text).map(|team| team.component))
                    .map_err(|error| corrupt("team", id, error))?;
                Ok(Some(component))
            })
            .await
    }

    async fn list_teams(&self, filter: &ListFilter) -> Result<Page<Team>, StorageError> {
        let filter = filter.clone();
        self.readers.read(move |conn| documents::list(conn, Table::Teams, &filter)).await
    }

    async fn insert_session(&self, session: &Session) -> Result<(), StorageError> {
        let parents = Some((session.task_id, session.team_id));
        let document = Document::new(
            session.id,
            session.created_at,
            session.archived,
            session.created_by_user_id.clone(),
            parents,
        );
        self.insert_document(Table::Sessions, document, session).await
    }

    async fn get_session(&self, id: Uuid) -> Result<Option<Session>, StorageError> {
        self.readers.read_now(move |conn| documents::get(conn, Table::Sessions, id)).await
    }

    async fn list_sessions(&self, filter: &ListFilter) -> Result<Page<Session>, StorageError> {
        let filter = filter.clone();
        self.readers.read(move |conn| documents::list(conn, Table::Sessions, &filter)).await
    }

    async fn update_task(&self, task: &Task) -> Result<bool, StorageError> {
        let document = Document::new(task.id, task.created_at, task.archived, task.created_by_user_id.clone(), None);
        self.update_document(Table::Tasks, document, task).await
    }

    async fn update_team(&self, team: &Team) -> Result<bool, StorageError> {
        let document = Document::new(team.id, team.created_at, team.archived, team.created_by_user_id.clone(), None);
        self.update_document(Table::Teams, document, team).await
    }

    async fn update_session(&self, session: &Session) -> Result<bool, StorageError> {
        let parents = Some((session.task_id, session.team_id));
        let document = Document::new(
            session.id,
            session.created_at,
            session.archived,
            session.created_by_user_id.clone(),
            parents,
        );
        self.update_document(Table::Sessions, document, session).await
    }

    async fn set_run_archived(&self, id: Uuid, archived: bool) -> Result<Option<Run>, StorageError> {
        self.writer.write(move |conn| runs::set_run_archived(conn, id, archived)).await
    }

    async fn delete(&self, target: DeleteTarget, cascade: bool) -> Result<DeleteOutcome, StorageError> {
        self.writer.write(move |conn| deletion::delete(conn, target, cascade)).await
    }

    async fn delete_finished_runs(&self, finished_before: Timestamp, limit: usize) -> Result<Vec<Uuid>, StorageError> {
        self.writer.write(move |conn| deletion::delete_finished_runs(conn, finished_before, limit)).await
    }

    async fn insert_run(&self, spec: &RunSpec) -> Result<(), StorageError> {
        let run = EncodedRun::new(spec)?;
        self.writer.write(move |conn| runs::insert_run(conn, &run)).await
    }

    async fn insert_run_claimed(
        &self,
        spec: &RunSpec,
        lease: &Lease,
        started_at: Timestamp,
    ) -> Result<bool, StorageError> {
        // Both documents are encoded here, off the writer thread, because only the writer's
        // transaction tells which one the run is stored as.
        let run = EncodedRun::new(spec)?;
        let claim = EncodedClaim::new(spec, lease, started_at)?;
        self.writer.write(move |conn| runs::insert_run_claimed(conn, &run, &claim)).await
    }

    async fn get_run(&self, id: Uuid) -> Result<Option<Run>, StorageError> {
        self.readers.read_now(move |conn| runs::get_run(conn, id)).await
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Page<Run>, StorageError> {
        let filter = filter.clone();
        self.readers.read(move |conn| runs::list_runs(conn, &filter)).await
    }

    async fn get_run_document(&self, id: Uuid) -> Result<Option<StoredRun>, StorageError> {
        self.readers.read_now_single(move |conn| runs::get_run_document(conn, id)).await
    }

    async fn list_run_documents(&self, filter: &RunFilter) -> Result<Page<StoredRun>, StorageError> {
        let filter = filter.clone();
        self.readers.read(move |conn| runs::list_run_documents(conn, &filter)).await
    }

    async fn count_queued_before(&self, created_at: Timestamp, id: Uuid) -> Result<u64, StorageError> {
        self.readers.read(move |conn| runs::count_queued_before(conn, created_at, id)).await
    }

    async fn recent_run_durations(&self, team_id: Option<Uuid>, limit: usize) -> Result<Vec<Duration>, StorageError> {
        self.readers.read(move |conn| runs::recent_run_durations(conn, team_id, limit)).await
    }

    async fn claim_run(&self, owner: &str, lease: Duration) -> Result<Option<(RunSpec, Lease)>, StorageError> {
        let owner = owner.to_owned();
        let components = Arc::clone(&self.components);
        self.writer
            .write(move |conn| {
                let mut components = components.lock().unwrap_or_else(PoisonError::into_inner);
                runs::claim_run(conn, &owner, lease, &mut components)
            })
            .await
    }

    async fn renew_lease(&self, lease: &Lease, duration: Duration) -> Result<Lease, StorageError> {
        let lease = lease.clone();
        self.writer.write(move |conn| runs::renew_lease(conn, &lease, duration)).await
    }

    async fn append_message(&self, lease: &Lease, message: &AgentMessage) -> Result<(), StorageError> {
        let encode = |error| error::encode_failed("message of run", lease.run_id, error);
        let json = serde_json::to_string(message).map_err(encode)?;
        let event = RunEventKind::Message { attempt: lease.attempt, message: Box::new(message.clone()) };
        let event = serde_json::to_string(&event).map_err(encode)?;
        let lease = lease.clone();
        self.writer.write(move |conn| runs::append_message(conn, &lease, &json, &event)).await
    }

    async fn finish_run(&self, lease: &Lease, outcome: &RunOutcome) -> Result<(), StorageError> {
        let (lease, outcome) = (lease.clone(), outcome.clone());
        self.writer.write(move |conn| runs::finish_run(conn, &lease, &outcome)).await
    }

    async fn requeue_expired(&self, max_attempts: u32) -> Result<RequeueReport, StorageError> {
        let report = self.writer.write(move |conn| runs::requeue(conn, Requeue::Expired, max_attempts)).await?;
        if !report.requeued.is_empty() || !report.exhausted.is_empty() {
            tracing::debug!(
                path = %self.path.display(),
                requeued = report.requeued.len(),
                exhausted = report.exhausted.len(),
                "re-queued runs whose lease expired"
            );
        }
        Ok(report)
    }

    async fn release_run(&self, lease: &Lease) -> Result<(), StorageError> {
        let lease = lease.clone();
        self.writer.write(move |conn| runs::release_run(conn, &lease)).await
    }

    async fn request_cancel(&self, run_id: Uuid, reason: &str) -> Result<Option<Run>, StorageError> {
        let reason = reason.to_owned();
        self.writer.write(move |conn| runs::request_cancel(conn, run_id, &reason)).await
    }

    async fn cancel_requests(&self, owner: &str) -> Result<Vec<(Uuid, String)>, StorageError> {
        let owner = owner.to_owned();
        self.readers.read(move |conn| runs::cancel_requests(conn, &owner)).await
    }

    async fn list_run_events(&self, run_id: Uuid, after: u64, limit: usize) -> Result<Vec<RunEvent>, StorageError> {
        self.readers.read(move |conn| events::list_events(conn, run_id, after, limit)).await
    }

    async fn next_session_counter(&self, session_id: Uuid, counter: &str) -> Result<u64, StorageError> {
        let counter = counter.to_owned();
        self.writer.write(move |conn| sessions::next_counter(conn, session_id, &counter)).await
    }

    async fn session_state(&self, session_id: Uuid) -> Result<Option<Value>, StorageError> {
        self.readers.read(move |conn| sessions::session_state(conn, session_id)).await
    }

    async fn put_idempotency_key(&self, record: &IdempotencyRecord) -> Result<IdempotencyRecord, StorageError> {
        let record = record.clone();
        self.writer.write(move |conn| sessions::put_idempotency_key(conn, &record)).await
    }

    async fn save_batch_item(&self, lease: &Lease, item: &BatchItem) -> Result<(), StorageError> {
        let (lease, item) = (lease.clone(), item.clone());
        self.writer.write(move |conn| runs::save_batch_item(conn, &lease, &item)).await
    }

    async fn batch_items(&self, run_id: Uuid) -> Result<Vec<BatchItem>, StorageError> {
        self.readers.read(move |conn| sessions::batch_items(conn, run_id)).await
    }

    async fn tokens_used_by(&self, user_id: &str) -> Result<u64, StorageError> {
        let user_id = user_id.to_owned();
        self.readers.read(move |conn| runs::tokens_used_by(conn, &user_id)).await
    }

    async fn ready(&self) -> Result<(), StorageError> {
        if !self.writer.is_running() {
            return Err(StorageError::new(
                aegis_core::storage::StorageErrorKind::Unavailable,
                "the sqlite writer thread has stopped",
            ));
        }
        self.readers.read(probe::check_schema).await
    }

    async fn count_runs(&self, status: aegis_core::RunStatus) -> Result<u64, StorageError> {
        self.readers.read(move |conn| probe::count_runs(conn, &status)).await
    }

    fn shared_with_other_processes(&self) -> bool {
        // One process owns the database file, and it wakes the waiters of every run it changes.
        false
    }
}
