//! The layer stacks that the layer tests run the conformance suite through, over any store.

use std::sync::Arc;
use std::time::Duration;

use cache_core::layers::{CallEvent, Fault, Faults, Observe, Observer, Retry, Timeout};
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
