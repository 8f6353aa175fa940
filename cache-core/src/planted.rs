//! Bugs the typed cache can be built with, to show that the conformance suite catches them (the
//! facade's twin of the planted stores in `tests/suite_catches_bugs.rs`). Only a cache built
//! through the conformance kit's hidden `CacheBuilder::planted_bug` has one; in a build without
//! the `conformance` feature every check is a constant `false`.

/// One bug of the kind cache libraries with the same features have shipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "conformance"), allow(dead_code))]
#[non_exhaustive]
pub enum FacadeBug {
    /// Every cache writes the entry header, so plain JSON entries are no longer plain JSON.
    HeaderOnEveryCache,
    /// Freshness measured up to the TTL: entries are never stale.
    FreshUntilFromTtl,
    /// A stale read waits for its refresh instead of serving the stale value.
    RefreshInForeground,
    /// Every stale read starts its own background refresh.
    RefreshPerReader,
    /// A failed refresh is tried again on the very next stale read.
    NoRefreshThrottle,
    /// A failed background refresh deletes the stale value.
    FailedRefreshDropsStale,
    /// A refresh that finds nothing deletes the stale value.
    NotFoundDropsStale,
    /// "Not found" is never remembered.
    NegativeNotRemembered,
    /// The TTL a loader chose is ignored.
    LoaderTtlIgnored,
    /// The batch loader is called once per absent key.
    BatchLoaderPerKey,
    /// Jitter lengthens TTLs as well as shortening them.
    JitterLengthens,
    /// An entry whose header does not parse reads as absent.
    BadHeaderIsAbsent,
    /// Reads never compare tag versions.
    TagsNotChecked,
    /// A tag without a stored version counts as version 0, and invalidating deletes it.
    MissingTagIsVersionZero,
    /// A write re-reads the tag versions after it lands and, finding them changed, writes the
    /// entry again under the new ones "to keep it valid".
    StampAtWriteEnd,
    /// Tag versions kept outside the cache's prefix (`tag/{tag}`, as pomdapi does).
    TagKeysOutsidePrefix,
    /// User keys may reach the tag versions' space.
    ReservedKeysReachable,
    /// The tags a loader returns with its value are dropped.
    LoaderTagsIgnored,
    /// A background refresh whose loader panics is not held back, so the next stale read runs
    /// the panicking loader again.
    PanickedRefreshNotThrottled,
    /// A walk of a tagged cache lists the tag versions as if they were entries.
    WalkListsTagVersions,
    /// `len` of a tagged cache counts the tag versions.
    LenCountsTagVersions,
    /// The blocking cache runs each call on a runtime of its own, made for the call and dropped
    /// with it, so whatever the call leaves running (a background refresh) dies with it.
    BlockingRuntimePerCall,
    /// The blocking cache's walk ends after its first page.
    BlockingWalkFirstPageOnly,
    /// Fleet-wide single flight takes no lease: every process loads.
    FleetLeaseIgnored,
    /// The holder of a fleet lease never renews it: a load longer than the lease lets another
    /// process load too.
    FleetLeaseNotRenewed,
    /// Batch loads take no fleet lease: every process loads the batch.
    FleetBatchWithoutLeases,
    /// `lock` does not look in the store first: a present value is produced again.
    LockSkipsTheStore,
    /// A waiter whose lock holder went away without a value fails instead of taking over.
    LockWaiterGivesUp,
    /// A blocking loader's own calls to the cache do not know the load they are made for, so
    /// a loader asking for its own key waits for itself.
    BlockingLoaderCallsForgetTheLoad,
    /// The local tier's own cache writes announce nothing: its copies outlive them.
    LocalTierMissesOwnWrites,
    /// A local copy is held for the whole hold, past the entry's TTL in the store.
    LocalTierIgnoresStoreTtl,
    /// A read that raced a write keeps its (older) answer in the local tier.
    LocalFillIgnoresRaces,
    /// Each cache keeps a bus of its own, so caches over one store handle miss each other's
    /// writes.
    LocalBusPerCache,
    /// `get_many` asks the store for every key, held or not.
    GetManyBypassesTier,
    /// `get_many_vec` answers the values it found in a row, dropping the places of the misses.
    GetManyVecCompactsMisses,
}
