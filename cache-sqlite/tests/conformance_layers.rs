//! Every layer of `cache_core::layers` passes the whole suite over a real store:
//! `sqlite::memory:`, a fresh in-memory database per case, through the stacks of
//! `cachette_test_support::layers`.

use std::sync::Arc;

use cache_core::Backend;
use cache_sqlite::SqliteBackend;
use cachette_test_support::layers;

async fn sqlite() -> Arc<dyn Backend> {
    Arc::new(
        SqliteBackend::open("sqlite::memory:")
            .await
            .expect("open an in-memory database"),
    )
}

mod observe {
    cache_core::conformance_tests!(async { super::layers::observed(super::sqlite().await) });
}

mod timeout {
    cache_core::conformance_tests!(async { super::layers::timed(super::sqlite().await) });
}

mod retry {
    cache_core::conformance_tests!(async {
        super::layers::flaky_with_retries(super::sqlite().await)
    });
}

mod faults {
    cache_core::conformance_tests!(async { super::layers::delayed(super::sqlite().await) });
}

mod compress {
    cache_core::conformance_tests!(async { super::layers::compressed(super::sqlite().await) });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_passes_the_suite_but_counters() {
    layers::passes_the_suite_but_counters(layers::signed(sqlite().await)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encryption_and_compression_pass_the_suite_but_counters() {
    layers::passes_the_suite_but_counters(layers::compressed_and_encrypted(sqlite().await)).await;
}
