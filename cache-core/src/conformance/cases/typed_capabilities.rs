//! The typed cache's take, walks, count, reads with the TTL and counters.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::TryStreamExt;

use super::{Doc, LONG_TTL, bytes, doc};
use crate::conformance::{Ctx, UnderTest};
use crate::{Condition, Error, Loaded, Result, SetOptions, Ttl};

/// Walks, `len`, `take`, `take_many` and the reads with the TTL speak the caller's keys,
/// without the prefix, and see only this cache's keys.
pub async fn typed_capabilities_use_the_callers_keys(ctx: Ctx) -> Result<()> {
    let cache = ctx
        .builder::<Doc>()
        .prefix(ctx.key("docs:"))
        .default_ttl(LONG_TTL)
        .under_test(&ctx);
    let other = ctx
        .builder::<Doc>()
        .prefix(ctx.key("docs;"))
        .under_test(&ctx);
    other.set("stranger", &doc(9)).await?;
    cache
        .set_many([("a", &doc(1)), ("b", &doc(2)), ("c", &doc(3))])
        .await?;
    let mut keys: Vec<String> = cache.keys().try_collect().await?;
    keys.sort();
    assert_eq!(keys, ["a", "b", "c"]);
    let entries: HashMap<String, Doc> = cache.entries().try_collect().await?;
    assert_eq!(
        entries,
        HashMap::from([
            ("a".into(), doc(1)),
            ("b".into(), doc(2)),
            ("c".into(), doc(3))
        ])
    );
    assert_eq!(cache.len().await?, 3);
    match cache.get_with_ttl("a").await? {
        Some((value, Ttl::Remaining(left))) => {
            assert_eq!(value, doc(1));
            assert!(left <= LONG_TTL);
        }
        other => panic!("get_with_ttl answered {other:?}"),
    }
    let with_ttl = cache.get_many_with_ttl(["b", "zz"]).await?;
    assert_eq!(with_ttl.keys().collect::<Vec<_>>(), ["b"]);
    assert_eq!(cache.take("a").await?, Some(doc(1)));
    assert_eq!(cache.take("a").await?, None);
    let taken = cache.take_many(["b", "zz", "b"]).await?;
    assert_eq!(taken, HashMap::from([("b".into(), doc(2))]));
    assert_eq!(cache.len().await?, 1);
    assert_eq!(other.len().await?, 1);
    Ok(())
}

/// Counters speak the caller's keys, take the cache's default TTL when created, and refuse a
/// typed entry naming the caller's key.
pub async fn typed_counters_use_the_callers_keys(ctx: Ctx) -> Result<()> {
    let cache = ctx
        .builder::<Doc>()
        .prefix(ctx.key("docs:"))
        .default_ttl(LONG_TTL)
        .under_test(&ctx);
    cache.set("c", &doc(3)).await?;
    assert_eq!(cache.incr("hits", 2).await?, 2);
    assert!(ctx.backend().contains(&ctx.key("docs:hits")).await?);
    assert_eq!(cache.counter("hits").await?, Some(2));
    assert!(matches!(cache.ttl("hits").await?, Some(Ttl::Remaining(_))));
    match cache.incr("c", 1).await {
        Err(Error::NotACounter { key, .. }) => assert_eq!(key, "c"),
        other => panic!("incr of a document answered {other:?}"),
    }
    assert!(matches!(
        cache.counter("c").await,
        Err(Error::NotACounter { .. })
    ));
    assert_eq!(cache.counter("none").await?, None);
    Ok(())
}

/// A tagged cache keeps its tag versions under its prefix, but walks and `len` count entries
/// only, and an entry whose tag was invalidated is neither listed nor taken.
pub async fn tagged_cache_walks_and_counts_entries_only(ctx: Ctx) -> Result<()> {
    let cache = ctx.builder::<Doc>().tagged().under_test(&ctx);
    cache
        .set_with("kept", &doc(1), SetOptions::new().tags(["a"]))
        .await?;
    cache
        .set_with("dropped", &doc(2), SetOptions::new().tags(["b"]))
        .await?;
    cache.invalidate_tags(["b", "c"]).await?;
    let keys: Vec<String> = cache.keys().try_collect().await?;
    assert_eq!(keys, ["kept"]);
    let entries: Vec<(String, Doc)> = cache.entries().try_collect().await?;
    assert_eq!(entries, [("kept".to_string(), doc(1))]);
    assert_eq!(
        cache.len().await?,
        2,
        "len counts stored entries, not tag versions"
    );
    assert_eq!(cache.take("dropped").await?, None);
    assert_eq!(cache.len().await?, 1);
    Ok(())
}

/// In a cache with freshness, walks decode the entry header and leave negative entries out;
/// `take` of a negative entry is `None`.
pub async fn freshness_cache_walks_values_not_headers(ctx: Ctx) -> Result<()> {
    let cache = ctx
        .builder::<Doc>()
        .default_ttl(LONG_TTL)
        .fresh_for(Duration::from_secs(60))
        .negative_ttl(LONG_TTL)
        .under_test(&ctx);
    cache.set("present", &doc(1)).await?;
    let found = cache
        .get_or_refresh("absent", || async {
            Ok::<_, std::io::Error>(Loaded::<Doc>::not_found())
        })
        .await?;
    assert_eq!(found, None);
    assert!(
        ctx.backend().contains(&ctx.key("absent")).await?,
        "the negative entry is stored"
    );
    let keys: Vec<String> = cache.keys().try_collect().await?;
    assert_eq!(keys, ["present"]);
    let entries: Vec<(String, Doc)> = cache.entries().try_collect().await?;
    assert_eq!(entries, [("present".to_string(), doc(1))]);
    assert_eq!(
        cache.get_with_ttl("present").await?.map(|(value, _)| value),
        Some(doc(1))
    );
    assert_eq!(cache.take("absent").await?, None);
    assert!(!ctx.backend().contains(&ctx.key("absent")).await?);
    // A raw counter beside typed entries does not decode: the walk of entries says so.
    ctx.backend()
        .set(&ctx.key("raw"), bytes("1"), None, Condition::Always)
        .await?;
    let walked: Vec<Result<(String, Doc)>> =
        futures_util::StreamExt::collect(cache.entries()).await;
    assert!(
        walked
            .iter()
            .any(|item| matches!(item, Err(Error::Decode { key, .. }) if key == "raw"))
    );
    assert!(
        walked
            .iter()
            .any(|item| matches!(item, Ok((key, _)) if key == "present"))
    );
    Ok(())
}

/// Walks of more keys than one page of the store (2,500 keys, pages of 1,000) list every key
/// and entry once.
pub async fn typed_walks_cross_pages(ctx: Ctx) -> Result<()> {
    const KEYS: u32 = 2_500;
    let cache = ctx.builder::<u32>().default_ttl(LONG_TTL).under_test(&ctx);
    cache
        .set_many((0..KEYS).map(|i| (format!("k{i:05}"), i)))
        .await?;
    let mut keys: Vec<String> = cache.keys().try_collect().await?;
    keys.sort();
    let expected: Vec<String> = (0..KEYS).map(|i| format!("k{i:05}")).collect();
    assert_eq!(
        keys.len(),
        expected.len(),
        "the walk of keys lost or repeated some"
    );
    assert_eq!(keys, expected);
    let entries: HashMap<String, u32> = cache.entries().try_collect().await?;
    assert_eq!(
        entries.len(),
        KEYS as usize,
        "the walk of entries lost some"
    );
    assert!(
        entries
            .iter()
            .all(|(key, value)| *key == format!("k{value:05}"))
    );
    Ok(())
}
