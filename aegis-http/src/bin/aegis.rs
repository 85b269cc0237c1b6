//! The `aegis` server binary.
//!
//! `aegis serve --db PATH --bind ADDR` opens (or creates) the SQLite database, starts the run
//! workers and serves the REST API until SIGINT or SIGTERM. It prints `listening on <addr>` on
//! stdout once the socket accepts connections, so scripts and tests can bind port 0 and read the
//! port back; logs go to stderr.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use aegis_http::server::{ServeConfig, serve};

#[derive(Parser)]
#[command(name = "aegis", version, about = "Run AutoGen-compatible multi-agent LLM teams behind a REST API")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the REST API and execute runs.
    Serve(ServeArgs),
}

#[derive(Parser)]
struct ServeArgs {
    /// SQLite database file; created when missing.
    #[arg(long, env = "AEGIS_DB", default_value = "./aegis.db")]
    db: PathBuf,

    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "AEGIS_BIND", default_value = "127.0.0.1:8080")]
    bind: SocketAddr,

    /// Runs executed at once by this process.
    #[arg(long, env = "AEGIS_WORKERS", default_value_t = 256)]
    workers: usize,

    /// Deadline of one run, in seconds; a run still going then ends with RunTimeoutError.
    #[arg(long, env = "AEGIS_RUN_TIMEOUT", default_value_t = 600)]
    run_timeout: u64,

    /// Log format on stderr.
    #[arg(long, env = "AEGIS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => run_serve(args),
    }
}

fn run_serve(args: ServeArgs) -> anyhow::Result<()> {
    init_logging(args.log_format);

    let mut config = ServeConfig::new(args.db, args.bind);
    config.engine.workers = args.workers;
    config.engine.run_timeout = Duration::from_secs(args.run_timeout);

    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime failed")?;
    runtime.block_on(serve(config, shutdown_signal()))
}

fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_env("AEGIS_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "listening for SIGINT failed");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "listening for SIGTERM failed");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();

    tokio::select! {
        () = interrupt => tracing::info!("received SIGINT; shutting down"),
        () = terminate => tracing::info!("received SIGTERM; shutting down"),
    }
}
