//! The suite is only worth something if it fails for broken stores. Each test here plants one
//! bug of the kind real Redis, SQL and memcached adapters ship in a small store that is
//! otherwise correct, and checks that the case meant to catch it fails, while the same case
//! passes on the same store without the bug. The store without any bug passes the whole suite.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use cache_core::conformance::{Case, cases, run_all_on_one_store, run_case};
use cache_core::raw::{add_to_counter, parse_counter, ttl_millis};
use cache_core::{Backend, Condition, Error, Result, ScanCursor, ScanOptions, ScanPage, Ttl};

/// One planted bug each. The comment says what real code it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bug {
    // Keys.
    /// `LOWER(key)` in the SQL, or a case-insensitive collation.
    CaseInsensitiveKeys,
    /// A C string API: the key ends at the first NUL.
    CutsKeysAtNul,
    /// `key.trim()` "for safety".
    TrimsKeys,
    /// Memcached-style sanitising: spaces become underscores.
    SpacesToUnderscores,
    /// Unicode normalisation (NFC) of keys.
    ComposesUnicode,
    /// Control characters stripped from keys.
    StripsControlChars,
    /// Memcached's 250-byte limit met by silently cutting the key.
    TruncatesLongKeys,
    /// `""` refused as an invalid key.
    RejectsEmptyKey,
    /// A key limit checked per entry while writing: the entries before the bad key stay written.
    PartialBatchOnInvalidKey,
    /// A key limit met by skipping the key and writing the rest.
    SkipsInvalidKeysInBatch,
    /// `InvalidKey` names the key as cut for the message.
    InvalidKeyNamesCutKey,
    /// `get_many` sends the keys as one comma-joined string and splits it on the other side.
    JoinsBatchKeysWithComma,
    // Values.
    /// An empty value read back as "no value" (an empty string taken for nil).
    EmptyValueIsAbsent,
    /// A 24-bit length field: values are cut at 16 MiB.
    TruncatesValuesAt16MiB,
    /// A value past the store's limit reported as a generic backend error.
    OversizeIsBackendError,
    /// A value past the limit refused only after the old value was deleted.
    OversizeDropsOldValue,
    /// `set_many` cuts values at 1 MiB (a fixed buffer per entry).
    SetManyTruncatesLargeValues,
    /// `set_many` filters out empty values.
    SetManyDropsEmptyValues,
    // TTL on `set`.
    /// The TTL argument is dropped.
    IgnoresTtl,
    /// `EX` (seconds) instead of `PX`, rounded up.
    RoundsTtlToSeconds,
    /// `if ttl.is_zero() { None }`.
    ZeroTtlMeansEternal,
    /// A plain `set` keeps the old expiry (an upsert that forgets the column).
    PlainSetKeepsOldTtl,
    /// Milliseconds as `i64` overflow for `Duration::MAX`: the key is born expired.
    HugeTtlOverflows,
    /// Seconds as `i32`: 100 years wraps negative.
    TtlInI32Seconds,
    /// A TTL below 1 ms becomes `0`, taken for "no TTL".
    SubMsTtlEternal,
    /// The store's clock has whole-second resolution.
    WholeSecondClock,
    // TTL on `set_many`.
    /// `set_many` drops the TTL.
    SetManyIgnoresTtl,
    /// `set_many` in seconds.
    SetManyRoundsTtlToSeconds,
    /// `set_many`'s upsert updates the value and forgets the expiry column.
    SetManyUpsertKeepsExpiry,
    /// `set_many` overflows for `Duration::MAX`.
    SetManyHugeTtlOverflows,
    /// `set_many` in `i32` seconds.
    SetManyTtlInI32Seconds,
    /// `set_many` turns a sub-millisecond TTL into none.
    SetManySubMsTtlEternal,
    /// `set_many` with `Duration::ZERO` writes eternal keys.
    SetManyZeroTtlWrites,
    /// `set_many` keeps the first of two entries for one key.
    SetManyFirstDuplicateWins,
    // Batches.
    /// `set_many` writes key by key.
    NonAtomicSetMany,
    /// `set_many` commits chunks of 5,000 keys separately.
    ChunkedSetManyNotAtomic,
    /// `set_many` with `Duration::ZERO` removes the keys in separate chunks of 10,000.
    ChunkedZeroTtlNotAtomic,
    /// A blocking lock around each batch, held while the batch works (a `std::sync::Mutex`
    /// in an `async fn`): a second batch parks its worker thread on it.
    BlockingBatchLock,
    /// `get_many` reads chunks of 999 keys one after another, without a snapshot.
    ChunkedGetManyNotSnapshot,
    /// `get_many` loops `0..len / 999` chunks and drops the remainder.
    GetManyDropsLastChunk,
    /// `get_many` returns the found values packed together, not by position.
    GetManyCompactsMissing,
    /// `get_many` answers a duplicated key only at its first position.
    GetManyAnswersFirstDuplicateOnly,
    /// `get_many` forgets the expiry filter in its query.
    GetManyIgnoresExpiry,
    // Conditional writes.
    /// Check, then set, not atomic.
    RacyIfNotExists,
    /// An expired row still counts as present for the insert.
    IfNotExistsSeesExpiredAsPresent,
    /// `SET NX` without its `PX`.
    IfNotExistsIgnoresTtl,
    /// `SET NX EX` in seconds.
    IfNotExistsRoundsTtlToSeconds,
    /// The conditional path overflows for `Duration::MAX`.
    IfNotExistsHugeTtlOverflows,
    /// The conditional path turns a sub-millisecond TTL into none.
    IfNotExistsSubMsTtlEternal,
    /// "A zero TTL deletes" checked before the condition.
    IfNotExistsZeroTtlDeletesPresent,
    /// A zero-TTL conditional write of an absent key reports no write.
    IfNotExistsZeroTtlReportsNoWrite,
    /// `SET NX` followed by an unconditional `PEXPIRE`.
    IfNotExistsTouchesTtl,
    /// The reply of `SET NX` ignored: always "written".
    IfNotExistsAlwaysTrue,
    /// "Rows changed" as the answer: an identical rewrite reports no write.
    AlwaysReportsRowsChanged,
    /// "Row inserted" as the answer: an overwrite reports no write.
    AlwaysReportsInserted,
    // expire_in.
    /// `UPDATE … SET expires_at` without the expiry check: an expired key comes back.
    ExpireInRevivesExpired,
    /// `PERSIST` on an expired row brings it back.
    ExpireInNoneRevivesExpired,
    /// The new deadline counted from when the key was written.
    ExpireInCountsFromWrite,
    /// `EXPIRE` (seconds) instead of `PEXPIRE`.
    ExpireInRoundsToSeconds,
    /// `expire_in` in `i32` seconds.
    ExpireInTtlInI32Seconds,
    /// `expire_in` turns a sub-millisecond TTL into none.
    ExpireInSubMsTtlEternal,
    /// The row count ignored: always "present".
    ExpireInAlwaysTrue,
    /// `expire_in(ZERO)` does nothing.
    ExpireInZeroKeepsKey,
    /// `expire_in(None)` does nothing.
    ExpireInNoneKeepsTtl,
    // ttl and reads.
    /// `ttl()` reports the TTL written, not the time left.
    TtlReportsWrittenTtl,
    /// `TTL` (seconds) instead of `PTTL`.
    TtlRoundsRemainingToSeconds,
    /// `ttl()` forgets the expiry filter.
    TtlIgnoresExpiry,
    /// `contains()` forgets the expiry filter.
    ContainsIgnoresExpiry,
    // Deletes.
    /// `delete` reports what is stored, expired or not.
    DeleteIgnoresExpiry,
    /// The row count ignored: always "deleted".
    DeleteAlwaysTrue,
    /// `delete_many` counts positions, so duplicates count twice.
    CountsDuplicateDeletes,
    /// `delete_many` answers how many keys it was given.
    DeleteManyCountsMissing,
    /// `delete_many` counts expired rows it removed.
    DeleteManyCountsExpired,
    /// An expiry index off by one: deleting a key drops the next key's expiry.
    DeleteClearsNeighbourExpiry,
    // clear_prefix.
    /// `LIKE prefix || '%'` without escaping.
    ClearMatchesLikeWildcards,
    /// `SCAN MATCH prefix*` without escaping.
    ClearMatchesGlobs,
    /// `ILIKE`.
    ClearCaseInsensitive,
    /// `LIKE '%' || prefix || '%'`.
    ClearMatchesAnywhere,
    /// The prefix trimmed first.
    ClearTrimsPrefix,
    /// A range scan up to `prefix || U+FFFF`.
    ClearUpperBoundBmp,
    /// A range scan up to `prefix || U+10FFFF`, exclusive.
    ClearUpperBoundMaxChar,
    /// A range scan up to the next prefix, inclusive.
    ClearUpperBoundInclusive,
    /// A `SCAN` loop that stops at the first page without a match.
    ClearScanStopsAtEmptyPage,
    /// A `SCAN` loop that counts a key each page names, and pages repeat keys.
    ClearCountsScanDuplicates,
    /// One page of 1,000 keys taken for all of them.
    ClearOnlyFirstPage,
    /// A `DELETE` row count that includes expired rows.
    ClearCountsExpired,
    /// The empty prefix treated as "nothing to do".
    ClearEmptyPrefixNoop,
    // Take.
    /// `take` reads the value and forgets to delete it.
    TakeLeavesValue,
    /// `take` as a `GET` then a `DEL`: two takers both read the value.
    TakeNotAtomic,
    /// `take` returns a row whatever its expiry (`DELETE … RETURNING value` without the check).
    TakeReturnsExpired,
    /// `take_many` as `get_many` then `delete_many`.
    TakeManyNotAtomic,
    /// `take_many` answers every position of a key named twice.
    TakeManyAnswersEveryDuplicate,
    // Reads with the TTL.
    /// `get_with_ttl` reads the row without the expiry check.
    GetWithTtlIgnoresExpiry,
    /// `get_many_with_ttl` answers the found keys in a row, not by position.
    GetManyWithTtlCompacts,
    // Walks.
    /// A walk returns expired keys.
    ScanIncludesExpired,
    /// A walk resumes at its last key inclusive (`key >= last`): page boundaries come twice.
    ScanRepeatsBoundaryKey,
    /// A walk pages by `OFFSET`: removals before the cursor shift keys past it.
    ScanPagesByOffset,
    /// A walk matches the prefix as a `LIKE` pattern.
    ScanMatchesLikeWildcards,
    /// A walk never reads values.
    ScanIgnoresValues,
    /// `count_prefix` counts expired rows.
    CountIncludesExpired,
    /// `purge_expired` removes every key with a TTL.
    PurgeRemovesTimedKeys,
    // Counters.
    /// `incr` reads, adds and writes in three steps.
    IncrNotAtomic,
    /// Each `incr` writes the TTL it is given.
    IncrResetsTtl,
    /// `incr` adds to an expired counter.
    IncrAddsToExpired,
    /// A value that does not parse counts as 0.
    IncrTreatsGarbageAsZero,
    /// The sum wraps around.
    IncrWraps,
    /// The counter is stored as 8 little-endian bytes.
    IncrStoresBinary,
    // Leases.
    /// `SET key token PX ttl` without `NX`: every asker wins.
    LeaseAcquireOverwrites,
    /// `GET` then `SET`: two askers both see it free.
    LeaseAcquireNotAtomic,
    /// The lease is written without its TTL: a crashed holder blocks the key for ever.
    LeaseNeverExpires,
    /// Release is a plain `DEL`, without comparing the token.
    LeaseReleaseWithoutToken,
    /// Renew is a plain `PEXPIRE`, without comparing the token.
    LeaseRenewWithoutToken,
    /// Renew reports success and changes nothing.
    LeaseRenewIgnored,
}

/// The key limit of stores that refuse long keys, for the bugs about refusing them.
const KEY_LIMIT: usize = 1024;
/// The value limit of stores that refuse large values.
const VALUE_LIMIT: usize = 32 * 1024 * 1024;

impl Bug {
    /// Whether the store with this bug refuses keys over [`KEY_LIMIT`].
    fn limits_keys(self) -> bool {
        matches!(
            self,
            Bug::PartialBatchOnInvalidKey
                | Bug::SkipsInvalidKeysInBatch
                | Bug::InvalidKeyNamesCutKey
        )
    }

    /// Whether the store with this bug refuses values over [`VALUE_LIMIT`].
    fn limits_values(self) -> bool {
        matches!(
            self,
            Bug::OversizeIsBackendError | Bug::OversizeDropsOldValue
        )
    }
}

/// Which write gave a key its TTL, so that a bug can sit on one path only.
#[derive(Clone, Copy, PartialEq)]
enum Path {
    Set,
    SetMany,
    IfNotExists,
    ExpireIn,
}

/// A TTL after the store's conversion.
enum Converted {
    Eternal,
    /// A deadline that wrapped or overflowed into the past.
    BornExpired,
    Ttl(Duration),
}

/// What a write does to a key's expiry.
enum Expiry {
    /// Already expired: remove it.
    Remove,
    /// Keep it until then (`None`: forever).
    Until(Option<Instant>),
}

#[derive(Debug, Clone)]
struct Entry {
    value: Bytes,
    expires_at: Option<Instant>,
    written_at: Instant,
    ttl_written: Option<Duration>,
}

#[derive(Debug)]
struct Planted {
    bug: Option<Bug>,
    key_limit: Option<usize>,
    value_limit: Option<usize>,
    epoch: Instant,
    entries: tokio::sync::Mutex<BTreeMap<String, Entry>>,
    batch_lock: Mutex<()>,
    /// An in-process store: its bus needs no transport.
    bus: Arc<cache_core::raw::invalidation::InvalidationBus>,
}

impl Planted {
    fn new(bug: Option<Bug>, limits_keys: bool, limits_values: bool) -> Self {
        Self {
            bug,
            key_limit: limits_keys.then_some(KEY_LIMIT),
            value_limit: limits_values.then_some(VALUE_LIMIT),
            epoch: Instant::now(),
            entries: tokio::sync::Mutex::new(BTreeMap::new()),
            batch_lock: Mutex::new(()),
            bus: cache_core::raw::invalidation::InvalidationBus::in_process(),
        }
    }

    fn has(&self, bug: Bug) -> bool {
        self.bug == Some(bug)
    }

    fn blocking_batch(&self) -> Option<MutexGuard<'_, ()>> {
        self.has(Bug::BlockingBatchLock).then(|| {
            self.batch_lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        })
    }

    /// The map, behind an async mutex: a call waiting for a batch yields its worker.
    async fn lock(&self) -> tokio::sync::MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().await
    }

    fn now(&self) -> Instant {
        let now = Instant::now();
        if self.has(Bug::WholeSecondClock) {
            return self.epoch + Duration::from_secs((now - self.epoch).as_secs());
        }
        now
    }

    fn live(&self, entry: &Entry, now: Instant) -> bool {
        entry.expires_at.is_none_or(|at| at > now)
    }

    /// The key as this store files it.
    fn key(&self, key: &str) -> String {
        let Some(bug) = self.bug else {
            return key.to_owned();
        };
        match bug {
            Bug::CaseInsensitiveKeys => key.to_lowercase(),
            Bug::CutsKeysAtNul => key.split('\0').next().unwrap_or_default().to_owned(),
            Bug::TrimsKeys => key.trim().to_owned(),
            Bug::SpacesToUnderscores => key.replace(' ', "_"),
            Bug::ComposesUnicode => key.replace("e\u{301}", "\u{e9}"),
            Bug::StripsControlChars => key.chars().filter(|c| !c.is_control()).collect(),
            Bug::TruncatesLongKeys => {
                let mut end = key.len().min(250);
                while !key.is_char_boundary(end) {
                    end -= 1;
                }
                key[..end].to_owned()
            }
            _ => key.to_owned(),
        }
    }

    fn check_key(&self, key: &str) -> Result<()> {
        if self.has(Bug::RejectsEmptyKey) && key.is_empty() {
            return Err(Error::invalid_key(key, "empty keys are not allowed"));
        }
        match self.key_limit {
            Some(limit) if key.len() > limit => {
                let named = if self.has(Bug::InvalidKeyNamesCutKey) {
                    &key[..100]
                } else {
                    key
                };
                Err(Error::invalid_key(named, "too long"))
            }
            _ => Ok(()),
        }
    }

    async fn check_value(&self, key: &str, value: &Bytes) -> Result<()> {
        match self.value_limit {
            Some(limit) if value.len() > limit => {
                if self.has(Bug::OversizeIsBackendError) {
                    return Err(Error::backend("planted", "set", Some(key), "value too big"));
                }
                if self.has(Bug::OversizeDropsOldValue) {
                    self.lock().await.remove(key);
                }
                Err(Error::value_too_large(key, value.len(), limit))
            }
            _ => Ok(()),
        }
    }

    /// The TTL as the conversion of `path` turns it, bugs included.
    fn converted(&self, ttl: Option<Duration>, path: Path) -> Converted {
        let Some(ttl) = ttl else {
            return Converted::Eternal;
        };
        let on = |bug, on_path| self.has(bug) && path == on_path;
        let sub_ms = !ttl.is_zero() && ttl < Duration::from_millis(1);
        if on(Bug::IgnoresTtl, Path::Set)
            || on(Bug::SetManyIgnoresTtl, Path::SetMany)
            || on(Bug::IfNotExistsIgnoresTtl, Path::IfNotExists)
            || (on(Bug::ZeroTtlMeansEternal, Path::Set) && ttl.is_zero())
            || (on(Bug::SetManyZeroTtlWrites, Path::SetMany) && ttl.is_zero())
            || (on(Bug::SubMsTtlEternal, Path::Set) && sub_ms)
            || (on(Bug::SetManySubMsTtlEternal, Path::SetMany) && sub_ms)
            || (on(Bug::IfNotExistsSubMsTtlEternal, Path::IfNotExists) && sub_ms)
            || (on(Bug::ExpireInSubMsTtlEternal, Path::ExpireIn) && sub_ms)
        {
            return Converted::Eternal;
        }
        let wraps_i32_seconds = ttl.as_secs() > i32::MAX as u64;
        let overflows_i64_millis = ttl.as_millis() > i64::MAX as u128;
        if (wraps_i32_seconds
            && (on(Bug::TtlInI32Seconds, Path::Set)
                || on(Bug::SetManyTtlInI32Seconds, Path::SetMany)
                || on(Bug::ExpireInTtlInI32Seconds, Path::ExpireIn)))
            || (overflows_i64_millis
                && (on(Bug::HugeTtlOverflows, Path::Set)
                    || on(Bug::SetManyHugeTtlOverflows, Path::SetMany)
                    || on(Bug::IfNotExistsHugeTtlOverflows, Path::IfNotExists)))
        {
            return Converted::BornExpired;
        }
        if on(Bug::RoundsTtlToSeconds, Path::Set)
            || on(Bug::SetManyRoundsTtlToSeconds, Path::SetMany)
            || on(Bug::IfNotExistsRoundsTtlToSeconds, Path::IfNotExists)
            || on(Bug::ExpireInRoundsToSeconds, Path::ExpireIn)
        {
            let seconds = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
            return Converted::Ttl(Duration::from_secs(seconds));
        }
        Converted::Ttl(ttl)
    }

    /// What a write of `ttl` through `path`, counted from `from`, does to the expiry.
    fn expiry(&self, ttl: Option<Duration>, path: Path, from: Instant) -> Expiry {
        match self.converted(ttl, path) {
            Converted::Eternal => Expiry::Until(None),
            Converted::BornExpired => Expiry::Until(Some(from)),
            Converted::Ttl(ttl) if ttl.is_zero() => Expiry::Remove,
            Converted::Ttl(ttl) => {
                let millis = Duration::from_millis(ttl_millis(ttl));
                let at = from
                    .checked_add(millis)
                    .unwrap_or_else(|| from + Duration::from_secs(u64::from(u32::MAX)));
                Expiry::Until(Some(at))
            }
        }
    }

    fn put(
        &self,
        entries: &mut BTreeMap<String, Entry>,
        key: String,
        value: Bytes,
        ttl: Option<Duration>,
        expiry: Expiry,
        now: Instant,
    ) {
        match expiry {
            Expiry::Remove => {
                entries.remove(&key);
            }
            Expiry::Until(expires_at) => {
                entries.insert(
                    key,
                    Entry {
                        value,
                        expires_at,
                        written_at: now,
                        ttl_written: ttl,
                    },
                );
            }
        }
    }

    fn remove_live(&self, entries: &mut BTreeMap<String, Entry>, key: &str, now: Instant) -> bool {
        let removed = entries.remove(key);
        if self.has(Bug::DeleteClearsNeighbourExpiry)
            && let Some((_, next)) = entries
                .range_mut::<str, _>((Bound::Excluded(key), Bound::Unbounded))
                .next()
        {
            next.expires_at = None;
        }
        removed.is_some_and(|entry| self.live(&entry, now))
    }

    fn read_one(
        &self,
        entries: &BTreeMap<String, Entry>,
        key: &str,
        now: Instant,
    ) -> Option<Bytes> {
        let entry = entries.get(&self.key(key))?;
        (self.has(Bug::GetManyIgnoresExpiry) || self.live(entry, now)).then(|| entry.value.clone())
    }

    fn matches(&self, key: &str, prefix: &str) -> bool {
        let Some(bug) = self.bug else {
            return key.starts_with(prefix);
        };
        let wildcard = |wild: &[char]| {
            key.chars().count() >= prefix.chars().count()
                && prefix
                    .chars()
                    .zip(key.chars())
                    .all(|(p, k)| p == k || wild.contains(&p))
        };
        match bug {
            Bug::ClearMatchesLikeWildcards => wildcard(&['_', '%']),
            Bug::ClearMatchesGlobs => wildcard(&['?', '*']),
            Bug::ClearCaseInsensitive => key.to_lowercase().starts_with(&prefix.to_lowercase()),
            Bug::ClearMatchesAnywhere => key.contains(prefix),
            Bug::ClearUpperBoundBmp => key >= prefix && *key < *format!("{prefix}\u{ffff}"),
            Bug::ClearUpperBoundMaxChar => key >= prefix && *key < *format!("{prefix}\u{10ffff}"),
            Bug::ClearUpperBoundInclusive => {
                let mut chars: Vec<char> = prefix.chars().collect();
                let next = chars
                    .pop()
                    .and_then(|last| char::from_u32(u32::from(last) + 1));
                match next {
                    Some(next) => {
                        chars.push(next);
                        let upper: String = chars.into_iter().collect();
                        key >= prefix && *key <= *upper
                    }
                    None => key.starts_with(prefix),
                }
            }
            _ => key.starts_with(prefix),
        }
    }
}

#[async_trait]
impl Backend for Planted {
    fn name(&self) -> &'static str {
        "planted"
    }

    fn invalidation_bus(&self) -> Option<Arc<cache_core::raw::invalidation::InvalidationBus>> {
        Some(Arc::clone(&self.bus))
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let entries = self.lock().await;
        let now = self.now();
        let value = entries
            .get(&self.key(key))
            .filter(|entry| self.live(entry, now))
            .map(|entry| entry.value.clone());
        if self.has(Bug::EmptyValueIsAbsent) && value.as_ref().is_some_and(Bytes::is_empty) {
            return Ok(None);
        }
        Ok(value)
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        // Waits, with its worker thread, for any batch holding the blocking lock.
        drop(self.blocking_batch());
        if self.has(Bug::JoinsBatchKeysWithComma) {
            let joined = keys.join(",");
            let entries = self.lock().await;
            let now = self.now();
            let mut values: Vec<Option<Bytes>> = joined
                .split(',')
                .map(|key| self.read_one(&entries, key, now))
                .collect();
            values.resize(keys.len(), None);
            return Ok(values);
        }
        if self.has(Bug::ChunkedGetManyNotSnapshot) || self.has(Bug::GetManyDropsLastChunk) {
            let chunks = keys.chunks(999);
            let whole = keys.len() / 999;
            let mut values = Vec::with_capacity(keys.len());
            for (i, chunk) in chunks.enumerate() {
                if self.has(Bug::GetManyDropsLastChunk) && i >= whole {
                    values.extend(std::iter::repeat_n(None, chunk.len()));
                    continue;
                }
                {
                    let entries = self.lock().await;
                    let now = self.now();
                    values.extend(chunk.iter().map(|key| self.read_one(&entries, key, now)));
                }
                // Each chunk is a round trip of its own.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            return Ok(values);
        }
        let entries = self.lock().await;
        let now = self.now();
        let mut values: Vec<Option<Bytes>> = keys
            .iter()
            .map(|key| self.read_one(&entries, key, now))
            .collect();
        if self.has(Bug::GetManyCompactsMissing) {
            values = values.into_iter().flatten().map(Some).collect();
            values.resize(keys.len(), None);
        }
        if self.has(Bug::GetManyAnswersFirstDuplicateOnly) {
            let mut seen = HashSet::new();
            for (key, value) in keys.iter().zip(values.iter_mut()) {
                if !seen.insert(key) {
                    *value = None;
                }
            }
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
        self.check_key(key)?;
        let key = self.key(key);
        self.check_value(&key, &value).await?;
        let value = if self.has(Bug::TruncatesValuesAt16MiB) {
            value.slice(..value.len().min(16 * 1024 * 1024))
        } else {
            value
        };
        if condition == Condition::IfNotExists {
            if self.has(Bug::RacyIfNotExists) {
                let present = {
                    let entries = self.lock().await;
                    let now = self.now();
                    entries.get(&key).is_some_and(|entry| self.live(entry, now))
                };
                if present {
                    return Ok(false);
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
                let (mut entries, now) = (self.lock().await, self.now());
                let expiry = self.expiry(ttl, Path::IfNotExists, now);
                self.put(&mut entries, key, value, ttl, expiry, now);
                return Ok(true);
            }
            let mut entries = self.lock().await;
            let now = self.now();
            let present = entries.get(&key).is_some_and(|entry| {
                self.has(Bug::IfNotExistsSeesExpiredAsPresent) || self.live(entry, now)
            });
            if present {
                if self.has(Bug::IfNotExistsZeroTtlDeletesPresent) && ttl == Some(Duration::ZERO) {
                    entries.remove(&key);
                }
                if self.has(Bug::IfNotExistsTouchesTtl)
                    && let Expiry::Until(at) = self.expiry(ttl, Path::IfNotExists, now)
                    && let Some(entry) = entries.get_mut(&key)
                {
                    entry.expires_at = at;
                }
                return Ok(self.has(Bug::IfNotExistsAlwaysTrue));
            }
            let expiry = self.expiry(ttl, Path::IfNotExists, now);
            let removes = matches!(expiry, Expiry::Remove);
            self.put(&mut entries, key, value, ttl, expiry, now);
            return Ok(!(removes && self.has(Bug::IfNotExistsZeroTtlReportsNoWrite)));
        }
        let mut entries = self.lock().await;
        let now = self.now();
        let old = entries
            .get(&key)
            .filter(|entry| self.live(entry, now))
            .cloned();
        let mut expiry = self.expiry(ttl, Path::Set, now);
        if self.has(Bug::PlainSetKeepsOldTtl)
            && ttl.is_none()
            && let Some(old) = &old
        {
            expiry = Expiry::Until(old.expires_at);
        }
        let reported = if self.has(Bug::AlwaysReportsInserted) {
            old.is_none()
        } else if self.has(Bug::AlwaysReportsRowsChanged) {
            !old.as_ref()
                .is_some_and(|old| old.value == value && old.expires_at.is_none() && ttl.is_none())
        } else {
            true
        };
        self.put(&mut entries, key, value, ttl, expiry, now);
        Ok(reported)
    }

    async fn set_many(&self, items: Vec<(String, Bytes)>, ttl: Option<Duration>) -> Result<()> {
        if let Some(_blocking) = self.blocking_batch() {
            // The batch's own work, done while holding the lock: 2 ms per 100 keys, so that the
            // stall stands well above what a busy machine does to a timer.
            std::thread::sleep(Duration::from_millis((items.len() / 50) as u64));
        }
        let mut items: Vec<(String, Bytes)> = items;
        if self.has(Bug::PartialBatchOnInvalidKey) {
            for (key, value) in items {
                self.check_key(&key)?;
                self.set(&key, value, ttl, Condition::Always).await?;
            }
            return Ok(());
        }
        if self.has(Bug::SkipsInvalidKeysInBatch) {
            items.retain(|(key, _)| self.check_key(key).is_ok());
        }
        for (key, value) in &items {
            self.check_key(key)?;
            self.check_value(key, value).await?;
        }
        let mut items: Vec<(String, Bytes)> = items
            .into_iter()
            .map(|(key, value)| (self.key(&key), value))
            .collect();
        if self.has(Bug::SetManyDropsEmptyValues) {
            items.retain(|(_, value)| !value.is_empty());
        }
        if self.has(Bug::SetManyTruncatesLargeValues) {
            for (_, value) in &mut items {
                *value = value.slice(..value.len().min(1024 * 1024));
            }
        }
        if self.has(Bug::SetManyFirstDuplicateWins) {
            let mut seen = HashSet::new();
            items.retain(|(key, _)| seen.insert(key.clone()));
        }
        if self.has(Bug::NonAtomicSetMany) {
            for (key, value) in items {
                {
                    let (mut entries, now) = (self.lock().await, self.now());
                    let expiry = self.expiry(ttl, Path::SetMany, now);
                    self.put(&mut entries, key, value, ttl, expiry, now);
                }
                tokio::task::yield_now().await;
            }
            return Ok(());
        }
        let removes = matches!(self.expiry(ttl, Path::SetMany, self.now()), Expiry::Remove);
        let chunk = if removes && self.has(Bug::ChunkedZeroTtlNotAtomic) {
            10_000
        } else if !removes && self.has(Bug::ChunkedSetManyNotAtomic) {
            5_000
        } else {
            usize::MAX
        };
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            {
                let (mut entries, now) = (self.lock().await, self.now());
                for (key, value) in items.by_ref().take(chunk) {
                    let mut expiry = self.expiry(ttl, Path::SetMany, now);
                    if self.has(Bug::SetManyUpsertKeepsExpiry)
                        && let Some(old) = entries.get(&key).filter(|e| self.live(e, now))
                    {
                        expiry = Expiry::Until(old.expires_at);
                    }
                    self.put(&mut entries, key, value, ttl, expiry, now);
                }
            }
            if chunk != usize::MAX {
                // Each chunk is a transaction and a round trip of its own.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        let key = self.key(key);
        let mut entries = self.lock().await;
        let now = self.now();
        let stored = entries.contains_key(&key);
        let live = self.remove_live(&mut entries, &key, now);
        Ok(if self.has(Bug::DeleteAlwaysTrue) {
            true
        } else if self.has(Bug::DeleteIgnoresExpiry) {
            stored
        } else {
            live
        })
    }

    async fn delete_many(&self, keys: &[String]) -> Result<u64> {
        let keys: Vec<String> = keys.iter().map(|key| self.key(key)).collect();
        let mut entries = self.lock().await;
        let now = self.now();
        if self.has(Bug::CountsDuplicateDeletes) {
            let live = keys
                .iter()
                .filter(|key| entries.get(*key).is_some_and(|e| self.live(e, now)))
                .count();
            for key in &keys {
                self.remove_live(&mut entries, key, now);
            }
            return Ok(live as u64);
        }
        let distinct: Vec<&String> = {
            let mut seen = HashSet::new();
            keys.iter().filter(|key| seen.insert(*key)).collect()
        };
        let mut removed = 0;
        for key in &distinct {
            let stored = entries.contains_key(*key);
            if self.remove_live(&mut entries, key, now)
                || (stored && self.has(Bug::DeleteManyCountsExpired))
            {
                removed += 1;
            }
        }
        if self.has(Bug::DeleteManyCountsMissing) {
            return Ok(distinct.len() as u64);
        }
        Ok(removed)
    }

    async fn contains(&self, key: &str) -> Result<bool> {
        let entries = self.lock().await;
        let now = self.now();
        Ok(entries
            .get(&self.key(key))
            .is_some_and(|entry| self.has(Bug::ContainsIgnoresExpiry) || self.live(entry, now)))
    }

    async fn expire_in(&self, key: &str, ttl: Option<Duration>) -> Result<bool> {
        let key = self.key(key);
        let mut entries = self.lock().await;
        let now = self.now();
        let revives = match ttl {
            Some(_) => self.has(Bug::ExpireInRevivesExpired),
            None => self.has(Bug::ExpireInNoneRevivesExpired),
        };
        let Some(entry) = entries
            .get(&key)
            .filter(|e| revives || self.live(e, now))
            .cloned()
        else {
            entries.remove(&key);
            return Ok(self.has(Bug::ExpireInAlwaysTrue));
        };
        if (ttl == Some(Duration::ZERO) && self.has(Bug::ExpireInZeroKeepsKey))
            || (ttl.is_none() && self.has(Bug::ExpireInNoneKeepsTtl))
        {
            return Ok(true);
        }
        let from = if self.has(Bug::ExpireInCountsFromWrite) {
            entry.written_at
        } else {
            now
        };
        match self.expiry(ttl, Path::ExpireIn, from) {
            Expiry::Remove => {
                entries.remove(&key);
            }
            Expiry::Until(at) => {
                if let Some(entry) = entries.get_mut(&key) {
                    entry.expires_at = at;
                    entry.ttl_written = ttl;
                }
            }
        }
        Ok(true)
    }

    async fn ttl(&self, key: &str) -> Result<Option<Ttl>> {
        let entries = self.lock().await;
        let now = self.now();
        let Some(entry) = entries
            .get(&self.key(key))
            .filter(|e| self.has(Bug::TtlIgnoresExpiry) || self.live(e, now))
        else {
            return Ok(None);
        };
        let Some(at) = entry.expires_at else {
            return Ok(Some(Ttl::Eternal));
        };
        let left = at.saturating_duration_since(now);
        Ok(Some(Ttl::Remaining(
            if self.has(Bug::TtlReportsWrittenTtl) {
                entry.ttl_written.unwrap_or(left)
            } else if self.has(Bug::TtlRoundsRemainingToSeconds) {
                Duration::from_secs(left.as_secs())
            } else {
                left
            },
        )))
    }

    async fn take(&self, key: &str) -> Result<Option<Bytes>> {
        if self.has(Bug::TakeNotAtomic) {
            let value = self.get(key).await?;
            tokio::time::sleep(Duration::from_millis(1)).await;
            self.lock().await.remove(key);
            return Ok(value);
        }
        let mut entries = self.lock().await;
        let now = self.now();
        if self.has(Bug::TakeLeavesValue) {
            return Ok(self.live_value(&entries, key, now).map(|entry| entry.value));
        }
        Ok(self.take_one(&mut entries, key, now))
    }

    async fn take_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        if self.has(Bug::TakeManyNotAtomic) {
            let values = self.get_many(keys).await?;
            tokio::time::sleep(Duration::from_millis(2)).await;
            let mut entries = self.lock().await;
            for key in keys {
                entries.remove(key);
            }
            return Ok(values);
        }
        let mut entries = self.lock().await;
        let now = self.now();
        if self.has(Bug::TakeManyAnswersEveryDuplicate) {
            let values: Vec<Option<Bytes>> = keys
                .iter()
                .map(|key| self.live_value(&entries, key, now).map(|entry| entry.value))
                .collect();
            for key in keys {
                entries.remove(key);
            }
            return Ok(values);
        }
        Ok(keys
            .iter()
            .map(|key| self.take_one(&mut entries, key, now))
            .collect())
    }

    async fn get_with_ttl(&self, key: &str) -> Result<Option<(Bytes, Ttl)>> {
        let entries = self.lock().await;
        let now = self.now();
        let entry = if self.has(Bug::GetWithTtlIgnoresExpiry) {
            entries.get(key).cloned()
        } else {
            self.live_value(&entries, key, now)
        };
        Ok(entry.map(|entry| Self::with_ttl(entry, now)))
    }

    async fn get_many_with_ttl(&self, keys: &[String]) -> Result<Vec<Option<(Bytes, Ttl)>>> {
        let entries = self.lock().await;
        let now = self.now();
        let mut found: Vec<Option<(Bytes, Ttl)>> = keys
            .iter()
            .map(|key| {
                self.live_value(&entries, key, now)
                    .map(|entry| Self::with_ttl(entry, now))
            })
            .collect();
        if self.has(Bug::GetManyWithTtlCompacts) {
            found = found.into_iter().flatten().map(Some).collect();
            found.resize(keys.len(), None);
        }
        Ok(found)
    }

    async fn scan(
        &self,
        prefix: &str,
        cursor: ScanCursor,
        options: ScanOptions,
    ) -> Result<ScanPage> {
        let entries = self.lock().await;
        let now = self.now();
        let page = options.page.max(1);
        let listed = |key: &String, entry: &Entry| {
            self.scan_matches(key, prefix)
                && (self.has(Bug::ScanIncludesExpired) || self.live(entry, now))
        };
        let value = |entry: &Entry| {
            (options.values && !self.has(Bug::ScanIgnoresValues)).then(|| entry.value.clone())
        };
        if self.has(Bug::ScanPagesByOffset) {
            let offset = cursor.into_state::<Offset>().map_or(0, |offset| offset.0);
            let found: Vec<(String, Option<Bytes>)> = entries
                .iter()
                .filter(|(key, entry)| listed(key, entry))
                .skip(offset)
                .take(page)
                .map(|(key, entry)| (key.clone(), value(entry)))
                .collect();
            let next = (found.len() == page).then(|| ScanCursor::state(Offset(offset + page)));
            return Ok(ScanPage {
                entries: found,
                next,
            });
        }
        let from = match cursor.last_key() {
            Some(last) if self.has(Bug::ScanRepeatsBoundaryKey) => Bound::Included(last.to_owned()),
            Some(last) => Bound::Excluded(last.to_owned()),
            None => Bound::Unbounded,
        };
        let found: Vec<(String, Option<Bytes>)> = entries
            .range::<String, _>((from, Bound::Unbounded))
            .filter(|(key, entry)| listed(key, entry))
            .take(page)
            .map(|(key, entry)| (key.clone(), value(entry)))
            .collect();
        let next = match found.last() {
            Some((last, _)) if found.len() == page => Some(ScanCursor::after(last.clone())),
            _ => None,
        };
        Ok(ScanPage {
            entries: found,
            next,
        })
    }

    async fn count_prefix(&self, prefix: &str) -> Result<u64> {
        let entries = self.lock().await;
        let now = self.now();
        Ok(entries
            .iter()
            .filter(|(key, entry)| {
                key.starts_with(prefix)
                    && (self.has(Bug::CountIncludesExpired) || self.live(entry, now))
            })
            .count() as u64)
    }

    async fn purge_expired(&self) -> Result<u64> {
        let mut entries = self.lock().await;
        let now = self.now();
        let before = entries.len();
        if self.has(Bug::PurgeRemovesTimedKeys) {
            entries.retain(|_, entry| entry.expires_at.is_none());
        } else {
            entries.retain(|_, entry| self.live(entry, now));
        }
        Ok((before - entries.len()) as u64)
    }

    async fn incr(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        if self.has(Bug::IncrNotAtomic) {
            let (current, old) = self.read_counter(&*self.lock().await, key, self.now())?;
            tokio::time::sleep(Duration::from_millis(1)).await;
            let mut entries = self.lock().await;
            let now = self.now();
            return self.write_counter(&mut entries, key, current, old, delta, ttl, now);
        }
        let mut entries = self.lock().await;
        let now = self.now();
        let (current, old) = self.read_counter(&entries, key, now)?;
        self.write_counter(&mut entries, key, current, old, delta, ttl, now)
    }

    async fn acquire_lease(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        let key = self.key(key);
        let ttl = if self.has(Bug::LeaseNeverExpires) {
            None
        } else {
            Some(ttl)
        };
        let lease = |now: Instant| Entry {
            value: Bytes::copy_from_slice(token.as_bytes()),
            expires_at: ttl.map(|ttl| now + ttl),
            written_at: now,
            ttl_written: ttl,
        };
        if self.has(Bug::LeaseAcquireNotAtomic) {
            let taken = {
                let (entries, now) = (self.lock().await, self.now());
                entries.get(&key).is_some_and(|entry| self.live(entry, now))
            };
            if taken {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
            let (mut entries, now) = (self.lock().await, self.now());
            entries.insert(key, lease(now));
            return Ok(true);
        }
        let (mut entries, now) = (self.lock().await, self.now());
        let taken = entries.get(&key).is_some_and(|entry| self.live(entry, now));
        if taken && !self.has(Bug::LeaseAcquireOverwrites) {
            return Ok(false);
        }
        entries.insert(key, lease(now));
        Ok(true)
    }

    async fn renew_lease(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        let key = self.key(key);
        let (mut entries, now) = (self.lock().await, self.now());
        let Some(entry) = entries.get_mut(&key) else {
            return Ok(false);
        };
        let holds = entry.value == token.as_bytes() || self.has(Bug::LeaseRenewWithoutToken);
        if !(self.live(entry, now) && holds) {
            return Ok(false);
        }
        if !self.has(Bug::LeaseRenewIgnored) {
            entry.expires_at = Some(now + ttl);
        }
        Ok(true)
    }

    async fn release_lease(&self, key: &str, token: &str) -> Result<bool> {
        let key = self.key(key);
        let (mut entries, now) = (self.lock().await, self.now());
        let holds = entries.get(&key).is_some_and(|entry| {
            self.live(entry, now)
                && (entry.value == token.as_bytes() || self.has(Bug::LeaseReleaseWithoutToken))
        });
        if holds {
            entries.remove(&key);
        }
        Ok(holds)
    }

    async fn clear_prefix(&self, prefix: &str) -> Result<u64> {
        if self.has(Bug::ClearEmptyPrefixNoop) && prefix.is_empty() {
            return Ok(0);
        }
        let prefix = if self.has(Bug::ClearTrimsPrefix) {
            prefix.trim_end()
        } else {
            prefix
        };
        let mut entries = self.lock().await;
        let now = self.now();
        let mut doomed: Vec<String> = Vec::new();
        // Pages of 100 keys in the store's order, as a cursor walk sees them.
        let stored: Vec<String> = entries.keys().cloned().collect();
        for page in stored.chunks(100) {
            let matching: Vec<&String> = page.iter().filter(|k| self.matches(k, prefix)).collect();
            if matching.is_empty() && self.has(Bug::ClearScanStopsAtEmptyPage) {
                break;
            }
            doomed.extend(matching.into_iter().cloned());
        }
        if self.has(Bug::ClearOnlyFirstPage) {
            doomed.truncate(1_000);
        }
        let mut removed = 0_u64;
        for key in &doomed {
            let stored = entries.contains_key(key);
            if self.remove_live(&mut entries, key, now)
                || (stored && self.has(Bug::ClearCountsExpired))
            {
                removed += 1;
            }
        }
        if self.has(Bug::ClearCountsScanDuplicates) {
            removed += removed / 100;
        }
        Ok(removed)
    }
}

impl Planted {
    fn live_value(
        &self,
        entries: &BTreeMap<String, Entry>,
        key: &str,
        now: Instant,
    ) -> Option<Entry> {
        entries
            .get(key)
            .filter(|entry| self.live(entry, now))
            .cloned()
    }

    fn take_one(
        &self,
        entries: &mut BTreeMap<String, Entry>,
        key: &str,
        now: Instant,
    ) -> Option<Bytes> {
        let entry = entries.remove(key)?;
        (self.has(Bug::TakeReturnsExpired) || self.live(&entry, now)).then_some(entry.value)
    }

    fn with_ttl(entry: Entry, now: Instant) -> (Bytes, Ttl) {
        let ttl = match entry.expires_at {
            None => Ttl::Eternal,
            Some(at) => Ttl::Remaining(at.saturating_duration_since(now)),
        };
        (entry.value, ttl)
    }

    fn scan_matches(&self, key: &str, prefix: &str) -> bool {
        if self.has(Bug::ScanMatchesLikeWildcards) {
            return key.chars().count() >= prefix.chars().count()
                && prefix
                    .chars()
                    .zip(key.chars())
                    .all(|(p, k)| p == k || p == '_' || p == '%');
        }
        key.starts_with(prefix)
    }
}

/// A walk's cursor in the planted store by offset.
struct Offset(usize);

impl Planted {
    fn read_counter(
        &self,
        entries: &BTreeMap<String, Entry>,
        key: &str,
        now: Instant,
    ) -> Result<(i64, Option<Entry>)> {
        let entry = if self.has(Bug::IncrAddsToExpired) {
            entries.get(key).cloned()
        } else {
            self.live_value(entries, key, now)
        };
        match entry {
            None => Ok((0, None)),
            Some(entry) if self.has(Bug::IncrStoresBinary) => {
                let bytes: [u8; 8] = entry.value[..].try_into().unwrap_or_default();
                Ok((i64::from_le_bytes(bytes), Some(entry)))
            }
            Some(entry) => match parse_counter(key, &entry.value) {
                Ok(current) => Ok((current, Some(entry))),
                Err(_) if self.has(Bug::IncrTreatsGarbageAsZero) => Ok((0, Some(entry))),
                Err(error) => Err(error),
            },
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn write_counter(
        &self,
        entries: &mut BTreeMap<String, Entry>,
        key: &str,
        current: i64,
        old: Option<Entry>,
        delta: i64,
        ttl: Option<Duration>,
        now: Instant,
    ) -> Result<i64> {
        let sum = if self.has(Bug::IncrWraps) {
            current.wrapping_add(delta)
        } else {
            add_to_counter(key, current, delta)?
        };
        let value = if self.has(Bug::IncrStoresBinary) {
            Bytes::copy_from_slice(&sum.to_le_bytes())
        } else {
            Bytes::from(sum.to_string())
        };
        let expiry = match old {
            Some(old) if !self.has(Bug::IncrResetsTtl) => Expiry::Until(old.expires_at),
            _ => self.expiry(ttl, Path::Set, now),
        };
        self.put(entries, key.to_owned(), value, ttl, expiry, now);
        Ok(sum)
    }
}

fn case(name: &str) -> Case {
    cases()
        .into_iter()
        .find(|case| case.name == name)
        .unwrap_or_else(|| panic!("no case {name}"))
}

/// Runs `case_name` against the store without a bug (must pass) and with `bug` (must fail),
/// both with the limits the bug needs.
async fn caught(bug: Bug, case_name: &str) {
    let case = case(case_name);
    let (keys, values) = (bug.limits_keys(), bug.limits_values());
    let correct: Arc<dyn Backend> = Arc::new(Planted::new(None, keys, values));
    let passed = tokio::spawn(run_case(case.run, correct, None)).await;
    assert!(
        passed.is_ok(),
        "{case_name} fails on the store without a bug"
    );
    let buggy: Arc<dyn Backend> = Arc::new(Planted::new(Some(bug), keys, values));
    let outcome = tokio::spawn(run_case(case.run, buggy, None)).await;
    assert!(
        outcome.is_err_and(|error| error.is_panic()),
        "{case_name} did not catch {bug:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_planted_store_without_a_bug_passes_every_case() {
    for (keys, values) in [(false, false), (true, true)] {
        run_all_on_one_store(Arc::new(Planted::new(None, keys, values)), None).await;
    }
}

macro_rules! bug_tests {
    ($($test:ident: $bug:ident => $case:ident;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                caught(Bug::$bug, stringify!($case)).await;
            }
        )*

        /// Every bug has a test, and no test is listed twice.
        #[test]
        fn every_bug_is_planted_once() {
            let planted: Vec<&str> = vec![$(stringify!($bug)),*];
            let distinct: HashMap<&str, usize> =
                planted.iter().map(|bug| (*bug, 0)).collect();
            assert_eq!(distinct.len(), planted.len(), "a bug is planted twice");
            assert!(planted.len() >= 60, "only {} bugs are planted", planted.len());
        }
    };
}

bug_tests! {
    case_folded_keys: CaseInsensitiveKeys => keys_differing_in_case_are_distinct;
    keys_cut_at_nul: CutsKeysAtNul => key_with_nul_round_trips_or_is_rejected;
    trimmed_keys: TrimsKeys => near_miss_keys_are_distinct;
    spaces_to_underscores: SpacesToUnderscores => near_miss_keys_are_distinct_in_batches;
    normalised_keys: ComposesUnicode => non_ascii_key_round_trips;
    control_characters_stripped: StripsControlChars => control_characters_in_batch_keys;
    long_keys_cut: TruncatesLongKeys => key_of_64_kib_round_trips_or_is_rejected;
    empty_key_refused: RejectsEmptyKey => raw_empty_key_is_a_key;
    partial_batch_on_a_bad_key: PartialBatchOnInvalidKey => invalid_key_fails_the_whole_batch;
    bad_keys_skipped: SkipsInvalidKeysInBatch => invalid_key_fails_the_whole_batch;
    refused_key_misnamed: InvalidKeyNamesCutKey => key_of_64_kib_round_trips_or_is_rejected;
    comma_joined_batch_keys: JoinsBatchKeysWithComma => control_characters_in_batch_keys;
    empty_value_absent: EmptyValueIsAbsent => empty_value_round_trips;
    values_cut_at_16_mib: TruncatesValuesAt16MiB => value_of_64_mib_round_trips_or_is_too_large;
    oversize_as_backend_error: OversizeIsBackendError => value_of_64_mib_round_trips_or_is_too_large;
    oversize_drops_old_value: OversizeDropsOldValue => value_of_64_mib_round_trips_or_is_too_large;
    batch_values_cut: SetManyTruncatesLargeValues => large_values_round_trip_in_batches;
    batch_empty_values_dropped: SetManyDropsEmptyValues => set_many_then_get_many_round_trips;
    ignored_ttl: IgnoresTtl => expired_key_is_absent_for_get;
    ttl_in_whole_seconds: RoundsTtlToSeconds => ttl_is_honoured_to_the_millisecond;
    zero_ttl_as_eternal: ZeroTtlMeansEternal => zero_ttl_removes_the_key;
    plain_set_keeps_ttl: PlainSetKeepsOldTtl => plain_set_clears_an_old_ttl;
    huge_ttl_overflows: HugeTtlOverflows => huge_ttl_clamps_instead_of_failing;
    ttl_in_i32_seconds: TtlInI32Seconds => hundred_year_ttl_is_kept;
    sub_ms_ttl_eternal: SubMsTtlEternal => sub_millisecond_ttl_is_not_eternal;
    whole_second_clock: WholeSecondClock => ttl_is_honoured_to_the_millisecond;
    batch_ttl_ignored: SetManyIgnoresTtl => set_many_ttl_is_honoured_to_the_millisecond;
    batch_ttl_in_seconds: SetManyRoundsTtlToSeconds => set_many_ttl_is_honoured_to_the_millisecond;
    batch_upsert_keeps_expiry: SetManyUpsertKeepsExpiry => set_many_without_ttl_clears_old_ttls;
    batch_huge_ttl_overflows: SetManyHugeTtlOverflows => set_many_huge_ttls_clamp;
    batch_ttl_in_i32_seconds: SetManyTtlInI32Seconds => set_many_huge_ttls_clamp;
    batch_sub_ms_ttl_eternal: SetManySubMsTtlEternal => set_many_sub_millisecond_ttl_is_not_eternal;
    batch_zero_ttl_writes: SetManyZeroTtlWrites => zero_ttl_in_set_many_removes_the_keys;
    batch_first_duplicate_wins: SetManyFirstDuplicateWins => set_many_last_duplicate_wins;
    torn_batches: NonAtomicSetMany => set_many_is_atomic_for_readers;
    torn_big_batches: ChunkedSetManyNotAtomic => set_many_of_20000_keys_is_atomic_for_a_reader_on_another_handle;
    torn_big_removals: ChunkedZeroTtlNotAtomic => set_many_of_20000_keys_is_atomic_for_a_reader_on_another_handle;
    runtime_stalled_by_a_batch: BlockingBatchLock => big_batches_never_stall_the_runtime;
    torn_big_reads: ChunkedGetManyNotSnapshot => set_many_of_20000_keys_is_atomic_for_a_reader_on_another_handle;
    last_chunk_dropped: GetManyDropsLastChunk => get_many_of_20000_keys;
    missing_keys_compacted: GetManyCompactsMissing => get_many_omits_missing_keys;
    duplicates_answered_once: GetManyAnswersFirstDuplicateOnly => get_many_answers_duplicates;
    batch_reads_ignore_expiry: GetManyIgnoresExpiry => expired_key_is_absent_for_get_many;
    check_then_set_race: RacyIfNotExists => if_not_exists_race_of_64_tasks_has_one_winner;
    expired_blocks_if_not_exists: IfNotExistsSeesExpiredAsPresent => expired_key_is_absent_for_if_not_exists;
    if_not_exists_ttl_ignored: IfNotExistsIgnoresTtl => if_not_exists_ttl_is_honoured_to_the_millisecond;
    if_not_exists_ttl_in_seconds: IfNotExistsRoundsTtlToSeconds => if_not_exists_ttl_is_honoured_to_the_millisecond;
    if_not_exists_huge_ttl_overflows: IfNotExistsHugeTtlOverflows => if_not_exists_huge_ttls_clamp;
    if_not_exists_sub_ms_ttl_eternal: IfNotExistsSubMsTtlEternal => if_not_exists_sub_millisecond_ttl_is_not_eternal;
    if_not_exists_zero_ttl_deletes: IfNotExistsZeroTtlDeletesPresent => if_not_exists_with_zero_ttl_spares_a_present_key;
    if_not_exists_zero_ttl_no_write: IfNotExistsZeroTtlReportsNoWrite => if_not_exists_with_zero_ttl_leaves_nothing;
    if_not_exists_touches_ttl: IfNotExistsTouchesTtl => if_not_exists_keeps_the_ttl_of_a_present_key;
    if_not_exists_always_true: IfNotExistsAlwaysTrue => if_not_exists_keeps_an_existing_value_and_ttl;
    rows_changed_as_answer: AlwaysReportsRowsChanged => always_reports_a_write_on_overwrite_and_identical_rewrite;
    row_inserted_as_answer: AlwaysReportsInserted => always_reports_a_write_on_overwrite_and_identical_rewrite;
    expire_in_revives: ExpireInRevivesExpired => expired_key_is_absent_for_expire_in_with_a_ttl;
    persist_revives: ExpireInNoneRevivesExpired => expired_key_is_absent_for_expire_in;
    expire_in_from_the_write: ExpireInCountsFromWrite => expire_in_counts_from_the_call;
    expire_in_in_seconds: ExpireInRoundsToSeconds => expire_in_is_honoured_to_the_millisecond;
    expire_in_in_i32_seconds: ExpireInTtlInI32Seconds => expire_in_huge_ttls_clamp;
    expire_in_sub_ms_eternal: ExpireInSubMsTtlEternal => expire_in_sub_millisecond_ttl_is_not_eternal;
    expire_in_always_true: ExpireInAlwaysTrue => expire_in_on_missing_key_is_false;
    expire_in_zero_kept: ExpireInZeroKeepsKey => expire_in_zero_removes_the_key;
    persist_ignored: ExpireInNoneKeepsTtl => expire_in_none_persists_the_key;
    ttl_as_written: TtlReportsWrittenTtl => ttl_counts_down_as_time_passes;
    ttl_left_in_seconds: TtlRoundsRemainingToSeconds => ttl_reports_remaining_time_in_milliseconds;
    ttl_of_expired_key: TtlIgnoresExpiry => expired_key_is_absent_for_ttl;
    contains_expired_key: ContainsIgnoresExpiry => expired_key_is_absent_for_contains;
    expired_deletes_counted: DeleteIgnoresExpiry => expired_key_is_absent_for_delete;
    delete_always_true: DeleteAlwaysTrue => delete_reports_whether_the_key_existed;
    duplicate_deletes_counted: CountsDuplicateDeletes => delete_many_counts_exactly;
    missing_deletes_counted: DeleteManyCountsMissing => delete_many_counts_exactly;
    expired_batch_deletes_counted: DeleteManyCountsExpired => expired_key_is_absent_for_delete_many;
    delete_breaks_neighbour_expiry: DeleteClearsNeighbourExpiry => delete_spares_neighbours_and_their_ttls;
    like_wildcards_in_clear: ClearMatchesLikeWildcards => clear_spares_prefixes_with_sql_like_characters;
    globs_in_clear: ClearMatchesGlobs => clear_spares_prefixes_with_glob_characters;
    case_folded_clear: ClearCaseInsensitive => clear_is_case_sensitive;
    clear_matches_anywhere: ClearMatchesAnywhere => clear_spares_keys_that_hold_the_prefix_in_the_middle;
    clear_trims_prefix: ClearTrimsPrefix => clear_of_a_prefix_with_a_trailing_space_is_exact;
    clear_bound_at_u_ffff: ClearUpperBoundBmp => clear_takes_keys_whose_next_character_is_far_outside_ascii;
    clear_bound_at_u_10ffff: ClearUpperBoundMaxChar => clear_takes_keys_whose_next_character_is_far_outside_ascii;
    clear_bound_inclusive: ClearUpperBoundInclusive => clear_spares_sibling_prefixes;
    scan_stops_at_empty_page: ClearScanStopsAtEmptyPage => clear_spares_hundreds_of_unrelated_keys;
    scan_duplicates_counted: ClearCountsScanDuplicates => clear_of_2500_keys_counts_them_all;
    clear_first_page_only: ClearOnlyFirstPage => clear_of_2500_keys_counts_them_all;
    expired_clears_counted: ClearCountsExpired => clear_counts_live_keys_only;
    empty_prefix_clear_noop: ClearEmptyPrefixNoop => clear_of_the_empty_prefix_empties_the_store;
    take_leaves_value: TakeLeavesValue => take_returns_the_value_and_removes_it;
    take_get_then_delete: TakeNotAtomic => take_race_of_64_tasks_has_one_winner;
    take_returns_expired: TakeReturnsExpired => take_of_a_missing_or_expired_key_is_none;
    take_many_read_then_delete: TakeManyNotAtomic => take_many_race_takes_each_key_once_in_all;
    take_many_every_duplicate: TakeManyAnswersEveryDuplicate => take_many_takes_each_key_once;
    get_with_ttl_of_expired: GetWithTtlIgnoresExpiry => get_with_ttl_reads_value_and_expiry;
    get_many_with_ttl_compacted: GetManyWithTtlCompacts => get_many_with_ttl_answers_positionally;
    walk_lists_expired: ScanIncludesExpired => scan_walks_25000_live_keys_once_among_neighbours;
    walk_repeats_boundaries: ScanRepeatsBoundaryKey => scan_walks_25000_live_keys_once_among_neighbours;
    walk_by_offset: ScanPagesByOffset => scan_during_writes_returns_every_steady_key_once;
    walk_like_wildcards: ScanMatchesLikeWildcards => scan_of_a_prefix_with_pattern_characters_is_exact;
    walk_without_values: ScanIgnoresValues => scan_with_values_returns_each_value;
    count_of_expired: CountIncludesExpired => count_prefix_counts_live_keys_only;
    purge_of_timed_keys: PurgeRemovesTimedKeys => purge_expired_spares_live_keys;
    incr_read_add_write: IncrNotAtomic => incr_from_64_tasks_sums_exactly;
    incr_resets_ttl: IncrResetsTtl => incr_ttl_is_set_at_creation_and_kept;
    incr_revives_expired: IncrAddsToExpired => incr_on_an_expired_counter_starts_again;
    incr_garbage_as_zero: IncrTreatsGarbageAsZero => incr_refuses_a_value_that_is_not_a_counter;
    incr_wraps: IncrWraps => incr_overflow_is_refused;
    incr_binary: IncrStoresBinary => incr_returns_each_sum_and_stores_decimal_text;
    lease_overwrites: LeaseAcquireOverwrites => lease_goes_to_one_of_64_contenders_on_two_handles;
    lease_check_then_set: LeaseAcquireNotAtomic => lease_goes_to_one_of_64_contenders_on_two_handles;
    lease_without_ttl: LeaseNeverExpires => expired_lease_is_taken_over;
    lease_release_by_anyone: LeaseReleaseWithoutToken => expired_holder_cannot_release_or_renew_the_next_lease;
    lease_renew_by_anyone: LeaseRenewWithoutToken => expired_holder_cannot_release_or_renew_the_next_lease;
    lease_renew_ignored: LeaseRenewIgnored => renewed_lease_outlives_its_first_ttl;
}
