//! If-not-exists writes and concurrent writers.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{LONG_TTL, bytes};
use crate::conformance::Ctx;
use crate::{Condition, Error, Result, Ttl};

/// An if-not-exists write of an absent key writes and says so.
pub async fn if_not_exists_writes_an_absent_key(ctx: Ctx) -> Result<()> {
    let key = ctx.key("k");
    assert!(
        ctx.backend()
            .set(&key, bytes("v"), Some(LONG_TTL), Condition::IfNotExists)
            .await?
    );
    assert_eq!(ctx.backend().get(&key).await?, Some(bytes("v")));
    assert!(matches!(
        ctx.backend().ttl(&key).await?,
        Some(Ttl::Remaining(_))
    ));
    Ok(())
}

/// An if-not-exists write of a present key changes neither its value nor its TTL.
pub async fn if_not_exists_keeps_an_existing_value_and_ttl(ctx: Ctx) -> Result<()> {
    let key = ctx.key("k");
    ctx.backend()
        .set(&key, bytes("first"), None, Condition::Always)
        .await?;
    assert!(
        !ctx.backend()
            .set(
                &key,
                bytes("second"),
                Some(Duration::from_millis(50)),
                Condition::IfNotExists
            )
            .await?
    );
    assert_eq!(ctx.backend().get(&key).await?, Some(bytes("first")));
    assert_eq!(ctx.backend().ttl(&key).await?, Some(Ttl::Eternal));
    Ok(())
}

/// 64 tasks race an if-not-exists write of one key: exactly one wins, and its value stays.
pub async fn if_not_exists_race_of_64_tasks_has_one_winner(ctx: Ctx) -> Result<()> {
    for round in 0..3 {
        let key = ctx.key(&format!("race{round}"));
        let barrier = Arc::new(tokio::sync::Barrier::new(64));
        let tasks: Vec<_> = (0..64)
            .map(|task| {
                let (backend, key, barrier) =
                    (Arc::clone(ctx.backend()), key.clone(), Arc::clone(&barrier));
                tokio::spawn(async move {
                    barrier.wait().await;
                    let value = Bytes::from(format!("task {task}"));
                    let won = backend
                        .set(&key, value.clone(), Some(LONG_TTL), Condition::IfNotExists)
                        .await?;
                    Ok::<_, Error>(won.then_some(value))
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            let outcome = task
                .await
                .map_err(|e| Error::backend("conformance", "join", None, e))?;
            winners.extend(outcome?);
        }
        assert_eq!(
            winners.len(),
            1,
            "round {round}: {} tasks won",
            winners.len()
        );
        assert_eq!(ctx.backend().get(&key).await?, Some(winners[0].clone()));
    }
    Ok(())
}

/// An if-not-exists write of an absent key with `Duration::ZERO` reports a write and leaves
/// nothing.
pub async fn if_not_exists_with_zero_ttl_leaves_nothing(ctx: Ctx) -> Result<()> {
    let key = ctx.key("k");
    assert!(
        ctx.backend()
            .set(
                &key,
                bytes("v"),
                Some(Duration::ZERO),
                Condition::IfNotExists,
            )
            .await?,
        "an if-not-exists write of an absent key must report a write, even with a zero TTL"
    );
    assert_eq!(ctx.backend().get(&key).await?, None);
    assert!(!ctx.backend().contains(&key).await?);
    Ok(())
}

/// Writes `first` under `key` with a 10 s TTL: a present key with a TTL to keep.
async fn write_first_for_ten_seconds(ctx: &Ctx, key: &str) -> Result<()> {
    ctx.backend()
        .set(
            key,
            bytes("first"),
            Some(Duration::from_secs(10)),
            Condition::Always,
        )
        .await
        .map(drop)
}

/// An if-not-exists write of a present key with `Duration::ZERO` writes nothing, removes
/// nothing and reports `false`.
pub async fn if_not_exists_with_zero_ttl_spares_a_present_key(ctx: Ctx) -> Result<()> {
    let key = ctx.key("k");
    write_first_for_ten_seconds(&ctx, &key).await?;
    assert!(
        !ctx.backend()
            .set(
                &key,
                bytes("second"),
                Some(Duration::ZERO),
                Condition::IfNotExists
            )
            .await?
    );
    assert_eq!(ctx.backend().get(&key).await?, Some(bytes("first")));
    let left = super::remaining(ctx.backend().ttl(&key).await?);
    assert!(left <= Duration::from_secs(10), "{left:?}");
    Ok(())
}

/// An if-not-exists write of a present key that has a TTL leaves that TTL alone, whatever TTL
/// it asks for.
pub async fn if_not_exists_keeps_the_ttl_of_a_present_key(ctx: Ctx) -> Result<()> {
    let key = ctx.key("k");
    write_first_for_ten_seconds(&ctx, &key).await?;
    for ttl in [None, Some(LONG_TTL), Some(Duration::from_millis(50))] {
        assert!(
            !ctx.backend()
                .set(&key, bytes("second"), ttl, Condition::IfNotExists)
                .await?
        );
        let left = super::remaining(ctx.backend().ttl(&key).await?);
        assert!(
            left <= Duration::from_secs(10) && left > Duration::from_secs(5),
            "an if-not-exists write with {ttl:?} changed the TTL to {left:?}"
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(ctx.backend().get(&key).await?, Some(bytes("first")));
    Ok(())
}

/// An unconditional `set` reports a write on an overwrite and on a rewrite of the same value
/// and TTL (no "rows changed" count as the answer).
pub async fn always_reports_a_write_on_overwrite_and_identical_rewrite(ctx: Ctx) -> Result<()> {
    let key = ctx.key("k");
    for (value, ttl) in [
        ("v", None),
        ("v", None),
        ("w", None),
        ("w", Some(LONG_TTL)),
        ("w", Some(LONG_TTL)),
    ] {
        assert!(
            ctx.backend()
                .set(&key, bytes(value), ttl, Condition::Always)
                .await?,
            "set({value:?}, {ttl:?}) reported no write"
        );
    }
    assert_eq!(ctx.backend().get(&key).await?, Some(bytes("w")));
    Ok(())
}

/// 32 tasks writing 50 keys each, concurrently: every write is there afterwards.
pub async fn concurrent_writers_of_distinct_keys_lose_nothing(ctx: Ctx) -> Result<()> {
    let tasks: Vec<_> = (0..32)
        .map(|task| {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                for i in 0..50 {
                    let key = ctx.key(&format!("t{task}:k{i}"));
                    ctx.backend()
                        .set(
                            &key,
                            Bytes::from(format!("{task}/{i}")),
                            None,
                            Condition::Always,
                        )
                        .await?;
                }
                Ok::<_, Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await
            .map_err(|e| Error::backend("conformance", "join", None, e))??;
    }
    let keys: Vec<String> = (0..32)
        .flat_map(|task| (0..50).map(move |i| (task, i)))
        .map(|(task, i)| ctx.key(&format!("t{task}:k{i}")))
        .collect();
    let values = ctx.backend().get_many(&keys).await?;
    for (n, value) in values.into_iter().enumerate() {
        assert_eq!(value, Some(Bytes::from(format!("{}/{}", n / 50, n % 50))));
    }
    Ok(())
}
