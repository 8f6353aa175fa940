//! Fault injection for tests, by a seeded plan.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::raw::{Answer, Call, CallFuture, Intercept, Intercepted, Layer};
use crate::{Backend, Error, Result};

/// One kind of fault [`Faults`] injects into a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// The call fails with a transient [`Error::Backend`] before it reaches the store: a
    /// refused connection.
    Fail,
    /// The call reaches the store, which applies it, but its answer is lost: the caller gets a
    /// transient [`Error::Backend`]. What a retry must not miscount.
    LoseReply,
    /// The call reaches the store after this pause: a slow network or server.
    Delay(Duration),
    /// The call never answers: a server that went silent. Only useful under a
    /// [`Timeout`](super::Timeout) or a caller's own deadline.
    Hang,
}

/// For tests: makes calls fail, slow down, hang or lose their replies, by a plan drawn from a
/// seed (the same seed and the same order of calls give the same faults), and turns whole
/// outages on and off with an [`Outage`] switch. It lets tests of timeouts, retries, fail-safe
/// and the conformance outage case run without killing a real server.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> cache_core::Result<()> {
/// use std::sync::Arc;
/// use cache_core::{Cache, layers::Faults, testing::ReferenceBackend};
///
/// let faults = Faults::new(1);
/// let outage = faults.outage();
/// let cache: Cache<u8> = Cache::builder(Arc::new(ReferenceBackend::default()))
///     .layer(faults)
///     .build();
/// cache.set("k", &1).await?;
/// outage.begin();
/// assert!(cache.get("k").await.unwrap_err().is_transient());
/// outage.end();
/// assert_eq!(cache.get("k").await?, Some(1));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Faults {
    faults: Vec<(Fault, f64)>,
    operations: Option<Vec<&'static str>>,
    shared: Arc<Shared>,
}

/// What every layer made from one `Faults` (and its clones) shares.
#[derive(Debug)]
struct Shared {
    rng: Mutex<fastrand::Rng>,
    down: Arc<AtomicBool>,
    injected: AtomicU64,
}

impl Faults {
    /// No faults yet, drawn from `seed`: add them with [`Faults::inject`].
    pub fn new(seed: u64) -> Self {
        Self {
            faults: Vec::new(),
            operations: None,
            shared: Arc::new(Shared {
                rng: Mutex::new(fastrand::Rng::with_seed(seed)),
                down: Arc::new(AtomicBool::new(false)),
                injected: AtomicU64::new(0),
            }),
        }
    }

    /// Injects `fault` into each call with probability `rate` (0 to 1). Several faults are
    /// drawn in the order given; a call gets at most one.
    #[must_use]
    pub fn inject(mut self, fault: Fault, rate: f64) -> Self {
        self.faults.push((fault, rate.clamp(0.0, 1.0)));
        self
    }

    /// Injects faults only into these operations (`get`, `get_many`, `set`, `set_many`,
    /// `delete`, `delete_many`, `contains`, `expire_in`, `ttl`, `clear_prefix`); default: all
    /// of them. `close` never gets a fault. Outages stop every operation.
    #[must_use]
    pub fn only(mut self, operations: &[&'static str]) -> Self {
        self.operations = Some(operations.to_vec());
        self
    }

    /// The switch of a whole outage: while it is on, every call fails as [`Fault::Fail`] does.
    pub fn outage(&self) -> Outage {
        Outage(Arc::clone(&self.shared.down))
    }

    /// How many faults were injected so far, outages included.
    pub fn injected(&self) -> u64 {
        self.shared.injected.load(Ordering::Relaxed)
    }
}

/// Turns an outage of a [`Faults`] layer on and off; clones share the switch.
#[derive(Debug, Clone)]
pub struct Outage(Arc<AtomicBool>);

impl Outage {
    /// From now on every call fails.
    pub fn begin(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// From now on calls reach the store again.
    pub fn end(&self) {
        self.0.store(false, Ordering::SeqCst);
    }

    /// Whether an outage is on.
    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

impl Layer for Faults {
    fn layer(&self, inner: Arc<dyn Backend>) -> Arc<dyn Backend> {
        Arc::new(Intercepted(FaultsBackend {
            inner,
            plan: self.clone(),
        }))
    }
}

#[derive(Debug)]
struct FaultsBackend {
    inner: Arc<dyn Backend>,
    plan: Faults,
}

/// The error of an injected fault.
#[derive(Debug)]
struct Injected(&'static str);

impl fmt::Display for Injected {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "injected fault: {}", self.0)
    }
}

impl std::error::Error for Injected {}

impl FaultsBackend {
    fn draw(&self, operation: &'static str) -> Option<Fault> {
        let plan = &self.plan;
        if operation == "close" {
            return None;
        }
        if plan.shared.down.load(Ordering::SeqCst) {
            return Some(Fault::Fail);
        }
        if plan
            .operations
            .as_ref()
            .is_some_and(|only| !only.contains(&operation))
        {
            return None;
        }
        let mut rng = plan
            .shared
            .rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        plan.faults
            .iter()
            .find(|(_, rate)| rng.f64() < *rate)
            .map(|(fault, _)| *fault)
    }

    fn error(&self, call: &Call<'_>, what: &'static str) -> Error {
        Error::backend(call.store, call.operation, call.key, Injected(what)).with_transient(true)
    }
}

impl Intercept for FaultsBackend {
    fn inner(&self) -> &dyn Backend {
        &*self.inner
    }

    async fn intercept<'a, T: Answer + 'a>(
        &'a self,
        call: Call<'a>,
        run: CallFuture<'a, T>,
    ) -> Result<T> {
        let Some(fault) = self.draw(call.operation) else {
            return run.await;
        };
        self.plan.shared.injected.fetch_add(1, Ordering::Relaxed);
        match fault {
            Fault::Fail => Err(self.error(&call, "the store could not be reached")),
            Fault::LoseReply => {
                // Applied, whatever it answered; the answer is what gets lost.
                let _ = run.await;
                Err(self.error(&call, "the store's reply was lost"))
            }
            Fault::Delay(pause) => {
                tokio::time::sleep(pause).await;
                run.await
            }
            Fault::Hang => std::future::pending().await,
        }
    }
}
