//! The `aegis` server binary.
//!
//! `aegis serve --db PATH --bind ADDR` opens (or creates) the SQLite database, starts the run
//! workers and serves the REST API until SIGINT or SIGTERM. With `--database-url
//! postgres://...` it uses a PostgreSQL database instead, which several replicas can share. It prints `listening on <addr>` on
//! stdout once the socket accepts connections, so scripts and tests can bind port 0 and read the
//! port back; logs go to stderr.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tracing_subscriber::EnvFilter;

use aegis_core::model::ProviderHttpVersion;
use aegis_http::auth::ApiKeys;
use aegis_http::server::{ServeConfig, StoreChoice, serve};

// jemalloc rather than the system allocator. With 5,000 runs in flight, glibc's malloc took a
// sixth of the server's CPU time, mostly walking its free lists. jemalloc cut the CPU time per
// run there by a quarter for 6 % more memory, and the instructions per run at 64 in flight by
// 9 %. mimalloc saved as much time but kept half again as much memory.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

// Under aegis/ rather than beside this file, where Cargo would take it for another binary.
#[path = "aegis/ops.rs"]
mod ops;

/// The SQLite file used when neither `--db` nor `--database-url` is given.
const DEFAULT_DB: &str = "./aegis.db";

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
    /// Copy an SQLite database to a new file while a server may be writing to it.
    Backup(ops::BackupArgs),
    /// Serve the bundled OpenAI-compatible mock provider, for trying Aegis without a model.
    #[cfg(feature = "mock")]
    MockProvider(ops::MockProviderArgs),
}

#[derive(Parser)]
struct ServeArgs {
    /// TOML file of settings: keys are the long flag names in kebab-case (run-timeout = 600).
    /// Flags and environment variables override it. See docs/CONFIGURATION.md.
    #[arg(long, env = "AEGIS_CONFIG")]
    config: Option<PathBuf>,

    /// SQLite database file; created when missing. The default store, at ./aegis.db.
    #[arg(long, env = "AEGIS_DB", conflicts_with = "database_url")]
    db: Option<PathBuf>,

    /// PostgreSQL database to use instead of SQLite, as postgres://user:password@host:port/dbname.
    /// Several replicas may share it; each serves the API and executes runs.
    #[arg(long, env = "AEGIS_DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,

    /// Connections to PostgreSQL this process opens at most.
    #[arg(long, env = "AEGIS_DATABASE_POOL_SIZE", default_value_t = 16)]
    database_pool_size: usize,

    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "AEGIS_BIND", default_value = "127.0.0.1:8080")]
    bind: SocketAddr,

    /// Runs executed at once by this process.
    #[arg(long, env = "AEGIS_WORKERS", default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..))]
    workers: u64,

    /// Deadline of one run, in seconds; a run still going then ends with RunTimeoutError.
    #[arg(long, env = "AEGIS_RUN_TIMEOUT", default_value_t = 600)]
    run_timeout: u64,

    /// How long a run's lease lasts without a heartbeat, in milliseconds. A run whose
    /// process died is re-queued once its lease has expired.
    #[arg(long, env = "AEGIS_LEASE_MS", default_value_t = 15_000)]
    lease_ms: u64,

    /// How often an executing run renews its lease, in milliseconds; at most a third of the
    /// lease.
    #[arg(long, env = "AEGIS_HEARTBEAT_MS", default_value_t = 5_000)]
    heartbeat_ms: u64,

    /// How often workers look for runs they were not woken for and for cancel requests, in
    /// milliseconds.
    #[arg(long, env = "AEGIS_POLL_MS", default_value_t = 1_000)]
    poll_ms: u64,

    /// Attempts a run gets; a run interrupted this many times ends as error.
    #[arg(long, env = "AEGIS_MAX_ATTEMPTS", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    max_attempts: u32,

    /// Items of one batch run executed at once.
    #[arg(long, env = "AEGIS_BATCH_CONCURRENCY", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
    batch_concurrency: u64,

    /// Seconds that shutdown (SIGTERM or SIGINT) lets executing runs finish before it hands
    /// them back to the queue for the next start.
    #[arg(long, env = "AEGIS_SHUTDOWN_GRACE", default_value_t = 30)]
    shutdown_grace: u64,

    /// Days after which terminal runs (complete, error, stopped) are deleted with their
    /// messages, checked hourly; 0 keeps runs forever. At most 36500.
    #[arg(long, env = "AEGIS_RETENTION_DAYS", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=36_500))]
    retention_days: u64,

    /// The largest request body accepted, in bytes; a larger body gets 413.
    #[arg(long, env = "AEGIS_MAX_BODY_BYTES", default_value_t = 1_048_576, value_parser = clap::value_parser!(u64).range(1..))]
    max_body_bytes: u64,

    /// API keys and the user each acts as, as KEY=USER_ID pairs separated by commas. With
    /// keys, every request but the health, readiness and documentation routes needs
    /// `Authorization: Bearer KEY`, and each user sees only their own rows.
    // Parsed after clap, because clap's own parse errors repeat the value, and so the keys.
    #[arg(long, env = "AEGIS_API_KEYS", hide_env_values = true)]
    api_keys: Option<String>,

    /// Serve without API keys on an address other than loopback (such as behind a proxy that
    /// authenticates). Without keys and without this flag, such a --bind is rejected.
    #[arg(long, env = "AEGIS_ALLOW_UNAUTHENTICATED")]
    allow_unauthenticated: bool,

    /// Requests per second each API key may send to this process, with bursts of up to two
    /// seconds' worth. Requests over the limit get 429 with Retry-After. Limits are per
    /// replica and need --api-keys. Unset means no limit.
    #[arg(long, env = "AEGIS_RATE_LIMIT_RPS")]
    rate_limit_rps: Option<f64>,

    /// Tokens (prompt plus completion, summed over the stored runs) each user may use. A run
    /// of a user at or over the budget fails with BudgetExceededError instead of making its
    /// next model call. Unset means no budget.
    #[arg(long, env = "AEGIS_TOKEN_BUDGET")]
    token_budget: Option<u64>,

    /// A host model clients may call besides loopback, the providers' default hosts and the
    /// hosts of OPENAI_BASE_URL, AZURE_OPENAI_ENDPOINT, ANTHROPIC_BASE_URL and OLLAMA_HOST:
    /// HOST, HOST:PORT, an IP address or *.DOMAIN for every subdomain. Repeat the flag, or
    /// separate hosts with commas.
    #[arg(long = "allow-model-host", env = "AEGIS_ALLOW_MODEL_HOSTS", value_delimiter = ',', value_name = "HOST")]
    allow_model_hosts: Vec<String>,

    /// HTTP version of model calls. `negotiated` speaks HTTP/1.1 to http:// providers and
    /// HTTP/2 to https:// ones that offer it. `http2` speaks HTTP/2 to every provider, http://
    /// included, so a provider without HTTP/2 fails every call.
    #[arg(long, env = "AEGIS_PROVIDER_HTTP", value_enum, default_value_t = ProviderHttpArg::Negotiated)]
    provider_http: ProviderHttpArg,

    /// Connection pools model calls are spread over, from 1 to 1024. Over HTTP/2 a provider
    /// caps the calls in flight on one connection (hyper-based servers allow 200), and each pool
    /// keeps one connection.
    #[arg(long, env = "AEGIS_PROVIDER_POOLS", default_value_t = aegis_core::model::http::DEFAULT_PROVIDER_POOLS, value_parser = parse_pools)]
    provider_pools: usize,

    /// Log format on stderr.
    #[arg(long, env = "AEGIS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Clone, Copy, ValueEnum)]
enum ProviderHttpArg {
    /// HTTP/1.1, or HTTP/2 when an https:// provider offers it.
    Negotiated,
    /// HTTP/2 on every provider URL.
    Http2,
}

fn parse_pools(raw: &str) -> Result<usize, String> {
    match raw.parse::<usize>() {
        Ok(pools) if (1..=1024).contains(&pools) => Ok(pools),
        _ => Err(format!("expected a number of pools from 1 to 1024, got `{raw}`")),
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn main() -> anyhow::Result<()> {
    let (cli, config_keys) = ops::parse_with_config_file::<Cli>("serve")?;
    match cli.command {
        Command::Serve(args) => run_serve(args, &config_keys),
        Command::Backup(args) => ops::run_backup(&args),
        #[cfg(feature = "mock")]
        Command::MockProvider(args) => {
            init_logging(LogFormat::Text);
            ops::run_mock_provider(&args, ShutdownSignals::install)
        }
    }
}

fn run_serve(args: ServeArgs, config_keys: &[String]) -> anyhow::Result<()> {
    init_logging(args.log_format);
    if let Some(path) = &args.config {
        tracing::info!(path = %path.display(), applied = ?config_keys, "configuration file read");
    }

    let store = match args.database_url {
        Some(url) => StoreChoice::Postgres { url, pool_size: args.database_pool_size },
        None => StoreChoice::Sqlite(args.db.unwrap_or_else(|| PathBuf::from(DEFAULT_DB))),
    };
    let mut config = ServeConfig::with_store(store, args.bind);
    config.engine.workers = usize::try_from(args.workers).context("--workers is too large for this machine")?;
    config.engine.run_timeout = Duration::from_secs(args.run_timeout);
    config.engine.lease = Duration::from_millis(args.lease_ms);
    config.engine.heartbeat = Duration::from_millis(args.heartbeat_ms);
    config.engine.poll_interval = Duration::from_millis(args.poll_ms.max(1));
    config.engine.max_attempts = args.max_attempts;
    config.engine.batch_concurrency =
        usize::try_from(args.batch_concurrency).context("--batch-concurrency is too large for this machine")?;
    config.allowed_model_hosts = args.allow_model_hosts;
    config.provider_http.version = match args.provider_http {
        ProviderHttpArg::Negotiated => ProviderHttpVersion::Negotiated,
        ProviderHttpArg::Http2 => ProviderHttpVersion::Http2,
    };
    config.provider_http.pools = args.provider_pools;
    config.shutdown_grace = Duration::from_secs(args.shutdown_grace);
    config.max_body_bytes = usize::try_from(args.max_body_bytes).unwrap_or(usize::MAX);
    config.retention =
        (args.retention_days > 0).then(|| Duration::from_secs(args.retention_days.saturating_mul(86_400)));
    if let Some(keys) = args.api_keys {
        config.auth.api_keys = keys.parse::<ApiKeys>().context("invalid --api-keys (AEGIS_API_KEYS)")?;
    }
    config.auth.allow_unauthenticated = args.allow_unauthenticated;
    config.limits.rate_limit_rps = args.rate_limit_rps;
    config.limits.token_budget = args.token_budget;

    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime failed")?;
    runtime.block_on(async {
        let signals = ShutdownSignals::install()?;
        serve(config, signals.wait()).await
    })
}

fn init_logging(format: LogFormat) {
    // An unset AEGIS_LOG means the default. A filter that does not parse is reported once
    // the subscriber is up, so the warning goes out in the chosen format.
    let (filter, rejected) = match std::env::var("AEGIS_LOG") {
        Err(_) => (EnvFilter::new("info"), None),
        Ok(directives) => match EnvFilter::try_new(&directives) {
            Ok(filter) => (filter, None),
            Err(error) => (EnvFilter::new("info"), Some(error)),
        },
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    if let Some(error) = rejected {
        tracing::warn!(%error, "AEGIS_LOG is not a valid filter such as `info` or `aegis_core=debug`; logging at info");
    }
}

/// SIGINT and SIGTERM, listened for from the moment [`ShutdownSignals::install`] returns.
///
/// Installing before the server binds matters: a script that sends SIGTERM right after
/// reading `listening on` would otherwise hit the default action and kill the process before
/// it drains.
pub(crate) struct ShutdownSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    /// Starts listening; must run inside the Tokio runtime.
    pub(crate) fn install() -> anyhow::Result<ShutdownSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let interrupt = signal(SignalKind::interrupt()).context("listening for SIGINT failed")?;
            let terminate = signal(SignalKind::terminate()).context("listening for SIGTERM failed")?;
            Ok(ShutdownSignals { interrupt, terminate })
        }
        #[cfg(not(unix))]
        Ok(ShutdownSignals {})
    }

    /// Resolves on the first SIGINT or SIGTERM.
    pub(crate) async fn wait(self) {
        #[cfg(unix)]
        {
            let ShutdownSignals { mut interrupt, mut terminate } = self;
            tokio::select! {
                _ = interrupt.recv() => tracing::info!("received SIGINT; shutting down"),
                _ = terminate.recv() => tracing::info!("received SIGTERM; shutting down"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = self;
            if let Err(error) = tokio::signal::ctrl_c().await {
                tracing::error!(%error, "listening for ctrl-c failed");
                std::future::pending::<()>().await;
            }
            tracing::info!("received ctrl-c; shutting down");
        }
    }
}
