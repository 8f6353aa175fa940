//! The conformance suite's outage case against a throwaway PostgreSQL of this test's own, which
//! it stops (fast shutdown, as an operator's restart does) and starts again on the same port.

mod common;

use std::sync::Arc;

use cache_core::conformance::outage::{self, Outage};
use cache_core::{Backend, async_trait};
use cache_postgres::PostgresBackend;
use common::throwaway::ThrowawayPostgres;

struct Restartable(Arc<ThrowawayPostgres>);

#[async_trait]
impl Outage for Restartable {
    async fn take_down(&self) {
        let server = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || server.stop())
            .await
            .expect("stopping the throwaway server");
    }

    async fn bring_back(&self) {
        let server = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || server.start_again())
            .await
            .expect("starting the throwaway server again");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_outage_case() {
    let server = Arc::new(
        tokio::task::spawn_blocking(ThrowawayPostgres::start)
            .await
            .expect("starting a throwaway server"),
    );
    let url = format!(
        "{}?table=outage&pool_max=4&acquire_timeout=1s&statement_timeout=1s&purge_interval=off",
        server.url()
    );
    let store = PostgresBackend::open(&url)
        .await
        .expect("connects to the throwaway server");
    let backend: Arc<dyn Backend> = Arc::new(store);
    outage::run(backend, Restartable(server)).await;
}
