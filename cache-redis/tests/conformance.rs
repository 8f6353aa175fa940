//! The whole conformance suite against a standalone Redis named by `CACHETTE_REDIS_URL`.

mod common;

use std::sync::Arc;

use cache_core::Backend;
use cache_redis::RedisBackend;

async fn store() -> Arc<dyn Backend> {
    let url = common::server_url("CACHETTE_REDIS_URL", "redis://127.0.0.1:6379/0");
    // The suite puts 64 MiB values and 100,000-key pipelines on one multiplexed connection,
    // where every other call of the handle queues behind them: on a busy machine that takes
    // longer than the default 2 s response timeout.
    let separator = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{separator}response_timeout=10s");
    match RedisBackend::open(&url).await {
        Ok(store) => Arc::new(store),
        Err(error) => panic!("cannot reach the Redis server of CACHETTE_REDIS_URL: {error}"),
    }
}

cache_core::conformance_tests!(handles = store());
