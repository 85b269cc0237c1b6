//! Behaviour of the PostgreSQL store beyond the shared contract: several stores (as several
//! replicas would open them) on one database, migrations at a concurrent start and over existing
//! rows, key order of stored documents, and password masking.
//!
//! Tests that need a server are skipped (with a line on stderr) when
//! `AEGIS_TEST_DATABASE_URL` is unset, unless `CI` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use aegis_core::storage::testkit::{run_spec, session, task, team};
use aegis_core::storage::{ListFilter, RunFilter, RunOutcome, StorageErrorKind};
use aegis_core::{AgentMessage, RunStatus, Session, Storage, Task, Team, TeamResult, Timestamp};
use aegis_store_postgres::testing::TestDatabase;
use aegis_store_postgres::{PostgresConfig, PostgresStore, SCHEMA_VERSION, StoreOpenError};
use futures::future::join_all;
use serde_json::json;
use tokio_postgres::NoTls;

const LONG_LEASE: Duration = Duration::from_secs(3600);

async fn connect(database: &TestDatabase) -> PostgresStore {
    PostgresStore::connect(database.url(), PostgresConfig::default().with_pool_size(4)).await.unwrap()
}

/// Stores `task`, `team` and a session of the two, and returns the session.
async fn insert_session_of(store: &PostgresStore, task: &Task, team: &Team) -> Session {
    let session = session(task, team);
    store.insert_task(task).await.unwrap();
    store.insert_team(team).await.unwrap();
    store.insert_session(&session).await.unwrap();
    session
}

async fn admin(database: &TestDatabase) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(database.url(), NoTls).await.unwrap();
    tokio::spawn(connection);
    client
}

#[tokio::test]
async fn concurrent_start_migrates_once() {
    let Some(database) = TestDatabase::create("concurrent_start_migrates_once").await else {
        return;
    };

    let starts = (0..4).map(|_| PostgresStore::connect(database.url(), PostgresConfig::default().with_pool_size(1)));
    let stores: Vec<PostgresStore> = join_all(starts).await.into_iter().map(Result::unwrap).collect();

    let client = admin(&database).await;
    let versions: Vec<i32> = client
        .query("SELECT version FROM aegis_schema_migrations ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<i32>>(), "each migration is recorded once");

    for store in stores {
        store.close();
    }
    database.drop_database().await;
}

#[tokio::test]
async fn newer_schema_is_rejected() {
    let Some(database) = TestDatabase::create("newer_schema_is_rejected").await else {
        return;
    };
    connect(&database).await.close();
    admin(&database).await.execute("INSERT INTO aegis_schema_migrations (version) VALUES (999)", &[]).await.unwrap();

    let error = PostgresStore::connect(database.url(), PostgresConfig::default()).await.unwrap_err();
    assert!(matches!(error, StoreOpenError::NewerSchema { found: 999, .. }), "{error}");
    assert!(error.to_string().contains("upgrade every replica"), "{error}");
    database.drop_database().await;
}

#[tokio::test]
async fn connect_error_masks_password() {
    // Port 1 on loopback has no server, so this needs no database.
    let config = PostgresConfig::default().with_connect_timeout(Duration::from_secs(2));
    let error = PostgresStore::connect("postgres://aegis:hunter2@127.0.0.1:1/aegis", config).await.unwrap_err();
    let message = error.to_string();
    assert!(message.contains("postgres://aegis:****@127.0.0.1:1/aegis"), "{message}");
    assert!(!message.contains("hunter2"), "the password leaked: {message}");
}

#[tokio::test]
async fn documents_keep_key_order() {
    let Some(database) = TestDatabase::create("documents_keep_key_order").await else {
        return;
    };
    let store = connect(&database).await;
    let (task, mut team) = (task("order"), team("order"));
    team.component.config = json!({"zeta": 1, "alpha": {"yankee": true, "bravo": [3, 1]}, "mike": null});
    let session = session(&task, &team);
    let mut spec = run_spec(&session);
    spec.run.run_task.content =
        json!({"student_answer": "Canberra", "question": "Name a capital.", "answer": "Canberra"});
    store.insert_task(&task).await.unwrap();
    store.insert_team(&team).await.unwrap();
    store.insert_session(&session).await.unwrap();
    store.insert_run(&spec).await.unwrap();

    // Equal values are not enough: the JSON text, and so the key order, must survive.
    let read_team = store.get_team(team.id).await.unwrap().unwrap();
    assert_eq!(serde_json::to_string(&read_team).unwrap(), serde_json::to_string(&team).unwrap());
    let read_run = store.get_run(spec.run.id).await.unwrap().unwrap();
    assert_eq!(serde_json::to_string(&read_run).unwrap(), serde_json::to_string(&spec.run).unwrap());

    store.close();
    database.drop_database().await;
}

#[tokio::test]
async fn replicas_share_runs_and_fence() {
    let Some(database) = TestDatabase::create("replicas_share_runs_and_fence").await else {
        return;
    };
    let (first, second) = (connect(&database).await, connect(&database).await);
    let (task, team) = (task("replicas"), team("replicas"));
    let session = session(&task, &team);
    first.insert_task(&task).await.unwrap();
    first.insert_team(&team).await.unwrap();
    first.insert_session(&session).await.unwrap();
    let (stalled, cancelled) = (run_spec(&session), run_spec(&session));
    first.insert_run(&stalled).await.unwrap();
    first.insert_run(&cancelled).await.unwrap();

    // The first replica claims a run under a short lease and stalls past it.
    let (_, stale) = first.claim_run("replica-a", Duration::from_millis(1)).await.unwrap().unwrap();
    first.append_message(&stale, &AgentMessage::text("marker", "first attempt")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let report = second.requeue_expired(3).await.unwrap();
    assert_eq!(report.requeued, vec![stalled.run.id], "the other replica re-queues the expired run");
    let (claimed, fresh) = second.claim_run("replica-b", LONG_LEASE).await.unwrap().unwrap();
    assert_eq!(claimed.run.id, stalled.run.id);
    assert_eq!(fresh.attempt, 2);

    // Every write of the stalled replica is rejected; the new attempt's are not.
    let late = AgentMessage::text("marker", "late");
    let kind = |result: Result<(), aegis_core::StorageError>| result.unwrap_err().kind().clone();
    assert_eq!(kind(first.append_message(&stale, &late).await), StorageErrorKind::LeaseLost);
    assert_eq!(
        kind(first.finish_run(&stale, &RunOutcome::complete(TeamResult::default())).await),
        StorageErrorKind::LeaseLost
    );
    assert_eq!(first.renew_lease(&stale, LONG_LEASE).await.unwrap_err().kind(), &StorageErrorKind::LeaseLost);
    let current = AgentMessage::text("marker", "second attempt");
    second.append_message(&fresh, &current).await.unwrap();
    second.finish_run(&fresh, &RunOutcome::complete(TeamResult::default())).await.unwrap();
    let run = first.get_run(stalled.run.id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Complete);
    assert_eq!(run.messages, vec![current], "only the new attempt's message");

    // A cancel sent to one replica reaches the replica that has the lease.
    let (_, held) = second.claim_run("replica-b", LONG_LEASE).await.unwrap().unwrap();
    first.request_cancel(cancelled.run.id, "from the other replica").await.unwrap();
    let requests = second.cancel_requests("replica-b").await.unwrap();
    assert_eq!(requests, vec![(cancelled.run.id, "from the other replica".to_owned())]);
    second.finish_run(&held, &RunOutcome::stopped("from the other replica", Vec::new(), None)).await.unwrap();

    first.close();
    second.close();
    database.drop_database().await;
}

#[tokio::test]
async fn claims_share_team_component() {
    let Some(database) = TestDatabase::create("claims_share_team_component").await else {
        return;
    };
    let store = connect(&database).await;
    let session = insert_session_of(&store, &task("shared"), &team("shared")).await;
    let spec = run_spec(&session);
    store.insert_run(&spec).await.unwrap();
    store.insert_run(&run_spec(&session)).await.unwrap();

    let (first, _) = store.claim_run("replica-a", LONG_LEASE).await.unwrap().unwrap();
    let (second, _) = store.claim_run("replica-a", LONG_LEASE).await.unwrap().unwrap();
    assert_ne!(first.run.id, second.run.id);
    assert_eq!(first.team_component, spec.team_component, "the claim returns the run's snapshot");
    assert!(Arc::ptr_eq(&first.team_component, &second.team_component), "runs with equal snapshots share one copy");

    store.close();
    database.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_limit_holds_across_replicas() {
    const RUNS: usize = 6;
    let Some(database) = TestDatabase::create("session_limit_holds_across_replicas").await else {
        return;
    };
    let stores = [connect(&database).await, connect(&database).await, connect(&database).await];
    let (task, team) = (task("limit"), team("limit"));
    let mut session = session(&task, &team);
    session.team_metadata.insert("continue_conversation".to_owned(), json!(true));
    stores[0].insert_task(&task).await.unwrap();
    stores[0].insert_team(&team).await.unwrap();
    stores[0].insert_session(&session).await.unwrap();
    let specs: Vec<_> = (0..RUNS).map(|_| run_spec(&session)).collect();
    for spec in &specs {
        stores[0].insert_run(spec).await.unwrap();
    }

    // Each round all three replicas claim at once: exactly one wins, and it gets the oldest
    // run still queued, so the session's runs execute one at a time in creation order.
    for (round, spec) in specs.iter().enumerate() {
        let claims = stores.iter().enumerate().map(|(index, store)| {
            let owner = format!("replica-{index}");
            async move { store.claim_run(&owner, LONG_LEASE).await.unwrap() }
        });
        let won: Vec<_> = join_all(claims).await.into_iter().flatten().collect();
        assert_eq!(won.len(), 1, "round {round}: one claim wins");
        let (claimed, lease) = &won[0];
        assert_eq!(claimed.run.id, spec.run.id, "round {round}: runs start in creation order");
        stores[0].finish_run(lease, &RunOutcome::complete(TeamResult::default())).await.unwrap();
    }

    for store in &stores {
        store.close();
    }
    database.drop_database().await;
}

#[tokio::test]
async fn listing_migration_fills_existing_rows() {
    let Some(database) = TestDatabase::create("listing_migration_fills_existing_rows").await else {
        return;
    };
    let store = connect(&database).await;
    let mut task = task("migrated");
    task.archived = true;
    let team = team("migrated");
    let session = insert_session_of(&store, &task, &team).await;
    let spec = run_spec(&session);
    store.insert_run(&spec).await.unwrap();
    let (_, lease) = store.claim_run("migration", LONG_LEASE).await.unwrap().unwrap();
    store.finish_run(&lease, &RunOutcome::complete(TeamResult::default())).await.unwrap();
    store.close();

    // Take the database back to version 1, which stored only the documents, with the rows
    // written above still in it.
    let client = admin(&database).await;
    client
        .batch_execute(
            "DROP INDEX idempotency_keys_by_resource;
             ALTER TABLE tasks DROP COLUMN archived, DROP COLUMN created_by_user_id;
             ALTER TABLE teams DROP COLUMN archived, DROP COLUMN created_by_user_id;
             ALTER TABLE sessions DROP COLUMN archived, DROP COLUMN created_by_user_id, DROP COLUMN task_id,
                                  DROP COLUMN team_id;
             ALTER TABLE runs DROP COLUMN archived, DROP COLUMN created_by_user_id, DROP COLUMN task_id,
                              DROP COLUMN finished_at, DROP COLUMN team_id;
             DELETE FROM aegis_schema_migrations WHERE version > 1;",
        )
        .await
        .unwrap();

    let store = connect(&database).await;
    let mut archived = ListFilter::default();
    archived.archived = Some(true);
    archived.created_by_user_id = task.created_by_user_id.clone();
    let tasks = store.list_tasks(&archived).await.unwrap();
    assert_eq!(tasks.items.iter().map(|task| task.id).collect::<Vec<_>>(), vec![task.id], "the archived task");

    let mut of_task = ListFilter::default();
    of_task.task_id = Some(task.id);
    of_task.team_id = Some(team.id);
    let sessions = store.list_sessions(&of_task).await.unwrap();
    assert_eq!(
        sessions.items.iter().map(|session| session.id).collect::<Vec<_>>(),
        vec![session.id],
        "the task's session"
    );

    let mut runs_of_task = RunFilter::default();
    runs_of_task.task_id = Some(task.id);
    let runs = store.list_runs(&runs_of_task).await.unwrap();
    assert_eq!(runs.items.iter().map(|run| run.id).collect::<Vec<_>>(), vec![spec.run.id], "the task's run");

    let later = Timestamp::now().saturating_add(Duration::from_secs(1));
    let durations = store.recent_run_durations(Some(team.id), 10).await.unwrap();
    assert_eq!(durations.len(), 1, "the run's team_id is filled from its session");
    let deleted = store.delete_finished_runs(later, 10).await.unwrap();
    assert_eq!(deleted, vec![spec.run.id], "retention finds the run by its filled finished_at");

    store.close();
    database.drop_database().await;
}
