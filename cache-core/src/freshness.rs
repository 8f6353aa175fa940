//! Stale-while-revalidate, fail-safe and negative entries: `get_entry`, `get_or_refresh`,
//! `refresh` and `get_many_or_refresh` (atproto's `stale_ttl` and `max_ttl`).

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::cache::{Stored, now_millis};
use crate::layers::CacheEvent;
use crate::loading::{Landed, LoadKind, Recheck};
use crate::locks::{FleetTurn, LeaseHolder};

/// One key a batch load leads in this process: the caller's key, the full key, the guard.
type Leader<V> = (String, String, LeaderGuard<Option<V>>);

/// A batch load after one try of the fleet's leases: the keys it leads (and the leases it
/// holds), the keys another process holds, the values other processes loaded.
type FleetTurns<V> = (
    Vec<Leader<V>>,
    Vec<LeaseHolder>,
    Vec<Leader<V>>,
    HashMap<String, V>,
);
use crate::planted::FacadeBug;
use crate::single_flight::{LeaderGuard, Role};
use crate::{BoxError, Cache, Condition, DecodePolicy, Error, Result};

/// Whether an entry is within its `fresh_for` period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Freshness {
    /// Within `fresh_for` of its write (or written by a cache without freshness).
    Fresh,
    /// Past `fresh_for`, before its TTL: served, and worth a refresh.
    Stale,
}

/// An entry with what the cache knows of it: atproto's `CachedDidResult`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Entry<V> {
    /// The value; `None` for a negative entry, one that remembers a loader's "not found".
    pub value: Option<V>,
    /// Fresh or stale, now.
    pub state: Freshness,
    /// When it was written, by the writer's clock; `None` in a cache without freshness, whose
    /// entries carry no header.
    pub written_at: Option<SystemTime>,
    /// When it turns (or turned) stale; `None`: fresh until it expires.
    pub stale_at: Option<SystemTime>,
    /// When it expires, as its writer computed from the TTL; `None`: never, or not known.
    /// [`Cache::expire_in`] changes the store's expiry, not this record of it.
    pub expires_at: Option<SystemTime>,
}

impl<V> Entry<V> {
    /// Whether the entry remembers a "not found" rather than holding a value.
    pub fn is_negative(&self) -> bool {
        self.value.is_none()
    }

    /// Whether the entry is fresh.
    pub fn is_fresh(&self) -> bool {
        self.state == Freshness::Fresh
    }
}

/// What a loader of [`Cache::get_or_refresh`] and its siblings found: a value, with its own TTL
/// and freshness if the source knows best (HTTP `Cache-Control`, a document's own hints), or
/// "not found". A loader may return `V` itself: it converts into a value with the cache's
/// settings.
///
/// ```
/// use std::time::Duration;
/// use cache_core::Loaded;
///
/// let hinted = Loaded::value("doc").ttl(Duration::from_secs(600)).fresh_for(Duration::from_secs(60));
/// let missing = Loaded::<&str>::not_found().ttl(Duration::from_secs(30));
/// let plain: Loaded<&str> = "doc".into();
/// # let _ = (hinted, missing, plain);
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct Loaded<V> {
    pub(crate) value: Option<V>,
    pub(crate) ttl: Option<Duration>,
    pub(crate) fresh_for: Option<Duration>,
    pub(crate) tags: Vec<String>,
}

impl<V> Loaded<V> {
    /// A value, stored with the cache's default TTL and freshness unless set here.
    pub fn value(value: V) -> Self {
        Self {
            value: Some(value),
            ttl: None,
            fresh_for: None,
            tags: Vec::new(),
        }
    }

    /// The source has no such value: remembered as a negative entry for the cache's
    /// [`negative_ttl`](crate::CacheBuilder::negative_ttl), or this one's [`Loaded::ttl`].
    pub fn not_found() -> Self {
        Self {
            value: None,
            ttl: None,
            fresh_for: None,
            tags: Vec::new(),
        }
    }

    /// The TTL to store this answer with, instead of the cache's.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Stores the value under `tags` (see [`SetOptions::tags`](crate::SetOptions::tags)); needs a
    /// cache built with [`CacheBuilder::tagged`](crate::CacheBuilder::tagged). A "not found" is
    /// stored untagged.
    pub fn tags<I, T>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    /// How long this value stays fresh, instead of the cache's `fresh_for`. Needs a cache with
    /// an entry header (one built with `fresh_for` or `negative_ttl`); others ignore it.
    pub fn fresh_for(mut self, fresh_for: Duration) -> Self {
        self.fresh_for = Some(fresh_for);
        self
    }
}

impl<V> From<V> for Loaded<V> {
    fn from(value: V) -> Self {
        Self::value(value)
    }
}

/// How a load treats a "not found" and a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The key was absent: "not found" becomes a negative entry.
    Absent,
    /// A background refresh of a stale value: "not found" and failures keep the stale value
    /// and throttle the key's next refresh (fail-safe).
    Background,
    /// An explicit refresh: "not found" keeps a present value, or else becomes a negative entry.
    Asked,
}

fn time_of(ms: u64) -> Option<SystemTime> {
    UNIX_EPOCH.checked_add(Duration::from_millis(ms))
}

impl<V> Stored<V> {
    /// Whether the entry is past its `fresh_for` now.
    pub(crate) fn is_stale(&self) -> bool {
        self.header
            .as_ref()
            .and_then(|header| header.fresh_until_ms)
            .is_some_and(|until| now_millis() >= until)
    }

    fn into_entry(self) -> Entry<V> {
        let state = if self.is_stale() {
            Freshness::Stale
        } else {
            Freshness::Fresh
        };
        let (written_at, stale_at, expires_at) = match &self.header {
            Some(header) => (
                time_of(header.written_at_ms),
                header.fresh_until_ms.and_then(time_of),
                header.expires_at_ms.and_then(time_of),
            ),
            None => (None, None, None),
        };
        Entry {
            value: self.value,
            state,
            written_at,
            stale_at,
            expires_at,
        }
    }
}

impl<V: Clone + Send + Sync + 'static> Cache<V> {
    /// The entry under `key` with its state and times, `None` if absent or expired: a negative
    /// entry is returned as such ([`Entry::is_negative`]).
    pub async fn get_entry(&self, key: &str) -> Result<Option<Entry<V>>> {
        match self.get_stored(key).await {
            Ok(stored) => Ok(stored.map(Stored::into_entry)),
            Err(error) => {
                if matches!(error, Error::Decode { .. }) {
                    self.report_decode(&error, false);
                }
                Err(error)
            }
        }
    }

    /// Stale-while-revalidate: a fresh value at once; a stale value at once, while one
    /// background refresh per key runs `loader`; and, when absent, `loader`'s answer (one load
    /// per key for all callers, as in [`Cache::get_or_insert_with`]). `None`: the source has no
    /// such value, now or in a negative entry.
    ///
    /// The loader is `Send + 'static` because a stale read hands it to a background task: move
    /// what it needs into it. A background refresh runs on the Tokio runtime of the caller, which
    /// does not wait for it (without a Tokio runtime, stale values are served unrefreshed);
    /// at most [`max_background_refreshes`](crate::CacheBuilder::max_background_refreshes) run
    /// at once, and a stale read past that serves its value without one. A refresh that fails,
    /// finds nothing or panics keeps the stale value served until its TTL (fail-safe), reports the
    /// failure to the observer (and as a `tracing` warning), and holds back the key's next
    /// refresh for [`refresh_retry_after`](crate::CacheBuilder::refresh_retry_after). A load of
    /// an absent key that fails returns [`Error::Load`] and caches nothing.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> cache_core::Result<()> {
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use cache_core::{Cache, Loaded, testing::ReferenceBackend};
    ///
    /// let cache: Cache<String> = Cache::builder(Arc::new(ReferenceBackend::default()))
    ///     .default_ttl(Duration::from_secs(86_400))
    ///     .fresh_for(Duration::from_secs(3_600))
    ///     .build();
    /// let doc = cache
    ///     .get_or_refresh("did:plc:a", || async { Ok::<_, std::io::Error>("doc".to_string()) })
    ///     .await?;
    /// assert_eq!(doc.as_deref(), Some("doc"));
    ///
    /// // "Not found" is remembered: the next call answers without asking the source.
    /// let none = cache
    ///     .get_or_refresh("did:plc:gone", || async { Ok::<_, std::io::Error>(Loaded::not_found()) })
    ///     .await?;
    /// assert_eq!(none, None);
    /// assert!(cache.get_entry("did:plc:gone").await?.expect("remembered").is_negative());
    /// # Ok(()) }
    /// ```
    pub async fn get_or_refresh<F, Fut, L, E>(&self, key: &str, loader: F) -> Result<Option<V>>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<L, E>> + Send + 'static,
        L: Into<Loaded<V>>,
        E: Into<BoxError>,
    {
        if let Some(stored) = self.get_stored_for_loading(key).await? {
            if stored.is_stale() {
                self.report_stale(key);
                if self.planted(FacadeBug::RefreshInForeground) {
                    return self.refresh(key, loader).await;
                }
                self.refresh_in_background(key, loader);
            }
            return Ok(stored.value);
        }
        self.load_once(key, Recheck::Entry, false, || {
            self.load_and_store(key, loader, Mode::Absent)
        })
        .await
    }

    /// Reloads `key` now with `loader` (one load per key for all callers) and stores what it
    /// finds. A loader that fails returns [`Error::Load`] and keeps the old value; one that
    /// finds nothing returns `None` and keeps the old value, or, when there is none, stores a
    /// negative entry. atproto's `refresh(did, get_doc_callback)`.
    pub async fn refresh<F, Fut, L, E>(&self, key: &str, loader: F) -> Result<Option<V>>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<L, E>>,
        L: Into<Loaded<V>>,
        E: Into<BoxError>,
    {
        let full_key = self.full_key(key)?.into_owned();
        self.refuse_reentrant_load(key, &full_key)?;
        let guard = loop {
            match self.inner.flights.join(&full_key) {
                Role::Leader(guard) => break guard,
                // A load in flight is as new as this one would be.
                Role::Waiter(slot) => match self.wait_for_load(key, slot).await? {
                    Some(Ok(value)) => return Ok(value),
                    Some(Err(source)) => {
                        return Err(Error::Load {
                            key: key.to_owned(),
                            source,
                        });
                    }
                    None => {}
                },
            }
        };
        self.lead(
            key,
            full_key,
            guard,
            LoadKind::Refresh,
            Recheck::Entry,
            || self.load_and_store(key, loader, Mode::Asked),
        )
        .await
    }

    /// [`Cache::get_or_refresh`] for many keys in one store round trip: the fresh and stale
    /// values at once; one background call of `loader` for all stale keys; and one call of
    /// `loader` for all absent keys, which this call waits for. Keys another caller is loading
    /// already wait for that load instead (single flight per key). `loader` gets the caller's
    /// keys and answers with those it found; a key it leaves out is "not found". Absent keys the
    /// source does not have are left out of the answer, as are negative entries.
    ///
    /// A loader failure fails the call with [`Error::Load`] naming the first key it was asked
    /// for, unless every key was present (then only the background refresh failed).
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
        let mut seen = HashSet::new();
        let asked: Vec<String> = keys
            .into_iter()
            .map(|key| key.as_ref().to_owned())
            .filter(|key| seen.insert(key.clone()))
            .collect();
        let full_keys = asked
            .iter()
            .map(|key| Ok(self.full_key(key)?.into_owned()))
            .collect::<Result<_>>()?;
        let as_miss = self.inner.decode_policy != DecodePolicy::Fail;
        let mut found = HashMap::with_capacity(asked.len());
        let mut present = HashSet::with_capacity(asked.len());
        let mut stale = Vec::new();
        for (key, stored) in self.get_many_stored(full_keys, as_miss).await? {
            if stored.is_stale() {
                self.report_stale(&key);
                stale.push(key.clone());
            }
            present.insert(key.clone());
            if let Some(value) = stored.value {
                found.insert(key, value);
            }
        }
        if !stale.is_empty() {
            self.refresh_many_in_background(stale, loader.clone());
        }
        let absent: Vec<String> = asked
            .into_iter()
            .filter(|key| !present.contains(key))
            .collect();
        if !absent.is_empty() {
            found.extend(self.load_many(absent, loader).await?);
        }
        Ok(found)
    }

    /// Runs `loader` and stores what it found as `mode` says.
    async fn load_and_store<F, Fut, L, E>(&self, key: &str, loader: F, mode: Mode) -> Landed<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<L, E>>,
        L: Into<Loaded<V>>,
        E: Into<BoxError>,
    {
        // Converted at once, so that what is held across the store's await is `Send`.
        let answer: std::result::Result<Loaded<V>, BoxError> =
            loader().await.map(Into::into).map_err(Into::into);
        match answer {
            Ok(loaded) => {
                let stored = self.store_loaded(key, &loaded, mode).await;
                Landed {
                    outcome: Ok(loaded.value),
                    stored,
                }
            }
            Err(error) => {
                if mode == Mode::Background {
                    self.throttle(key);
                    if self.planted(FacadeBug::FailedRefreshDropsStale) {
                        let _ = self.delete(key).await;
                    }
                }
                Landed::failed(error)
            }
        }
    }

    /// Stores a loader's answer for `key` as `mode` says.
    async fn store_loaded(&self, key: &str, loaded: &Loaded<V>, mode: Mode) -> Result<()> {
        if let Some(value) = &loaded.value {
            self.unthrottle(key);
            let own_ttl = loaded
                .ttl
                .filter(|_| !self.planted(FacadeBug::LoaderTtlIgnored));
            let ttl = self.jittered(own_ttl.or(self.inner.default_ttl));
            let tags: &[String] = if self.planted(FacadeBug::LoaderTagsIgnored) {
                &[]
            } else {
                &loaded.tags
            };
            return self
                .write(
                    key,
                    Some(value),
                    ttl,
                    loaded.fresh_for,
                    Condition::Always,
                    tags,
                )
                .await
                .map(drop);
        }
        match mode {
            Mode::Background => {
                self.throttle(key);
                if self.planted(FacadeBug::NotFoundDropsStale) {
                    self.delete(key).await?;
                }
                Ok(())
            }
            Mode::Asked if self.contains(key).await? => Ok(()),
            Mode::Asked | Mode::Absent => self.remember_not_found(key, loaded.ttl).await,
        }
    }

    /// Writes a negative entry for `key`, if this cache keeps them.
    async fn remember_not_found(&self, key: &str, ttl: Option<Duration>) -> Result<()> {
        let Some(ttl) = ttl.or(self.inner.freshness.negative_ttl) else {
            return Ok(());
        };
        if !self.inner.freshness.header || self.planted(FacadeBug::NegativeNotRemembered) {
            return Ok(());
        }
        self.write(
            key,
            None,
            self.jittered(Some(ttl)),
            None,
            Condition::Always,
            &[],
        )
        .await
        .map(drop)
    }

    /// Starts a background refresh of the stale `key`, unless one runs already, the key's last
    /// one failed too recently, every refresh slot is taken, or there is no Tokio runtime.
    fn refresh_in_background<F, Fut, L, E>(&self, key: &str, loader: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<L, E>> + Send + 'static,
        L: Into<Loaded<V>>,
        E: Into<BoxError>,
    {
        let Some((runtime, permit)) = self.refresh_slot(std::slice::from_ref(&key)) else {
            return;
        };
        let full_key = self.store_key(key).into_owned();
        let flight = if self.planted(FacadeBug::RefreshPerReader) {
            format!("{full_key}\0{}", fastrand::u64(..))
        } else {
            full_key.clone()
        };
        let Role::Leader(guard) = self.inner.flights.join(&flight) else {
            return;
        };
        let cache = self.clone();
        let owned = key.to_owned();
        let work = async move {
            cache
                .lead(
                    &owned,
                    full_key,
                    guard,
                    LoadKind::Refresh,
                    Recheck::Entry,
                    || cache.load_and_store(&owned, loader, Mode::Background),
                )
                .await
        };
        self.spawn_refresh(runtime, permit, vec![key.to_owned()], work);
    }

    /// Runs the background refresh `work` of `keys` as a task of its own, watched by another
    /// that holds the refresh slot: a loader that panics then ends as a failed refresh (the
    /// stale values stay, the keys are held back, the failure is reported) rather than as a lost
    /// task that the next stale read starts again at once.
    fn spawn_refresh<T: Send + 'static>(
        &self,
        runtime: tokio::runtime::Handle,
        permit: tokio::sync::OwnedSemaphorePermit,
        keys: Vec<String>,
        work: impl Future<Output = Result<T>> + Send + 'static,
    ) {
        let cache = self.clone();
        let watched = runtime.spawn(work);
        runtime.spawn(async move {
            let _permit = permit;
            let started = Instant::now();
            match watched.await {
                Ok(Ok(_)) => {}
                Ok(Err(error)) => warn_refresh_failed(&error),
                Err(ended) if ended.is_panic() => {
                    let source: Arc<dyn std::error::Error + Send + Sync> =
                        Arc::from(BoxError::from("the loader panicked"));
                    for key in keys {
                        if !cache.planted(FacadeBug::PanickedRefreshNotThrottled) {
                            cache.throttle(&key);
                        }
                        let error = Error::Load {
                            key,
                            source: Arc::clone(&source),
                        };
                        let key = error.key().unwrap_or_default();
                        cache.report_load(
                            key,
                            LoadKind::Refresh,
                            started.elapsed(),
                            Some(&error),
                            false,
                        );
                        warn_refresh_failed(&error);
                    }
                }
                // Cancelled: the runtime is shutting down.
                Err(_) => {}
            }
        });
    }

    /// A runtime and a refresh slot for a background refresh of `keys`, if the keys are not
    /// held back after a failure, a slot is free and a Tokio runtime runs this call.
    fn refresh_slot(
        &self,
        keys: &[impl AsRef<str>],
    ) -> Option<(tokio::runtime::Handle, tokio::sync::OwnedSemaphorePermit)> {
        if keys.iter().all(|key| self.is_throttled(key.as_ref())) {
            return None;
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let permit = Arc::clone(&self.inner.freshness.refresh_slots)
            .try_acquire_owned()
            .ok()?;
        Some((runtime, permit))
    }

    /// One background call of `loader` for the stale `keys` this caller may refresh.
    fn refresh_many_in_background<F, Fut, L, E>(&self, keys: Vec<String>, loader: F)
    where
        F: Fn(Vec<String>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<HashMap<String, L>, E>> + Send + 'static,
        L: Into<Loaded<V>> + Send + 'static,
        E: Into<BoxError> + Send + 'static,
    {
        let keys: Vec<String> = keys
            .into_iter()
            .filter(|key| !self.is_throttled(key))
            .collect();
        let Some((runtime, permit)) = self.refresh_slot(&keys) else {
            return;
        };
        let leaders = self.lead_many(keys);
        if leaders.is_empty() {
            return;
        }
        let keys = leaders.iter().map(|(key, _, _)| key.clone()).collect();
        let cache = self.clone();
        let work = async move {
            cache
                .run_many(leaders, loader, Mode::Background, LoadKind::Refresh)
                .await
        };
        self.spawn_refresh(runtime, permit, keys, work);
    }

    /// Loads the absent `keys`: one call of `loader` for those no other caller is loading, and a
    /// wait for the others.
    async fn load_many<F, Fut, L, E>(
        &self,
        keys: Vec<String>,
        loader: F,
    ) -> Result<HashMap<String, V>>
    where
        F: Fn(Vec<String>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<HashMap<String, L>, E>> + Send + 'static,
        L: Into<Loaded<V>> + Send + 'static,
        E: Into<BoxError> + Send + 'static,
    {
        let mut leaders = Vec::new();
        let mut waiting = Vec::new();
        for key in keys {
            let full_key = self.full_key(&key)?.into_owned();
            self.refuse_reentrant_load(&key, &full_key)?;
            match self.inner.flights.join(&full_key) {
                Role::Leader(guard) => leaders.push((key, full_key, guard)),
                Role::Waiter(slot) => waiting.push((key, slot)),
            }
        }
        let mut found = HashMap::new();
        if self.planted(FacadeBug::BatchLoaderPerKey) {
            for leader in leaders {
                let one = self
                    .run_many(vec![leader], loader.clone(), Mode::Absent, LoadKind::Load)
                    .await?;
                found.extend(one);
            }
        } else if !leaders.is_empty() {
            found = self
                .run_many(leaders, loader.clone(), Mode::Absent, LoadKind::Load)
                .await?;
        }
        for (key, slot) in waiting {
            match self.wait_for_load(&key, slot).await? {
                Some(Ok(Some(value))) => {
                    found.insert(key, value);
                }
                Some(Ok(None)) => {}
                Some(Err(source)) => return Err(Error::Load { key, source }),
                // That caller went away: load the key alone.
                None => {
                    let loader = loader.clone();
                    let one = key.clone();
                    let loaded = self
                        .get_or_refresh(&key, move || async move {
                            let mut answers = loader(vec![one.clone()]).await?;
                            Ok::<_, E>(
                                answers
                                    .remove(&one)
                                    .map_or_else(Loaded::not_found, Into::into),
                            )
                        })
                        .await?;
                    if let Some(value) = loaded {
                        found.insert(key, value);
                    }
                }
            }
        }
        Ok(found)
    }

    /// The guards of the `keys` no other caller is loading.
    fn lead_many(&self, keys: Vec<String>) -> Vec<(String, String, LeaderGuard<Option<V>>)> {
        keys.into_iter()
            .filter_map(|key| {
                let full_key = self.store_key(&key).into_owned();
                match self.inner.flights.join(&full_key) {
                    Role::Leader(guard) => Some((key, full_key, guard)),
                    Role::Waiter(_) => None,
                }
            })
            .collect()
    }

    /// Calls `loader` once for the keys whose guards this caller holds, stores the answers (the
    /// values with the cache's settings in one atomic batch), hands each key's outcome to its
    /// waiters and reports each load. Returns the values found.
    ///
    /// With fleet-wide single flight, the keys whose leases it gets at once are loaded first;
    /// then each key another process held is waited for on its own, and loaded alone if its
    /// lease comes free without a value: a batch never waits while it holds leases, so two
    /// processes that each got some of the keys cannot wait for each other.
    async fn run_many<F, Fut, L, E>(
        &self,
        leaders: Vec<(String, String, LeaderGuard<Option<V>>)>,
        loader: F,
        mode: Mode,
        kind: LoadKind,
    ) -> Result<HashMap<String, V>>
    where
        F: Fn(Vec<String>) -> Fut,
        Fut: Future<Output = std::result::Result<HashMap<String, L>, E>>,
        L: Into<Loaded<V>>,
        E: Into<BoxError>,
    {
        let (leaders, leases, busy, mut found) = self.fleet_turns(leaders, kind).await?;
        if !leaders.is_empty() {
            found.extend(
                self.run_leading(leaders, leases, &loader, mode, kind)
                    .await?,
            );
        }
        let one_by_one = busy.into_iter().map(|(key, full_key, guard)| {
            let loader = &loader;
            async move {
                match self
                    .fleet_turn(&key, &full_key, kind, Recheck::Entry)
                    .await?
                {
                    FleetTurn::Done(value) => {
                        guard.publish(Ok(value.clone()));
                        Ok(value
                            .map(|value| HashMap::from([(key, value)]))
                            .unwrap_or_default())
                    }
                    FleetTurn::Lead(lease) => {
                        let leader = vec![(key, full_key, guard)];
                        self.run_leading(leader, vec![lease], loader, mode, kind)
                            .await
                    }
                    FleetTurn::Alone | FleetTurn::OwnLoad | FleetTurn::Busy => {
                        let leader = vec![(key, full_key, guard)];
                        self.run_leading(leader, Vec::new(), loader, mode, kind)
                            .await
                    }
                }
            }
        });
        for one in futures_util::future::join_all(one_by_one).await {
            found.extend(one?);
        }
        Ok(found)
    }

    /// [`Cache::run_many`] for the keys this caller leads, holding `leases` until their values
    /// are stored.
    async fn run_leading<F, Fut, L, E>(
        &self,
        leaders: Vec<(String, String, LeaderGuard<Option<V>>)>,
        leases: Vec<LeaseHolder>,
        loader: &F,
        mode: Mode,
        kind: LoadKind,
    ) -> Result<HashMap<String, V>>
    where
        F: Fn(Vec<String>) -> Fut,
        Fut: Future<Output = std::result::Result<HashMap<String, L>, E>>,
        L: Into<Loaded<V>>,
        E: Into<BoxError>,
    {
        let started = Instant::now();
        let keys: Vec<String> = leaders.iter().map(|(key, _, _)| key.clone()).collect();
        let loading = leaders
            .iter()
            .map(|(_, full_key, _)| full_key.clone())
            .collect();
        let answers = self.scoped_load(loading, loader(keys)).await;
        let mut answers = match answers {
            Ok(answers) => answers,
            Err(error) => {
                let source: Arc<dyn std::error::Error + Send + Sync> = Arc::from(error.into());
                let mut first = None;
                for (key, _, guard) in leaders {
                    if mode == Mode::Background {
                        self.throttle(&key);
                    }
                    guard.publish(Err(Arc::clone(&source)));
                    let error = Error::Load {
                        key: key.clone(),
                        source: Arc::clone(&source),
                    };
                    self.report_load(&key, kind, started.elapsed(), Some(&error), false);
                    first.get_or_insert(error);
                }
                return first.map_or(Ok(HashMap::new()), Err);
            }
        };
        // Values with the cache's own settings go in one atomic batch; the others, and the
        // answers "not found", key by key.
        let mut batch = Vec::new();
        let mut outcomes = Vec::with_capacity(leaders.len());
        let mut stored: Result<()> = Ok(());
        for (key, _, guard) in leaders {
            let loaded: Loaded<V> = answers
                .remove(&key)
                .map_or_else(Loaded::not_found, Into::into);
            let plain =
                loaded.ttl.is_none() && loaded.fresh_for.is_none() && loaded.tags.is_empty();
            if let (Some(value), true) = (&loaded.value, plain) {
                self.unthrottle(&key);
                batch.push((key.clone(), value.clone()));
            } else if let Err(error) = self.store_loaded(&key, &loaded, mode).await {
                stored = stored.and(Err(error));
            }
            outcomes.push((key, guard, loaded.value));
        }
        if !batch.is_empty()
            && let Err(error) = self
                .set_many(batch.iter().map(|(k, v)| (k.as_str(), v)))
                .await
        {
            stored = stored.and(Err(error));
        }
        // Released once the values are stored, so a process that takes a lease next finds them.
        futures_util::future::join_all(leases.into_iter().map(LeaseHolder::release)).await;
        let mut found = HashMap::with_capacity(outcomes.len());
        for (key, guard, value) in outcomes {
            guard.publish(Ok(value.clone()));
            self.report_load(
                &key,
                kind,
                started.elapsed(),
                stored.as_ref().err(),
                value.is_some(),
            );
            if let Some(value) = value {
                found.insert(key, value);
            }
        }
        stored.map(|()| found)
    }

    /// With fleet-wide single flight, tries the lease of every key of a batch load once, at
    /// once: the keys this caller leads (with the leases it holds), those another process holds,
    /// and the values other processes loaded meanwhile (their keys' waiters served here).
    async fn fleet_turns(
        &self,
        leaders: Vec<(String, String, LeaderGuard<Option<V>>)>,
        kind: LoadKind,
    ) -> Result<FleetTurns<V>> {
        if self.inner.fleet.is_none() || self.planted(FacadeBug::FleetBatchWithoutLeases) {
            return Ok((leaders, Vec::new(), Vec::new(), HashMap::new()));
        }
        let turns = futures_util::future::join_all(leaders.iter().map(|(key, full_key, _)| {
            self.fleet_turn_or_busy(key, full_key, kind, Recheck::Entry, false)
        }))
        .await;
        let (mut leading, mut leases, mut busy, mut elsewhere) =
            (Vec::new(), Vec::new(), Vec::new(), HashMap::new());
        let mut failure = None;
        for (leader, turn) in leaders.into_iter().zip(turns) {
            match turn {
                Ok(FleetTurn::Busy) => busy.push(leader),
                Ok(FleetTurn::Done(found)) => {
                    let (key, _, guard) = leader;
                    guard.publish(Ok(found.clone()));
                    if let Some(value) = found {
                        elsewhere.insert(key, value);
                    }
                }
                Ok(FleetTurn::Lead(lease)) => {
                    leases.push(lease);
                    leading.push(leader);
                }
                Ok(FleetTurn::Alone | FleetTurn::OwnLoad) => leading.push(leader),
                // Dropped, the guard lets this key's waiters try again themselves.
                Err(error) => failure = failure.or(Some(error)),
            }
        }
        match failure {
            Some(error) => Err(error),
            None => Ok((leading, leases, busy, elsewhere)),
        }
    }

    fn report_stale(&self, key: &str) {
        if let Some(observer) = &self.inner.observer {
            observer.on_cache_event(&CacheEvent::StaleServed { key });
        }
    }

    /// The keys held back after a failed refresh, each with the instant its wait ends.
    fn throttled(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.inner
            .freshness
            .throttled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn is_throttled(&self, key: &str) -> bool {
        let full_key = self.store_key(key);
        let throttled = self.throttled();
        throttled
            .get(full_key.as_ref())
            .is_some_and(|until| Instant::now() < *until)
    }

    /// Holds back the next refresh of `key` after a failed one.
    fn throttle(&self, key: &str) {
        if self.planted(FacadeBug::NoRefreshThrottle) {
            return;
        }
        let now = Instant::now();
        let until = now + self.inner.freshness.retry_after;
        let mut throttled = self.throttled();
        // Keys whose wait is over are dropped now and then, so a source failing for many keys
        // over time leaves no trail.
        if throttled.len() >= 1024 {
            throttled.retain(|_, until| now < *until);
        }
        throttled.insert(self.store_key(key).into_owned(), until);
    }

    fn unthrottle(&self, key: &str) {
        let mut throttled = self.throttled();
        if !throttled.is_empty() {
            throttled.remove(self.store_key(key).as_ref());
        }
    }
}

fn warn_refresh_failed(error: &Error) {
    tracing::warn!(
        target: "cachette",
        key = error.key().unwrap_or_default(),
        %error,
        "a background refresh failed; the stale value stays served"
    );
}
