//! Engine overhead of one run: `Aegis::create_run`, then the worker pool claims, builds and
//! executes the team and stores the outcome, and `Aegis::wait_run` (what `GET /run/{id}?wait=`
//! calls) returns the terminal run. Models are replay clients and the store is in memory, so
//! the figure is the engine's own cost, with no network and no disk.
//!
//! ```text
//! cargo bench --bench engine
//! ```
//!
//! Runs go one at a time, so on the current-thread runtime the time per run is also the CPU
//! time per run. The multi-thread variant adds the cross-thread wake-ups a server pays.

// A panic is how a criterion benchmark reports a broken setup.
#![allow(clippy::expect_used)]

mod teams;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::Value;
use tokio::runtime::Runtime;
use uuid::Uuid;

use aegis::core::{ComponentModel, NewRun, NewSession, NewTask, NewTeam, RunStatus};
use aegis::{Aegis, EngineConfig, MemoryStorage, ProviderEnv, Registry};

/// A started instance with one session of the team under test.
struct Fixture {
    aegis: Aegis,
    workers: aegis::core::Workers,
    session_id: Uuid,
    task_id: Uuid,
}

impl Fixture {
    /// Starts an instance on a fresh in-memory store and creates a task, the team and a
    /// session. Call it inside the runtime that will execute the runs.
    async fn start(component: &Value) -> anyhow::Result<Fixture> {
        let storage = Arc::new(MemoryStorage::new());
        let registry = Registry::with_builtins(ProviderEnv::default());
        let aegis = Aegis::new(storage, registry, EngineConfig::default()).map_err(anyhow::Error::msg)?;
        let workers = aegis.start();

        let task = aegis.create_task(NewTask::named("Benchmark task")).await?;
        let component: ComponentModel = serde_json::from_value(component.clone())?;
        let team = aegis.create_team(NewTeam::from_component(component)).await?;
        let session = aegis.create_session(NewSession::new(task.id, team.id)).await?;
        Ok(Fixture { aegis, workers, session_id: session.id, task_id: task.id })
    }

    /// Creates one run and waits until it is terminal; returns its status and message count.
    async fn run_once(&self) -> anyhow::Result<(RunStatus, usize)> {
        let new = NewRun::text(self.session_id, self.task_id, "Write a function that adds two numbers.");
        let run = self.aegis.create_run(new).await?;
        let run = self.aegis.wait_run(run.id, Duration::from_secs(30)).await?;
        Ok((run.status, run.messages.len()))
    }

    async fn stop(self) {
        self.workers.shutdown(Duration::from_secs(5)).await;
    }
}

/// Executes one run of `component` and fails unless it completes with `expected_messages`
/// messages, so a broken team cannot pass for a fast one.
fn check_team(runtime: &Runtime, component: &Value, expected_messages: usize) -> anyhow::Result<()> {
    runtime.block_on(async {
        let fixture = Fixture::start(component).await?;
        let (status, messages) = fixture.run_once().await?;
        fixture.stop().await;
        if status != RunStatus::Complete || messages != expected_messages {
            bail!("the benchmark team ended {status:?} with {messages} messages, expected complete with {expected_messages}");
        }
        Ok(())
    })
}

/// Times `iters` runs one after another on a fresh instance, so the store contains no more
/// than one sample's runs.
fn time_runs(runtime: &Runtime, component: &Value, iters: u64) -> anyhow::Result<Duration> {
    runtime.block_on(async {
        let fixture = Fixture::start(component).await?;
        let started = Instant::now();
        for _ in 0..iters {
            let (status, _) = fixture.run_once().await?;
            if status != RunStatus::Complete {
                bail!("a benchmark run ended {status:?}");
            }
        }
        let elapsed = started.elapsed();
        fixture.stop().await;
        Ok(elapsed)
    })
}

fn engine(c: &mut Criterion) {
    let current_thread =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("building the runtime failed");
    let multi_thread =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("building the runtime failed");

    // A run's messages are the agents' replies; the task message is not among them.
    let scenarios = [
        ("one_agent", teams::one_agent(), 1),
        ("round_robin_3_agents_6_replies", teams::round_robin_three(), 6),
        ("selector_3_agents", teams::selector_three(), 3),
    ];

    let mut group = c.benchmark_group("engine_run");
    group.measurement_time(Duration::from_secs(5));
    for (name, component, expected_messages) in &scenarios {
        check_team(&current_thread, component, *expected_messages)
            .context(*name)
            .expect("the benchmark team does not run");
        group.bench_function(format!("{name}/current_thread"), |bencher| {
            bencher.iter_custom(|iters| time_runs(&current_thread, component, iters).expect("a benchmark run failed"));
        });
    }
    let (_, one_agent, _) = &scenarios[0];
    group.bench_function("one_agent/multi_thread", |bencher| {
        bencher.iter_custom(|iters| time_runs(&multi_thread, one_agent, iters).expect("a benchmark run failed"));
    });
    group.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
