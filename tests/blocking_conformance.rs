//! The suite's facade cases (the typed cache's groups: facade, faults, loading, freshness, tags
//! and the typed capabilities) on the blocking facade, over stores opened by `blocking::open`:
//! every verb is called on a `blocking::Cache` from a plain thread without a runtime, as a
//! program without one calls it, and loaders are plain closures. A blocking call cannot be
//! cancelled, so the three cases that cancel callers are not applicable, and say so.

use std::sync::Arc;

use cache_core::conformance::{
    CANCELLING_CASES, FACADE_GROUPS, RunOptions, assert_reports, run_conformance,
};
use cachette::blocking;

async fn run_facade_cases(url: String) {
    // Opened outside the async runtime, as a blocking user opens it.
    let store = tokio::task::spawn_blocking(move || blocking::open(&url))
        .await
        .expect("the opening thread")
        .expect("open the store");
    let reports = run_conformance(
        RunOptions::new(Arc::clone(store.backend()))
            .only_groups(&FACADE_GROUPS)
            .through_blocking(store.runtime().clone())
            .parallelism(8),
    )
    .await;
    assert_reports(&reports, 48, &CANCELLING_CASES);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn facade_cases_pass_on_the_blocking_facade_over_memory() {
    run_facade_cases("memory://".into()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn facade_cases_pass_on_the_blocking_facade_over_sqlite() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    run_facade_cases(format!(
        "sqlite://{}",
        directory.path().join("facade.db").display()
    ))
    .await;
}
