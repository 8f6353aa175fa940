//! The memory store against moka, its driver, and against `moka::future` holding the struct.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cache_memory::MemoryBackend;

use super::{Facade, Peer, StoreBench, full_keys, no_cleanup, run_prefix};
use crate::BenchResult;
use crate::measure::{Target, Timed};
use crate::workload::{DidDoc, SharedWorkload, TTL, decode, encode_bytes};

/// The bound the memory store has by default (256 MiB); the raw contender gets the same one so
/// that both pay for weighing entries.
const MAX_BYTES: u64 = 256 * 1024 * 1024;
/// What the store counts per entry beyond key and value; mirrored for the same weights.
const ENTRY_OVERHEAD_BYTES: usize = 96;

/// The memory store's contenders, preloaded.
pub async fn setup(workload: &SharedWorkload) -> BenchResult<StoreBench> {
    let prefix = run_prefix();
    let facade = Facade::<true>::contender(
        Arc::new(MemoryBackend::new()),
        &format!("{prefix}f:"),
        workload,
    );
    let raw = Timed::new(
        RawMoka::new(full_keys(&format!("{prefix}r:"), workload), workload),
        Arc::clone(workload),
    );
    let peer = moka_struct(workload);
    let bench = StoreBench {
        facade,
        raw: Box::new(raw),
        raw_name: "moka::sync + ciborium",
        peer: Some(peer),
        cleanup: no_cleanup(),
        server: None,
        note: None,
    };
    bench.preloaded().await
}

#[derive(Clone)]
struct RawEntry {
    value: Bytes,
    ttl: Duration,
}

struct PerEntryTtl;

impl moka::Expiry<String, RawEntry> for PerEntryTtl {
    fn expire_after_create(&self, _: &String, entry: &RawEntry, _: Instant) -> Option<Duration> {
        Some(entry.ttl)
    }

    fn expire_after_update(
        &self,
        _: &String,
        entry: &RawEntry,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// moka's synchronous cache (the driver the memory store is built on) holding CBOR bytes with a
/// per-entry TTL and a byte bound: what one would write by hand for the memory store's job.
#[derive(Clone)]
struct RawMoka {
    entries: moka::sync::Cache<String, RawEntry>,
    full_keys: Arc<Vec<String>>,
    workload: SharedWorkload,
}

impl RawMoka {
    fn new(full_keys: Arc<Vec<String>>, workload: &SharedWorkload) -> Self {
        let entries = moka::sync::Cache::builder()
            .expire_after(PerEntryTtl)
            .max_capacity(MAX_BYTES)
            .weigher(|key: &String, entry: &RawEntry| {
                let bytes = key.len() + entry.value.len() + ENTRY_OVERHEAD_BYTES;
                u32::try_from(bytes).unwrap_or(u32::MAX)
            })
            .build();
        Self {
            entries,
            full_keys,
            workload: Arc::clone(workload),
        }
    }

    fn read(&self, key: usize) -> BenchResult<Option<DidDoc>> {
        self.entries
            .get(&self.full_keys[key])
            .map(|entry| decode(&entry.value))
            .transpose()
    }

    fn write(&self, key: usize) -> BenchResult<()> {
        let value = encode_bytes(&self.workload.docs[key])?;
        let entry = RawEntry { value, ttl: TTL };
        self.entries.insert(self.full_keys[key].clone(), entry);
        Ok(())
    }
}

impl Target for RawMoka {
    const IN_PROCESS: bool = true;

    async fn get(&self, key: usize) -> BenchResult<bool> {
        Ok(self.read(key)?.is_some())
    }

    async fn set(&self, key: usize) -> BenchResult<()> {
        self.write(key)
    }

    async fn get_many(&self, keys: &[usize]) -> BenchResult<usize> {
        let docs = keys
            .iter()
            .map(|&key| self.read(key))
            .collect::<BenchResult<Vec<_>>>()?;
        Ok(docs.iter().flatten().count())
    }

    async fn set_many(&self, keys: &[usize]) -> BenchResult<()> {
        let entries = keys
            .iter()
            .map(|&key| {
                let value = encode_bytes(&self.workload.docs[key])?;
                Ok((self.full_keys[key].clone(), RawEntry { value, ttl: TTL }))
            })
            .collect::<BenchResult<Vec<_>>>()?;
        for (key, entry) in entries {
            self.entries.insert(key, entry);
        }
        Ok(())
    }
}

/// `moka::future::Cache` holding the struct, as a peer, ready to be timed.
pub fn moka_struct(workload: &SharedWorkload) -> Peer {
    Peer {
        name: "moka::future (struct)",
        contender: Box::new(Timed::new(MokaStruct::new(workload), Arc::clone(workload))),
    }
}

/// The peer: `moka::future::Cache` holding the struct itself (no serialization), with one TTL
/// for the whole cache, as a user who needs no persistence would set it up. moka has no batch
/// call, and in process a loop is what a batch is, so batches loop.
#[derive(Clone)]
struct MokaStruct {
    entries: moka::future::Cache<String, DidDoc>,
    workload: SharedWorkload,
}

impl MokaStruct {
    fn new(workload: &SharedWorkload) -> Self {
        let entries = moka::future::Cache::builder()
            .max_capacity(1_000_000)
            .time_to_live(TTL)
            .build();
        Self {
            entries,
            workload: Arc::clone(workload),
        }
    }
}

impl Target for MokaStruct {
    const IN_PROCESS: bool = true;

    async fn get(&self, key: usize) -> BenchResult<bool> {
        Ok(self.entries.get(&self.workload.keys[key]).await.is_some())
    }

    async fn set(&self, key: usize) -> BenchResult<()> {
        let workload = &self.workload;
        self.entries
            .insert(workload.keys[key].clone(), workload.docs[key].clone())
            .await;
        Ok(())
    }

    async fn get_many(&self, keys: &[usize]) -> BenchResult<usize> {
        let mut found = Vec::with_capacity(keys.len());
        for &key in keys {
            found.push(self.entries.get(&self.workload.keys[key]).await);
        }
        Ok(found.iter().flatten().count())
    }

    async fn set_many(&self, keys: &[usize]) -> BenchResult<()> {
        for &key in keys {
            self.set(key).await?;
        }
        Ok(())
    }
}
