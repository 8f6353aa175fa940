//! The typed side of the store capabilities: take, walks, counts, purges, reads with the TTL and
//! counters.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use futures_util::Stream;

use crate::cache::Stored;
use crate::planted::FacadeBug;
use crate::raw::parse_counter;
use crate::tags::TAG_MARK;
use crate::{Cache, DecodePolicy, Error, Result, ScanCursor, ScanOptions, Ttl};

/// Keys a walk asks the store for per page.
pub(crate) const WALK_PAGE: usize = 1_000;

/// Where a walk of [`Cache::keys`] or [`Cache::entries`] stands.
struct Walk {
    cursor: Option<ScanCursor>,
    ready: VecDeque<Result<(String, Option<Bytes>)>>,
}

impl<V: Send + Sync + 'static> Cache<V> {
    /// Removes `key` and returns its value, atomically: of concurrent takers of one key (in any
    /// process), exactly one gets it. `None` if it was absent, expired, a negative entry or
    /// invalidated by a tag (it is removed all the same). Bytes that do not decode are removed
    /// too, and answered with [`Error::Decode`] naming the key.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> cache_core::Result<()> {
    /// use std::sync::Arc;
    /// use cache_core::{Cache, testing::ReferenceBackend};
    ///
    /// let jobs: Cache<String> = Cache::builder(Arc::new(ReferenceBackend::default())).build();
    /// jobs.set("next", &"resize image 7".to_string()).await?;
    /// assert_eq!(jobs.take("next").await?.as_deref(), Some("resize image 7"));
    /// assert_eq!(jobs.take("next").await?, None); // only one taker gets it
    /// # Ok(()) }
    /// ```
    pub async fn take(&self, key: &str) -> Result<Option<V>> {
        let full_key = self.full_key(key)?;
        let bytes = self
            .inner
            .backend
            .take(&full_key)
            .await
            .map_err(|error| self.callers_key(error))?;
        match bytes {
            Some(bytes) => self.current_value(key, bytes).await,
            None => Ok(None),
        }
    }

    /// [`Cache::take`] of every key in one round trip, by the caller's key: what was present is
    /// removed and returned. A key named twice is taken once.
    pub async fn take_many<K: AsRef<str>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<HashMap<String, V>> {
        let full_keys = self.full_keys(keys)?;
        if full_keys.is_empty() {
            return Ok(HashMap::new());
        }
        let values = self
            .inner
            .backend
            .take_many(&full_keys)
            .await
            .map_err(|error| self.callers_key(error))?;
        let mut taken = HashMap::new();
        for (full_key, bytes) in full_keys.into_iter().zip(values) {
            if let Some(bytes) = bytes {
                let key = self.strip(full_key);
                if let Some(value) = self.current_value(&key, bytes).await? {
                    taken.insert(key, value);
                }
            }
        }
        Ok(taken)
    }

    /// The value under `key` with its remaining TTL, read together in one round trip (what a
    /// local copy needs so as not to outlive the store's entry). `None` as for [`Cache::get`].
    pub async fn get_with_ttl(&self, key: &str) -> Result<Option<(V, Ttl)>> {
        let full_key = self.full_key(key)?;
        let found = self
            .inner
            .backend
            .get_with_ttl(&full_key)
            .await
            .map_err(|error| self.callers_key(error))?;
        let Some((bytes, ttl)) = found else {
            return Ok(None);
        };
        Ok(self
            .current_value(key, bytes)
            .await?
            .map(|value| (value, ttl)))
    }

    /// [`Cache::get_with_ttl`] of every key in one round trip, by the caller's key; absent keys
    /// are left out, and entries that do not decode follow the cache's [`DecodePolicy`] as in
    /// [`Cache::get_many`].
    pub async fn get_many_with_ttl<K: AsRef<str>>(
        &self,
        keys: impl IntoIterator<Item = K>,
    ) -> Result<HashMap<String, (V, Ttl)>> {
        let full_keys = self.full_keys(keys)?;
        if full_keys.is_empty() {
            return Ok(HashMap::new());
        }
        let values = self
            .inner
            .backend
            .get_many_with_ttl(&full_keys)
            .await
            .map_err(|error| self.callers_key(error))?;
        let mut found = HashMap::new();
        for (full_key, value) in full_keys.into_iter().zip(values) {
            if let Some((bytes, ttl)) = value {
                let key = self.strip(full_key);
                if let Some(value) = self.decoded_by_policy(&key, bytes).await? {
                    found.insert(key, (value, ttl));
                }
            }
        }
        Ok(found)
    }

    /// Every key of this cache (the caller's keys, without the prefix), as a stream read from
    /// the store in pages of about 1,000, so that a walk of any size holds one page at a time.
    /// Every key present for the whole walk comes exactly once; a key written or removed during
    /// the walk may or may not come. In a cache with freshness or tags, entries that read as
    /// absent (negative entries, invalidated tags) are left out, which costs reading the values.
    /// A store error ends the stream after reporting it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> cache_core::Result<()> {
    /// use std::sync::Arc;
    /// use futures_util::TryStreamExt;
    /// use cache_core::{Cache, testing::ReferenceBackend};
    ///
    /// let cache: Cache<u32> =
    ///     Cache::builder(Arc::new(ReferenceBackend::default())).prefix("users:").build();
    /// cache.set_many([("ada", &36), ("alan", &41)]).await?;
    /// let mut keys: Vec<String> = cache.keys().try_collect().await?;
    /// keys.sort();
    /// assert_eq!(keys, ["ada", "alan"]);
    /// # Ok(()) }
    /// ```
    pub fn keys(&self) -> impl Stream<Item = Result<String>> + Send + '_ {
        let values = self.reads_to_list();
        futures_util::stream::unfold(Some(self.walk()), move |walk| async move {
            let mut walk = walk?;
            loop {
                match self.next_entry(&mut walk, values).await? {
                    Ok((key, None)) => return Some((Ok(key), Some(walk))),
                    Ok((key, Some(bytes))) => match self.decoded_by_policy(&key, bytes).await {
                        Ok(Some(_)) => return Some((Ok(key), Some(walk))),
                        Ok(None) => continue,
                        Err(error) => return Some((Err(error), Some(walk))),
                    },
                    Err(error) => return Some((Err(error), None)),
                }
            }
        })
    }

    /// Every entry of this cache, by the caller's key, as a stream read in pages like
    /// [`Cache::keys`]. Entries that do not decode follow the cache's [`DecodePolicy`]: an
    /// [`Error::Decode`] item (the walk goes on) or, under [`DecodePolicy::Miss`], left out.
    pub fn entries(&self) -> impl Stream<Item = Result<(String, V)>> + Send + '_ {
        futures_util::stream::unfold(Some(self.walk()), move |walk| async move {
            let mut walk = walk?;
            loop {
                match self.next_entry(&mut walk, true).await? {
                    Ok((key, Some(bytes))) => match self.decoded_by_policy(&key, bytes).await {
                        Ok(Some(value)) => return Some((Ok((key, value)), Some(walk))),
                        Ok(None) => continue,
                        Err(error) => return Some((Err(error), Some(walk))),
                    },
                    Ok((_, None)) => continue,
                    Err(error) => return Some((Err(error), None)),
                }
            }
        })
    }

    /// How many entries this cache holds: exact and cheap on the memory, SQLite and PostgreSQL
    /// stores (one indexed count), a `SCAN` of the whole keyspace on Redis (see its docs). In a
    /// cache with freshness or tags it counts stored entries, negative and invalidated ones
    /// included until they expire or are read; [`Cache::keys`] leaves those out.
    pub async fn len(&self) -> Result<u64> {
        let backend = &self.inner.backend;
        let stored = backend.count_prefix(&self.inner.prefix).await?;
        if !self.inner.tagged || self.planted(FacadeBug::LenCountsTagVersions) {
            return Ok(stored);
        }
        let versions = backend
            .count_prefix(&format!("{}{TAG_MARK}", self.inner.prefix))
            .await?;
        Ok(stored.saturating_sub(versions))
    }

    /// Whether this cache holds no entry: [`Cache::len`] is 0.
    pub async fn is_empty(&self) -> Result<bool> {
        Ok(self.len().await? == 0)
    }

    /// Removes every expired entry of the store now (of every cache on it, not only this one's
    /// prefix) and returns how many. Stores purge by themselves too: SQLite and PostgreSQL on
    /// their purge interval, memory as it is used, and Redis on its own (it returns 0).
    pub async fn purge_expired(&self) -> Result<u64> {
        self.inner.backend.purge_expired().await
    }

    /// Adds `delta` to the counter under `key` and returns the new value, atomically across
    /// every handle and process. A new counter starts from 0 and takes the cache's default TTL,
    /// which later increments keep (a fixed window for rate limits). Counters are stored as
    /// decimal ASCII, not through the serializer: read them with [`Cache::counter`]. A key
    /// holding anything else is [`Error::NotACounter`] and keeps its value.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> cache_core::Result<()> {
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use cache_core::{Cache, testing::ReferenceBackend};
    ///
    /// let hits: Cache<()> = Cache::builder(Arc::new(ReferenceBackend::default()))
    ///     .prefix("ratelimit:")
    ///     .default_ttl(Duration::from_secs(60))
    ///     .build();
    /// assert_eq!(hits.incr("client-7", 1).await?, 1);
    /// assert_eq!(hits.incr("client-7", 1).await?, 2);
    /// assert_eq!(hits.counter("client-7").await?, Some(2));
    /// # Ok(()) }
    /// ```
    pub async fn incr(&self, key: &str, delta: i64) -> Result<i64> {
        self.incr_with_ttl(key, delta, self.inner.default_ttl).await
    }

    /// [`Cache::incr`] with `ttl` for a counter it creates (`None`: eternal).
    pub async fn incr_with_ttl(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        let full_key = self.full_key(key)?;
        self.inner
            .backend
            .incr(&full_key, delta, ttl)
            .await
            .map_err(|error| self.callers_counter_key(error))
    }

    /// The counter under `key`, `None` if absent; [`Error::NotACounter`] if it holds anything
    /// else.
    pub async fn counter(&self, key: &str) -> Result<Option<i64>> {
        let full_key = self.full_key(key)?;
        match self.inner.backend.get(&full_key).await {
            Ok(Some(bytes)) => parse_counter(key, &bytes).map(Some),
            Ok(None) => Ok(None),
            Err(error) => Err(self.callers_key(error)),
        }
    }

    /// The caller's key for a full key of this cache.
    fn strip(&self, mut full_key: String) -> String {
        full_key.replace_range(..self.inner.prefix.len(), "");
        full_key
    }

    fn callers_counter_key(&self, error: Error) -> Error {
        match error {
            Error::NotACounter { key, reason } => Error::NotACounter {
                key: key
                    .strip_prefix(self.inner.prefix.as_str())
                    .map_or(key.clone(), str::to_owned),
                reason,
            },
            other => self.callers_key(other),
        }
    }

    /// The value `bytes` hold for a single-key read: `None` for a negative entry or one whose
    /// tags were invalidated; a decode error is reported and returned.
    async fn current_value(&self, key: &str, bytes: Bytes) -> Result<Option<V>> {
        let stored = match self.decode_stored(key, bytes) {
            Ok(stored) => stored,
            Err(error) => {
                self.report_decode(&error, false);
                return Err(error);
            }
        };
        self.if_current(stored).await
    }

    /// As [`Cache::current_value`], with the batch reads' [`DecodePolicy`]: under
    /// [`DecodePolicy::Miss`] bytes that do not decode are `None`.
    async fn decoded_by_policy(&self, key: &str, bytes: Bytes) -> Result<Option<V>> {
        match self.decode_stored(key, bytes) {
            Ok(stored) => self.if_current(stored).await,
            Err(error) => {
                let as_miss = self.inner.decode_policy == DecodePolicy::Miss;
                self.report_decode(&error, as_miss);
                if as_miss { Ok(None) } else { Err(error) }
            }
        }
    }

    async fn if_current(&self, stored: Stored<V>) -> Result<Option<V>> {
        if stored.value.is_none() {
            return Ok(None);
        }
        let current = self.tags_current(&[&stored]).await?;
        Ok(if current[0] { stored.value } else { None })
    }

    /// Whether listing keys needs their values: entries may be stored yet read as absent.
    fn reads_to_list(&self) -> bool {
        self.inner.freshness.header
    }

    fn walk(&self) -> Walk {
        Walk {
            cursor: Some(ScanCursor::start()),
            ready: VecDeque::new(),
        }
    }

    /// The next entry of the walk, by the caller's key, with its bytes when `values`; `None`
    /// once the walk is over. Tag versions are never listed.
    async fn next_entry(
        &self,
        walk: &mut Walk,
        values: bool,
    ) -> Option<Result<(String, Option<Bytes>)>> {
        loop {
            if let Some(next) = walk.ready.pop_front() {
                return Some(next);
            }
            let cursor = walk.cursor.take()?;
            let options = ScanOptions {
                page: WALK_PAGE,
                values,
            };
            match self
                .inner
                .backend
                .scan(&self.inner.prefix, cursor, options)
                .await
            {
                Ok(page) => {
                    walk.cursor = page.next;
                    let hide_versions =
                        self.inner.tagged && !self.planted(FacadeBug::WalkListsTagVersions);
                    for (full_key, bytes) in page.entries {
                        let key = self.strip(full_key);
                        if hide_versions && key.starts_with(TAG_MARK) {
                            continue;
                        }
                        // Leases live outside every prefix but the empty one's.
                        if key.starts_with(crate::locks::LEASE_MARK) {
                            continue;
                        }
                        walk.ready.push_back(Ok((key, bytes)));
                    }
                }
                Err(error) => return Some(Err(error)),
            }
        }
    }
}
