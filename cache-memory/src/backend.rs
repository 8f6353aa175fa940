//! `MemoryBackend`: the `Backend` impl over a moka cache of bytes.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use std::sync::Arc;

use cache_core::raw::invalidation::InvalidationBus;
use cache_core::raw::{add_to_counter, counter_bytes, parse_counter, ttl_millis};
use cache_core::{
    Backend, Bytes, Condition, Error, Result, ScanCursor, ScanOptions, ScanPage, Ttl, async_trait,
};
use moka::Expiry;
use moka::ops::compute::{CompResult, Op};
use moka::sync::Cache;
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Entries a batch handles between two yields to the runtime: big batches then never hold a
/// worker thread for long, while the gate keeps them whole for readers.
const BATCH_CHUNK: usize = 1024;

/// The default bound: 256 MiB of keys, values and bookkeeping.
const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// What an entry costs in resident memory beyond its key and value bytes: moka's node, its hash
/// table slot, access-order deque and timer-wheel entries, our `Entry`, the key's `String` and the
/// value's `Bytes`, and the allocator's rounding of each. Measured, not estimated: a store filled
/// far past its bound with 400-byte values under 32-byte keys grew the process by 880 bytes per
/// entry held (`tests/footprint.rs` keeps the bound true in resident memory).
const ENTRY_OVERHEAD_BYTES: usize = 448;

/// What an entry weighs against a byte bound.
fn weight(key: &str, value: &[u8]) -> u64 {
    (key.len() + value.len() + ENTRY_OVERHEAD_BYTES) as u64
}

/// moka keeps TTLs in a timer wheel; past this it gains nothing, and our own `expires_at`
/// still answers `ttl` exactly.
const MOKA_MAX_TTL: Duration = Duration::from_secs(1000 * 365 * 24 * 3600);

#[derive(Debug, Clone)]
struct Entry {
    value: Bytes,
    expires_at: Option<Instant>,
}

/// A walk's view of the store: the keys under its prefix when it began, shared with the store
/// (one pointer each), and how far the walk has come.
struct Snapshot {
    keys: Vec<Arc<String>>,
    at: usize,
}

impl Entry {
    fn with_ttl(self, now: Instant) -> (Bytes, Ttl) {
        let ttl = match self.expires_at {
            None => Ttl::Eternal,
            Some(at) => Ttl::Remaining(at.duration_since(now)),
        };
        (self.value, ttl)
    }

    fn new(value: Bytes, ttl: Option<Duration>, now: Instant) -> Self {
        Self {
            value,
            expires_at: deadline(ttl, now),
        }
    }

    fn is_live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

/// Whether `entry` is a live lease holding `token`.
fn holds(entry: &Entry, token: &str, now: Instant) -> bool {
    entry.is_live(now) && entry.value == token.as_bytes()
}

/// When an entry written at `now` with `ttl` expires (`None`: never).
fn deadline(ttl: Option<Duration>, now: Instant) -> Option<Instant> {
    ttl.map(|ttl| {
        let ttl = Duration::from_millis(ttl_millis(ttl));
        now.checked_add(ttl).unwrap_or(now + MOKA_MAX_TTL)
    })
}

/// Tells moka each entry's own deadline.
struct Deadline;

impl Deadline {
    fn after(entry: &Entry, now: Instant) -> Option<Duration> {
        entry
            .expires_at
            .map(|at| at.saturating_duration_since(now).min(MOKA_MAX_TTL))
    }
}

impl Expiry<String, Entry> for Deadline {
    fn expire_after_create(&self, _: &String, entry: &Entry, now: Instant) -> Option<Duration> {
        Self::after(entry, now)
    }

    fn expire_after_update(
        &self,
        _: &String,
        entry: &Entry,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Self::after(entry, now)
    }
}

/// A bounded in-process store.
///
/// Single-key calls go straight to moka's concurrent map. The map has no order, so a walk
/// (`scan`) notes the keys under its prefix on its first page (a pointer to the store's own key
/// each, 8 bytes) and reads their entries page by page; `count_prefix` and `purge_expired` go
/// through every entry, O(entries held). Calls that touch many keys
/// (`get_many`, `set_many`, `delete_many`, `clear_prefix`) pass a read/write gate so that a
/// batch is seen whole or not at all; single-key calls never wait on it.
pub struct MemoryBackend {
    entries: Cache<String, Entry>,
    batch_gate: RwLock<()>,
    /// Set by `close`: every later call fails, as on every other store.
    closed: AtomicBool,
    /// Bytes written since moka last settled its bound (see [`MemoryBackend::admitted`]).
    unsettled: AtomicU64,
    bound: Bound,
    max_key_bytes: usize,
    /// Every writer of the store is in this process: its bus needs no transport.
    bus: Arc<InvalidationBus>,
}

#[derive(Debug, Clone, Copy)]
enum Bound {
    Entries(u64),
    Bytes(u64),
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend")
            .field("bound", &self.bound)
            .field("entries", &self.entries.entry_count())
            .finish()
    }
}

/// Builds a [`MemoryBackend`]; the default bound is 256 MiB.
#[derive(Debug, Clone)]
#[must_use]
pub struct MemoryBackendBuilder {
    bound: Bound,
    max_key_bytes: usize,
}

impl Default for MemoryBackendBuilder {
    fn default() -> Self {
        Self {
            bound: Bound::Bytes(DEFAULT_MAX_BYTES),
            max_key_bytes: usize::MAX,
        }
    }
}

impl MemoryBackendBuilder {
    /// Holds at most `entries` entries, whatever their size.
    pub fn max_entries(mut self, entries: u64) -> Self {
        self.bound = Bound::Entries(entries);
        self
    }

    /// Holds at most about `bytes` bytes of keys, values and per-entry bookkeeping.
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.bound = Bound::Bytes(bytes);
        self
    }

    /// Refuses keys longer than `bytes` with [`Error::InvalidKey`](cache_core::Error), so that
    /// runaway keys cannot crowd out values. Default: no limit beyond the store's byte bound.
    pub fn max_key_bytes(mut self, bytes: usize) -> Self {
        self.max_key_bytes = bytes;
        self
    }

    /// The store.
    pub fn build(self) -> MemoryBackend {
        let builder = Cache::builder().expire_after(Deadline);
        let entries = match self.bound {
            Bound::Entries(max) => builder.max_capacity(max).build(),
            Bound::Bytes(max) => builder
                .max_capacity(max)
                .weigher(|key: &String, entry: &Entry| {
                    u32::try_from(weight(key, &entry.value)).unwrap_or(u32::MAX)
                })
                .build(),
        };
        MemoryBackend {
            entries,
            batch_gate: RwLock::new(()),
            closed: AtomicBool::new(false),
            unsettled: AtomicU64::new(0),
            bound: self.bound,
            max_key_bytes: self.max_key_bytes,
            bus: InvalidationBus::in_process(),
        }
    }
}

impl Default for MemoryBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryBackend {
    /// A store bounded to 256 MiB.
    pub fn new() -> Self {
        MemoryBackendBuilder::default().build()
    }

    /// Starts building a store with another bound.
    pub fn builder() -> MemoryBackendBuilder {
        MemoryBackendBuilder::default()
    }

    /// How many entries moka holds, expired ones not yet reclaimed included; exact after
    /// [`MemoryBackend::run_pending_tasks`].
    pub fn entry_count(&self) -> u64 {
        self.entries.entry_count()
    }

    /// The weighted size moka holds (bytes under a byte bound, entries under an entry bound).
    pub fn weighted_size(&self) -> u64 {
        self.entries.weighted_size()
    }

    /// Runs moka's housekeeping now: reclaims expired entries and applies evictions. It also
    /// runs by itself as the store is used.
    pub fn run_pending_tasks(&self) {
        self.entries.run_pending_tasks();
    }

    /// Fails every call made after [`Backend::close`], like the stores with a server or a file.
    fn check_open(&self, operation: &'static str, key: Option<&str>) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::backend(
                "memory",
                operation,
                key,
                "the store is closed",
            ));
        }
        Ok(())
    }

    fn check_key(&self, key: &str) -> Result<()> {
        if key.len() > self.max_key_bytes {
            return Err(Error::invalid_key(
                key,
                format!(
                    "the key is {} bytes long; this memory store holds keys of at most {} bytes",
                    key.len(),
                    self.max_key_bytes
                ),
            ));
        }
        Ok(())
    }

    fn live(&self, key: &str, now: Instant) -> Option<Entry> {
        self.entries.get(key).filter(|entry| entry.is_live(now))
    }

    fn put(&self, key: String, value: Bytes, ttl: Option<Duration>, now: Instant) {
        if ttl == Some(Duration::ZERO) {
            self.entries.invalidate(&key);
        } else {
            let weight = weight(&key, &value);
            self.entries.insert(key, Entry::new(value, ttl, now));
            self.admitted(weight);
        }
    }

    /// Counts `weight` bytes just written. Moka admits writes at once and evicts in its
    /// maintenance, which runs now and then: a burst of large values would stay above the byte
    /// bound (and in RSS) until it ran. Once the bytes written since the last maintenance reach a
    /// sixteenth of the bound, run it here, so the store never holds much more than its bound.
    /// Small values of a large store rarely reach that; a value of a sixteenth of the bound or
    /// more settles the bound at once.
    fn admitted(&self, weight: u64) {
        let Bound::Bytes(max) = self.bound else {
            return;
        };
        let unsettled = self.unsettled.fetch_add(weight, Ordering::Relaxed) + weight;
        if unsettled >= max / 16 {
            self.unsettled.store(0, Ordering::Relaxed);
            self.entries.run_pending_tasks();
        }
    }

    /// Removes `keys` in chunks, yielding between them; returns how many were live. A duplicate
    /// finds its key already removed, so it is counted once.
    async fn remove_all_live<K: std::ops::Deref<Target = str>>(
        &self,
        keys: &[K],
        now: Instant,
    ) -> u64 {
        let mut removed = 0;
        for (i, chunk) in keys.chunks(BATCH_CHUNK).enumerate() {
            if i > 0 {
                tokio::task::yield_now().await;
            }
            removed += chunk
                .iter()
                .filter(|key| self.remove_live(key, now))
                .count() as u64;
        }
        removed
    }

    fn remove_live(&self, key: &str, now: Instant) -> bool {
        self.entries
            .remove(key)
            .is_some_and(|entry| entry.is_live(now))
    }

    /// Refuses a value that alone weighs more than the whole byte bound: moka would admit it and
    /// then evict everything else, or serve it above the bound.
    fn check_value(&self, key: &str, value: &Bytes) -> Result<()> {
        if let Bound::Bytes(max) = self.bound
            && weight(key, value) > max
        {
            let limit = max.saturating_sub((key.len() + ENTRY_OVERHEAD_BYTES) as u64);
            return Err(Error::value_too_large(
                key,
                value.len(),
                usize::try_from(limit).unwrap_or(usize::MAX),
            ));
        }
        Ok(())
    }

    /// The gate batches read under. It is async-aware: a batch waiting for it parks its task,
    /// never the worker thread.
    async fn read_gate(&self) -> RwLockReadGuard<'_, ()> {
        self.batch_gate.read().await
    }

    /// The gate batches write under; see [`MemoryBackend::read_gate`].
    async fn write_gate(&self) -> RwLockWriteGuard<'_, ()> {
        self.batch_gate.write().await
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn invalidation_bus(&self) -> Option<Arc<InvalidationBus>> {
        Some(Arc::clone(&self.bus))
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.check_open("get", Some(key))?;
        Ok(self.live(key, Instant::now()).map(|entry| entry.value))
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        self.check_open("get_many", None)?;
        let _gate = self.read_gate().await;
        let now = Instant::now();
        let mut values = Vec::with_capacity(keys.len());
        for (i, chunk) in keys.chunks(BATCH_CHUNK).enumerate() {
            if i > 0 {
                tokio::task::yield_now().await;
            }
            values.extend(
                chunk
                    .iter()
                    .map(|key| self.live(key, now).map(|entry| entry.value)),
            );
        }
        Ok(values)
    }

    async fn set(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        condition: Condition,
    ) -> Result<bool> {
        self.check_open("set", Some(key))?;
        self.check_key(key)?;
        self.check_value(key, &value)?;
        let now = Instant::now();
        if condition == Condition::Always {
            self.put(key.to_owned(), value, ttl, now);
            return Ok(true);
        }
        let outcome =
            self.entries
                .entry(key.to_owned())
                .and_compute_with(|current| match current {
                    Some(entry) if entry.value().is_live(now) => Op::Nop,
                    Some(_) if ttl == Some(Duration::ZERO) => Op::Remove,
                    _ if ttl == Some(Duration::ZERO) => Op::Nop,
                    _ => Op::Put(Entry::new(value, ttl, now)),
                });
        if let CompResult::Inserted(entry) | CompResult::ReplacedWith(entry) = &outcome {
            self.admitted(weight(entry.key(), &entry.value().value));
        }
        Ok(match outcome {
            CompResult::Inserted(_) | CompResult::ReplacedWith(_) | CompResult::Removed(_) => true,
            // Nop on an absent key is the zero-TTL write: written, and gone at once.
            CompResult::StillNone(_) => true,
            CompResult::Unchanged(entry) => !entry.value().is_live(now),
        })
    }

    async fn set_many(&self, entries: Vec<(String, Bytes)>, ttl: Option<Duration>) -> Result<()> {
        self.check_open("set_many", None)?;
        // Check every key first: a refused key must not leave half a batch behind.
        for (key, value) in &entries {
            self.check_key(key)?;
            self.check_value(key, value)?;
        }
        let _gate = self.write_gate().await;
        let now = Instant::now();
        let mut entries = entries.into_iter().peekable();
        while entries.peek().is_some() {
            for (key, value) in entries.by_ref().take(BATCH_CHUNK) {
                self.put(key, value, ttl, now);
            }
            tokio::task::yield_now().await;
        }
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        self.check_open("delete", Some(key))?;
        Ok(self.remove_live(key, Instant::now()))
    }

    async fn delete_many(&self, keys: &[String]) -> Result<u64> {
        self.check_open("delete_many", None)?;
        let _gate = self.write_gate().await;
        let now = Instant::now();
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        Ok(self.remove_all_live(&keys, now).await)
    }

    async fn contains(&self, key: &str) -> Result<bool> {
        self.check_open("contains", Some(key))?;
        Ok(self.live(key, Instant::now()).is_some())
    }

    async fn expire_in(&self, key: &str, ttl: Option<Duration>) -> Result<bool> {
        self.check_open("expire_in", Some(key))?;
        let now = Instant::now();
        let outcome =
            self.entries
                .entry(key.to_owned())
                .and_compute_with(|current| match current {
                    Some(entry) if entry.value().is_live(now) => {
                        if ttl == Some(Duration::ZERO) {
                            Op::Remove
                        } else {
                            Op::Put(Entry::new(entry.into_value().value, ttl, now))
                        }
                    }
                    Some(_) => Op::Remove,
                    None => Op::Nop,
                });
        Ok(match outcome {
            CompResult::ReplacedWith(_) => true,
            CompResult::Removed(entry) => entry.value().is_live(now),
            _ => false,
        })
    }

    async fn ttl(&self, key: &str) -> Result<Option<Ttl>> {
        self.check_open("ttl", Some(key))?;
        let now = Instant::now();
        Ok(self.live(key, now).map(|entry| match entry.expires_at {
            None => Ttl::Eternal,
            Some(at) => Ttl::Remaining(at.duration_since(now)),
        }))
    }

    async fn take(&self, key: &str) -> Result<Option<Bytes>> {
        self.check_open("take", Some(key))?;
        let now = Instant::now();
        // moka's remove is atomic: of concurrent takers, one gets the entry.
        Ok(self
            .entries
            .remove(key)
            .filter(|entry| entry.is_live(now))
            .map(|entry| entry.value))
    }

    async fn take_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        self.check_open("take_many", None)?;
        let _gate = self.write_gate().await;
        let now = Instant::now();
        let mut taken = Vec::with_capacity(keys.len());
        for (i, chunk) in keys.chunks(BATCH_CHUNK).enumerate() {
            if i > 0 {
                tokio::task::yield_now().await;
            }
            taken.extend(chunk.iter().map(|key| {
                self.entries
                    .remove(key.as_str())
                    .filter(|entry| entry.is_live(now))
                    .map(|entry| entry.value)
            }));
        }
        Ok(taken)
    }

    async fn get_with_ttl(&self, key: &str) -> Result<Option<(Bytes, Ttl)>> {
        self.check_open("get_with_ttl", Some(key))?;
        let now = Instant::now();
        Ok(self.live(key, now).map(|entry| entry.with_ttl(now)))
    }

    async fn get_many_with_ttl(&self, keys: &[String]) -> Result<Vec<Option<(Bytes, Ttl)>>> {
        self.check_open("get_many_with_ttl", None)?;
        let _gate = self.read_gate().await;
        let now = Instant::now();
        let mut found = Vec::with_capacity(keys.len());
        for (i, chunk) in keys.chunks(BATCH_CHUNK).enumerate() {
            if i > 0 {
                tokio::task::yield_now().await;
            }
            found.extend(
                chunk
                    .iter()
                    .map(|key| self.live(key, now).map(|entry| entry.with_ttl(now))),
            );
        }
        Ok(found)
    }

    async fn scan(
        &self,
        prefix: &str,
        cursor: ScanCursor,
        options: ScanOptions,
    ) -> Result<ScanPage> {
        self.check_open("scan", None)?;
        let mut snapshot = if cursor.is_start() {
            // The map has no order to resume from, so the first page notes the keys under the
            // prefix (pointers to the store's own keys) and later pages go through them.
            Snapshot {
                keys: self
                    .entries
                    .iter()
                    .filter(|(key, _)| key.starts_with(prefix))
                    .map(|(key, _)| key)
                    .collect(),
                at: 0,
            }
        } else {
            cursor.into_state::<Snapshot>().ok_or_else(|| {
                Error::backend("memory", "scan", None, "the cursor is not a memory store's")
            })?
        };
        let now = Instant::now();
        let end = (snapshot.at + options.page.max(1)).min(snapshot.keys.len());
        let entries = snapshot.keys[snapshot.at..end]
            .iter()
            .filter_map(|key| {
                let entry = self.live(key, now)?;
                Some((key.to_string(), options.values.then_some(entry.value)))
            })
            .collect();
        snapshot.at = end;
        let next = (end < snapshot.keys.len()).then(|| ScanCursor::state(snapshot));
        Ok(ScanPage { entries, next })
    }

    async fn count_prefix(&self, prefix: &str) -> Result<u64> {
        self.check_open("count_prefix", None)?;
        let now = Instant::now();
        Ok(self
            .entries
            .iter()
            .filter(|(key, entry)| key.starts_with(prefix) && entry.is_live(now))
            .count() as u64)
    }

    async fn purge_expired(&self) -> Result<u64> {
        self.check_open("purge_expired", None)?;
        let now = Instant::now();
        let expired: Vec<Arc<String>> = self
            .entries
            .iter()
            .filter(|(_, entry)| !entry.is_live(now))
            .map(|(key, _)| key)
            .collect();
        let mut purged = 0;
        for (i, key) in expired.into_iter().enumerate() {
            if i > 0 && i % BATCH_CHUNK == 0 {
                tokio::task::yield_now().await;
            }
            // Removed only if still expired: a key written again meanwhile stays.
            let outcome = self
                .entries
                .entry(key.to_string())
                .and_compute_with(|current| match current {
                    Some(entry) if !entry.value().is_live(Instant::now()) => Op::Remove,
                    _ => Op::Nop,
                });
            purged += u64::from(matches!(outcome, CompResult::Removed(_)));
        }
        self.entries.run_pending_tasks();
        Ok(purged)
    }

    async fn incr(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        self.check_open("incr", Some(key))?;
        self.check_key(key)?;
        let now = Instant::now();
        let mut answer = Err(Error::backend("memory", "incr", Some(key), "no answer"));
        let outcome = self
            .entries
            .entry(key.to_owned())
            .and_compute_with(|current| {
                let (current, expires_at) = match current {
                    Some(entry) if entry.value().is_live(now) => {
                        let entry = entry.into_value();
                        match parse_counter(key, &entry.value) {
                            Ok(current) => (current, entry.expires_at),
                            Err(error) => {
                                answer = Err(error);
                                return Op::Nop;
                            }
                        }
                    }
                    _ => (0, deadline(ttl, now)),
                };
                answer = add_to_counter(key, current, delta);
                match &answer {
                    Ok(_)
                        if ttl == Some(Duration::ZERO)
                            && expires_at.is_some_and(|at| at <= now) =>
                    {
                        Op::Remove
                    }
                    Ok(value) => Op::Put(Entry {
                        value: counter_bytes(*value),
                        expires_at,
                    }),
                    Err(_) => Op::Nop,
                }
            });
        if let CompResult::Inserted(entry) | CompResult::ReplacedWith(entry) = &outcome {
            self.admitted(weight(entry.key(), &entry.value().value));
        }
        answer
    }

    async fn acquire_lease(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        self.check_open("acquire_lease", Some(key))?;
        self.check_key(key)?;
        let now = Instant::now();
        let ttl = Some(ttl.max(Duration::from_millis(1)));
        let outcome =
            self.entries
                .entry(key.to_owned())
                .and_compute_with(|current| match current {
                    Some(entry) if entry.value().is_live(now) => Op::Nop,
                    _ => Op::Put(Entry::new(
                        Bytes::copy_from_slice(token.as_bytes()),
                        ttl,
                        now,
                    )),
                });
        if let CompResult::Inserted(entry) | CompResult::ReplacedWith(entry) = &outcome {
            self.admitted(weight(entry.key(), &entry.value().value));
            return Ok(true);
        }
        Ok(false)
    }

    async fn renew_lease(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        self.check_open("renew_lease", Some(key))?;
        let now = Instant::now();
        let outcome =
            self.entries
                .entry(key.to_owned())
                .and_compute_with(|current| match current {
                    Some(entry) if holds(entry.value(), token, now) => Op::Put(Entry::new(
                        entry.into_value().value,
                        Some(ttl.max(Duration::from_millis(1))),
                        now,
                    )),
                    _ => Op::Nop,
                });
        Ok(matches!(outcome, CompResult::ReplacedWith(_)))
    }

    async fn release_lease(&self, key: &str, token: &str) -> Result<bool> {
        self.check_open("release_lease", Some(key))?;
        let now = Instant::now();
        let outcome =
            self.entries
                .entry(key.to_owned())
                .and_compute_with(|current| match current {
                    Some(entry) if holds(entry.value(), token, now) => Op::Remove,
                    _ => Op::Nop,
                });
        Ok(matches!(outcome, CompResult::Removed(_)))
    }

    async fn close(&self) -> Result<()> {
        // Later calls fail; the memory goes now rather than when the last handle is dropped.
        self.closed.store(true, Ordering::Release);
        self.entries.invalidate_all();
        Ok(())
    }

    async fn clear_prefix(&self, prefix: &str) -> Result<u64> {
        self.check_open("clear_prefix", None)?;
        let _gate = self.write_gate().await;
        let now = Instant::now();
        let doomed: Vec<_> = self
            .entries
            .iter()
            .filter(|(key, _)| key.starts_with(prefix))
            .map(|(key, _)| key)
            .collect();
        let doomed: Vec<&str> = doomed.iter().map(|key| key.as_str()).collect();
        Ok(self.remove_all_live(&doomed, now).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sub-millisecond TTLs cannot be told apart black-box, so the conversion is checked here:
    /// the deadline is `now + ttl_millis(ttl)`, and a huge TTL clamps instead of overflowing.
    #[test]
    fn deadlines_are_the_ttl_in_rounded_up_milliseconds() {
        let now = Instant::now();
        for ttl in [
            Duration::from_nanos(1),
            Duration::from_micros(300),
            Duration::from_micros(1_001),
            Duration::from_millis(1_500),
        ] {
            let entry = Entry::new(Bytes::new(), Some(ttl), now);
            assert_eq!(
                entry.expires_at,
                Some(now + Duration::from_millis(ttl_millis(ttl))),
                "{ttl:?}"
            );
        }
        let huge = Entry::new(Bytes::new(), Some(Duration::MAX), now);
        assert!(
            huge.expires_at
                .is_some_and(|at| at > now + MOKA_MAX_TTL / 2)
        );
        assert_eq!(Entry::new(Bytes::new(), None, now).expires_at, None);
    }
}
