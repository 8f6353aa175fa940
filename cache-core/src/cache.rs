//! The typed facade users hold.

use std::borrow::{Borrow, Cow};
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use crate::layers::{CacheEvent, Observe, Observer};
use crate::local::{Copy, LocalTier, Tier};
use crate::planted::FacadeBug;
use crate::raw::header::{self, Header};
use crate::raw::invalidation::{Announcing, InvalidationBus};
use crate::raw::ttl_millis;
use crate::single_flight::Flights;
use crate::{Backend, Cbor, Condition, Error, Layer, Result, Serializer, SetOptions, Ttl};

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
    pub(crate) inner: Arc<Inner<V>>,
}

pub(crate) struct Inner<V> {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) prefix: String,
    pub(crate) default_ttl: Option<Duration>,
    serializer: Box<dyn Serializer<V>>,
    serializer_name: &'static str,
    /// Loads in flight, by full key: `None` is a load that found nothing.
    pub(crate) flights: Arc<Flights<Option<V>>>,
    pub(crate) decode_policy: DecodePolicy,
    pub(crate) load_wait_timeout: Option<Duration>,
    pub(crate) observer: Option<Arc<dyn Observer>>,
    pub(crate) freshness: FreshConfig,
    /// Whether writes may carry tags (and user keys must stay out of the tag versions' space).
    pub(crate) tagged: bool,
    /// Fleet-wide single flight: loads take a lease in the store first.
    pub(crate) fleet: Option<crate::locks::Lease>,
    /// Decoded copies held in process, if the cache has a local tier.
    pub(crate) local: Option<Arc<Tier<V>>>,
    #[cfg(feature = "conformance")]
    planted: Option<FacadeBug>,
}

/// The settings and state of stale-while-revalidate, fail-safe and negative entries.
pub(crate) struct FreshConfig {
    /// Whether entries carry the header: set by `fresh_for` or `negative_ttl`.
    pub(crate) header: bool,
    pub(crate) fresh_for: Option<Duration>,
    pub(crate) negative_ttl: Option<Duration>,
    jitter: Option<(f64, Mutex<fastrand::Rng>)>,
    pub(crate) retry_after: Duration,
    /// Background refreshes that may run at once.
    pub(crate) refresh_slots: Arc<tokio::sync::Semaphore>,
    /// Keys whose refresh failed, with the instant before which none is tried again.
    pub(crate) throttled: Mutex<HashMap<String, Instant>>,
}

/// What a read found under a key: the value (`None` in a negative entry) and, for a cache that
/// writes it, the entry header.
pub(crate) struct Stored<V> {
    pub(crate) value: Option<V>,
    pub(crate) header: Option<Header>,
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
            .field("fresh_for", &self.inner.freshness.fresh_for)
            .field("tagged", &self.inner.tagged)
            .field("local", &self.inner.local.is_some())
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
    fresh_for: Option<Duration>,
    negative_ttl: Option<Duration>,
    jitter: Option<f64>,
    jitter_seed: Option<u64>,
    retry_after: Duration,
    max_refreshes: usize,
    tagged: bool,
    fleet: Option<crate::locks::Lease>,
    local: Option<(LocalTier, CloneFn<V>)>,
    #[cfg(feature = "conformance")]
    planted: Option<FacadeBug>,
    value: PhantomData<fn() -> V>,
}

/// How a local tier clones a held value for [`Cache::get`].
type CloneFn<V> = fn(&V) -> V;

/// A batch read under way: the store's answers, positionally.
type Answers<'a, T> = std::pin::Pin<Box<dyn Future<Output = Result<Vec<T>>> + Send + 'a>>;

/// One of the store's batch reads, for [`Cache::fetch_many_with`].
trait BatchRead {
    /// What the store answers per key.
    type Answer;
    /// Asks `backend` for `keys`, positionally.
    fn ask<'a>(backend: &'a dyn Backend, keys: &'a [String]) -> Answers<'a, Self::Answer>;
}

/// [`Backend::get_many`].
struct ReadBytes;

impl BatchRead for ReadBytes {
    type Answer = Option<Bytes>;
    fn ask<'a>(backend: &'a dyn Backend, keys: &'a [String]) -> Answers<'a, Self::Answer> {
        backend.get_many(keys)
    }
}

/// [`Backend::get_many_with_ttl`].
struct ReadWithTtl;

impl BatchRead for ReadWithTtl {
    type Answer = Option<(Bytes, Ttl)>;
    fn ask<'a>(backend: &'a dyn Backend, keys: &'a [String]) -> Answers<'a, Self::Answer> {
        backend.get_many_with_ttl(keys)
    }
}

/// How long a key whose refresh failed waits before the next one, by default.
pub const DEFAULT_REFRESH_RETRY_AFTER: Duration = Duration::from_secs(30);

/// How many background refreshes run at once, by default.
pub const DEFAULT_MAX_BACKGROUND_REFRESHES: usize = 32;

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

    /// Stale-while-revalidate: an entry is *fresh* for `fresh_for` after it is written, then
    /// *stale* until its TTL (the default TTL, or the write's own) ends it. atproto calls the
    /// two `stale_ttl` and `max_ttl`.
    ///
    /// Plain reads (`get`, `get_many`) serve fresh and stale values alike;
    /// [`Cache::get_entry`] tells them apart, and [`Cache::get_or_refresh`] serves a stale value
    /// at once while one background refresh per key loads a new one. A refresh that fails, or
    /// finds nothing, leaves the stale value served until its TTL (fail-safe), and the key's
    /// next refresh waits [`refresh_retry_after`](Self::refresh_retry_after).
    ///
    /// A cache with freshness stores an [entry header](crate::raw::header) of 11 to 27 bytes
    /// before each value; a cache without writes the serializer's bytes alone. Both kinds of
    /// cache must not share a prefix: each reads the other's entries as undecodable.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> cache_core::Result<()> {
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use cache_core::{Cache, Freshness, testing::ReferenceBackend};
    ///
    /// let docs: Cache<String> = Cache::builder(Arc::new(ReferenceBackend::default()))
    ///     .default_ttl(Duration::from_secs(24 * 3600)) // max_ttl: gone after a day
    ///     .fresh_for(Duration::from_secs(3600))        // stale_ttl: refreshed after an hour
    ///     .build();
    /// docs.set("did:plc:1", &"doc".to_string()).await?;
    /// let entry = docs.get_entry("did:plc:1").await?.expect("present");
    /// assert_eq!(entry.state, Freshness::Fresh);
    /// # Ok(()) }
    /// ```
    pub fn fresh_for(mut self, fresh_for: Duration) -> Self {
        self.fresh_for = Some(fresh_for);
        self
    }

    /// Lets writes carry tags ([`SetOptions::tags`], [`Loaded::tags`](crate::Loaded::tags)) and
    /// [`Cache::invalidate_tags`] make every entry of a tag absent at once, in a number of store
    /// calls that does not grow with the entries (no key scan).
    ///
    /// Each tag has a version, kept in the store under this cache's prefix in a space user keys
    /// cannot reach (keys starting with U+FFFF, a Unicode noncharacter, are refused with
    /// [`Error::InvalidKey`] in a tagged cache); each entry records the versions it was written
    /// under in its [entry header](crate::raw::header), and a read compares them with one batched
    /// read of the versions. Invalidating a tag gives it a new random version. Tag versions never
    /// expire; `clear()` removes them with the entries. A tag version the store lost (evicted by
    /// a bounded store, removed by hand) makes its entries absent, never current again.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> cache_core::Result<()> {
    /// use std::sync::Arc;
    /// use cache_core::{Cache, SetOptions, testing::ReferenceBackend};
    ///
    /// let responses: Cache<String> = Cache::builder(Arc::new(ReferenceBackend::default()))
    ///     .tagged()
    ///     .build();
    /// let tagged = SetOptions::new().tags(["user:7", "org:1"]);
    /// responses.set_with("GET /users/7", &"alice".to_string(), tagged).await?;
    /// responses.invalidate_tags(["org:1"]).await?;
    /// assert_eq!(responses.get("GET /users/7").await?, None);
    /// # Ok(()) }
    /// ```
    pub fn tagged(mut self) -> Self {
        self.tagged = true;
        self
    }

    /// How long a "not found" from a loader is remembered (a negative entry), unless the loader
    /// chooses ([`Loaded::ttl`](crate::Loaded::ttl)). Default: the `fresh_for` period if set,
    /// else the default TTL; with neither, "not found" is not remembered. Negative entries
    /// need the entry header, so this switches it on like `fresh_for` does.
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = Some(ttl);
        self
    }

    /// Shortens each write's TTL, and each entry's freshness, by a random part of up to
    /// `fraction` of it (`0.1`: by up to 10%), so that entries written together neither expire
    /// nor turn stale together. Never lengthens them. `fraction` is clamped to `0.0..=1.0`.
    /// A `set_many` shares one TTL in the store, so it shortens the batch's TTL once and each
    /// entry's freshness apart. Default: none.
    pub fn ttl_jitter(mut self, fraction: f64) -> Self {
        self.jitter = Some(if fraction.is_nan() {
            0.0
        } else {
            fraction.clamp(0.0, 1.0)
        });
        self
    }

    /// Seeds the jitter's random numbers, so that a test sees the same TTLs each run.
    pub fn jitter_seed(mut self, seed: u64) -> Self {
        self.jitter_seed = Some(seed);
        self
    }

    /// How long a key whose refresh failed (or found nothing while a stale value was served)
    /// waits before [`Cache::get_or_refresh`] tries again: a failing source is not asked on
    /// every read. Kept per cache in this process. Default: [`DEFAULT_REFRESH_RETRY_AFTER`].
    pub fn refresh_retry_after(mut self, wait: Duration) -> Self {
        self.retry_after = wait;
        self
    }

    /// How many background refreshes may run at once; a stale read past the bound serves its
    /// value and leaves the refresh to a later read. Default:
    /// [`DEFAULT_MAX_BACKGROUND_REFRESHES`].
    pub fn max_background_refreshes(mut self, count: usize) -> Self {
        self.max_refreshes = count;
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
    /// and the typed cache's own events: entries that do not decode, loads, callers that waited
    /// for another's load, stale values served and refreshes (see
    /// [`CacheEvent`](crate::layers::CacheEvent)).
    ///
    /// A cache without an observer pays nothing for observation.
    pub fn observe<O: Observer>(mut self, observer: O) -> Self {
        let observer = Arc::new(observer);
        self.backend = Observe::new(Arc::clone(&observer)).layer(self.backend);
        self.observer = Some(observer);
        self
    }

    /// Fleet-wide single flight: one load per key for every process sharing the store, not
    /// only for this one. Before a load ([`Cache::get_or_insert_with`], the loading verbs of
    /// freshness, [`Cache::lock`]) the loading caller takes a lease in the store
    /// ([`Backend::acquire_lease`]) and renews it while it loads; callers of other processes
    /// find the lease taken and wait, looking for the value with growing pauses, until it
    /// appears or the lease goes (a holder that crashed stops renewing, its lease expires, and
    /// one waiter takes over). A waiter never waits longer than [`Lease::max_wait`](crate::Lease::max_wait): then it
    /// loads itself, since availability matters more than exactly one load. A background
    /// refresh another process is running counts as this process's own. The store must keep
    /// leases (every store of cachette does); otherwise loads fail with
    /// [`Error::Unsupported`](crate::Error::Unsupported).
    ///
    /// A lease is an entry under U+FFFF `lease` U+FFFF and the entry's full key, outside every
    /// prefix, for at most the lease time.
    pub fn fleet_single_flight(mut self, lease: crate::locks::Lease) -> Self {
        self.fleet = Some(lease);
        self
    }

    /// Builds the cache with `bug`, for the conformance kit's own test that its cases catch
    /// the bugs they target. Never for use.
    #[cfg(feature = "conformance")]
    #[doc(hidden)]
    pub fn planted_bug(mut self, bug: Option<FacadeBug>) -> Self {
        self.planted = bug;
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
            fresh_for: self.fresh_for,
            negative_ttl: self.negative_ttl,
            jitter: self.jitter,
            jitter_seed: self.jitter_seed,
            retry_after: self.retry_after,
            max_refreshes: self.max_refreshes,
            tagged: self.tagged,
            fleet: self.fleet,
            local: self.local,
            #[cfg(feature = "conformance")]
            planted: self.planted,
            value: PhantomData,
        }
    }

    /// The cache.
    pub fn build(self) -> Cache<V>
    where
        S: Serializer<V>,
        V: Send + Sync + 'static,
    {
        #[cfg(feature = "conformance")]
        let planted = self.planted;
        #[cfg(not(feature = "conformance"))]
        let planted: Option<FacadeBug> = None;
        let mut backend = self.backend;
        let local = self.local.map(|(settings, clone)| {
            let bus = match backend.invalidation_bus() {
                Some(bus) if planted != Some(FacadeBug::LocalBusPerCache) => bus,
                _ => InvalidationBus::in_process(),
            };
            if planted != Some(FacadeBug::LocalTierMissesOwnWrites) {
                backend = Arc::new(Announcing {
                    inner: Arc::clone(&backend),
                    bus: Arc::clone(&bus),
                });
            }
            Tier::new(&settings, clone, bus, self.observer.clone(), planted)
        });
        Cache {
            inner: Arc::new(Inner {
                backend,
                prefix: self.prefix,
                default_ttl: self.default_ttl,
                serializer: Box::new(self.serializer),
                serializer_name: std::any::type_name::<S>(),
                flights: Arc::default(),
                decode_policy: self.decode_policy,
                load_wait_timeout: self.load_wait_timeout,
                observer: self.observer,
                freshness: FreshConfig {
                    header: self.fresh_for.is_some() || self.negative_ttl.is_some() || self.tagged,
                    fresh_for: self.fresh_for,
                    negative_ttl: self.negative_ttl.or(self.fresh_for).or(self.default_ttl),
                    jitter: self
                        .jitter
                        .filter(|fraction| *fraction > 0.0)
                        .map(|fraction| {
                            let rng = match self.jitter_seed {
                                Some(seed) => fastrand::Rng::with_seed(seed),
                                None => fastrand::Rng::new(),
                            };
                            (fraction, Mutex::new(rng))
                        }),
                    retry_after: self.retry_after,
                    refresh_slots: Arc::new(tokio::sync::Semaphore::new(self.max_refreshes)),
                    throttled: Mutex::default(),
                },
                tagged: self.tagged,
                fleet: self.fleet,
                local,
                #[cfg(feature = "conformance")]
                planted: self.planted,
            }),
        }
    }
}

impl<V: Clone, S> CacheBuilder<V, S> {
    /// A local tier: decoded values held in this process in front of the store, so that a hit
    /// costs neither a round trip nor a decode ([`Cache::get_arc`] not even a clone).
    ///
    /// - A copy lives at most [`LocalTier::hold`], and never past the entry's TTL in the store:
    ///   a miss reads the value and its TTL in one round trip ([`Backend::get_with_ttl`]); a
    ///   store without that capability is read as before and nothing is held.
    /// - Every write of this cache, of its clones and of every other cache with a local tier
    ///   (or the [`PublishWrites`](crate::raw::invalidation::PublishWrites) layer) over the same
    ///   store handle drops the copies it changes before it returns: `set`, `delete`,
    ///   `expire_in`, `take`, `clear`, tag invalidations, loads and refreshes.
    /// - Writes of other handles and processes arrive over the store's invalidation channel
    ///   (Redis pub/sub, PostgreSQL `LISTEN/NOTIFY`, a table of a shared SQLite file), batched,
    ///   within milliseconds. While the channel is down the tier holds nothing and every read
    ///   goes to the store; it fills again once the channel is back. A store without a channel
    ///   (one of your own), and writers that announce nothing (other programs, raw store
    ///   calls), leave copies stale for at most the hold.
    /// - Freshness, tags (their versions are held too, under the same invalidation), loads and
    ///   locks work as without the tier.
    ///
    /// The tier is a [quick_cache](https://docs.rs/quick_cache) map (S3-FIFO eviction) bounded
    /// by entries ([`LocalTier::new`]) or by weight ([`LocalTier::weighed`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> cache_core::Result<()> {
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use cache_core::{Cache, LocalTier, testing::ReferenceBackend};
    ///
    /// let docs: Cache<String> = Cache::builder(Arc::new(ReferenceBackend::default()))
    ///     .local(LocalTier::new(10_000).hold(Duration::from_secs(30)))
    ///     .build();
    /// docs.set("did:plc:1", &"doc".to_string()).await?;
    /// assert_eq!(docs.get("did:plc:1").await?.as_deref(), Some("doc")); // read, then held
    /// let held: Arc<String> = docs.get_arc("did:plc:1").await?.expect("held");
    /// docs.delete("did:plc:1").await?; // drops the copy at once
    /// assert_eq!(docs.get("did:plc:1").await?, None);
    /// # let _ = held;
    /// # Ok(()) }
    /// ```
    pub fn local(mut self, tier: LocalTier) -> Self {
        self.local = Some((tier, V::clone));
        self
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
            fresh_for: None,
            negative_ttl: None,
            jitter: None,
            jitter_seed: None,
            retry_after: DEFAULT_REFRESH_RETRY_AFTER,
            max_refreshes: DEFAULT_MAX_BACKGROUND_REFRESHES,
            tagged: false,
            fleet: None,
            local: None,
            #[cfg(feature = "conformance")]
            planted: None,
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
    /// [`Error::Decode`] naming the key; other keys keep working. A cache with freshness serves
    /// fresh and stale values alike, and a negative entry (a loader's "not found") as `None`.
    pub async fn get(&self, key: &str) -> Result<Option<V>> {
        match self.get_stored(key).await {
            Ok(stored) => Ok(stored.and_then(|stored| stored.value)),
            Err(error) => {
                if matches!(error, Error::Decode { .. }) {
                    self.report_decode(&error, false);
                }
                Err(error)
            }
        }
    }

    /// The value under `key` as a shared [`Arc`]: from a [local tier](CacheBuilder::local)
    /// without a clone (what hot paths want), otherwise decoded from the store as
    /// [`Cache::get`] does. `None` and errors as for [`Cache::get`].
    pub async fn get_arc(&self, key: &str) -> Result<Option<Arc<V>>> {
        let read = match &self.inner.local {
            Some(tier) => match self.full_key(key) {
                Ok(full_key) => self
                    .read_through(tier, key, &full_key)
                    .await
                    .map(|copy| copy.and_then(|copy| copy.value.clone())),
                Err(error) => Err(error),
            },
            None => self
                .get_stored(key)
                .await
                .map(|stored| stored.and_then(|stored| stored.value).map(Arc::new)),
        };
        if let Err(error @ Error::Decode { .. }) = &read {
            self.report_decode(error, false);
        }
        read
    }

    /// The local tier's copy under `full_key`, or the store's entry (with its TTL, kept in the
    /// tier unless a write raced the read); `None` if absent or its tags were invalidated.
    async fn read_through(
        &self,
        tier: &Tier<V>,
        key: &str,
        full_key: &str,
    ) -> Result<Option<Arc<Copy<V>>>> {
        let copy = match tier.lookup(full_key, key) {
            Some(copy) => copy,
            None => {
                let ticket = tier.ticket();
                let (bytes, ttl) = match self.inner.backend.get_with_ttl(full_key).await {
                    Ok(Some((bytes, ttl))) => (bytes, Some(ttl)),
                    Ok(None) => return Ok(None),
                    // A store without the capability is read as before, and nothing is held.
                    Err(Error::Unsupported { .. }) => {
                        match self.inner.backend.get(full_key).await {
                            Ok(Some(bytes)) => (bytes, None),
                            Ok(None) => return Ok(None),
                            Err(error) => return Err(self.callers_key(error)),
                        }
                    }
                    Err(error) => return Err(self.callers_key(error)),
                };
                let stored = self.decode_stored(key, bytes.clone())?;
                let copy = tier.copy(ticket, stored, full_key, &bytes, ttl);
                tier.fill(ticket, full_key, key, &copy);
                copy
            }
        };
        if copy
            .header
            .as_ref()
            .is_none_or(|header| header.tags.is_empty())
        {
            return Ok(Some(copy));
        }
        let current = self.headers_current(&[copy.header.as_ref()]).await?;
        Ok(current[0].then_some(copy))
    }

    /// What is stored under `key`, decoded, without reporting decode errors: callers do.
    pub(crate) async fn get_stored(&self, key: &str) -> Result<Option<Stored<V>>> {
        let full_key = self.full_key(key)?;
        if let Some(tier) = &self.inner.local {
            let copy = self.read_through(tier, key, &full_key).await?;
            return Ok(copy.map(|copy| copy.stored(tier.clone)));
        }
        let stored = self.inner.backend.get(&full_key).await;
        let stored = match stored.map_err(|error| self.callers_key(error))? {
            Some(bytes) => self.decode_stored(key, bytes)?,
            None => return Ok(None),
        };
        let current = self.tags_current(&[&stored]).await?;
        Ok(current[0].then_some(stored))
    }

    /// The values of the present keys among `keys`, by the caller's key (without the prefix), in
    /// one store round trip. Missing and expired keys, and negative entries, are left out;
    /// duplicates are fine.
    ///
    /// For batches of thousands of keys prefer [`Cache::get_many_vec`]: a map this size costs
    /// its owner about half a microsecond per key to build and, later, to drop (its entries are
    /// freed in hash order, not in the order they were allocated), more than everything else
    /// the facade adds to the store's answer.
    pub async fn get_many<K: AsRef<str>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<HashMap<String, V>> {
        let full_keys = self.full_keys(keys)?;
        let as_miss = self.inner.decode_policy == DecodePolicy::Miss;
        if self.is_plain() {
            return self.get_many_plain(full_keys, as_miss).await;
        }
        let found = self.get_many_stored(full_keys, as_miss).await?;
        Ok(found
            .into_iter()
            .filter_map(|(key, stored)| Some((key, stored.value?)))
            .collect())
    }

    /// The values of `keys`, in their order: `None` where a key is missing, expired or a negative
    /// entry. One store round trip, like [`Cache::get_many`], without building a map of the
    /// caller's keys: the faster of the two for large batches. A key asked twice gets its
    /// value twice.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> cache_core::Result<()> {
    /// # let store = std::sync::Arc::new(cache_core::testing::ReferenceBackend::default());
    /// let cache: cache_core::Cache<u32> = cache_core::Cache::builder(store).build();
    /// cache.set("a", &1).await?;
    /// assert_eq!(cache.get_many_vec(["a", "b", "a"]).await?, vec![Some(1), None, Some(1)]);
    /// # Ok(()) }
    /// ```
    pub async fn get_many_vec<K: AsRef<str>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<Vec<Option<V>>> {
        let full_keys = self.full_keys(keys)?;
        let as_miss = self.inner.decode_policy == DecodePolicy::Miss;
        if self.is_plain() {
            let mut values = self.get_many_plain_positional(full_keys, as_miss).await?;
            if self.planted(FacadeBug::GetManyVecCompactsMisses) {
                values.sort_by_key(Option::is_none);
            }
            return Ok(values);
        }
        let prefix_len = self.inner.prefix.len();
        let callers: Vec<String> = full_keys
            .iter()
            .map(|full_key| full_key[prefix_len..].to_owned())
            .collect();
        // A key asked twice is found twice, each with its own decoded value.
        let mut found: HashMap<String, Vec<V>> = HashMap::new();
        for (key, stored) in self.get_many_stored(full_keys, as_miss).await? {
            if let Some(value) = stored.value {
                found.entry(key).or_default().push(value);
            }
        }
        Ok(callers
            .iter()
            .map(|key| found.get_mut(key.as_str()).and_then(Vec::pop))
            .collect())
    }

    /// Whether reads need nothing past the serializer: no local tier, and no entry header
    /// (freshness, negative entries, tags), so a batch read is the store's bytes decoded.
    fn is_plain(&self) -> bool {
        self.inner.local.is_none() && !self.inner.freshness.header
    }

    /// A plain batch read ([`Cache::is_plain`]): the store's answers decoded straight into the
    /// map, sized once for them.
    async fn get_many_plain(
        &self,
        mut full_keys: Vec<String>,
        as_miss: bool,
    ) -> Result<HashMap<String, V>> {
        let values = self
            .fetch_many_with::<ReadBytes>(&mut full_keys, as_miss)
            .await?;
        let present = values.iter().filter(|value| value.is_some()).count();
        let mut found = HashMap::with_capacity(present);
        let prefix_len = self.inner.prefix.len();
        for (mut key, value) in full_keys.into_iter().zip(values) {
            let Some(bytes) = value else { continue };
            if let Some(value) = self.decode_plain(&key[prefix_len..], bytes, as_miss)? {
                // The caller's key is the full key without the prefix: cut it in place rather
                // than allocate a copy per key found.
                key.replace_range(..prefix_len, "");
                found.insert(key, value);
            }
        }
        Ok(found)
    }

    /// One value of a plain batch read, decoded: `None` for bytes that are not a `V` under
    /// `as_miss` (reported as a miss), else such bytes fail the call naming the caller's `key`.
    fn decode_plain(&self, key: &str, bytes: Bytes, as_miss: bool) -> Result<Option<V>> {
        match self.inner.serializer.decode(bytes) {
            Ok(value) => Ok(Some(value)),
            Err(source) => {
                let error = Error::Decode {
                    key: key.to_owned(),
                    source,
                };
                self.report_decode(&error, as_miss);
                if as_miss { Ok(None) } else { Err(error) }
            }
        }
    }

    /// [`Cache::get_many_plain`] in the order of `full_keys`: one answer per key, `None` for a
    /// miss and for bytes a decode policy skips.
    async fn get_many_plain_positional(
        &self,
        full_keys: Vec<String>,
        as_miss: bool,
    ) -> Result<Vec<Option<V>>> {
        let asked = full_keys.len();
        let mut keys = full_keys;
        // Only a store that fails a key of the batch makes the positions differ from the order.
        let mut positions: Vec<usize> = Vec::new();
        let tracking = as_miss.then(|| {
            positions.extend(0..asked);
            &mut positions
        });
        let answers = self
            .fetch_many_at::<ReadBytes>(&mut keys, as_miss, tracking)
            .await?;
        let mut values: Vec<Option<V>> = Vec::with_capacity(asked);
        values.resize_with(asked, || None);
        let prefix_len = self.inner.prefix.len();
        for (index, (full_key, answer)) in keys.iter().zip(answers).enumerate() {
            let Some(bytes) = answer else { continue };
            let position = if as_miss { positions[index] } else { index };
            values[position] = self.decode_plain(&full_key[prefix_len..], bytes, as_miss)?;
        }
        Ok(values)
    }

    /// The entries stored under `full_keys`, in one round trip, by the caller's key; entries that
    /// do not decode are left out when `as_miss`, else fail the call.
    pub(crate) async fn get_many_stored(
        &self,
        full_keys: Vec<String>,
        as_miss: bool,
    ) -> Result<Vec<(String, Stored<V>)>> {
        match &self.inner.local {
            Some(_) if self.planted(FacadeBug::GetManyBypassesTier) => {
                self.get_many_from_store(full_keys, as_miss).await
            }
            Some(tier) => Ok(self
                .get_many_through(tier, full_keys, as_miss)
                .await?
                .into_iter()
                .map(|(key, copy)| (key, copy.stored(tier.clone)))
                .collect()),
            None => self.get_many_from_store(full_keys, as_miss).await,
        }
    }

    /// [`Cache::get_many_stored`] through the local tier: its copies, and the rest from the
    /// store in one round trip, with their TTLs (kept in the tier).
    async fn get_many_through(
        &self,
        tier: &Tier<V>,
        full_keys: Vec<String>,
        as_miss: bool,
    ) -> Result<Vec<(String, Arc<Copy<V>>)>> {
        let prefix_len = self.inner.prefix.len();
        let mut copies = Vec::with_capacity(full_keys.len());
        let mut rest = Vec::new();
        for full_key in full_keys {
            match tier.lookup(&full_key, &full_key[prefix_len..]) {
                Some(copy) => copies.push((full_key, copy)),
                None => rest.push(full_key),
            }
        }
        if !rest.is_empty() {
            let ticket = tier.ticket();
            let answers = self.fetch_many(&mut rest, as_miss, true).await?;
            for (full_key, answer) in rest.into_iter().zip(answers) {
                let Some((bytes, ttl)) = answer else { continue };
                let key = &full_key[prefix_len..];
                match self.decode_stored(key, bytes.clone()) {
                    Ok(stored) => {
                        let copy = tier.copy(ticket, stored, &full_key, &bytes, ttl);
                        tier.fill(ticket, &full_key, key, &copy);
                        copies.push((full_key, copy));
                    }
                    Err(error) if as_miss => self.report_decode(&error, true),
                    Err(error) => {
                        self.report_decode(&error, false);
                        return Err(error);
                    }
                }
            }
        }
        let headers: Vec<Option<&Header>> = copies
            .iter()
            .map(|(_, copy)| copy.header.as_ref())
            .collect();
        let current = self.headers_current(&headers).await?;
        Ok(copies
            .into_iter()
            .zip(current)
            .filter_map(|((mut full_key, copy), current)| {
                current.then(|| {
                    full_key.replace_range(..prefix_len, "");
                    (full_key, copy)
                })
            })
            .collect())
    }

    /// The values under `full_keys`, positionally, with their TTLs when `with_ttl` (and the
    /// store keeps that capability); keys the store could not read as bytes are removed from
    /// `full_keys` when `as_miss`, else fail the call.
    async fn fetch_many(
        &self,
        full_keys: &mut Vec<String>,
        as_miss: bool,
        with_ttl: bool,
    ) -> Result<Vec<Option<(Bytes, Option<Ttl>)>>> {
        if with_ttl {
            let answer = self
                .fetch_many_with::<ReadWithTtl>(full_keys, as_miss)
                .await;
            match answer {
                Err(Error::Unsupported { .. }) => {}
                answer => {
                    return answer.map(|values| {
                        values
                            .into_iter()
                            .map(|value| value.map(|(bytes, ttl)| (bytes, Some(ttl))))
                            .collect()
                    });
                }
            }
        }
        let values = self
            .fetch_many_with::<ReadBytes>(full_keys, as_miss)
            .await?;
        Ok(values
            .into_iter()
            .map(|value| value.map(|bytes| (bytes, None)))
            .collect())
    }

    /// Asks the store for `full_keys` with `ask` (a batch read of the [`Backend`]). A store that
    /// cannot read one key of the batch as bytes (a Redis key of another type) fails the batch
    /// naming it; under `as_miss` that key is taken out of `full_keys` and the rest asked again
    /// (each round removes a key, so this ends), else the call fails. `Unsupported` is returned
    /// as it is, for the caller to fall back.
    async fn fetch_many_with<A: BatchRead>(
        &self,
        full_keys: &mut Vec<String>,
        as_miss: bool,
    ) -> Result<Vec<A::Answer>> {
        self.fetch_many_at::<A>(full_keys, as_miss, None).await
    }

    /// [`Cache::fetch_many_with`], keeping in `positions` (when given, and filled with
    /// `0..full_keys.len()`) the original position of each key left in `full_keys`.
    async fn fetch_many_at<A: BatchRead>(
        &self,
        full_keys: &mut Vec<String>,
        as_miss: bool,
        mut positions: Option<&mut Vec<usize>>,
    ) -> Result<Vec<A::Answer>> {
        loop {
            match A::ask(self.inner.backend.as_ref(), full_keys).await {
                Ok(values) => return Ok(values),
                Err(error @ Error::Unsupported { .. }) => return Err(error),
                Err(Error::Decode { key, source }) if as_miss && full_keys.contains(&key) => {
                    let error = self.callers_key(Error::Decode {
                        key: key.clone(),
                        source,
                    });
                    self.report_decode(&error, true);
                    if let Some(positions) = positions.as_deref_mut() {
                        let mut kept = full_keys.iter().map(|asked| *asked != key);
                        positions.retain(|_| kept.next().unwrap_or(false));
                    }
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
        }
    }

    /// [`Cache::get_many_stored`] from the store alone.
    async fn get_many_from_store(
        &self,
        mut full_keys: Vec<String>,
        as_miss: bool,
    ) -> Result<Vec<(String, Stored<V>)>> {
        let values = self
            .fetch_many_with::<ReadBytes>(&mut full_keys, as_miss)
            .await?;
        let prefix_len = self.inner.prefix.len();
        let mut found = Vec::with_capacity(values.len());
        for (mut key, value) in full_keys.into_iter().zip(values) {
            if let Some(bytes) = value {
                // The caller's key is the full key without the prefix: cut it in place rather
                // than allocate a copy per key found.
                key.replace_range(..prefix_len, "");
                match self.decode_stored(&key, bytes) {
                    Ok(stored) => found.push((key, stored)),
                    Err(error) if as_miss => self.report_decode(&error, true),
                    Err(error) => {
                        self.report_decode(&error, false);
                        return Err(error);
                    }
                }
            }
        }
        let stored: Vec<&Stored<V>> = found.iter().map(|(_, stored)| stored).collect();
        let current = self.tags_current(&stored).await?;
        Ok(found
            .into_iter()
            .zip(current)
            .filter_map(|(found, current)| current.then_some(found))
            .collect())
    }

    /// Writes `value` under `key` with the default TTL.
    pub async fn set(&self, key: &str, value: &V) -> Result<()> {
        self.set_with(key, value, SetOptions::new()).await.map(drop)
    }

    /// Writes `value` under `key` with `options`; returns whether it wrote (only
    /// [`SetOptions::if_not_exists`] can make it `false`).
    pub async fn set_with(&self, key: &str, value: &V, options: SetOptions) -> Result<bool> {
        let ttl = self.jittered(options.resolve_ttl(self.inner.default_ttl));
        self.write(
            key,
            Some(value),
            ttl,
            None,
            options.condition,
            &options.tags,
        )
        .await
    }

    /// Writes `value` (or, for `None`, a negative entry) with `ttl`, and with `fresh_for` or the
    /// cache's freshness.
    pub(crate) async fn write(
        &self,
        key: &str,
        value: Option<&V>,
        ttl: Option<Duration>,
        fresh_for: Option<Duration>,
        condition: Condition,
        tags: &[String],
    ) -> Result<bool> {
        let full_key = self.full_key(key)?;
        // The versions are read before the write: an invalidation that lands in between makes
        // this entry absent, as it must.
        let stamped = self.stamp(tags).await?;
        let bytes = self.encode_stored(key, value, ttl, fresh_for, &stamped)?;
        let written = self
            .inner
            .backend
            .set(&full_key, bytes, ttl, condition)
            .await?;
        if self.planted(FacadeBug::StampAtWriteEnd) && !stamped.is_empty() {
            let now = self.stamp(tags).await?;
            if now != stamped {
                let bytes = self.encode_stored(key, value, ttl, fresh_for, &now)?;
                self.inner
                    .backend
                    .set(&full_key, bytes, ttl, condition)
                    .await?;
            }
        }
        Ok(written)
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
        let ttl = self.jittered(options.resolve_ttl(self.inner.default_ttl));
        let items: Vec<(K, B)> = items.into_iter().collect();
        if items.is_empty() {
            return Ok(());
        }
        let stamped = self.stamp(&options.tags).await?;
        let entries = items
            .iter()
            .map(|(key, value)| {
                let key = key.as_ref();
                Ok((
                    self.full_key(key)?.into_owned(),
                    self.encode_stored(key, Some(value.borrow()), ttl, None, &stamped)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        self.inner.backend.set_many(entries, ttl).await
    }

    /// Removes `key`; returns whether it was present.
    pub async fn delete(&self, key: &str) -> Result<bool> {
        self.inner.backend.delete(&self.full_key(key)?).await
    }

    /// Removes `keys` in one round trip; returns how many distinct keys were present.
    pub async fn delete_many<K: AsRef<str>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<u64> {
        let full_keys = self.full_keys(keys)?;
        if full_keys.is_empty() {
            return Ok(0);
        }
        self.inner.backend.delete_many(&full_keys).await
    }

    /// Whether `key` is present and not expired. A negative entry, or one whose tags were
    /// invalidated, does not count: in a cache that writes entry headers this reads the entry
    /// instead of asking the store for presence alone.
    pub async fn contains(&self, key: &str) -> Result<bool> {
        if !self.inner.freshness.header {
            return self.inner.backend.contains(&self.full_key(key)?).await;
        }
        match self.get_stored(key).await {
            Ok(stored) => Ok(stored.is_some_and(|stored| stored.value.is_some())),
            // Bytes that do not decode are present all the same, as in a cache without a header.
            Err(Error::Decode { .. }) => Ok(true),
            Err(error) => Err(error),
        }
    }

    /// Changes the expiry of a present key: `Some(d)` expires it after `d`, `None` makes it
    /// eternal. Returns whether the key was present.
    pub async fn expire_in(&self, key: &str, ttl: Option<Duration>) -> Result<bool> {
        self.inner
            .backend
            .expire_in(&self.full_key(key)?, ttl)
            .await
    }

    /// The expiry of `key`: `None` if absent, else [`Ttl::Eternal`] or [`Ttl::Remaining`].
    pub async fn ttl(&self, key: &str) -> Result<Option<Ttl>> {
        self.inner.backend.ttl(&self.full_key(key)?).await
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

    /// The store's key for the caller's `key`, which must not reach into the space a tagged
    /// cache keeps its tag versions in.
    pub(crate) fn full_key<'k>(&self, key: &'k str) -> Result<Cow<'k, str>> {
        if self.inner.tagged
            && key.starts_with(crate::tags::TAG_MARK)
            && !self.planted(FacadeBug::ReservedKeysReachable)
        {
            return Err(Error::invalid_key(
                key,
                "keys starting with U+FFFF hold the tag versions of a tagged cache",
            ));
        }
        Ok(self.store_key(key))
    }

    /// The store's keys for the caller's `keys`, each checked as [`Cache::full_key`] checks it.
    pub(crate) fn full_keys<K: AsRef<str>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<Vec<String>> {
        keys.into_iter()
            .map(|key| Ok(self.full_key(key.as_ref())?.into_owned()))
            .collect()
    }

    /// The store's key for `key`, checked already. Without a prefix it is the caller's key
    /// itself, borrowed, so that single-key calls allocate nothing for it.
    pub(crate) fn store_key<'k>(&self, key: &'k str) -> Cow<'k, str> {
        if self.inner.prefix.is_empty() {
            return Cow::Borrowed(key);
        }
        let mut full_key = String::with_capacity(self.inner.prefix.len() + key.len());
        full_key.push_str(&self.inner.prefix);
        full_key.push_str(key);
        Cow::Owned(full_key)
    }

    /// A decode error from the store names the store's key; the caller knows its own.
    pub(crate) fn callers_key(&self, error: Error) -> Error {
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

    /// Whether this cache was built with `bug` (only ever by the conformance kit's own tests).
    #[inline]
    pub(crate) fn planted(&self, bug: FacadeBug) -> bool {
        #[cfg(feature = "conformance")]
        {
            self.inner.planted == Some(bug)
        }
        #[cfg(not(feature = "conformance"))]
        {
            let _ = bug;
            false
        }
    }

    /// The bytes to store for `value` (`None`: a negative entry): the serializer's alone, or
    /// after an entry header in a cache with freshness.
    pub(crate) fn encode_stored(
        &self,
        key: &str,
        value: Option<&V>,
        ttl: Option<Duration>,
        fresh_for: Option<Duration>,
        tags: &[(String, u64)],
    ) -> Result<Bytes> {
        let payload = match value {
            Some(value) => self
                .inner
                .serializer
                .encode(value)
                .map_err(|source| Error::Encode {
                    key: key.to_owned(),
                    source,
                })?,
            None => Bytes::new(),
        };
        let freshness = &self.inner.freshness;
        if !freshness.header && !self.planted(FacadeBug::HeaderOnEveryCache) {
            return Ok(payload);
        }
        let now = now_millis();
        let expires_at_ms = ttl.map(|ttl| now.saturating_add(ttl_millis(ttl)));
        let fresh_for = match value {
            None => None,
            Some(_) => fresh_for
                .or(freshness.fresh_for)
                .map(|d| self.jittered_once(d)),
        };
        let mut fresh_until_ms = fresh_for
            .map(|d| now.saturating_add(ttl_millis(d)))
            .filter(|until| expires_at_ms.is_none_or(|expires| *until < expires));
        if self.planted(FacadeBug::FreshUntilFromTtl) {
            fresh_until_ms = fresh_until_ms.and(expires_at_ms);
        }
        let header = Header {
            written_at_ms: now,
            fresh_until_ms,
            expires_at_ms,
            negative: value.is_none(),
            tags: tags.to_vec(),
        };
        header::encode(&header, &payload).map_err(|source| Error::Encode {
            key: key.to_owned(),
            source: Box::new(source),
        })
    }

    /// What `bytes` stored under `key` hold: the header, if this cache writes one, and the value.
    pub(crate) fn decode_stored(&self, key: &str, bytes: Bytes) -> Result<Stored<V>> {
        let decode_error = |source| Error::Decode {
            key: key.to_owned(),
            source,
        };
        if !self.inner.freshness.header {
            let value = self.inner.serializer.decode(bytes).map_err(decode_error)?;
            return Ok(Stored {
                value: Some(value),
                header: None,
            });
        }
        let (header, payload) = match header::decode(&bytes) {
            Ok(decoded) => decoded,
            Err(_) if self.planted(FacadeBug::BadHeaderIsAbsent) => {
                return Ok(Stored {
                    value: None,
                    header: None,
                });
            }
            Err(error) => return Err(decode_error(Box::new(error))),
        };
        let value = if header.negative {
            None
        } else {
            Some(
                self.inner
                    .serializer
                    .decode(payload)
                    .map_err(decode_error)?,
            )
        };
        Ok(Stored {
            value,
            header: Some(header),
        })
    }

    /// `ttl` shortened by the jitter, if the cache has one.
    pub(crate) fn jittered(&self, ttl: Option<Duration>) -> Option<Duration> {
        ttl.map(|ttl| self.jittered_once(ttl))
    }

    fn jittered_once(&self, period: Duration) -> Duration {
        match &self.inner.freshness.jitter {
            None => period,
            Some((fraction, rng)) => {
                let draw = rng.lock().unwrap_or_else(PoisonError::into_inner).f64();
                if self.planted(FacadeBug::JitterLengthens) {
                    return period.mul_f64(1.0 + fraction * (draw - 0.5));
                }
                period.mul_f64(1.0 - fraction * draw)
            }
        }
    }
}

/// Milliseconds since the Unix epoch, as entry headers count time.
pub(crate) fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
        })
}

impl<V> Cache<V> {
    /// Reports an entry that does not decode: as a warning when a [`DecodePolicy`] treats it as
    /// a miss (an error the caller sees needs none), and to the observer either way.
    pub(crate) fn report_decode(&self, error: &Error, as_miss: bool) {
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
