//! Every layer of `cache_core::layers`, and a layer that overrides `get` alone, passes the whole
//! suite over the reference store (`cache-sqlite/tests/conformance_layers.rs` runs the same
//! stacks over a real store), and the suite catches a wrapper that tears batches.

use std::sync::Arc;
use std::time::Duration;

use cache_core::raw::Forward;
use cache_core::testing::ReferenceBackend;
use cache_core::{Backend, Bytes, Result, async_trait};
use cachette_test_support::layers;

fn reference() -> Arc<dyn Backend> {
    Arc::new(ReferenceBackend::default())
}

mod get_only {
    cache_core::conformance_tests!(async { super::layers::get_only(super::reference()) });
}

mod timeout {
    cache_core::conformance_tests!(async { super::layers::timed(super::reference()) });
}

mod observe {
    cache_core::conformance_tests!(async { super::layers::observed(super::reference()) });
}

mod retry {
    cache_core::conformance_tests!(async { super::layers::flaky_with_retries(super::reference()) });
}

mod faults {
    cache_core::conformance_tests!(async { super::layers::delayed(super::reference()) });
}

mod compress {
    cache_core::conformance_tests!(async { super::layers::compressed(super::reference()) });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_passes_the_suite_but_counters() {
    layers::passes_the_suite_but_counters(layers::signed(reference())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encryption_passes_the_suite_but_counters() {
    layers::passes_the_suite_but_counters(layers::encrypted(reference())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_under_encryption_passes_the_suite_but_counters() {
    layers::passes_the_suite_but_counters(layers::compressed_and_encrypted(reference())).await;
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
    let forwarded = tokio::spawn(run_case(case.run, layers::get_only(reference()), None)).await;
    assert!(forwarded.is_ok(), "a forwarding layer keeps batches whole");
    let looping: Arc<dyn Backend> = Arc::new(LoopingWrapper(reference()));
    let torn = tokio::spawn(run_case(case.run, looping, None)).await;
    assert!(
        torn.is_err_and(|error| error.is_panic()),
        "the torn batch went unseen"
    );
}
