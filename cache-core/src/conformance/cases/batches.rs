//! Batch reads and writes, deletes and presence.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;

use super::{LONG_TTL, bytes};
use crate::conformance::Ctx;
use crate::{Condition, Result, Ttl};

fn keys(ctx: &Ctx, names: &[&str]) -> Vec<String> {
    names.iter().map(|name| ctx.key(name)).collect()
}

/// `get_many(&[])` answers `[]`.
pub async fn get_many_of_zero_keys_is_empty(ctx: Ctx) -> Result<()> {
    assert!(ctx.backend().get_many(&[]).await?.is_empty());
    Ok(())
}

/// Missing keys answer `None` at their position.
pub async fn get_many_omits_missing_keys(ctx: Ctx) -> Result<()> {
    ctx.backend()
        .set(&ctx.key("b"), bytes("B"), None, Condition::Always)
        .await?;
    let values = ctx
        .backend()
        .get_many(&keys(&ctx, &["a", "b", "c"]))
        .await?;
    assert_eq!(values, vec![None, Some(bytes("B")), None]);
    Ok(())
}

/// A key asked twice is answered twice.
pub async fn get_many_answers_duplicates(ctx: Ctx) -> Result<()> {
    ctx.backend()
        .set(&ctx.key("a"), bytes("A"), None, Condition::Always)
        .await?;
    let values = ctx
        .backend()
        .get_many(&keys(&ctx, &["a", "x", "a", "a"]))
        .await?;
    assert_eq!(
        values,
        vec![Some(bytes("A")), None, Some(bytes("A")), Some(bytes("A"))]
    );
    Ok(())
}

/// 20,000 keys in one call work: no parameter limit of the store leaks out.
pub async fn get_many_of_20000_keys(ctx: Ctx) -> Result<()> {
    let entries: Vec<(String, Bytes)> = (0..20_000)
        .filter(|i| i % 3 != 0)
        .map(|i| (ctx.key(&format!("k{i}")), Bytes::from(format!("v{i}"))))
        .collect();
    ctx.backend().set_many(entries, Some(LONG_TTL)).await?;
    let all: Vec<String> = (0..20_000).map(|i| ctx.key(&format!("k{i}"))).collect();
    let values = ctx.backend().get_many(&all).await?;
    assert_eq!(values.len(), 20_000);
    for (i, value) in values.into_iter().enumerate() {
        let expected = (i % 3 != 0).then(|| Bytes::from(format!("v{i}")));
        assert_eq!(value, expected, "key k{i}");
    }
    assert_eq!(ctx.backend().delete_many(&all).await?, 20_000 - 6_667);
    Ok(())
}

/// `set_many` of nothing writes nothing and does not fail.
pub async fn set_many_of_zero_items_is_fine(ctx: Ctx) -> Result<()> {
    ctx.backend().set_many(Vec::new(), None).await?;
    ctx.backend().set_many(Vec::new(), Some(LONG_TTL)).await?;
    assert_eq!(ctx.backend().clear_prefix(ctx.prefix()).await?, 0);
    Ok(())
}

/// What `set_many` writes, `get_many` reads, over existing and new keys.
pub async fn set_many_then_get_many_round_trips(ctx: Ctx) -> Result<()> {
    ctx.backend()
        .set(&ctx.key("a"), bytes("old"), None, Condition::Always)
        .await?;
    let entries = vec![
        (ctx.key("a"), bytes("A")),
        (ctx.key("b"), Bytes::new()),
        (ctx.key("c"), Bytes::from_static(&[0, 159, 146, 150])),
    ];
    ctx.backend().set_many(entries.clone(), None).await?;
    let values = ctx
        .backend()
        .get_many(&keys(&ctx, &["a", "b", "c"]))
        .await?;
    let expected: Vec<Option<Bytes>> = entries.into_iter().map(|(_, v)| Some(v)).collect();
    assert_eq!(values, expected);
    Ok(())
}

/// When a batch names a key twice, its last value wins.
pub async fn set_many_last_duplicate_wins(ctx: Ctx) -> Result<()> {
    let entries = vec![
        (ctx.key("a"), bytes("first")),
        (ctx.key("b"), bytes("B")),
        (ctx.key("a"), bytes("last")),
    ];
    ctx.backend().set_many(entries, None).await?;
    assert_eq!(ctx.backend().get(&ctx.key("a")).await?, Some(bytes("last")));
    Ok(())
}

/// A reader running `get_many` while batches are written sees whole batches only. The keys share
/// a `{…}` hash tag so that sharded stores keep them on one shard, where atomicity is defined.
pub async fn set_many_is_atomic_for_readers(ctx: Ctx) -> Result<()> {
    const KEYS: usize = 200;
    const ROUNDS: usize = 30;
    let names: Vec<String> = (0..KEYS)
        .map(|i| ctx.key(&format!("{{atomic}}:{i}")))
        .collect();
    let done = Arc::new(AtomicBool::new(false));
    let reader = tokio::spawn(super::atomicity::read_whole_batches(
        Arc::clone(ctx.peer()),
        names.clone(),
        Arc::clone(&done),
    ));
    for round in 0..ROUNDS {
        let value = Bytes::from(format!("round {round}"));
        let entries = names
            .iter()
            .map(|key| (key.clone(), value.clone()))
            .collect();
        ctx.backend().set_many(entries, None).await?;
        tokio::task::yield_now().await;
    }
    done.store(true, Ordering::Release);
    super::atomicity::joined(reader).await.map(drop)
}

/// Every key of a `set_many` with a TTL gets that TTL.
pub async fn set_many_applies_the_ttl_to_every_key(ctx: Ctx) -> Result<()> {
    let entries = (0..50)
        .map(|i| (ctx.key(&format!("k{i}")), bytes("v")))
        .collect();
    ctx.backend()
        .set_many(entries, Some(Duration::from_secs(120)))
        .await?;
    for i in 0..50 {
        match ctx.backend().ttl(&ctx.key(&format!("k{i}"))).await? {
            Some(Ttl::Remaining(left)) => {
                assert!(left > Duration::from_secs(100) && left <= Duration::from_secs(120))
            }
            other => panic!("key k{i} has ttl {other:?}, expected about 120 s"),
        }
    }
    Ok(())
}

/// `delete` says whether there was something to delete.
pub async fn delete_reports_whether_the_key_existed(ctx: Ctx) -> Result<()> {
    let key = ctx.key("k");
    assert!(!ctx.backend().delete(&key).await?);
    ctx.backend()
        .set(&key, bytes("v"), None, Condition::Always)
        .await?;
    assert!(ctx.backend().delete(&key).await?);
    assert!(!ctx.backend().delete(&key).await?);
    assert_eq!(ctx.backend().get(&key).await?, None);
    Ok(())
}

/// `delete_many` counts the distinct keys it removed: not missing ones, not duplicates.
pub async fn delete_many_counts_exactly(ctx: Ctx) -> Result<()> {
    let entries = ["a", "b", "c"]
        .iter()
        .map(|n| (ctx.key(n), bytes(n)))
        .collect();
    ctx.backend().set_many(entries, None).await?;
    let doomed = keys(&ctx, &["a", "b", "missing", "a", "b"]);
    assert_eq!(ctx.backend().delete_many(&doomed).await?, 2);
    assert_eq!(ctx.backend().delete_many(&doomed).await?, 0);
    assert_eq!(ctx.backend().get(&ctx.key("c")).await?, Some(bytes("c")));
    Ok(())
}

/// `delete_many(&[])` removes nothing.
pub async fn delete_many_of_zero_keys_is_zero(ctx: Ctx) -> Result<()> {
    ctx.backend()
        .set(&ctx.key("a"), bytes("A"), None, Condition::Always)
        .await?;
    assert_eq!(ctx.backend().delete_many(&[]).await?, 0);
    assert!(ctx.backend().contains(&ctx.key("a")).await?);
    Ok(())
}

/// `contains` follows writes and deletes.
pub async fn contains_reports_presence(ctx: Ctx) -> Result<()> {
    let key = ctx.key("k");
    assert!(!ctx.backend().contains(&key).await?);
    ctx.backend()
        .set(&key, bytes("v"), None, Condition::Always)
        .await?;
    assert!(ctx.backend().contains(&key).await?);
    ctx.backend().delete(&key).await?;
    assert!(!ctx.backend().contains(&key).await?);
    Ok(())
}
