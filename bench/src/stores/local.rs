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

/// `Cache<DidDoc>` with a local tier.
#[derive(Clone)]
struct Tiered<const LOCAL: bool, const ARC: bool> {
    cache: Cache<DidDoc>,
    workload: SharedWorkload,
}

impl<const LOCAL: bool, const ARC: bool> Target for Tiered<LOCAL, ARC> {
    // Held reads stay in this process whatever the store.
    const IN_PROCESS: bool = LOCAL;

    async fn get(&self, key: usize) -> BenchResult<bool> {
        let key = &self.workload.keys[key];
        Ok(if ARC {
            self.cache.get_arc(key).await?.is_some()
        } else {
            self.cache.get(key).await?.is_some()
        })
    }

    async fn set(&self, key: usize) -> BenchResult<()> {
        let workload = &self.workload;
        Ok(self
            .cache
            .set(&workload.keys[key], &workload.docs[key])
            .await?)
    }

    async fn get_many(&self, keys: &[usize]) -> BenchResult<usize> {
        let names = keys.iter().map(|&key| self.workload.keys[key].as_str());
        Ok(self.cache.get_many(names).await?.len())
    }

    async fn set_many(&self, keys: &[usize]) -> BenchResult<()> {
        let workload = &self.workload;
        let items = keys
            .iter()
            .map(|&key| (workload.keys[key].as_str(), &workload.docs[key]));
        Ok(self.cache.set_many(items).await?)
    }
}

fn contender<const LOCAL: bool, const ARC: bool>(
    cache: Cache<DidDoc>,
    workload: &SharedWorkload,
) -> Box<dyn Contender> {
    Box::new(Timed::new(
        Tiered::<LOCAL, ARC> {
            cache,
            workload: Arc::clone(workload),
        },
        Arc::clone(workload),
    ))
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
    let (facade, raw): (Box<dyn Contender>, Box<dyn Contender>) = match (in_process, read) {
        (true, Read::Cloned) => (
            contender::<true, false>(cache, workload),
            Facade::<true>::contender(Arc::clone(&backend), &plain_prefix, workload),
        ),
        (true, Read::Shared) => (
            contender::<true, true>(cache, workload),
            Facade::<true>::contender(Arc::clone(&backend), &plain_prefix, workload),
        ),
        (false, Read::Cloned) => (
            contender::<false, false>(cache, workload),
            Facade::<false>::contender(Arc::clone(&backend), &plain_prefix, workload),
        ),
        (false, Read::Shared) => (
            contender::<false, true>(cache, workload),
            Facade::<false>::contender(Arc::clone(&backend), &plain_prefix, workload),
        ),
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
    bench.facade.preload().await?;
    bench.raw.preload().await?;
    if let Some(peer) = &bench.peer {
        peer.contender.preload().await?;
    }
    Ok(bench)
}
