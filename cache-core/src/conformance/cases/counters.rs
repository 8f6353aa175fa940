//! Counters: `incr`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{LONG_TTL, SHORT_TTL, YEAR, bytes, remaining, sleep_past_expiry};
use crate::conformance::Ctx;
use crate::{Condition, Error, Result, Ttl};

/// A new counter starts from 0; each `incr` returns the new sum, negative deltas and 0
/// included; the stored form is the decimal ASCII of the value, readable by any client.
pub async fn incr_returns_each_sum_and_stores_decimal_text(ctx: Ctx) -> Result<()> {
    let key = ctx.key("n");
    assert_eq!(ctx.backend().incr(&key, 5, None).await?, 5);
    assert_eq!(ctx.peer().incr(&key, -7, None).await?, -2);
    assert_eq!(ctx.backend().incr(&key, 0, None).await?, -2);
    assert_eq!(ctx.peer().get(&key).await?, Some(bytes("-2")));
    assert_eq!(
        ctx.backend().incr(&key, 1_000_000_007, None).await?,
        1_000_000_005
    );
    assert_eq!(ctx.backend().get(&key).await?, Some(bytes("1000000005")));
    // A counter another client wrote as text counts on.
    let written = ctx.key("written");
    ctx.backend()
        .set(&written, bytes("41"), None, Condition::Always)
        .await?;
    assert_eq!(ctx.peer().incr(&written, 1, None).await?, 42);
    Ok(())
}

/// 64 tasks on two handles add to one counter at once: the sum is exact and every task saw a
/// different value.
pub async fn incr_from_64_tasks_sums_exactly(ctx: Ctx) -> Result<()> {
    let key = ctx.key("n");
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
                let mut seen = Vec::new();
                for _ in 0..10 {
                    seen.push(backend.incr(&key, 1, Some(LONG_TTL)).await?);
                }
                Ok::<_, Error>(seen)
            })
        })
        .collect();
    let mut seen = HashSet::new();
    for task in tasks {
        let values = task
            .await
            .map_err(|error| Error::backend("conformance", "join", None, error))??;
        for value in values {
            assert!(seen.insert(value), "two increments both answered {value}");
        }
    }
    assert_eq!(seen, (1..=640).collect::<HashSet<i64>>());
    assert_eq!(ctx.backend().get(&key).await?, Some(bytes("640")));
    Ok(())
}

/// The TTL applies when the counter is created; later increments keep it, whatever TTL they
/// pass, and an eternal counter stays eternal.
pub async fn incr_ttl_is_set_at_creation_and_kept(ctx: Ctx) -> Result<()> {
    let (timed, eternal) = (ctx.key("timed"), ctx.key("eternal"));
    let ttl = Duration::from_secs(120);
    ctx.backend().incr(&timed, 1, Some(ttl)).await?;
    let first = remaining(ctx.backend().ttl(&timed).await?);
    assert!(first <= ttl, "{first:?}");
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(ctx.peer().incr(&timed, 1, Some(YEAR)).await?, 2);
    assert_eq!(ctx.backend().incr(&timed, 1, None).await?, 3);
    let later = remaining(ctx.backend().ttl(&timed).await?);
    assert!(
        later <= first,
        "an increment moved the expiry from {first:?} to {later:?}"
    );
    ctx.backend().incr(&eternal, 1, None).await?;
    ctx.backend().incr(&eternal, 1, Some(LONG_TTL)).await?;
    assert_eq!(ctx.backend().ttl(&eternal).await?, Some(Ttl::Eternal));
    Ok(())
}

/// A counter that expired is absent: the next `incr` starts again from 0 with its own TTL.
pub async fn incr_on_an_expired_counter_starts_again(ctx: Ctx) -> Result<()> {
    let key = ctx.key("window");
    assert_eq!(ctx.backend().incr(&key, 5, Some(SHORT_TTL)).await?, 5);
    sleep_past_expiry(Instant::now(), SHORT_TTL).await;
    assert_eq!(ctx.peer().incr(&key, 1, None).await?, 1);
    assert_eq!(ctx.backend().ttl(&key).await?, Some(Ttl::Eternal));
    Ok(())
}

/// A value that is not a counter is [`Error::NotACounter`] naming the key, and stays as it was
/// with its TTL.
pub async fn incr_refuses_a_value_that_is_not_a_counter(ctx: Ctx) -> Result<()> {
    let cbor = Bytes::from(vec![0xa1, 0x61, 0x61, 0x01]);
    for (n, value) in [bytes("abc"), bytes("1.5"), bytes(""), bytes(" 7"), cbor]
        .into_iter()
        .enumerate()
    {
        let key = ctx.key(&format!("k{n}"));
        ctx.backend()
            .set(&key, value.clone(), Some(LONG_TTL), Condition::Always)
            .await?;
        match ctx.backend().incr(&key, 1, None).await {
            Err(Error::NotACounter { key: named, .. }) => assert_eq!(named, key),
            Err(error @ Error::Unsupported { .. }) => return Err(error),
            other => panic!("incr of {value:?} answered {other:?}"),
        }
        assert_eq!(ctx.peer().get(&key).await?, Some(value));
        assert!(matches!(
            ctx.backend().ttl(&key).await?,
            Some(Ttl::Remaining(_))
        ));
    }
    Ok(())
}

/// A sum past `i64` is [`Error::NotACounter`], never a wrapped number; the counter keeps its
/// value and counts on in range.
pub async fn incr_overflow_is_refused(ctx: Ctx) -> Result<()> {
    let (high, low) = (ctx.key("high"), ctx.key("low"));
    assert_eq!(ctx.backend().incr(&high, i64::MAX, None).await?, i64::MAX);
    assert!(matches!(
        ctx.backend().incr(&high, 1, None).await,
        Err(Error::NotACounter { .. })
    ));
    assert_eq!(
        ctx.peer().get(&high).await?,
        Some(Bytes::from(i64::MAX.to_string()))
    );
    assert_eq!(ctx.backend().incr(&high, -1, None).await?, i64::MAX - 1);
    assert_eq!(ctx.backend().incr(&low, i64::MIN, None).await?, i64::MIN);
    assert!(matches!(
        ctx.backend().incr(&low, -1, None).await,
        Err(Error::NotACounter { .. })
    ));
    Ok(())
}
