//! The whole conformance suite against `sqlite::memory:`, a fresh in-memory database per case.

use std::sync::Arc;

use cache_core::Backend;
use cache_sqlite::SqliteBackend;

cache_core::conformance_tests!(async {
    Arc::new(
        SqliteBackend::open("sqlite::memory:")
            .await
            .expect("open an in-memory database"),
    ) as Arc<dyn Backend>
});
