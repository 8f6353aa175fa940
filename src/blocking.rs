//! The cache for code without an async runtime: a CLI, a synchronous web framework, a build
//! script. reqwest's `blocking` module is the model.
//!
//! [`open`] starts a small runtime of the handle's own (two worker threads named
//! `cachette-blocking`) and opens the store on it: the Redis and PostgreSQL stores keep
//! connection tasks on the runtime that opens them. Every verb of the async
//! [`Cache`](crate::Cache) is here as a plain method, and loaders are plain closures.
//!
//! ```
//! use std::time::Duration;
//! use cachette::blocking;
//!
//! let store = blocking::open("memory://")?;
//! let cache: blocking::Cache<String> =
//!     store.cache_with(|builder| builder.prefix("greetings:").default_ttl(Duration::from_secs(60)));
//! cache.set("en", &"hello".to_string())?;
//! assert_eq!(cache.get("en")?.as_deref(), Some("hello"));
//! let loaded = cache.get_or_insert_with("fr", || Ok::<_, std::io::Error>("bonjour".to_string()))?;
//! assert_eq!(loaded, "bonjour");
//! # Ok::<(), cachette::Error>(())
//! ```
//!
//! # Inside an async runtime
//! Calls made from inside an async runtime do not panic and do not deadlock. On a
//! multi-threaded Tokio runtime (a worker, `spawn_blocking`, `#[tokio::main]`) the call runs
//! inside `block_in_place`, so the runtime hands the worker's other tasks to its other workers
//! meanwhile. On a current-thread runtime, which cannot lend its thread out, each call runs on
//! a thread of its own while the calling thread waits, and pays that thread's start. Either way
//! the calling thread is blocked for the call: in async code, use the async
//! [`Cache`](crate::Cache).
//!
//! # Shutting down
//! The runtime stops, without waiting, when the last [`Store`] and [`Cache`] sharing it are
//! dropped (anywhere, an async context included): its threads end once their current work does.
//! Background refreshes still running then are dropped.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use cache_core::{
    Backend, BoxError, CacheBuilder, Entry, Loaded, Result, Serializer, SetOptions, Ttl,
};
use futures_util::{Stream, StreamExt};
use serde::{Serialize, de::DeserializeOwned};

/// The runtime a blocking handle owns; it stops when the last handle goes.
struct Owner {
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Never blocks, so that dropping the last handle is fine in an async context too.
            runtime.shutdown_background();
        }
    }
}

impl Owner {
    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime
            .as_ref()
            .expect("the runtime is taken only when the owner is dropped")
    }

    /// Runs a store call to completion on this runtime, from any thread.
    fn call<T: Send>(&self, work: impl Future<Output = Result<T>> + Send) -> Result<T> {
        self.run(work)?
    }

    /// Runs `work` to completion on this runtime and returns its output, from any thread; an
    /// error only when no thread could be started for it.
    fn run<F>(&self, work: F) -> Result<F::Output>
    where
        F: Future + Send,
        F::Output: Send,
    {
        let runtime = self.runtime();
        let Ok(current) = tokio::runtime::Handle::try_current() else {
            return Ok(runtime.block_on(work));
        };
        if current.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread {
            // A worker gives its other tasks to the runtime's other workers for the call; a
            // thread of the runtime's blocking pool just runs it.
            return Ok(tokio::task::block_in_place(|| runtime.block_on(work)));
        }
        // A current-thread runtime cannot lend its thread out: the call runs on a thread of
        // its own while this one waits.
        let outcome = std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("cachette-blocking-call".into())
                .spawn_scoped(scope, || runtime.block_on(work))
                .map(|thread| thread.join())
        });
        match outcome {
            Ok(Ok(output)) => Ok(output),
            // The call itself panicked: the panic goes on in the caller, as it would inline.
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            Err(error) => Err(cache_core::Error::backend(
                "blocking",
                "call",
                None,
                format!("cannot start a thread for a call made inside an async runtime: {error}"),
            )
            .with_transient(true)),
        }
    }
}

/// A store opened for blocking use, with the runtime its calls run on.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    owner: Arc<Owner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

/// Opens the store a URL names (see [`crate::open`]) on a runtime of its own.
pub fn open(url: &str) -> Result<Store> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("cachette-blocking")
        .enable_all()
        .build()
        .map_err(|error| {
            cache_core::Error::config_with("cannot start the blocking runtime", error)
        })?;
    let owner = Arc::new(Owner {
        runtime: Some(runtime),
    });
    let backend = owner.call(crate::open(url))?;
    Ok(Store { backend, owner })
}

impl Store {
    /// The store, for the async API or for layers.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// A cache over this store with the default settings.
    pub fn cache<V>(&self) -> Cache<V>
    where
        V: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        self.cache_with(|builder| builder)
    }

    /// A cache over this store, built by `build` from the async [`CacheBuilder`] (prefix,
    /// default TTL, serializer, layers, freshness, tags…).
    pub fn cache_with<V, S>(
        &self,
        build: impl FnOnce(CacheBuilder<V>) -> CacheBuilder<V, S>,
    ) -> Cache<V>
    where
        V: Send + Sync + 'static,
        S: Serializer<V>,
    {
        Cache {
            inner: build(crate::Cache::builder(Arc::clone(&self.backend))).build(),
            owner: Arc::clone(&self.owner),
        }
    }

    /// Runs `work` on this handle's runtime, from any thread, and returns its output: for an
    /// async piece of code beside the blocking cache (the store's own async API, a layer's
    /// setup). It follows the same rules as every blocking call inside an async runtime; an
    /// error only when no thread could be started for it there.
    ///
    /// ```
    /// use cachette::{Backend, blocking};
    ///
    /// let store = blocking::open("memory://")?;
    /// let backend = std::sync::Arc::clone(store.backend());
    /// assert_eq!(store.block_on(async move { backend.count_prefix("").await })??, 0);
    /// # Ok::<(), cachette::Error>(())
    /// ```
    pub fn block_on<F>(&self, work: F) -> Result<F::Output>
    where
        F: Future + Send,
        F::Output: Send,
    {
        self.owner.run(work)
    }

    /// Closes the store (and every cache over it).
    pub fn close(&self) -> Result<()> {
        self.owner.call(self.backend.close())
    }
}

/// The blocking twin of the async [`Cache`](crate::Cache): the same verbs, each waiting for
/// its answer. Cloning is cheap; clones share the cache and the runtime.
pub struct Cache<V> {
    inner: crate::Cache<V>,
    owner: Arc<Owner>,
}

impl<V> Clone for Cache<V> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            owner: Arc::clone(&self.owner),
        }
    }
}

impl<V> std::fmt::Debug for Cache<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("blocking::Cache").field(&self.inner).finish()
    }
}

/// A plain closure as the async loaders want it: run on a blocking thread of the runtime, so
/// that a slow loader never holds a worker the store's connections need.
async fn off_the_workers<T, E, F>(loader: F) -> std::result::Result<T, BoxError>
where
    F: FnOnce() -> std::result::Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: Into<BoxError> + Send + 'static,
{
    match tokio::task::spawn_blocking(loader).await {
        Ok(outcome) => outcome.map_err(Into::into),
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => Err(Box::new(error)),
    }
}

impl<V> Cache<V>
where
    V: Clone + Send + Sync + 'static,
{
    /// The async cache this one drives, for code that has both.
    pub fn as_async(&self) -> &crate::Cache<V> {
        &self.inner
    }

    /// See [`crate::Cache::get`].
    pub fn get(&self, key: &str) -> Result<Option<V>> {
        self.owner.call(self.inner.get(key))
    }

    /// See [`crate::Cache::get_many`].
    pub fn get_many<K: AsRef<str> + Send>(
        &self,
        keys: impl IntoIterator<Item = K> + Send,
    ) -> Result<HashMap<String, V>> {
        self.owner.call(self.inner.get_many(keys))
    }

    /// See [`crate::Cache::set`].
    pub fn set(&self, key: &str, value: &V) -> Result<()> {
        self.owner.call(self.inner.set(key, value))
    }

    /// See [`crate::Cache::set_with`].
    pub fn set_with(&self, key: &str, value: &V, options: SetOptions) -> Result<bool> {
        self.owner.call(self.inner.set_with(key, value, options))
    }

    /// See [`crate::Cache::set_many`].
    pub fn set_many<'v, K: AsRef<str> + Send>(
        &self,
        items: impl IntoIterator<Item = (K, &'v V)> + Send,
    ) -> Result<()>
    where
        V: 'v,
    {
        self.owner.call(self.inner.set_many(items))
    }

    /// See [`crate::Cache::set_many_with`].
    pub fn set_many_with<'v, K: AsRef<str> + Send>(
        &self,
        items: impl IntoIterator<Item = (K, &'v V)> + Send,
        options: SetOptions,
    ) -> Result<()>
    where
        V: 'v,
    {
        self.owner.call(self.inner.set_many_with(items, options))
    }

    /// See [`crate::Cache::delete`].
    pub fn delete(&self, key: &str) -> Result<bool> {
        self.owner.call(self.inner.delete(key))
    }

    /// See [`crate::Cache::delete_many`].
    pub fn delete_many<K: AsRef<str> + Send>(
        &self,
        keys: impl IntoIterator<Item = K> + Send,
    ) -> Result<u64> {
        self.owner.call(self.inner.delete_many(keys))
    }

    /// See [`crate::Cache::contains`].
    pub fn contains(&self, key: &str) -> Result<bool> {
        self.owner.call(self.inner.contains(key))
    }

    /// See [`crate::Cache::expire_in`].
    pub fn expire_in(&self, key: &str, ttl: Option<Duration>) -> Result<bool> {
        self.owner.call(self.inner.expire_in(key, ttl))
    }

    /// See [`crate::Cache::ttl`].
    pub fn ttl(&self, key: &str) -> Result<Option<Ttl>> {
        self.owner.call(self.inner.ttl(key))
    }

    /// See [`crate::Cache::clear`].
    pub fn clear(&self) -> Result<u64> {
        self.owner.call(self.inner.clear())
    }

    /// See [`crate::Cache::close`].
    pub fn close(&self) -> Result<()> {
        self.owner.call(self.inner.close())
    }

    /// See [`crate::Cache::take`].
    pub fn take(&self, key: &str) -> Result<Option<V>> {
        self.owner.call(self.inner.take(key))
    }

    /// See [`crate::Cache::take_many`].
    pub fn take_many<K: AsRef<str> + Send>(
        &self,
        keys: impl IntoIterator<Item = K> + Send,
    ) -> Result<HashMap<String, V>> {
        self.owner.call(self.inner.take_many(keys))
    }

    /// See [`crate::Cache::get_with_ttl`].
    pub fn get_with_ttl(&self, key: &str) -> Result<Option<(V, Ttl)>> {
        self.owner.call(self.inner.get_with_ttl(key))
    }

    /// See [`crate::Cache::get_many_with_ttl`].
    pub fn get_many_with_ttl<K: AsRef<str> + Send>(
        &self,
        keys: impl IntoIterator<Item = K> + Send,
    ) -> Result<HashMap<String, (V, Ttl)>> {
        self.owner.call(self.inner.get_many_with_ttl(keys))
    }

    /// The cache's keys, read from the store a page at a time as the iterator is driven: see
    /// [`crate::Cache::keys`].
    pub fn keys(&self) -> Walk<'_, String> {
        Walk {
            stream: Box::pin(self.inner.keys()),
            owner: &self.owner,
        }
    }

    /// The cache's entries, read a page at a time: see [`crate::Cache::entries`].
    pub fn entries(&self) -> Walk<'_, (String, V)> {
        Walk {
            stream: Box::pin(self.inner.entries()),
            owner: &self.owner,
        }
    }

    /// See [`crate::Cache::len`].
    pub fn len(&self) -> Result<u64> {
        self.owner.call(self.inner.len())
    }

    /// See [`crate::Cache::is_empty`].
    pub fn is_empty(&self) -> Result<bool> {
        self.owner.call(self.inner.is_empty())
    }

    /// See [`crate::Cache::purge_expired`].
    pub fn purge_expired(&self) -> Result<u64> {
        self.owner.call(self.inner.purge_expired())
    }

    /// See [`crate::Cache::incr`].
    pub fn incr(&self, key: &str, delta: i64) -> Result<i64> {
        self.owner.call(self.inner.incr(key, delta))
    }

    /// See [`crate::Cache::incr_with_ttl`].
    pub fn incr_with_ttl(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        self.owner.call(self.inner.incr_with_ttl(key, delta, ttl))
    }

    /// See [`crate::Cache::counter`].
    pub fn counter(&self, key: &str) -> Result<Option<i64>> {
        self.owner.call(self.inner.counter(key))
    }

    /// See [`crate::Cache::invalidate_tags`].
    pub fn invalidate_tags<T: AsRef<str> + Send>(
        &self,
        tags: impl IntoIterator<Item = T> + Send,
    ) -> Result<()> {
        self.owner.call(self.inner.invalidate_tags(tags))
    }

    /// See [`crate::Cache::get_or_insert_with`]; `loader` is a plain closure, run on a
    /// blocking thread of the handle's runtime.
    pub fn get_or_insert_with<F, E>(&self, key: &str, loader: F) -> Result<V>
    where
        F: FnOnce() -> std::result::Result<V, E> + Send + 'static,
        E: Into<BoxError> + Send + 'static,
    {
        self.owner.call(
            self.inner
                .get_or_insert_with(key, move || off_the_workers(loader)),
        )
    }

    /// See [`crate::Cache::get_entry`].
    pub fn get_entry(&self, key: &str) -> Result<Option<Entry<V>>> {
        self.owner.call(self.inner.get_entry(key))
    }

    /// See [`crate::Cache::get_or_refresh`]: a stale value is served at once while `loader`
    /// refreshes it in the background, on the handle's runtime.
    pub fn get_or_refresh<F, L, E>(&self, key: &str, loader: F) -> Result<Option<V>>
    where
        F: FnOnce() -> std::result::Result<L, E> + Send + 'static,
        L: Into<Loaded<V>> + Send + 'static,
        E: Into<BoxError> + Send + 'static,
    {
        self.owner.call(
            self.inner
                .get_or_refresh(key, move || off_the_workers(loader)),
        )
    }

    /// See [`crate::Cache::refresh`].
    pub fn refresh<F, L, E>(&self, key: &str, loader: F) -> Result<Option<V>>
    where
        F: FnOnce() -> std::result::Result<L, E> + Send + 'static,
        L: Into<Loaded<V>> + Send + 'static,
        E: Into<BoxError> + Send + 'static,
    {
        self.owner
            .call(self.inner.refresh(key, move || off_the_workers(loader)))
    }

    /// See [`crate::Cache::get_many_or_refresh`]; `loader` gets the keys to load.
    pub fn get_many_or_refresh<K, F, L, E>(
        &self,
        keys: impl IntoIterator<Item = K> + Send,
        loader: F,
    ) -> Result<HashMap<String, V>>
    where
        K: AsRef<str> + Send,
        F: Fn(Vec<String>) -> std::result::Result<HashMap<String, L>, E>
            + Clone
            + Send
            + Sync
            + 'static,
        L: Into<Loaded<V>> + Send + 'static,
        E: Into<BoxError> + Send + 'static,
    {
        self.owner
            .call(self.inner.get_many_or_refresh(keys, move |missing| {
                let loader = loader.clone();
                off_the_workers(move || loader(missing))
            }))
    }
}

/// A walk of a cache's keys or entries, read from the store a page at a time.
pub struct Walk<'c, T> {
    stream: Pin<Box<dyn Stream<Item = Result<T>> + Send + 'c>>,
    owner: &'c Owner,
}

impl<T: Send> Iterator for Walk<'_, T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Self::Item> {
        let stream = &mut self.stream;
        self.owner
            .run(stream.next())
            .unwrap_or_else(|error| Some(Err(error)))
    }
}
