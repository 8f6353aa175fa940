//! Bytes that are not a `V` give a typed error naming the key, and the cache keeps working.

use bytes::Bytes;

use super::{Doc, doc};
use crate::conformance::{Ctx, UnderTest};
use crate::{Condition, DecodePolicy, Error, Json, Result};

async fn plant(ctx: &Ctx, name: &str, garbage: &'static [u8]) -> Result<()> {
    ctx.backend()
        .set(
            &ctx.key(name),
            Bytes::from_static(garbage),
            None,
            Condition::Always,
        )
        .await
        .map(drop)
}

/// `get` of corrupt bytes is `Error::Decode` with the caller's key.
pub async fn corrupt_bytes_give_decode_error_naming_the_key(ctx: Ctx) -> Result<()> {
    let cache = ctx.cache::<Doc>();
    plant(&ctx, "bad", b"\xff\x00\x13garbage").await?;
    match cache.get("bad").await {
        Err(Error::Decode { key, .. }) => assert_eq!(key, "bad"),
        other => panic!("expected Error::Decode, got {other:?}"),
    }
    cache.set("good", &doc(1)).await?;
    assert_eq!(cache.get("good").await?, Some(doc(1)));
    // Overwriting the corrupt entry repairs it.
    cache.set("bad", &doc(2)).await?;
    assert_eq!(cache.get("bad").await?, Some(doc(2)));
    Ok(())
}

/// One corrupt entry makes `get_many` fail with `Error::Decode` naming it, never a wrong answer.
pub async fn corrupt_bytes_in_get_many_give_decode_error(ctx: Ctx) -> Result<()> {
    let cache = ctx.builder::<Doc>().serializer(Json).under_test(&ctx);
    cache.set("a", &doc(1)).await?;
    plant(&ctx, "b", b"{\"id\": ").await?;
    match cache.get_many(["a", "b"]).await {
        Err(Error::Decode { key, .. }) => assert_eq!(key, "b"),
        other => panic!("expected Error::Decode, got {other:?}"),
    }
    assert_eq!(cache.get_many(["a"]).await?.len(), 1);
    Ok(())
}

/// Valid CBOR of another shape is a decode error for `get`; by default the loading verbs treat
/// it as a miss, load the value again and overwrite the entry, so a change of `V` heals itself.
pub async fn wrong_type_gives_decode_error_and_loading_heals_it(ctx: Ctx) -> Result<()> {
    let numbers = ctx.cache::<Vec<u64>>();
    numbers.set("k", &vec![1, 2, 3]).await?;
    let docs = ctx.cache::<Doc>();
    assert!(matches!(docs.get("k").await, Err(Error::Decode { .. })));
    let loaded = docs
        .get_or_insert_with("k", || async { Ok::<_, Error>(doc(5)) })
        .await?;
    assert_eq!(loaded, doc(5));
    assert_eq!(docs.get("k").await?, Some(doc(5)));
    assert!(matches!(numbers.get("k").await, Err(Error::Decode { .. })));
    Ok(())
}

/// With [`DecodePolicy::Fail`] the loading verbs report an entry that does not decode and leave
/// it alone, instead of overwriting it.
pub async fn decode_policy_fail_keeps_loading_verbs_strict(ctx: Ctx) -> Result<()> {
    let numbers = ctx.cache::<Vec<u64>>();
    numbers.set("k", &vec![1, 2, 3]).await?;
    let docs = ctx
        .builder::<Doc>()
        .decode_policy(DecodePolicy::Fail)
        .under_test(&ctx);
    let loaded = docs
        .get_or_insert_with("k", || async { Ok::<_, Error>(doc(5)) })
        .await;
    assert!(matches!(loaded, Err(Error::Decode { .. })), "{loaded:?}");
    assert_eq!(numbers.get("k").await?, Some(vec![1, 2, 3]));
    Ok(())
}

/// With [`DecodePolicy::Miss`] `get_many` leaves out an entry that does not decode and answers
/// the rest; `get` still names the key in `Error::Decode`.
pub async fn decode_policy_miss_leaves_undecodable_entries_out_of_batches(ctx: Ctx) -> Result<()> {
    let cache = ctx
        .builder::<Doc>()
        .serializer(Json)
        .decode_policy(DecodePolicy::Miss)
        .under_test(&ctx);
    cache.set("a", &doc(1)).await?;
    cache.set("c", &doc(3)).await?;
    plant(&ctx, "b", b"{\"id\": ").await?;
    let found = cache.get_many(["a", "b", "c"]).await?;
    assert_eq!(found.len(), 2);
    assert_eq!(found.get("a"), Some(&doc(1)));
    assert_eq!(found.get("c"), Some(&doc(3)));
    assert!(matches!(cache.get("b").await, Err(Error::Decode { key, .. }) if key == "b"));
    Ok(())
}

/// `get_many_vec` keeps every answer in its place: under [`DecodePolicy::Miss`] an entry that
/// does not decode is `None` where it was asked, and without it the call fails naming the key.
pub async fn get_many_vec_keeps_places_when_an_entry_does_not_decode(ctx: Ctx) -> Result<()> {
    let lenient = ctx
        .builder::<Doc>()
        .serializer(Json)
        .decode_policy(DecodePolicy::Miss)
        .under_test(&ctx);
    lenient.set("a", &doc(1)).await?;
    lenient.set("c", &doc(3)).await?;
    plant(&ctx, "b", b"{\"id\": ").await?;
    let found = lenient
        .get_many_vec(["a", "b", "missing", "c", "b"])
        .await?;
    assert_eq!(found, vec![Some(doc(1)), None, None, Some(doc(3)), None]);
    let strict = ctx.builder::<Doc>().serializer(Json).under_test(&ctx);
    match strict.get_many_vec(["a", "b"]).await {
        Err(Error::Decode { key, .. }) => assert_eq!(key, "b"),
        other => panic!("expected Error::Decode, got {other:?}"),
    }
    Ok(())
}
