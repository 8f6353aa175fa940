//! `lock`: the value or the lock to produce it, waiters served by the holder, a dropped holder
//! replaced; fleet-wide single flight: one load across caches that share nothing but the store.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::{Doc, LONG_TTL, doc};
use crate::conformance::{CacheUnderTest, Ctx, GuardUnderTest, LockUnderTest};
use crate::{Cache, Error, Lease, Result, SetOptions, Ttl};

/// How long a waiter of these cases may wait for another cache's load: far past every load
/// here, so that a case fails by counting a second load, never by hanging.
const MAX_WAIT_IN_CASES: Duration = Duration::from_secs(60);

fn join_error(error: tokio::task::JoinError) -> Error {
    Error::backend("conformance", "join", None, error)
}

#[derive(Debug, thiserror::Error)]
#[error("the source of truth is down")]
struct SourceDown;

/// The lock of `key`, which must be free.
async fn held(cache: &CacheUnderTest<Doc>, key: &str) -> Result<GuardUnderTest<Doc>> {
    match cache.lock(key).await? {
        LockUnderTest::Held(guard) => Ok(guard),
        LockUnderTest::Found(value) => panic!("{key} was not free: {value:?}"),
    }
}

/// Callers that asked for a lock held by another, spawned: what each got, the value or the lock
/// (which it then fills with its own value, `doc(100 + i)`).
fn waiters(
    cache: &CacheUnderTest<Doc>,
    key: &str,
    count: u32,
) -> Vec<tokio::task::JoinHandle<Result<(bool, Doc)>>> {
    (0..count)
        .map(|i| {
            let (cache, key) = (cache.clone(), key.to_owned());
            tokio::spawn(async move {
                Ok(match cache.lock(&key).await? {
                    LockUnderTest::Found(value) => (false, value),
                    LockUnderTest::Held(guard) => {
                        guard.set(&doc(100 + i)).await?;
                        (true, doc(100 + i))
                    }
                })
            })
        })
        .collect()
}

/// A present value is the answer, without a lock.
pub async fn lock_returns_a_present_value_without_locking(ctx: Ctx) -> Result<()> {
    let cache = ctx.cache::<Doc>();
    cache.set("k", &doc(1)).await?;
    match cache.lock("k").await? {
        LockUnderTest::Found(value) => assert_eq!(value, doc(1)),
        LockUnderTest::Held(_) => panic!("a present value was locked to be produced again"),
    }
    Ok(())
}

/// Eight callers wait for the holder and all get its value, stored with the TTL it chose;
/// `get_or_insert_with` waits for the same lock and loads nothing.
pub async fn lock_holder_hands_its_value_to_every_waiter(ctx: Ctx) -> Result<()> {
    let cache = ctx.cache::<Doc>();
    let guard = held(&cache, "k").await?;
    let waiting = waiters(&cache, "k", 8);
    let loads = Arc::new(AtomicUsize::new(0));
    let loader = {
        let (cache, loads) = (cache.clone(), Arc::clone(&loads));
        tokio::spawn(async move {
            cache
                .get_or_insert_with("k", move || async move {
                    loads.fetch_add(1, Ordering::SeqCst);
                    Ok::<_, SourceDown>(doc(9))
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        waiting.iter().all(|waiter| !waiter.is_finished()) && !loader.is_finished(),
        "a caller went on while the lock was held"
    );
    guard
        .set_with(&doc(1), SetOptions::new().ttl(Duration::from_secs(60)))
        .await?;
    for waiter in waiting {
        assert_eq!(waiter.await.map_err(join_error)??, (false, doc(1)));
    }
    assert_eq!(loader.await.map_err(join_error)??, doc(1));
    assert_eq!(
        loads.load(Ordering::SeqCst),
        0,
        "the loader ran for a held key"
    );
    match cache.ttl("k").await? {
        Some(Ttl::Remaining(left)) => assert!(left <= Duration::from_secs(60)),
        other => panic!("the holder's TTL was not kept: {other:?}"),
    }
    Ok(())
}

/// A holder that goes away without a value (an error, a panic, a cancelled task) lets exactly
/// one waiter take the lock over; the others get that waiter's value.
pub async fn dropped_lock_lets_one_waiter_take_over(ctx: Ctx) -> Result<()> {
    let cache = ctx.cache::<Doc>();
    let guard = held(&cache, "k").await?;
    let waiting = waiters(&cache, "k", 8);
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(guard);
    let mut outcomes = Vec::new();
    for waiter in waiting {
        outcomes.push(waiter.await.map_err(join_error)??);
    }
    let holders: Vec<&Doc> = outcomes
        .iter()
        .filter(|(held, _)| *held)
        .map(|(_, value)| value)
        .collect();
    assert_eq!(holders.len(), 1, "took the lock over: {outcomes:?}");
    let value = holders[0].clone();
    assert!(
        outcomes.iter().all(|(_, got)| *got == value),
        "{outcomes:?}"
    );
    assert_eq!(cache.get("k").await?, Some(value));
    Ok(())
}

/// Two caches that share only the store (as two processes do), each on its own handle, with
/// fleet-wide single flight: 16 callers at once run the loader once in all.
pub async fn fleet_single_flight_loads_once_across_caches(ctx: Ctx) -> Result<()> {
    // Far longer than the load, so that a store slowed down by the whole suite running at once
    // does not let it lapse; renewal has a case of its own.
    let lease = Lease::new(Duration::from_secs(5)).max_wait(MAX_WAIT_IN_CASES);
    let caches = [
        ctx.typed(
            ctx.builder::<Doc>()
                .default_ttl(LONG_TTL)
                .fleet_single_flight(lease),
        ),
        ctx.typed(
            Cache::<Doc>::builder(Arc::clone(ctx.peer()))
                .prefix(ctx.prefix())
                .default_ttl(LONG_TTL)
                .planted_bug(ctx.facade_bug)
                .fleet_single_flight(lease),
        ),
    ];
    let loads = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let cache = caches[i % 2].clone();
            let (loads, barrier) = (Arc::clone(&loads), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                cache
                    .get_or_insert_with("k", move || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(300)).await;
                        Ok::<_, SourceDown>(doc(7))
                    })
                    .await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.map_err(join_error)??, doc(7));
    }
    assert_eq!(
        loads.load(Ordering::SeqCst),
        1,
        "loads across two caches sharing the store"
    );
    Ok(())
}

/// A lease whose holder vanished (it stopped renewing and never released: a crashed process)
/// holds the key only until it expires: then one waiter loads.
pub async fn fleet_waiter_takes_over_an_expired_lease(ctx: Ctx) -> Result<()> {
    const CRASHED: Duration = Duration::from_millis(300);
    let lease_key = format!("{}{}", crate::locks::LEASE_MARK, ctx.key("k"));
    let taken = Instant::now();
    assert!(
        ctx.backend()
            .acquire_lease(&lease_key, "crashed-holder", CRASHED)
            .await?
    );
    let cache = ctx.typed(
        ctx.builder::<Doc>()
            .fleet_single_flight(Lease::new(Duration::from_secs(5)).max_wait(MAX_WAIT_IN_CASES)),
    );
    let loads = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&loads);
    let value = cache
        .get_or_insert_with("k", move || async move {
            counted.fetch_add(1, Ordering::SeqCst);
            Ok::<_, SourceDown>(doc(3))
        })
        .await?;
    assert_eq!(value, doc(3));
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    assert!(
        taken.elapsed() >= CRASHED - Duration::from_millis(50),
        "loaded after {:?}, while another holder's lease was live",
        taken.elapsed()
    );
    assert!(
        !ctx.backend().contains(&lease_key).await?,
        "the lease outlived its load"
    );
    Ok(())
}

/// A caller waits for another process's load at most `max_wait`, then loads itself.
pub async fn fleet_waiters_load_themselves_after_max_wait(ctx: Ctx) -> Result<()> {
    const MAX_WAIT: Duration = Duration::from_millis(300);
    let lease_key = format!("{}{}", crate::locks::LEASE_MARK, ctx.key("k"));
    assert!(
        ctx.backend()
            .acquire_lease(&lease_key, "stuck-holder", LONG_TTL)
            .await?
    );
    let cache = ctx.typed(
        ctx.builder::<Doc>()
            .fleet_single_flight(Lease::new(Duration::from_secs(60)).max_wait(MAX_WAIT)),
    );
    let started = Instant::now();
    let value = tokio::time::timeout(
        LONG_TTL,
        cache.get_or_insert_with("k", || async { Ok::<_, SourceDown>(doc(4)) }),
    )
    .await
    .unwrap_or_else(|_| panic!("a waiter waited past its max_wait of {MAX_WAIT:?}"))?;
    assert_eq!(value, doc(4));
    assert!(started.elapsed() >= MAX_WAIT, "{:?}", started.elapsed());
    assert!(
        ctx.backend()
            .release_lease(&lease_key, "stuck-holder")
            .await?,
        "the stuck holder's lease was taken from it"
    );
    Ok(())
}

/// `lock` goes through the fleet lease too: a lock held by one cache is waited for by another
/// that shares only the store, which then gets the holder's value.
pub async fn fleet_lock_is_held_across_caches(ctx: Ctx) -> Result<()> {
    let lease = Lease::new(Duration::from_secs(5)).max_wait(MAX_WAIT_IN_CASES);
    let first = ctx.typed(ctx.builder::<Doc>().fleet_single_flight(lease));
    let second = ctx.typed(
        Cache::<Doc>::builder(Arc::clone(ctx.peer()))
            .prefix(ctx.prefix())
            .planted_bug(ctx.facade_bug)
            .fleet_single_flight(lease),
    );
    let guard = held(&first, "k").await?;
    let waiter = {
        let second = second.clone();
        tokio::spawn(async move { second.lock("k").await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiter.is_finished(), "the other cache did not wait");
    guard.set(&doc(5)).await?;
    match waiter.await.map_err(join_error)?? {
        LockUnderTest::Found(value) => assert_eq!(value, doc(5)),
        LockUnderTest::Held(_) => panic!("the other cache took a held lock"),
    }
    Ok(())
}

/// Batch loads take a lease per key too: two caches that share only the store, each asking at
/// once for the same three missing keys, load each key once in all.
pub async fn fleet_batch_loads_each_key_once_across_caches(ctx: Ctx) -> Result<()> {
    // Far longer than the load, as in `fleet_single_flight_loads_once_across_caches`.
    let lease = Lease::new(Duration::from_secs(5)).max_wait(MAX_WAIT_IN_CASES);
    let caches = [
        ctx.typed(
            ctx.builder::<Doc>()
                .default_ttl(LONG_TTL)
                .fresh_for(LONG_TTL)
                .fleet_single_flight(lease),
        ),
        ctx.typed(
            Cache::<Doc>::builder(Arc::clone(ctx.peer()))
                .prefix(ctx.prefix())
                .default_ttl(LONG_TTL)
                .fresh_for(LONG_TTL)
                .planted_bug(ctx.facade_bug)
                .fleet_single_flight(lease),
        ),
    ];
    let loaded = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(2));
    let tasks: Vec<_> = caches
        .iter()
        .map(|cache| {
            let (cache, loaded, barrier) =
                (cache.clone(), Arc::clone(&loaded), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                cache
                    .get_many_or_refresh(["a", "b", "c"], move |keys: Vec<String>| {
                        let loaded = Arc::clone(&loaded);
                        async move {
                            loaded.fetch_add(keys.len(), Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(600)).await;
                            Ok::<_, SourceDown>(
                                keys.into_iter()
                                    .map(|key| {
                                        let value = doc(u32::from(key.as_bytes()[0]));
                                        (key, value)
                                    })
                                    .collect::<std::collections::HashMap<_, _>>(),
                            )
                        }
                    })
                    .await
            })
        })
        .collect();
    for task in tasks {
        let found = task.await.map_err(join_error)??;
        assert_eq!(found.len(), 3, "{found:?}");
        assert_eq!(found["b"], doc(u32::from(b'b')));
    }
    assert_eq!(
        loaded.load(Ordering::SeqCst),
        3,
        "keys loaded by two caches sharing the store"
    );
    Ok(())
}

/// A cancelled holder is a holder that went away: a waiter takes the lock over. A cancelled
/// waiter changes nothing for the others.
pub async fn cancelled_lock_holders_and_waiters_lose_nothing(ctx: Ctx) -> Result<()> {
    ctx.require_cancellable_callers()?;
    let cache = ctx.cache::<Doc>();
    let (locked, holding) = tokio::sync::oneshot::channel();
    let holder = {
        let cache = cache.clone();
        tokio::spawn(async move {
            let guard = held(&cache, "k").await?;
            let _ = locked.send(());
            std::future::pending::<()>().await;
            guard.set(&doc(0)).await
        })
    };
    let _ = holding.await;
    let cancelled = waiters(&cache, "k", 1);
    let survivor = waiters(&cache, "k", 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    for waiter in &cancelled {
        waiter.abort();
    }
    holder.abort();
    let mut survivor = survivor.into_iter();
    let outcome = tokio::time::timeout(LONG_TTL, survivor.next().expect("one waiter"))
        .await
        .unwrap_or_else(|_| panic!("a waiter still waited for a cancelled holder"))
        .map_err(join_error)??;
    assert_eq!(outcome, (true, doc(100)), "the waiter takes the lock over");
    assert_eq!(cache.get("k").await?, Some(doc(100)));
    Ok(())
}

/// Waiters for a lock give up after the load wait timeout; the holder goes on and its value is
/// stored.
pub async fn lock_waiters_give_up_after_the_load_wait_timeout(ctx: Ctx) -> Result<()> {
    let cache = ctx.typed(
        ctx.builder::<Doc>()
            .load_wait_timeout(Duration::from_millis(100)),
    );
    let guard = held(&cache, "k").await?;
    let outcome = tokio::time::timeout(LONG_TTL, cache.lock("k"))
        .await
        .unwrap_or_else(|_| panic!("a lock waiter waited past its 100 ms load wait timeout"));
    assert!(
        matches!(&outcome, Err(Error::LoadTimeout { key, .. }) if key == "k"),
        "{outcome:?}"
    );
    guard.set(&doc(2)).await?;
    assert_eq!(cache.get("k").await?, Some(doc(2)));
    Ok(())
}

/// A holder renews its lease while it loads: a load that takes more than twice the lease still
/// holds it (looked for over two more seconds and 20 looks, so one late renewal on a busy
/// machine is not taken for none), and it is gone once the value is stored.
pub async fn fleet_holder_renews_its_lease_while_it_loads(ctx: Ctx) -> Result<()> {
    const LEASE: Duration = Duration::from_millis(600);
    let lease_key = format!("{}{}", crate::locks::LEASE_MARK, ctx.key("k"));
    let cache = ctx.typed(
        ctx.builder::<Doc>()
            .fleet_single_flight(Lease::new(LEASE).max_wait(MAX_WAIT_IN_CASES)),
    );
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let (started, running) = tokio::sync::oneshot::channel::<()>();
    let load = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_insert_with("k", move || async move {
                    let _ = started.send(());
                    let _ = released.await;
                    Ok::<_, SourceDown>(doc(6))
                })
                .await
        })
    };
    let _ = running.await;
    tokio::time::sleep(LEASE * 2 + LEASE / 2).await;
    // Two seconds and at least 20 looks: a look that waited behind a slow store call counts
    // as one.
    let deadline = Instant::now() + Duration::from_secs(2);
    let (mut held, mut looks) = (false, 0);
    while !held && (looks < 20 || Instant::now() < deadline) {
        looks += 1;
        held = ctx.backend().contains(&lease_key).await?;
        if !held {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let _ = release.send(());
    assert_eq!(load.await.map_err(join_error)??, doc(6));
    assert!(
        held,
        "a lease of {LEASE:?} was gone {:?} into its load",
        LEASE * 2
    );
    assert!(
        !ctx.backend().contains(&lease_key).await?,
        "the lease outlived its load"
    );
    Ok(())
}
