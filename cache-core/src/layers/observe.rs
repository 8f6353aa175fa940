//! One event per call, to an observer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

pub use crate::raw::Call;
use crate::raw::{Answer, CallFuture, Intercept, Intercepted, Layer};
use crate::{Backend, Error, Result};

/// A store call as it ends: what [`Observer::on_call`] receives.
#[derive(Debug)]
#[non_exhaustive]
pub struct CallEvent<'a> {
    /// What the call was.
    pub call: Call<'a>,
    /// For `get` and `get_many` that succeeded: how many of the keys had a value. `None` for
    /// every other call.
    pub hits: Option<usize>,
    /// How long the call took, layers below this one included.
    pub elapsed: Duration,
    /// The error, if the call failed. Use [`Error::kind`] for a label.
    pub error: Option<&'a Error>,
    /// The span [`Observer::span`] opened for the call (disabled if it opened none).
    pub span: &'a tracing::Span,
}

/// What the typed [`Cache`](crate::Cache) reports besides its store calls, to the observer
/// given to [`CacheBuilder::observe`](crate::CacheBuilder::observe).
#[derive(Debug)]
#[non_exhaustive]
pub enum CacheEvent<'a> {
    /// Stored bytes did not decode as the cache's type.
    DecodeFailed {
        /// The caller's key.
        key: &'a str,
        /// The [`Error::Decode`].
        error: &'a Error,
        /// Whether the entry was treated as a miss (left out, or loaded again) rather than
        /// failing the call.
        as_miss: bool,
    },
    /// A loader of [`get_or_insert_with`](crate::Cache::get_or_insert_with) ran.
    Loaded {
        /// The caller's key.
        key: &'a str,
        /// How long the loader and the write of its value took.
        elapsed: Duration,
        /// The error, if the loader or the write failed.
        error: Option<&'a Error>,
    },
    /// A caller waited for another caller's load of the same key instead of loading it again.
    LoadWaited {
        /// The caller's key.
        key: &'a str,
        /// How long it waited.
        waited: Duration,
    },
    /// A loading verb served a stale value (see
    /// [`CacheBuilder::fresh_for`](crate::CacheBuilder::fresh_for)); a background refresh may
    /// have started.
    StaleServed {
        /// The caller's key.
        key: &'a str,
    },
    /// A refresh of a present key ended: in the background after a stale read, or asked for
    /// with [`Cache::refresh`](crate::Cache::refresh).
    Refreshed {
        /// The caller's key.
        key: &'a str,
        /// How long the loader and the write of its value took.
        elapsed: Duration,
        /// The error, if the loader or the write failed; the old value stays served.
        error: Option<&'a Error>,
        /// Whether the loader found a value; `false` with no error: it found nothing, and the
        /// old value stays served.
        found: bool,
    },
    /// A read was served from the [local tier](crate::CacheBuilder::local).
    LocalHit {
        /// The caller's key.
        key: &'a str,
    },
    /// A read found no copy in the local tier and asked the store.
    LocalMiss {
        /// The caller's key.
        key: &'a str,
    },
    /// A value read from the store was kept in the local tier.
    LocalFilled {
        /// The caller's key.
        key: &'a str,
    },
    /// The local tier dropped the copies of keys and prefixes that changed.
    LocalInvalidated {
        /// How many keys the announcement named.
        keys: usize,
        /// How many prefixes it named (a `clear`).
        prefixes: usize,
        /// Whether it came from another handle or process over the store's channel, rather
        /// than from a write of this process.
        remote: bool,
    },
    /// The store's invalidation channel dropped: the local tier emptied itself and serves
    /// nothing until the channel is back.
    ChannelLost {
        /// Why, as the store said it.
        reason: &'a str,
    },
    /// The store's invalidation channel is subscribed (at first, or again after a loss): the
    /// local tier serves copies.
    ChannelRestored,
}

/// Receives one [`CallEvent`] per store call from an [`Observe`] layer, and the typed cache's
/// own [`CacheEvent`]s. Calls come from many tasks at once: keep `on_call` quick and never
/// block in it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> cache_core::Result<()> {
/// use std::sync::{Arc, Mutex};
/// use cache_core::{Cache, testing::ReferenceBackend};
/// use cache_core::layers::{CallEvent, Observer};
///
/// #[derive(Default)]
/// struct Log(Mutex<Vec<String>>);
///
/// impl Observer for Log {
///     fn on_call(&self, event: &CallEvent<'_>) {
///         let line = format!("{} {} keys={} hits={:?}", event.call.store, event.call.operation,
///             event.call.keys, event.hits);
///         self.0.lock().unwrap().push(line);
///     }
/// }
///
/// let log = Arc::new(Log::default());
/// let cache: Cache<u8> = Cache::builder(Arc::new(ReferenceBackend::default()))
///     .observe(Arc::clone(&log))
///     .build();
/// cache.set("a", &1).await?;
/// cache.get_many(["a", "b"]).await?;
/// assert_eq!(*log.0.lock().unwrap(), [
///     "reference set keys=1 hits=None",
///     "reference get_many keys=2 hits=Some(1)",
/// ]);
/// # Ok(()) }
/// ```
pub trait Observer: Send + Sync + 'static {
    /// The span the call runs in, so that what the store logs nests under it. Default: none.
    fn span(&self, call: &Call<'_>) -> tracing::Span {
        let _ = call;
        tracing::Span::none()
    }

    /// A store call ended.
    fn on_call(&self, event: &CallEvent<'_>);

    /// The typed cache reports something; see [`CacheEvent`]. Default: nothing.
    fn on_cache_event(&self, event: &CacheEvent<'_>) {
        let _ = event;
    }
}

impl<O: Observer + ?Sized> Observer for Arc<O> {
    fn span(&self, call: &Call<'_>) -> tracing::Span {
        (**self).span(call)
    }

    fn on_call(&self, event: &CallEvent<'_>) {
        (**self).on_call(event);
    }

    fn on_cache_event(&self, event: &CacheEvent<'_>) {
        (**self).on_cache_event(event);
    }
}

/// Two observers, both told of everything: `(TracingObserver::new(), MetricsObserver::new())`.
/// Calls run in the first one's span, or the second's if the first opens none.
impl<A: Observer, B: Observer> Observer for (A, B) {
    fn span(&self, call: &Call<'_>) -> tracing::Span {
        let span = self.0.span(call);
        if span.is_none() {
            self.1.span(call)
        } else {
            span
        }
    }

    fn on_call(&self, event: &CallEvent<'_>) {
        self.0.on_call(event);
        self.1.on_call(event);
    }

    fn on_cache_event(&self, event: &CacheEvent<'_>) {
        self.0.on_cache_event(event);
        self.1.on_cache_event(event);
    }
}

/// Reports every store call below it to an [`Observer`]. Prefer
/// [`CacheBuilder::observe`](crate::CacheBuilder::observe), which adds this layer and also hands
/// the observer the typed cache's own events.
///
/// With no `Observe` layer a cache pays nothing for observation; with one, the bench's
/// `observe` rows say what it costs.
#[derive(Debug)]
pub struct Observe<O> {
    observer: Arc<O>,
}

impl<O> Clone for Observe<O> {
    fn clone(&self) -> Self {
        Self {
            observer: Arc::clone(&self.observer),
        }
    }
}

impl<O: Observer> Observe<O> {
    /// Reports to `observer`.
    pub fn new(observer: O) -> Self {
        Self {
            observer: Arc::new(observer),
        }
    }
}

impl<O: Observer> Layer for Observe<O> {
    fn layer(&self, inner: Arc<dyn Backend>) -> Arc<dyn Backend> {
        Arc::new(Intercepted(ObserveBackend {
            inner,
            observer: Arc::clone(&self.observer),
        }))
    }
}

struct ObserveBackend<O> {
    inner: Arc<dyn Backend>,
    observer: Arc<O>,
}

impl<O> std::fmt::Debug for ObserveBackend<O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Observe")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<O: Observer> Intercept for ObserveBackend<O> {
    fn inner(&self) -> &dyn Backend {
        &*self.inner
    }

    async fn intercept<'a, T: Answer + 'a>(
        &'a self,
        call: Call<'a>,
        run: CallFuture<'a, T>,
    ) -> Result<T> {
        let span = self.observer.span(&call);
        let started = Instant::now();
        let result = if span.is_none() {
            run.await
        } else {
            run.instrument(span.clone()).await
        };
        let elapsed = started.elapsed();
        let (hits, error) = match &result {
            Ok(value) => (value.hits(), None),
            Err(error) => (None, Some(error)),
        };
        self.observer.on_call(&CallEvent {
            call,
            hits,
            elapsed,
            error,
            span: &span,
        });
        result
    }
}
