//! The local tier: copies served without the store, dropped by every write of the process, never
//! past the store's TTL, never kept from a read that raced a write.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;

use super::{Doc, LONG_TTL, doc};
use crate::conformance::{CacheUnderTest, Ctx, UnderTest};
use crate::raw::Forward;
use crate::raw::invalidation::Link;
use crate::{Backend, Cache, LocalTier, Result, SetOptions, Ttl};

/// The tier of the cases: big enough for every key of a case, held longer than any case runs.
fn tier() -> LocalTier {
    LocalTier::new(10_000).hold(LONG_TTL)
}

/// Records the keys of every read that reaches the store below the tier.
#[derive(Debug)]
struct Reads {
    inner: Arc<dyn Backend>,
    keys: Arc<Mutex<Vec<String>>>,
}

impl Reads {
    fn over(inner: &Arc<dyn Backend>) -> (Arc<dyn Backend>, Arc<Mutex<Vec<String>>>) {
        let keys = Arc::new(Mutex::new(Vec::new()));
        let reads = Self {
            inner: Arc::clone(inner),
            keys: Arc::clone(&keys),
        };
        (Arc::new(reads), keys)
    }

    fn record<'k>(&self, keys: impl IntoIterator<Item = &'k String>) {
        self.keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend(keys.into_iter().cloned());
    }
}

#[async_trait]
impl Forward for Reads {
    fn inner(&self) -> &dyn Backend {
        &*self.inner
    }
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.record([&key.to_owned()]);
        self.inner.get(key).await
    }
    async fn get_with_ttl(&self, key: &str) -> Result<Option<(Bytes, Ttl)>> {
        self.record([&key.to_owned()]);
        self.inner.get_with_ttl(key).await
    }
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        self.record(keys);
        self.inner.get_many(keys).await
    }
    async fn get_many_with_ttl(&self, keys: &[String]) -> Result<Vec<Option<(Bytes, Ttl)>>> {
        self.record(keys);
        self.inner.get_many_with_ttl(keys).await
    }
}

/// A tier holds copies only over a store that reads values with their TTLs: the cases of the
/// tier are not applicable to one that cannot.
async fn require_ttl_reads(ctx: &Ctx) -> Result<()> {
    ctx.backend()
        .get_with_ttl(&ctx.key("probe"))
        .await
        .map(drop)?;
    // A tier over a store with a channel serves copies once its subscription stands, a few
    // milliseconds after the first cache over the handle is built.
    if let Some(bus) = ctx.backend().invalidation_bus() {
        bus.start();
        let started = Instant::now();
        while !matches!(bus.link(), Link::InProcess | Link::Live) {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "the store's invalidation channel never subscribed: {:?}",
                bus.link()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    Ok(())
}

/// A tiered cache of the case over a store that records the keys every read asks it for.
fn counted(ctx: &Ctx) -> (CacheUnderTest<Doc>, Arc<Mutex<Vec<String>>>) {
    let (reads, keys) = Reads::over(ctx.backend());
    let cache = Cache::builder(reads)
        .prefix(ctx.prefix())
        .planted_bug(ctx.facade_bug)
        .local(tier())
        .under_test(ctx);
    (cache, keys)
}

fn taken(keys: &Mutex<Vec<String>>) -> Vec<String> {
    std::mem::take(
        &mut *keys
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
}

/// After one read, a held key is served without the store, and `get_arc` hands out the held
/// copy itself, not a new one.
pub async fn held_copies_are_served_without_the_store(ctx: Ctx) -> Result<()> {
    require_ttl_reads(&ctx).await?;
    let (cache, keys) = counted(&ctx);
    cache.set("k", &doc(1)).await?;
    assert_eq!(cache.get("k").await?, Some(doc(1)));
    assert_eq!(taken(&keys).len(), 1, "the first read asks the store");
    for _ in 0..3 {
        assert_eq!(cache.get("k").await?, Some(doc(1)));
    }
    let first = cache.get_arc("k").await?.expect("held");
    let second = cache.get_arc("k").await?.expect("held");
    assert!(
        Arc::ptr_eq(&first, &second),
        "get_arc hands out the held copy"
    );
    assert_eq!(
        taken(&keys),
        Vec::<String>::new(),
        "held reads never ask the store"
    );
    assert_eq!(cache.get("absent").await?, None);
    Ok(())
}

/// `get_many` serves what the tier holds and asks the store, once, for the rest only.
pub async fn get_many_asks_the_store_only_for_keys_not_held(ctx: Ctx) -> Result<()> {
    require_ttl_reads(&ctx).await?;
    let (cache, keys) = counted(&ctx);
    cache
        .set_many([("held", doc(1)), ("stored", doc(2))])
        .await?;
    assert_eq!(cache.get("held").await?, Some(doc(1)));
    taken(&keys);
    let found = cache.get_many(["held", "stored", "absent"]).await?;
    assert_eq!(found.len(), 2);
    assert_eq!(found.get("held"), Some(&doc(1)));
    assert_eq!(found.get("stored"), Some(&doc(2)));
    let mut asked = taken(&keys);
    asked.sort();
    assert_eq!(asked, [ctx.key("absent"), ctx.key("stored")]);
    // What the batch read is held now.
    assert_eq!(cache.get_many(["held", "stored"]).await?.len(), 2);
    assert_eq!(taken(&keys), Vec::<String>::new());
    Ok(())
}

/// Every write of the cache drops the copies it changes before it returns.
pub async fn own_writes_drop_held_copies_at_once(ctx: Ctx) -> Result<()> {
    require_ttl_reads(&ctx).await?;
    let cache: CacheUnderTest<Doc> = ctx.builder::<Doc>().tagged().local(tier()).under_test(&ctx);
    let held = |key: &'static str| {
        let cache = cache.clone();
        async move {
            cache
                .set_with(key, &doc(1), SetOptions::new().tags(["t"]))
                .await?;
            assert_eq!(cache.get(key).await?, Some(doc(1)), "{key} is read");
            Result::Ok(())
        }
    };
    held("set").await?;
    cache.set("set", &doc(2)).await?;
    assert_eq!(cache.get("set").await?, Some(doc(2)), "after set");
    held("set_many").await?;
    cache.set_many([("set_many", doc(2))]).await?;
    assert_eq!(cache.get("set_many").await?, Some(doc(2)), "after set_many");
    held("delete").await?;
    cache.delete("delete").await?;
    assert_eq!(cache.get("delete").await?, None, "after delete");
    held("delete_many").await?;
    cache.delete_many(["delete_many"]).await?;
    assert_eq!(cache.get("delete_many").await?, None, "after delete_many");
    held("expire_in").await?;
    cache.expire_in("expire_in", Some(Duration::ZERO)).await?;
    assert_eq!(cache.get("expire_in").await?, None, "after expire_in");
    held("take").await?;
    assert_eq!(cache.take("take").await?, Some(doc(1)));
    assert_eq!(cache.get("take").await?, None, "after take");
    held("tagged").await?;
    cache.invalidate_tags(["t"]).await?;
    assert_eq!(cache.get("tagged").await?, None, "after invalidate_tags");
    held("clear").await?;
    cache.clear().await?;
    assert_eq!(cache.get("clear").await?, None, "after clear");
    // A raw write through the store handle of a tiered cache announces too.
    held("raw").await?;
    let stored = ctx.backend().get(&ctx.key("raw")).await?.expect("present");
    cache.set("raw", &doc(3)).await?;
    assert_eq!(cache.get("raw").await?, Some(doc(3)));
    cache
        .backend()
        .set(&ctx.key("raw"), stored, None, crate::Condition::Always)
        .await?;
    assert_eq!(
        cache.get("raw").await?,
        Some(doc(1)),
        "after a write through backend()"
    );
    Ok(())
}

/// Caches built apart over one store handle see each other's writes at once: they share the
/// handle's bus.
pub async fn caches_over_one_handle_see_each_others_writes(ctx: Ctx) -> Result<()> {
    require_ttl_reads(&ctx).await?;
    if ctx.backend().invalidation_bus().is_none() {
        return Err(crate::Error::unsupported(
            ctx.backend().name(),
            "invalidation_bus",
        ));
    }
    let reader: CacheUnderTest<Doc> = ctx.builder::<Doc>().local(tier()).under_test(&ctx);
    let writer: CacheUnderTest<Doc> = ctx.builder::<Doc>().local(tier()).under_test(&ctx);
    writer.set("k", &doc(1)).await?;
    assert_eq!(reader.get("k").await?, Some(doc(1)));
    writer.set("k", &doc(2)).await?;
    assert_eq!(
        reader.get("k").await?,
        Some(doc(2)),
        "after the other cache's set"
    );
    writer.delete("k").await?;
    assert_eq!(
        reader.get("k").await?,
        None,
        "after the other cache's delete"
    );
    writer.set("k", &doc(3)).await?;
    assert_eq!(reader.get("k").await?, Some(doc(3)));
    writer.clear().await?;
    assert_eq!(
        reader.get("k").await?,
        None,
        "after the other cache's clear"
    );
    Ok(())
}

/// A copy never outlives the entry's TTL in the store, however long the tier may hold it.
pub async fn copies_never_outlive_the_stores_ttl(ctx: Ctx) -> Result<()> {
    require_ttl_reads(&ctx).await?;
    let cache: CacheUnderTest<Doc> = ctx.builder::<Doc>().local(tier()).under_test(&ctx);
    let ttl = Duration::from_millis(400);
    let before = Instant::now();
    cache
        .set_with("k", &doc(1), SetOptions::new().ttl(ttl))
        .await?;
    let written = Instant::now();
    let read = cache.get("k").await?;
    if before.elapsed() < ttl {
        assert_eq!(read, Some(doc(1)));
    }
    // The store's entry expires within `ttl` of the write's return.
    super::sleep_past_expiry(written, ttl).await;
    assert_eq!(
        cache.get("k").await?,
        None,
        "the copy outlived the store's entry"
    );
    Ok(())
}

/// Holds the first read of one key below the tier after it fetched its answer, until released.
#[derive(Debug)]
struct HeldRead {
    inner: Arc<dyn Backend>,
    key: String,
    held: AtomicBool,
    arrived: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Notify>,
}

#[async_trait]
impl Forward for HeldRead {
    fn inner(&self) -> &dyn Backend {
        &*self.inner
    }
    async fn get_with_ttl(&self, key: &str) -> Result<Option<(Bytes, Ttl)>> {
        let answer = self.inner.get_with_ttl(key).await;
        if key == self.key && !self.held.swap(true, Ordering::SeqCst) {
            self.arrived.notify_one();
            self.release.notified().await;
        }
        answer
    }
}

/// A read that fetched a value before a write, and returns after it, keeps no copy: the next
/// read sees the write.
pub async fn a_read_racing_a_write_keeps_no_stale_copy(ctx: Ctx) -> Result<()> {
    require_ttl_reads(&ctx).await?;
    let arrived = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let held: Arc<dyn Backend> = Arc::new(HeldRead {
        inner: Arc::clone(ctx.backend()),
        key: ctx.key("raced"),
        held: AtomicBool::new(false),
        arrived: Arc::clone(&arrived),
        release: Arc::clone(&release),
    });
    let cache: CacheUnderTest<Doc> = Cache::builder(held)
        .prefix(ctx.prefix())
        .planted_bug(ctx.facade_bug)
        .local(tier())
        .under_test(&ctx);
    cache.set("raced", &doc(1)).await?;
    let reader = {
        let cache = cache.clone();
        tokio::spawn(async move { cache.get("raced").await })
    };
    arrived.notified().await;
    cache.set("raced", &doc(2)).await?;
    release.notify_one();
    let raced = reader.await.expect("the reader does not panic")?;
    assert_eq!(
        raced,
        Some(doc(1)),
        "the raced read answers what it fetched"
    );
    assert_eq!(
        cache.get("raced").await?,
        Some(doc(2)),
        "a stale copy was kept"
    );
    Ok(())
}
