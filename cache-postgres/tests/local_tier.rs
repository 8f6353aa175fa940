//! The local tier over PostgreSQL: every facade case with a tier in front of the store, and two
//! handles (separate pools, as two processes have) kept coherent over `LISTEN/NOTIFY`, through
//! a terminated listening connection too.

mod common;

use cachette_test_support::local::{
    channel_loss_empties_the_tier, coherence, facade_cases_with_a_local_tier,
};
use sqlx::Connection;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facade_cases_pass_with_a_local_tier() {
    facade_cases_with_a_local_tier(common::conformance_backend().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_one_handle_reach_the_other_handles_tier() {
    let delays = coherence(
        common::conformance_backend().await,
        common::conformance_backend().await,
        200,
    )
    .await;
    println!(
        "postgres coherence over {} writes: p50 {:?}, p99 {:?}, max {:?}",
        delays.all.len(),
        delays.quantile(0.5),
        delays.quantile(0.99),
        delays.quantile(1.0)
    );
}

/// Ends every backend that listens for the cache's invalidations.
async fn terminate_listeners() {
    let mut connection = sqlx::PgConnection::connect(&common::postgres_url())
        .await
        .expect("a connection");
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE query LIKE 'LISTEN \"cachette_invalidations_%' AND pid <> pg_backend_pid()",
    )
    .execute(&mut connection)
    .await
    .expect("terminate the listeners");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminated_listener_empties_the_tier_until_it_is_back() {
    channel_loss_empties_the_tier(
        common::conformance_backend().await,
        common::conformance_backend().await,
        terminate_listeners,
    )
    .await;
}
