//! The cases, one module per group. Each case is an `async fn(Ctx) -> Result<()>` that fits on
//! a screen.

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

pub mod atomicity;
pub mod batches;
pub mod clear;
pub mod conditional;
pub mod counters;
pub mod facade;
pub mod faults;
pub mod freshness;
pub mod keys;
pub mod leases;
pub mod loading;
pub mod local;
pub mod locks;
pub mod neighbours;
pub mod paths;
pub mod round_trip;
pub mod tags;
pub mod take;
pub mod ttl;
pub mod typed_capabilities;
pub mod walk;
pub mod whole_store;

/// The list every table of cases is built from: the test macro, [`super::cases`] and the runner.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_case_list {
    ([$($callback:tt)*] $($args:tt)*) => {
        $($callback)* ! {
            $($args)*
            (round_trip::missing_key_reads_as_none)
            (round_trip::set_then_get_returns_the_bytes)
            (round_trip::empty_value_round_trips)
            (round_trip::every_byte_value_round_trips)
            (round_trip::four_mib_value_round_trips)
            (round_trip::value_of_64_mib_round_trips_or_is_too_large)
            (round_trip::large_values_round_trip_in_batches)
            (round_trip::overwrite_replaces_the_value)
            (round_trip::values_are_copies_not_shared_state)
            (keys::empty_key_round_trips_or_is_rejected)
            (keys::key_of_64_kib_round_trips_or_is_rejected)
            (keys::key_with_nul_round_trips_or_is_rejected)
            (keys::key_with_newline_and_tab_round_trips)
            (keys::key_with_glob_characters_round_trips)
            (keys::key_with_sql_like_characters_round_trips)
            (keys::key_with_quotes_and_backslashes_round_trips)
            (keys::non_ascii_key_round_trips)
            (keys::keys_differing_in_case_are_distinct)
            (keys::awkward_keys_work_in_batches)
            (neighbours::near_miss_keys_are_distinct)
            (neighbours::near_miss_keys_are_distinct_in_batches)
            (neighbours::control_characters_in_batch_keys)
            (neighbours::invalid_key_fails_the_whole_batch)
            (batches::get_many_of_zero_keys_is_empty)
            (batches::get_many_omits_missing_keys)
            (batches::get_many_answers_duplicates)
            (batches::get_many_of_20000_keys)
            (batches::set_many_of_zero_items_is_fine)
            (batches::set_many_then_get_many_round_trips)
            (batches::set_many_last_duplicate_wins)
            (batches::set_many_is_atomic_for_readers)
            (batches::set_many_applies_the_ttl_to_every_key)
            (batches::delete_reports_whether_the_key_existed)
            (batches::delete_many_counts_exactly)
            (batches::delete_many_of_zero_keys_is_zero)
            (batches::contains_reports_presence)
            (atomicity::set_many_of_20000_keys_is_atomic_for_a_reader_on_another_handle)
            (atomicity::big_batches_never_stall_the_runtime)
            (ttl::ttl_of_missing_key_is_none)
            (ttl::ttl_of_key_without_expiry_is_eternal)
            (ttl::ttl_reports_remaining_time_in_milliseconds)
            (ttl::ttl_counts_down_as_time_passes)
            (ttl::expired_key_is_absent_for_get)
            (ttl::expired_key_is_absent_for_get_many)
            (ttl::expired_key_is_absent_for_contains)
            (ttl::expired_key_is_absent_for_ttl)
            (ttl::expired_key_is_absent_for_delete)
            (ttl::expired_key_is_absent_for_delete_many)
            (ttl::expired_key_is_absent_for_if_not_exists)
            (ttl::expired_key_is_absent_for_expire_in)
            (ttl::expired_key_is_absent_for_expire_in_with_a_ttl)
            (ttl::ttl_is_honoured_to_the_millisecond)
            (ttl::sub_millisecond_ttl_is_not_eternal)
            (ttl::overwrite_resets_the_ttl)
            (ttl::plain_set_clears_an_old_ttl)
            (ttl::zero_ttl_removes_the_key)
            (ttl::zero_ttl_in_set_many_removes_the_keys)
            (ttl::hundred_year_ttl_is_kept)
            (ttl::huge_ttl_clamps_instead_of_failing)
            (ttl::expire_in_on_missing_key_is_false)
            (ttl::expire_in_sets_a_new_ttl)
            (ttl::expire_in_counts_from_the_call)
            (ttl::expire_in_none_persists_the_key)
            (ttl::expire_in_zero_removes_the_key)
            (ttl::delete_spares_neighbours_and_their_ttls)
            (paths::set_many_ttl_is_honoured_to_the_millisecond)
            (paths::set_many_without_ttl_clears_old_ttls)
            (paths::set_many_with_a_ttl_replaces_no_expiry)
            (paths::set_many_huge_ttls_clamp)
            (paths::set_many_sub_millisecond_ttl_is_not_eternal)
            (paths::if_not_exists_ttl_is_honoured_to_the_millisecond)
            (paths::if_not_exists_huge_ttls_clamp)
            (paths::if_not_exists_sub_millisecond_ttl_is_not_eternal)
            (paths::expire_in_is_honoured_to_the_millisecond)
            (paths::expire_in_huge_ttls_clamp)
            (paths::expire_in_sub_millisecond_ttl_is_not_eternal)
            (conditional::if_not_exists_writes_an_absent_key)
            (conditional::if_not_exists_keeps_an_existing_value_and_ttl)
            (conditional::if_not_exists_keeps_the_ttl_of_a_present_key)
            (conditional::if_not_exists_race_of_64_tasks_has_one_winner)
            (conditional::if_not_exists_with_zero_ttl_leaves_nothing)
            (conditional::if_not_exists_with_zero_ttl_spares_a_present_key)
            (conditional::always_reports_a_write_on_overwrite_and_identical_rewrite)
            (conditional::concurrent_writers_of_distinct_keys_lose_nothing)
            (clear::clear_removes_every_key_of_the_prefix)
            (clear::clear_counts_live_keys_only)
            (clear::clear_spares_sibling_prefixes)
            (clear::clear_spares_keys_that_hold_the_prefix_in_the_middle)
            (clear::clear_spares_prefixes_with_glob_characters)
            (clear::clear_spares_prefixes_with_sql_like_characters)
            (clear::clear_is_case_sensitive)
            (clear::clear_of_a_prefix_with_a_trailing_space_is_exact)
            (clear::clear_takes_keys_whose_next_character_is_far_outside_ascii)
            (clear::clear_spares_hundreds_of_unrelated_keys)
            (clear::clear_of_an_empty_prefix_space_is_zero)
            (clear::clear_of_2500_keys_counts_them_all)
            (clear::cache_works_again_after_clear)
            (whole_store::clear_of_the_empty_prefix_empties_the_store exclusive)
            (whole_store::raw_empty_key_is_a_key exclusive)
            (facade::cache_applies_its_prefix)
            (facade::cache_applies_its_default_ttl)
            (facade::explicit_no_ttl_overrides_the_default)
            (facade::get_many_answers_with_the_callers_keys)
            (facade::get_many_vec_answers_in_the_callers_order)
            (facade::cbor_values_round_trip)
            (facade::json_values_are_plain_json)
            (facade::raw_values_pass_through)
            (facade::typed_batches_round_trip)
            (faults::corrupt_bytes_give_decode_error_naming_the_key)
            (faults::corrupt_bytes_in_get_many_give_decode_error)
            (faults::wrong_type_gives_decode_error_and_loading_heals_it)
            (faults::decode_policy_fail_keeps_loading_verbs_strict)
            (faults::decode_policy_miss_leaves_undecodable_entries_out_of_batches)
            (faults::get_many_vec_keeps_places_when_an_entry_does_not_decode)
            (loading::get_or_insert_with_returns_a_cached_value_without_loading)
            (loading::get_or_insert_with_stores_what_it_loads)
            (loading::concurrent_loads_of_one_key_run_the_loader_once)
            (loading::loader_error_reaches_every_waiter_and_caches_nothing)
            (loading::cancelled_loader_lets_a_waiter_take_over)
            (loading::loads_of_distinct_keys_run_in_parallel)
            (loading::loader_asking_for_its_own_key_fails_instead_of_waiting)
            (loading::waiters_give_up_after_the_load_wait_timeout)
            (freshness::only_freshness_caches_write_the_entry_header)
            (freshness::entries_turn_stale_then_expire_on_time)
            (freshness::stale_reads_serve_at_once_and_refresh_once)
            (freshness::failed_refresh_keeps_the_stale_value_and_throttles_retries)
            (freshness::refresh_that_finds_nothing_keeps_the_stale_value)
            (freshness::panicking_refresh_is_a_failed_one)
            (freshness::negative_entries_are_remembered_and_absent_for_reads)
            (freshness::loader_chooses_ttl_and_freshness)
            (freshness::refresh_reloads_now_and_keeps_the_old_value_on_failure)
            (freshness::batch_loader_runs_once_for_all_misses)
            (freshness::cancelled_readers_neither_stop_a_refresh_nor_block_a_load)
            (freshness::jitter_spreads_ttls_within_its_fraction)
            (freshness::entry_without_a_valid_header_is_a_decode_error)
            (tags::invalidating_any_tag_of_an_entry_removes_it_for_every_read)
            (tags::invalidation_costs_calls_independent_of_the_entries)
            (tags::a_write_racing_an_invalidation_never_survives_it)
            (tags::invalidation_is_seen_by_a_second_handle)
            (tags::clear_removes_tag_state)
            (tags::user_keys_cannot_reach_tag_versions)
            (tags::loaders_may_tag_their_values)
            (tags::a_lost_tag_version_never_revives_its_entries)
            (tags::tags_need_a_tagged_cache)
            (take::take_returns_the_value_and_removes_it)
            (take::take_of_a_missing_or_expired_key_is_none)
            (take::take_race_of_64_tasks_has_one_winner)
            (take::take_many_takes_each_key_once)
            (take::take_many_race_takes_each_key_once_in_all)
            (take::get_with_ttl_reads_value_and_expiry)
            (take::get_many_with_ttl_answers_positionally)
            (walk::scan_walks_25000_live_keys_once_among_neighbours)
            (walk::scan_with_values_returns_each_value)
            (walk::scan_during_writes_returns_every_steady_key_once)
            (walk::scan_of_a_prefix_with_pattern_characters_is_exact)
            (walk::count_prefix_counts_live_keys_only)
            (walk::purge_expired_spares_live_keys)
            (counters::incr_returns_each_sum_and_stores_decimal_text)
            (counters::incr_from_64_tasks_sums_exactly)
            (counters::incr_ttl_is_set_at_creation_and_kept)
            (counters::incr_on_an_expired_counter_starts_again)
            (counters::incr_refuses_a_value_that_is_not_a_counter)
            (counters::incr_overflow_is_refused)
            (leases::lease_goes_to_one_of_64_contenders_on_two_handles)
            (leases::expired_lease_is_taken_over)
            (leases::expired_holder_cannot_release_or_renew_the_next_lease)
            (leases::renewed_lease_outlives_its_first_ttl)
            (locks::lock_returns_a_present_value_without_locking)
            (locks::lock_holder_hands_its_value_to_every_waiter)
            (locks::dropped_lock_lets_one_waiter_take_over)
            (locks::fleet_single_flight_loads_once_across_caches)
            (locks::fleet_holder_renews_its_lease_while_it_loads)
            (locks::fleet_waiter_takes_over_an_expired_lease)
            (locks::fleet_waiters_load_themselves_after_max_wait)
            (locks::fleet_lock_is_held_across_caches)
            (locks::fleet_batch_loads_each_key_once_across_caches)
            (locks::cancelled_lock_holders_and_waiters_lose_nothing)
            (locks::lock_waiters_give_up_after_the_load_wait_timeout)
            (typed_capabilities::typed_capabilities_use_the_callers_keys)
            (typed_capabilities::typed_counters_use_the_callers_keys)
            (typed_capabilities::tagged_cache_walks_and_counts_entries_only)
            (typed_capabilities::freshness_cache_walks_values_not_headers)
            (typed_capabilities::typed_walks_cross_pages)
            (local::held_copies_are_served_without_the_store)
            (local::get_many_asks_the_store_only_for_keys_not_held)
            (local::own_writes_drop_held_copies_at_once)
            (local::caches_over_one_handle_see_each_others_writes)
            (local::copies_never_outlive_the_stores_ttl)
            (local::a_read_racing_a_write_keeps_no_stale_copy)
        }
    };
}

/// The document type the typed cases store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Doc {
    /// An identifier.
    pub id: String,
    /// A few strings.
    pub names: Vec<String>,
    /// A number.
    pub version: u32,
}

/// A sample document whose content depends on `n`.
pub fn doc(n: u32) -> Doc {
    Doc {
        id: format!("did:example:{n}"),
        names: vec![format!("at://name{n}.example"), "🦀 ünïcode".into()],
        version: n,
    }
}

/// `text` as a value.
pub fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

/// `len` bytes counting up modulo `modulus` (a prime, so that no power-of-two cut lines up
/// with the pattern), built by copying blocks so that 64 MiB is quick also in debug builds.
pub fn patterned(len: usize, modulus: u8) -> Bytes {
    let block: Vec<u8> = (0..usize::from(modulus) * 256)
        .map(|i| (i % usize::from(modulus)) as u8)
        .collect();
    let mut value = Vec::with_capacity(len);
    while value.len() < len {
        let take = block.len().min(len - value.len());
        value.extend_from_slice(&block[..take]);
    }
    Bytes::from(value)
}

/// A short TTL for expiry cases.
pub const SHORT_TTL: Duration = Duration::from_millis(150);

/// How late after its TTL an expired key may still be seen: clocks of stores tick in
/// milliseconds, and a server judges expiry by its own clock.
pub const EXPIRY_SLACK: Duration = Duration::from_millis(30);

/// Sleeps until `ttl` plus [`EXPIRY_SLACK`] has passed since `written`, an instant taken after
/// the write returned: a store may start the TTL at any moment of the call, so only then is the
/// key expired in every correct store.
pub async fn sleep_past_expiry(written: Instant, ttl: Duration) {
    tokio::time::sleep_until((written + ttl + EXPIRY_SLACK).into()).await;
}

/// Writes `key` with [`SHORT_TTL`] and sleeps until it has expired.
pub async fn write_and_let_expire(ctx: &super::Ctx, key: &str) -> crate::Result<()> {
    ctx.backend()
        .set(
            key,
            bytes("soon gone"),
            Some(SHORT_TTL),
            crate::Condition::Always,
        )
        .await?;
    sleep_past_expiry(Instant::now(), SHORT_TTL).await;
    Ok(())
}

/// A TTL long enough never to expire during a case.
pub const LONG_TTL: Duration = Duration::from_secs(3600);

/// A year, for the huge-TTL cases.
pub const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

/// The time left of a key that must have a TTL.
pub fn remaining(ttl: Option<crate::Ttl>) -> Duration {
    match ttl {
        Some(crate::Ttl::Remaining(left)) => left,
        other => panic!("expected a remaining TTL, got {other:?}"),
    }
}

/// Checks that a write begun at `before` gave `key` a TTL of at most `ttl`: some time left, or,
/// once `ttl` has passed since the call began, gone already (the TTL starts within the call, and a
/// slow commit can take most of it). Never eternal.
pub async fn has_a_short_ttl(
    ctx: &super::Ctx,
    key: &str,
    before: Instant,
    ttl: Duration,
) -> crate::Result<()> {
    match ctx.backend().ttl(key).await? {
        Some(crate::Ttl::Remaining(left)) => assert!(left <= ttl, "{left:?} left of {ttl:?}"),
        None => assert!(
            before.elapsed() + EXPIRY_SLACK >= ttl,
            "a key written {:?} ago with a {ttl:?} TTL is gone",
            before.elapsed()
        ),
        Some(crate::Ttl::Eternal) => panic!("a write with a {ttl:?} TTL left the key eternal"),
    }
    Ok(())
}

/// Checks the expiry of a key with a huge TTL (`Duration::MAX` or 100 years): present, and
/// either eternal or with more than `at_least` left.
pub async fn has_a_huge_ttl(ctx: &super::Ctx, key: &str, at_least: Duration) -> crate::Result<()> {
    assert!(
        ctx.backend().get(key).await?.is_some(),
        "the key with a huge TTL is missing"
    );
    match ctx.backend().ttl(key).await? {
        Some(crate::Ttl::Eternal) => {}
        Some(crate::Ttl::Remaining(left)) => {
            assert!(left > at_least, "a huge TTL came back as {left:?}")
        }
        None => panic!("the key with a huge TTL is missing"),
    }
    Ok(())
}

/// Runs `write`, which must give `key` a TTL of `ttl` counted from the call, then polls `get`
/// every few milliseconds: the key must be present until the TTL has passed (give or take the
/// store's millisecond clock) and absent once it passed by [`EXPIRY_SLACK`].
pub async fn expires_on_time<F, Fut>(
    ctx: &super::Ctx,
    key: &str,
    ttl: Duration,
    write: F,
) -> crate::Result<()>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = crate::Result<()>>,
{
    const CLOCK_GRAIN: Duration = Duration::from_millis(2);
    let before = Instant::now();
    write().await?;
    let written = Instant::now();
    loop {
        let asked = Instant::now();
        let present = ctx.backend().get(key).await?.is_some();
        let answered = Instant::now();
        if !present {
            assert!(
                answered + CLOCK_GRAIN >= before + ttl,
                "the key expired early, {:?} after it was written with a {ttl:?} TTL",
                answered - before
            );
            return Ok(());
        }
        assert!(
            asked < written + ttl + EXPIRY_SLACK,
            "the key was still present {:?} after it was written with a {ttl:?} TTL",
            asked - written
        );
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
}
