//! `take`, `take_many` and the reads that come with the TTL.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{LONG_TTL, SHORT_TTL, bytes, sleep_past_expiry, write_and_let_expire};
use crate::conformance::Ctx;
use crate::{Condition, Error, Result, Ttl};

fn joined<T>(outcome: std::result::Result<T, tokio::task::JoinError>) -> Result<T> {
    outcome.map_err(|error| Error::backend("conformance", "join", None, error))
}

/// `take` returns the value and removes the key, for this handle and for another.
pub async fn take_returns_the_value_and_removes_it(ctx: Ctx) -> Result<()> {
    let (key, other) = (ctx.key("k"), ctx.key("k2"));
    ctx.backend()
        .set(&key, bytes("v"), Some(LONG_TTL), Condition::Always)
        .await?;
    ctx.backend()
        .set(&other, bytes("w"), None, Condition::Always)
        .await?;
    assert_eq!(ctx.backend().take(&key).await?, Some(bytes("v")));
    assert_eq!(ctx.backend().get(&key).await?, None);
    assert_eq!(ctx.peer().get(&key).await?, None);
    assert!(!ctx.peer().contains(&key).await?);
    assert_eq!(ctx.backend().take(&key).await?, None);
    // Its neighbour is untouched.
    assert_eq!(ctx.peer().take(&other).await?, Some(bytes("w")));
    Ok(())
}

/// An absent or expired key is taken as `None`, and an expired one stays absent.
pub async fn take_of_a_missing_or_expired_key_is_none(ctx: Ctx) -> Result<()> {
    let (gone, never) = (ctx.key("gone"), ctx.key("never"));
    assert_eq!(ctx.backend().take(&never).await?, None);
    write_and_let_expire(&ctx, &gone).await?;
    assert_eq!(ctx.backend().take(&gone).await?, None);
    assert_eq!(ctx.backend().get(&gone).await?, None);
    Ok(())
}

/// 64 tasks on two handles take one key at once: exactly one gets the value.
pub async fn take_race_of_64_tasks_has_one_winner(ctx: Ctx) -> Result<()> {
    for round in 0..3 {
        let key = ctx.key(&format!("race{round}"));
        let value = Bytes::from(format!("prize {round}"));
        ctx.backend()
            .set(&key, value.clone(), Some(LONG_TTL), Condition::Always)
            .await?;
        let barrier = Arc::new(tokio::sync::Barrier::new(64));
        let tasks: Vec<_> = (0..64)
            .map(|task| {
                let backend = Arc::clone(if task % 2 == 0 {
                    ctx.backend()
                } else {
                    ctx.peer()
                });
                let (key, barrier) = (key.clone(), Arc::clone(&barrier));
                tokio::spawn(async move {
                    barrier.wait().await;
                    backend.take(&key).await
                })
            })
            .collect();
        let mut winners = Vec::new();
        for task in tasks {
            winners.extend(joined(task.await)??);
        }
        assert_eq!(
            winners,
            vec![value],
            "round {round}: {} takers won",
            winners.len()
        );
        assert_eq!(ctx.backend().get(&key).await?, None);
    }
    Ok(())
}

/// `take_many` answers positionally, takes a key named twice once (at its first position),
/// leaves missing and expired keys `None`, and removes what it took.
pub async fn take_many_takes_each_key_once(ctx: Ctx) -> Result<()> {
    let [a, b, c, missing, expired] = ["a", "b", "c", "missing", "expired"].map(|k| ctx.key(k));
    ctx.backend()
        .set_many(
            vec![
                (a.clone(), bytes("1")),
                (b.clone(), bytes("2")),
                (c.clone(), bytes("")),
            ],
            None,
        )
        .await?;
    write_and_let_expire(&ctx, &expired).await?;
    let asked = [&a, &missing, &b, &a, &expired, &c].map(|key| key.to_string());
    let taken = ctx.backend().take_many(&asked).await?;
    assert_eq!(
        taken,
        vec![
            Some(bytes("1")),
            None,
            Some(bytes("2")),
            None,
            None,
            Some(bytes(""))
        ]
    );
    let left = ctx.peer().get_many(&asked).await?;
    assert!(left.iter().all(Option::is_none), "take_many left {left:?}");
    assert!(ctx.backend().take_many(&[]).await?.is_empty());
    Ok(())
}

/// Eight tasks on two handles take overlapping batches of the same 200 keys at once: every
/// key is taken exactly once in all.
pub async fn take_many_race_takes_each_key_once_in_all(ctx: Ctx) -> Result<()> {
    let keys: Vec<String> = (0..200).map(|i| ctx.key(&format!("k{i}"))).collect();
    ctx.backend()
        .set_many(
            keys.iter()
                .map(|key| (key.clone(), Bytes::from(key.clone())))
                .collect(),
            Some(LONG_TTL),
        )
        .await?;
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let backend = Arc::clone(if task % 2 == 0 {
                ctx.backend()
            } else {
                ctx.peer()
            });
            let mut mine = keys.clone();
            mine.rotate_left(task * 25);
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                let taken = backend.take_many(&mine).await?;
                Ok::<_, Error>(mine.into_iter().zip(taken).collect::<Vec<_>>())
            })
        })
        .collect();
    let mut takers: HashMap<String, usize> = HashMap::new();
    for task in tasks {
        for (key, value) in joined(task.await)?? {
            if let Some(value) = value {
                assert_eq!(
                    value,
                    Bytes::from(key.clone()),
                    "a key was taken with another's value"
                );
                *takers.entry(key).or_default() += 1;
            }
        }
    }
    assert_eq!(takers.len(), keys.len(), "some keys were never taken");
    let twice: Vec<_> = takers.iter().filter(|(_, count)| **count > 1).collect();
    assert!(twice.is_empty(), "keys taken more than once: {twice:?}");
    Ok(())
}

/// `get_with_ttl` reads the value and its expiry together: eternal, remaining, or `None` for a
/// missing or expired key; it changes nothing.
pub async fn get_with_ttl_reads_value_and_expiry(ctx: Ctx) -> Result<()> {
    let [eternal, timed, missing, expired] =
        ["eternal", "timed", "missing", "expired"].map(|k| ctx.key(k));
    ctx.backend()
        .set(&eternal, bytes("e"), None, Condition::Always)
        .await?;
    ctx.backend()
        .set(&timed, bytes("t"), Some(LONG_TTL), Condition::Always)
        .await?;
    write_and_let_expire(&ctx, &expired).await?;
    assert_eq!(
        ctx.backend().get_with_ttl(&eternal).await?,
        Some((bytes("e"), Ttl::Eternal))
    );
    match ctx.peer().get_with_ttl(&timed).await? {
        Some((value, Ttl::Remaining(left))) => {
            assert_eq!(value, bytes("t"));
            assert!(
                left <= LONG_TTL && left > LONG_TTL - Duration::from_secs(60),
                "{left:?}"
            );
        }
        other => panic!("expected a value with a remaining TTL, got {other:?}"),
    }
    assert_eq!(ctx.backend().get_with_ttl(&missing).await?, None);
    assert_eq!(ctx.backend().get_with_ttl(&expired).await?, None);
    assert_eq!(ctx.backend().get(&timed).await?, Some(bytes("t")));
    Ok(())
}

/// `get_many_with_ttl` answers each position with its own value and TTL, duplicates included,
/// and leaves missing and expired keys `None`.
pub async fn get_many_with_ttl_answers_positionally(ctx: Ctx) -> Result<()> {
    let [a, b, missing, expired] = ["a", "b", "missing", "expired"].map(|k| ctx.key(k));
    ctx.backend()
        .set(&a, bytes("1"), None, Condition::Always)
        .await?;
    ctx.backend()
        .set(&expired, bytes("x"), Some(SHORT_TTL), Condition::Always)
        .await?;
    let written = std::time::Instant::now();
    ctx.backend()
        .set(&b, bytes("2"), Some(LONG_TTL), Condition::Always)
        .await?;
    sleep_past_expiry(written, SHORT_TTL).await;
    let asked = [&missing, &b, &a, &expired, &b].map(|key| key.to_string());
    let found = ctx.backend().get_many_with_ttl(&asked).await?;
    assert_eq!(found.len(), asked.len());
    assert_eq!(found[0], None);
    assert_eq!(found[2], Some((bytes("1"), Ttl::Eternal)));
    assert_eq!(found[3], None);
    for position in [1, 4] {
        match &found[position] {
            Some((value, Ttl::Remaining(left))) => {
                assert_eq!(*value, bytes("2"));
                assert!(*left <= LONG_TTL, "{left:?}");
            }
            other => panic!("position {position}: expected b with a TTL, got {other:?}"),
        }
    }
    assert!(ctx.backend().get_many_with_ttl(&[]).await?.is_empty());
    Ok(())
}
