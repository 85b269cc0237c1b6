//! Running the server: open the store, start the workers, serve the router until a shutdown
//! signal.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use aegis_core::{Aegis, EngineConfig, ProviderEnv, Registry};
use aegis_store_sqlite::{SqliteConfig, SqliteStore};

/// Settings of one server process.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct ServeConfig {
    /// Address to listen on; port 0 picks a free port.
    pub bind: SocketAddr,
    /// SQLite database file; created when missing.
    pub db: PathBuf,
    /// Run engine settings.
    pub engine: EngineConfig,
    /// Provider keys and hosts the model clients fall back to.
    pub provider_env: ProviderEnv,
}

impl ServeConfig {
    /// Settings with the defaults of `aegis serve` for a database file and address.
    pub fn new(db: impl Into<PathBuf>, bind: SocketAddr) -> ServeConfig {
        ServeConfig { bind, db: db.into(), engine: EngineConfig::default(), provider_env: ProviderEnv::from_process_env() }
    }
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
        let _ = self.shutdown.send(());
        self.task.await.context("the server task panicked")?
    }
}

/// Opens the store, starts the workers and serves in the background.
pub async fn start(config: ServeConfig) -> anyhow::Result<RunningServer> {
    let (shutdown, signal) = tokio::sync::oneshot::channel::<()>();
    let (aegis, listener) = prepare(&config).await?;
    let addr = listener.local_addr().context("reading the bound address failed")?;
    let task = tokio::spawn(serve_on(aegis.clone(), listener, async {
        let _ = signal.await;
    }));
    Ok(RunningServer { addr, aegis, shutdown, task })
}

/// Serves until `shutdown` resolves, printing `listening on <addr>` to stdout once the socket
/// accepts connections.
pub async fn serve(config: ServeConfig, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let (aegis, listener) = prepare(&config).await?;
    let addr = listener.local_addr().context("reading the bound address failed")?;
    println!("listening on {addr}");
    serve_on(aegis, listener, shutdown).await
}

async fn prepare(config: &ServeConfig) -> anyhow::Result<(Aegis, TcpListener)> {
    let store = SqliteStore::open(&config.db, SqliteConfig::default())
        .await
        .with_context(|| format!("opening the database {} failed", config.db.display()))?;
    let registry = Registry::with_builtins(config.provider_env.clone());
    let aegis = Aegis::new(Arc::new(store), registry, config.engine.clone()).map_err(anyhow::Error::msg)?;
    let listener = TcpListener::bind(config.bind).await.with_context(|| format!("binding {} failed", config.bind))?;
    tracing::info!(db = %config.db.display(), addr = %config.bind, "server ready");
    Ok((aegis, listener))
}

async fn serve_on(aegis: Aegis, listener: TcpListener, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let workers = aegis.start();
    let app = crate::app(aegis);
    let served = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
    workers.stop().await;
    tracing::info!("server stopped");
    served.context("serving HTTP failed")
}
