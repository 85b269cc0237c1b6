//! A load generator for the Aegis HTTP API: completed runs per second, create-to-terminal
//! latency, errors, and the server's CPU time per run and peak memory.
//!
//! ```text
//! cargo run --release --example loadgen -- --duration-s 30 --concurrency 64
//! cargo run --release --example loadgen -- --plain --plain-threads 16 --plain-runs 2000
//! cargo run --release --example loadgen -- --server http://127.0.0.1:8080 --server-pid PID
//! ```
//!
//! Without `--server`, the load generator starts the server in this process, on a SQLite file
//! in a temporary directory, with the bundled mock provider as the model (`--model-latency-ms`
//! sets its delay, `--stream` makes the agent stream). Each worker gets its own session, then
//! creates a run and waits until it is terminal (`GET /run/{id}?wait=`), in a closed loop at
//! `--concurrency` workers, for `--duration-s` seconds or `--runs` runs.
//!
//! `--plain` measures the server CPU time per run with the plainest client instead: threads
//! send `POST /run` on a new connection each, then read every run once with `GET /run/{id}`
//! on a new connection.
//!
//! CPU time and memory come from `/proc`, so they are measured on Linux only. With the server
//! in this process, the CPU time of the load generator's own threads (the HTTP client and the
//! mock provider) is subtracted, while the peak memory is the whole process's. With `--server`,
//! the figures are those of `--server-pid`. Only loopback URLs are accepted.

mod closed_loop;
mod plain;
mod proc_stats;
mod target;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use serde_json::json;
use tokio::runtime::Runtime;

use crate::closed_loop::LoopConfig;
use crate::plain::PlainConfig;
use crate::target::{Api, Measured, Target, TargetConfig};

/// Maximum `--concurrency`, so a typo cannot open connections without bound.
const MAX_CONCURRENCY: usize = 10_000;

/// Maximum `--duration-s` and `--run-timeout-s`, in seconds.
const MAX_DURATION_S: u64 = 3_600;

/// Maximum `--runs` and `--plain-runs`.
const MAX_RUNS: u64 = 1_000_000;

#[derive(Parser, Debug)]
#[command(about = "Drive an Aegis server with runs and report throughput, latency, CPU time and memory")]
struct Args {
    /// Drive this running server (loopback only), e.g. http://127.0.0.1:8080, instead of
    /// starting one in this process.
    #[arg(long)]
    server: Option<String>,

    /// Process id of the server given with --server, whose CPU time and memory are reported.
    #[arg(long, requires = "server")]
    server_pid: Option<u32>,

    /// Another replica on the same database as --server (loopback only); repeat for more.
    /// The closed loop's workers take the servers in turn, so each replica gets an equal
    /// share of the load. CPU time and memory stay those of --server-pid alone.
    #[arg(long = "also-server", requires = "server", conflicts_with = "plain")]
    also_servers: Vec<String>,

    /// Chat Completions base URL of a running model provider (loopback only) for the team's
    /// model client, instead of starting the bundled mock in this process.
    #[arg(long)]
    model_base_url: Option<String>,

    /// Delay the bundled mock adds before every response, in milliseconds.
    #[arg(long, default_value_t = 0)]
    model_latency_ms: u64,

    /// Make the agent stream its model call (`model_client_stream: true`).
    #[arg(long)]
    stream: bool,

    /// Speak HTTP/2 without TLS: the closed loop to the server, one connection per 100
    /// workers, and the in-process server to the mock. A server given with --server speaks
    /// HTTP/2 to the mock when started with `--provider-http http2`.
    #[arg(long, conflicts_with = "plain")]
    http2: bool,

    /// Workers in the closed loop, each with its own session and one run in flight.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,

    /// Seconds after which no worker starts another run.
    #[arg(long, default_value_t = 10)]
    duration_s: u64,

    /// Stop after this many runs were started, if that comes before --duration-s.
    #[arg(long)]
    runs: Option<u64>,

    /// Seconds one `GET /run/{id}?wait=` may wait, from 1 to 60.
    #[arg(long, default_value_t = 30)]
    wait_s: u64,

    /// Seconds after which a run that is still not terminal counts as an error.
    #[arg(long, default_value_t = 120)]
    run_timeout_s: u64,

    /// Engine workers of the in-process server (runs executed at once).
    #[arg(long, default_value_t = 256)]
    workers: usize,

    /// Tokio worker threads of the in-process server; the default is one per core.
    #[arg(long)]
    server_threads: Option<usize>,

    /// SQLite file of the in-process server; by default a file in a temporary directory,
    /// removed at exit.
    #[arg(long)]
    db: Option<PathBuf>,

    /// Measure with the plainest client instead of the closed loop (see the module docs).
    #[arg(long)]
    plain: bool,

    /// Client threads of --plain.
    #[arg(long, default_value_t = 16)]
    plain_threads: usize,

    /// Runs --plain creates.
    #[arg(long, default_value_t = 2_000)]
    plain_runs: u64,

    /// Seconds between RSS samples of the server in the closed loop, reported as a series;
    /// 0 takes none.
    #[arg(long, default_value_t = 10)]
    rss_every_s: u64,

    /// File to write the ids of the runs --plain created to, one a line, for a GET benchmark
    /// such as `wrk -s examples/loadgen/get_runs.lua`.
    #[arg(long, requires = "plain")]
    ids_out: Option<PathBuf>,

    /// Print the summary as one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

impl Args {
    fn check(&self) -> anyhow::Result<()> {
        if self.concurrency == 0 || self.concurrency > MAX_CONCURRENCY {
            bail!("--concurrency must be from 1 to {MAX_CONCURRENCY}, got {}", self.concurrency);
        }
        if self.duration_s == 0 || self.duration_s > MAX_DURATION_S {
            bail!("--duration-s must be from 1 to {MAX_DURATION_S}, got {}", self.duration_s);
        }
        if self.runs.is_some_and(|runs| runs == 0 || runs > MAX_RUNS)
            || self.plain_runs == 0
            || self.plain_runs > MAX_RUNS
        {
            bail!("--runs and --plain-runs must be from 1 to {MAX_RUNS}");
        }
        if !(1..=60).contains(&self.wait_s) {
            bail!("--wait-s must be from 1 to 60, got {}", self.wait_s);
        }
        if self.run_timeout_s == 0 || self.run_timeout_s > MAX_DURATION_S {
            bail!("--run-timeout-s must be from 1 to {MAX_DURATION_S}, got {}", self.run_timeout_s);
        }
        if self.plain_threads == 0 || self.plain_threads > 256 {
            bail!("--plain-threads must be from 1 to 256, got {}", self.plain_threads);
        }
        if self.workers == 0 || self.server_threads == Some(0) {
            bail!("--workers and --server-threads must be at least 1");
        }
        Ok(())
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    args.check()?;
    warn_about_open_files(&args);

    // The server, the mock and the client each get their own runtime. The client's and the
    // mock's threads carry the load generator's name, so their CPU time can be subtracted
    // from the process's when the server runs in this process.
    let mut server_builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = args.server_threads {
        server_builder.worker_threads(threads);
    }
    let server_runtime = server_builder.thread_name("aegis-server").enable_all().build()?;
    let mock_runtime = client_runtime("mock")?;
    let client_runtime = client_runtime("client")?;

    let target_config = TargetConfig {
        server: args.server.clone(),
        server_pid: args.server_pid,
        model_base_url: args.model_base_url.clone(),
        model_latency: Duration::from_millis(args.model_latency_ms),
        db: args.db.clone(),
        workers: args.workers,
        provider_http2: args.http2,
    };
    let target = Target::start(&target_config, &server_runtime, &mock_runtime)?;
    if !args.json {
        println!("server {} ({}), model {}", target.base, describe(target.measured), target.model_base_url);
    }

    let outcome = match args.plain {
        true => measure_plain(&args, &target, &client_runtime),
        false => measure_closed_loop(&args, &target, &client_runtime),
    };
    target.stop(&server_runtime, &mock_runtime)?;
    outcome
}

/// Builds a one-thread runtime whose thread name marks it as the load generator's.
fn client_runtime(role: &str) -> anyhow::Result<Runtime> {
    let name = format!("{}-{role}", proc_stats::CLIENT_THREAD_PREFIX);
    Ok(tokio::runtime::Builder::new_multi_thread().worker_threads(1).thread_name(name).enable_all().build()?)
}

fn describe(measured: Measured) -> String {
    match measured {
        Measured::InProcess => "in this process".to_owned(),
        Measured::Pid(pid) => format!("pid {pid}"),
        Measured::Unknown => "no --server-pid: CPU time and memory not measured".to_owned(),
    }
}

/// Warns when the open file limit is below what the connections may need: each run in flight
/// holds a client connection and a model connection, both ends of each when the server runs
/// in this process.
fn warn_about_open_files(args: &Args) {
    let per_run = if args.server.is_some() { 2 } else { 4 };
    let needed = (args.concurrency.max(args.plain_threads) * per_run + 100) as u64;
    if let Some(limit) = proc_stats::open_files_limit()
        && limit < needed
    {
        eprintln!(
            "warning: the open file limit is {limit}, below the about {needed} this run may need; raise it with `ulimit -n`"
        );
    }
}

/// CPU time of the server, sampled before and after a measurement.
struct ServerUsage {
    measured: Measured,
    process_cpu: Duration,
    client_cpu: Duration,
}

impl ServerUsage {
    fn sample(measured: Measured) -> anyhow::Result<ServerUsage> {
        let (process_cpu, client_cpu) = match measured {
            Measured::InProcess => (proc_stats::process_cpu(std::process::id())?, proc_stats::client_threads_cpu()?),
            Measured::Pid(pid) => (proc_stats::process_cpu(pid)?, Duration::ZERO),
            Measured::Unknown => (Duration::ZERO, Duration::ZERO),
        };
        Ok(ServerUsage { measured, process_cpu, client_cpu })
    }

    /// Returns the server's CPU time since `earlier`, leaving out `exited_client_cpu`, the
    /// time of client threads that exited meanwhile; `None` when nothing is measured.
    fn server_cpu_since(&self, earlier: &ServerUsage, exited_client_cpu: Duration) -> Option<Duration> {
        if matches!(self.measured, Measured::Unknown) {
            return None;
        }
        let process = self.process_cpu.saturating_sub(earlier.process_cpu);
        let client = self.client_cpu.saturating_sub(earlier.client_cpu) + exited_client_cpu;
        Some(process.saturating_sub(client))
    }

    /// Returns the process whose memory is reported: this one when the server runs here.
    fn pid(&self) -> Option<u32> {
        match self.measured {
            Measured::InProcess => Some(std::process::id()),
            Measured::Pid(pid) => Some(pid),
            Measured::Unknown => None,
        }
    }

    fn memory(&self) -> Option<proc_stats::Memory> {
        proc_stats::memory(self.pid()?).ok()
    }
}

/// Creates the clients the closed loop's workers take in turn, replicas interleaved so that
/// worker `i` talks to replica `i % bases.len()`. Over HTTP/2 each replica gets one client,
/// and so one connection, per `STREAMS_PER_CONNECTION` workers.
fn lanes(bases: &[String], args: &Args) -> anyhow::Result<Vec<Api>> {
    if !args.http2 {
        return bases.iter().map(|base| Api::new(base, args.concurrency)).collect();
    }
    let per_replica = args.concurrency.div_ceil(bases.len()).div_ceil(target::STREAMS_PER_CONNECTION).max(1);
    let mut lanes = Vec::with_capacity(per_replica * bases.len());
    for _ in 0..per_replica {
        for base in bases {
            lanes.push(Api::new_http2(base)?);
        }
    }
    Ok(lanes)
}

fn measure_closed_loop(args: &Args, target: &Target, client_runtime: &Runtime) -> anyhow::Result<()> {
    let api = Api::new(&target.base, args.concurrency)?;
    let mut bases = vec![target.base.clone()];
    for url in &args.also_servers {
        target::check_loopback(url, "--also-server")?;
        bases.push(url.trim_end_matches('/').to_owned());
    }
    let replicas = lanes(&bases, args)?;
    let sessions =
        client_runtime.block_on(target::set_up(&api, &target.model_base_url, args.stream, args.concurrency))?;
    let config = LoopConfig {
        duration: Duration::from_secs(args.duration_s),
        max_runs: args.runs,
        wait_s: args.wait_s,
        run_timeout: Duration::from_secs(args.run_timeout_s),
    };

    let before = ServerUsage::sample(target.measured)?;
    let sampler = match (before.pid(), args.rss_every_s) {
        (Some(pid), every_s) if every_s > 0 => Some(proc_stats::RssSampler::start(pid, Duration::from_secs(every_s))?),
        _ => None,
    };
    let mut stats = client_runtime.block_on(closed_loop::run(&replicas, sessions, config));
    let rss_series = sampler.map(proc_stats::RssSampler::finish).unwrap_or_default();
    let after = ServerUsage::sample(target.measured)?;

    stats.latencies.sort_unstable();
    let completed = stats.latencies.len() as u64;
    let errors: u64 = stats.errors.values().sum();
    let runs_per_s = completed as f64 / stats.elapsed.as_secs_f64();
    let steady_runs_per_s = stats.steady_runs_per_s(config.duration);
    let percentile = |p: f64| -> Option<f64> {
        // Nearest rank.
        let rank = ((p / 100.0) * stats.latencies.len() as f64).ceil() as usize;
        stats.latencies.get(rank.max(1) - 1).map(|latency| latency.as_secs_f64() * 1000.0)
    };
    let server_cpu = after.server_cpu_since(&before, Duration::ZERO);
    let cpu_per_run_ms = server_cpu.filter(|_| completed > 0).map(|cpu| cpu.as_secs_f64() * 1000.0 / completed as f64);
    let memory = after.memory();

    if args.json {
        let summary = json!({
            "mode": "closed_loop",
            "concurrency": args.concurrency,
            "model_latency_ms": args.model_latency_ms,
            "stream": args.stream,
            "http2": args.http2,
            "elapsed_s": stats.elapsed.as_secs_f64(),
            "completed": completed,
            "errors": errors,
            "errors_by_kind": stats.errors,
            "runs_per_s": runs_per_s,
            "steady_runs_per_s": steady_runs_per_s,
            "latency_ms": {"p50": percentile(50.0), "p95": percentile(95.0), "p99": percentile(99.0)},
            "server_cpu_s": server_cpu.map(|cpu| cpu.as_secs_f64()),
            "server_cpu_per_run_ms": cpu_per_run_ms,
            "rss_mib": memory.map(|memory| mib(memory.rss_kib)),
            "peak_rss_mib": memory.map(|memory| mib(memory.peak_rss_kib)),
            "rss_series": rss_series.iter().map(|sample| json!({"at_s": sample.at_s, "rss_mib": mib(sample.rss_kib)})).collect::<Vec<_>>(),
        });
        println!("{summary}");
        return Ok(());
    }

    let ms = |value: Option<f64>| value.map_or("-".to_owned(), |value| format!("{value:.2} ms"));
    let streaming = if args.stream { ", streaming" } else { "" };
    let protocol = if args.http2 { ", HTTP/2" } else { "" };
    println!(
        "closed loop: concurrency {}, model latency {} ms{streaming}{protocol}",
        args.concurrency, args.model_latency_ms
    );
    println!("  completed runs   {completed} in {:.2} s: {runs_per_s:.1} runs/s", stats.elapsed.as_secs_f64());
    if let Some(steady) = steady_runs_per_s {
        println!("  steady rate      {steady:.1} runs/s (first completion to the end of the duration)");
    }
    println!(
        "  latency          p50 {}  p95 {}  p99 {}",
        ms(percentile(50.0)),
        ms(percentile(95.0)),
        ms(percentile(99.0))
    );
    println!("  errors           {errors}");
    for (kind, count) in &stats.errors {
        println!("    {count:>8}  {kind}");
    }
    print_server_usage(server_cpu, cpu_per_run_ms, memory, target.measured);
    if !rss_series.is_empty() {
        println!("  RSS over time    (seconds: MiB)");
        for sample in &rss_series {
            println!("    {:>8.0}: {:.1}", sample.at_s, mib(sample.rss_kib));
        }
    }
    Ok(())
}

fn measure_plain(args: &Args, target: &Target, client_runtime: &Runtime) -> anyhow::Result<()> {
    let api = Api::new(&target.base, 1)?;
    let sessions = client_runtime.block_on(target::set_up(&api, &target.model_base_url, args.stream, 1))?;
    let ids = sessions.first().context("no session was created")?;
    let addr = socket_addr(&target.base)?;
    let config = PlainConfig {
        threads: args.plain_threads,
        runs: args.plain_runs,
        timeout: Duration::from_secs(args.run_timeout_s),
    };

    let before = ServerUsage::sample(target.measured)?;
    let stats = plain::run(addr, ids, config);
    let after = ServerUsage::sample(target.measured)?;
    if let Some(path) = &args.ids_out {
        let mut text = stats.ids.join("\n");
        text.push('\n');
        std::fs::write(path, text).with_context(|| format!("writing the run ids to {} failed", path.display()))?;
    }

    let server_cpu = after.server_cpu_since(&before, stats.client_cpu);
    let cpu_per_run_ms =
        server_cpu.filter(|_| stats.created > 0).map(|cpu| cpu.as_secs_f64() * 1000.0 / stats.created as f64);
    let memory = after.memory();

    if args.json {
        let summary = json!({
            "mode": "plain",
            "threads": args.plain_threads,
            "runs": args.plain_runs,
            "created": stats.created,
            "complete": stats.complete,
            "errors": stats.errors,
            "first_error": stats.first_error,
            "post_phase_s": stats.post_phase.as_secs_f64(),
            "get_phase_s": stats.get_phase.as_secs_f64(),
            "extra_gets": stats.extra_gets,
            "server_cpu_s": server_cpu.map(|cpu| cpu.as_secs_f64()),
            "server_cpu_per_run_ms": cpu_per_run_ms,
            "rss_mib": memory.map(|memory| mib(memory.rss_kib)),
            "peak_rss_mib": memory.map(|memory| mib(memory.peak_rss_kib)),
        });
        println!("{summary}");
        return Ok(());
    }

    let post_s = stats.post_phase.as_secs_f64();
    println!("plain: {} threads, {} runs, a new connection per request", args.plain_threads, args.plain_runs);
    println!("  created          {} in {post_s:.2} s: {:.1} runs/s", stats.created, stats.created as f64 / post_s);
    println!(
        "  complete         {} read in {:.2} s, {} extra reads of unfinished runs",
        stats.complete,
        stats.get_phase.as_secs_f64(),
        stats.extra_gets
    );
    println!("  errors           {}", stats.errors);
    if let Some(error) = &stats.first_error {
        println!("    first: {error}");
    }
    print_server_usage(server_cpu, cpu_per_run_ms, memory, target.measured);
    Ok(())
}

fn print_server_usage(
    server_cpu: Option<Duration>,
    cpu_per_run_ms: Option<f64>,
    memory: Option<proc_stats::Memory>,
    measured: Measured,
) {
    let Some(server_cpu) = server_cpu else {
        println!("  server CPU       not measured (give --server-pid)");
        return;
    };
    let per_run = cpu_per_run_ms.map_or("-".to_owned(), |ms| format!("{ms:.3} ms"));
    println!("  server CPU       {:.2} s, {per_run} per run", server_cpu.as_secs_f64());
    if let Some(memory) = memory {
        let whose =
            if matches!(measured, Measured::InProcess) { " (whole process: server, mock and client)" } else { "" };
        println!(
            "  server memory    RSS {:.1} MiB, peak {:.1} MiB{whose}",
            mib(memory.rss_kib),
            mib(memory.peak_rss_kib)
        );
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Returns the socket address of a `http://HOST:PORT` base URL, for the plain client.
fn socket_addr(base: &str) -> anyhow::Result<SocketAddr> {
    let url = reqwest::Url::parse(base).with_context(|| format!("{base:?} is not a URL"))?;
    let addrs = url.socket_addrs(|| Some(80)).with_context(|| format!("resolving {base:?} failed"))?;
    addrs.into_iter().next().with_context(|| format!("{base:?} resolves to no address"))
}
