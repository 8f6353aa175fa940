//! The store trait: bytes in, bytes out, with per-key expiry.

use std::fmt::Debug;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::Result;

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

    /// Releases connections and background tasks. Calls after `close` may fail.
    async fn close(&self) -> Result<()> {
        Ok(())
    }
}
