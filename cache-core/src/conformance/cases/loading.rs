//! `get_or_insert_with`: one load per missing key, errors shared, nothing cached on failure.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::{Doc, doc};
use crate::conformance::{Ctx, UnderTest};
use crate::{Error, Result};

#[derive(Debug, thiserror::Error)]
#[error("the source of truth is down")]
struct SourceDown;

fn join_error(error: tokio::task::JoinError) -> Error {
    Error::backend("conformance", "join", None, error)
}

/// A present value is returned without calling the loader.
pub async fn get_or_insert_with_returns_a_cached_value_without_loading(ctx: Ctx) -> Result<()> {
    let cache = ctx.cache::<Doc>();
    cache.set("k", &doc(1)).await?;
    let value = cache
        .get_or_insert_with("k", || async { Err::<Doc, _>(SourceDown) })
        .await?;
    assert_eq!(value, doc(1));
    Ok(())
}

/// A missing value is loaded, returned and stored with the default TTL.
pub async fn get_or_insert_with_stores_what_it_loads(ctx: Ctx) -> Result<()> {
    let cache = ctx
        .builder::<Doc>()
        .default_ttl(Duration::from_secs(60))
        .under_test(&ctx);
    let value = cache
        .get_or_insert_with("k", || async { Ok::<_, SourceDown>(doc(3)) })
        .await?;
    assert_eq!(value, doc(3));
    assert_eq!(cache.get("k").await?, Some(doc(3)));
    assert!(matches!(
        cache.ttl("k").await?,
        Some(crate::Ttl::Remaining(_))
    ));
    Ok(())
}

/// 32 concurrent callers for one missing key: the loader runs once and all get its value.
pub async fn concurrent_loads_of_one_key_run_the_loader_once(ctx: Ctx) -> Result<()> {
    let cache = ctx.cache::<Doc>();
    let calls = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(32));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (cache, calls, barrier) = (cache.clone(), Arc::clone(&calls), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                cache
                    .get_or_insert_with("k", || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok::<_, SourceDown>(doc(9))
                    })
                    .await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.map_err(join_error)??, doc(9));
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the loader ran more than once"
    );
    Ok(())
}

/// A failing loader's error reaches every waiting caller, and nothing is cached: the next call
/// loads again.
pub async fn loader_error_reaches_every_waiter_and_caches_nothing(ctx: Ctx) -> Result<()> {
    let cache = ctx.cache::<Doc>();
    let calls = Arc::new(AtomicUsize::new(0));
    // The load fails only once every caller has asked (and 100 ms more for the last ones to
    // join its flight): on a busy runtime a task can start long after the others.
    let asked = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(16));
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (cache, calls, barrier) = (cache.clone(), Arc::clone(&calls), Arc::clone(&barrier));
            let asked = Arc::clone(&asked);
            tokio::spawn(async move {
                barrier.wait().await;
                asked.fetch_add(1, Ordering::SeqCst);
                let all_asked = Arc::clone(&asked);
                cache
                    .get_or_insert_with("k", || async move {
                        calls.fetch_add(1, Ordering::SeqCst);
                        while all_asked.load(Ordering::SeqCst) < 16 {
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Err::<Doc, _>(SourceDown)
                    })
                    .await
            })
        })
        .collect();
    for task in tasks {
        match task.await.map_err(join_error)? {
            Err(Error::Load { key, source }) => {
                assert_eq!(key, "k");
                assert_eq!(source.to_string(), "the source of truth is down");
            }
            other => panic!("expected Error::Load, got {other:?}"),
        }
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(!cache.contains("k").await?);
    let retried = cache
        .get_or_insert_with("k", || async { Ok::<_, SourceDown>(doc(4)) })
        .await?;
    assert_eq!(retried, doc(4));
    Ok(())
}

/// When the loading caller is cancelled, a waiting caller loads instead of hanging.
pub async fn cancelled_loader_lets_a_waiter_take_over(ctx: Ctx) -> Result<()> {
    ctx.require_cancellable_callers()?;
    let cache = ctx.cache::<Doc>();
    let leader = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_insert_with("k", || async {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    Ok::<_, SourceDown>(doc(0))
                })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let waiter = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_insert_with("k", || async { Ok::<_, SourceDown>(doc(2)) })
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    leader.abort();
    let value = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the waiter hung after the loader was cancelled")
        .map_err(join_error)??;
    assert_eq!(value, doc(2));
    Ok(())
}

/// Loads of different keys do not wait for each other.
pub async fn loads_of_distinct_keys_run_in_parallel(ctx: Ctx) -> Result<()> {
    let cache = ctx.cache::<Doc>();
    let running = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = (0..8u32)
        .map(|i| {
            let (cache, running, peak, barrier) = (
                cache.clone(),
                Arc::clone(&running),
                Arc::clone(&peak),
                Arc::clone(&barrier),
            );
            tokio::spawn(async move {
                cache
                    .get_or_insert_with(&format!("k{i}"), move || async move {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(now, Ordering::SeqCst);
                        // Every loader waits for all eight: with serialized loads this never ends.
                        tokio::time::timeout(Duration::from_secs(10), barrier.wait())
                            .await
                            .map_err(|_| SourceDown)?;
                        running.fetch_sub(1, Ordering::SeqCst);
                        Ok::<_, SourceDown>(doc(i))
                    })
                    .await
            })
        })
        .collect();
    for (i, task) in tasks.into_iter().enumerate() {
        assert_eq!(task.await.map_err(join_error)??, doc(i as u32));
    }
    assert_eq!(peak.load(Ordering::SeqCst), 8);
    Ok(())
}

/// A loader that asks, through a clone of the cache, for the key it is loading fails at once
/// with `Error::LoadCycle` instead of waiting for itself; the key works again afterwards, and a
/// loader may load other keys of the same cache.
pub async fn loader_asking_for_its_own_key_fails_instead_of_waiting(ctx: Ctx) -> Result<()> {
    let cache = ctx.cache::<Doc>();
    let inner = cache.clone();
    let outcome = tokio::time::timeout(
        Duration::from_secs(10),
        cache.get_or_insert_with("k", || async move {
            match inner
                .get_or_insert_with("k", || async { Ok::<_, SourceDown>(doc(2)) })
                .await
            {
                Err(Error::LoadCycle { key }) if key == "k" => {
                    let other = inner
                        .get_or_insert_with("other", || async { Ok::<_, SourceDown>(doc(7)) })
                        .await?;
                    assert_eq!(other, doc(7));
                    Ok::<_, Error>(doc(1))
                }
                other => panic!("the loader's own key answered {other:?}, not LoadCycle"),
            }
        }),
    )
    .await
    .expect("a loader asking for its own key must not hang")?;
    assert_eq!(outcome, doc(1));
    assert_eq!(cache.get("other").await?, Some(doc(7)));
    cache.delete("k").await?;
    let again = tokio::time::timeout(
        Duration::from_secs(10),
        cache.get_or_insert_with("k", || async { Ok::<_, SourceDown>(doc(3)) }),
    )
    .await
    .expect("the key must not stay blocked")?;
    assert_eq!(again, doc(3));
    Ok(())
}

/// With a load wait timeout, a caller waiting for another caller's slow load gives up with
/// `Error::LoadTimeout`; the load itself goes on and stores its value.
pub async fn waiters_give_up_after_the_load_wait_timeout(ctx: Ctx) -> Result<()> {
    let cache = ctx
        .builder::<Doc>()
        .load_wait_timeout(Duration::from_millis(100))
        .under_test(&ctx);
    let (started, running) = tokio::sync::oneshot::channel();
    // The load ends only when the test says so: the waiter can only give up, never see the
    // value, however slowly the machine runs.
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let leader = {
        let cache = cache.clone();
        tokio::spawn(async move {
            cache
                .get_or_insert_with("slow", || async move {
                    let _ = started.send(());
                    let _ = released.await;
                    Ok::<_, SourceDown>(doc(4))
                })
                .await
        })
    };
    let _ = running.await;
    // Far beyond the 100 ms timeout: it only tells a waiter that never gives up from one that does.
    let outcome = tokio::time::timeout(
        Duration::from_secs(30),
        cache.get_or_insert_with("slow", || async { Ok::<_, SourceDown>(doc(9)) }),
    )
    .await
    .unwrap_or_else(|_| panic!("a waiter was still waiting 30 s into a 100 ms load wait timeout"));
    assert!(
        matches!(&outcome, Err(Error::LoadTimeout { key, .. }) if key == "slow"),
        "{outcome:?}"
    );
    let _ = release.send(());
    assert_eq!(leader.await.map_err(join_error)??, doc(4));
    assert_eq!(cache.get("slow").await?, Some(doc(4)));
    Ok(())
}
