//! Every TTL rule on every write path that a store implements apart: `set_many`, conditional
//! `set` and `expire_in` (plain `set` is the `ttl` group's).

use std::time::{Duration, Instant};

use super::{
    LONG_TTL, SHORT_TTL, YEAR, bytes, expires_on_time, has_a_huge_ttl, has_a_short_ttl,
    sleep_past_expiry,
};
use crate::conformance::Ctx;
use crate::{Condition, Result, Ttl};

/// A key written by `set_many` with a TTL expires on time, like one written by `set`.
pub async fn set_many_ttl_is_honoured_to_the_millisecond(ctx: Ctx) -> Result<()> {
    let (key, other) = (ctx.key("k"), ctx.key("other"));
    let ttl = Duration::from_millis(300);
    expires_on_time(&ctx, &key, ttl, || async {
        let entries = vec![(key.clone(), bytes("v")), (other.clone(), bytes("w"))];
        ctx.backend().set_many(entries, Some(ttl)).await
    })
    .await?;
    sleep_past_expiry(Instant::now(), Duration::ZERO).await;
    assert_eq!(
        ctx.backend().get_many(&[key, other]).await?,
        vec![None, None]
    );
    Ok(())
}

/// `set_many` without a TTL makes keys that had one eternal (an upsert replaces the expiry
/// too, not only the value).
pub async fn set_many_without_ttl_clears_old_ttls(ctx: Ctx) -> Result<()> {
    let (a, b) = (ctx.key("a"), ctx.key("b"));
    for key in [&a, &b] {
        ctx.backend()
            .set(key, bytes("old"), Some(SHORT_TTL), Condition::Always)
            .await?;
    }
    let first_written = Instant::now();
    let entries = vec![(a.clone(), bytes("A")), (b.clone(), bytes("B"))];
    ctx.backend().set_many(entries, None).await?;
    assert_eq!(ctx.backend().ttl(&a).await?, Some(Ttl::Eternal));
    assert_eq!(ctx.backend().ttl(&b).await?, Some(Ttl::Eternal));
    sleep_past_expiry(first_written, SHORT_TTL).await;
    assert_eq!(
        ctx.backend().get_many(&[a, b]).await?,
        vec![Some(bytes("A")), Some(bytes("B"))]
    );
    Ok(())
}

/// `set_many` with a TTL gives it to keys that had none.
pub async fn set_many_with_a_ttl_replaces_no_expiry(ctx: Ctx) -> Result<()> {
    let key = ctx.key("k");
    ctx.backend()
        .set(&key, bytes("old"), None, Condition::Always)
        .await?;
    let before = Instant::now();
    ctx.backend()
        .set_many(vec![(key.clone(), bytes("new"))], Some(SHORT_TTL))
        .await?;
    let written = Instant::now();
    has_a_short_ttl(&ctx, &key, before, SHORT_TTL).await?;
    sleep_past_expiry(written, SHORT_TTL).await;
    assert_eq!(ctx.backend().get(&key).await?, None);
    Ok(())
}

/// `set_many` keeps 100-year TTLs and clamps `Duration::MAX`.
pub async fn set_many_huge_ttls_clamp(ctx: Ctx) -> Result<()> {
    let (max, century) = (ctx.key("max"), ctx.key("century"));
    ctx.backend()
        .set_many(vec![(max.clone(), bytes("v"))], Some(Duration::MAX))
        .await?;
    has_a_huge_ttl(&ctx, &max, 100 * YEAR).await?;
    ctx.backend()
        .set_many(vec![(century.clone(), bytes("v"))], Some(100 * YEAR))
        .await?;
    has_a_huge_ttl(&ctx, &century, 99 * YEAR).await
}

/// A `set_many` TTL below one millisecond is not turned into no expiry.
pub async fn set_many_sub_millisecond_ttl_is_not_eternal(ctx: Ctx) -> Result<()> {
    let key = ctx.key("k");
    ctx.backend()
        .set_many(
            vec![(key.clone(), bytes("v"))],
            Some(Duration::from_micros(300)),
        )
        .await?;
    sleep_past_expiry(Instant::now(), Duration::from_millis(1)).await;
    assert_eq!(ctx.backend().get_many(&[key]).await?, vec![None]);
    Ok(())
}

/// An if-not-exists write of an absent key with a TTL expires on time.
pub async fn if_not_exists_ttl_is_honoured_to_the_millisecond(ctx: Ctx) -> Result<()> {
    let key = ctx.key("k");
    let ttl = Duration::from_millis(300);
    expires_on_time(&ctx, &key, ttl, || async {
        let written = ctx
            .backend()
            .set(&key, bytes("v"), Some(ttl), Condition::IfNotExists)
            .await?;
        assert!(
            written,
            "an if-not-exists write of an absent key did not write"
        );
        Ok(())
    })
    .await
}

/// An if-not-exists write keeps 100-year TTLs and clamps `Duration::MAX`.
pub async fn if_not_exists_huge_ttls_clamp(ctx: Ctx) -> Result<()> {
    let (max, century) = (ctx.key("max"), ctx.key("century"));
    for (key, ttl) in [(&max, Duration::MAX), (&century, 100 * YEAR)] {
        assert!(
            ctx.backend()
                .set(key, bytes("v"), Some(ttl), Condition::IfNotExists)
                .await?
        );
    }
    has_a_huge_ttl(&ctx, &max, 100 * YEAR).await?;
    has_a_huge_ttl(&ctx, &century, 99 * YEAR).await
}

/// An if-not-exists TTL below one millisecond is not turned into no expiry.
pub async fn if_not_exists_sub_millisecond_ttl_is_not_eternal(ctx: Ctx) -> Result<()> {
    let key = ctx.key("k");
    ctx.backend()
        .set(
            &key,
            bytes("v"),
            Some(Duration::from_micros(300)),
            Condition::IfNotExists,
        )
        .await?;
    sleep_past_expiry(Instant::now(), Duration::from_millis(1)).await;
    assert_eq!(ctx.backend().get(&key).await?, None);
    Ok(())
}

/// A key given a TTL by `expire_in` expires on time.
pub async fn expire_in_is_honoured_to_the_millisecond(ctx: Ctx) -> Result<()> {
    let key = ctx.key("k");
    ctx.backend()
        .set(&key, bytes("v"), None, Condition::Always)
        .await?;
    let ttl = Duration::from_millis(300);
    expires_on_time(&ctx, &key, ttl, || async {
        assert!(ctx.backend().expire_in(&key, Some(ttl)).await?);
        Ok(())
    })
    .await
}

/// `expire_in` keeps 100-year TTLs and clamps `Duration::MAX`.
pub async fn expire_in_huge_ttls_clamp(ctx: Ctx) -> Result<()> {
    let (max, century) = (ctx.key("max"), ctx.key("century"));
    for (key, ttl) in [(&max, Duration::MAX), (&century, 100 * YEAR)] {
        ctx.backend()
            .set(key, bytes("v"), Some(LONG_TTL), Condition::Always)
            .await?;
        assert!(ctx.backend().expire_in(key, Some(ttl)).await?);
    }
    has_a_huge_ttl(&ctx, &max, 100 * YEAR).await?;
    has_a_huge_ttl(&ctx, &century, 99 * YEAR).await
}

/// An `expire_in` TTL below one millisecond is not turned into no expiry.
pub async fn expire_in_sub_millisecond_ttl_is_not_eternal(ctx: Ctx) -> Result<()> {
    let key = ctx.key("k");
    ctx.backend()
        .set(&key, bytes("v"), None, Condition::Always)
        .await?;
    assert!(
        ctx.backend()
            .expire_in(&key, Some(Duration::from_micros(300)))
            .await?
    );
    sleep_past_expiry(Instant::now(), Duration::from_millis(1)).await;
    assert_eq!(ctx.backend().get(&key).await?, None);
    Ok(())
}
