//! The typed facade users hold.

use std::borrow::{Borrow, Cow};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::layers::{CacheEvent, Observe, Observer};
use crate::single_flight::{self, Flights, Role};
use crate::{
    Backend, BoxError, Cbor, Condition, Error, Layer, Result, Serializer, SetOptions, Ttl,
};

tokio::task_local! {
    /// The keys the current task is loading, each with the cache it loads for: a loader that
    /// asks for one of them again would wait for itself.
    static LOADING: Vec<(usize, String)>;
}

/// What batch reads and loading verbs do with stored bytes that do not decode as `V` (another
/// schema, an older version of `V`, another writer). `get` always answers [`Error::Decode`]
/// naming the key; every entry treated as a miss is reported as a `tracing` warning (target
/// `cachette`, with the key and the serializer's error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DecodePolicy {
    /// `get_many` fails with [`Error::Decode`]; the loading verbs
    /// ([`Cache::get_or_insert_with`]) load the value again and overwrite the entry. The
    /// default: after a change of `V` the read-through path heals itself, and a batch never
    /// hides an entry without saying so.
    #[default]
    ReloadWhenLoading,
    /// Every read fails with [`Error::Decode`]; the loading verbs leave the entry alone.
    Fail,
    /// `get_many` leaves such entries out, as if absent; the loading verbs reload them. A store
    /// that fails a whole batch with [`Error::Decode`] for one key it cannot read as bytes (a
    /// Redis key of another type) is asked again without that key.
    Miss,
}

/// A typed cache of `V` values over any [`Backend`].
///
/// It applies the key prefix (so several caches share one store without seeing each other's
/// keys), the default TTL and the serializer, then calls the store with full keys. Cloning is
/// cheap: clones share the store, the settings and the single-flight table.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> cache_core::Result<()> {
/// use std::sync::Arc;
/// use std::time::Duration;
/// use cache_core::{Cache, testing::ReferenceBackend};
///
/// let cache: Cache<String> = Cache::builder(Arc::new(ReferenceBackend::default()))
///     .prefix("greetings:")
///     .default_ttl(Duration::from_secs(60))
///     .build();
///
/// cache.set("en", &"hello".to_string()).await?;
/// assert_eq!(cache.get("en").await?.as_deref(), Some("hello"));
/// assert_eq!(cache.get("fr").await?, None);
/// # Ok(()) }
/// ```
pub struct Cache<V> {
    inner: Arc<Inner<V>>,
}

struct Inner<V> {
    backend: Arc<dyn Backend>,
    prefix: String,
    default_ttl: Option<Duration>,
    serializer: Box<dyn Serializer<V>>,
    serializer_name: &'static str,
    flights: Flights<V>,
    decode_policy: DecodePolicy,
    load_wait_timeout: Option<Duration>,
    observer: Option<Arc<dyn Observer>>,
}

impl<V> Clone for Cache<V> {
    fn clone(&self) -> Self {
        Self {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<V> fmt::Debug for Cache<V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("backend", &self.inner.backend)
            .field("prefix", &self.inner.prefix)
            .field("default_ttl", &self.inner.default_ttl)
            .field("serializer", &self.inner.serializer_name)
            .field("decode_policy", &self.inner.decode_policy)
            .field("load_wait_timeout", &self.inner.load_wait_timeout)
            .field("observed", &self.inner.observer.is_some())
            .finish()
    }
}

/// Builds a [`Cache`]; start with [`Cache::builder`].
#[must_use]
pub struct CacheBuilder<V, S = Cbor> {
    backend: Arc<dyn Backend>,
    prefix: String,
    default_ttl: Option<Duration>,
    serializer: S,
    decode_policy: DecodePolicy,
    load_wait_timeout: Option<Duration>,
    observer: Option<Arc<dyn Observer>>,
    value: PhantomData<fn() -> V>,
}

impl<V, S> CacheBuilder<V, S> {
    /// What batches and loading verbs do with entries that do not decode; see
    /// [`DecodePolicy`]. Default: [`DecodePolicy::ReloadWhenLoading`].
    pub fn decode_policy(mut self, policy: DecodePolicy) -> Self {
        self.decode_policy = policy;
        self
    }

    /// How long a caller of a loading verb waits for another caller's load of the same key
    /// before it gives up with [`Error::LoadTimeout`] (the load itself goes on). Default: as long
    /// as the load takes. Needs a Tokio runtime with its time driver enabled.
    pub fn load_wait_timeout(mut self, timeout: Duration) -> Self {
        self.load_wait_timeout = Some(timeout);
        self
    }

    /// Prepends `prefix` to every key. Default: none.
    ///
    /// Keys are the prefix and the caller's key joined as they are: prefix `tenant1` reads and
    /// clears the keys of a cache with prefix `tenant10`. End every prefix with a separator
    /// that the keys after it cannot start with (`tenant1:`), so that no prefix is the start of
    /// another.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The TTL of writes that do not choose one. Default: no expiry.
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = Some(ttl);
        self
    }

    /// Wraps the store in `layer` (timeouts, retries, observation, fault injection: see
    /// [`layers`](crate::layers), or write one with [`raw::Forward`](crate::raw::Forward)).
    ///
    /// Layers stack in the order given: each wraps everything given before it, so the last one
    /// is the outermost, the first that a call goes through. `.layer(Retry::new(…))
    /// .layer(Observe::new(…))` observes each call once, retries included inside it;
    /// `.layer(Timeout::new(…)).layer(Retry::new(…))` gives each attempt its own deadline.
    pub fn layer(mut self, layer: impl Layer) -> Self {
        self.backend = layer.layer(self.backend);
        self
    }

    /// Reports to `observer` every store call (an [`Observe`] layer at this point of the stack)
    /// and the typed cache's own events: entries that do not decode, loads, and callers that
    /// waited for another's load (see [`CacheEvent`](crate::layers::CacheEvent)).
    ///
    /// A cache without an observer pays nothing for observation.
    pub fn observe<O: Observer>(mut self, observer: O) -> Self {
        let observer = Arc::new(observer);
        self.backend = Observe::new(Arc::clone(&observer)).layer(self.backend);
        self.observer = Some(observer);
        self
    }

    /// Encodes values with `serializer` instead of [`Cbor`].
    pub fn serializer<S2: Serializer<V>>(self, serializer: S2) -> CacheBuilder<V, S2> {
        CacheBuilder {
            backend: self.backend,
            prefix: self.prefix,
            default_ttl: self.default_ttl,
            serializer,
            decode_policy: self.decode_policy,
            load_wait_timeout: self.load_wait_timeout,
            observer: self.observer,
            value: PhantomData,
        }
    }

    /// The cache.
    pub fn build(self) -> Cache<V>
    where
        S: Serializer<V>,
        V: 'static,
    {
        Cache {
            inner: Arc::new(Inner {
                backend: self.backend,
                prefix: self.prefix,
                default_ttl: self.default_ttl,
                serializer: Box::new(self.serializer),
                serializer_name: std::any::type_name::<S>(),
                flights: Flights::default(),
                decode_policy: self.decode_policy,
                load_wait_timeout: self.load_wait_timeout,
                observer: self.observer,
            }),
        }
    }
}

impl<V: Send + Sync + 'static> Cache<V> {
    /// Starts building a cache over `backend` (any store, or what `cachette::open(url)` returns).
    pub fn builder(backend: Arc<dyn Backend>) -> CacheBuilder<V, Cbor> {
        CacheBuilder {
            backend,
            prefix: String::new(),
            default_ttl: None,
            serializer: Cbor,
            decode_policy: DecodePolicy::default(),
            load_wait_timeout: None,
            observer: None,
            value: PhantomData,
        }
    }

    /// The store behind this cache.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.inner.backend
    }

    /// The prefix of every key of this cache.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// The TTL of writes that do not choose one.
    pub fn default_ttl(&self) -> Option<Duration> {
        self.inner.default_ttl
    }

    /// The value under `key`, `None` if absent or expired. Bytes that do not decode give
    /// [`Error::Decode`] naming the key; other keys keep working.
    pub async fn get(&self, key: &str) -> Result<Option<V>> {
        self.get_decoded(key).await.inspect_err(|error| {
            if matches!(error, Error::Decode { .. }) {
                self.report_decode(error, false);
            }
        })
    }

    /// `get` without reporting decode errors: its callers do.
    async fn get_decoded(&self, key: &str) -> Result<Option<V>> {
        let full_key = self.full_key(key);
        let stored = self.inner.backend.get(&full_key).await;
        match stored.map_err(|error| self.callers_key(error))? {
            Some(bytes) => self.decode(key, bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The values of the present keys among `keys`, by the caller's key (without the prefix), in
    /// one store round trip. Missing and expired keys are left out; duplicates are fine.
    pub async fn get_many<K: AsRef<str>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<HashMap<String, V>> {
        let mut full_keys: Vec<String> = keys
            .into_iter()
            .map(|key| self.full_key(key.as_ref()).into_owned())
            .collect();
        let values = loop {
            match self.inner.backend.get_many(&full_keys).await {
                Ok(values) => break values,
                // A store that cannot read one key of the batch as bytes (a Redis key of another
                // type) fails the batch naming it; as a miss, it is left out and the rest asked
                // again. Each round removes a key, so this ends.
                Err(Error::Decode { key, source })
                    if self.inner.decode_policy == DecodePolicy::Miss
                        && full_keys.contains(&key) =>
                {
                    let error = self.callers_key(Error::Decode {
                        key: key.clone(),
                        source,
                    });
                    self.report_decode(&error, true);
                    full_keys.retain(|asked| *asked != key);
                }
                Err(error) => {
                    let error = self.callers_key(error);
                    if matches!(error, Error::Decode { .. }) {
                        self.report_decode(&error, false);
                    }
                    return Err(error);
                }
            }
        };
        let prefix_len = self.inner.prefix.len();
        let mut found = HashMap::with_capacity(values.len());
        for (mut key, value) in full_keys.into_iter().zip(values) {
            if let Some(bytes) = value {
                // The caller's key is the full key without the prefix: cut it in place rather
                // than allocate a copy per key found.
                key.replace_range(..prefix_len, "");
                match self.decode(&key, bytes) {
                    Ok(value) => {
                        found.insert(key, value);
                    }
                    Err(error) if self.inner.decode_policy == DecodePolicy::Miss => {
                        self.report_decode(&error, true);
                    }
                    Err(error) => {
                        self.report_decode(&error, false);
                        return Err(error);
                    }
                }
            }
        }
        Ok(found)
    }

    /// Writes `value` under `key` with the default TTL.
    pub async fn set(&self, key: &str, value: &V) -> Result<()> {
        self.set_with(key, value, SetOptions::new()).await.map(drop)
    }

    /// Writes `value` under `key` with `options`; returns whether it wrote (only
    /// [`SetOptions::if_not_exists`] can make it `false`).
    pub async fn set_with(&self, key: &str, value: &V, options: SetOptions) -> Result<bool> {
        let bytes = self.encode(key, value)?;
        let ttl = options.resolve_ttl(self.inner.default_ttl);
        self.inner
            .backend
            .set(&self.full_key(key), bytes, ttl, options.condition)
            .await
    }

    /// Writes every item with the default TTL, atomically and in one round trip. Every value is
    /// encoded before anything is written, so an encoding error writes nothing.
    pub async fn set_many<K, B>(&self, items: impl IntoIterator<Item = (K, B)>) -> Result<()>
    where
        K: AsRef<str>,
        B: Borrow<V>,
    {
        self.set_many_with(items, SetOptions::new()).await
    }

    /// [`Cache::set_many`] with `options`. A conditional write
    /// ([`SetOptions::if_not_exists`]) is [`Error::Unsupported`] for batches.
    pub async fn set_many_with<K, B>(
        &self,
        items: impl IntoIterator<Item = (K, B)>,
        options: SetOptions,
    ) -> Result<()>
    where
        K: AsRef<str>,
        B: Borrow<V>,
    {
        if options.condition != Condition::Always {
            return Err(Error::Unsupported {
                store: self.inner.backend.name(),
                operation: "set_many_with(if_not_exists)",
            });
        }
        let entries = items
            .into_iter()
            .map(|(key, value)| {
                let key = key.as_ref();
                Ok((
                    self.full_key(key).into_owned(),
                    self.encode(key, value.borrow())?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        if entries.is_empty() {
            return Ok(());
        }
        let ttl = options.resolve_ttl(self.inner.default_ttl);
        self.inner.backend.set_many(entries, ttl).await
    }

    /// Removes `key`; returns whether it was present.
    pub async fn delete(&self, key: &str) -> Result<bool> {
        self.inner.backend.delete(&self.full_key(key)).await
    }

    /// Removes `keys` in one round trip; returns how many distinct keys were present.
    pub async fn delete_many<K: AsRef<str>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<u64> {
        let full_keys: Vec<String> = keys
            .into_iter()
            .map(|key| self.full_key(key.as_ref()).into_owned())
            .collect();
        if full_keys.is_empty() {
            return Ok(0);
        }
        self.inner.backend.delete_many(&full_keys).await
    }

    /// Whether `key` is present and not expired.
    pub async fn contains(&self, key: &str) -> Result<bool> {
        self.inner.backend.contains(&self.full_key(key)).await
    }

    /// Changes the expiry of a present key: `Some(d)` expires it after `d`, `None` makes it
    /// eternal. Returns whether the key was present.
    pub async fn expire_in(&self, key: &str, ttl: Option<Duration>) -> Result<bool> {
        self.inner.backend.expire_in(&self.full_key(key), ttl).await
    }

    /// The expiry of `key`: `None` if absent, else [`Ttl::Eternal`] or [`Ttl::Remaining`].
    pub async fn ttl(&self, key: &str) -> Result<Option<Ttl>> {
        self.inner.backend.ttl(&self.full_key(key)).await
    }

    /// Removes every key of this cache (those under its prefix) and nothing else; returns how many
    /// it removed. With an empty prefix this empties the whole store.
    pub async fn clear(&self) -> Result<u64> {
        self.inner.backend.clear_prefix(&self.inner.prefix).await
    }

    /// Closes the store behind this cache (and behind every cache sharing it).
    pub async fn close(&self) -> Result<()> {
        self.inner.backend.close().await
    }

    /// The value under `key`; when absent, runs `loader`, stores its value with the default TTL
    /// and returns it.
    ///
    /// Single flight: while one caller loads a key, every other caller of this cache (and its
    /// clones) asking for the same key waits for that load instead of starting its own. A loader
    /// error reaches every waiter as [`Error::Load`] and nothing is cached. If the loading caller
    /// is cancelled or its loader panics, a waiter takes over with its own loader. When storing
    /// the loaded value fails, the loading caller gets that error and the waiters get the value.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> cache_core::Result<()> {
    /// use std::sync::Arc;
    /// use cache_core::{Cache, testing::ReferenceBackend};
    ///
    /// let cache: Cache<u64> = Cache::builder(Arc::new(ReferenceBackend::default())).build();
    /// let answer = cache
    ///     .get_or_insert_with("answer", || async { Ok::<_, std::io::Error>(42) })
    ///     .await?;
    /// assert_eq!(answer, 42);
    /// assert_eq!(cache.get("answer").await?, Some(42));
    /// # Ok(()) }
    /// ```
    pub async fn get_or_insert_with<F, Fut, E>(&self, key: &str, loader: F) -> Result<V>
    where
        V: Clone,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
        E: Into<BoxError>,
    {
        if let Some(value) = self.get_for_loading(key).await? {
            return Ok(value);
        }
        let full_key = self.full_key(key);
        let cache_id = Arc::as_ptr(&self.inner).cast::<()>() as usize;
        let reentrant = LOADING
            .try_with(|loading| {
                loading
                    .iter()
                    .any(|(id, loading)| *id == cache_id && *loading == full_key)
            })
            .unwrap_or(false);
        if reentrant {
            return Err(Error::LoadCycle {
                key: key.to_owned(),
            });
        }
        let guard = loop {
            match self.inner.flights.join(&full_key) {
                Role::Leader(guard) => break guard,
                Role::Waiter(mut slot) => {
                    let waiting = self.inner.observer.as_ref().map(|_| Instant::now());
                    let outcome = match self.inner.load_wait_timeout {
                        None => single_flight::outcome(&mut slot).await,
                        Some(limit) => {
                            tokio::time::timeout(limit, single_flight::outcome(&mut slot))
                                .await
                                .map_err(|_| Error::LoadTimeout {
                                    key: key.to_owned(),
                                    waited: limit,
                                })?
                        }
                    };
                    if let (Some(observer), Some(since)) = (&self.inner.observer, waiting) {
                        observer.on_cache_event(&CacheEvent::LoadWaited {
                            key,
                            waited: since.elapsed(),
                        });
                    }
                    if let Some(outcome) = outcome {
                        return outcome.map_err(|source| Error::Load {
                            key: key.to_owned(),
                            source,
                        });
                    }
                    // The loader's caller went away without an outcome: try again.
                    if let Some(value) = self.get_for_loading(key).await? {
                        return Ok(value);
                    }
                }
            }
        };
        // A load that finished between our miss and our joining has stored its value already.
        if let Some(value) = self.get_for_loading(key).await? {
            guard.publish(Ok(value.clone()));
            return Ok(value);
        }
        // The loader runs knowing every key this task is loading, this one included, so that a
        // load of any of them from inside it fails at once instead of waiting for itself.
        let mut loading = LOADING.try_with(Clone::clone).unwrap_or_default();
        loading.push((cache_id, full_key.into_owned()));
        let started = self.inner.observer.as_ref().map(|_| Instant::now());
        let loaded = match LOADING.scope(loading, loader()).await {
            Ok(value) => {
                let stored = self.set(key, &value).await;
                guard.publish(Ok(value.clone()));
                stored.map(|()| value)
            }
            Err(error) => {
                let source: Arc<dyn std::error::Error + Send + Sync> = Arc::from(error.into());
                guard.publish(Err(Arc::clone(&source)));
                Err(Error::Load {
                    key: key.to_owned(),
                    source,
                })
            }
        };
        if let (Some(observer), Some(started)) = (&self.inner.observer, started) {
            observer.on_cache_event(&CacheEvent::Loaded {
                key,
                elapsed: started.elapsed(),
                error: loaded.as_ref().err(),
            });
        }
        loaded
    }

    /// `get` as the loading verbs read: an entry that does not decode is a miss (to be loaded
    /// and overwritten) unless the policy is [`DecodePolicy::Fail`].
    async fn get_for_loading(&self, key: &str) -> Result<Option<V>> {
        match self.get_decoded(key).await {
            Err(error @ Error::Decode { .. }) => {
                let as_miss = self.inner.decode_policy != DecodePolicy::Fail;
                self.report_decode(&error, as_miss);
                if as_miss { Ok(None) } else { Err(error) }
            }
            other => other,
        }
    }

    /// The store's key for `key`. Without a prefix it is the caller's key itself, borrowed, so
    /// that single-key calls allocate nothing for it.
    fn full_key<'k>(&self, key: &'k str) -> Cow<'k, str> {
        if self.inner.prefix.is_empty() {
            return Cow::Borrowed(key);
        }
        let mut full_key = String::with_capacity(self.inner.prefix.len() + key.len());
        full_key.push_str(&self.inner.prefix);
        full_key.push_str(key);
        Cow::Owned(full_key)
    }

    /// A decode error from the store names the store's key; the caller knows its own.
    fn callers_key(&self, error: Error) -> Error {
        match error {
            Error::Decode { key, source } => Error::Decode {
                key: key
                    .strip_prefix(self.inner.prefix.as_str())
                    .map_or(key.clone(), str::to_owned),
                source,
            },
            other => other,
        }
    }

    fn encode(&self, key: &str, value: &V) -> Result<Bytes> {
        self.inner
            .serializer
            .encode(value)
            .map_err(|source| Error::Encode {
                key: key.to_owned(),
                source,
            })
    }

    fn decode(&self, key: &str, bytes: Bytes) -> Result<V> {
        self.inner
            .serializer
            .decode(bytes)
            .map_err(|source| Error::Decode {
                key: key.to_owned(),
                source,
            })
    }
}

impl<V> Cache<V> {
    /// Reports an entry that does not decode: as a warning when a [`DecodePolicy`] treats it as
    /// a miss (an error the caller sees needs none), and to the observer either way.
    fn report_decode(&self, error: &Error, as_miss: bool) {
        if as_miss {
            tracing::warn!(
                target: "cachette",
                key = error.key().unwrap_or_default(),
                %error,
                "an entry that does not decode is treated as a miss"
            );
        }
        if let Some(observer) = &self.inner.observer {
            observer.on_cache_event(&CacheEvent::DecodeFailed {
                key: error.key().unwrap_or_default(),
                error,
                as_miss,
            });
        }
    }
}
