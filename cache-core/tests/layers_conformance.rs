//! Every layer of `cache_core::layers`, and a layer that overrides `get` alone, passes the whole
//! suite over the reference store. (`cache-sqlite/tests/conformance_layers.rs` runs them over a
//! real store.)

use std::sync::Arc;
use std::time::Duration;

use cache_core::layers::{Fault, Faults, Observe, Retry, Timeout};
use cache_core::raw::{Forward, Layer};
use cache_core::testing::ReferenceBackend;
use cache_core::{Backend, Bytes, Result, async_trait};

fn reference() -> Arc<dyn Backend> {
    Arc::new(ReferenceBackend::default())
}

/// A layer that overrides `get` and nothing else.
#[derive(Debug)]
struct GetOnly(Arc<dyn Backend>);

#[async_trait]
impl Forward for GetOnly {
    fn inner(&self) -> &dyn Backend {
        &*self.0
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.0.get(key).await
    }
}

/// Records nothing: what the layer itself does to calls is under test.
struct Quiet;

impl cache_core::layers::Observer for Quiet {
    fn on_call(&self, _: &cache_core::layers::CallEvent<'_>) {}
}

const MINUTE: Duration = Duration::from_secs(60);

async fn get_only() -> Arc<dyn Backend> {
    Arc::new(GetOnly(reference()))
}

async fn timeout() -> Arc<dyn Backend> {
    Timeout::new(MINUTE).layer(reference())
}

async fn observe() -> Arc<dyn Backend> {
    Observe::new(Quiet).layer(reference())
}

/// Retries hide a flaky store from every call they may retry: a fifth of those fail first.
async fn retry() -> Arc<dyn Backend> {
    let flaky = Faults::new(7)
        .inject(Fault::Fail, 0.2)
        .only(&["get", "get_many", "set_many", "contains", "ttl"]);
    Retry::new(30)
        .backoff(Duration::ZERO, Duration::ZERO)
        .layer(flaky.layer(reference()))
}

/// Delays change no answer.
async fn delays() -> Arc<dyn Backend> {
    let slow = Faults::new(11).inject(Fault::Delay(Duration::from_millis(1)), 0.1);
    slow.layer(reference())
}

mod get_only {
    cache_core::conformance_tests!(super::get_only());
}

mod timeout {
    cache_core::conformance_tests!(super::timeout());
}

mod observe {
    cache_core::conformance_tests!(super::observe());
}

mod retry {
    cache_core::conformance_tests!(super::retry());
}

mod faults {
    cache_core::conformance_tests!(super::delays());
}

/// The defect the seam exists to prevent: a wrapper written against `Backend` that loops over
/// `set` for `set_many` (as the trait's old per-key defaults did) tears batches.
#[derive(Debug)]
struct LoopingWrapper(Arc<dyn Backend>);

#[async_trait]
impl Forward for LoopingWrapper {
    fn inner(&self) -> &dyn Backend {
        &*self.0
    }

    async fn set_many(&self, entries: Vec<(String, Bytes)>, ttl: Option<Duration>) -> Result<()> {
        for (key, value) in entries {
            self.0
                .set(&key, value, ttl, cache_core::Condition::Always)
                .await?;
            tokio::task::yield_now().await;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_suite_catches_a_layer_that_loops_set_many_over_set() {
    use cache_core::conformance::{cases, run_case};
    let case = cases()
        .into_iter()
        .find(|case| case.name == "set_many_is_atomic_for_readers")
        .expect("the atomicity case");
    let forwarded = tokio::spawn(run_case(case.run, get_only().await, None)).await;
    assert!(forwarded.is_ok(), "a forwarding layer keeps batches whole");
    let looping: Arc<dyn Backend> = Arc::new(LoopingWrapper(reference()));
    let torn = tokio::spawn(run_case(case.run, looping, None)).await;
    assert!(
        torn.is_err_and(|error| error.is_panic()),
        "the torn batch went unseen"
    );
}
