//! SQLite store operations with durability as shipped: a real database file in a temporary
//! directory, opened with `SqliteConfig::default()` (WAL journal, `synchronous=NORMAL`, which
//! survives a crash of the process).
//!
//! ```text
//! cargo bench --bench sqlite_store
//! ```
//!
//! Each operation of a run's life is timed alone (create, claim, append a message, complete).
//! Then the whole life is timed one run at a time, and 64 lives at once, where the writer
//! thread commits the writes that queue up together (group commit). Set `TMPDIR` to put the
//! file on the disk under test.

// A panic is how a criterion benchmark reports a broken setup.
#![allow(clippy::expect_used)]

mod teams;

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Map, Value};
use tempfile::TempDir;
use tokio::runtime::Runtime;
use uuid::Uuid;

use aegis::core::storage::{Lease, RunOutcome};
use aegis::core::{
    AgentMessage, ComponentModel, NewSession, NewTask, NewTeam, Run, RunSpec, RunStatus, RunTask, Storage,
    TaskMessageType, TaskResult, TeamResult, Timestamp,
};
use aegis::sqlite::{SqliteConfig, SqliteStore};
use aegis::{Aegis, EngineConfig, ProviderEnv, Registry};

/// How long a claim lasts; no lease expires during a benchmark.
const LEASE: Duration = Duration::from_secs(600);

/// Runs in flight in the concurrent benchmark.
const CONCURRENCY: u64 = 64;

/// A store on a fresh file with one session, whose team is the one-agent component.
struct Fixture {
    store: Arc<SqliteStore>,
    session_id: Uuid,
    task_id: Uuid,
    component: ComponentModel,
    // Dropped last, so the file outlives the store.
    _dir: TempDir,
}

impl Fixture {
    async fn open() -> anyhow::Result<Fixture> {
        let dir = tempfile::tempdir()?;
        let store = Arc::new(SqliteStore::open(dir.path().join("aegis.db"), SqliteConfig::default()).await?);

        // The service creates the parent rows, as the API would.
        let aegis = Aegis::new(
            Arc::clone(&store) as Arc<dyn Storage>,
            Registry::with_builtins(ProviderEnv::default()),
            EngineConfig::default(),
        )
        .map_err(anyhow::Error::msg)?;
        let component: ComponentModel = serde_json::from_value(teams::one_agent())?;
        let task = aegis.create_task(NewTask::named("Benchmark task")).await?;
        let team = aegis.create_team(NewTeam::from_component(component.clone())).await?;
        let session = aegis.create_session(NewSession::new(task.id, team.id)).await?;
        Ok(Fixture { store, session_id: session.id, task_id: task.id, component, _dir: dir })
    }

    /// Returns a new `created` run as `POST /run` stores it.
    fn spec(&self) -> RunSpec {
        let run = Run {
            id: Uuid::now_v7(),
            session_id: self.session_id,
            task_id: self.task_id,
            run_task: RunTask {
                source: "user".to_owned(),
                content: Value::String("Name 3 capital cities in Australia.".to_owned()),
                message_type: TaskMessageType::Text,
            },
            batch_mode: false,
            created_by_user_id: None,
            archived: false,
            status: RunStatus::Created,
            attempt: 1,
            team_result: None,
            error_message: None,
            error_details: None,
            created_at: Timestamp::now(),
            started_at: None,
            finished_at: None,
            estimated_completion_time: None,
            messages: Vec::new(),
        };
        RunSpec {
            run,
            team_component: Arc::new(self.component.clone()),
            team_metadata: Map::new(),
            stub_error_step: None,
        }
    }

    /// Inserts and claims `count` runs, untimed, for the benchmarks of later operations.
    async fn claimed_runs(&self, count: u64) -> Vec<Lease> {
        let mut leases = Vec::new();
        for _ in 0..count {
            self.store.insert_run(&self.spec()).await.expect("inserting a run failed");
            let (_, lease) =
                self.store.claim_run("bench", LEASE).await.expect("claiming a run failed").expect("no run to claim");
            leases.push(lease);
        }
        leases
    }

    async fn close(self) {
        let Fixture { store, _dir, .. } = self;
        if let Ok(store) = Arc::try_unwrap(store) {
            store.close().await;
        }
    }
}

fn reply() -> AgentMessage {
    AgentMessage::text("grader", "{\"satisfactory\": true, \"reasoning\": \"The answer names Canberra.\"}")
}

fn complete(messages: Vec<AgentMessage>) -> RunOutcome {
    let task_result = TaskResult { messages, stop_reason: None };
    RunOutcome::complete(TeamResult { task_result: Some(task_result), duration: 0.001, ..TeamResult::default() })
}

/// Runs one run's whole life: create, claim, append the task message and one reply, complete.
async fn life_cycle(fixture: &Fixture) {
    let spec = fixture.spec();
    fixture.store.insert_run(&spec).await.expect("inserting a run failed");
    let (spec, lease) =
        fixture.store.claim_run("bench", LEASE).await.expect("claiming a run failed").expect("no run to claim");
    let task = AgentMessage::text("user", spec.run.run_task.content.as_str().unwrap_or_default());
    fixture.store.append_message(&lease, &task).await.expect("appending a message failed");
    fixture.store.append_message(&lease, &reply()).await.expect("appending a message failed");
    fixture.store.finish_run(&lease, &complete(vec![reply()])).await.expect("completing the run failed");
}

/// Opens a fresh store, times `routine` over `iters` iterations after an untimed `prepare`,
/// and closes the store.
fn timed<P, R>(runtime: &Runtime, iters: u64, prepare: P, routine: R) -> Duration
where
    P: AsyncFn(&Fixture, u64) -> Vec<Lease>,
    R: AsyncFn(&Fixture, u64, Vec<Lease>),
{
    runtime.block_on(async {
        let fixture = Fixture::open().await.expect("opening the store failed");
        let leases = prepare(&fixture, iters).await;
        let started = Instant::now();
        routine(&fixture, iters, leases).await;
        let elapsed = started.elapsed();
        fixture.close().await;
        elapsed
    })
}

fn sqlite_store(c: &mut Criterion) {
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("building the runtime failed");
    let nothing = async |_: &Fixture, _: u64| Vec::new();

    let mut group = c.benchmark_group("sqlite_store");
    group.measurement_time(Duration::from_secs(5));

    group.bench_function("create_run", |bencher| {
        bencher.iter_custom(|iters| {
            timed(&runtime, iters, nothing, async |fixture, iters, _| {
                for _ in 0..iters {
                    fixture.store.insert_run(&fixture.spec()).await.expect("inserting a run failed");
                }
            })
        });
    });

    group.bench_function("claim_run", |bencher| {
        let prepare = async |fixture: &Fixture, iters: u64| {
            for _ in 0..iters {
                fixture.store.insert_run(&fixture.spec()).await.expect("inserting a run failed");
            }
            Vec::new()
        };
        bencher.iter_custom(|iters| {
            timed(&runtime, iters, prepare, async |fixture, iters, _| {
                for _ in 0..iters {
                    fixture
                        .store
                        .claim_run("bench", LEASE)
                        .await
                        .expect("claiming a run failed")
                        .expect("no run to claim");
                }
            })
        });
    });

    // Four messages per run, about what a short team produces.
    group.bench_function("append_message", |bencher| {
        let prepare = async |fixture: &Fixture, iters: u64| fixture.claimed_runs(iters.div_ceil(4)).await;
        bencher.iter_custom(|iters| {
            timed(&runtime, iters, prepare, async |fixture, iters, leases| {
                let message = reply();
                for index in 0..iters {
                    let lease = &leases[(index / 4) as usize];
                    fixture.store.append_message(lease, &message).await.expect("appending a message failed");
                }
            })
        });
    });

    group.bench_function("complete_run", |bencher| {
        let prepare = async |fixture: &Fixture, iters: u64| fixture.claimed_runs(iters).await;
        bencher.iter_custom(|iters| {
            timed(&runtime, iters, prepare, async |fixture, _, leases| {
                for lease in &leases {
                    fixture.store.finish_run(lease, &complete(vec![reply()])).await.expect("completing the run failed");
                }
            })
        });
    });

    group.bench_function("life_cycle/sequential", |bencher| {
        bencher.iter_custom(|iters| {
            timed(&runtime, iters, nothing, async |fixture, iters, _| {
                for _ in 0..iters {
                    life_cycle(fixture).await;
                }
            })
        });
    });

    group.bench_function(format!("life_cycle/concurrent_{CONCURRENCY}"), |bencher| {
        bencher.iter_custom(|iters| {
            timed(&runtime, iters, nothing, async |fixture, iters, _| {
                // Split the lives among the tasks; the first `iters % CONCURRENCY` get one more.
                let lives = (0..CONCURRENCY).map(|task| iters / CONCURRENCY + u64::from(task < iters % CONCURRENCY));
                let tasks = lives.map(|count| async move {
                    for _ in 0..count {
                        life_cycle(fixture).await;
                    }
                });
                futures::future::join_all(tasks).await;
            })
        });
    });
    group.finish();
}

criterion_group!(benches, sqlite_store);
criterion_main!(benches);
