//! The layer seam: a store that wraps a store and forwards what it does not change.

use std::fmt::{self, Debug};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{Backend, Condition, Result, ScanCursor, ScanOptions, ScanPage, Ttl};

/// Wraps a store in another store: tower's one-method `Layer`, over the `Arc<dyn Backend>`
/// everything above a store holds, so that layers stack at run time over whatever store a URL
/// chose. [`CacheBuilder::layer`](crate::CacheBuilder::layer) applies them; the last layer
/// given is the outermost, the first one a call goes through.
///
/// The wrapping store is usually a [`Forward`] implementation: see its example.
pub trait Layer: Send + Sync + 'static {
    /// `inner`, wrapped.
    fn layer(&self, inner: Arc<dyn Backend>) -> Arc<dyn Backend>;
}

impl<L: Layer + ?Sized> Layer for Arc<L> {
    fn layer(&self, inner: Arc<dyn Backend>) -> Arc<dyn Backend> {
        (**self).layer(inner)
    }
}

/// A [`Layer`] made of a function, for one-off wrappers: see [`layer_fn`].
#[derive(Clone)]
pub struct LayerFn<F>(F);

impl<F> Debug for LayerFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LayerFn")
    }
}

/// A [`Layer`] that calls `wrap` on the inner store.
pub fn layer_fn<F>(wrap: F) -> LayerFn<F>
where
    F: Fn(Arc<dyn Backend>) -> Arc<dyn Backend> + Send + Sync + 'static,
{
    LayerFn(wrap)
}

impl<F> Layer for LayerFn<F>
where
    F: Fn(Arc<dyn Backend>) -> Arc<dyn Backend> + Send + Sync + 'static,
{
    fn layer(&self, inner: Arc<dyn Backend>) -> Arc<dyn Backend> {
        (self.0)(inner)
    }
}

/// A store that wraps another: opendal's `LayeredAccess`. Every method defaults to the same
/// call on [`Forward::inner`], batches included, and every `Forward` is a [`Backend`]; so a
/// layer overrides only what it changes and cannot lose a batch's single round trip or
/// `set_many`'s atomicity by forgetting a method.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> cache_core::Result<()> {
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use cache_core::{Backend, Bytes, Cache, Result, async_trait, raw::{Forward, layer_fn}};
/// use cache_core::testing::ReferenceBackend;
///
/// /// Counts single-key reads that found nothing; everything else passes through unchanged.
/// #[derive(Debug)]
/// struct CountMisses { inner: Arc<dyn Backend>, misses: Arc<AtomicU64> }
///
/// #[async_trait]
/// impl Forward for CountMisses {
///     fn inner(&self) -> &dyn Backend { &*self.inner }
///
///     async fn get(&self, key: &str) -> Result<Option<Bytes>> {
///         let value = self.inner.get(key).await?;
///         if value.is_none() {
///             self.misses.fetch_add(1, Ordering::Relaxed);
///         }
///         Ok(value)
///     }
/// }
///
/// let misses = Arc::new(AtomicU64::new(0));
/// let counter = Arc::clone(&misses);
/// let cache: Cache<u32> = Cache::builder(Arc::new(ReferenceBackend::default()))
///     .layer(layer_fn(move |inner| {
///         Arc::new(CountMisses { inner, misses: Arc::clone(&counter) }) as Arc<dyn Backend>
///     }))
///     .build();
///
/// assert_eq!(cache.get("a").await?, None);
/// cache.set_many([("a", &1), ("b", &2)]).await?; // still one atomic batch below the layer
/// assert_eq!(cache.get("a").await?, Some(1));
/// assert_eq!(misses.load(Ordering::Relaxed), 1);
/// # Ok(()) }
/// ```
#[async_trait]
pub trait Forward: Debug + Send + Sync + 'static {
    /// The store this one wraps.
    fn inner(&self) -> &dyn Backend;

    /// See [`Backend::name`]. Default: the inner store's name, so that errors and metrics name
    /// the real store.
    fn name(&self) -> &'static str {
        self.inner().name()
    }

    /// See [`Backend::get`].
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.inner().get(key).await
    }

    /// See [`Backend::get_many`].
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        self.inner().get_many(keys).await
    }

    /// See [`Backend::set`].
    async fn set(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        condition: Condition,
    ) -> Result<bool> {
        self.inner().set(key, value, ttl, condition).await
    }

    /// See [`Backend::set_many`].
    async fn set_many(&self, entries: Vec<(String, Bytes)>, ttl: Option<Duration>) -> Result<()> {
        self.inner().set_many(entries, ttl).await
    }

    /// See [`Backend::delete`].
    async fn delete(&self, key: &str) -> Result<bool> {
        self.inner().delete(key).await
    }

    /// See [`Backend::delete_many`].
    async fn delete_many(&self, keys: &[String]) -> Result<u64> {
        self.inner().delete_many(keys).await
    }

    /// See [`Backend::contains`].
    async fn contains(&self, key: &str) -> Result<bool> {
        self.inner().contains(key).await
    }

    /// See [`Backend::expire_in`].
    async fn expire_in(&self, key: &str, ttl: Option<Duration>) -> Result<bool> {
        self.inner().expire_in(key, ttl).await
    }

    /// See [`Backend::ttl`].
    async fn ttl(&self, key: &str) -> Result<Option<Ttl>> {
        self.inner().ttl(key).await
    }

    /// See [`Backend::clear_prefix`].
    async fn clear_prefix(&self, prefix: &str) -> Result<u64> {
        self.inner().clear_prefix(prefix).await
    }

    /// See [`Backend::take`].
    async fn take(&self, key: &str) -> Result<Option<Bytes>> {
        self.inner().take(key).await
    }

    /// See [`Backend::take_many`].
    async fn take_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        self.inner().take_many(keys).await
    }

    /// See [`Backend::get_with_ttl`].
    async fn get_with_ttl(&self, key: &str) -> Result<Option<(Bytes, Ttl)>> {
        self.inner().get_with_ttl(key).await
    }

    /// See [`Backend::get_many_with_ttl`].
    async fn get_many_with_ttl(&self, keys: &[String]) -> Result<Vec<Option<(Bytes, Ttl)>>> {
        self.inner().get_many_with_ttl(keys).await
    }

    /// See [`Backend::scan`].
    async fn scan(
        &self,
        prefix: &str,
        cursor: ScanCursor,
        options: ScanOptions,
    ) -> Result<ScanPage> {
        self.inner().scan(prefix, cursor, options).await
    }

    /// See [`Backend::count_prefix`].
    async fn count_prefix(&self, prefix: &str) -> Result<u64> {
        self.inner().count_prefix(prefix).await
    }

    /// See [`Backend::purge_expired`].
    async fn purge_expired(&self) -> Result<u64> {
        self.inner().purge_expired().await
    }

    /// See [`Backend::incr`].
    async fn incr(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        self.inner().incr(key, delta, ttl).await
    }

    /// See [`Backend::invalidation_bus`].
    fn invalidation_bus(&self) -> Option<Arc<crate::raw::invalidation::InvalidationBus>> {
        self.inner().invalidation_bus()
    }

    /// See [`Backend::acquire_lease`].
    async fn acquire_lease(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        self.inner().acquire_lease(key, token, ttl).await
    }

    /// See [`Backend::renew_lease`].
    async fn renew_lease(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        self.inner().renew_lease(key, token, ttl).await
    }

    /// See [`Backend::release_lease`].
    async fn release_lease(&self, key: &str, token: &str) -> Result<bool> {
        self.inner().release_lease(key, token).await
    }

    /// See [`Backend::close`].
    async fn close(&self) -> Result<()> {
        self.inner().close().await
    }
}

/// The future every `Backend` method returns (what `async_trait` makes of an `async fn`).
type Boxed<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

// Written out rather than with `#[async_trait]`, which would box `Forward`'s boxed future once
// more: each method hands on the future `Forward` made, so a layer costs one allocation per
// call, not two.
impl<T: Forward> Backend for T {
    fn name(&self) -> &'static str {
        Forward::name(self)
    }

    fn get<'s, 'k, 'a>(&'s self, key: &'k str) -> Boxed<'a, Option<Bytes>>
    where
        's: 'a,
        'k: 'a,
        Self: 'a,
    {
        Forward::get(self, key)
    }

    fn get_many<'s, 'k, 'a>(&'s self, keys: &'k [String]) -> Boxed<'a, Vec<Option<Bytes>>>
    where
        's: 'a,
        'k: 'a,
        Self: 'a,
    {
        Forward::get_many(self, keys)
    }

    fn set<'s, 'k, 'a>(
        &'s self,
        key: &'k str,
        value: Bytes,
        ttl: Option<Duration>,
        condition: Condition,
    ) -> Boxed<'a, bool>
    where
        's: 'a,
        'k: 'a,
        Self: 'a,
    {
        Forward::set(self, key, value, ttl, condition)
    }

    fn set_many<'s, 'a>(
        &'s self,
        entries: Vec<(String, Bytes)>,
        ttl: Option<Duration>,
    ) -> Boxed<'a, ()>
    where
        's: 'a,
        Self: 'a,
    {
        Forward::set_many(self, entries, ttl)
    }

    fn delete<'s, 'k, 'a>(&'s self, key: &'k str) -> Boxed<'a, bool>
    where
        's: 'a,
        'k: 'a,
        Self: 'a,
    {
        Forward::delete(self, key)
    }

    fn delete_many<'s, 'k, 'a>(&'s self, keys: &'k [String]) -> Boxed<'a, u64>
    where
        's: 'a,
        'k: 'a,
        Self: 'a,
    {
        Forward::delete_many(self, keys)
    }

    fn contains<'s, 'k, 'a>(&'s self, key: &'k str) -> Boxed<'a, bool>
    where
        's: 'a,
        'k: 'a,
        Self: 'a,
    {
        Forward::contains(self, key)
    }

    fn expire_in<'s, 'k, 'a>(&'s self, key: &'k str, ttl: Option<Duration>) -> Boxed<'a, bool>
    where
        's: 'a,
        'k: 'a,
        Self: 'a,
    {
        Forward::expire_in(self, key, ttl)
    }

    fn ttl<'s, 'k, 'a>(&'s self, key: &'k str) -> Boxed<'a, Option<Ttl>>
    where
        's: 'a,
        'k: 'a,
        Self: 'a,
    {
        Forward::ttl(self, key)
    }

    fn clear_prefix<'s, 'k, 'a>(&'s self, prefix: &'k str) -> Boxed<'a, u64>
    where
        's: 'a,
        'k: 'a,
        Self: 'a,
    {
        Forward::clear_prefix(self, prefix)
    }

    fn take<'s, 'k, 'a>(&'s self, key: &'k str) -> Boxed<'a, Option<Bytes>>
    where
        's: 'a,
        'k: 'a,
        Self: 'a,
    {
        Forward::take(self, key)
    }

    fn take_many<'s, 'k, 'a>(&'s self, keys: &'k [String]) -> Boxed<'a, Vec<Option<Bytes>>>
    where
        's: 'a,
        'k: 'a,
        Self: 'a,
    {
        Forward::take_many(self, keys)
    }

    fn get_with_ttl<'s, 'k, 'a>(&'s self, key: &'k str) -> Boxed<'a, Option<(Bytes, Ttl)>>
    where
        's: 'a,
        'k: 'a,
        Self: 'a,
    {
        Forward::get_with_ttl(self, key)
    }

    fn get_many_with_ttl<'s, 'k, 'a>(
        &'s self,
        keys: &'k [String],
    ) -> Boxed<'a, Vec<Option<(Bytes, Ttl)>>>
    where
        's: 'a,
        'k: 'a,
        Self: 'a,
    {
        Forward::get_many_with_ttl(self, keys)
    }

    fn scan<'s, 'k, 'a>(
        &'s self,
        prefix: &'k str,
        cursor: ScanCursor,
        options: ScanOptions,
    ) -> Boxed<'a, ScanPage>
    where
        's: 'a,
        'k: 'a,
        Self: 'a,
    {
        Forward::scan(self, prefix, cursor, options)
    }

    fn count_prefix<'s, 'k, 'a>(&'s self, prefix: &'k str) -> Boxed<'a, u64>
    where
        's: 'a,
        'k: 'a,
        Self: 'a,
    {
        Forward::count_prefix(self, prefix)
    }

    fn purge_expired<'s, 'a>(&'s self) -> Boxed<'a, u64>
    where
        's: 'a,
        Self: 'a,
    {
        Forward::purge_expired(self)
    }

    fn incr<'s, 'k, 'a>(&'s self, key: &'k str, delta: i64, ttl: Option<Duration>) -> Boxed<'a, i64>
    where
        's: 'a,
        'k: 'a,
        Self: 'a,
    {
        Forward::incr(self, key, delta, ttl)
    }

    fn acquire_lease<'s, 'k, 't, 'a>(
        &'s self,
        key: &'k str,
        token: &'t str,
        ttl: Duration,
    ) -> Boxed<'a, bool>
    where
        's: 'a,
        'k: 'a,
        't: 'a,
        Self: 'a,
    {
        Forward::acquire_lease(self, key, token, ttl)
    }

    fn renew_lease<'s, 'k, 't, 'a>(
        &'s self,
        key: &'k str,
        token: &'t str,
        ttl: Duration,
    ) -> Boxed<'a, bool>
    where
        's: 'a,
        'k: 'a,
        't: 'a,
        Self: 'a,
    {
        Forward::renew_lease(self, key, token, ttl)
    }

    fn release_lease<'s, 'k, 't, 'a>(&'s self, key: &'k str, token: &'t str) -> Boxed<'a, bool>
    where
        's: 'a,
        'k: 'a,
        't: 'a,
        Self: 'a,
    {
        Forward::release_lease(self, key, token)
    }

    fn close<'s, 'a>(&'s self) -> Boxed<'a, ()>
    where
        's: 'a,
        Self: 'a,
    {
        Forward::close(self)
    }

    fn invalidation_bus(&self) -> Option<Arc<crate::raw::invalidation::InvalidationBus>> {
        Forward::invalidation_bus(self)
    }
}
