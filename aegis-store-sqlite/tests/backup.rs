//! `aegis_store_sqlite::backup` on real files: a copy taken while the store keeps writing,
//! the checks on source and destination, and readiness of a file at an old schema version.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use aegis_core::storage::StorageErrorKind;
use aegis_core::storage::testkit::{run_spec, session, task, team};
use aegis_core::{RunStatus, Storage};
use aegis_store_sqlite::{BackupError, SqliteStore, backup};
use rusqlite::Connection;

#[tokio::test]
async fn backup_during_writes_is_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aegis.db");
    let store = Arc::new(SqliteStore::open_default(&path).await.unwrap());
    let (task, team) = (task("backup"), team("backup"));
    let session = session(&task, &team);
    store.insert_task(&task).await.unwrap();
    store.insert_team(&team).await.unwrap();
    store.insert_session(&session).await.unwrap();

    let writer = {
        let store = Arc::clone(&store);
        let session = session.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..200 {
                let spec = run_spec(&session);
                store.insert_run(&spec).await.unwrap();
                ids.push(spec.run.id);
            }
            ids
        })
    };
    let out = dir.path().join("copy.db");
    let (source, destination) = (path.clone(), out.clone());
    let report = tokio::task::spawn_blocking(move || backup(&source, &destination)).await.unwrap().unwrap();
    let ids = writer.await.unwrap();
    assert!(report.pages > 0);
    assert_eq!(report.bytes, std::fs::metadata(&out).unwrap().len());
    assert_eq!(report.schema_version, aegis_store_sqlite::SCHEMA_VERSION);
    assert!(!dir.path().join("copy.db.partial").exists(), "the partial file was renamed");

    let copy = SqliteStore::open_default(&out).await.unwrap();
    copy.ready().await.unwrap();
    assert_eq!(copy.get_session(session.id).await.unwrap(), Some(session));
    // The runs were committed one after another, so a snapshot contains a prefix of them: a
    // run in the copy means every earlier run is in it too.
    let mut present = Vec::new();
    for id in &ids {
        present.push(copy.get_run(*id).await.unwrap().is_some());
    }
    let copied = present.iter().take_while(|present| **present).count();
    assert!(present[copied..].iter().all(|present| !present), "the copy is a prefix: {present:?}");
    assert_eq!(copy.count_runs(RunStatus::Created).await.unwrap(), copied as u64);
    copy.close().await;
}

#[tokio::test]
async fn backup_rejects_bad_paths() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aegis.db");
    SqliteStore::open_default(&path).await.unwrap().close().await;

    let existing = dir.path().join("existing.db");
    std::fs::write(&existing, b"keep me").unwrap();
    let error = backup(&path, &existing).unwrap_err();
    assert!(matches!(error, BackupError::DestinationExists { .. }), "{error}");
    assert_eq!(std::fs::read(&existing).unwrap(), b"keep me");

    let missing = dir.path().join("missing.db");
    let error = backup(&missing, &dir.path().join("out-1.db")).unwrap_err();
    assert!(matches!(error, BackupError::OpenSource { .. }), "{error}");
    assert!(!missing.exists(), "a missing source is not created");

    let foreign = dir.path().join("foreign.db");
    Connection::open(&foreign).unwrap().execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
    let error = backup(&foreign, &dir.path().join("out-2.db")).unwrap_err();
    assert!(matches!(error, BackupError::NotAegis { found: 0, .. }), "{error}");
    assert!(!dir.path().join("out-2.db").exists());
    assert!(!dir.path().join("out-2.db.partial").exists());
}

#[tokio::test]
async fn ready_rejects_other_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aegis.db");
    let store = SqliteStore::open_default(&path).await.unwrap();
    store.ready().await.unwrap();

    // Another process rolling the file's version back is what a half-applied restore looks like.
    Connection::open(&path).unwrap().pragma_update(None, "user_version", 1).unwrap();
    let error = store.ready().await.unwrap_err();
    assert_eq!(*error.kind(), StorageErrorKind::Unavailable);
    assert!(error.to_string().contains("schema version 1"), "{error}");
    store.close().await;
}
