//! The storage contract suite run against a SQLite file.

use std::sync::Arc;

use aegis_core::Storage;
use aegis_core::storage::testkit;
use aegis_store_sqlite::{SqliteConfig, SqliteStore, Synchronous};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_meets_contract() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_default(dir.path().join("aegis.db")).await.unwrap();
    let store: Arc<dyn Storage> = Arc::new(store);

    testkit::check_all(&store).await;
}

#[tokio::test(flavor = "current_thread")]
async fn sqlite_store_meets_contract_single_threaded() {
    // The store must not need a second runtime worker: its reads run on the blocking pool
    // and its writes on its own thread. FULL and a single read connection (so reads queue
    // for it) cover the options the other test leaves at their defaults.
    let dir = tempfile::tempdir().unwrap();
    let config = SqliteConfig::default().with_synchronous(Synchronous::Full).with_read_connections(1);
    let store: Arc<dyn Storage> = Arc::new(SqliteStore::open(dir.path().join("aegis.db"), config).await.unwrap());

    testkit::check_all(&store).await;
}
