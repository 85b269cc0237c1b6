//! Behaviour of the SQLite store beyond the shared contract: restarts, re-queue at open,
//! migrations and concurrent writers, each on a real file in a temporary directory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aegis_core::storage::testkit::{messages, run_spec, session, task, team};
use aegis_core::storage::{
    DeleteOutcome, DeleteTarget, Lease, ListFilter, MAX_LIMIT, PageRequest, RunFilter, RunOutcome, SortOrder,
    StorageErrorKind, StoredRun,
};
use aegis_core::{AgentMessage, Run, RunStatus, Session, Storage, TeamResult, Timestamp};
use aegis_store_sqlite::{SCHEMA_VERSION, SqliteConfig, SqliteStore, StoreOpenError};
use rusqlite::Connection;

const LEASE: Duration = Duration::from_secs(3600);

async fn new_session(store: &dyn Storage) -> Session {
    let (task, team) = (task("sqlite"), team("sqlite"));
    let session = session(&task, &team);
    store.insert_task(&task).await.unwrap();
    store.insert_team(&team).await.unwrap();
    store.insert_session(&session).await.unwrap();
    session
}

fn user_version(path: &Path) -> i64 {
    let conn = Connection::open(path).unwrap();
    conn.pragma_query_value(None, "user_version", |row| row.get(0)).unwrap()
}

#[tokio::test]
async fn reopen_returns_identical_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aegis.db");
    let store = SqliteStore::open_default(&path).await.unwrap();

    let session = new_session(&store).await;
    let (finished, queued) = (run_spec(&session), run_spec(&session));
    store.insert_run(&finished).await.unwrap();
    store.insert_run(&queued).await.unwrap();
    let (_, lease) = store.claim_run("owner-a", LEASE).await.unwrap().unwrap();
    for message in messages() {
        store.append_message(&lease, &message).await.unwrap();
    }
    let result = TeamResult { duration: 1.5, ..TeamResult::default() };
    store.finish_run(&lease, &RunOutcome::complete(result)).await.unwrap();

    let tasks = store.list_tasks(&ListFilter::default()).await.unwrap();
    let teams = store.list_teams(&ListFilter::default()).await.unwrap();
    let sessions = store.list_sessions(&ListFilter::default()).await.unwrap();
    let runs = store.list_runs(&RunFilter::default()).await.unwrap().items;
    assert_eq!(runs.len(), 2);
    assert_eq!(runs[1].id, finished.run.id);
    assert_eq!(runs[1].messages.len(), messages().len(), "the finished run has its messages");
    drop(store);

    let reopened = SqliteStore::open_default(&path).await.unwrap();
    assert!(reopened.requeued_on_open().requeued.is_empty(), "no run was active");
    assert_eq!(reopened.list_tasks(&ListFilter::default()).await.unwrap(), tasks);
    assert_eq!(reopened.list_teams(&ListFilter::default()).await.unwrap(), teams);
    assert_eq!(reopened.list_sessions(&ListFilter::default()).await.unwrap(), sessions);
    assert_eq!(reopened.list_runs(&RunFilter::default()).await.unwrap().items, runs);
    assert_eq!(reopened.get_run(finished.run.id).await.unwrap().as_ref(), Some(&runs[1]));
    assert_eq!(reopened.get_run(queued.run.id).await.unwrap().as_ref(), Some(&queued.run));

    let (claimed, _) = reopened.claim_run("owner-b", LEASE).await.unwrap().unwrap();
    assert_eq!(claimed.run.id, queued.run.id, "the queued run is still queued after the restart");
    assert_eq!(claimed.team_component, queued.team_component, "the snapshot survives the restart");
    assert_eq!(claimed.team_metadata, queued.team_metadata, "the snapshot survives the restart");
}

#[tokio::test]
async fn open_requeues_run_of_crashed_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aegis.db");
    let crashed = SqliteStore::open_default(&path).await.unwrap();
    let session = new_session(&crashed).await;
    let spec = run_spec(&session);
    crashed.insert_run(&spec).await.unwrap();
    let (_, old_lease) = crashed.claim_run("owner-a", LEASE).await.unwrap().unwrap();
    crashed.append_message(&old_lease, &AgentMessage::text("marker", "cut off")).await.unwrap();
    drop(crashed);

    let reopened = SqliteStore::open_default(&path).await.unwrap();

    assert_eq!(reopened.requeued_on_open().requeued, vec![spec.run.id]);
    assert!(reopened.requeued_on_open().exhausted.is_empty());
    let run = reopened.get_run(spec.run.id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Created);
    assert_eq!(run.attempt, 2);
    assert_eq!(run.started_at, None);
    assert_eq!(run.messages, Vec::new(), "the cut-off attempt's messages are dropped");

    let late = reopened.append_message(&old_lease, &AgentMessage::text("marker", "late")).await;
    assert_eq!(late.map_err(|error| error.kind().clone()), Err(StorageErrorKind::LeaseLost));
    let (claimed, lease) = reopened.claim_run("owner-b", LEASE).await.unwrap().unwrap();
    assert_eq!(claimed.run.id, spec.run.id);
    assert_eq!(lease.attempt, 2);
}

#[tokio::test]
async fn run_claimed_at_insert_is_requeued_after_crash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aegis.db");
    let crashed = SqliteStore::open_default(&path).await.unwrap();
    let session = new_session(&crashed).await;
    let spec = run_spec(&session);
    let started_at = Timestamp::now();
    let lease = Lease {
        run_id: spec.run.id,
        owner: "owner-a".to_owned(),
        attempt: 1,
        expires_at: started_at.saturating_add(LEASE),
    };

    let claimed = crashed.insert_run_claimed(&spec, &lease, started_at).await.unwrap();
    assert!(claimed, "the queue is empty, so the store claims the run in the insert");
    let run = crashed.get_run(spec.run.id).await.unwrap().unwrap();
    assert_eq!((run.status, run.started_at), (RunStatus::Active, Some(started_at)));
    drop(crashed);

    let reopened = SqliteStore::open_default(&path).await.unwrap();
    assert_eq!(reopened.requeued_on_open().requeued, vec![spec.run.id], "the lease died with the process");
    let (claimed, lease) = reopened.claim_run("owner-b", LEASE).await.unwrap().unwrap();
    assert_eq!((claimed.run.id, lease.attempt), (spec.run.id, 2));
}

#[tokio::test]
async fn second_open_waits_for_first_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aegis.db");
    let first = SqliteStore::open_default(&path).await.unwrap();

    let error = SqliteStore::open_default(&path).await.unwrap_err();
    assert!(matches!(error, StoreOpenError::InUse { .. }), "{error}");
    assert!(error.to_string().contains("in use by another process"), "{error}");

    first.close().await;
    let reopened = SqliteStore::open_default(&path).await.unwrap();
    reopened.close().await;
}

#[tokio::test]
async fn team_component_is_shared_until_the_team_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_default(dir.path().join("aegis.db")).await.unwrap();
    let mut team = team("shared");
    store.insert_team(&team).await.unwrap();

    let first = store.get_team_component(team.id).await.unwrap().unwrap();
    let second = store.get_team_component(team.id).await.unwrap().unwrap();
    assert!(Arc::ptr_eq(&first, &second), "runs of an unchanged team share one decoded component");

    team.component.label = Some("edited".to_owned());
    assert!(store.update_team(&team).await.unwrap());
    let edited = store.get_team_component(team.id).await.unwrap().unwrap();
    assert_eq!(edited.label.as_deref(), Some("edited"), "an edited team is never served from the old entry");
    assert_eq!(first.label.as_deref(), Some("shared"), "runs that hold the old component keep it");
}

#[tokio::test]
async fn open_ends_run_out_of_attempts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aegis.db");
    let crashed = SqliteStore::open_default(&path).await.unwrap();
    let session = new_session(&crashed).await;
    let spec = run_spec(&session);
    crashed.insert_run(&spec).await.unwrap();
    crashed.claim_run("owner-a", LEASE).await.unwrap().unwrap();
    drop(crashed);

    let reopened = SqliteStore::open(&path, SqliteConfig::default().with_max_attempts(1)).await.unwrap();

    assert_eq!(reopened.requeued_on_open().exhausted, vec![spec.run.id]);
    assert!(reopened.requeued_on_open().requeued.is_empty());
    let run = reopened.get_run(spec.run.id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Error);
    assert_eq!(run.error_details.unwrap().error_type, "RunInterruptedError");
    assert!(reopened.claim_run("owner-b", LEASE).await.unwrap().is_none(), "an ended run is not claimed");
}

#[tokio::test]
async fn open_without_requeue_keeps_active_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aegis.db");
    let first = SqliteStore::open_default(&path).await.unwrap();
    let session = new_session(&first).await;
    let spec = run_spec(&session);
    first.insert_run(&spec).await.unwrap();
    let (_, lease) = first.claim_run("owner-a", LEASE).await.unwrap().unwrap();
    drop(first);

    let second = SqliteStore::open(&path, SqliteConfig::default().with_requeue_on_open(false)).await.unwrap();

    assert!(second.requeued_on_open().requeued.is_empty());
    let run = second.get_run(spec.run.id).await.unwrap().unwrap();
    assert_eq!(run.status, RunStatus::Active);
    second.append_message(&lease, &AgentMessage::text("marker", "still held")).await.unwrap();
}

#[tokio::test]
async fn finished_run_reads_as_stored_document() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aegis.db");
    let store = SqliteStore::open_default(&path).await.unwrap();
    let session = new_session(&store).await;
    let spec = run_spec(&session);
    store.insert_run(&spec).await.unwrap();
    let (_, lease) = store.claim_run("owner-a", LEASE).await.unwrap().unwrap();
    let appended = messages();
    for message in &appended {
        store.append_message(&lease, message).await.unwrap();
    }
    let active = store.get_run_document(spec.run.id).await.unwrap().unwrap();
    assert!(matches!(active, StoredRun::Decoded(_)), "an active run is decoded, for its estimate");

    store.finish_run(&lease, &RunOutcome::complete(TeamResult::default())).await.unwrap();
    let run = store.get_run(spec.run.id).await.unwrap().unwrap();
    let StoredRun::Encoded(document) = store.get_run_document(spec.run.id).await.unwrap().unwrap() else {
        panic!("a finished run is read as its stored document");
    };
    assert_eq!(serde_json::from_str::<Run>(&document.json).unwrap(), run);
    assert_eq!(run.messages, appended, "the document holds the messages");
    store.close().await;

    // A file written before final documents existed: the run's JSON has no messages.
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "ALTER TABLE runs DROP COLUMN json_final; ALTER TABLE runs DROP COLUMN started_at; PRAGMA user_version = 4;",
    )
    .unwrap();
    let without_messages = serde_json::to_string(&Run { messages: Vec::new(), ..run.clone() }).unwrap();
    conn.execute("UPDATE runs SET json = ?1", [&without_messages]).unwrap();
    drop(conn);

    let reopened = SqliteStore::open_default(&path).await.unwrap();
    let StoredRun::Decoded(old) = reopened.get_run_document(spec.run.id).await.unwrap().unwrap() else {
        panic!("an older row is decoded and joined with its messages");
    };
    assert_eq!(*old, run);
    let archived = reopened.set_run_archived(spec.run.id, true).await.unwrap().unwrap();
    let StoredRun::Encoded(document) = reopened.get_run_document(spec.run.id).await.unwrap().unwrap() else {
        panic!("the next write stores the final document");
    };
    assert_eq!(serde_json::from_str::<Run>(&document.json).unwrap(), archived);
    reopened.close().await;
}

#[tokio::test]
async fn estimates_migration_fills_team_ids() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aegis.db");
    let store = SqliteStore::open_default(&path).await.unwrap();
    let session = new_session(&store).await;
    store.insert_run(&run_spec(&session)).await.unwrap();
    let (_, lease) = store.claim_run("owner-a", LEASE).await.unwrap().unwrap();
    store.finish_run(&lease, &RunOutcome::complete(TeamResult::default())).await.unwrap();
    store.close().await;

    // Take the file back to version 3, before runs had a team_id, with the run in it.
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch(
        "DROP INDEX runs_by_team_finished; ALTER TABLE runs DROP COLUMN team_id;
         ALTER TABLE runs DROP COLUMN json_final; ALTER TABLE runs DROP COLUMN started_at;
         PRAGMA user_version = 3;",
    )
    .unwrap();
    drop(conn);

    let reopened = SqliteStore::open_default(&path).await.unwrap();
    let durations = reopened.recent_run_durations(Some(session.team_id), 10).await.unwrap();
    assert_eq!(durations.len(), 1, "the run's team_id is filled from its session");
    reopened.close().await;
}

#[tokio::test]
async fn migrations_set_user_version_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aegis.db");

    let store = SqliteStore::open_default(&path).await.unwrap();
    let task = task("migrated");
    store.insert_task(&task).await.unwrap();
    store.close().await;
    assert_eq!(user_version(&path), i64::from(SCHEMA_VERSION));

    // Applying the first migration again would fail on its CREATE TABLE statements, and
    // recreating the tables would lose the task.
    let reopened = SqliteStore::open_default(&path).await.unwrap();
    assert_eq!(reopened.get_task(task.id).await.unwrap(), Some(task));
    reopened.close().await;
    assert_eq!(user_version(&path), i64::from(SCHEMA_VERSION));

    let conn = Connection::open(&path).unwrap();
    let journal_mode: String = conn.pragma_query_value(None, "journal_mode", |row| row.get(0)).unwrap();
    assert_eq!(journal_mode, "wal");
}

#[tokio::test]
async fn open_rejects_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aegis.db");
    let newer = i64::from(SCHEMA_VERSION) + 1;
    Connection::open(&path).unwrap().pragma_update(None, "user_version", newer).unwrap();

    let error = SqliteStore::open_default(&path).await.unwrap_err();

    match &error {
        StoreOpenError::NewerSchema { found, supported, .. } => {
            assert_eq!(*found, newer);
            assert_eq!(*supported, SCHEMA_VERSION);
        }
        other => panic!("expected NewerSchema, got {other}"),
    }
    assert!(error.to_string().contains(&format!("schema version {newer}")), "message: {error}");
    assert_eq!(user_version(&path), newer, "the file is left as it was");
}

#[tokio::test]
async fn open_rejects_invalid_config() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aegis.db");

    let no_readers = SqliteStore::open(&path, SqliteConfig::default().with_read_connections(0)).await;
    assert!(matches!(no_readers, Err(StoreOpenError::InvalidConfig(_))), "{no_readers:?}");
    let no_attempts = SqliteStore::open(&path, SqliteConfig::default().with_max_attempts(0)).await;
    assert!(matches!(no_attempts, Err(StoreOpenError::InvalidConfig(_))), "{no_attempts:?}");
}

#[tokio::test]
async fn open_reports_unopenable_path() {
    let dir = tempfile::tempdir().unwrap();

    let result = SqliteStore::open_default(dir.path()).await;

    assert!(matches!(result, Err(StoreOpenError::Open { .. })), "{result:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_all_land() {
    const WRITERS: usize = 16;
    const TASKS_EACH: usize = 25;

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open_default(dir.path().join("aegis.db")).await.unwrap());
    let session = new_session(store.as_ref()).await;

    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let (store, session) = (Arc::clone(&store), session.clone());
        writers.push(tokio::spawn(async move {
            let mut written = Vec::new();
            for index in 0..TASKS_EACH {
                let task = task(&format!("writer {writer} task {index}"));
                store.insert_task(&task).await.unwrap();
                let spec = run_spec(&session);
                store.insert_run(&spec).await.unwrap();
                written.push((task, spec));
            }
            written
        }));
    }
    let mut written = Vec::new();
    for writer in writers {
        written.extend(writer.await.unwrap());
    }

    assert_eq!(written.len(), WRITERS * TASKS_EACH);
    for (task, spec) in &written {
        assert_eq!(store.get_task(task.id).await.unwrap().as_ref(), Some(task));
        assert_eq!(store.get_run(spec.run.id).await.unwrap().as_ref(), Some(&spec.run));
    }
    let mut filter = RunFilter::session(session.id);
    filter.page = PageRequest::first(MAX_LIMIT, SortOrder::Desc);
    let mut listed = 0;
    loop {
        let page = store.list_runs(&filter).await.unwrap();
        listed += page.items.len();
        let Some(cursor) = page.next_cursor else { break };
        filter.page = PageRequest::after(MAX_LIMIT, cursor);
    }
    assert_eq!(listed, WRITERS * TASKS_EACH);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_write_does_not_undo_batch() {
    const WRITERS: usize = 16;

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open_default(dir.path().join("aegis.db")).await.unwrap());
    let contested = task("contested");

    // Writers that queue up together share a transaction. Each inserts its own task and
    // then the same contested task: every contested insert but one must fail with Conflict
    // without taking the other writes of its batch along.
    let mut writers = Vec::new();
    for writer in 0..WRITERS {
        let (store, contested) = (Arc::clone(&store), contested.clone());
        writers.push(tokio::spawn(async move {
            let own = task(&format!("writer {writer}"));
            store.insert_task(&own).await.unwrap();
            let contested = store.insert_task(&contested).await.map_err(|error| error.kind().clone());
            (own, contested)
        }));
    }
    let mut results = Vec::new();
    for writer in writers {
        results.push(writer.await.unwrap());
    }

    let succeeded = results.iter().filter(|(_, contested)| contested.is_ok()).count();
    assert_eq!(succeeded, 1, "exactly one contested insert succeeds");
    for (_, contested) in &results {
        if let Err(kind) = contested {
            assert_eq!(*kind, StorageErrorKind::Conflict);
        }
    }
    for (own, _) in &results {
        assert_eq!(store.get_task(own.id).await.unwrap().as_ref(), Some(own));
    }
    assert_eq!(store.get_task(contested.id).await.unwrap(), Some(contested));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_keep_order() {
    const APPENDERS: usize = 4;
    const MESSAGES_EACH: usize = 25;

    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open_default(dir.path().join("aegis.db")).await.unwrap());
    let session = new_session(store.as_ref()).await;
    let spec = run_spec(&session);
    store.insert_run(&spec).await.unwrap();
    let (_, lease) = store.claim_run("owner-a", LEASE).await.unwrap().unwrap();
    let stale = aegis_core::storage::Lease { attempt: lease.attempt + 1, ..lease.clone() };

    // Appends under the lease and under a stale lease arrive interleaved, so batches mix
    // writes that succeed with writes that are rejected.
    let mut appenders = Vec::new();
    for appender in 0..APPENDERS {
        let (store, lease, stale) = (Arc::clone(&store), lease.clone(), stale.clone());
        appenders.push(tokio::spawn(async move {
            for index in 0..MESSAGES_EACH {
                let source = format!("agent-{appender}");
                let message = AgentMessage::text(source.clone(), index.to_string());
                store.append_message(&lease, &message).await.unwrap();
                let rejected = store.append_message(&stale, &AgentMessage::text(source, "stale")).await;
                assert_eq!(rejected.map_err(|error| error.kind().clone()), Err(StorageErrorKind::LeaseLost));
            }
        }));
    }
    for appender in appenders {
        appender.await.unwrap();
    }

    let run = store.get_run(spec.run.id).await.unwrap().unwrap();
    assert_eq!(run.messages.len(), APPENDERS * MESSAGES_EACH, "every accepted append is stored, no rejected one");
    for appender in 0..APPENDERS {
        let source = format!("agent-{appender}");
        let texts: Vec<String> =
            run.messages.iter().filter(|message| message.source == source).map(AgentMessage::to_text).collect();
        let expected: Vec<String> = (0..MESSAGES_EACH).map(|index| index.to_string()).collect();
        assert_eq!(texts, expected, "the messages of {source} are in append order");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_run_leaves_no_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aegis.db");
    let store = SqliteStore::open_default(&path).await.unwrap();
    let (task, team) = (task("erase"), team("erase"));
    let session = session(&task, &team);
    store.insert_task(&task).await.unwrap();
    store.insert_team(&team).await.unwrap();
    store.insert_session(&session).await.unwrap();

    let marker = format!("student-answer-{}", uuid::Uuid::now_v7());
    let mut spec = run_spec(&session);
    spec.run.run_task.content = serde_json::json!({"student_answer": marker});
    store.insert_run(&spec).await.unwrap();
    let (_, lease) = store.claim_run("erase", LEASE).await.unwrap().unwrap();
    store.finish_run(&lease, &RunOutcome::complete(TeamResult::default())).await.unwrap();
    let deleted = store.delete(DeleteTarget::Run(spec.run.id), false).await.unwrap();
    assert_eq!(deleted, DeleteOutcome::Deleted(Default::default()));
    store.close().await;

    for file in std::fs::read_dir(dir.path()).unwrap() {
        let file = file.unwrap().path();
        let bytes = std::fs::read(&file).unwrap();
        let found = bytes.windows(marker.len()).any(|window| window == marker.as_bytes());
        assert!(!found, "{} still contains the deleted answer", file.display());
    }
}
