//! Running the server: open the store, start the workers, serve the router until a shutdown
//! signal, then drain.
//!
//! The store is an SQLite file (the default, one process per file) or a PostgreSQL database
//! that several replicas share, each serving the API and executing runs ([`StoreChoice`]).
//!
//! Shutdown happens in this order, so no accepted run is lost and no client hangs. New runs
//! get 503 with `Retry-After` at once, while every other request is still served. The
//! executing runs get [`ServeConfig::shutdown_grace`] to finish, with their leases renewed.
//! The rest go back to the queue for the next start. Then event streams and long polls end
//! and the HTTP server stops. An idle server skips the wait and exits at once.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use tokio::net::TcpListener;

use aegis_core::model::{ProviderHttp, ProviderHttpConfig};
use aegis_core::{Aegis, EngineConfig, ProviderEnv, Registry, Storage};
use aegis_store_postgres::{PostgresConfig, PostgresStore, redact_database_url};
use aegis_store_sqlite::{SqliteConfig, SqliteStore};

use crate::auth::AuthConfig;
use crate::limits::LimitsConfig;

/// The store a server keeps its data in.
#[derive(Clone)]
#[non_exhaustive]
pub enum StoreChoice {
    /// An SQLite database file, created when missing. One server process owns the file.
    Sqlite(PathBuf),
    /// A PostgreSQL database that any number of server replicas share.
    Postgres {
        /// `postgres://user:password@host:port/dbname`, or a `key=value` connection string.
        url: String,
        /// Connections this process opens at most.
        pool_size: usize,
    },
}

impl StoreChoice {
    /// Returns a description for logs: the file path, or the URL with its password masked.
    pub fn describe(&self) -> String {
        match self {
            StoreChoice::Sqlite(path) => path.display().to_string(),
            StoreChoice::Postgres { url, .. } => redact_database_url(url),
        }
    }
}

/// Prints the URL with its password masked, so a logged config leaks no secret.
impl std::fmt::Debug for StoreChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreChoice::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            StoreChoice::Postgres { pool_size, .. } => {
                f.debug_struct("Postgres").field("url", &self.describe()).field("pool_size", pool_size).finish()
            }
        }
    }
}

/// Settings of one server process.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServeConfig {
    /// Address to listen on; port 0 picks a free port.
    pub bind: SocketAddr,
    /// The store of runs and resources.
    pub store: StoreChoice,
    /// Run engine settings.
    pub engine: EngineConfig,
    /// Provider keys and hosts the model clients fall back to.
    pub provider_env: ProviderEnv,
    /// Hosts model clients may call besides the defaults (loopback, the providers' hosts and
    /// those of `provider_env`), as patterns such as `models.internal:8000` or
    /// `*.openai.azure.com`; see `aegis_core::model::hosts`.
    pub allowed_model_hosts: Vec<String>,
    /// The HTTP version and connection pools of model calls.
    pub provider_http: ProviderHttpConfig,
    /// How long shutdown lets executing runs finish before it hands them back to the queue.
    pub shutdown_grace: Duration,
    /// Terminal runs that finished longer ago than this are deleted with their messages,
    /// checked at start-up and then every [`RETENTION_INTERVAL`]; `None` keeps runs forever.
    pub retention: Option<Duration>,
    /// API keys, and whether a server without them may listen beyond loopback.
    pub auth: AuthConfig,
    /// Per-key request rate and per-user token budget.
    pub limits: LimitsConfig,
    /// The largest request body accepted, in bytes; a larger body gets 413. Defaults to
    /// [`DEFAULT_MAX_BODY_BYTES`](crate::DEFAULT_MAX_BODY_BYTES), 1 MiB.
    pub max_body_bytes: usize,
}

/// How often the server deletes runs past the retention period.
pub const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);

/// The most runs one retention statement deletes, so a large backlog does not hold the
/// writer for long; a sweep repeats until fewer are left.
const RETENTION_BATCH: usize = 500;

impl ServeConfig {
    /// Settings with the defaults of `aegis serve` for an SQLite database file and address.
    pub fn new(db: impl Into<PathBuf>, bind: SocketAddr) -> ServeConfig {
        ServeConfig::with_store(StoreChoice::Sqlite(db.into()), bind)
    }

    /// Settings with the defaults of `aegis serve` for a store and address.
    pub fn with_store(store: StoreChoice, bind: SocketAddr) -> ServeConfig {
        ServeConfig {
            bind,
            store,
            engine: EngineConfig::default(),
            provider_env: ProviderEnv::from_process_env(),
            allowed_model_hosts: Vec::new(),
            provider_http: ProviderHttpConfig::default(),
            shutdown_grace: Duration::from_secs(30),
            retention: None,
            auth: AuthConfig::default(),
            limits: LimitsConfig::default(),
            max_body_bytes: crate::DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// Builds the application with the settings of `config`.
fn app_for(aegis: Aegis, config: &ServeConfig) -> Router {
    let app_config = crate::AppConfig {
        auth: config.auth.clone(),
        limits: config.limits.clone(),
        max_body_bytes: config.max_body_bytes,
    };
    crate::app_with_config(aegis, &app_config)
}

/// A server started by [`start`], serving in the background.
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    aegis: Aegis,
    shutdown: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningServer {
    /// Returns the address the server accepts connections on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Returns the service behind the server, for embedding applications.
    pub fn aegis(&self) -> &Aegis {
        &self.aegis
    }

    /// Stops accepting connections, lets in-flight requests finish and stops the workers.
    pub async fn stop(self) -> anyhow::Result<()> {
        let RunningServer { aegis, shutdown, task, .. } = self;
        // The serving task closes the store once it holds the last reference.
        drop(aegis);
        let _ = shutdown.send(());
        task.await.context("the server task panicked")?
    }
}

/// Opens the store, starts the workers and serves in the background.
pub async fn start(config: ServeConfig) -> anyhow::Result<RunningServer> {
    let (shutdown, signal) = tokio::sync::oneshot::channel::<()>();
    let (aegis, store, listener) = prepare(&config).await?;
    let addr = listener.local_addr().context("reading the bound address failed")?;
    let app = app_for(aegis.clone(), &config);
    let serving = serve_on(aegis.clone(), app, listener, config.shutdown_grace, config.retention, async {
        let _ = signal.await;
    });
    let task = tokio::spawn(async move {
        let served = serving.await;
        close_store(store).await;
        served
    });
    Ok(RunningServer { addr, aegis, shutdown, task })
}

/// Serves until `shutdown` resolves, printing `listening on <addr>` to stdout once the socket
/// accepts connections.
pub async fn serve(config: ServeConfig, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let (aegis, store, listener) = prepare(&config).await?;
    let addr = listener.local_addr().context("reading the bound address failed")?;
    println!("listening on {addr}");
    let app = app_for(aegis.clone(), &config);
    let served = serve_on(aegis, app, listener, config.shutdown_grace, config.retention, shutdown).await;
    close_store(store).await;
    served
}

/// A store opened by [`prepare`], kept by its concrete type so that it can be closed.
enum OpenedStore {
    Sqlite(Arc<SqliteStore>),
    Postgres(PostgresStore),
}

impl OpenedStore {
    fn shared(&self) -> Arc<dyn Storage> {
        match self {
            OpenedStore::Sqlite(store) => Arc::clone(store) as Arc<dyn Storage>,
            OpenedStore::Postgres(store) => Arc::new(store.clone()),
        }
    }
}

/// Closes the store once the server stopped. Every PostgreSQL write is committed when it
/// returns, so closing its pool only ends the connections.
async fn close_store(store: OpenedStore) {
    match store {
        OpenedStore::Sqlite(store) => close_sqlite(store).await,
        OpenedStore::Postgres(store) => {
            store.close();
            tracing::info!(url = %store.redacted_url(), "database connections closed");
        }
    }
}

/// Closes the store once every other reference is gone, so the writer commits what is queued
/// and SQLite folds its write-ahead log back into the database file. Without this, a clean
/// stop could leave the data in `<db>-wal` only, and a copy of the database file alone would
/// miss it.
async fn close_sqlite(store: Arc<SqliteStore>) {
    let mut store = store;
    for _ in 0..100 {
        match Arc::try_unwrap(store) {
            Ok(owned) => {
                owned.close().await;
                tracing::info!("database closed");
                return;
            }
            Err(shared) => {
                // Worker and connection tasks drop their references as they wind down.
                store = shared;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    tracing::warn!("the database is still in use at exit; the next start replays its write-ahead log");
}

async fn prepare(config: &ServeConfig) -> anyhow::Result<(Aegis, OpenedStore, TcpListener)> {
    // Settings are checked before the database is touched, so a typo never creates a file.
    config.engine.validate().map_err(anyhow::Error::msg)?;
    config.auth.check_bind(config.bind).map_err(anyhow::Error::msg)?;
    config.limits.validate().map_err(anyhow::Error::msg)?;
    if config.limits.rate_limit_rps.is_some() && config.auth.api_keys.is_empty() {
        anyhow::bail!(
            "the rate limit applies per API key, but no keys are configured; set --api-keys (AEGIS_API_KEYS) or \
             leave --rate-limit-rps out"
        );
    }

    let http = ProviderHttp::new(&config.provider_http).context("building the HTTP clients for model calls failed")?;
    let mut registry = Registry::with_builtins_and_http(config.provider_env.clone(), http);
    for pattern in &config.allowed_model_hosts {
        registry.allow_model_host(pattern)?;
    }

    let store = open_store(config).await?;
    let mut engine = config.engine.clone();
    engine.token_budget = config.limits.token_budget.or(engine.token_budget);
    let aegis = Aegis::new(store.shared(), registry, engine).map_err(anyhow::Error::msg)?;
    let listener = TcpListener::bind(config.bind).await.with_context(|| format!("binding {} failed", config.bind))?;
    let addr = listener.local_addr().context("reading the bound address failed")?;
    tracing::info!(
        db = %config.store.describe(),
        %addr,
        api_keys = config.auth.api_keys.len(),
        rate_limit_rps = config.limits.rate_limit_rps,
        token_budget = config.limits.token_budget,
        provider_http = ?config.provider_http.version,
        provider_pools = config.provider_http.pools,
        "server ready"
    );
    Ok((aegis, store, listener))
}

async fn open_store(config: &ServeConfig) -> anyhow::Result<OpenedStore> {
    match &config.store {
        StoreChoice::Sqlite(path) => {
            let sqlite = SqliteConfig::default().with_max_attempts(config.engine.max_attempts);
            let store = SqliteStore::open(path, sqlite)
                .await
                .with_context(|| format!("opening the database {} failed", path.display()))?;
            Ok(OpenedStore::Sqlite(Arc::new(store)))
        }
        StoreChoice::Postgres { url, pool_size } => {
            // The error names the database by its masked URL already.
            let postgres = PostgresConfig::default().with_pool_size(*pool_size);
            let store = PostgresStore::connect(url, postgres).await?;
            Ok(OpenedStore::Postgres(store))
        }
    }
}

/// Deletes terminal runs older than `age` now and then every [`RETENTION_INTERVAL`], until
/// the task is aborted.
async fn delete_expired_runs(aegis: Aegis, age: Duration) {
    let mut interval = tokio::time::interval(RETENTION_INTERVAL);
    loop {
        interval.tick().await;
        loop {
            match aegis.delete_runs_older_than(age, RETENTION_BATCH).await {
                Ok(deleted) if deleted.len() < RETENTION_BATCH => {
                    if !deleted.is_empty() {
                        tracing::info!(
                            deleted = deleted.len(),
                            retention_s = age.as_secs(),
                            "deleted runs past retention"
                        );
                    }
                    break;
                }
                Ok(deleted) => {
                    tracing::info!(deleted = deleted.len(), retention_s = age.as_secs(), "deleted runs past retention")
                }
                Err(error) => {
                    tracing::warn!(%error, "deleting runs past retention failed; retrying at the next interval");
                    break;
                }
            }
        }
    }
}

async fn serve_on(
    aegis: Aegis,
    app: Router,
    listener: TcpListener,
    grace: Duration,
    retention: Option<Duration>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let workers = aegis.start();
    let retention = retention.map(|age| tokio::spawn(delete_expired_runs(aegis.clone(), age)));
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    // A make-service hands each connection a cheap clone of the router; serving the `Router`
    // itself would rebuild every route for each connection.
    let server = axum::serve(listener, app.into_make_service()).with_graceful_shutdown(async {
        let _ = http_stopped.await;
    });
    let mut server = tokio::spawn(server.into_future());

    // The HTTP server keeps serving while the workers drain; it only ends on its own if
    // serving failed.
    let early_end = tokio::select! {
        () = shutdown => None,
        ended = &mut server => Some(ended),
    };
    tracing::info!(active_runs = workers.active_runs(), "shutting down");
    if let Some(retention) = retention {
        retention.abort();
    }
    workers.shutdown(grace).await;
    let served = match early_end {
        Some(ended) => ended,
        None => {
            let _ = stop_http.send(());
            server.await
        }
    };
    tracing::info!("server stopped");
    served.context("the HTTP server task panicked")?.context("serving HTTP failed")
}
