//! The operations side of the `aegis` command line: reading `serve`'s configuration file,
//! `aegis backup` and `aegis mock-provider`.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;

use aegis_http::config::{merge_config_file, rejected_env_variable};

/// Parses the command line, then merges the TOML file of `subcommand`'s `--config` under its
/// flags and environment variables. Returns the parsed command line and the file keys that
/// took effect. Help, version and clap's own errors exit the process as `Parser::parse` does.
pub(crate) fn parse_with_config_file<C: Parser>(subcommand: &str) -> anyhow::Result<(C, Vec<String>)> {
    let command = C::command();
    let args: Vec<OsString> = std::env::args_os().collect();
    let matches = match command.clone().try_get_matches_from(args.clone()) {
        Ok(matches) => matches,
        Err(error) => exit_with(&command, &args, &error),
    };
    let merged = merge_config_file(&command, args, matches, subcommand)?;
    let cli = C::from_arg_matches(&merged.matches).unwrap_or_else(|error| error.exit());
    Ok((cli, merged.applied))
}

/// Prints clap's error and exits as `Parser::parse` does, naming the environment variable a
/// rejected value came from.
fn exit_with(command: &clap::Command, args: &[OsString], error: &clap::Error) -> ! {
    let Some(variable) = rejected_env_variable(command, args, error) else {
        error.exit();
    };
    // A failed write to stderr leaves nothing else to report to.
    let _ = error.print();
    eprintln!("note: the value comes from the environment variable {variable}; correct it or unset it");
    std::process::exit(error.exit_code());
}

/// `aegis backup`: an online copy of an SQLite database.
#[derive(Parser)]
pub(crate) struct BackupArgs {
    /// SQLite database file to copy; a server may be writing to it.
    #[arg(long, env = "AEGIS_DB")]
    db: PathBuf,

    /// File to write the copy to; it must not exist yet.
    #[arg(long)]
    out: PathBuf,
}

/// Copies the database and prints what was written.
pub(crate) fn run_backup(args: &BackupArgs) -> anyhow::Result<()> {
    let report = aegis_store_sqlite::backup(&args.db, &args.out)?;
    println!(
        "backed up {} to {} ({} pages, {} bytes, schema version {})",
        args.db.display(),
        args.out.display(),
        report.pages,
        report.bytes,
        report.schema_version
    );
    Ok(())
}

/// `aegis mock-provider`: the bundled mock of the OpenAI, Azure OpenAI, Anthropic and Ollama
/// chat APIs.
#[cfg(feature = "mock")]
#[derive(Parser)]
pub(crate) struct MockProviderArgs {
    /// Address to listen on; port 0 picks a free port. Only loopback addresses are accepted
    /// unless --allow-non-loopback is given.
    #[arg(long, env = "AEGIS_MOCK_BIND", default_value = "127.0.0.1:8081")]
    bind: std::net::SocketAddr,

    /// Accept a bind address other than loopback. The mock then serves any client that can
    /// reach it.
    #[arg(long)]
    allow_non_loopback: bool,

    /// Delay added before every response, in milliseconds.
    #[arg(long, env = "AEGIS_MOCK_LATENCY_MS", default_value_t = 0)]
    latency_ms: u64,

    /// Model name that `GET /v1/models` lists and replies name when a request sets none.
    #[arg(long, default_value = aegis_http::mock::DEFAULT_MODEL)]
    model: String,

    /// API key requests must send (as a bearer token, `api-key` or `x-api-key`); by default
    /// every request is accepted.
    #[arg(long, env = "AEGIS_MOCK_API_KEY", hide_env_values = true)]
    api_key: Option<String>,

    /// Reply when no reply is scripted: `automark` grades automarking requests and echoes
    /// others, `echo` always echoes the last user message.
    #[arg(long, value_enum, default_value_t = MockReplyMode::Automark)]
    reply: MockReplyMode,
}

/// The mock's reply to unscripted requests.
#[cfg(feature = "mock")]
#[derive(Clone, Copy, clap::ValueEnum)]
enum MockReplyMode {
    /// Grade automarking requests, echo the rest.
    Automark,
    /// Echo the last user message.
    Echo,
}

/// Serves the mock provider until the future that `shutdown` returns resolves, printing `listening on <addr>` once
/// it accepts connections.
#[cfg(feature = "mock")]
pub(crate) fn run_mock_provider(
    args: &MockProviderArgs,
    shutdown: impl FnOnce() -> anyhow::Result<crate::ShutdownSignals>,
) -> anyhow::Result<()> {
    use std::time::Duration;

    use aegis_http::mock::{DefaultReply, MockConfig, MockProvider};
    use anyhow::Context;

    let default_reply = match args.reply {
        MockReplyMode::Automark => DefaultReply::Automark,
        MockReplyMode::Echo => DefaultReply::Echo,
    };
    let mut config = MockConfig::default()
        .with_addr(args.bind)
        .with_non_loopback(args.allow_non_loopback)
        .with_latency(Duration::from_millis(args.latency_ms))
        .with_model(&args.model)
        .with_default_reply(default_reply)
        // A standalone server has no caller to read its request log, which would grow without
        // bound.
        .with_request_log(false);
    if let Some(key) = &args.api_key {
        config = config.with_api_key(key);
    }

    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime failed")?;
    runtime.block_on(async {
        let shutdown = shutdown()?;
        let provider = MockProvider::start(config)
            .await
            .with_context(|| format!("starting the mock provider on {} failed", args.bind))?;
        println!("listening on {}", provider.addr());
        tracing::info!(base_url = %provider.base_url(), "mock provider listening");
        shutdown.wait().await;
        provider.shutdown().await;
        tracing::info!("mock provider stopped");
        Ok(())
    })
}
