//! The typed features' cases are only worth something if they fail for a broken facade. Each
//! test here builds the caches of one case with one planted bug of the kind cache libraries with
//! the same features have shipped, and checks that the case fails, while it passes without the
//! bug, on the reference store.

use std::sync::Arc;

use cache_core::conformance::{FacadeBug, cases, run_case_with_facade_bug};
use cache_core::testing::ReferenceBackend;

/// Runs `case_name` without a bug (must pass) and with `bug` (must fail).
async fn caught(bug: FacadeBug, case_name: &str) {
    let case = cases()
        .into_iter()
        .find(|case| case.name == case_name)
        .unwrap_or_else(|| panic!("no case {case_name}"));
    let store = || Arc::new(ReferenceBackend::default());
    let passed = tokio::spawn(run_case_with_facade_bug(case.run, store(), None)).await;
    assert!(passed.is_ok(), "{case_name} fails without a bug");
    let outcome = tokio::spawn(run_case_with_facade_bug(case.run, store(), Some(bug))).await;
    assert!(
        outcome.is_err_and(|error| error.is_panic()),
        "{case_name} did not catch {bug:?}"
    );
}

macro_rules! bug_tests {
    ($($test:ident: $bug:ident => $case:ident;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                caught(FacadeBug::$bug, stringify!($case)).await;
            }
        )*

        /// Every bug has a test, and no test is listed twice.
        #[test]
        fn every_facade_bug_is_planted_once() {
            let planted: Vec<&str> = vec![$(stringify!($bug)),*];
            let distinct: std::collections::HashSet<&str> = planted.iter().copied().collect();
            assert_eq!(distinct.len(), planted.len(), "a bug is planted twice");
        }
    };
}

bug_tests! {
    header_on_plain_caches: HeaderOnEveryCache => only_freshness_caches_write_the_entry_header;
    never_stale: FreshUntilFromTtl => entries_turn_stale_then_expire_on_time;
    stale_reads_wait: RefreshInForeground => stale_reads_serve_at_once_and_refresh_once;
    refresh_per_reader: RefreshPerReader => stale_reads_serve_at_once_and_refresh_once;
    failing_source_hammered: NoRefreshThrottle => failed_refresh_keeps_the_stale_value_and_throttles_retries;
    failure_drops_stale: FailedRefreshDropsStale => failed_refresh_keeps_the_stale_value_and_throttles_retries;
    not_found_drops_stale: NotFoundDropsStale => refresh_that_finds_nothing_keeps_the_stale_value;
    not_found_forgotten: NegativeNotRemembered => negative_entries_are_remembered_and_absent_for_reads;
    loader_ttl_ignored: LoaderTtlIgnored => loader_chooses_ttl_and_freshness;
    batch_loader_per_key: BatchLoaderPerKey => batch_loader_runs_once_for_all_misses;
    jitter_lengthens: JitterLengthens => jitter_spreads_ttls_within_its_fraction;
    bad_header_absent: BadHeaderIsAbsent => entry_without_a_valid_header_is_a_decode_error;
    tags_not_checked: TagsNotChecked => invalidating_any_tag_of_an_entry_removes_it_for_every_read;
    missing_tag_as_version_zero: MissingTagIsVersionZero => a_lost_tag_version_never_revives_its_entries;
    stamp_at_write_end: StampAtWriteEnd => a_write_racing_an_invalidation_never_survives_it;
    tag_keys_outside_prefix: TagKeysOutsidePrefix => invalidating_any_tag_of_an_entry_removes_it_for_every_read;
    reserved_keys_reachable: ReservedKeysReachable => user_keys_cannot_reach_tag_versions;
    loader_tags_ignored: LoaderTagsIgnored => loaders_may_tag_their_values;
    panicking_refresh_retried: PanickedRefreshNotThrottled => panicking_refresh_is_a_failed_one;
    walk_lists_tag_versions: WalkListsTagVersions => tagged_cache_walks_and_counts_entries_only;
    len_counts_tag_versions: LenCountsTagVersions => tagged_cache_walks_and_counts_entries_only;
    fleet_lease_ignored: FleetLeaseIgnored => fleet_single_flight_loads_once_across_caches;
    fleet_lease_not_renewed: FleetLeaseNotRenewed => fleet_holder_renews_its_lease_while_it_loads;
    fleet_batch_without_leases: FleetBatchWithoutLeases => fleet_batch_loads_each_key_once_across_caches;
    lock_skips_the_store: LockSkipsTheStore => lock_returns_a_present_value_without_locking;
    lock_waiter_gives_up: LockWaiterGivesUp => dropped_lock_lets_one_waiter_take_over;
    local_misses_own_writes: LocalTierMissesOwnWrites => own_writes_drop_held_copies_at_once;
    local_ignores_store_ttl: LocalTierIgnoresStoreTtl => copies_never_outlive_the_stores_ttl;
    local_fill_ignores_races: LocalFillIgnoresRaces => a_read_racing_a_write_keeps_no_stale_copy;
    local_bus_per_cache: LocalBusPerCache => caches_over_one_handle_see_each_others_writes;
    get_many_bypasses_tier: GetManyBypassesTier => get_many_asks_the_store_only_for_keys_not_held;
    get_many_vec_compacts_misses: GetManyVecCompactsMisses => get_many_vec_answers_in_the_callers_order;
}
