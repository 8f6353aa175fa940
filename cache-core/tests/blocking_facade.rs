//! The blocking facade runs the suite's facade cases over the reference store, each verb called
//! from a plain thread without a runtime, and the cases catch the bugs planted in it.

use std::sync::Arc;

use cache_core::blocking::Runtime;
use cache_core::conformance::{
    CANCELLING_CASES, CaseReport, FACADE_GROUPS, FacadeBug, RunOptions, assert_reports,
    run_conformance,
};
use cache_core::testing::ReferenceBackend;

async fn run(bug: Option<FacadeBug>) -> Vec<CaseReport> {
    let runtime = Runtime::new().expect("the blocking runtime starts");
    let mut options = RunOptions::new(Arc::new(ReferenceBackend::default()))
        .only_groups(&FACADE_GROUPS)
        .through_blocking(runtime)
        .parallelism(8);
    if let Some(bug) = bug {
        options = options.facade_bug(bug);
    }
    run_conformance(options).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn blocking_facade_passes_the_facade_cases() {
    let reports = run(None).await;
    assert_reports(&reports, 48, &CANCELLING_CASES);
}

async fn assert_caught(bug: FacadeBug, by: &str) {
    let reports = run(Some(bug)).await;
    let report = reports
        .iter()
        .find(|report| report.case == by)
        .unwrap_or_else(|| panic!("no case {by}"));
    assert!(
        report.failure().is_some(),
        "{by} did not catch {bug:?}: {:?}",
        report.verdict
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_runtime_per_call_is_caught() {
    assert_caught(
        FacadeBug::BlockingRuntimePerCall,
        "freshness::stale_reads_serve_at_once_and_refresh_once",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_walk_of_one_page_is_caught() {
    assert_caught(
        FacadeBug::BlockingWalkFirstPageOnly,
        "typed_capabilities::typed_walks_cross_pages",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_loader_waiting_for_itself_is_caught() {
    assert_caught(
        FacadeBug::BlockingLoaderCallsForgetTheLoad,
        "loading::loader_asking_for_its_own_key_fails_instead_of_waiting",
    )
    .await;
}
