//! The storage contract suite run against PostgreSQL, on a database of its own.
//!
//! Skipped (with a line on stderr) when `AEGIS_TEST_DATABASE_URL` is unset, unless `CI` is
//! set; `scripts/test-postgres.sh` provides a server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use aegis_core::Storage;
use aegis_core::storage::testkit;
use aegis_store_postgres::testing::TestDatabase;
use aegis_store_postgres::{PostgresConfig, PostgresStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_meets_contract() {
    let Some(database) = TestDatabase::create("postgres_store_meets_contract").await else {
        return;
    };
    let store = PostgresStore::connect(database.url(), PostgresConfig::default()).await.unwrap();
    let shared: Arc<dyn Storage> = Arc::new(store.clone());

    testkit::check_all(&shared).await;

    store.close();
    database.drop_database().await;
}

#[tokio::test(flavor = "current_thread")]
async fn postgres_store_meets_contract_on_one_connection() {
    // One pooled connection makes concurrent claims and counters queue for it, which the
    // default pool never does.
    let Some(database) = TestDatabase::create("postgres_store_meets_contract_on_one_connection").await else {
        return;
    };
    let store = PostgresStore::connect(database.url(), PostgresConfig::default().with_pool_size(1)).await.unwrap();
    let shared: Arc<dyn Storage> = Arc::new(store.clone());

    testkit::check_all(&shared).await;

    store.close();
    database.drop_database().await;
}
