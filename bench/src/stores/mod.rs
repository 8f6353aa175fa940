//! One module per store: how to reach it, its raw-driver contender and its peers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use cache_core::{Backend, Cache};

use crate::BenchResult;
use crate::measure::{Contender, Target, Timed};
use crate::report::{Outcome, RoundTripRow};
use crate::workload::{DidDoc, SharedWorkload, TTL};

pub mod freshness;
pub mod local;
#[cfg(feature = "memory")]
pub mod memory;
pub mod observe;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod protect;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "redis")]
pub mod redis_cluster;
pub mod serializers;
#[cfg(feature = "sqlite")]
pub mod sqlite;
pub mod tags;

/// A store ready to be timed: its contenders, already preloaded, and how to clean up after it.
pub struct StoreBench {
    /// The facade over the store.
    pub facade: Box<dyn Contender>,
    /// The same work on the store's driver, with the same serialization.
    pub raw: Box<dyn Contender>,
    /// What the raw contender is, e.g. `redis-rs`.
    pub raw_name: &'static str,
    /// A library a user might pick instead, when there is one for this store.
    pub peer: Option<Peer>,
    /// Removes what the contenders wrote (keys, tables, files).
    pub cleanup: Cleanup,
    /// The server's version line, for the report.
    pub server: Option<String>,
    /// A measurement of the store's own beside the table, for the report's legend.
    pub note: Option<String>,
}

impl StoreBench {
    /// Preloads every contender, then hands the bench on.
    pub async fn preloaded(self) -> BenchResult<Self> {
        self.facade.preload().await?;
        self.raw.preload().await?;
        if let Some(peer) = &self.peer {
            peer.contender.preload().await?;
        }
        Ok(self)
    }
}

/// A peer library and its contender.
pub struct Peer {
    /// Its name in the table's legend.
    pub name: &'static str,
    /// The contender.
    pub contender: Box<dyn Contender>,
}

/// Deferred clean-up work.
pub type Cleanup = Pin<Box<dyn Future<Output = BenchResult<()>> + Send>>;

/// A clean-up with nothing to do.
pub fn no_cleanup() -> Cleanup {
    Box::pin(async { Ok(()) })
}

/// A fresh in-process store for rows that compare two facades over one store: `memory`, or
/// `sqlite` in a temporary directory (named after `purpose`) that the clean-up removes.
pub async fn open_local(store: &str, purpose: &str) -> BenchResult<(Arc<dyn Backend>, Cleanup)> {
    let _ = purpose;
    let (backend, directory): (Arc<dyn Backend>, Option<tempfile::TempDir>) = match store {
        #[cfg(feature = "memory")]
        "memory" => (Arc::new(cache_memory::MemoryBackend::new()), None),
        #[cfg(feature = "sqlite")]
        "sqlite" => {
            let directory = tempfile::Builder::new().prefix(purpose).tempdir()?;
            let path = directory.path().join("bench.db");
            let backend = cache_sqlite::SqliteBackend::file(&path).open().await?;
            (Arc::new(backend), Some(directory))
        }
        other => return Err(format!("no in-process store {other:?}").into()),
    };
    let closing = Arc::clone(&backend);
    let cleanup: Cleanup = Box::pin(async move {
        closing.close().await?;
        drop(closing);
        drop(directory);
        Ok(())
    });
    Ok((backend, cleanup))
}

/// Two facades over one in-process `store` (`memory` or `sqlite`), preloaded: the one over
/// `layered` (the store behind a layer) as the "facade", the plain one in the raw driver's
/// place, so that the ratio is the layer's cost.
pub async fn layered_against_plain(
    store: &str,
    backend: Arc<dyn Backend>,
    layered: Arc<dyn Backend>,
    cleanup: Cleanup,
    workload: &SharedWorkload,
) -> BenchResult<StoreBench> {
    let prefix = run_prefix();
    let (facade, plain) = if store == "memory" {
        (
            Facade::<true>::contender(layered, &format!("{prefix}l:"), workload),
            Facade::<true>::contender(backend, &format!("{prefix}p:"), workload),
        )
    } else {
        (
            Facade::<false>::contender(layered, &format!("{prefix}l:"), workload),
            Facade::<false>::contender(backend, &format!("{prefix}p:"), workload),
        )
    };
    let bench = StoreBench {
        facade,
        raw: plain,
        raw_name: "the plain facade over the same store, no layer",
        peer: None,
        cleanup,
        server: None,
        note: None,
    };
    bench.facade.preload().await?;
    bench.raw.preload().await?;
    Ok(bench)
}

/// `Outcome::NotBuilt` when the in-process `store` is compiled out of this binary.
fn local_store_built(store: &str) -> Result<(), Outcome> {
    match store {
        "memory" if cfg!(not(feature = "memory")) => Err(Outcome::NotBuilt { feature: "memory" }),
        "sqlite" if cfg!(not(feature = "sqlite")) => Err(Outcome::NotBuilt { feature: "sqlite" }),
        _ => Ok(()),
    }
}

/// Any store for rows that compare two facades over one store: an in-process one from
/// [`open_local`], or the Redis or PostgreSQL server the environment names; the clean-up removes
/// this run's keys from Redis and drops this run's table from PostgreSQL.
pub(crate) async fn open_any(
    store: &str,
    purpose: &str,
) -> Result<(Arc<dyn Backend>, Cleanup), Outcome> {
    match store {
        "memory" | "sqlite" => {
            local_store_built(store)?;
            open_local(store, &format!("cachette-bench-{purpose}"))
                .await
                .map_err(failed)
        }
        #[cfg(feature = "redis")]
        "redis" => {
            let backend: Arc<dyn Backend> = Arc::new(
                cache_redis::RedisBackend::open(&env_url(REDIS_URL)?)
                    .await
                    .map_err(|error| failed(error.into()))?,
            );
            let closing = Arc::clone(&backend);
            let cleanup: Cleanup = Box::pin(async move {
                closing.clear_prefix(&run_prefix()).await?;
                closing.close().await?;
                Ok(())
            });
            Ok((backend, cleanup))
        }
        #[cfg(feature = "postgres")]
        "postgres" => postgres::open_for_rows(&env_url(POSTGRES_URL)?, purpose)
            .await
            .map_err(failed),
        #[cfg(not(feature = "redis"))]
        "redis" => Err(Outcome::NotBuilt { feature: "redis" }),
        #[cfg(not(feature = "postgres"))]
        "postgres" => Err(Outcome::NotBuilt {
            feature: "postgres",
        }),
        other => Err(Outcome::Failed {
            error: format!("no store named {other:?}"),
        }),
    }
}

/// The key prefix of this run: unique per process, so that runs on a shared server never touch
/// another program's keys or each other's.
pub fn run_prefix() -> String {
    format!("cachette-bench:{}:", std::process::id())
}

/// The facade: `Cache<DidDoc>` with CBOR (the default serializer) and the workload's TTL as the
/// default TTL, exactly as an application would hold it. `LOCAL` tells whether the store lives
/// in this process.
#[derive(Clone)]
pub struct Facade<const LOCAL: bool> {
    cache: Cache<DidDoc>,
    workload: SharedWorkload,
}

impl<const LOCAL: bool> Facade<LOCAL> {
    /// The facade over `backend`, with keys under `prefix`.
    pub fn new(backend: Arc<dyn Backend>, prefix: &str, workload: &SharedWorkload) -> Self {
        let cache = Cache::builder(backend)
            .prefix(prefix)
            .default_ttl(TTL)
            .build();
        Self::over(cache, workload)
    }

    /// The facade of a cache built elsewhere (with a feature switched on).
    pub fn over(cache: Cache<DidDoc>, workload: &SharedWorkload) -> Self {
        Self {
            cache,
            workload: Arc::clone(workload),
        }
    }

    /// [`Facade::new`], ready to be timed.
    pub fn contender(
        backend: Arc<dyn Backend>,
        prefix: &str,
        workload: &SharedWorkload,
    ) -> Box<dyn Contender> {
        Box::new(Timed::new(
            Self::new(backend, prefix, workload),
            Arc::clone(workload),
        ))
    }
}

impl<const LOCAL: bool> Target for Facade<LOCAL> {
    const IN_PROCESS: bool = LOCAL;

    async fn get(&self, key: usize) -> BenchResult<bool> {
        Ok(self.cache.get(&self.workload.keys[key]).await?.is_some())
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

    async fn get_many_positional(&self, keys: &[usize]) -> BenchResult<usize> {
        let names = keys.iter().map(|&key| self.workload.keys[key].as_str());
        let values = self.cache.get_many_vec(names).await?;
        Ok(values.iter().flatten().count())
    }

    async fn set_many(&self, keys: &[usize]) -> BenchResult<()> {
        let workload = &self.workload;
        let items = keys
            .iter()
            .map(|&key| (workload.keys[key].as_str(), &workload.docs[key]));
        Ok(self.cache.set_many(items).await?)
    }
}

/// The full keys (`prefix` + key) of the workload, computed once: raw contenders get them ready
/// made, so the facade's own prefixing is part of what the ratio measures.
pub fn full_keys(prefix: &str, workload: &SharedWorkload) -> Arc<Vec<String>> {
    Arc::new(
        workload
            .keys
            .iter()
            .map(|key| format!("{prefix}{key}"))
            .collect(),
    )
}

/// The variable that names the Redis server.
pub const REDIS_URL: &str = "CACHETTE_REDIS_URL";
/// The variable that names the Redis Cluster.
pub const REDIS_CLUSTER_URL: &str = "CACHETTE_REDIS_CLUSTER_URL";
/// The variable that names the PostgreSQL server.
pub const POSTGRES_URL: &str = "CACHETTE_POSTGRES_URL";

#[allow(dead_code, reason = "unused when no server store is compiled in")]
fn env_url(var: &'static str) -> Result<String, Outcome> {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => Ok(url),
        _ => Err(Outcome::Skipped {
            reason: format!("{var} is unset"),
        }),
    }
}

fn failed(error: crate::BenchError) -> Outcome {
    Outcome::Failed {
        error: error.to_string(),
    }
}

/// Sets up the store `key` (a name from `--only`) with every contender preloaded; the outcome to
/// report instead when it is not built, has no server URL, or fails to set up.
pub async fn setup(key: &str, workload: &SharedWorkload) -> Result<StoreBench, Outcome> {
    match key {
        "memory" => {
            #[cfg(feature = "memory")]
            return memory::setup(workload).await.map_err(failed);
            #[cfg(not(feature = "memory"))]
            return Err(Outcome::NotBuilt { feature: "memory" });
        }
        "sqlite" => {
            #[cfg(feature = "sqlite")]
            return sqlite::setup(workload).await.map_err(failed);
            #[cfg(not(feature = "sqlite"))]
            return Err(Outcome::NotBuilt { feature: "sqlite" });
        }
        "redis" => {
            #[cfg(feature = "redis")]
            return redis::setup(&env_url(REDIS_URL)?, workload)
                .await
                .map_err(failed);
            #[cfg(not(feature = "redis"))]
            return Err(Outcome::NotBuilt { feature: "redis" });
        }
        "redis-cluster" => {
            #[cfg(feature = "redis")]
            return redis_cluster::setup(&env_url(REDIS_CLUSTER_URL)?, workload)
                .await
                .map_err(failed);
            #[cfg(not(feature = "redis"))]
            return Err(Outcome::NotBuilt { feature: "redis" });
        }
        "postgres-logged" | "postgres-unlogged" => {
            #[cfg(feature = "postgres")]
            return postgres::setup(
                &env_url(POSTGRES_URL)?,
                key == "postgres-unlogged",
                workload,
            )
            .await
            .map_err(failed);
            #[cfg(not(feature = "postgres"))]
            return Err(Outcome::NotBuilt {
                feature: "postgres",
            });
        }
        "memory-tracing" | "memory-metrics" | "sqlite-tracing" | "sqlite-metrics" => {
            let (store, observer) = match key.split_once('-') {
                Some((store, "tracing")) => (store, observe::Observer::Tracing),
                Some((store, _)) => (store, observe::Observer::Metrics),
                None => (key, observe::Observer::Metrics),
            };
            local_store_built(store)?;
            observe::setup(store, observer, workload)
                .await
                .map_err(failed)
        }
        "memory-signed" | "memory-encrypted" | "memory-compressed" | "sqlite-signed"
        | "sqlite-encrypted" | "sqlite-compressed" => {
            let (store, protection) = match key.split_once('-') {
                Some((store, "signed")) => (store, protect::Protection::Signed),
                Some((store, "encrypted")) => (store, protect::Protection::Encrypted),
                Some((store, _)) => (store, protect::Protection::Compressed),
                None => (key, protect::Protection::Signed),
            };
            local_store_built(store)?;
            protect::setup(store, protection, workload)
                .await
                .map_err(failed)
        }
        "memory-json" | "memory-msgpack" | "sqlite-json" | "sqlite-msgpack" => {
            let (store, format) = match key.split_once('-') {
                Some((store, "json")) => (store, serializers::Format::Json),
                Some((store, _)) => (store, serializers::Format::MessagePack),
                None => (key, serializers::Format::MessagePack),
            };
            local_store_built(store)?;
            serializers::setup(store, format, workload)
                .await
                .map_err(failed)
        }
        "memory-fresh" | "memory-stale" | "sqlite-fresh" | "sqlite-stale" => {
            let (store, hits) = match key.split_once('-') {
                Some((store, "stale")) => (store, freshness::Hits::Stale),
                Some((store, _)) => (store, freshness::Hits::Fresh),
                None => (key, freshness::Hits::Fresh),
            };
            local_store_built(store)?;
            freshness::setup(store, hits, workload)
                .await
                .map_err(failed)
        }
        "memory-local" | "memory-local-arc" | "sqlite-local" | "redis-local" | "postgres-local" => {
            let store = match key.split_once('-') {
                Some(("postgres", _)) => "postgres",
                Some((store, _)) => store,
                None => key,
            };
            let read = if key.ends_with("-arc") {
                local::Read::Shared
            } else {
                local::Read::Cloned
            };
            #[cfg(feature = "memory")]
            let peer = (store == "memory").then(|| memory::moka_struct(workload));
            #[cfg(not(feature = "memory"))]
            let peer = None;
            let (backend, cleanup) = open_any(store, "local").await?;
            let in_process = matches!(store, "memory" | "sqlite");
            local::setup(backend, in_process, read, peer, cleanup, workload)
                .await
                .map_err(failed)
        }
        tagged if tagged.contains("-tags") => {
            let (store, count) = match tagged.split_once("-tags") {
                Some((store, "5")) => (store, 5),
                Some((store, _)) => (store, 1),
                None => (tagged, 1),
            };
            let (backend, cleanup) = open_any(store, "tags").await?;
            tags::setup(backend, store == "memory", count, cleanup, workload)
                .await
                .map_err(failed)
        }
        other => Err(Outcome::Failed {
            error: format!("no store named {other:?}"),
        }),
    }
}

/// Counts the server round trips of 1,000-key batches for the server store `key`; `None` for
/// stores without a server.
pub async fn round_trips(
    key: &str,
    name: &'static str,
    workload: &SharedWorkload,
) -> BenchResult<Option<Vec<RoundTripRow>>> {
    match key {
        #[cfg(feature = "redis")]
        "redis" => match std::env::var(REDIS_URL) {
            Ok(url) => redis::round_trips(&url, name, workload).await.map(Some),
            Err(_) => Ok(None),
        },
        #[cfg(feature = "postgres")]
        "postgres-logged" | "postgres-unlogged" => match std::env::var(POSTGRES_URL) {
            Ok(url) => postgres::round_trips(&url, key == "postgres-unlogged", name, workload)
                .await
                .map(Some),
            Err(_) => Ok(None),
        },
        _ => {
            let _ = (name, workload);
            Ok(None)
        }
    }
}
