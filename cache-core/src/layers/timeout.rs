//! A deadline per call.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::raw::{Forward, Layer};
use crate::{Backend, Condition, Error, Result, Ttl};

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
        Arc::new(TimeoutBackend {
            inner,
            deadline: self.deadline,
        })
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

impl TimeoutBackend {
    async fn within<T>(
        &self,
        operation: &'static str,
        key: Option<&str>,
        call: impl Future<Output = Result<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.deadline, call).await {
            Ok(result) => result,
            Err(_) => {
                Err(
                    Error::backend(self.inner.name(), operation, key, TimedOut(self.deadline))
                        .with_transient(true),
                )
            }
        }
    }
}

#[async_trait]
impl Forward for TimeoutBackend {
    fn inner(&self) -> &dyn Backend {
        &*self.inner
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.within("get", Some(key), self.inner.get(key)).await
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        self.within("get_many", None, self.inner.get_many(keys))
            .await
    }

    async fn set(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        condition: Condition,
    ) -> Result<bool> {
        let call = self.inner.set(key, value, ttl, condition);
        self.within("set", Some(key), call).await
    }

    async fn set_many(&self, entries: Vec<(String, Bytes)>, ttl: Option<Duration>) -> Result<()> {
        self.within("set_many", None, self.inner.set_many(entries, ttl))
            .await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        self.within("delete", Some(key), self.inner.delete(key))
            .await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<u64> {
        self.within("delete_many", None, self.inner.delete_many(keys))
            .await
    }

    async fn contains(&self, key: &str) -> Result<bool> {
        self.within("contains", Some(key), self.inner.contains(key))
            .await
    }

    async fn expire_in(&self, key: &str, ttl: Option<Duration>) -> Result<bool> {
        self.within("expire_in", Some(key), self.inner.expire_in(key, ttl))
            .await
    }

    async fn ttl(&self, key: &str) -> Result<Option<Ttl>> {
        self.within("ttl", Some(key), self.inner.ttl(key)).await
    }

    async fn clear_prefix(&self, prefix: &str) -> Result<u64> {
        self.within("clear_prefix", None, self.inner.clear_prefix(prefix))
            .await
    }

    async fn close(&self) -> Result<()> {
        self.within("close", None, self.inner.close()).await
    }
}
