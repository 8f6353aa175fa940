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

use std::future::Future;
use std::sync::Arc;

use cache_core::{Backend, CacheBuilder, Result, Serializer};
use serde::{Serialize, de::DeserializeOwned};

pub use cache_core::blocking::{Cache, Lock, LockGuard, Runtime, Walk};

/// A store opened for blocking use, with the runtime its calls run on.
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    runtime: Runtime,
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
    let runtime = Runtime::new()?;
    let backend = runtime.block_on(crate::open(url))??;
    Ok(Store { backend, runtime })
}

impl Store {
    /// The runtime the store's calls run on: [`Runtime::cache`] makes a blocking cache of any
    /// async cache over [`Store::backend`].
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

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
        self.runtime
            .cache(build(crate::Cache::builder(Arc::clone(&self.backend))).build())
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
        self.runtime.block_on(work)
    }

    /// Closes the store (and every cache over it).
    pub fn close(&self) -> Result<()> {
        self.runtime.block_on(self.backend.close())?
    }
}
