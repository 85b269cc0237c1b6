//! Executes a fixed number of runs of one benchmark team on an in-memory store, for
//! instruction-count profiles of the engine that other load on the machine cannot distort.
//!
//! ```text
//! cargo build --release --example engine_runs
//! valgrind --tool=callgrind target/release/examples/engine_runs --runs 100
//! valgrind --tool=callgrind target/release/examples/engine_runs --runs 1100
//! ```
//!
//! The difference of the two totals divided by 1,000 is the instructions of one run, with the
//! start-up cost left out. The runs are those of `benches/engine.rs`: `Aegis::create_run`, the
//! worker pool executes the team on replay models, and `Aegis::wait_run` returns the terminal
//! run, one run at a time on a current-thread runtime.

#[path = "../../benches/teams/mod.rs"]
mod teams;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};

use aegis::core::{ComponentModel, NewRun, NewSession, NewTask, NewTeam, RunStatus};
use aegis::{Aegis, EngineConfig, MemoryStorage, ProviderEnv, Registry};

/// Maximum `--runs`, so a typo cannot run for hours under valgrind.
const MAX_RUNS: u64 = 1_000_000;

/// The benchmark teams of `benches/engine.rs`.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum TeamKind {
    /// One `AssistantAgent` with one scripted reply.
    OneAgent,
    /// A round-robin group chat of three agents stopping after six replies.
    RoundRobin,
    /// A selector group chat of three agents.
    Selector,
}

#[derive(Parser, Debug)]
#[command(about = "Execute a fixed number of engine runs on an in-memory store, for instruction counts")]
struct Args {
    /// Runs executed one after another.
    #[arg(long, default_value_t = 1_000)]
    runs: u64,

    /// The team each run executes.
    #[arg(long, value_enum, default_value_t = TeamKind::OneAgent)]
    team: TeamKind,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.runs == 0 || args.runs > MAX_RUNS {
        bail!("--runs must be from 1 to {MAX_RUNS}, got {}", args.runs);
    }
    let component = match args.team {
        TeamKind::OneAgent => teams::one_agent(),
        TeamKind::RoundRobin => teams::round_robin_three(),
        TeamKind::Selector => teams::selector_three(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime
        .block_on(async {
            let registry = Registry::with_builtins(ProviderEnv::default());
            let aegis = Aegis::new(Arc::new(MemoryStorage::new()), registry, EngineConfig::default())
                .map_err(anyhow::Error::msg)?;
            let workers = aegis.start();

            let task = aegis.create_task(NewTask::named("Profile task")).await?;
            let component: ComponentModel = serde_json::from_value(component)?;
            let team = aegis.create_team(NewTeam::from_component(component)).await?;
            let session = aegis.create_session(NewSession::new(task.id, team.id)).await?;

            for index in 0..args.runs {
                let new = NewRun::text(session.id, task.id, "Write a function that adds two numbers.");
                let run = aegis.create_run(new).await?;
                let run = aegis.wait_run(run.id, Duration::from_secs(30)).await?;
                if run.status != RunStatus::Complete {
                    bail!("run {index} ended {:?}: {:?}", run.status, run.error_message);
                }
            }
            workers.shutdown(Duration::from_secs(5)).await;
            println!("{} runs complete", args.runs);
            anyhow::Ok(())
        })
        .context("executing the runs failed")
}
