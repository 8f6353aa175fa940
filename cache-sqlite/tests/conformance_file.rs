//! The whole conformance suite against a database file. Every case opens its own handle on one
//! shared file, so the cases also contend for it as separate connections do.

use std::sync::Arc;

use cache_core::Backend;
use cache_sqlite::SqliteBackend;

cache_core::conformance_tests!(
    handles = async {
        let path =
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cache-sqlite-conformance.db");
        Arc::new(
            SqliteBackend::file(path)
                .open()
                .await
                .expect("open the conformance database"),
        ) as Arc<dyn Backend>
    }
);
