//! aries-cloudagent-python's cache rebuilt on cachette: its `BaseCache` (`get`, `set` of one
//! value under several keys with a TTL, `clear`, `flush`, `acquire`) and its `CacheKeyLock`
//! (`result`, `set_result(value, ttl)`, `release`), over the embedded SQLite store.
//!
//! In aries, the holder of a `CacheKeyLock` computes a semi-expensive value while every other
//! caller of the key waits and receives it. Two things go wrong there. A holder that leaves
//! without a result (its computation failed) hands `None` to every waiter, and each waiter then
//! computes the value itself: after one failure, all of them load at once. And the locks live
//! in a dictionary of one process, so two agent instances sharing a Redis cache still compute
//! everything twice. Here a lock left without a result goes to exactly one waiter, and with
//! `fleet_single_flight` the lock holds across every process sharing the store (shown with two
//! caches that share nothing but the SQLite file, as two agent processes would).
//!
//! The sync flavour (`cachette::blocking`) does the same from plain threads, on the same file:
//! threads of a program without an async runtime and tasks of the async agent share one lock.
//!
//! ```sh
//! cargo run --example aries_cache_lock --features blocking
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cachette::{Backend, Cache, Lease, Lock, LockGuard, SetOptions};
use serde::{Deserialize, Serialize};

/// What the agent caches: here a resolved connection target.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ConnectionTarget {
    did: String,
    endpoint: String,
    recipient_keys: Vec<String>,
}

/// aries' `BaseCache` over any store.
#[derive(Clone)]
struct AriesCache {
    cache: Cache<ConnectionTarget>,
}

/// aries' `CacheKeyLock`: either the result is there already, or this caller holds the lock
/// and must `set_result` (or `release`, after which one waiter takes over).
struct CacheKeyLock {
    result: Option<ConnectionTarget>,
    guard: Option<LockGuard<ConnectionTarget>>,
}

impl AriesCache {
    fn new(store: Arc<dyn Backend>, fleet: bool) -> Self {
        let mut builder = Cache::builder(store).prefix("acapy:");
        if fleet {
            builder = builder.fleet_single_flight(Lease::new(Duration::from_secs(10)));
        }
        Self {
            cache: builder.build(),
        }
    }

    /// `get(key)`: the value, or `None`.
    async fn get(&self, key: &str) -> cachette::Result<Option<ConnectionTarget>> {
        self.cache.get(key).await
    }

    /// `set(keys, value, ttl)`: one value under one key or several, in one store round trip.
    async fn set(
        &self,
        keys: &[&str],
        value: &ConnectionTarget,
        ttl: Option<Duration>,
    ) -> cachette::Result<()> {
        let options = match ttl {
            Some(ttl) => SetOptions::new().ttl(ttl),
            None => SetOptions::new(),
        };
        self.cache
            .set_many_with(keys.iter().map(|key| (*key, value)), options)
            .await
    }

    /// `clear(key)`.
    async fn clear(&self, key: &str) -> cachette::Result<()> {
        self.cache.delete(key).await.map(drop)
    }

    /// `flush()`: every key of this cache.
    async fn flush(&self) -> cachette::Result<()> {
        self.cache.clear().await.map(drop)
    }

    /// `acquire(key)`: waits while another caller holds the key, then gives its result, or the
    /// lock when there is none.
    async fn acquire(&self, key: &str) -> cachette::Result<CacheKeyLock> {
        Ok(match self.cache.lock(key).await? {
            Lock::Found(value) => CacheKeyLock {
                result: Some(value),
                guard: None,
            },
            Lock::Held(guard) => CacheKeyLock {
                result: None,
                guard: Some(guard),
            },
        })
    }
}

impl CacheKeyLock {
    /// `lock.result`: the value another holder produced, or one already cached.
    fn result(&self) -> Option<&ConnectionTarget> {
        self.result.as_ref()
    }

    /// `set_result(value, ttl)`: stores the value with its own TTL and wakes every waiter.
    async fn set_result(
        mut self,
        value: ConnectionTarget,
        ttl: Option<Duration>,
    ) -> cachette::Result<ConnectionTarget> {
        if let Some(guard) = self.guard.take() {
            let options = match ttl {
                Some(ttl) => SetOptions::new().ttl(ttl),
                None => SetOptions::new(),
            };
            guard.set_with(&value, options).await?;
        }
        Ok(value)
    }

    /// `release()`: leaves without a result; one waiter takes the lock over.
    fn release(self) {}
}

/// The sync flavour of `BaseCache`, on `cachette::blocking`.
#[derive(Clone)]
struct SyncAriesCache {
    cache: cachette::blocking::Cache<ConnectionTarget>,
}

/// The sync flavour of `CacheKeyLock`.
struct SyncCacheKeyLock {
    result: Option<ConnectionTarget>,
    guard: Option<cachette::blocking::LockGuard<ConnectionTarget>>,
}

impl SyncAriesCache {
    fn open(url: &str) -> cachette::Result<Self> {
        let store = cachette::blocking::open(url)?;
        Ok(Self {
            cache: store.cache_with(|builder| {
                builder
                    .prefix("acapy:")
                    .fleet_single_flight(Lease::new(Duration::from_secs(10)))
            }),
        })
    }

    fn get(&self, key: &str) -> cachette::Result<Option<ConnectionTarget>> {
        self.cache.get(key)
    }

    /// `acquire(key)`, from a plain thread.
    fn acquire(&self, key: &str) -> cachette::Result<SyncCacheKeyLock> {
        Ok(match self.cache.lock(key)? {
            cachette::blocking::Lock::Found(value) => SyncCacheKeyLock {
                result: Some(value),
                guard: None,
            },
            cachette::blocking::Lock::Held(guard) => SyncCacheKeyLock {
                result: None,
                guard: Some(guard),
            },
        })
    }
}

impl SyncCacheKeyLock {
    fn set_result(
        mut self,
        value: ConnectionTarget,
        ttl: Duration,
    ) -> cachette::Result<ConnectionTarget> {
        if let Some(guard) = self.guard.take() {
            guard.set_with(&value, SetOptions::new().ttl(ttl))?;
        }
        Ok(value)
    }
}

fn target(n: usize) -> ConnectionTarget {
    ConnectionTarget {
        did: "did:sov:WgWxqztrNooG92RXvxSTWv".into(),
        endpoint: format!("https://agent.example/{n}"),
        recipient_keys: vec!["8HH5gYEeNc3z7PYXmd54d4x6qAfCNrqQqEB3nS7Zfu7K".into()],
    }
}

/// What an agent task does: the cached target, or the lock to resolve it (counted in
/// `resolutions`), resolved and shared with every waiter; `fail` makes the resolution fail.
async fn connection_target(
    cache: &AriesCache,
    key: &str,
    resolutions: &AtomicUsize,
    fail: bool,
) -> cachette::Result<Option<ConnectionTarget>> {
    let lock = cache.acquire(key).await?;
    if let Some(found) = lock.result() {
        return Ok(Some(found.clone()));
    }
    let n = resolutions.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(50)).await;
    if fail {
        // The resolver is down: leave without a result.
        lock.release();
        return Ok(None);
    }
    let value = lock
        .set_result(target(n), Some(Duration::from_secs(3600)))
        .await?;
    Ok(Some(value))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join("cachette-aries-cache-lock.db");
    let url = format!("sqlite://{}", path.display());
    let store = cachette::open(&url).await?;
    let cache = AriesCache::new(Arc::clone(&store), false);
    cache.flush().await?;

    // Eight tasks ask for one connection target: one resolves it, seven receive it.
    let resolutions = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (cache, resolutions) = (cache.clone(), Arc::clone(&resolutions));
            tokio::spawn(async move {
                connection_target(&cache, "target:conn-1", &resolutions, false).await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await??);
    }
    assert_eq!(resolutions.load(Ordering::SeqCst), 1);
    assert!(
        answers
            .iter()
            .all(|answer| answer.as_ref() == Some(&target(0)))
    );
    println!(
        "8 callers, 1 resolution: every caller got {:?}",
        target(0).endpoint
    );

    // The first holder fails: aries hands `None` to all seven waiters, and all seven resolve.
    // Here exactly one takes the lock over, and the others get its value.
    let resolutions = Arc::new(AtomicUsize::new(0));
    let first = cache.acquire("target:conn-2").await?;
    assert!(first.result().is_none());
    let waiters: Vec<_> = (0..7)
        .map(|_| {
            let (cache, resolutions) = (cache.clone(), Arc::clone(&resolutions));
            tokio::spawn(async move {
                connection_target(&cache, "target:conn-2", &resolutions, false).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    first.release();
    let mut answers = Vec::new();
    for waiter in waiters {
        answers.push(waiter.await??);
    }
    assert_eq!(
        resolutions.load(Ordering::SeqCst),
        1,
        "one waiter takes over"
    );
    assert!(answers.iter().all(|answer| answer == &answers[0]));
    println!("holder failed: 1 waiter of 7 resolved again (aries: all 7)");

    // A failing resolution caches nothing: the next caller resolves.
    let resolutions = Arc::new(AtomicUsize::new(0));
    assert_eq!(
        connection_target(&cache, "target:conn-3", &resolutions, true).await?,
        None
    );
    assert!(cache.get("target:conn-3").await?.is_none());
    assert!(
        connection_target(&cache, "target:conn-3", &resolutions, false)
            .await?
            .is_some()
    );
    assert_eq!(resolutions.load(Ordering::SeqCst), 2);

    // Two agent instances that share only the store: with fleet-wide single flight the lock
    // holds across both (aries' locks hold within one process).
    let resolutions = Arc::new(AtomicUsize::new(0));
    let agents = [
        AriesCache::new(cachette::open(&url).await?, true),
        AriesCache::new(cachette::open(&url).await?, true),
    ];
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (cache, resolutions) = (agents[i % 2].clone(), Arc::clone(&resolutions));
            tokio::spawn(async move {
                connection_target(&cache, "target:conn-4", &resolutions, false).await
            })
        })
        .collect();
    for task in tasks {
        assert!(task.await??.is_some());
    }
    assert_eq!(resolutions.load(Ordering::SeqCst), 1);
    println!("2 agent instances, 8 callers: 1 resolution");

    // The sync flavour: four plain threads and four async tasks ask for one target at once,
    // over two handles of the same file. One resolution in all, by whichever side won.
    let resolutions = Arc::new(AtomicUsize::new(0));
    // Opened off the async workers, as a program without a runtime would open it.
    let sync_url = url.clone();
    let sync = tokio::task::spawn_blocking(move || SyncAriesCache::open(&sync_url)).await??;
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (sync, resolutions) = (sync.clone(), Arc::clone(&resolutions));
            std::thread::spawn(move || -> cachette::Result<ConnectionTarget> {
                let lock = sync.acquire("target:conn-5")?;
                if let Some(found) = lock.result {
                    return Ok(found);
                }
                let n = resolutions.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(50));
                lock.set_result(target(n), Duration::from_secs(3600))
            })
        })
        .collect();
    let tasks: Vec<_> = (0..4)
        .map(|i| {
            let (cache, resolutions) = (agents[i % 2].clone(), Arc::clone(&resolutions));
            tokio::spawn(async move {
                connection_target(&cache, "target:conn-5", &resolutions, false).await
            })
        })
        .collect();
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(task.await??.expect("resolved"));
    }
    let sync_answers = tokio::task::spawn_blocking(move || {
        threads
            .into_iter()
            .map(|thread| thread.join().expect("a sync caller panicked"))
            .collect::<cachette::Result<Vec<_>>>()
    })
    .await??;
    answers.extend(sync_answers);
    assert_eq!(resolutions.load(Ordering::SeqCst), 1);
    assert!(answers.iter().all(|answer| answer == &answers[0]));
    let read_back = tokio::task::spawn_blocking(move || sync.get("target:conn-5")).await??;
    assert_eq!(read_back.as_ref(), Some(&answers[0]));
    println!("sync flavour: 4 threads and 4 async tasks, 1 resolution");

    // set under several keys with a TTL, clear, flush.
    let value = target(9);
    cache
        .set(
            &["target:by-did", "target:by-key"],
            &value,
            Some(Duration::from_secs(60)),
        )
        .await?;
    assert_eq!(cache.get("target:by-key").await?, Some(value.clone()));
    cache.clear("target:by-did").await?;
    assert_eq!(cache.get("target:by-did").await?, None);
    cache.flush().await?;
    assert_eq!(cache.get("target:by-key").await?, None);
    assert_eq!(cache.get("target:conn-1").await?, None);
    println!("set of two keys, clear, flush: ok");
    Ok(())
}
