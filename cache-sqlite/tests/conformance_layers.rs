//! Every layer of `cache_core::layers` passes the whole suite over a real store:
//! `sqlite::memory:`, a fresh in-memory database per case.

use std::sync::Arc;
use std::time::Duration;

use cache_core::Backend;
use cache_core::layers::{CallEvent, Fault, Faults, Observe, Observer, Retry, Timeout};
use cache_core::raw::Layer;
use cache_sqlite::SqliteBackend;

async fn sqlite() -> Arc<dyn Backend> {
    Arc::new(
        SqliteBackend::open("sqlite::memory:")
            .await
            .expect("open an in-memory database"),
    )
}

struct Quiet;

impl Observer for Quiet {
    fn on_call(&self, _: &CallEvent<'_>) {}
}

async fn observe() -> Arc<dyn Backend> {
    Observe::new(Quiet).layer(sqlite().await)
}

async fn timeout() -> Arc<dyn Backend> {
    Timeout::new(Duration::from_secs(60)).layer(sqlite().await)
}

/// Retries hide a flaky store from every call they may retry: a fifth of those fail first.
async fn retry() -> Arc<dyn Backend> {
    let flaky = Faults::new(7)
        .inject(Fault::Fail, 0.2)
        .only(&["get", "get_many", "set_many", "contains", "ttl"]);
    Retry::new(30)
        .backoff(Duration::ZERO, Duration::ZERO)
        .layer(flaky.layer(sqlite().await))
}

/// Delays change no answer.
async fn delays() -> Arc<dyn Backend> {
    let slow = Faults::new(11).inject(Fault::Delay(Duration::from_millis(1)), 0.1);
    slow.layer(sqlite().await)
}

mod observe {
    cache_core::conformance_tests!(super::observe());
}

mod timeout {
    cache_core::conformance_tests!(super::timeout());
}

mod retry {
    cache_core::conformance_tests!(super::retry());
}

mod faults {
    cache_core::conformance_tests!(super::delays());
}
