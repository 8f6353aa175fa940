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
