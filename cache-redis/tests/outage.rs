//! The conformance suite's outage case against a throwaway `redis-server` of this test's own,
//! killed (SIGKILL, like a crash) and started again on the same port. The server keeps an
//! append-only file synced on every write, so it comes back with everything it had.

mod common;

use std::sync::Arc;

use cache_core::conformance::outage::{self, Outage};
use cache_core::{Backend, async_trait};
use cache_redis::RedisBackend;
use common::ThrowawayRedis;
use tokio::sync::Mutex;

struct Crashable(Mutex<ThrowawayRedis>);

#[async_trait]
impl Outage for Crashable {
    async fn take_down(&self) {
        self.0.lock().await.kill();
    }

    async fn bring_back(&self) {
        self.0.lock().await.restart().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_outage_case() {
    let server = ThrowawayRedis::start(&["--appendonly", "yes", "--appendfsync", "always"]).await;
    let url = format!(
        "{}?connect_timeout=300ms&response_timeout=500ms",
        server.url()
    );
    let store = RedisBackend::open(&url)
        .await
        .expect("connects to the throwaway server");
    let backend: Arc<dyn Backend> = Arc::new(store);
    outage::run(backend, Crashable(Mutex::new(server))).await;
}
