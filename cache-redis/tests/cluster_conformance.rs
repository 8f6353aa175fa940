//! The whole conformance suite against a Redis Cluster named by `CACHETTE_REDIS_CLUSTER_URL`.

mod common;

use std::sync::Arc;

use cache_core::Backend;
use cache_redis::RedisBackend;

async fn store() -> Arc<dyn Backend> {
    let url = common::server_url(
        "CACHETTE_REDIS_CLUSTER_URL",
        "redis+cluster://127.0.0.1:30001,127.0.0.1:30002,127.0.0.1:30003",
    );
    // The suite puts 64 MiB values and 100,000-key pipelines on one multiplexed connection,
    // where every other call of the handle queues behind them: on a busy machine that takes
    // longer than the default 2 s response timeout.
    let separator = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{separator}response_timeout=10s");
    match RedisBackend::open(&url).await {
        Ok(store) => {
            assert!(
                store.config().is_cluster(),
                "{url} is not a redis+cluster:// URL"
            );
            Arc::new(store)
        }
        Err(error) => {
            panic!("cannot reach the Redis Cluster of CACHETTE_REDIS_CLUSTER_URL: {error}")
        }
    }
}

cache_core::conformance_tests!(handles = store());
