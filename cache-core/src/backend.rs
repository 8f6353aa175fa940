//! The store trait: bytes in, bytes out, with per-key expiry.

use std::any::Any;
use std::fmt::{self, Debug};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::{Error, Result};

/// When [`Backend::set`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Condition {
    /// Always write, replacing any value and its TTL.
    #[default]
    Always,
    /// Write only when the key is absent (an expired key counts as absent). Atomic: of many
    /// concurrent writers of one absent key, exactly one succeeds.
    IfNotExists,
}

/// The expiry state of a present key, as reported by [`Backend::ttl`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ttl {
    /// The key never expires.
    Eternal,
    /// The key expires after this much more time (millisecond precision).
    Remaining(Duration),
}

/// Where a walk of [`Backend::scan`] goes on: the start, or what the store's last page left.
///
/// A caller only passes it back; a store makes it with [`ScanCursor::after`] (keyset stores:
/// the last key of the page) or [`ScanCursor::state`] (anything else, such as a Redis cursor
/// with the keys seen so far).
pub struct ScanCursor(CursorState);

enum CursorState {
    Start,
    After(String),
    State(Box<dyn Any + Send + Sync>),
}

impl ScanCursor {
    /// The start of a walk.
    pub fn start() -> Self {
        Self(CursorState::Start)
    }

    /// Whether this is the start of a walk.
    pub fn is_start(&self) -> bool {
        matches!(self.0, CursorState::Start)
    }

    /// Resume after `key` (a full store key): for stores that walk keys in order.
    pub fn after(key: String) -> Self {
        Self(CursorState::After(key))
    }

    /// The key [`ScanCursor::after`] was given, if this cursor was made by it.
    pub fn last_key(&self) -> Option<&str> {
        match &self.0 {
            CursorState::After(key) => Some(key),
            _ => None,
        }
    }

    /// A cursor holding a store's own state.
    pub fn state<T: Any + Send + Sync>(state: T) -> Self {
        Self(CursorState::State(Box::new(state)))
    }

    /// The state [`ScanCursor::state`] was given, if this cursor holds a `T`.
    pub fn into_state<T: Any + Send + Sync>(self) -> Option<T> {
        match self.0 {
            CursorState::State(state) => state.downcast().ok().map(|state| *state),
            _ => None,
        }
    }
}

impl Debug for ScanCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            CursorState::Start => f.write_str("ScanCursor::Start"),
            // Keys can be personal data: a cursor shows only that it holds one.
            CursorState::After(_) => f.write_str("ScanCursor::After(..)"),
            CursorState::State(_) => f.write_str("ScanCursor::State(..)"),
        }
    }
}

/// One page of a walk: see [`Backend::scan`].
#[derive(Debug, Default)]
pub struct ScanPage {
    /// Full store keys, each with its value when the walk asked for values (`None` otherwise).
    pub entries: Vec<(String, Option<Bytes>)>,
    /// Where the next page starts, or `None` when the walk is over. A page may be short, even
    /// empty, while the walk goes on.
    pub next: Option<ScanCursor>,
}

/// What a walk of [`Backend::scan`] asks of each page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanOptions {
    /// About how many keys a page holds at most (a hint: Redis `SCAN`'s `COUNT`, SQL's `LIMIT`).
    pub page: usize,
    /// Whether each key comes with its value.
    pub values: bool,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            page: 1_000,
            values: false,
        }
    }
}

/// A key/value store of bytes with per-key expiry: the trait a store implements.
///
/// Users rarely call it directly; they hold a [`Cache`](crate::Cache), which applies the key
/// prefix, the default TTL and the serializer, then calls the store with full keys.
///
/// # The contract (checked by the conformance suite)
/// - Keys are any UTF-8 string, values any bytes. A store that cannot hold a key returns
///   [`Error::InvalidKey`](crate::Error::InvalidKey); it never stores a different key.
/// - `ttl: None` means no expiry. `Some(d)` expires the key after `d`, honoured to the
///   millisecond (round partial milliseconds up: see [`ttl_millis`](crate::raw::ttl_millis));
///   `Some(Duration::ZERO)` means already expired: the key is gone afterwards. TTLs too long for
///   the store clamp rather than overflow.
/// - An expired key is absent for every method, including `delete`, `contains`, `ttl`,
///   `expire_in` and [`Condition::IfNotExists`].
/// - `set` replaces the value and the TTL: a plain `set` on a key that had a TTL makes it
///   eternal.
/// - Batch methods make one round trip (or a fixed number of chunks for very large batches);
///   `set_many` is atomic: a concurrent `get_many` sees all of the batch or none of it (for
///   stores that shard keys, this holds for keys on one shard, e.g. one Redis hash tag).
/// - `clear_prefix` removes exactly the keys starting with the prefix, byte for byte, whatever
///   characters the prefix holds (`*?[]%_\`, case).
/// - A store that fails or goes away returns [`Error::Backend`](crate::Error::Backend) and
///   serves again once it is back.
///
/// # Capabilities
/// The methods after `clear_prefix` (`take`, `scan`, `count_prefix`, `purge_expired`,
/// `get_with_ttl`, `incr`) have default bodies that answer
/// [`Error::Unsupported`](crate::Error::Unsupported), so that a store written before them still
/// builds; the conformance suite then reports their cases as not applicable, by name. Every
/// store of cachette implements all of them natively.
///
/// The trait is object safe: `Arc<dyn Backend>` is what [`Cache`](crate::Cache) holds, so a URL
/// can choose the store at run time. A store that wraps another (metrics, timeouts, fault
/// injection) implements [`raw::Forward`](crate::raw::Forward) instead, which forwards every
/// method it does not override.
#[async_trait]
pub trait Backend: Debug + Send + Sync + 'static {
    /// A short name for messages and metrics: `memory`, `sqlite`, `redis`, `postgres`, …
    fn name(&self) -> &'static str;

    /// The value under `key`, or `None` if it is absent or expired.
    async fn get(&self, key: &str) -> Result<Option<Bytes>>;

    /// The values under `keys`, positionally: `result[i]` belongs to `keys[i]`. Duplicates are
    /// allowed and answered at each position. One round trip (a store that truly cannot batch
    /// calls [`fallback::get_many_each`](crate::raw::fallback::get_many_each), on purpose).
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>>;

    /// Writes `value` under `key` with `ttl`; returns whether it wrote (always `true` for
    /// [`Condition::Always`]).
    async fn set(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        condition: Condition,
    ) -> Result<bool>;

    /// Writes every entry with the same `ttl`, atomically. When a key appears twice, the last
    /// entry wins. There is no per-key fallback: a loop of `set` calls is not atomic.
    async fn set_many(&self, entries: Vec<(String, Bytes)>, ttl: Option<Duration>) -> Result<()>;

    /// Removes `key`; returns whether it was present (and not expired).
    async fn delete(&self, key: &str) -> Result<bool>;

    /// Removes `keys`; returns how many distinct present keys were removed. One round trip (or
    /// [`fallback::delete_many_each`](crate::raw::fallback::delete_many_each), on purpose).
    async fn delete_many(&self, keys: &[String]) -> Result<u64>;

    /// Whether `key` is present and not expired.
    async fn contains(&self, key: &str) -> Result<bool>;

    /// Sets the expiry of a present key: `Some(d)` expires it after `d` (`Duration::ZERO` removes
    /// it), `None` makes it eternal. Returns whether the key was present.
    async fn expire_in(&self, key: &str, ttl: Option<Duration>) -> Result<bool>;

    /// The expiry of `key`, or `None` if it is absent.
    async fn ttl(&self, key: &str) -> Result<Option<Ttl>>;

    /// Removes every key that starts with `prefix` and returns how many it removed. An empty
    /// prefix removes every key of the store (for stores shared with other programs, only the
    /// keys in the store's own namespace, table or database).
    async fn clear_prefix(&self, prefix: &str) -> Result<u64>;

    /// Removes `key` and returns the value it held, atomically: of concurrent takers of one key,
    /// exactly one gets the value. `None` if it was absent or expired.
    async fn take(&self, key: &str) -> Result<Option<Bytes>> {
        let _ = key;
        Err(Error::unsupported(self.name(), "take"))
    }

    /// [`take`](Backend::take) of every key, positionally, in one round trip. A key named twice
    /// is taken once: its value answers its first position, later positions get `None`.
    async fn take_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        let _ = keys;
        Err(Error::unsupported(self.name(), "take_many"))
    }

    /// The value under `key` and its expiry, read together in one round trip, or `None` if it
    /// is absent or expired.
    async fn get_with_ttl(&self, key: &str) -> Result<Option<(Bytes, Ttl)>> {
        let _ = key;
        Err(Error::unsupported(self.name(), "get_with_ttl"))
    }

    /// [`get_with_ttl`](Backend::get_with_ttl) of every key, positionally, in one round trip.
    async fn get_many_with_ttl(&self, keys: &[String]) -> Result<Vec<Option<(Bytes, Ttl)>>> {
        let _ = keys;
        Err(Error::unsupported(self.name(), "get_many_with_ttl"))
    }

    /// One page of a walk over the live keys that start with `prefix` (byte for byte, as in
    /// `clear_prefix`), from `cursor` ([`ScanCursor::start`] for the first page), with values
    /// when `options` ask. Every key live for the whole walk appears in exactly one page; a key
    /// written or removed during the walk may or may not. Pages hold about `options.page` keys,
    /// so a walk of any size holds a bounded amount of memory (beyond what each store documents).
    async fn scan(
        &self,
        prefix: &str,
        cursor: ScanCursor,
        options: ScanOptions,
    ) -> Result<ScanPage> {
        let _ = (prefix, cursor, options);
        Err(Error::unsupported(self.name(), "scan"))
    }

    /// How many live keys start with `prefix`. Each store says in its docs what it costs.
    async fn count_prefix(&self, prefix: &str) -> Result<u64> {
        let _ = prefix;
        Err(Error::unsupported(self.name(), "count_prefix"))
    }

    /// Removes every expired entry now and returns how many it removed. A store that removes
    /// expired entries by itself (Redis) returns 0.
    async fn purge_expired(&self) -> Result<u64> {
        Err(Error::unsupported(self.name(), "purge_expired"))
    }

    /// Adds `delta` to the counter under `key` and returns the new value, atomically. An absent
    /// or expired key starts from 0 and takes `ttl`; a live counter keeps its expiry. The
    /// counter is stored as the decimal ASCII of an `i64` (as Redis keeps it), so any client
    /// reads it; a key holding anything else, or a sum past `i64`, is
    /// [`Error::NotACounter`](crate::Error::NotACounter) and the value stays as it was.
    async fn incr(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        let _ = (key, delta, ttl);
        Err(Error::unsupported(self.name(), "incr"))
    }

    /// Takes the lease under `key` for `ttl` and returns `true`, when no live entry is there:
    /// one caller among every handle and process on the store wins, and the lease is stored as
    /// an entry holding `token` (a random string the taker chose) that expires after `ttl`.
    /// `false`: a live entry (another holder's lease) is there. What fleet-wide single flight
    /// and [`Cache::lock`](crate::Cache::lock) build on.
    async fn acquire_lease(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        let _ = (key, token, ttl);
        Err(Error::unsupported(self.name(), "acquire_lease"))
    }

    /// Extends the lease under `key` to `ttl` from now, only while it is live and holds
    /// `token`: `false` when it expired or another holder took it since.
    async fn renew_lease(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        let _ = (key, token, ttl);
        Err(Error::unsupported(self.name(), "renew_lease"))
    }

    /// Removes the lease under `key`, only while it is live and holds `token`, atomically: a
    /// holder whose lease expired never removes the next holder's. `false`: nothing of this
    /// holder's was there.
    async fn release_lease(&self, key: &str, token: &str) -> Result<bool> {
        let _ = (key, token);
        Err(Error::unsupported(self.name(), "release_lease"))
    }

    /// This handle's invalidation bus: how writes reach the [local tiers](crate::LocalTier) of
    /// this process at once and, over the store's own channel where it has one, of other
    /// processes (see [`raw::invalidation`](crate::raw::invalidation)). `None` (the default): a
    /// cache with a local tier over this store keeps a bus of its own, and copies that another
    /// handle's writes made stale live until their hold ends. Every store of cachette has one.
    fn invalidation_bus(
        &self,
    ) -> Option<std::sync::Arc<crate::raw::invalidation::InvalidationBus>> {
        None
    }

    /// Releases connections and background tasks. Calls after `close` may fail.
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}
