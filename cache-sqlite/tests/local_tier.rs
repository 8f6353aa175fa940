//! The local tier over SQLite: every facade case with a tier in front of a file and of a memory
//! database, and two handles on one file (as two processes have) kept coherent through the
//! file's log of announcements.

use std::sync::Arc;

use cache_core::Backend;
use cache_sqlite::SqliteBackend;
use cachette_test_support::local::{coherence, facade_cases_with_a_local_tier};

async fn file(path: &std::path::Path) -> Arc<dyn Backend> {
    Arc::new(
        SqliteBackend::file(path)
            .open()
            .await
            .expect("open the file"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facade_cases_pass_with_a_local_tier_over_a_file() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    facade_cases_with_a_local_tier(file(&dir.path().join("tier.db")).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facade_cases_pass_with_a_local_tier_over_a_memory_database() {
    let store = SqliteBackend::memory().open().await.expect("open");
    facade_cases_with_a_local_tier(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_one_handle_reach_the_other_handles_tier() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("coherence.db");
    let delays = coherence(file(&path).await, file(&path).await, 200).await;
    println!(
        "sqlite file coherence over {} writes: p50 {:?}, p99 {:?}, max {:?}",
        delays.all.len(),
        delays.quantile(0.5),
        delays.quantile(0.99),
        delays.quantile(1.0)
    );
}
