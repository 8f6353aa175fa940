//! Leases: one holder among every handle, expiry takeover, token-checked renew and release.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::LONG_TTL;
use crate::Result;
use crate::conformance::Ctx;

/// How long a case waits for an expired lease to be taken over before calling it immortal.
const TAKEOVER_DEADLINE: Duration = Duration::from_secs(10);

/// Acquires `key` for `token`, trying every 20 ms until it works: `true` once it did within
/// [`TAKEOVER_DEADLINE`].
async fn acquire_within_deadline(
    backend: &Arc<dyn crate::Backend>,
    key: &str,
    token: &str,
) -> Result<bool> {
    let deadline = Instant::now() + TAKEOVER_DEADLINE;
    while Instant::now() < deadline {
        if backend.acquire_lease(key, token, LONG_TTL).await? {
            return Ok(true);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(false)
}

/// 64 contenders, half on each handle, ask for one lease at once: exactly one gets it. Once
/// it is released, the next asker gets it.
pub async fn lease_goes_to_one_of_64_contenders_on_two_handles(ctx: Ctx) -> Result<()> {
    let key = ctx.key("lease");
    let barrier = Arc::new(tokio::sync::Barrier::new(64));
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let backend = if i % 2 == 0 {
                Arc::clone(ctx.backend())
            } else {
                Arc::clone(ctx.peer())
            };
            let (key, barrier) = (key.clone(), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                let token = format!("holder-{i}");
                let won = backend.acquire_lease(&key, &token, LONG_TTL).await?;
                Result::Ok(won.then_some(token))
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        let outcome = task
            .await
            .map_err(|error| crate::Error::backend("conformance", "join", None, error))??;
        winners.extend(outcome);
    }
    assert_eq!(winners.len(), 1, "holders of one lease: {winners:?}");
    let holder = &winners[0];
    assert!(!ctx.peer().acquire_lease(&key, "late", LONG_TTL).await?);
    assert!(ctx.backend().release_lease(&key, holder).await?);
    assert!(
        !ctx.backend().release_lease(&key, holder).await?,
        "a lease is released once"
    );
    assert!(ctx.peer().acquire_lease(&key, "next", LONG_TTL).await?);
    Ok(())
}

/// A lease nobody renews expires, and another holder takes it over.
pub async fn expired_lease_is_taken_over(ctx: Ctx) -> Result<()> {
    let key = ctx.key("lease");
    assert!(
        ctx.backend()
            .acquire_lease(&key, "crashed", Duration::from_millis(300))
            .await?
    );
    assert!(
        acquire_within_deadline(ctx.peer(), &key, "next").await?,
        "a 300 ms lease was still held after {TAKEOVER_DEADLINE:?}"
    );
    assert!(!ctx.backend().acquire_lease(&key, "third", LONG_TTL).await?);
    Ok(())
}

/// A holder whose lease expired and was taken over can neither release nor renew the new
/// holder's lease; the new holder can.
pub async fn expired_holder_cannot_release_or_renew_the_next_lease(ctx: Ctx) -> Result<()> {
    let key = ctx.key("lease");
    assert!(
        ctx.backend()
            .acquire_lease(&key, "old", Duration::from_millis(200))
            .await?
    );
    assert!(acquire_within_deadline(ctx.peer(), &key, "new").await?);
    assert!(
        !ctx.backend().release_lease(&key, "old").await?,
        "the old holder released the new holder's lease"
    );
    assert!(
        !ctx.backend().renew_lease(&key, "old", LONG_TTL).await?,
        "the old holder renewed the new holder's lease"
    );
    assert!(
        !ctx.backend().acquire_lease(&key, "third", LONG_TTL).await?,
        "the new holder lost its lease"
    );
    assert!(ctx.peer().renew_lease(&key, "new", LONG_TTL).await?);
    assert!(ctx.backend().release_lease(&key, "new").await?);
    assert!(!ctx.backend().contains(&key).await?);
    assert!(
        !ctx.backend()
            .release_lease(&ctx.key("never"), "new")
            .await?
    );
    assert!(
        !ctx.backend()
            .renew_lease(&ctx.key("never"), "new", LONG_TTL)
            .await?
    );
    Ok(())
}

/// A renewed lease lives past its first TTL, for the TTL of the renewal.
pub async fn renewed_lease_outlives_its_first_ttl(ctx: Ctx) -> Result<()> {
    const FIRST: Duration = Duration::from_millis(1_500);
    let key = ctx.key("lease");
    let taken = Instant::now();
    assert!(ctx.backend().acquire_lease(&key, "holder", FIRST).await?);
    let renewed = ctx.peer().renew_lease(&key, "holder", LONG_TTL).await?;
    if taken.elapsed() >= FIRST {
        // Too slow a machine to tell: the lease may have expired before the renewal.
        return Ok(());
    }
    assert!(renewed, "a live lease was not renewed");
    tokio::time::sleep(FIRST + Duration::from_millis(300)).await;
    assert!(
        !ctx.peer().acquire_lease(&key, "other", LONG_TTL).await?,
        "the renewed lease expired with its first TTL"
    );
    match ctx.backend().ttl(&key).await? {
        Some(crate::Ttl::Remaining(left)) => assert!(left > FIRST, "{left:?} left"),
        other => panic!("a renewed lease has {other:?}"),
    }
    Ok(())
}
