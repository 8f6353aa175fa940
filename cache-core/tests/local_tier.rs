//! The local tier over the reference store: every facade case passes with a tier in front of
//! the store, and the tier's own promises hold.

use std::sync::Arc;
use std::time::Duration;

use cache_core::conformance::{FACADE_GROUPS, RunOptions, assert_reports, run_conformance};
use cache_core::testing::ReferenceBackend;
use cache_core::{Backend, Cache, LocalTier};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_facade_case_passes_with_a_local_tier() {
    let store: Arc<dyn Backend> = Arc::new(ReferenceBackend::default());
    let reports = run_conformance(
        RunOptions::new(store)
            .only_groups(&FACADE_GROUPS)
            .local_tier(LocalTier::new(100_000).hold(Duration::from_secs(3600))),
    )
    .await;
    assert_reports(&reports, 60, &[]);
}

#[tokio::test]
async fn a_weighed_tier_past_its_bound_still_answers_right() {
    let store: Arc<dyn Backend> = Arc::new(ReferenceBackend::default());
    let cache: Cache<String> = Cache::builder(store)
        .local(LocalTier::weighed(64 * 1024))
        .build();
    let value = "x".repeat(1_000);
    for i in 0..1_000 {
        let key = format!("k{i}");
        cache.set(&key, &value).await.expect("set");
        assert_eq!(cache.get(&key).await.expect("get").as_ref(), Some(&value));
    }
    // Every value is still right, whether held or read again.
    for i in 0..1_000 {
        assert_eq!(
            cache.get(&format!("k{i}")).await.expect("get").as_ref(),
            Some(&value)
        );
    }
}
