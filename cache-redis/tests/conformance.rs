//! The whole conformance suite against a standalone Redis named by `CACHETTE_REDIS_URL`.

mod common;

use std::sync::Arc;

use cache_core::Backend;
use cache_redis::RedisBackend;

async fn store() -> Arc<dyn Backend> {
    let url = common::server_url("CACHETTE_REDIS_URL", "redis://127.0.0.1:6379/0");
    match RedisBackend::connect(&url).await {
        Ok(store) => Arc::new(store),
        Err(error) => panic!("cannot reach the Redis server of CACHETTE_REDIS_URL: {error}"),
    }
}

cache_core::conformance_tests!(handles = store());
