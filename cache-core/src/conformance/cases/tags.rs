//! Tags: `invalidate_tags` makes every entry of a tag absent for every read, in a bounded number
//! of store calls, on every handle; racing writes never survive it; tag state lives under the
//! cache's prefix, out of user keys' reach.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use super::{Doc, LONG_TTL, doc};
use crate::conformance::{CacheUnderTest, Ctx, UnderTest};
use crate::raw::{Answer, Call, CallFuture, Forward, Intercept, Intercepted};
use crate::{Backend, Cache, Condition, Error, Loaded, Result, SetOptions};

#[derive(Debug, thiserror::Error)]
#[error("the source of truth is down")]
struct SourceDown;

fn tagged(ctx: &Ctx) -> CacheUnderTest<Doc> {
    ctx.builder::<Doc>()
        .default_ttl(LONG_TTL)
        .tagged()
        .under_test(ctx)
}

fn with_tags(tags: &[&str]) -> SetOptions {
    SetOptions::new().tags(tags.iter().copied())
}

/// An entry written under tags A and B is absent for every read after either is invalidated;
/// untagged entries and entries of other tags stay.
pub async fn invalidating_any_tag_of_an_entry_removes_it_for_every_read(ctx: Ctx) -> Result<()> {
    let cache = tagged(&ctx);
    for (key, tags) in [
        ("ab", &["a", "b"][..]),
        ("ba", &["b", "a"]),
        ("c", &["c"]),
        ("none", &[]),
    ] {
        cache.set_with(key, &doc(1), with_tags(tags)).await?;
    }
    assert_eq!(
        cache.get("ab").await?,
        Some(doc(1)),
        "a tagged entry reads like any other"
    );
    cache.invalidate_tags(["b"]).await?;
    for key in ["ab", "ba"] {
        assert_eq!(cache.get(key).await?, None, "{key} after invalidating b");
        assert!(!cache.contains(key).await?, "{key}");
        assert!(cache.get_entry(key).await?.is_none(), "{key}");
    }
    let found = cache.get_many(["ab", "ba", "c", "none"]).await?;
    let mut keys: Vec<&str> = found.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["c", "none"], "other tags and untagged entries stay");
    // Tags belong to their cache: another cache's tag of the same name is untouched.
    let other: CacheUnderTest<Doc> = ctx
        .builder::<Doc>()
        .prefix(format!("{}other:", ctx.prefix()))
        .tagged()
        .under_test(&ctx);
    other.set_with("x", &doc(5), with_tags(&["b"])).await?;
    cache.invalidate_tags(["b"]).await?;
    assert_eq!(
        other.get("x").await?,
        Some(doc(5)),
        "another cache's tag b was invalidated"
    );
    // A write after the invalidation is current again.
    cache
        .set_with("ab", &doc(2), with_tags(&["a", "b"]))
        .await?;
    assert_eq!(cache.get("ab").await?, Some(doc(2)));
    // The loading verbs see an invalidated entry as absent and load it again.
    cache.invalidate_tags(["a"]).await?;
    let loaded = cache
        .get_or_insert_with("ab", || async { Ok::<_, SourceDown>(doc(3)) })
        .await?;
    assert_eq!(loaded, doc(3));
    Ok(())
}

/// Counts every call that reaches the store.
#[derive(Debug)]
struct Counting {
    inner: Arc<dyn Backend>,
    calls: Arc<AtomicUsize>,
}

impl Intercept for Counting {
    fn inner(&self) -> &dyn Backend {
        &*self.inner
    }

    async fn intercept<'a, T: Answer + 'a>(
        &'a self,
        _: Call<'a>,
        run: CallFuture<'a, T>,
    ) -> Result<T> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        run.await
    }
}

/// 10,000 entries of one tag are gone after one invalidation of one store call, and a batch read
/// of all of them costs two calls (the entries, then their tags' versions).
pub async fn invalidation_costs_calls_independent_of_the_entries(ctx: Ctx) -> Result<()> {
    const ENTRIES: usize = 10_000;
    let calls = Arc::new(AtomicUsize::new(0));
    let counted: Arc<dyn Backend> = Arc::new(Intercepted(Counting {
        inner: Arc::clone(ctx.backend()),
        calls: Arc::clone(&calls),
    }));
    let cache: CacheUnderTest<Doc> = Cache::builder(counted)
        .prefix(ctx.prefix())
        .default_ttl(LONG_TTL)
        .tagged()
        .planted_bug(ctx.facade_bug)
        .under_test(&ctx);
    let keys: Vec<String> = (0..ENTRIES).map(|n| format!("k{n}")).collect();
    let value = doc(1);
    cache
        .set_many_with(
            keys.iter().map(|key| (key.as_str(), &value)),
            with_tags(&["bulk"]),
        )
        .await?;
    cache
        .set_with("other", &doc(2), with_tags(&["other"]))
        .await?;
    assert_eq!(cache.get_many(&keys).await?.len(), ENTRIES);
    calls.store(0, Ordering::SeqCst);
    cache.invalidate_tags(["bulk"]).await?;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "invalidate_tags is one store call"
    );
    calls.store(0, Ordering::SeqCst);
    assert!(
        cache.get_many(&keys).await?.is_empty(),
        "every entry of the tag is gone"
    );
    let expected = if ctx.has_local_tier() {
        // The tier holds the entries; only the invalidated version is read again.
        1
    } else {
        2
    };
    assert_eq!(
        calls.load(Ordering::SeqCst),
        expected,
        "a batch read is the entries, then the versions"
    );
    assert_eq!(cache.get("other").await?, Some(doc(2)));
    Ok(())
}

/// Holds the first `set` of one key until released, after signalling that it arrived: the
/// write has read its tag versions and not yet landed.
#[derive(Debug)]
struct HeldWrite {
    inner: Arc<dyn Backend>,
    key: String,
    held: std::sync::atomic::AtomicBool,
    arrived: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Notify>,
}

#[async_trait]
impl Forward for HeldWrite {
    fn inner(&self) -> &dyn Backend {
        &*self.inner
    }
    async fn set(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        condition: Condition,
    ) -> Result<bool> {
        if key == self.key && !self.held.swap(true, Ordering::SeqCst) {
            self.arrived.notify_one();
            self.release.notified().await;
        }
        self.inner.set(key, value, ttl, condition).await
    }
}

/// A write that read its tag versions before an invalidation, and lands after it, leaves an
/// entry that is absent: it never survives the invalidation it raced.
pub async fn a_write_racing_an_invalidation_never_survives_it(ctx: Ctx) -> Result<()> {
    let arrived = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let held: Arc<dyn Backend> = Arc::new(HeldWrite {
        inner: Arc::clone(ctx.backend()),
        key: ctx.key("raced"),
        held: std::sync::atomic::AtomicBool::new(false),
        arrived: Arc::clone(&arrived),
        release: Arc::clone(&release),
    });
    let writer: CacheUnderTest<Doc> = Cache::builder(held)
        .prefix(ctx.prefix())
        .default_ttl(LONG_TTL)
        .tagged()
        .planted_bug(ctx.facade_bug)
        .under_test(&ctx);
    let cache = tagged(&ctx);
    // The tag has a version before the race, as it would in a running service.
    cache.set_with("before", &doc(0), with_tags(&["t"])).await?;
    let write =
        tokio::spawn(async move { writer.set_with("raced", &doc(1), with_tags(&["t"])).await });
    arrived.notified().await;
    cache.invalidate_tags(["t"]).await?;
    release.notify_one();
    write
        .await
        .map_err(|error| Error::backend("conformance", "join", None, error))??;
    assert_eq!(
        cache.get("raced").await?,
        None,
        "a write that raced an invalidation survived it"
    );
    assert_eq!(cache.get("before").await?, None);
    Ok(())
}

/// An invalidation through one handle is seen through another handle on the same data.
pub async fn invalidation_is_seen_by_a_second_handle(ctx: Ctx) -> Result<()> {
    let cache = tagged(&ctx);
    let other: CacheUnderTest<Doc> = Cache::builder(Arc::clone(ctx.peer()))
        .prefix(ctx.prefix())
        .tagged()
        .planted_bug(ctx.facade_bug)
        .under_test(&ctx);
    cache.set_with("k", &doc(1), with_tags(&["t"])).await?;
    assert_eq!(other.get("k").await?, Some(doc(1)));
    other.invalidate_tags(["t"]).await?;
    assert_eq!(cache.get("k").await?, None);
    assert_eq!(other.get("k").await?, None);
    Ok(())
}

/// Tag versions live under the cache's prefix: `clear()` removes them with the entries, leaving
/// nothing of the cache in the store, and the cache works afterwards.
pub async fn clear_removes_tag_state(ctx: Ctx) -> Result<()> {
    let cache = tagged(&ctx);
    cache.set_with("k", &doc(1), with_tags(&["t", "u"])).await?;
    cache.invalidate_tags(["u", "never-used"]).await?;
    cache.clear().await?;
    assert_eq!(
        ctx.backend().clear_prefix(ctx.prefix()).await?,
        0,
        "clear() left tag state behind"
    );
    cache.set_with("k", &doc(2), with_tags(&["t"])).await?;
    assert_eq!(cache.get("k").await?, Some(doc(2)));
    Ok(())
}

/// User keys of a tagged cache cannot reach the tag versions' space; an untagged cache's keys
/// are not restricted.
pub async fn user_keys_cannot_reach_tag_versions(ctx: Ctx) -> Result<()> {
    let cache = tagged(&ctx);
    cache.set_with("k", &doc(1), with_tags(&["t"])).await?;
    for key in ["\u{FFFF}t", "\u{FFFF}"] {
        match cache.set(key, &doc(9)).await {
            Err(Error::InvalidKey { key: named, .. }) => assert_eq!(named, key),
            other => panic!("a tagged cache wrote {key:?}: {other:?}"),
        }
        assert!(matches!(
            cache.get(key).await,
            Err(Error::InvalidKey { .. })
        ));
        assert!(matches!(
            cache.delete(key).await,
            Err(Error::InvalidKey { .. })
        ));
    }
    assert_eq!(
        cache.get("k").await?,
        Some(doc(1)),
        "the tag's version is untouched"
    );
    let plain = ctx.cache::<Doc>();
    plain.set("\u{FFFF}plain", &doc(2)).await?;
    assert_eq!(plain.get("\u{FFFF}plain").await?, Some(doc(2)));
    Ok(())
}

/// A loader may return tags with its value; invalidating one makes the loading verbs load again.
pub async fn loaders_may_tag_their_values(ctx: Ctx) -> Result<()> {
    let cache = ctx
        .builder::<Doc>()
        .default_ttl(LONG_TTL)
        .fresh_for(LONG_TTL)
        .tagged()
        .under_test(&ctx);
    let calls = Arc::new(AtomicUsize::new(0));
    let load = |calls: Arc<AtomicUsize>| {
        move || async move {
            let n = calls.fetch_add(1, Ordering::SeqCst) as u32;
            Ok::<_, SourceDown>(Loaded::value(doc(n)).tags(["user:7"]))
        }
    };
    assert_eq!(
        cache.get_or_refresh("k", load(Arc::clone(&calls))).await?,
        Some(doc(0))
    );
    assert_eq!(
        cache.get_or_refresh("k", load(Arc::clone(&calls))).await?,
        Some(doc(0))
    );
    cache.invalidate_tags(["user:7"]).await?;
    assert_eq!(cache.get("k").await?, None);
    assert_eq!(
        cache.get_or_refresh("k", load(Arc::clone(&calls))).await?,
        Some(doc(1))
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    Ok(())
}

/// A tag version the store lost (a bounded store evicted it, someone removed it) makes the
/// entries written under it absent: they never become current again.
pub async fn a_lost_tag_version_never_revives_its_entries(ctx: Ctx) -> Result<()> {
    let cache = tagged(&ctx);
    cache.set_with("k", &doc(1), with_tags(&["t"])).await?;
    cache.invalidate_tags(["t"]).await?;
    // What eviction of the version would do: remove it from under the cache.
    let mut removed = 0;
    for key in [ctx.key("\u{FFFF}t"), "tag/t".to_owned()] {
        removed += u64::from(ctx.backend().delete(&key).await?);
    }
    assert_eq!(removed, 1, "the tag's version is one key");
    assert_eq!(
        cache.get("k").await?,
        None,
        "an invalidated entry came back"
    );
    // Writes give the tag a version again.
    cache.set_with("k", &doc(2), with_tags(&["t"])).await?;
    assert_eq!(cache.get("k").await?, Some(doc(2)));
    Ok(())
}

/// Writes with tags in a cache built without `.tagged()` are refused, never stored untagged.
pub async fn tags_need_a_tagged_cache(ctx: Ctx) -> Result<()> {
    let cache = ctx.cache::<Doc>();
    assert!(matches!(
        cache.set_with("k", &doc(1), with_tags(&["t"])).await,
        Err(Error::Unsupported { .. })
    ));
    assert!(matches!(
        cache.invalidate_tags(["t"]).await,
        Err(Error::Unsupported { .. })
    ));
    assert_eq!(cache.get("k").await?, None, "nothing was written");
    Ok(())
}
