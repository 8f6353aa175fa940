//! The layer stacks that the layer tests run the conformance suite through, over any store.

use std::sync::Arc;
use std::time::Duration;

use cache_core::conformance::{RunOptions, Verdict, run_conformance};
use cache_core::layers::{
    CallEvent, Compress, Encrypt, Fault, Faults, Observe, Observer, Retry, Sign, Timeout,
};
use cache_core::raw::{Forward, Layer};
use cache_core::{Backend, Bytes, Result, async_trait};

/// A layer that overrides `get` alone: every other call, batches included, is forwarded.
#[derive(Debug)]
pub struct GetOnly(pub Arc<dyn Backend>);

#[async_trait]
impl Forward for GetOnly {
    fn inner(&self) -> &dyn Backend {
        &*self.0
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.0.get(key).await
    }
}

/// An observer that records nothing: what the `Observe` layer itself does to calls is under test.
pub struct Quiet;

impl Observer for Quiet {
    fn on_call(&self, _: &CallEvent<'_>) {}
}

/// `store` behind [`GetOnly`].
pub fn get_only(store: Arc<dyn Backend>) -> Arc<dyn Backend> {
    Arc::new(GetOnly(store))
}

/// `store` behind an `Observe` layer reporting to [`Quiet`].
pub fn observed(store: Arc<dyn Backend>) -> Arc<dyn Backend> {
    Observe::new(Quiet).layer(store)
}

/// `store` behind a `Timeout` of a minute, which no correct call reaches.
pub fn timed(store: Arc<dyn Backend>) -> Arc<dyn Backend> {
    Timeout::new(Duration::from_secs(60)).layer(store)
}

/// `store` behind a fault layer that fails a fifth of the calls a retry may repeat, behind a
/// `Retry` that hides them.
pub fn flaky_with_retries(store: Arc<dyn Backend>) -> Arc<dyn Backend> {
    let flaky = Faults::new(7)
        .inject(Fault::Fail, 0.2)
        .only(&["get", "get_many", "set_many", "contains", "ttl"]);
    Retry::new(30)
        .backoff(Duration::ZERO, Duration::ZERO)
        .layer(flaky.layer(store))
}

/// `store` behind a fault layer that delays a tenth of the calls by a millisecond.
pub fn delayed(store: Arc<dyn Backend>) -> Arc<dyn Backend> {
    Faults::new(11)
        .inject(Fault::Delay(Duration::from_millis(1)), 0.1)
        .layer(store)
}

/// `store` behind a `Sign` layer with a salt and a retired secret it still accepts.
pub fn signed(store: Arc<dyn Backend>) -> Arc<dyn Backend> {
    Sign::new(b"the conformance suite's secret, 32+ bytes")
        .salt(b"conformance")
        .also_accept(b"a retired secret")
        .layer(store)
}

/// `store` behind an `Encrypt` layer with a retired key it still accepts.
pub fn encrypted(store: Arc<dyn Backend>) -> Arc<dyn Backend> {
    Encrypt::new([42; 32]).also_accept([7; 32]).layer(store)
}

/// `store` behind a `Compress` layer that compresses values of 64 bytes or more, so that most
/// of the suite's values go through LZ4.
pub fn compressed(store: Arc<dyn Backend>) -> Arc<dyn Backend> {
    Compress::new().threshold(64).layer(store)
}

/// `store` behind `Encrypt`, with `Compress` outside it: compressed, then encrypted.
pub fn compressed_and_encrypted(store: Arc<dyn Backend>) -> Arc<dyn Backend> {
    compressed(encrypted(store))
}

/// Runs the whole suite over `store`, four cases at a time (the exclusive cases included: the
/// store must be the run's alone), and panics unless every case passed, except the counter cases, which must be
/// not applicable: a layer that seals values cannot let the store's plain counters through.
pub async fn passes_the_suite_but_counters(store: Arc<dyn Backend>) {
    // Four at a time, near what libtest runs of the macro's tests at once: sealing 100,000 values
    // beside a dozen timing cases would measure the machine, not the layer.
    let reports = run_conformance(RunOptions::new(store).parallelism(4).exclusive(true)).await;
    let mut wrong = Vec::new();
    for report in &reports {
        let counters = report.case.starts_with("counters::")
            || report.case.ends_with("typed_counters_use_the_callers_keys");
        match &report.verdict {
            Verdict::Passed if !counters => {}
            Verdict::NotApplicable(why) if counters && why.contains("incr") => {}
            other => wrong.push(format!("{}: {other:?}", report.case)),
        }
    }
    assert!(
        wrong.is_empty(),
        "{} case(s) went wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
