//! The one case that needs more than a store: the server behind it goes away and comes back.
//!
//! A store that talks to a server runs it from its own tests with a hook that can take that
//! server away and bring it back, typically a throwaway server the test started:
//!
//! ```rust,ignore
//! #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
//! async fn conformance_outage() {
//!     let server = Arc::new(ThrowawayServer::start().await);
//!     let backend = Arc::new(MyStore::open(server.url()).await.unwrap());
//!     cache_core::conformance::outage::run(backend, server).await;
//! }
//! ```
//!
//! Embedded stores (memory, SQLite) have no server to lose, and so no such test.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::Ctx;
use super::cases::{Doc, LONG_TTL, doc};
use crate::{Backend, Error, Result, SetOptions};

/// Takes the server behind a store away and brings it back, for [`run`].
#[async_trait]
pub trait Outage: Send + Sync {
    /// Makes the server unreachable (killed, stopped or frozen) and returns once it is.
    async fn take_down(&self);

    /// Brings the server back at the same address with everything it held, and returns once it
    /// accepts connections again.
    async fn bring_back(&self);
}

#[async_trait]
impl<T: Outage + ?Sized> Outage for Arc<T> {
    async fn take_down(&self) {
        (**self).take_down().await;
    }

    async fn bring_back(&self) {
        (**self).bring_back().await;
    }
}

/// The switch of a [`Faults`](crate::layers::Faults) layer is an outage too: every call fails
/// as a refused connection while it is on, with nothing lost. For stores and layers whose real
/// server cannot be stopped from a test.
#[async_trait]
impl Outage for crate::layers::Outage {
    async fn take_down(&self) {
        self.begin();
    }

    async fn bring_back(&self) {
        self.end();
    }
}

/// Far beyond any store's configured timeouts: a call still running by then has hung. It
/// detects hangs and measures nothing.
pub const HANG_LIMIT: Duration = Duration::from_secs(30);

/// How long a store may take to notice that its server is back.
pub const RECOVERY_LIMIT: Duration = Duration::from_secs(30);

/// Runs the outage case and panics with what went wrong: while the server is away every call of
/// the facade fails with [`Error::Backend`] and none hangs; once it is back the same handle
/// serves again without being rebuilt, and nothing written before the outage is lost.
pub async fn run(backend: Arc<dyn Backend>, outage: impl Outage) {
    let ctx = Ctx::new(backend);
    if let Err(error) = store_that_goes_away_fails_cleanly_and_recovers(&ctx, &outage).await {
        panic!("outage case returned an error: {error}");
    }
    if let Err(error) = ctx.backend().clear_prefix(ctx.prefix()).await {
        panic!("outage case passed, but removing its keys failed: {error}");
    }
}

async fn store_that_goes_away_fails_cleanly_and_recovers(
    ctx: &Ctx,
    outage: &dyn Outage,
) -> Result<()> {
    let cache = ctx.cache::<Doc>();
    cache.set("before", &doc(1)).await?;
    cache
        .set_many_with(
            [("batch-a", &doc(2)), ("batch-b", &doc(3))],
            SetOptions::new().ttl(LONG_TTL),
        )
        .await?;

    outage.take_down().await;
    let keys = ["before", "batch-a"];
    let outcomes = [
        ("get", no_hang(cache.get("before")).await.map(drop)),
        ("get_many", no_hang(cache.get_many(keys)).await.map(drop)),
        ("set", no_hang(cache.set("during", &doc(4))).await),
        (
            "set_many",
            no_hang(cache.set_many([("during-batch", &doc(5))])).await,
        ),
        ("delete", no_hang(cache.delete("before")).await.map(drop)),
        (
            "delete_many",
            no_hang(cache.delete_many(keys)).await.map(drop),
        ),
        (
            "contains",
            no_hang(cache.contains("before")).await.map(drop),
        ),
        (
            "expire_in",
            no_hang(cache.expire_in("before", None)).await.map(drop),
        ),
        ("ttl", no_hang(cache.ttl("before")).await.map(drop)),
        ("clear", no_hang(cache.clear()).await.map(drop)),
    ];
    for (call, outcome) in outcomes {
        match outcome {
            Err(Error::Backend { .. }) => {}
            other => panic!("{call} with the server away: expected Error::Backend, got {other:?}"),
        }
    }

    outage.bring_back().await;
    let deadline = Instant::now() + RECOVERY_LIMIT;
    let before = loop {
        match no_hang(cache.get("before")).await {
            Ok(value) => break value,
            Err(Error::Backend { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("the store did not recover within {RECOVERY_LIMIT:?}: {error}"),
        }
    };
    assert_eq!(
        before,
        Some(doc(1)),
        "a write from before the outage was lost"
    );
    let batch = cache.get_many(["batch-a", "batch-b"]).await?;
    assert_eq!(
        batch.get("batch-a"),
        Some(&doc(2)),
        "a batch write was lost"
    );
    assert_eq!(
        batch.get("batch-b"),
        Some(&doc(3)),
        "a batch write was lost"
    );
    cache.set("after", &doc(6)).await?;
    assert_eq!(cache.get("after").await?, Some(doc(6)));
    Ok(())
}

async fn no_hang<T>(call: impl Future<Output = T>) -> T {
    match tokio::time::timeout(HANG_LIMIT, call).await {
        Ok(outcome) => outcome,
        Err(_) => panic!("a call hung for {HANG_LIMIT:?} with the server away"),
    }
}
