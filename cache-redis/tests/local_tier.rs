//! The local tier over Redis and Redis Cluster: every facade case with a tier in front of the
//! store, and two handles (separate connections, as two processes have) kept coherent over
//! pub/sub, through a killed subscription too.

mod common;

use std::sync::Arc;

use cache_core::Backend;
use cache_redis::RedisBackend;
use cachette_test_support::local::{
    channel_loss_empties_the_tier, coherence, facade_cases_with_a_local_tier,
};

async fn open(var: &str, example: &str) -> Arc<dyn Backend> {
    let url = common::server_url(var, example);
    let separator = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{separator}response_timeout=10s");
    Arc::new(
        RedisBackend::open(&url)
            .await
            .expect("open the Redis store"),
    )
}

async fn standalone() -> Arc<dyn Backend> {
    open("CACHETTE_REDIS_URL", "redis://127.0.0.1:6379/0").await
}

async fn cluster() -> Arc<dyn Backend> {
    open(
        "CACHETTE_REDIS_CLUSTER_URL",
        "redis+cluster://127.0.0.1:30001,127.0.0.1:30002,127.0.0.1:30003",
    )
    .await
}

/// Closes every pub/sub connection of every node `urls` names.
async fn kill_subscriptions(urls: Vec<String>) {
    for url in urls {
        let client = redis::Client::open(url).expect("a client");
        let mut connection = client
            .get_multiplexed_async_connection()
            .await
            .expect("a connection");
        let _: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .query_async(&mut connection)
            .await
            .expect("CLIENT KILL");
    }
}

fn standalone_urls() -> Vec<String> {
    vec![common::server_url(
        "CACHETTE_REDIS_URL",
        "redis://127.0.0.1:6379/0",
    )]
}

fn cluster_urls() -> Vec<String> {
    let url = common::server_url(
        "CACHETTE_REDIS_CLUSTER_URL",
        "redis+cluster://127.0.0.1:30001,127.0.0.1:30002,127.0.0.1:30003",
    );
    let nodes = url
        .trim_start_matches("redis+cluster://")
        .split('?')
        .next()
        .unwrap_or_default()
        .to_owned();
    nodes
        .split(',')
        .map(|node| format!("redis://{node}"))
        .collect()
}

fn report(what: &str, delays: &cachette_test_support::local::Delays) {
    println!(
        "{what} coherence over {} writes: p50 {:?}, p99 {:?}, max {:?}",
        delays.all.len(),
        delays.quantile(0.5),
        delays.quantile(0.99),
        delays.quantile(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facade_cases_pass_with_a_local_tier() {
    facade_cases_with_a_local_tier(standalone().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facade_cases_pass_with_a_local_tier_on_a_cluster() {
    facade_cases_with_a_local_tier(cluster().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_one_handle_reach_the_other_handles_tier() {
    report(
        "redis",
        &coherence(standalone().await, standalone().await, 200).await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_through_one_cluster_handle_reach_the_other_handles_tier() {
    report(
        "redis cluster",
        &coherence(cluster().await, cluster().await, 200).await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_subscription_empties_the_tier_until_it_is_back() {
    channel_loss_empties_the_tier(standalone().await, standalone().await, || {
        kill_subscriptions(standalone_urls())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_cluster_subscription_empties_the_tier_until_it_is_back() {
    channel_loss_empties_the_tier(cluster().await, cluster().await, || {
        kill_subscriptions(cluster_urls())
    })
    .await;
}
