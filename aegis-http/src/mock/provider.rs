//! [`MockProvider`], the handle of a running mock server, and [`serve_forever`] for running
//! one as a standalone process.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;

use super::config::MockConfig;
use super::reply::MockReply;
use super::request::RecordedRequest;
use super::server::{self, Shared};

/// A running mock provider. Dropping it, or calling [`MockProvider::shutdown`], stops the
/// server.
pub struct MockProvider {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: Option<JoinHandle<()>>,
}

impl MockProvider {
    /// Binds `config.addr` and starts serving in a task on the current tokio runtime. The
    /// socket accepts connections once this returns.
    ///
    /// # Errors
    ///
    /// Fails when `config.addr` cannot be bound, or is not a loopback address and
    /// [`MockConfig::allow_non_loopback`] is off.
    pub async fn start(config: MockConfig) -> io::Result<MockProvider> {
        // The mock accepts any prompt without a real key check, so it must not be reachable
        // from other machines unless the caller says so.
        if !config.addr.ip().is_loopback() && !config.allow_non_loopback {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the mock provider only binds loopback addresses, got {}; use 127.0.0.1 or [::1], or allow other addresses (--allow-non-loopback)",
                    config.addr
                ),
            ));
        }

        let listener = tokio::net::TcpListener::bind(config.addr).await?;
        let addr = listener.local_addr()?;

        let shared = Arc::new(Shared::new(config));
        let task = tokio::spawn(server::serve(listener, Arc::clone(&shared)));
        Ok(MockProvider { addr, shared, task: Some(task) })
    }

    /// Returns the address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Returns the base URL to give an OpenAI client, `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Queues `reply` for a later chat completion request. Replies are served in the order
    /// they were pushed, one per request.
    pub fn push(&self, reply: MockReply) {
        self.shared.push_reply(reply);
    }

    /// Returns how many pushed replies no request has used yet.
    pub fn queued(&self) -> usize {
        self.shared.queued_replies()
    }

    /// Returns a copy of every request received so far, in arrival order. The list stays
    /// empty when the config turned request recording off.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.recorded_requests()
    }

    /// Stops the server and waits until the socket is closed. Requests still waiting for a
    /// reply, including `Hang` and `Delay` ones, lose their connection.
    pub async fn shutdown(mut self) {
        self.shared.shutdown.close();
        let Some(task) = self.task.take() else {
            return;
        };

        if let Err(error) = task.await {
            tracing::error!(%error, "mock provider task failed");
        }
    }
}

impl Drop for MockProvider {
    /// Fires the shutdown signal without waiting. The server task then closes the socket in
    /// the background.
    fn drop(&mut self) {
        self.shared.shutdown.close();
    }
}

impl std::fmt::Debug for MockProvider {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("MockProvider")
            .field("addr", &self.addr)
            .field("queued", &self.queued())
            .finish_non_exhaustive()
    }
}

/// Runs a mock provider on `addr` until the process receives SIGINT (Ctrl-C) or, on Unix,
/// SIGTERM, for manual tests and load tests against a separate process.
///
/// `addr` replaces `config.addr`. Request recording is turned off because no caller can read the
/// log of a standalone server, and it would grow with every request. The base URL is logged
/// through `tracing` at info level once the socket accepts connections.
///
/// # Errors
///
/// Fails when `addr` is not a loopback address or cannot be bound, or when the signal
/// handlers cannot be installed.
pub async fn serve_forever(addr: SocketAddr, config: MockConfig) -> io::Result<()> {
    let provider = MockProvider::start(config.with_addr(addr).with_request_log(false)).await?;
    tracing::info!(base_url = %provider.base_url(), "mock provider listening");

    let signal = wait_for_shutdown_signal().await;
    tracing::info!(base_url = %provider.base_url(), "mock provider stopping");
    provider.shutdown().await;
    signal
}

#[cfg(unix)]
async fn wait_for_shutdown_signal() -> io::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result,
        _ = terminate.recv() => Ok(()),
    }
}

#[cfg(not(unix))]
async fn wait_for_shutdown_signal() -> io::Result<()> {
    tokio::signal::ctrl_c().await
}
