//! The typed `Cache` over the store: prefix, default TTL, serializers.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;

use super::{Doc, LONG_TTL, doc};
use crate::conformance::{Ctx, UnderTest};
use crate::{Json, Raw, Result, SetOptions, Ttl};

/// The cache writes under its prefix, and only there.
pub async fn cache_applies_its_prefix(ctx: Ctx) -> Result<()> {
    let cache = ctx
        .builder::<Doc>()
        .prefix(ctx.key("docs:"))
        .under_test(&ctx);
    cache.set("1", &doc(1)).await?;
    assert!(ctx.backend().contains(&ctx.key("docs:1")).await?);
    assert!(!ctx.backend().contains(&ctx.key("1")).await?);
    assert_eq!(cache.get("1").await?, Some(doc(1)));
    assert!(cache.contains("1").await?);
    assert!(cache.delete("1").await?);
    assert!(!cache.contains("1").await?);
    Ok(())
}

/// Writes without a TTL of their own get the cache's default TTL.
pub async fn cache_applies_its_default_ttl(ctx: Ctx) -> Result<()> {
    let cache = ctx
        .builder::<Doc>()
        .default_ttl(Duration::from_secs(90))
        .under_test(&ctx);
    cache.set("one", &doc(1)).await?;
    cache.set_many([("two", doc(2)), ("three", doc(3))]).await?;
    cache
        .set_with(
            "four",
            &doc(4),
            SetOptions::new().ttl(Duration::from_secs(30)),
        )
        .await?;
    for key in ["one", "two", "three"] {
        match cache.ttl(key).await? {
            Some(Ttl::Remaining(left)) => {
                assert!(left > Duration::from_secs(80) && left <= Duration::from_secs(90))
            }
            other => panic!("{key}: {other:?}"),
        }
    }
    match cache.ttl("four").await? {
        Some(Ttl::Remaining(left)) => assert!(left <= Duration::from_secs(30)),
        other => panic!("four: {other:?}"),
    }
    Ok(())
}

/// `SetOptions::no_ttl` writes an eternal key despite a default TTL; `expire_in` changes it.
pub async fn explicit_no_ttl_overrides_the_default(ctx: Ctx) -> Result<()> {
    let cache = ctx.builder::<Doc>().default_ttl(LONG_TTL).under_test(&ctx);
    assert!(
        cache
            .set_with("k", &doc(1), SetOptions::new().no_ttl())
            .await?
    );
    assert_eq!(cache.ttl("k").await?, Some(Ttl::Eternal));
    assert!(cache.expire_in("k", Some(LONG_TTL)).await?);
    assert!(matches!(cache.ttl("k").await?, Some(Ttl::Remaining(_))));
    assert!(
        !cache
            .set_with("k", &doc(2), SetOptions::new().if_not_exists())
            .await?
    );
    assert_eq!(cache.get("k").await?, Some(doc(1)));
    Ok(())
}

/// `get_many` answers with the caller's keys, without the prefix, leaving out missing ones.
pub async fn get_many_answers_with_the_callers_keys(ctx: Ctx) -> Result<()> {
    let cache = ctx.builder::<Doc>().prefix(ctx.key("p:")).under_test(&ctx);
    cache.set_many([("a", &doc(1)), ("b", &doc(2))]).await?;
    let found = cache.get_many(["a", "missing", "b", "a"]).await?;
    let expected: HashMap<String, Doc> =
        [("a".to_string(), doc(1)), ("b".to_string(), doc(2))].into();
    assert_eq!(found, expected);
    assert!(cache.get_many(Vec::<String>::new()).await?.is_empty());
    Ok(())
}

/// `get_many_vec` answers in the caller's order, `None` in the place of each miss, a key asked
/// twice twice.
pub async fn get_many_vec_answers_in_the_callers_order(ctx: Ctx) -> Result<()> {
    let cache = ctx.builder::<Doc>().prefix(ctx.key("p:")).under_test(&ctx);
    cache.set_many([("a", &doc(1)), ("b", &doc(2))]).await?;
    let found = cache.get_many_vec(["a", "missing", "b", "a"]).await?;
    assert_eq!(found, vec![Some(doc(1)), None, Some(doc(2)), Some(doc(1))]);
    assert_eq!(
        cache.get_many_vec(["missing", "a"]).await?,
        vec![None, Some(doc(1))]
    );
    assert!(cache.get_many_vec(Vec::<String>::new()).await?.is_empty());
    let many: Vec<String> = (0..300).map(|i| format!("k{i}")).collect();
    cache
        .set_many(many.iter().step_by(2).map(|key| (key, doc(7))))
        .await?;
    let answers = cache.get_many_vec(&many).await?;
    assert_eq!(answers.len(), 300);
    for (index, answer) in answers.iter().enumerate() {
        assert_eq!(answer.is_some(), index % 2 == 0, "k{index}");
    }
    Ok(())
}

/// The default CBOR serializer round-trips structured values.
pub async fn cbor_values_round_trip(ctx: Ctx) -> Result<()> {
    let cache = ctx.cache::<Doc>();
    cache.set("k", &doc(7)).await?;
    assert_eq!(cache.get("k").await?, Some(doc(7)));
    let raw = ctx.backend().get(&ctx.key("k")).await?.expect("present");
    assert!(
        raw.first().is_some_and(|b| b >> 5 == 5),
        "not a CBOR map: {raw:?}"
    );
    Ok(())
}

/// The JSON serializer stores plain JSON text that other programs can read and write.
pub async fn json_values_are_plain_json(ctx: Ctx) -> Result<()> {
    let cache = ctx.builder::<Doc>().serializer(Json).under_test(&ctx);
    cache.set("k", &doc(1)).await?;
    let raw = ctx.backend().get(&ctx.key("k")).await?.expect("present");
    let expected =
        r#"{"id":"did:example:1","names":["at://name1.example","🦀 ünïcode"],"version":1}"#;
    assert_eq!(&raw[..], expected.as_bytes());
    let foreign = br#"{ "version": 9, "names": [], "id": "written elsewhere" }"#;
    ctx.backend()
        .set(
            &ctx.key("foreign"),
            Bytes::from_static(foreign),
            None,
            crate::Condition::Always,
        )
        .await?;
    let read = cache.get("foreign").await?.expect("present");
    assert_eq!((read.id.as_str(), read.version), ("written elsewhere", 9));
    Ok(())
}

/// The raw serializer stores bytes untouched.
pub async fn raw_values_pass_through(ctx: Ctx) -> Result<()> {
    let cache = ctx.builder::<Vec<u8>>().serializer(Raw).under_test(&ctx);
    cache.set("k", &vec![0, 1, 255]).await?;
    assert_eq!(
        ctx.backend().get(&ctx.key("k")).await?.as_deref(),
        Some(&[0u8, 1, 255][..])
    );
    assert_eq!(cache.get("k").await?, Some(vec![0, 1, 255]));
    let strings = ctx.builder::<String>().serializer(Raw).under_test(&ctx);
    strings.set("s", &"plain text".to_string()).await?;
    assert_eq!(
        ctx.backend().get(&ctx.key("s")).await?.as_deref(),
        Some(&b"plain text"[..])
    );
    Ok(())
}

/// Typed batches: set_many, get_many, delete_many through the cache.
pub async fn typed_batches_round_trip(ctx: Ctx) -> Result<()> {
    let cache = ctx.cache::<Doc>();
    let items: Vec<(String, Doc)> = (0..100).map(|i| (format!("k{i}"), doc(i))).collect();
    cache
        .set_many_with(
            items.iter().map(|(k, v)| (k, v)),
            SetOptions::new().ttl(LONG_TTL),
        )
        .await?;
    let found = cache.get_many(items.iter().map(|(k, _)| k)).await?;
    assert_eq!(found.len(), 100);
    assert_eq!(found["k42"], doc(42));
    assert_eq!(cache.delete_many(items.iter().map(|(k, _)| k)).await?, 100);
    assert!(
        cache
            .get_many(items.iter().map(|(k, _)| k))
            .await?
            .is_empty()
    );
    Ok(())
}
