//! Bounded retries of transient failures.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::raw::{Forward, Layer};
use crate::{Backend, Condition, Result, Ttl};

/// Retries calls that fail with a [transient](crate::Error::is_transient) error, up to a number
/// of attempts in all, sleeping between them with exponential backoff and jitter. Any other
/// error, and the last attempt's error, reaches the caller unchanged.
///
/// Only calls whose answer a retry cannot falsify are retried: `get`, `get_many`, `contains`,
/// `ttl`, `get_with_ttl`, `get_many_with_ttl`, `count_prefix`, `set` with
/// [`Condition::Always`], `set_many`, and `expire_in` other than with a zero TTL. An attempt
/// that fails may still have reached the store, so the others are made once: a retried `delete`
/// would answer "was not there" for a key its first attempt removed, a retried
/// `set(if_not_exists)` "not written" for its own write, `delete_many`, `clear_prefix`,
/// `purge_expired` and `expire_in(Some(ZERO))` would miscount the same way, a retried `take`
/// or `incr` would take or count twice, and a `scan` page's cursor is spent by its attempt.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> cache_core::Result<()> {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use cache_core::{Cache, layers::{Fault, Faults, Retry}, testing::ReferenceBackend};
///
/// // Half of all calls fail before they reach the store; five attempts hide nearly all of it.
/// let flaky = Faults::new(42).inject(Fault::Fail, 0.5);
/// let cache: Cache<u8> = Cache::builder(Arc::new(ReferenceBackend::default()))
///     .layer(flaky)
///     .layer(Retry::new(8).backoff(Duration::from_millis(1), Duration::from_millis(5)))
///     .build();
/// cache.set("k", &1).await?;
/// assert_eq!(cache.get("k").await?, Some(1));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    attempts: u32,
    first_pause: Duration,
    max_pause: Duration,
}

impl Retry {
    /// Up to `attempts` attempts in all (at least one), with pauses from 10 ms doubling up to
    /// 1 s.
    pub fn new(attempts: u32) -> Self {
        Self {
            attempts: attempts.max(1),
            first_pause: Duration::from_millis(10),
            max_pause: Duration::from_secs(1),
        }
    }

    /// The pause after the first failed attempt, doubling after each further one up to `max`.
    /// Each pause is drawn at random from its upper half, so that many callers that failed
    /// together do not retry together.
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.first_pause = first;
        self.max_pause = max.max(first);
        self
    }

    /// The pause before attempt `attempt + 1` (1-based `attempt` failed).
    fn pause(&self, attempt: u32) -> Duration {
        let doubled = self
            .first_pause
            .saturating_mul(1 << (attempt - 1).min(30))
            .min(self.max_pause);
        let half = doubled / 2;
        half + half.mul_f64(fastrand::f64())
    }
}

impl Layer for Retry {
    fn layer(&self, inner: Arc<dyn Backend>) -> Arc<dyn Backend> {
        Arc::new(RetryBackend {
            inner,
            policy: *self,
        })
    }
}

#[derive(Debug)]
struct RetryBackend {
    inner: Arc<dyn Backend>,
    policy: Retry,
}

impl RetryBackend {
    async fn retried<T, F, Fut>(&self, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut attempt = 1;
        loop {
            match call().await {
                Err(error) if error.is_transient() && attempt < self.policy.attempts => {
                    tokio::time::sleep(self.policy.pause(attempt)).await;
                    attempt += 1;
                }
                outcome => return outcome,
            }
        }
    }
}

#[async_trait]
impl Forward for RetryBackend {
    fn inner(&self) -> &dyn Backend {
        &*self.inner
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.retried(|| self.inner.get(key)).await
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        self.retried(|| self.inner.get_many(keys)).await
    }

    async fn set(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        condition: Condition,
    ) -> Result<bool> {
        match condition {
            // Writing the same value again is harmless and answers `true` again.
            Condition::Always => {
                self.retried(|| self.inner.set(key, value.clone(), ttl, condition))
                    .await
            }
            // A retry would answer `false` for an attempt that wrote.
            Condition::IfNotExists => self.inner.set(key, value, ttl, condition).await,
        }
    }

    async fn set_many(&self, entries: Vec<(String, Bytes)>, ttl: Option<Duration>) -> Result<()> {
        if self.policy.attempts == 1 {
            return self.inner.set_many(entries, ttl).await;
        }
        let entries = Arc::new(entries);
        self.retried(|| self.inner.set_many(entries.as_ref().clone(), ttl))
            .await
    }

    async fn contains(&self, key: &str) -> Result<bool> {
        self.retried(|| self.inner.contains(key)).await
    }

    async fn expire_in(&self, key: &str, ttl: Option<Duration>) -> Result<bool> {
        if ttl == Some(Duration::ZERO) {
            // It removes the key: a retry would answer `false` for an attempt that removed it.
            return self.inner.expire_in(key, ttl).await;
        }
        self.retried(|| self.inner.expire_in(key, ttl)).await
    }

    async fn ttl(&self, key: &str) -> Result<Option<Ttl>> {
        self.retried(|| self.inner.ttl(key)).await
    }

    async fn get_with_ttl(&self, key: &str) -> Result<Option<(Bytes, Ttl)>> {
        self.retried(|| self.inner.get_with_ttl(key)).await
    }

    async fn get_many_with_ttl(&self, keys: &[String]) -> Result<Vec<Option<(Bytes, Ttl)>>> {
        self.retried(|| self.inner.get_many_with_ttl(keys)).await
    }

    async fn count_prefix(&self, prefix: &str) -> Result<u64> {
        self.retried(|| self.inner.count_prefix(prefix)).await
    }

    // `take`, `take_many` and `incr` are not repeated: an attempt that failed after the store
    // applied it would take or count twice. A `scan` page is not either: its cursor is spent.
}
