//! A deadline per call.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::raw::{Answer, Call, CallFuture, Intercept, Intercepted, Layer};
use crate::{Backend, Error, Result};

/// Gives every call a deadline. A call that has not finished by then fails with a transient
/// [`Error::Backend`] naming the store, the operation and the key; the call is dropped, so a
/// write may or may not have reached the store (as when a server goes away mid-call).
///
/// Stores have deadlines of their own (Redis's `response_timeout`, PostgreSQL's
/// `statement_timeout`); this one bounds the whole call, layers below it included, and gives
/// each attempt of a [`Retry`](super::Retry) stacked outside it its own deadline.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> cache_core::Result<()> {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use cache_core::{Backend, Cache, layers::{Fault, Faults, Timeout}, testing::ReferenceBackend};
///
/// let silent = Faults::new(7).inject(Fault::Hang, 1.0); // a store that never answers
/// let cache: Cache<u8> = Cache::builder(Arc::new(ReferenceBackend::default()))
///     .layer(silent)
///     .layer(Timeout::new(Duration::from_millis(20)))
///     .build();
/// let error = cache.get("k").await.unwrap_err();
/// assert!(error.is_transient(), "{error}");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Timeout {
    deadline: Duration,
}

impl Timeout {
    /// A deadline of `deadline` for every call.
    pub fn new(deadline: Duration) -> Self {
        Self { deadline }
    }
}

impl Layer for Timeout {
    fn layer(&self, inner: Arc<dyn Backend>) -> Arc<dyn Backend> {
        Arc::new(Intercepted(TimeoutBackend {
            inner,
            deadline: self.deadline,
        }))
    }
}

#[derive(Debug)]
struct TimeoutBackend {
    inner: Arc<dyn Backend>,
    deadline: Duration,
}

/// The error a late call fails with: it says how long the call had.
#[derive(Debug)]
struct TimedOut(Duration);

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "no answer within the deadline of {:?}", self.0)
    }
}

impl std::error::Error for TimedOut {}

impl Intercept for TimeoutBackend {
    fn inner(&self) -> &dyn Backend {
        &*self.inner
    }

    async fn intercept<'a, T: Answer + 'a>(
        &'a self,
        call: Call<'a>,
        run: CallFuture<'a, T>,
    ) -> Result<T> {
        match tokio::time::timeout(self.deadline, run).await {
            Ok(result) => result,
            Err(_) => Err(Error::backend(
                call.store,
                call.operation,
                call.key,
                TimedOut(self.deadline),
            )
            .with_transient(true)),
        }
    }
}
