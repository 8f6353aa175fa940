//! Freshness: the entry header, fresh → stale → gone on time, stale-while-revalidate with one
//! background refresh, fail-safe and its throttle, negative entries, loader-chosen TTLs,
//! `refresh`, the batch loader, jitter.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::{Doc, EXPIRY_SLACK, LONG_TTL, doc, remaining};
use crate::conformance::{CacheUnderTest, Ctx, UnderTest};
use crate::{Condition, Error, Freshness, Json, Loaded, Result, Serializer};

#[derive(Debug, thiserror::Error)]
#[error("the source of truth is down")]
struct SourceDown;

/// How long the cases wait for a background refresh before they call it lost.
const REFRESH_DEADLINE: Duration = Duration::from_secs(10);

/// A freshness cache of `Doc`s: fresh for `fresh`, gone after `ttl`.
fn fresh_cache(ctx: &Ctx, fresh: Duration, ttl: Duration) -> CacheUnderTest<Doc> {
    ctx.builder::<Doc>()
        .default_ttl(ttl)
        .fresh_for(fresh)
        .under_test(ctx)
}

/// Writes `value` under `key` and waits until it is stale.
async fn write_stale(
    cache: &CacheUnderTest<Doc>,
    key: &str,
    value: &Doc,
    fresh: Duration,
) -> Result<()> {
    cache.set(key, value).await?;
    tokio::time::sleep(fresh + EXPIRY_SLACK).await;
    Ok(())
}

/// Polls `get` until it answers `want`, or fails the case after [`REFRESH_DEADLINE`].
async fn eventually(cache: &CacheUnderTest<Doc>, key: &str, want: &Doc, what: &str) -> Result<()> {
    let deadline = Instant::now() + REFRESH_DEADLINE;
    loop {
        if cache.get(key).await?.as_ref() == Some(want) {
            return Ok(());
        }
        assert!(Instant::now() < deadline, "{what}: never happened");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Polls until `count` reaches `want`, or fails the case after [`REFRESH_DEADLINE`].
async fn count_reaches(count: &AtomicUsize, want: usize, what: &str) {
    let deadline = Instant::now() + REFRESH_DEADLINE;
    while count.load(Ordering::SeqCst) < want {
        assert!(Instant::now() < deadline, "{what}: never happened");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn millis_between(from: Option<SystemTime>, to: Option<SystemTime>) -> u128 {
    let (Some(from), Some(to)) = (from, to) else {
        panic!("an entry of a freshness cache lacks a time: {from:?} → {to:?}");
    };
    to.duration_since(from)
        .unwrap_or_else(|_| panic!("{to:?} comes before {from:?}"))
        .as_millis()
}

/// A cache without freshness stores the serializer's bytes alone (plain JSON stays plain JSON);
/// one with freshness stores the documented header first, then the same bytes.
pub async fn only_freshness_caches_write_the_entry_header(ctx: Ctx) -> Result<()> {
    let plain = ctx.builder::<Doc>().serializer(Json).under_test(&ctx);
    plain.set("plain", &doc(1)).await?;
    let json = Serializer::<Doc>::encode(&Json, &doc(1)).map_err(|source| Error::Encode {
        key: "plain".into(),
        source,
    })?;
    assert_eq!(
        ctx.backend().get(&ctx.key("plain")).await?,
        Some(json.clone())
    );

    let fresh = ctx
        .builder::<Doc>()
        .serializer(Json)
        .default_ttl(LONG_TTL)
        .fresh_for(Duration::from_secs(60))
        .under_test(&ctx);
    fresh.set("headed", &doc(1)).await?;
    let stored = ctx
        .backend()
        .get(&ctx.key("headed"))
        .await?
        .expect("the entry is stored");
    let (header, payload) = crate::raw::header::decode(&stored)
        .unwrap_or_else(|error| panic!("the stored header does not parse: {error}"));
    assert_eq!(payload, json, "the serializer's bytes follow the header");
    assert!(!header.negative);
    let written = header.written_at_ms;
    assert_eq!(header.fresh_until_ms, Some(written + 60_000));
    assert_eq!(header.expires_at_ms, Some(written + 3_600_000));
    Ok(())
}

/// An entry is fresh for `fresh_for`, stale after, and gone after its TTL, to the millisecond;
/// `get` serves it while fresh and while stale, and `get_entry` tells which.
pub async fn entries_turn_stale_then_expire_on_time(ctx: Ctx) -> Result<()> {
    const FRESH: Duration = Duration::from_millis(200);
    const TTL: Duration = Duration::from_millis(500);
    const GRAIN: Duration = Duration::from_millis(2);
    let cache = fresh_cache(&ctx, FRESH, TTL);
    let before = Instant::now();
    cache.set("k", &doc(1)).await?;
    let written = Instant::now();
    let mut saw = (false, false);
    let mut first_answer = None;
    loop {
        let asked = Instant::now();
        let entry = cache.get_entry("k").await?;
        let answered = Instant::now();
        first_answer.get_or_insert(answered);
        let Some(entry) = entry else {
            assert!(
                answered + GRAIN >= before + TTL,
                "gone {:?} after a write with a {TTL:?} TTL",
                answered - before
            );
            break;
        };
        assert!(
            asked < written + TTL + EXPIRY_SLACK,
            "still present {:?} after a write with a {TTL:?} TTL",
            asked - written
        );
        assert_eq!(
            entry.value,
            Some(doc(1)),
            "a stale entry still holds its value"
        );
        assert_eq!(millis_between(entry.written_at, entry.stale_at), 200);
        assert_eq!(millis_between(entry.written_at, entry.expires_at), 500);
        match entry.state {
            Freshness::Fresh => {
                saw.0 = true;
                assert!(
                    asked < written + FRESH + EXPIRY_SLACK,
                    "still fresh {:?} after a write fresh for {FRESH:?}",
                    asked - written
                );
            }
            Freshness::Stale => {
                saw.1 = true;
                assert!(
                    answered + GRAIN >= before + FRESH,
                    "stale {:?} after a write fresh for {FRESH:?}",
                    answered - before
                );
                match cache.get("k").await? {
                    Some(value) => assert_eq!(value, doc(1), "get serves stale values"),
                    None => assert!(
                        before.elapsed() + GRAIN >= TTL,
                        "get found nothing {:?} after a write with a {TTL:?} TTL",
                        before.elapsed()
                    ),
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A machine too slow to read within the fresh window (the first read answered after it)
    // cannot show the fresh state: then only the bounds above were checked.
    if first_answer.is_some_and(|first| first + GRAIN < before + FRESH) {
        assert!(saw.0, "the entry was never seen fresh");
    }
    assert_eq!(cache.get("k").await?, None);
    Ok(())
}

/// 64 callers reading one stale key at once all get the stale value without waiting, and the
/// loader runs once, in the background; its value then replaces the stale one.
pub async fn stale_reads_serve_at_once_and_refresh_once(ctx: Ctx) -> Result<()> {
    const FRESH: Duration = Duration::from_millis(50);
    let cache = fresh_cache(&ctx, FRESH, LONG_TTL);
    write_stale(&cache, "k", &doc(1), FRESH).await?;
    let stale = cache.get_entry("k").await?.expect("present");
    let calls = Arc::new(AtomicUsize::new(0));
    // The loader finishes only once every reader has its answer: a reader that waited for the
    // refresh would never get one.
    let readers_done = Arc::new(tokio::sync::Semaphore::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(64));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (cache, calls, done, reader_done, barrier) = (
                cache.clone(),
                Arc::clone(&calls),
                Arc::clone(&readers_done),
                Arc::clone(&readers_done),
                Arc::clone(&barrier),
            );
            tokio::spawn(async move {
                barrier.wait().await;
                let served = cache
                    .get_or_refresh("k", move || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        let _all = done.acquire_many(64).await;
                        Ok::<_, SourceDown>(doc(2))
                    })
                    .await;
                reader_done.add_permits(1);
                served
            })
        })
        .collect();
    for task in tasks {
        let served = tokio::time::timeout(REFRESH_DEADLINE, task)
            .await
            .expect("a stale read waited for the refresh")
            .expect("the reader task");
        assert_eq!(served?, Some(doc(1)), "a stale read serves the stale value");
    }
    eventually(
        &cache,
        "k",
        &doc(2),
        "the refreshed value replaces the stale one",
    )
    .await?;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "one refresh for 64 stale readers"
    );
    // A new entry, fresh for its own period from its own write.
    let entry = cache.get_entry("k").await?.expect("present");
    assert!(
        entry.written_at >= stale.stale_at,
        "{entry:?} after {stale:?}"
    );
    assert_eq!(millis_between(entry.written_at, entry.stale_at), 50);
    Ok(())
}

/// A refresh that fails keeps the stale value served (fail-safe), and the key's next refresh
/// waits for `refresh_retry_after` instead of asking a failing source on every read.
pub async fn failed_refresh_keeps_the_stale_value_and_throttles_retries(ctx: Ctx) -> Result<()> {
    const FRESH: Duration = Duration::from_millis(50);
    const RETRY_AFTER: Duration = Duration::from_millis(1000);
    let cache = ctx
        .builder::<Doc>()
        .default_ttl(LONG_TTL)
        .fresh_for(FRESH)
        .refresh_retry_after(RETRY_AFTER)
        .under_test(&ctx);
    write_stale(&cache, "k", &doc(1), FRESH).await?;
    let failures = Arc::new(AtomicUsize::new(0));
    let failing = |failures: Arc<AtomicUsize>| {
        move || async move {
            failures.fetch_add(1, Ordering::SeqCst);
            Err::<Doc, _>(SourceDown)
        }
    };
    let failed_at = Instant::now();
    assert_eq!(
        cache
            .get_or_refresh("k", failing(Arc::clone(&failures)))
            .await?,
        Some(doc(1))
    );
    count_reaches(&failures, 1, "the background refresh").await;
    // Within the throttle: served stale, and the source is not asked.
    for _ in 0..5 {
        assert_eq!(
            cache
                .get_or_refresh("k", failing(Arc::clone(&failures)))
                .await?,
            Some(doc(1))
        );
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    if failed_at.elapsed() < RETRY_AFTER {
        assert_eq!(
            failures.load(Ordering::SeqCst),
            1,
            "a failing source was asked again within refresh_retry_after"
        );
    }
    assert_eq!(cache.get("k").await?, Some(doc(1)), "the stale value stays");
    // After the throttle (counted from the failure, which a loaded machine may run late), a
    // stale read refreshes again.
    tokio::time::sleep_until((failed_at + RETRY_AFTER + EXPIRY_SLACK).into()).await;
    let deadline = Instant::now() + REFRESH_DEADLINE;
    loop {
        let served = cache
            .get_or_refresh("k", || async { Ok::<_, SourceDown>(doc(2)) })
            .await?;
        if served == Some(doc(2)) {
            return Ok(());
        }
        assert_eq!(
            served,
            Some(doc(1)),
            "the stale value until the refresh lands"
        );
        assert!(Instant::now() < deadline, "no refresh after the throttle");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A background refresh whose loader panics is a failed refresh: the stale value stays served,
/// the caller never sees the panic, and the key's next refresh waits like after any failure.
pub async fn panicking_refresh_is_a_failed_one(ctx: Ctx) -> Result<()> {
    const FRESH: Duration = Duration::from_millis(50);
    let failed = Arc::new(AtomicUsize::new(0));
    let cache = ctx
        .builder::<Doc>()
        .default_ttl(LONG_TTL)
        .fresh_for(FRESH)
        .refresh_retry_after(Duration::from_secs(60))
        .observe(FailedRefreshes(Arc::clone(&failed)))
        .under_test(&ctx);
    write_stale(&cache, "k", &doc(1), FRESH).await?;
    let calls = Arc::new(AtomicUsize::new(0));
    let panicking = |calls: Arc<AtomicUsize>| {
        move || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            panicking_source()
        }
    };
    assert_eq!(
        cache
            .get_or_refresh("k", panicking(Arc::clone(&calls)))
            .await?,
        Some(doc(1))
    );
    // The failed refresh is reported once the key is held back.
    count_reaches(&failed, 1, "the report of the panicked refresh").await;
    for _ in 0..3 {
        assert_eq!(
            cache
                .get_or_refresh("k", panicking(Arc::clone(&calls)))
                .await?,
            Some(doc(1)),
            "the stale value stays served"
        );
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "a panicking loader ran again before refresh_retry_after"
    );
    Ok(())
}

fn panicking_source() -> std::result::Result<Doc, SourceDown> {
    panic!("a loader that panics, on purpose, in a conformance case")
}

/// Counts refreshes that ended in an error.
struct FailedRefreshes(Arc<AtomicUsize>);

impl crate::layers::Observer for FailedRefreshes {
    fn on_call(&self, _: &crate::layers::CallEvent<'_>) {}

    fn on_cache_event(&self, event: &crate::layers::CacheEvent<'_>) {
        if let crate::layers::CacheEvent::Refreshed { error: Some(_), .. } = event {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A refresh that finds nothing keeps the stale value too, and is throttled like a failure.
pub async fn refresh_that_finds_nothing_keeps_the_stale_value(ctx: Ctx) -> Result<()> {
    const FRESH: Duration = Duration::from_millis(50);
    let cache = ctx
        .builder::<Doc>()
        .default_ttl(LONG_TTL)
        .fresh_for(FRESH)
        .refresh_retry_after(Duration::from_secs(60))
        .under_test(&ctx);
    write_stale(&cache, "k", &doc(1), FRESH).await?;
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let served = cache
        .get_or_refresh("k", move || async move {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok::<_, SourceDown>(Loaded::<Doc>::not_found())
        })
        .await?;
    assert_eq!(served, Some(doc(1)));
    count_reaches(&calls, 1, "the background refresh").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let entry = cache.get_entry("k").await?.expect("the stale entry stays");
    assert_eq!(entry.value, Some(doc(1)));
    assert_eq!(entry.state, Freshness::Stale);
    let counted = Arc::clone(&calls);
    cache
        .get_or_refresh("k", move || async move {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok::<_, SourceDown>(Loaded::value(doc(2)))
        })
        .await?;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the throttle holds after a not-found"
    );
    Ok(())
}

/// "Not found" is remembered as a negative entry: absent for `get`, `get_many` and
/// `contains`, visible to `get_entry`, answered without the loader until it expires.
pub async fn negative_entries_are_remembered_and_absent_for_reads(ctx: Ctx) -> Result<()> {
    const NEGATIVE_TTL: Duration = Duration::from_millis(300);
    let cache = fresh_cache(&ctx, Duration::from_secs(60), LONG_TTL);
    let calls = Arc::new(AtomicUsize::new(0));
    let lookup = |calls: Arc<AtomicUsize>| {
        move || async move {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok::<_, SourceDown>(Loaded::<Doc>::not_found().ttl(NEGATIVE_TTL))
        }
    };
    let before = Instant::now();
    assert_eq!(
        cache
            .get_or_refresh("gone", lookup(Arc::clone(&calls)))
            .await?,
        None
    );
    assert_eq!(
        cache
            .get_or_refresh("gone", lookup(Arc::clone(&calls)))
            .await?,
        None
    );
    let entry = cache.get_entry("gone").await?;
    assert_eq!(cache.get("gone").await?, None);
    assert!(cache.get_many(["gone"]).await?.is_empty());
    assert!(!cache.contains("gone").await?);
    // A machine too slow to read within the negative TTL checks only what holds after it.
    if before.elapsed() < NEGATIVE_TTL {
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "a negative entry answers without loading"
        );
        assert!(entry.expect("the negative entry").is_negative());
    }
    // Its own TTL ends it, and the source is asked again. Counted from now: on a machine too
    // slow for the above, the second read may have loaded and written a newer negative entry.
    let written_by = Instant::now();
    tokio::time::sleep_until((written_by + NEGATIVE_TTL + EXPIRY_SLACK * 2).into()).await;
    assert!(cache.get_entry("gone").await?.is_none());
    let loads = calls.load(Ordering::SeqCst);
    assert_eq!(
        cache
            .get_or_refresh("gone", lookup(Arc::clone(&calls)))
            .await?,
        None
    );
    assert_eq!(calls.load(Ordering::SeqCst), loads + 1);
    // A value replaces a negative entry as any write does.
    cache.set("gone", &doc(3)).await?;
    assert_eq!(cache.get("gone").await?, Some(doc(3)));
    Ok(())
}

/// A loader may choose its value's TTL and freshness; both are kept to the millisecond.
pub async fn loader_chooses_ttl_and_freshness(ctx: Ctx) -> Result<()> {
    let cache = fresh_cache(&ctx, Duration::from_secs(60), LONG_TTL);
    let loaded = cache
        .get_or_refresh("k", || async {
            Ok::<_, SourceDown>(
                Loaded::value(doc(4))
                    .ttl(Duration::from_secs(300))
                    .fresh_for(Duration::from_secs(30)),
            )
        })
        .await?;
    assert_eq!(loaded, Some(doc(4)));
    let entry = cache.get_entry("k").await?.expect("stored");
    assert_eq!(millis_between(entry.written_at, entry.stale_at), 30_000);
    assert_eq!(millis_between(entry.written_at, entry.expires_at), 300_000);
    let left = remaining(cache.ttl("k").await?);
    assert!(
        left <= Duration::from_secs(300) && left > Duration::from_secs(250),
        "{left:?}"
    );
    Ok(())
}

/// `refresh` reloads now; a failure or a "not found" keeps the old value; on an absent key a
/// "not found" is remembered.
pub async fn refresh_reloads_now_and_keeps_the_old_value_on_failure(ctx: Ctx) -> Result<()> {
    let cache = fresh_cache(&ctx, Duration::from_secs(60), LONG_TTL);
    cache.set("k", &doc(1)).await?;
    let refreshed = cache
        .refresh("k", || async { Ok::<_, SourceDown>(doc(2)) })
        .await?;
    assert_eq!(
        refreshed,
        Some(doc(2)),
        "a fresh entry is reloaded when asked"
    );
    assert_eq!(cache.get("k").await?, Some(doc(2)));
    match cache
        .refresh("k", || async { Err::<Doc, _>(SourceDown) })
        .await
    {
        Err(Error::Load { key, .. }) => assert_eq!(key, "k"),
        other => panic!("expected Error::Load, got {other:?}"),
    }
    assert_eq!(
        cache.get("k").await?,
        Some(doc(2)),
        "a failed refresh keeps the value"
    );
    let nothing = cache
        .refresh("k", || async {
            Ok::<_, SourceDown>(Loaded::<Doc>::not_found())
        })
        .await?;
    assert_eq!(nothing, None);
    assert_eq!(
        cache.get("k").await?,
        Some(doc(2)),
        "a not-found keeps the value"
    );
    cache
        .refresh("absent", || async {
            Ok::<_, SourceDown>(Loaded::<Doc>::not_found())
        })
        .await?;
    let entry = cache.get_entry("absent").await?.expect("remembered");
    assert!(entry.is_negative());
    Ok(())
}

/// `get_many_or_refresh` answers fresh and stale keys from one read, loads every absent key in
/// one loader call, refreshes every stale key in one background call, and leaves out what the
/// source does not have.
pub async fn batch_loader_runs_once_for_all_misses(ctx: Ctx) -> Result<()> {
    const FRESH: Duration = Duration::from_millis(50);
    let cache = ctx
        .builder::<Doc>()
        .default_ttl(LONG_TTL)
        .fresh_for(FRESH)
        .negative_ttl(LONG_TTL)
        .under_test(&ctx);
    cache.set("stale", &doc(1)).await?;
    tokio::time::sleep(FRESH + EXPIRY_SLACK).await;
    // Fresh for a minute, however slow the machine.
    cache
        .refresh("fresh", || async {
            Ok::<_, SourceDown>(Loaded::value(doc(2)).fresh_for(Duration::from_secs(60)))
        })
        .await?;
    let calls: Arc<Mutex<Vec<Vec<String>>>> = Arc::default();
    let recorded = Arc::clone(&calls);
    let loader = move |mut keys: Vec<String>| {
        let recorded = Arc::clone(&recorded);
        async move {
            keys.sort();
            recorded
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(keys.clone());
            let answers: HashMap<String, Doc> = keys
                .into_iter()
                .filter(|key| key != "missing")
                .map(|key| (key.clone(), doc(key.len() as u32 + 10)))
                .collect();
            Ok::<_, SourceDown>(answers)
        }
    };
    let found = cache
        .get_many_or_refresh(["fresh", "stale", "absent", "missing", "absent"], loader)
        .await?;
    assert_eq!(found.len(), 3, "{found:?}");
    assert_eq!(found["fresh"], doc(2));
    assert_eq!(found["stale"], doc(1), "a stale value is served at once");
    assert_eq!(found["absent"], doc(16));
    let deadline = Instant::now() + REFRESH_DEADLINE;
    while calls.lock().unwrap_or_else(PoisonError::into_inner).len() < 2 {
        assert!(
            Instant::now() < deadline,
            "the stale key was never refreshed"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut calls = calls.lock().unwrap_or_else(PoisonError::into_inner).clone();
    calls.sort();
    assert_eq!(
        calls,
        vec![
            vec!["absent".to_owned(), "missing".to_owned()],
            vec!["stale".to_owned()]
        ],
        "one call for the absent keys, one for the stale ones"
    );
    eventually(
        &cache,
        "stale",
        &doc(15),
        "the background refresh of the stale key",
    )
    .await?;
    assert!(
        cache
            .get_entry("missing")
            .await?
            .expect("remembered")
            .is_negative()
    );
    Ok(())
}

/// A stale reader that goes away leaves its refresh running, and a loading caller of an absent
/// key that is cancelled lets a waiter take over.
pub async fn cancelled_readers_neither_stop_a_refresh_nor_block_a_load(ctx: Ctx) -> Result<()> {
    ctx.require_cancellable_callers()?;
    const FRESH: Duration = Duration::from_millis(50);
    let cache = fresh_cache(&ctx, FRESH, LONG_TTL);
    write_stale(&cache, "stale", &doc(1), FRESH).await?;
    let release = Arc::new(tokio::sync::Notify::new());
    let (answered, served) = tokio::sync::oneshot::channel();
    let reader = {
        let (cache, release) = (cache.clone(), Arc::clone(&release));
        tokio::spawn(async move {
            let value = cache
                .get_or_refresh("stale", move || async move {
                    release.notified().await;
                    Ok::<_, SourceDown>(doc(2))
                })
                .await;
            let _ = answered.send(value);
            // The reader lingers and is cancelled while the refresh waits.
            std::future::pending::<()>().await;
        })
    };
    let value = tokio::time::timeout(REFRESH_DEADLINE, served)
        .await
        .expect("a stale read answers at once")
        .expect("the reader answers");
    assert_eq!(value?, Some(doc(1)));
    reader.abort();
    let _ = reader.await;
    release.notify_one();
    eventually(
        &cache,
        "stale",
        &doc(2),
        "the refresh of a cancelled reader",
    )
    .await?;

    let stuck = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_refresh("absent", || async {
                    std::future::pending::<()>().await;
                    Ok::<_, SourceDown>(doc(0))
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let waiter = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_refresh("absent", || async { Ok::<_, SourceDown>(doc(3)) })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    stuck.abort();
    let loaded = tokio::time::timeout(REFRESH_DEADLINE, waiter)
        .await
        .expect("the waiter took over")
        .expect("the waiter task")?;
    assert_eq!(loaded, Some(doc(3)));
    Ok(())
}

/// Jitter shortens TTLs by at most its fraction and spreads them; it never lengthens one.
pub async fn jitter_spreads_ttls_within_its_fraction(ctx: Ctx) -> Result<()> {
    const TTL: Duration = Duration::from_secs(1000);
    let cache = ctx
        .builder::<Doc>()
        .default_ttl(TTL)
        .fresh_for(Duration::from_secs(100))
        .ttl_jitter(0.5)
        .jitter_seed(7)
        .under_test(&ctx);
    let mut lefts = Vec::new();
    let mut fresh_periods = Vec::new();
    for n in 0..20 {
        let key = format!("k{n}");
        cache.set(&key, &doc(n)).await?;
        let left = remaining(cache.ttl(&key).await?);
        assert!(left <= TTL, "jitter lengthened a TTL to {left:?}");
        assert!(
            left >= TTL / 2 - Duration::from_secs(5),
            "{left:?} is past the fraction"
        );
        lefts.push(left.as_secs());
        let entry = cache.get_entry(&key).await?.expect("present");
        let fresh = millis_between(entry.written_at, entry.stale_at);
        assert!((50_000..=100_000).contains(&fresh), "{fresh} ms fresh");
        fresh_periods.push(fresh);
    }
    lefts.sort_unstable();
    lefts.dedup();
    fresh_periods.sort_unstable();
    fresh_periods.dedup();
    assert!(lefts.len() > 10, "TTLs are not spread: {lefts:?}");
    assert!(fresh_periods.len() > 10, "freshness is not spread");
    Ok(())
}

/// Bytes that are no entry header under a freshness cache's key are a decode error naming the
/// key; the loading verbs load the value again and overwrite them.
pub async fn entry_without_a_valid_header_is_a_decode_error(ctx: Ctx) -> Result<()> {
    let cache = fresh_cache(&ctx, Duration::from_secs(60), LONG_TTL);
    for (name, bytes) in [
        ("plain", &b"\xa1\x61a\x01"[..]),
        ("future", &[0xCA, 0x09, 0, 0, 0, 0, 0, 0, 0, 0, 0][..]),
        ("cut", &[0xCA, 0x01, 0x02, 0, 0][..]),
    ] {
        ctx.backend()
            .set(
                &ctx.key(name),
                Bytes::copy_from_slice(bytes),
                None,
                Condition::Always,
            )
            .await?;
        match cache.get_entry(name).await {
            Err(Error::Decode { key, .. }) => assert_eq!(key, name),
            other => panic!("expected Error::Decode for {name}, got {other:?}"),
        }
        let loaded = cache
            .get_or_refresh(name, || async { Ok::<_, SourceDown>(doc(8)) })
            .await?;
        assert_eq!(loaded, Some(doc(8)), "{name}");
        assert_eq!(cache.get(name).await?, Some(doc(8)), "{name}");
    }
    Ok(())
}
