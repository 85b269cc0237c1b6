//! The PostgreSQL implementation of the Aegis [`Storage`] trait: [`PostgresStore`], for
//! several server replicas sharing one database.
//!
//! Every replica connects to the same database, applies the schema migrations it lacks at
//! start-up (under an advisory lock, so replicas may start together) and then acts as API
//! server and worker at once. Nothing but the database is shared: runs, leases, cancel
//! requests, run events, session counters and idempotency keys are rows any replica reads.
//!
//! # Leases across replicas
//!
//! Claims take the oldest claimable run with `SELECT ... FOR UPDATE SKIP LOCKED`, and lease
//! expiry is judged by the database's clock, so a replica that dies (even by `kill -9`) leaves
//! its runs to the sweeps of the others once their leases expire. The run's attempt number
//! fences every write: a replica that stalled past its lease cannot overwrite the next
//! attempt. The `runs` module describes the locking.
//!
//! # Durability
//!
//! A write returns once its transaction committed. With PostgreSQL's default
//! `synchronous_commit = on` a commit survives a crash of the server. Each pooled connection
//! turns `synchronous_commit` back on where the server or role sets it to `off`, which would
//! let the last commits vanish in a server crash after the store had reported them stored.
//!
//! # Example
//!
//! ```no_run
//! use aegis_core::{NewTask, Storage, Task};
//! use aegis_store_postgres::{PostgresConfig, PostgresStore};
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let url = "postgres://aegis:secret@127.0.0.1:5432/aegis";
//! let store = PostgresStore::connect(url, PostgresConfig::default().with_pool_size(32)).await?;
//! assert_eq!(store.get_task(uuid::Uuid::now_v7()).await?, None::<Task>);
//! store.close();
//! # Ok(())
//! # }
//! ```
//!
//! # TLS
//!
//! The URL's `sslmode` (`disable`, `prefer` by default, `require`, `verify-ca`, `verify-full`)
//! and `sslrootcert` work as in libpq, over rustls; the `tls` module describes the details.

mod config;
mod conn;
mod deletion;
mod documents;
mod error;
mod events;
mod listing;
mod probe;
mod runs;
mod schema;
mod sessions;
#[cfg(feature = "testing")]
pub mod testing;
mod tls;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aegis_core::storage::{
    ComponentCache, DeleteOutcome, DeleteTarget, IdempotencyRecord, Lease, ListFilter, Page, RequeueReport, RunEvent,
    RunFilter, RunOutcome, StorageError,
};
use aegis_core::{AgentMessage, BatchItem, Run, RunSpec, Session, Storage, Task, Team, Timestamp};
use async_trait::async_trait;
use deadpool_postgres::{Hook, HookError, Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use serde_json::Value;
use uuid::Uuid;

pub use config::{PostgresConfig, redact_database_url};
pub use error::StoreOpenError;
pub use schema::SCHEMA_VERSION;

use documents::Table;

/// The statement each new connection runs first, as the crate docs describe under
/// durability. It leaves every setting but `off` alone, so `remote_apply` stays stronger.
const DURABLE_COMMITS: &str =
    "SELECT set_config('synchronous_commit', 'on', false) WHERE current_setting('synchronous_commit') = 'off'";

/// A [`Storage`] in a PostgreSQL database, shared by any number of processes.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
    /// The database URL with the password masked, for logs.
    url: String,
    /// Team components of claimed runs, shared by the runs whose snapshot has equal text.
    components: Arc<Mutex<ComponentCache>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").field("url", &self.url).field("pool", &self.pool.status()).finish()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (a `postgres://` URL or a `key=value` string),
    /// checks that it is reachable and brings its schema up to date.
    ///
    /// Fails with [`StoreOpenError::NewerSchema`] when a newer version of this crate already
    /// migrated the database.
    pub async fn connect(url: &str, config: PostgresConfig) -> Result<PostgresStore, StoreOpenError> {
        config.validate()?;
        let (url, tls_options) = tls::split_tls_options(url).map_err(StoreOpenError::InvalidUrl)?;
        let mut pg_config: tokio_postgres::Config =
            url.parse().map_err(|error: tokio_postgres::Error| StoreOpenError::InvalidUrl(error.to_string()))?;
        let redacted = config::redact(&pg_config);
        let connector =
            tls::connector(&tls_options).map_err(|message| StoreOpenError::Tls { url: redacted.clone(), message })?;
        if pg_config.get_connect_timeout().is_none() {
            pg_config.connect_timeout(config.connect_timeout);
        }
        if pg_config.get_application_name().is_none() {
            pg_config.application_name("aegis");
        }

        let pool = build_pool(pg_config, connector, &config, &redacted)?;
        let connect_failed = |source: Box<dyn std::error::Error + Send + Sync>| StoreOpenError::Connect {
            url: redacted.clone(),
            source,
        };
        let mut client = pool.get().await.map_err(|error| connect_failed(Box::new(error)))?;
        schema::migrate(&mut client, &redacted).await?;
        drop(client);

        tracing::info!(url = %redacted, pool_size = config.pool_size, "connected to postgres");
        Ok(PostgresStore { pool, url: redacted, components: Arc::default() })
    }

    /// Returns the database URL with its password masked.
    pub fn redacted_url(&self) -> &str {
        &self.url
    }

    /// Closes the pool: idle connections close now, and connections in use close when they
    /// are returned. Operations started afterwards fail with `Unavailable`. Every write that
    /// returned is already committed, so closing loses nothing.
    pub fn close(&self) {
        self.pool.close();
    }

    async fn client(&self) -> Result<deadpool_postgres::Client, StorageError> {
        self.pool.get().await.map_err(error::pool)
    }
}

fn build_pool(
    pg_config: tokio_postgres::Config,
    connector: tls::RustlsConnect,
    config: &PostgresConfig,
    redacted: &str,
) -> Result<Pool, StoreOpenError> {
    let manager = Manager::from_config(pg_config, connector, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager)
        .max_size(config.pool_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(config.pool_wait_timeout))
        .create_timeout(Some(config.connect_timeout))
        .post_create(Hook::async_fn(|client, _| {
            Box::pin(async move {
                client.batch_execute(DURABLE_COMMITS).await.map_err(HookError::Backend)?;
                Ok(())
            })
        }))
        .build()
        .map_err(|error| StoreOpenError::Connect { url: redacted.to_owned(), source: Box::new(error) })
}

/// Runs `body`, a `Result`, in a transaction on a pooled connection and commits it when `body`
/// is `Ok`. An error returns early, and dropping the uncommitted transaction rolls it back.
macro_rules! in_transaction {
    ($store:expr, $action:expr, |$tx:ident| $body:expr) => {{
        let mut client = $store.client().await?;
        let $tx = client.transaction().await.map_err(|error| error::backend($action, error))?;
        let value = $body?;
        $tx.commit().await.map_err(|error| error::backend($action, error))?;
        Ok(value)
    }};
}

#[async_trait]
impl Storage for PostgresStore {
    async fn insert_task(&self, task: &Task) -> Result<(), StorageError> {
        documents::insert(&*self.client().await?, Table::Tasks, task.id, task.created_at, task).await
    }

    async fn get_task(&self, id: Uuid) -> Result<Option<Task>, StorageError> {
        documents::get(&*self.client().await?, Table::Tasks, id).await
    }

    async fn list_tasks(&self, filter: &ListFilter) -> Result<Page<Task>, StorageError> {
        documents::list(&*self.client().await?, Table::Tasks, filter).await
    }

    async fn insert_team(&self, team: &Team) -> Result<(), StorageError> {
        documents::insert(&*self.client().await?, Table::Teams, team.id, team.created_at, team).await
    }

    async fn get_team(&self, id: Uuid) -> Result<Option<Team>, StorageError> {
        documents::get(&*self.client().await?, Table::Teams, id).await
    }

    async fn list_teams(&self, filter: &ListFilter) -> Result<Page<Team>, StorageError> {
        documents::list(&*self.client().await?, Table::Teams, filter).await
    }

    async fn insert_session(&self, session: &Session) -> Result<(), StorageError> {
        documents::insert(&*self.client().await?, Table::Sessions, session.id, session.created_at, session).await
    }

    async fn get_session(&self, id: Uuid) -> Result<Option<Session>, StorageError> {
        documents::get(&*self.client().await?, Table::Sessions, id).await
    }

    async fn list_sessions(&self, filter: &ListFilter) -> Result<Page<Session>, StorageError> {
        documents::list(&*self.client().await?, Table::Sessions, filter).await
    }

    async fn update_task(&self, task: &Task) -> Result<bool, StorageError> {
        documents::update(&*self.client().await?, Table::Tasks, task.id, task).await
    }

    async fn update_team(&self, team: &Team) -> Result<bool, StorageError> {
        documents::update(&*self.client().await?, Table::Teams, team.id, team).await
    }

    async fn update_session(&self, session: &Session) -> Result<bool, StorageError> {
        documents::update(&*self.client().await?, Table::Sessions, session.id, session).await
    }

    async fn set_run_archived(&self, id: Uuid, archived: bool) -> Result<Option<Run>, StorageError> {
        in_transaction!(self, "archiving a run", |tx| runs::set_run_archived(&tx, id, archived).await)
    }

    async fn delete(&self, target: DeleteTarget, cascade: bool) -> Result<DeleteOutcome, StorageError> {
        in_transaction!(self, "deleting", |tx| deletion::delete(&tx, target, cascade).await)
    }

    async fn delete_finished_runs(&self, finished_before: Timestamp, limit: usize) -> Result<Vec<Uuid>, StorageError> {
        in_transaction!(self, "deleting runs past retention", |tx| deletion::delete_finished_runs(
            &tx,
            finished_before,
            limit
        )
        .await)
    }

    async fn insert_run(&self, spec: &RunSpec) -> Result<(), StorageError> {
        runs::insert_run(&*self.client().await?, spec).await
    }

    async fn get_run(&self, id: Uuid) -> Result<Option<Run>, StorageError> {
        runs::get_run(&*self.client().await?, id).await
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Page<Run>, StorageError> {
        runs::list_runs(&*self.client().await?, filter).await
    }

    async fn count_queued_before(&self, created_at: Timestamp, id: Uuid) -> Result<u64, StorageError> {
        runs::count_queued_before(&*self.client().await?, created_at, id).await
    }

    async fn recent_run_durations(&self, team_id: Option<Uuid>, limit: usize) -> Result<Vec<Duration>, StorageError> {
        runs::recent_run_durations(&*self.client().await?, team_id, limit).await
    }

    async fn claim_run(&self, owner: &str, lease: Duration) -> Result<Option<(RunSpec, Lease)>, StorageError> {
        in_transaction!(self, "claiming a run", |tx| runs::claim_run(&tx, owner, lease, &self.components).await)
    }

    async fn renew_lease(&self, lease: &Lease, duration: Duration) -> Result<Lease, StorageError> {
        runs::renew_lease(&*self.client().await?, lease, duration).await
    }

    async fn append_message(&self, lease: &Lease, message: &AgentMessage) -> Result<(), StorageError> {
        runs::append_message(&*self.client().await?, lease, message).await
    }

    async fn finish_run(&self, lease: &Lease, outcome: &RunOutcome) -> Result<(), StorageError> {
        in_transaction!(self, "finishing a run", |tx| runs::finish_run(&tx, lease, outcome).await)
    }

    async fn requeue_expired(&self, max_attempts: u32) -> Result<RequeueReport, StorageError> {
        let report =
            in_transaction!(self, "re-queueing expired runs", |tx| runs::requeue_expired(&tx, max_attempts).await)?;
        if !(report.requeued.is_empty() && report.exhausted.is_empty() && report.stopped.is_empty()) {
            tracing::debug!(
                requeued = report.requeued.len(),
                exhausted = report.exhausted.len(),
                stopped = report.stopped.len(),
                "swept runs whose lease expired"
            );
        }
        Ok(report)
    }

    async fn release_run(&self, lease: &Lease) -> Result<(), StorageError> {
        in_transaction!(self, "releasing a run", |tx| runs::release_run(&tx, lease).await)
    }

    async fn request_cancel(&self, run_id: Uuid, reason: &str) -> Result<Option<Run>, StorageError> {
        in_transaction!(self, "cancelling a run", |tx| runs::request_cancel(&tx, run_id, reason).await)
    }

    async fn cancel_requests(&self, owner: &str) -> Result<Vec<(Uuid, String)>, StorageError> {
        runs::cancel_requests(&*self.client().await?, owner).await
    }

    async fn list_run_events(&self, run_id: Uuid, after: u64, limit: usize) -> Result<Vec<RunEvent>, StorageError> {
        events::list_events(&*self.client().await?, run_id, after, limit).await
    }

    async fn next_session_counter(&self, session_id: Uuid, counter: &str) -> Result<u64, StorageError> {
        sessions::next_counter(&*self.client().await?, session_id, counter).await
    }

    async fn session_state(&self, session_id: Uuid) -> Result<Option<Value>, StorageError> {
        sessions::session_state(&*self.client().await?, session_id).await
    }

    async fn put_idempotency_key(&self, record: &IdempotencyRecord) -> Result<IdempotencyRecord, StorageError> {
        sessions::put_idempotency_key(&*self.client().await?, record).await
    }

    async fn save_batch_item(&self, lease: &Lease, item: &BatchItem) -> Result<(), StorageError> {
        runs::save_batch_item(&*self.client().await?, lease, item).await
    }

    async fn batch_items(&self, run_id: Uuid) -> Result<Vec<BatchItem>, StorageError> {
        sessions::batch_items(&*self.client().await?, run_id).await
    }

    async fn tokens_used_by(&self, user_id: &str) -> Result<u64, StorageError> {
        runs::tokens_used_by(&*self.client().await?, user_id).await
    }

    async fn ready(&self) -> Result<(), StorageError> {
        let client = self.pool.get().await.map_err(|error| {
            probe::unavailable(format!("connecting to the postgres database {} failed: {error}", self.url))
        })?;
        probe::check_schema(&*client).await
    }

    async fn count_runs(&self, status: aegis_core::RunStatus) -> Result<u64, StorageError> {
        probe::count_runs(&*self.client().await?, &status).await
    }
}
