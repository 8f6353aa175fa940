//! The local tier: the facade with `.local(…)` against the plain facade over the same store, in
//! one run. Reads of held keys cost no round trip and no decode (`get` clones the held value,
//! `get_arc` not even that); writes also drop the copies they change. Over the memory store the
//! peer is moka holding the struct, the floor a tier competes with.

use std::sync::Arc;

use cache_core::{Backend, Cache, LocalTier};

use super::{Cleanup, Facade, Peer, StoreBench, run_prefix};
use crate::BenchResult;
use crate::measure::{Contender, Target, Timed};
use crate::workload::{DidDoc, KEYS, SharedWorkload, TTL};

/// A tier that holds the whole workload.
pub fn tier() -> LocalTier {
    LocalTier::new(4 * KEYS as u64)
}

/// How a tiered read answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Read {
    /// `get`: the held value, cloned.
    Cloned,
    /// `get_arc`: the held `Arc`.
    Shared,
}

/// The facade of a tiered cache, its reads through `get_arc`: the held `Arc`, not a clone.
#[derive(Clone)]
struct Shared<const LOCAL: bool>(Facade<LOCAL>);

impl<const LOCAL: bool> Target for Shared<LOCAL> {
    // Held reads stay in this process whatever the store.
    const IN_PROCESS: bool = LOCAL;

    async fn get(&self, key: usize) -> BenchResult<bool> {
        let Facade { cache, workload } = &self.0;
        Ok(cache.get_arc(&workload.keys[key]).await?.is_some())
    }

    async fn set(&self, key: usize) -> BenchResult<()> {
        self.0.set(key).await
    }

    async fn get_many(&self, keys: &[usize]) -> BenchResult<usize> {
        self.0.get_many(keys).await
    }

    async fn set_many(&self, keys: &[usize]) -> BenchResult<()> {
        self.0.set_many(keys).await
    }
}

/// The tiered facade over `cache`, reading as `read` says.
fn contender<const LOCAL: bool>(
    cache: Cache<DidDoc>,
    read: Read,
    workload: &SharedWorkload,
) -> Box<dyn Contender> {
    let facade = Facade::<LOCAL>::over(cache, workload);
    match read {
        Read::Cloned => Box::new(Timed::new(facade, Arc::clone(workload))),
        Read::Shared => Box::new(Timed::new(Shared(facade), Arc::clone(workload))),
    }
}

/// The tiered and the plain facade over `backend`, preloaded; `in_process` tells whether the
/// store lives in this process, `peer` what else to time beside them.
pub async fn setup(
    backend: Arc<dyn Backend>,
    in_process: bool,
    read: Read,
    peer: Option<Peer>,
    cleanup: Cleanup,
    workload: &SharedWorkload,
) -> BenchResult<StoreBench> {
    let prefix = run_prefix();
    if let Some(bus) = backend.invalidation_bus() {
        bus.start();
    }
    let cache = Cache::builder(Arc::clone(&backend))
        .prefix(format!("{prefix}local:"))
        .default_ttl(TTL)
        .local(tier())
        .build();
    let plain_prefix = format!("{prefix}plain:");
    let (facade, raw) = if in_process {
        (
            contender::<true>(cache, read, workload),
            Facade::<true>::contender(Arc::clone(&backend), &plain_prefix, workload),
        )
    } else {
        (
            contender::<false>(cache, read, workload),
            Facade::<false>::contender(Arc::clone(&backend), &plain_prefix, workload),
        )
    };
    let bench = StoreBench {
        facade,
        raw,
        raw_name: "the plain facade over the same store, no local tier",
        peer,
        cleanup,
        server: None,
        note: None,
    };
    bench.preloaded().await
}
