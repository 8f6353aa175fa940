//! Expiry: honoured to the millisecond and seen by every method.

use std::time::{Duration, Instant};

use super::{LONG_TTL, SHORT_TTL, bytes, sleep_past_expiry, write_and_let_expire};
use crate::conformance::Ctx;
use crate::{Condition, Result, Ttl};

const YEAR: Duration = Duration::from_secs(365 * 24 * 3600);

fn remaining(ttl: Option<Ttl>) -> Duration {
    match ttl {
        Some(Ttl::Remaining(left)) => left,
        other => panic!("expected a remaining TTL, got {other:?}"),
    }
}

/// A missing key has no TTL.
pub async fn ttl_of_missing_key_is_none(ctx: Ctx) -> Result<()> {
    assert_eq!(ctx.backend().ttl(&ctx.key("missing")).await?, None);
    Ok(())
}

/// A key written without TTL is eternal.
pub async fn ttl_of_key_without_expiry_is_eternal(ctx: Ctx) -> Result<()> {
    let key = ctx.key("k");
    ctx.backend()
        .set(&key, bytes("v"), None, Condition::Always)
        .await?;
    assert_eq!(ctx.backend().ttl(&key).await?, Some(Ttl::Eternal));
    Ok(())
}

/// The remaining time is reported in milliseconds, not rounded to seconds.
pub async fn ttl_reports_remaining_time_in_milliseconds(ctx: Ctx) -> Result<()> {
    let key = ctx.key("k");
    let before = Instant::now();
    ctx.backend()
        .set(
            &key,
            bytes("v"),
            Some(Duration::from_millis(2_500)),
            Condition::Always,
        )
        .await?;
    let left = remaining(ctx.backend().ttl(&key).await?);
    let elapsed = before.elapsed();
    assert!(
        left <= Duration::from_millis(2_500),
        "{left:?} exceeds the TTL"
    );
    assert!(
        left + elapsed + Duration::from_millis(20) >= Duration::from_millis(2_500),
        "{left:?} after {elapsed:?}"
    );
    Ok(())
}

/// After its TTL, `get` no longer returns the key.
pub async fn expired_key_is_absent_for_get(ctx: Ctx) -> Result<()> {
    let key = ctx.key("k");
    write_and_let_expire(&ctx, &key).await?;
    assert_eq!(ctx.backend().get(&key).await?, None);
    Ok(())
}

/// After its TTL, `get_many` answers `None` for the key.
pub async fn expired_key_is_absent_for_get_many(ctx: Ctx) -> Result<()> {
    let (gone, kept) = (ctx.key("gone"), ctx.key("kept"));
    ctx.backend()
        .set(&kept, bytes("kept"), Some(LONG_TTL), Condition::Always)
        .await?;
    write_and_let_expire(&ctx, &gone).await?;
    let values = ctx.backend().get_many(&[gone, kept]).await?;
    assert_eq!(values, vec![None, Some(bytes("kept"))]);
    Ok(())
}

/// After its TTL, `contains` is false.
pub async fn expired_key_is_absent_for_contains(ctx: Ctx) -> Result<()> {
    let key = ctx.key("k");
    write_and_let_expire(&ctx, &key).await?;
    assert!(!ctx.backend().contains(&key).await?);
    Ok(())
}

/// After its TTL, `ttl` is `None`.
pub async fn expired_key_is_absent_for_ttl(ctx: Ctx) -> Result<()> {
    let key = ctx.key("k");
    write_and_let_expire(&ctx, &key).await?;
    assert_eq!(ctx.backend().ttl(&key).await?, None);
    Ok(())
}

/// Deleting an expired key reports that nothing was there.
pub async fn expired_key_is_absent_for_delete(ctx: Ctx) -> Result<()> {
    let key = ctx.key("k");
    write_and_let_expire(&ctx, &key).await?;
    assert!(!ctx.backend().delete(&key).await?);
    Ok(())
}

/// `delete_many` does not count expired keys.
pub async fn expired_key_is_absent_for_delete_many(ctx: Ctx) -> Result<()> {
    let (gone, kept) = (ctx.key("gone"), ctx.key("kept"));
    ctx.backend()
        .set(&kept, bytes("kept"), None, Condition::Always)
        .await?;
    write_and_let_expire(&ctx, &gone).await?;
    assert_eq!(ctx.backend().delete_many(&[gone, kept]).await?, 1);
    Ok(())
}

/// An expired key counts as absent for an if-not-exists write, which then writes.
pub async fn expired_key_is_absent_for_if_not_exists(ctx: Ctx) -> Result<()> {
    let key = ctx.key("k");
    write_and_let_expire(&ctx, &key).await?;
    assert!(
        ctx.backend()
            .set(&key, bytes("new"), None, Condition::IfNotExists)
            .await?
    );
    assert_eq!(ctx.backend().get(&key).await?, Some(bytes("new")));
    assert_eq!(ctx.backend().ttl(&key).await?, Some(Ttl::Eternal));
    Ok(())
}

/// `expire_in` on an expired key reports it missing and does not revive it.
pub async fn expired_key_is_absent_for_expire_in(ctx: Ctx) -> Result<()> {
    let key = ctx.key("k");
    write_and_let_expire(&ctx, &key).await?;
    assert!(!ctx.backend().expire_in(&key, None).await?);
    assert_eq!(ctx.backend().get(&key).await?, None);
    Ok(())
}

/// Polled every few milliseconds, a key is present until its TTL has passed (give or take the
/// store's millisecond clock) and absent once it passed by [`super::EXPIRY_SLACK`].
pub async fn ttl_is_honoured_to_the_millisecond(ctx: Ctx) -> Result<()> {
    const CLOCK_GRAIN: Duration = Duration::from_millis(2);
    let key = ctx.key("k");
    let ttl = Duration::from_millis(300);
    let before = Instant::now();
    ctx.backend()
        .set(&key, bytes("v"), Some(ttl), Condition::Always)
        .await?;
    let written = Instant::now();
    loop {
        let asked = Instant::now();
        let present = ctx.backend().get(&key).await?.is_some();
        let answered = Instant::now();
        if !present {
            assert!(
                answered + CLOCK_GRAIN >= before + ttl,
                "the key expired early, {:?} after it was written with a {ttl:?} TTL",
                answered - before
            );
            return Ok(());
        }
        assert!(
            asked < written + ttl + super::EXPIRY_SLACK,
            "the key was still present {:?} after it was written with a {ttl:?} TTL",
            asked - written
        );
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
}

/// A TTL below one millisecond still stores the key for a moment: it is not turned into zero
/// (removal) nor into no expiry.
pub async fn sub_millisecond_ttl_is_not_eternal(ctx: Ctx) -> Result<()> {
    let key = ctx.key("k");
    assert!(
        ctx.backend()
            .set(
                &key,
                bytes("v"),
                Some(Duration::from_micros(300)),
                Condition::Always
            )
            .await?
    );
    sleep_past_expiry(Instant::now(), Duration::from_millis(1)).await;
    assert_eq!(ctx.backend().ttl(&key).await?, None);
    Ok(())
}

/// Writing a key again gives it the new TTL.
pub async fn overwrite_resets_the_ttl(ctx: Ctx) -> Result<()> {
    let key = ctx.key("k");
    ctx.backend()
        .set(&key, bytes("v1"), Some(SHORT_TTL), Condition::Always)
        .await?;
    let first_written = Instant::now();
    ctx.backend()
        .set(&key, bytes("v2"), Some(LONG_TTL), Condition::Always)
        .await?;
    sleep_past_expiry(first_written, SHORT_TTL).await;
    assert_eq!(ctx.backend().get(&key).await?, Some(bytes("v2")));
    assert!(remaining(ctx.backend().ttl(&key).await?) > LONG_TTL - Duration::from_secs(60));
    Ok(())
}

/// A plain `set` (no TTL) on a key that had a TTL makes it eternal.
pub async fn plain_set_clears_an_old_ttl(ctx: Ctx) -> Result<()> {
    let key = ctx.key("k");
    ctx.backend()
        .set(&key, bytes("v1"), Some(SHORT_TTL), Condition::Always)
        .await?;
    let first_written = Instant::now();
    ctx.backend()
        .set(&key, bytes("v2"), None, Condition::Always)
        .await?;
    assert_eq!(ctx.backend().ttl(&key).await?, Some(Ttl::Eternal));
    sleep_past_expiry(first_written, SHORT_TTL).await;
    assert_eq!(ctx.backend().get(&key).await?, Some(bytes("v2")));
    Ok(())
}

/// `Duration::ZERO` means already expired: the write leaves the key absent, replacing what was
/// there.
pub async fn zero_ttl_removes_the_key(ctx: Ctx) -> Result<()> {
    let key = ctx.key("k");
    ctx.backend()
        .set(&key, bytes("old"), None, Condition::Always)
        .await?;
    ctx.backend()
        .set(&key, bytes("new"), Some(Duration::ZERO), Condition::Always)
        .await?;
    assert_eq!(ctx.backend().get(&key).await?, None);
    assert!(!ctx.backend().contains(&key).await?);
    assert_eq!(ctx.backend().ttl(&key).await?, None);
    Ok(())
}

/// `set_many` with `Duration::ZERO` leaves every key of the batch absent.
pub async fn zero_ttl_in_set_many_removes_the_keys(ctx: Ctx) -> Result<()> {
    let (a, b) = (ctx.key("a"), ctx.key("b"));
    ctx.backend()
        .set(&a, bytes("old"), None, Condition::Always)
        .await?;
    let entries = vec![(a.clone(), bytes("A")), (b.clone(), bytes("B"))];
    ctx.backend()
        .set_many(entries, Some(Duration::ZERO))
        .await?;
    assert_eq!(ctx.backend().get_many(&[a, b]).await?, vec![None, None]);
    Ok(())
}

/// A 100-year TTL is kept as such, not wrapped or refused.
pub async fn hundred_year_ttl_is_kept(ctx: Ctx) -> Result<()> {
    let key = ctx.key("k");
    ctx.backend()
        .set(&key, bytes("v"), Some(100 * YEAR), Condition::Always)
        .await?;
    assert_eq!(ctx.backend().get(&key).await?, Some(bytes("v")));
    assert!(remaining(ctx.backend().ttl(&key).await?) > 99 * YEAR);
    Ok(())
}

/// `Duration::MAX` clamps to something very long rather than overflowing or failing.
pub async fn huge_ttl_clamps_instead_of_failing(ctx: Ctx) -> Result<()> {
    let key = ctx.key("k");
    ctx.backend()
        .set(&key, bytes("v"), Some(Duration::MAX), Condition::Always)
        .await?;
    assert_eq!(ctx.backend().get(&key).await?, Some(bytes("v")));
    match ctx.backend().ttl(&key).await? {
        Some(Ttl::Eternal) => {}
        Some(Ttl::Remaining(left)) => assert!(left > 100 * YEAR, "{left:?}"),
        None => panic!("the key with a huge TTL is missing"),
    }
    ctx.backend().expire_in(&key, Some(Duration::MAX)).await?;
    assert!(ctx.backend().contains(&key).await?);
    Ok(())
}

/// `expire_in` on a missing key reports `false` and creates nothing.
pub async fn expire_in_on_missing_key_is_false(ctx: Ctx) -> Result<()> {
    let key = ctx.key("missing");
    assert!(!ctx.backend().expire_in(&key, Some(LONG_TTL)).await?);
    assert!(!ctx.backend().expire_in(&key, None).await?);
    assert!(!ctx.backend().contains(&key).await?);
    Ok(())
}

/// `expire_in(Some(d))` gives a present key a new TTL and keeps its value.
pub async fn expire_in_sets_a_new_ttl(ctx: Ctx) -> Result<()> {
    let key = ctx.key("k");
    ctx.backend()
        .set(&key, bytes("v"), None, Condition::Always)
        .await?;
    assert!(ctx.backend().expire_in(&key, Some(SHORT_TTL)).await?);
    let written = Instant::now();
    let left = remaining(ctx.backend().ttl(&key).await?);
    assert!(left <= SHORT_TTL);
    sleep_past_expiry(written, SHORT_TTL).await;
    assert_eq!(ctx.backend().get(&key).await?, None);
    Ok(())
}

/// `expire_in(None)` makes a key eternal.
pub async fn expire_in_none_persists_the_key(ctx: Ctx) -> Result<()> {
    let key = ctx.key("k");
    ctx.backend()
        .set(&key, bytes("v"), Some(SHORT_TTL), Condition::Always)
        .await?;
    let written = Instant::now();
    assert!(ctx.backend().expire_in(&key, None).await?);
    assert_eq!(ctx.backend().ttl(&key).await?, Some(Ttl::Eternal));
    sleep_past_expiry(written, SHORT_TTL).await;
    assert_eq!(ctx.backend().get(&key).await?, Some(bytes("v")));
    // Persisting an eternal key is fine too.
    assert!(ctx.backend().expire_in(&key, None).await?);
    Ok(())
}

/// `expire_in(Some(Duration::ZERO))` removes the key and reports it was there.
pub async fn expire_in_zero_removes_the_key(ctx: Ctx) -> Result<()> {
    let key = ctx.key("k");
    ctx.backend()
        .set(&key, bytes("v"), None, Condition::Always)
        .await?;
    assert!(ctx.backend().expire_in(&key, Some(Duration::ZERO)).await?);
    assert_eq!(ctx.backend().get(&key).await?, None);
    assert!(!ctx.backend().expire_in(&key, Some(Duration::ZERO)).await?);
    Ok(())
}
