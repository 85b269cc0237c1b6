//! The storage contract suite run against the in-memory store.

use std::sync::Arc;

use aegis_core::storage::testkit;
use aegis_core::{MemoryStorage, Storage};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_storage_meets_contract() {
    let store: Arc<dyn Storage> = Arc::new(MemoryStorage::new());
    testkit::check_all(&store).await;
}
