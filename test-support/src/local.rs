//! The local tier over a real store: every facade case with a tier in front of it, and the
//! coherence of two handles' tiers over the store's invalidation channel.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_core::conformance::{FACADE_GROUPS, RunOptions, assert_reports, run_conformance};
use cache_core::layers::{CacheEvent, CallEvent, Observer};
use cache_core::raw::invalidation::Link;
use cache_core::{Backend, Cache, LocalTier, SetOptions};

/// The tier the suite runs with: room for every key of every case, held longer than the run.
pub fn suite_tier() -> LocalTier {
    LocalTier::new(300_000).hold(Duration::from_secs(3600))
}

/// Runs every facade case with a local tier in front of `store` and panics listing failures.
pub async fn facade_cases_with_a_local_tier(store: Arc<dyn Backend>) {
    let _gate = cache_core::conformance::gate(false).await;
    let reports = run_conformance(
        RunOptions::new(store)
            .only_groups(&FACADE_GROUPS)
            .local_tier(suite_tier()),
    )
    .await;
    assert_reports(&reports, 60, &[]);
}

/// Counts the channel's losses and subscriptions a cache reports.
#[derive(Debug, Default)]
pub struct ChannelEvents {
    /// `ChannelLost` events.
    pub lost: AtomicUsize,
    /// `ChannelRestored` events (the first subscription included).
    pub restored: AtomicUsize,
}

impl Observer for ChannelEvents {
    fn on_call(&self, _event: &CallEvent<'_>) {}

    fn on_cache_event(&self, event: &CacheEvent<'_>) {
        match event {
            CacheEvent::ChannelLost { .. } => {
                self.lost.fetch_add(1, Ordering::SeqCst);
            }
            CacheEvent::ChannelRestored => {
                self.restored.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
    }
}

/// Waits, up to `limit`, until `check` holds; panics with `what` otherwise.
pub async fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < limit,
            "{what} did not happen within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Waits until `store`'s invalidation bus is subscribed.
pub async fn live(store: &Arc<dyn Backend>) {
    let bus = store
        .invalidation_bus()
        .expect("the store has an invalidation bus");
    bus.start();
    eventually(
        "the invalidation channel's subscription",
        Duration::from_secs(10),
        || bus.link() == Link::Live,
    )
    .await;
}

/// How long after a write through one handle the other handle's tier stopped serving the old
/// copy, for each kind of write.
#[derive(Debug, Default)]
pub struct Delays {
    /// Every delay measured.
    pub all: Vec<Duration>,
}

impl Delays {
    /// The `q` quantile (0.0 to 1.0) of the delays.
    pub fn quantile(&self, q: f64) -> Duration {
        let mut sorted = self.all.clone();
        sorted.sort();
        let at = ((sorted.len().saturating_sub(1)) as f64 * q).round() as usize;
        sorted.get(at).copied().unwrap_or_default()
    }
}

/// How long a write may take to reach another handle before the test calls the channel broken:
/// far above what loopback takes, so that only a lost announcement fails it.
const LIVENESS: Duration = Duration::from_secs(5);

/// Two handles on one shared store (separate connections): `writer`'s writes, deletes, clears
/// and tag invalidations reach `reader`'s tier; returns how long each took to.
pub async fn coherence(writer: Arc<dyn Backend>, reader: Arc<dyn Backend>, rounds: u32) -> Delays {
    live(&writer).await;
    live(&reader).await;
    let prefix = format!("cachette-coherence:{}:", fastrand::u64(..));
    let tier = LocalTier::new(10_000).hold(Duration::from_secs(600));
    let build = |store: &Arc<dyn Backend>| -> Cache<u32> {
        Cache::builder(Arc::clone(store))
            .prefix(prefix.clone())
            .tagged()
            .local(tier.clone())
            .build()
    };
    let (writes, reads) = (build(&writer), build(&reader));
    let mut delays = Delays::default();
    for round in 0..rounds {
        let key = format!("k{}", round % 7);
        writes.set(&key, &round).await.expect("set");
        // Held by the reader after this read.
        seen(&reads, &key, Some(round)).await;
        assert_eq!(reads.get(&key).await.expect("get"), Some(round));
        let next = round + 1_000_000;
        let written = Instant::now();
        match round % 4 {
            0 => writes.set(&key, &next).await.expect("set"),
            1 => {
                writes.delete(&key).await.expect("delete");
            }
            2 => {
                writes.clear().await.expect("clear");
            }
            _ => {
                writes
                    .set_with(&key, &round, SetOptions::new().tags(["t"]))
                    .await
                    .expect("tagged set");
                seen(&reads, &key, Some(round)).await;
                let written_again = Instant::now();
                writes.invalidate_tags(["t"]).await.expect("invalidate");
                seen(&reads, &key, None).await;
                delays.all.push(written_again.elapsed());
                continue;
            }
        }
        let expected = (round % 4 == 0).then_some(next);
        seen(&reads, &key, expected).await;
        delays.all.push(written.elapsed());
    }
    writes.clear().await.expect("clear");
    delays
}

/// Reads `key` through `cache` until it answers `expected`.
async fn seen(cache: &Cache<u32>, key: &str, expected: Option<u32>) {
    let started = Instant::now();
    loop {
        if cache.get(key).await.expect("get") == expected {
            return;
        }
        assert!(
            started.elapsed() < LIVENESS,
            "{key} still does not read {expected:?} after {LIVENESS:?}"
        );
        tokio::time::sleep(Duration::from_micros(100)).await;
    }
}

/// Breaks `reader`'s subscription with `kill` while its tier holds a copy, writes through
/// `writer` while the channel is down, and checks that `reader` empties its tier, says so,
/// subscribes again and never serves the old copy after the write.
pub async fn channel_loss_empties_the_tier<K, F>(
    writer: Arc<dyn Backend>,
    reader: Arc<dyn Backend>,
    kill: K,
) where
    K: Fn() -> F,
    F: Future<Output = ()>,
{
    live(&writer).await;
    live(&reader).await;
    let prefix = format!("cachette-channel-loss:{}:", fastrand::u64(..));
    let events = Arc::new(ChannelEvents::default());
    let writes: Cache<u32> = Cache::builder(Arc::clone(&writer))
        .prefix(prefix.clone())
        .local(LocalTier::new(1_000).hold(Duration::from_secs(600)))
        .build();
    let reads: Cache<u32> = Cache::builder(Arc::clone(&reader))
        .prefix(prefix)
        .local(LocalTier::new(1_000).hold(Duration::from_secs(600)))
        .observe(Arc::clone(&events))
        .build();
    writes.set("k", &1).await.expect("set");
    assert_eq!(reads.get("k").await.expect("get"), Some(1));
    let lost_before = events.lost.load(Ordering::SeqCst);
    let restored_before = events.restored.load(Ordering::SeqCst);
    kill().await;
    eventually("the reader's channel loss", LIVENESS, || {
        events.lost.load(Ordering::SeqCst) > lost_before
    })
    .await;
    // Down (or already back): a write now must never leave the old copy served.
    writes.set("k", &2).await.expect("set");
    assert_eq!(
        reads.get("k").await.expect("get"),
        Some(2),
        "while the channel is down"
    );
    eventually("the reader's new subscription", LIVENESS, || {
        events.restored.load(Ordering::SeqCst) > restored_before
    })
    .await;
    assert_eq!(
        reads.get("k").await.expect("get"),
        Some(2),
        "after the channel is back"
    );
    // And the channel carries writes again.
    assert_eq!(reads.get("k").await.expect("get"), Some(2));
    writes.set("k", &3).await.expect("set");
    seen(&reads, "k", Some(3)).await;
    writes.clear().await.expect("clear");
}
