//! A layer that treats every call alike: one method instead of eleven.

use std::fmt::{self, Debug};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::Forward;
use crate::{Backend, Condition, Result, ScanCursor, ScanOptions, ScanPage, Ttl};

/// A store call as a layer sees it before it runs.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct Call<'a> {
    /// The store's [`name`](Backend::name): `memory`, `sqlite`, `redis`, `postgres`, …
    pub store: &'static str,
    /// The [`Backend`] method: `get`, `get_many`, `set`, `set_many`, `delete`, `delete_many`,
    /// `contains`, `expire_in`, `ttl`, `clear_prefix`, `take`, `take_many`, `get_with_ttl`,
    /// `get_many_with_ttl`, `scan`, `count_prefix`, `purge_expired`, `incr` or `close`.
    pub operation: &'static str,
    /// How many keys the call names: 1 for single-key calls, the batch's length for batches,
    /// 0 for `clear_prefix`, `scan`, `count_prefix`, `purge_expired` and `close`.
    pub keys: usize,
    /// The key (a full store key, prefix included), for single-key calls. Whoever shows keys
    /// should hash them or leave them out unless told otherwise: keys can be personal data.
    pub key: Option<&'a str>,
}

/// The future of a store call, as [`Intercept::intercept`] receives it.
pub type CallFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// What a store call answers: a value, values, a flag, a count, a TTL or nothing.
pub trait Answer: Send {
    /// For reads of values (`get`, `get_many`): how many of the keys had one.
    fn hits(&self) -> Option<usize> {
        None
    }
}

impl Answer for Option<Bytes> {
    fn hits(&self) -> Option<usize> {
        Some(usize::from(self.is_some()))
    }
}

impl Answer for Vec<Option<Bytes>> {
    fn hits(&self) -> Option<usize> {
        Some(self.iter().filter(|value| value.is_some()).count())
    }
}

impl Answer for Option<(Bytes, Ttl)> {
    fn hits(&self) -> Option<usize> {
        Some(usize::from(self.is_some()))
    }
}

impl Answer for Vec<Option<(Bytes, Ttl)>> {
    fn hits(&self) -> Option<usize> {
        Some(self.iter().filter(|value| value.is_some()).count())
    }
}

impl Answer for bool {}
impl Answer for u64 {}
impl Answer for i64 {}
impl Answer for () {}
impl Answer for Option<Ttl> {}
impl Answer for ScanPage {}

/// A layer that does the same around every call (a deadline, a fault, an observation): it
/// writes [`Intercept::intercept`] once, and [`Intercepted`] makes it a store. A layer that
/// treats calls differently (a retry that must not repeat a `delete`) implements [`Forward`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> cache_core::Result<()> {
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use cache_core::raw::{Answer, Call, CallFuture, Intercept, Intercepted, layer_fn};
/// use cache_core::{Backend, Cache, Result, testing::ReferenceBackend};
///
/// /// Counts every store call.
/// #[derive(Debug)]
/// struct Count { inner: Arc<dyn Backend>, calls: Arc<AtomicU64> }
///
/// impl Intercept for Count {
///     fn inner(&self) -> &dyn Backend { &*self.inner }
///
///     async fn intercept<'a, T: Answer + 'a>(&'a self, _: Call<'a>, run: CallFuture<'a, T>)
///         -> Result<T> {
///         self.calls.fetch_add(1, Ordering::Relaxed);
///         run.await
///     }
/// }
///
/// let calls = Arc::new(AtomicU64::new(0));
/// let counter = Arc::clone(&calls);
/// let cache: Cache<u8> = Cache::builder(Arc::new(ReferenceBackend::default()))
///     .layer(layer_fn(move |inner| {
///         Arc::new(Intercepted(Count { inner, calls: Arc::clone(&counter) })) as Arc<dyn Backend>
///     }))
///     .build();
/// cache.set_many([("a", &1), ("b", &2)]).await?;
/// cache.get_many(["a", "b"]).await?;
/// assert_eq!(calls.load(Ordering::Relaxed), 2); // one call per batch
/// # Ok(()) }
/// ```
pub trait Intercept: Debug + Send + Sync + 'static {
    /// The store this one wraps.
    fn inner(&self) -> &dyn Backend;

    /// Runs `run`, the inner store's answer to `call`, with whatever the layer adds.
    fn intercept<'a, T: Answer + 'a>(
        &'a self,
        call: Call<'a>,
        run: CallFuture<'a, T>,
    ) -> impl Future<Output = Result<T>> + Send + 'a;
}

/// An [`Intercept`] as a store: every call goes through `intercept`.
pub struct Intercepted<I>(pub I);

impl<I: Debug> Debug for Intercepted<I> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<I: Intercept> Intercepted<I> {
    fn call<'a>(&self, operation: &'static str, keys: usize, key: Option<&'a str>) -> Call<'a> {
        Call {
            store: self.0.inner().name(),
            operation,
            keys,
            key,
        }
    }
}

#[async_trait]
impl<I: Intercept> Forward for Intercepted<I> {
    fn inner(&self) -> &dyn Backend {
        self.0.inner()
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let call = self.call("get", 1, Some(key));
        self.0.intercept(call, self.0.inner().get(key)).await
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        let call = self.call("get_many", keys.len(), None);
        self.0.intercept(call, self.0.inner().get_many(keys)).await
    }

    async fn set(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        condition: Condition,
    ) -> Result<bool> {
        let call = self.call("set", 1, Some(key));
        let run = self.0.inner().set(key, value, ttl, condition);
        self.0.intercept(call, run).await
    }

    async fn set_many(&self, entries: Vec<(String, Bytes)>, ttl: Option<Duration>) -> Result<()> {
        let call = self.call("set_many", entries.len(), None);
        let run = self.0.inner().set_many(entries, ttl);
        self.0.intercept(call, run).await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        let call = self.call("delete", 1, Some(key));
        self.0.intercept(call, self.0.inner().delete(key)).await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<u64> {
        let call = self.call("delete_many", keys.len(), None);
        self.0
            .intercept(call, self.0.inner().delete_many(keys))
            .await
    }

    async fn contains(&self, key: &str) -> Result<bool> {
        let call = self.call("contains", 1, Some(key));
        self.0.intercept(call, self.0.inner().contains(key)).await
    }

    async fn expire_in(&self, key: &str, ttl: Option<Duration>) -> Result<bool> {
        let call = self.call("expire_in", 1, Some(key));
        self.0
            .intercept(call, self.0.inner().expire_in(key, ttl))
            .await
    }

    async fn ttl(&self, key: &str) -> Result<Option<Ttl>> {
        let call = self.call("ttl", 1, Some(key));
        self.0.intercept(call, self.0.inner().ttl(key)).await
    }

    async fn clear_prefix(&self, prefix: &str) -> Result<u64> {
        let call = self.call("clear_prefix", 0, None);
        self.0
            .intercept(call, self.0.inner().clear_prefix(prefix))
            .await
    }

    async fn take(&self, key: &str) -> Result<Option<Bytes>> {
        let call = self.call("take", 1, Some(key));
        self.0.intercept(call, self.0.inner().take(key)).await
    }

    async fn take_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        let call = self.call("take_many", keys.len(), None);
        self.0.intercept(call, self.0.inner().take_many(keys)).await
    }

    async fn get_with_ttl(&self, key: &str) -> Result<Option<(Bytes, Ttl)>> {
        let call = self.call("get_with_ttl", 1, Some(key));
        self.0
            .intercept(call, self.0.inner().get_with_ttl(key))
            .await
    }

    async fn get_many_with_ttl(&self, keys: &[String]) -> Result<Vec<Option<(Bytes, Ttl)>>> {
        let call = self.call("get_many_with_ttl", keys.len(), None);
        self.0
            .intercept(call, self.0.inner().get_many_with_ttl(keys))
            .await
    }

    async fn scan(
        &self,
        prefix: &str,
        cursor: ScanCursor,
        options: ScanOptions,
    ) -> Result<ScanPage> {
        let call = self.call("scan", 0, None);
        self.0
            .intercept(call, self.0.inner().scan(prefix, cursor, options))
            .await
    }

    async fn count_prefix(&self, prefix: &str) -> Result<u64> {
        let call = self.call("count_prefix", 0, None);
        self.0
            .intercept(call, self.0.inner().count_prefix(prefix))
            .await
    }

    async fn purge_expired(&self) -> Result<u64> {
        let call = self.call("purge_expired", 0, None);
        self.0.intercept(call, self.0.inner().purge_expired()).await
    }

    async fn incr(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        let call = self.call("incr", 1, Some(key));
        self.0
            .intercept(call, self.0.inner().incr(key, delta, ttl))
            .await
    }

    async fn acquire_lease(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        let call = self.call("acquire_lease", 1, Some(key));
        self.0
            .intercept(call, self.0.inner().acquire_lease(key, token, ttl))
            .await
    }

    async fn renew_lease(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        let call = self.call("renew_lease", 1, Some(key));
        self.0
            .intercept(call, self.0.inner().renew_lease(key, token, ttl))
            .await
    }

    async fn release_lease(&self, key: &str, token: &str) -> Result<bool> {
        let call = self.call("release_lease", 1, Some(key));
        self.0
            .intercept(call, self.0.inner().release_lease(key, token))
            .await
    }

    async fn close(&self) -> Result<()> {
        let call = self.call("close", 0, None);
        self.0.intercept(call, self.0.inner().close()).await
    }
}
