//! The typed cache for code without an async runtime: the blocking twin of [`Cache`](crate::Cache)
//! and the runtime its calls run on.
//!
//! Most users open a store with `cachette::blocking::open(url)`, which starts a [`Runtime`],
//! opens the store on it and hands out caches. Here are the parts, for a store built by hand:
//! [`Runtime::new`] starts a small runtime of the handle's own (two worker threads named
//! `cachette-blocking`), and [`Runtime::cache`] turns an async cache into a blocking one whose
//! calls run there. Open a store with connection tasks (Redis, PostgreSQL) on the same runtime,
//! through [`Runtime::block_on`]: those tasks live on the runtime that opens them.
//!
//! ```
//! use std::sync::Arc;
//! use cache_core::{Cache, blocking, testing::ReferenceBackend};
//!
//! let runtime = blocking::Runtime::new()?;
//! let cache: blocking::Cache<String> =
//!     runtime.cache(Cache::builder(Arc::new(ReferenceBackend::default())).prefix("greetings:").build());
//! cache.set("en", &"hello".to_string())?;
//! assert_eq!(cache.get("en")?.as_deref(), Some("hello"));
//! let loaded = cache.get_or_insert_with("fr", || Ok::<_, std::io::Error>("bonjour".to_string()))?;
//! assert_eq!(loaded, "bonjour");
//! # Ok::<(), cache_core::Error>(())
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
//! The runtime stops, without waiting, when the last [`Runtime`] and [`Cache`] sharing it are
//! dropped (anywhere, an async context included): its threads end once their current work does.
//! Background refreshes still running then are dropped.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{Stream, StreamExt};

use crate::planted::FacadeBug;
use crate::{BoxError, Entry, Loaded, Result, SetOptions, Ttl};

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
            Err(error) => Err(crate::Error::backend(
                "blocking",
                "call",
                None,
                format!("cannot start a thread for a call made inside an async runtime: {error}"),
            )
            .with_transient(true)),
        }
    }
}

/// The runtime blocking caches run their calls on: two worker threads of its own, stopped when
/// the last handle on it goes. Cloning is cheap; clones share the runtime.
#[derive(Clone)]
pub struct Runtime {
    owner: Arc<Owner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("blocking::Runtime").finish_non_exhaustive()
    }
}

impl Runtime {
    /// Starts the runtime: two worker threads named `cachette-blocking`, with timers and I/O.
    pub fn new() -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cachette-blocking")
            .enable_all()
            .build()
            .map_err(|error| {
                crate::Error::config_with("cannot start the blocking runtime", error)
            })?;
        Ok(Self {
            owner: Arc::new(Owner {
                runtime: Some(runtime),
            }),
        })
    }

    /// Runs `work` on this runtime, from any thread, and returns its output: for an async piece
    /// of code beside the blocking cache (opening a store, a layer's setup). It follows the same
    /// rules as every blocking call inside an async runtime; an error only when no thread could
    /// be started for it there.
    pub fn block_on<F>(&self, work: F) -> Result<F::Output>
    where
        F: Future + Send,
        F::Output: Send,
    {
        self.owner.run(work)
    }

    /// The blocking twin of `cache`, whose calls run on this runtime.
    pub fn cache<V>(&self, cache: crate::Cache<V>) -> Cache<V> {
        Cache {
            inner: cache,
            owner: Arc::clone(&self.owner),
        }
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

std::thread_local! {
    /// On a thread running a blocking loader: the keys its load is for, so that the loader's
    /// own calls to the cache know them, and one asking for its own key fails with
    /// [`Error::LoadCycle`](crate::Error::LoadCycle) instead of waiting for itself.
    static LOADING_HERE: std::cell::RefCell<Option<crate::loading::LoadingKeys>> =
        const { std::cell::RefCell::new(None) };
}

/// A plain closure as the async loaders want it: run on a blocking thread of the runtime, so
/// that a slow loader never holds a worker the store's connections need, knowing the keys its
/// load is for.
async fn off_the_workers<T, E, F>(loader: F) -> std::result::Result<T, BoxError>
where
    F: FnOnce() -> std::result::Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: Into<BoxError> + Send + 'static,
{
    let loading = crate::loading::loading_keys();
    let on_a_blocking_thread = move || {
        let before = LOADING_HERE.with(|here| here.replace(loading));
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(loader));
        LOADING_HERE.with(|here| here.replace(before));
        outcome.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    };
    match tokio::task::spawn_blocking(on_a_blocking_thread).await {
        Ok(outcome) => outcome.map_err(Into::into),
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => Err(Box::new(error)),
    }
}

impl<V> Cache<V>
where
    V: Clone + Send + Sync + 'static,
{
    /// Runs one store call on the cache's runtime.
    fn call<T: Send>(&self, work: impl Future<Output = Result<T>> + Send) -> Result<T> {
        if self.inner.planted(FacadeBug::BlockingRuntimePerCall) {
            // Everything the call spawns (background refreshes) dies with this runtime.
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| crate::Error::config_with("no runtime", error))?;
            return runtime.block_on(work);
        }
        let loading = LOADING_HERE.with(|here| here.borrow().clone()).filter(|_| {
            !self
                .inner
                .planted(FacadeBug::BlockingLoaderCallsForgetTheLoad)
        });
        match loading {
            // A call from inside a blocking loader, on the loader's behalf.
            Some(loading) => self.owner.call(crate::loading::loading_as(loading, work)),
            None => self.owner.call(work),
        }
    }

    /// The async cache this one drives, for code that has both.
    pub fn as_async(&self) -> &crate::Cache<V> {
        &self.inner
    }

    /// See [`crate::Cache::get`].
    pub fn get(&self, key: &str) -> Result<Option<V>> {
        self.call(self.inner.get(key))
    }

    /// The store behind this cache: see [`crate::Cache::backend`].
    pub fn backend(&self) -> &Arc<dyn crate::Backend> {
        self.inner.backend()
    }

    /// See [`crate::Cache::get_arc`].
    pub fn get_arc(&self, key: &str) -> Result<Option<std::sync::Arc<V>>> {
        self.call(self.inner.get_arc(key))
    }

    /// See [`crate::Cache::get_many`].
    pub fn get_many<K: AsRef<str> + Send>(
        &self,
        keys: impl IntoIterator<Item = K> + Send,
    ) -> Result<HashMap<String, V>> {
        self.call(self.inner.get_many(keys))
    }

    /// See [`crate::Cache::get_many_vec`].
    pub fn get_many_vec<K: AsRef<str> + Send>(
        &self,
        keys: impl IntoIterator<Item = K> + Send,
    ) -> Result<Vec<Option<V>>> {
        self.call(self.inner.get_many_vec(keys))
    }

    /// See [`crate::Cache::set`].
    pub fn set(&self, key: &str, value: &V) -> Result<()> {
        self.call(self.inner.set(key, value))
    }

    /// See [`crate::Cache::set_with`].
    pub fn set_with(&self, key: &str, value: &V, options: SetOptions) -> Result<bool> {
        self.call(self.inner.set_with(key, value, options))
    }

    /// See [`crate::Cache::set_many`].
    pub fn set_many<'v, K: AsRef<str> + Send>(
        &self,
        items: impl IntoIterator<Item = (K, &'v V)> + Send,
    ) -> Result<()>
    where
        V: 'v,
    {
        self.call(self.inner.set_many(items))
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
        self.call(self.inner.set_many_with(items, options))
    }

    /// See [`crate::Cache::delete`].
    pub fn delete(&self, key: &str) -> Result<bool> {
        self.call(self.inner.delete(key))
    }

    /// See [`crate::Cache::delete_many`].
    pub fn delete_many<K: AsRef<str> + Send>(
        &self,
        keys: impl IntoIterator<Item = K> + Send,
    ) -> Result<u64> {
        self.call(self.inner.delete_many(keys))
    }

    /// See [`crate::Cache::contains`].
    pub fn contains(&self, key: &str) -> Result<bool> {
        self.call(self.inner.contains(key))
    }

    /// See [`crate::Cache::expire_in`].
    pub fn expire_in(&self, key: &str, ttl: Option<Duration>) -> Result<bool> {
        self.call(self.inner.expire_in(key, ttl))
    }

    /// See [`crate::Cache::ttl`].
    pub fn ttl(&self, key: &str) -> Result<Option<Ttl>> {
        self.call(self.inner.ttl(key))
    }

    /// See [`crate::Cache::clear`].
    pub fn clear(&self) -> Result<u64> {
        self.call(self.inner.clear())
    }

    /// See [`crate::Cache::close`].
    pub fn close(&self) -> Result<()> {
        self.call(self.inner.close())
    }

    /// See [`crate::Cache::take`].
    pub fn take(&self, key: &str) -> Result<Option<V>> {
        self.call(self.inner.take(key))
    }

    /// See [`crate::Cache::take_many`].
    pub fn take_many<K: AsRef<str> + Send>(
        &self,
        keys: impl IntoIterator<Item = K> + Send,
    ) -> Result<HashMap<String, V>> {
        self.call(self.inner.take_many(keys))
    }

    /// See [`crate::Cache::get_with_ttl`].
    pub fn get_with_ttl(&self, key: &str) -> Result<Option<(V, Ttl)>> {
        self.call(self.inner.get_with_ttl(key))
    }

    /// See [`crate::Cache::get_many_with_ttl`].
    pub fn get_many_with_ttl<K: AsRef<str> + Send>(
        &self,
        keys: impl IntoIterator<Item = K> + Send,
    ) -> Result<HashMap<String, (V, Ttl)>> {
        self.call(self.inner.get_many_with_ttl(keys))
    }

    /// The cache's keys, read from the store a page at a time as the iterator is driven: see
    /// [`crate::Cache::keys`].
    pub fn keys(&self) -> Walk<'_, String> {
        Walk::new(Box::pin(self.inner.keys()), self)
    }

    /// The cache's entries, read a page at a time: see [`crate::Cache::entries`].
    pub fn entries(&self) -> Walk<'_, (String, V)> {
        Walk::new(Box::pin(self.inner.entries()), self)
    }

    /// See [`crate::Cache::len`].
    pub fn len(&self) -> Result<u64> {
        self.call(self.inner.len())
    }

    /// See [`crate::Cache::is_empty`].
    pub fn is_empty(&self) -> Result<bool> {
        self.call(self.inner.is_empty())
    }

    /// See [`crate::Cache::purge_expired`].
    pub fn purge_expired(&self) -> Result<u64> {
        self.call(self.inner.purge_expired())
    }

    /// See [`crate::Cache::incr`].
    pub fn incr(&self, key: &str, delta: i64) -> Result<i64> {
        self.call(self.inner.incr(key, delta))
    }

    /// See [`crate::Cache::incr_with_ttl`].
    pub fn incr_with_ttl(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        self.call(self.inner.incr_with_ttl(key, delta, ttl))
    }

    /// See [`crate::Cache::counter`].
    pub fn counter(&self, key: &str) -> Result<Option<i64>> {
        self.call(self.inner.counter(key))
    }

    /// See [`crate::Cache::invalidate_tags`].
    pub fn invalidate_tags<T: AsRef<str> + Send>(
        &self,
        tags: impl IntoIterator<Item = T> + Send,
    ) -> Result<()> {
        self.call(self.inner.invalidate_tags(tags))
    }

    /// See [`crate::Cache::get_or_insert_with`]; `loader` is a plain closure, run on a
    /// blocking thread of the handle's runtime.
    pub fn get_or_insert_with<F, E>(&self, key: &str, loader: F) -> Result<V>
    where
        F: FnOnce() -> std::result::Result<V, E> + Send + 'static,
        E: Into<BoxError> + Send + 'static,
    {
        self.call(
            self.inner
                .get_or_insert_with(key, move || off_the_workers(loader)),
        )
    }

    /// See [`crate::Cache::lock`]: the value, or the lock to produce it with a plain
    /// [`LockGuard::set`].
    pub fn lock(&self, key: &str) -> Result<Lock<V>> {
        Ok(match self.call(self.inner.lock(key))? {
            crate::Lock::Found(value) => Lock::Found(value),
            crate::Lock::Held(guard) => Lock::Held(LockGuard {
                inner: Some(guard),
                owner: Arc::clone(&self.owner),
            }),
        })
    }

    /// See [`crate::Cache::get_entry`].
    pub fn get_entry(&self, key: &str) -> Result<Option<Entry<V>>> {
        self.call(self.inner.get_entry(key))
    }

    /// See [`crate::Cache::get_or_refresh`]: a stale value is served at once while `loader`
    /// refreshes it in the background, on the handle's runtime.
    pub fn get_or_refresh<F, L, E>(&self, key: &str, loader: F) -> Result<Option<V>>
    where
        F: FnOnce() -> std::result::Result<L, E> + Send + 'static,
        L: Into<Loaded<V>> + Send + 'static,
        E: Into<BoxError> + Send + 'static,
    {
        self.call(
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
        self.call(self.inner.refresh(key, move || off_the_workers(loader)))
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
        self.call(self.inner.get_many_or_refresh(keys, move |missing| {
            let loader = loader.clone();
            off_the_workers(move || loader(missing))
        }))
    }
}

/// What [`Cache::lock`] gives: the value, or the lock to produce it.
#[derive(Debug)]
pub enum Lock<V> {
    /// The value was there, or another holder of the lock stored it.
    Found(V),
    /// This caller holds the lock: produce the value and [`LockGuard::set`] it.
    Held(LockGuard<V>),
}

/// The blocking twin of [`crate::LockGuard`]: store the value with [`LockGuard::set`], which
/// hands it to every waiter, or drop the guard to let a waiter take over.
pub struct LockGuard<V> {
    inner: Option<crate::LockGuard<V>>,
    owner: Arc<Owner>,
}

impl<V> std::fmt::Debug for LockGuard<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Some(inner) => inner.fmt(f),
            None => f.write_str("LockGuard(released)"),
        }
    }
}

impl<V: Clone + Send + Sync + 'static> LockGuard<V> {
    /// See [`crate::LockGuard::set`].
    pub fn set(self, value: &V) -> Result<()> {
        self.set_with(value, SetOptions::new())
    }

    /// See [`crate::LockGuard::set_with`].
    pub fn set_with(mut self, value: &V, options: SetOptions) -> Result<()> {
        match self.inner.take() {
            Some(inner) => self.owner.call(inner.set_with(value, options)),
            None => Ok(()),
        }
    }

    /// Releases the lock without a value: one waiter takes it over. The same as dropping it.
    pub fn release(self) {}
}

impl<V> Drop for LockGuard<V> {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take() {
            // The fleet lease is released by a task on the handle's runtime.
            let _runtime = self.owner.runtime().enter();
            drop(inner);
        }
    }
}

/// A walk of a cache's keys or entries, read from the store a page at a time.
pub struct Walk<'c, T> {
    stream: Pin<Box<dyn Stream<Item = Result<T>> + Send + 'c>>,
    owner: &'c Owner,
    /// Items left before the walk ends early: only with a planted bug.
    cut_after: Option<usize>,
}

impl<'c, T> Walk<'c, T> {
    fn new<V: Clone + Send + Sync + 'static>(
        stream: Pin<Box<dyn Stream<Item = Result<T>> + Send + 'c>>,
        cache: &'c Cache<V>,
    ) -> Self {
        let cut_after = cache
            .inner
            .planted(FacadeBug::BlockingWalkFirstPageOnly)
            .then_some(crate::capabilities::WALK_PAGE);
        Self {
            stream,
            owner: &cache.owner,
            cut_after,
        }
    }
}

impl<T> std::fmt::Debug for Walk<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("blocking::Walk").finish_non_exhaustive()
    }
}

impl<T: Send> Iterator for Walk<'_, T> {
    type Item = Result<T>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(left) = self.cut_after.as_mut() {
            *left = left.checked_sub(1)?;
        }
        let stream = &mut self.stream;
        self.owner
            .run(stream.next())
            .unwrap_or_else(|error| Some(Err(error)))
    }
}
