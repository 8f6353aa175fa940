//! The typed cache a facade case drives: the async [`Cache`], or, with the `blocking` feature
//! and a context made by [`Ctx::through_blocking`](super::Ctx::through_blocking), its blocking
//! twin called from a plain thread of its own, as a program without an async runtime calls it.
//! The cases are written once, against the async verbs; this adapter is all the blocking
//! facade needs to run them.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use futures_util::Stream;

use crate::{BoxError, Cache, Entry, Loaded, Result, SetOptions, Ttl};

/// A stream of a walk, whichever facade made it.
pub type WalkStream<'c, T> = Pin<Box<dyn Stream<Item = Result<T>> + Send + 'c>>;

/// The cache under test: see the module's docs.
pub struct CacheUnderTest<V> {
    inner: Facade<V>,
}

enum Facade<V> {
    Async(Cache<V>),
    #[cfg(feature = "blocking")]
    Blocking(crate::blocking::Cache<V>),
}

impl<V> Clone for CacheUnderTest<V> {
    fn clone(&self) -> Self {
        Self {
            inner: match &self.inner {
                Facade::Async(cache) => Facade::Async(cache.clone()),
                #[cfg(feature = "blocking")]
                Facade::Blocking(cache) => Facade::Blocking(cache.clone()),
            },
        }
    }
}

impl<V> std::fmt::Debug for CacheUnderTest<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Facade::Async(cache) => cache.fmt(f),
            #[cfg(feature = "blocking")]
            Facade::Blocking(cache) => cache.fmt(f),
        }
    }
}

/// Runs `work` on a new plain thread, without a runtime, and waits for it without holding the
/// caller's worker; a panic goes on in the caller.
#[cfg(feature = "blocking")]
async fn on_a_thread<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let (sender, receiver) = tokio::sync::oneshot::channel();
    let started = std::thread::Builder::new()
        .name("conformance-blocking-caller".into())
        .spawn(move || {
            let _ = sender.send(std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)));
        });
    if let Err(error) = started {
        panic!("cannot start a thread for a blocking call: {error}");
    }
    match receiver.await {
        Ok(Ok(output)) => output,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        Err(_) => panic!("the blocking call's thread ended without an answer"),
    }
}

#[cfg(feature = "blocking")]
std::thread_local! {
    /// Whether this thread runs a blocking loader: the loader's own calls to the cache are made
    /// right there, as a plain closure calling the blocking cache makes them.
    static IN_A_LOADER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs a blocking call: right here inside a blocking loader, else on a thread of its own.
#[cfg(feature = "blocking")]
async fn blocking_call<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    if IN_A_LOADER.with(std::cell::Cell::get) {
        work()
    } else {
        on_a_thread(work).await
    }
}

/// An async loader as the blocking cache wants it: a plain closure, which the blocking cache
/// runs on a blocking thread of its runtime, where the loader's future is driven.
#[cfg(feature = "blocking")]
fn plain<F, Fut, T>(loader: F) -> impl FnOnce() -> T + Send + 'static
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = T>,
{
    move || {
        let before = IN_A_LOADER.with(|here| here.replace(true));
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            tokio::runtime::Handle::current().block_on(loader())
        }));
        IN_A_LOADER.with(|here| here.set(before));
        outcome.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

/// The key list of a call, owned.
fn owned<K: AsRef<str>>(keys: impl IntoIterator<Item = K>) -> Vec<String> {
    keys.into_iter()
        .map(|key| key.as_ref().to_owned())
        .collect()
}

/// One verb: the async arm awaits `$async`; the blocking arm runs `$blocking` on a thread of its
/// own, with `$cache` the blocking cache moved there and `$owned` the arguments it owns.
macro_rules! verb {
    ($self:ident, |$cache:ident| $async:expr, move ($($owned:ident),*) $blocking:expr) => {
        match &$self.inner {
            Facade::Async($cache) => $async.await,
            #[cfg(feature = "blocking")]
            Facade::Blocking($cache) => {
                let $cache = $cache.clone();
                blocking_call(move || {
                    $(let $owned = $owned;)*
                    $blocking
                })
                .await
            }
        }
    };
}

impl<V> CacheUnderTest<V>
where
    V: Clone + Send + Sync + 'static,
{
    pub(crate) fn new(cache: Cache<V>) -> Self {
        Self {
            inner: Facade::Async(cache),
        }
    }

    #[cfg(feature = "blocking")]
    pub(crate) fn blocking(cache: crate::blocking::Cache<V>) -> Self {
        Self {
            inner: Facade::Blocking(cache),
        }
    }

    /// See [`Cache::get`].
    pub async fn get(&self, key: &str) -> Result<Option<V>> {
        let key = key.to_owned();
        verb!(self, |cache| cache.get(&key), move (key) cache.get(&key))
    }

    /// See [`Cache::backend`].
    pub fn backend(&self) -> std::sync::Arc<dyn crate::Backend> {
        match &self.inner {
            Facade::Async(cache) => std::sync::Arc::clone(cache.backend()),
            #[cfg(feature = "blocking")]
            Facade::Blocking(cache) => std::sync::Arc::clone(cache.backend()),
        }
    }

    /// See [`Cache::get_arc`].
    pub async fn get_arc(&self, key: &str) -> Result<Option<std::sync::Arc<V>>> {
        let key = key.to_owned();
        verb!(self, |cache| cache.get_arc(&key), move (key) cache.get_arc(&key))
    }

    /// See [`Cache::get_many`].
    pub async fn get_many<K: AsRef<str>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<HashMap<String, V>> {
        let keys = owned(keys);
        verb!(self, |cache| cache.get_many(&keys), move (keys) cache.get_many(&keys))
    }

    /// See [`Cache::get_many_vec`].
    pub async fn get_many_vec<K: AsRef<str>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<Vec<Option<V>>> {
        let keys = owned(keys);
        verb!(self, |cache| cache.get_many_vec(&keys), move (keys) cache.get_many_vec(&keys))
    }

    /// See [`Cache::set`].
    pub async fn set(&self, key: &str, value: &V) -> Result<()> {
        let (key, value) = (key.to_owned(), value.clone());
        verb!(self, |cache| cache.set(&key, &value), move (key, value) cache.set(&key, &value))
    }

    /// See [`Cache::set_with`].
    pub async fn set_with(&self, key: &str, value: &V, options: SetOptions) -> Result<bool> {
        let (key, value) = (key.to_owned(), value.clone());
        verb!(
            self,
            |cache| cache.set_with(&key, &value, options),
            move (key, value, options) cache.set_with(&key, &value, options)
        )
    }

    /// See [`Cache::set_many`].
    pub async fn set_many<K: AsRef<str>, B: Borrow<V>>(
        &self,
        items: impl IntoIterator<Item = (K, B)>,
    ) -> Result<()> {
        self.set_many_with(items, SetOptions::new()).await
    }

    /// See [`Cache::set_many_with`].
    pub async fn set_many_with<K: AsRef<str>, B: Borrow<V>>(
        &self,
        items: impl IntoIterator<Item = (K, B)>,
        options: SetOptions,
    ) -> Result<()> {
        let items: Vec<(String, V)> = items
            .into_iter()
            .map(|(key, value)| (key.as_ref().to_owned(), value.borrow().clone()))
            .collect();
        verb!(
            self,
            |cache| cache.set_many_with(items.iter().map(|(key, value)| (key, value)), options),
            move (items, options) cache.set_many_with(items.iter().map(|(key, value)| (key, value)), options)
        )
    }

    /// See [`Cache::delete`].
    pub async fn delete(&self, key: &str) -> Result<bool> {
        let key = key.to_owned();
        verb!(self, |cache| cache.delete(&key), move (key) cache.delete(&key))
    }

    /// See [`Cache::delete_many`].
    pub async fn delete_many<K: AsRef<str>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<u64> {
        let keys = owned(keys);
        verb!(self, |cache| cache.delete_many(&keys), move (keys) cache.delete_many(&keys))
    }

    /// See [`Cache::contains`].
    pub async fn contains(&self, key: &str) -> Result<bool> {
        let key = key.to_owned();
        verb!(self, |cache| cache.contains(&key), move (key) cache.contains(&key))
    }

    /// See [`Cache::expire_in`].
    pub async fn expire_in(&self, key: &str, ttl: Option<Duration>) -> Result<bool> {
        let key = key.to_owned();
        verb!(self, |cache| cache.expire_in(&key, ttl), move (key) cache.expire_in(&key, ttl))
    }

    /// See [`Cache::ttl`].
    pub async fn ttl(&self, key: &str) -> Result<Option<Ttl>> {
        let key = key.to_owned();
        verb!(self, |cache| cache.ttl(&key), move (key) cache.ttl(&key))
    }

    /// See [`Cache::clear`].
    pub async fn clear(&self) -> Result<u64> {
        verb!(self, |cache| cache.clear(), move () cache.clear())
    }

    /// See [`Cache::take`].
    pub async fn take(&self, key: &str) -> Result<Option<V>> {
        let key = key.to_owned();
        verb!(self, |cache| cache.take(&key), move (key) cache.take(&key))
    }

    /// See [`Cache::take_many`].
    pub async fn take_many<K: AsRef<str>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<HashMap<String, V>> {
        let keys = owned(keys);
        verb!(self, |cache| cache.take_many(&keys), move (keys) cache.take_many(&keys))
    }

    /// See [`Cache::get_with_ttl`].
    pub async fn get_with_ttl(&self, key: &str) -> Result<Option<(V, Ttl)>> {
        let key = key.to_owned();
        verb!(self, |cache| cache.get_with_ttl(&key), move (key) cache.get_with_ttl(&key))
    }

    /// See [`Cache::get_many_with_ttl`].
    pub async fn get_many_with_ttl<K: AsRef<str>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<HashMap<String, (V, Ttl)>> {
        let keys = owned(keys);
        verb!(
            self,
            |cache| cache.get_many_with_ttl(&keys),
            move (keys) cache.get_many_with_ttl(&keys)
        )
    }

    /// See [`Cache::keys`]; the blocking facade's walk is driven to its end on a thread, then
    /// handed over.
    pub fn keys(&self) -> WalkStream<'_, String> {
        match &self.inner {
            Facade::Async(cache) => Box::pin(cache.keys()),
            #[cfg(feature = "blocking")]
            Facade::Blocking(cache) => {
                let cache = cache.clone();
                walked(blocking_call(move || cache.keys().collect()))
            }
        }
    }

    /// See [`Cache::entries`], and [`CacheUnderTest::keys`].
    pub fn entries(&self) -> WalkStream<'_, (String, V)> {
        match &self.inner {
            Facade::Async(cache) => Box::pin(cache.entries()),
            #[cfg(feature = "blocking")]
            Facade::Blocking(cache) => {
                let cache = cache.clone();
                walked(blocking_call(move || cache.entries().collect()))
            }
        }
    }

    /// See [`Cache::len`].
    pub async fn len(&self) -> Result<u64> {
        verb!(self, |cache| cache.len(), move () cache.len())
    }

    /// See [`Cache::incr`].
    pub async fn incr(&self, key: &str, delta: i64) -> Result<i64> {
        let key = key.to_owned();
        verb!(self, |cache| cache.incr(&key, delta), move (key) cache.incr(&key, delta))
    }

    /// See [`Cache::counter`].
    pub async fn counter(&self, key: &str) -> Result<Option<i64>> {
        let key = key.to_owned();
        verb!(self, |cache| cache.counter(&key), move (key) cache.counter(&key))
    }

    /// See [`Cache::invalidate_tags`].
    pub async fn invalidate_tags<T: AsRef<str>>(
        &self,
        tags: impl IntoIterator<Item = T>,
    ) -> Result<()> {
        let tags = owned(tags);
        verb!(self, |cache| cache.invalidate_tags(&tags), move (tags) cache.invalidate_tags(&tags))
    }

    /// See [`Cache::get_entry`].
    pub async fn get_entry(&self, key: &str) -> Result<Option<Entry<V>>> {
        let key = key.to_owned();
        verb!(self, |cache| cache.get_entry(&key), move (key) cache.get_entry(&key))
    }

    /// See [`Cache::lock`].
    pub async fn lock(&self, key: &str) -> Result<LockUnderTest<V>> {
        let key = key.to_owned();
        match &self.inner {
            Facade::Async(cache) => Ok(match cache.lock(&key).await? {
                crate::Lock::Found(value) => LockUnderTest::Found(value),
                crate::Lock::Held(guard) => LockUnderTest::Held(GuardUnderTest::Async(guard)),
            }),
            #[cfg(feature = "blocking")]
            Facade::Blocking(cache) => {
                let cache = cache.clone();
                Ok(match blocking_call(move || cache.lock(&key)).await? {
                    crate::blocking::Lock::Found(value) => LockUnderTest::Found(value),
                    crate::blocking::Lock::Held(guard) => {
                        LockUnderTest::Held(GuardUnderTest::Blocking(guard))
                    }
                })
            }
        }
    }

    /// See [`Cache::get_or_insert_with`].
    pub async fn get_or_insert_with<F, Fut, E>(&self, key: &str, loader: F) -> Result<V>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<V, E>> + Send + 'static,
        E: Into<BoxError> + Send + 'static,
    {
        let key = key.to_owned();
        verb!(
            self,
            |cache| cache.get_or_insert_with(&key, loader),
            move (key) cache.get_or_insert_with(&key, plain(loader))
        )
    }

    /// See [`Cache::get_or_refresh`].
    pub async fn get_or_refresh<F, Fut, L, E>(&self, key: &str, loader: F) -> Result<Option<V>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<L, E>> + Send + 'static,
        L: Into<Loaded<V>> + Send + 'static,
        E: Into<BoxError> + Send + 'static,
    {
        let key = key.to_owned();
        verb!(
            self,
            |cache| cache.get_or_refresh(&key, loader),
            move (key) cache.get_or_refresh(&key, plain(loader))
        )
    }

    /// See [`Cache::refresh`].
    pub async fn refresh<F, Fut, L, E>(&self, key: &str, loader: F) -> Result<Option<V>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<L, E>> + Send + 'static,
        L: Into<Loaded<V>> + Send + 'static,
        E: Into<BoxError> + Send + 'static,
    {
        let key = key.to_owned();
        verb!(
            self,
            |cache| cache.refresh(&key, loader),
            move (key) cache.refresh(&key, plain(loader))
        )
    }

    /// See [`Cache::get_many_or_refresh`].
    pub async fn get_many_or_refresh<K, F, Fut, L, E>(
        &self,
        keys: impl IntoIterator<Item = K>,
        loader: F,
    ) -> Result<HashMap<String, V>>
    where
        K: AsRef<str>,
        F: Fn(Vec<String>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<HashMap<String, L>, E>> + Send + 'static,
        L: Into<Loaded<V>> + Send + 'static,
        E: Into<BoxError> + Send + 'static,
    {
        let keys = owned(keys);
        verb!(
            self,
            |cache| cache.get_many_or_refresh(&keys, loader),
            move (keys) cache.get_many_or_refresh(&keys, move |missing| {
                let loader = loader.clone();
                plain(move || loader(missing))()
            })
        )
    }
}

/// What [`CacheUnderTest::lock`] gives, whichever facade made it.
#[derive(Debug)]
pub enum LockUnderTest<V> {
    /// The value.
    Found(V),
    /// The lock.
    Held(GuardUnderTest<V>),
}

/// A lock guard of the facade under test.
#[derive(Debug)]
pub enum GuardUnderTest<V> {
    /// The async cache's.
    Async(crate::LockGuard<V>),
    /// The blocking cache's.
    #[cfg(feature = "blocking")]
    Blocking(crate::blocking::LockGuard<V>),
}

impl<V: Clone + Send + Sync + 'static> GuardUnderTest<V> {
    /// See [`crate::LockGuard::set_with`].
    pub async fn set_with(self, value: &V, options: SetOptions) -> Result<()> {
        match self {
            Self::Async(guard) => guard.set_with(value, options).await,
            #[cfg(feature = "blocking")]
            Self::Blocking(guard) => {
                let value = value.clone();
                blocking_call(move || guard.set_with(&value, options)).await
            }
        }
    }

    /// See [`crate::LockGuard::set`].
    pub async fn set(self, value: &V) -> Result<()> {
        self.set_with(value, SetOptions::new()).await
    }
}

/// The items of a blocking walk, driven on a thread, as a stream.
#[cfg(feature = "blocking")]
fn walked<'c, T: Send + 'static>(
    items: impl Future<Output = Vec<Result<T>>> + Send + 'c,
) -> WalkStream<'c, T> {
    use futures_util::StreamExt;
    Box::pin(futures_util::stream::once(items).flat_map(futures_util::stream::iter))
}
