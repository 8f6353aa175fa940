//! The Redis store against redis-rs, and against the `cached` crate's async Redis store.

use std::collections::BTreeMap;
use std::sync::Arc;

use cache_redis::RedisBackend;
use cached::{ConcurrentCachedAsync, SerializeCachedAsync};
use redis::Cmd;
use redis::aio::{ConnectionLike, MultiplexedConnection};

use super::{Facade, Peer, StoreBench, full_keys, run_prefix};
use crate::BenchResult;
use crate::measure::{Target, Timed};
use crate::report::RoundTripRow;
use crate::round_trips::{CountTrips, CountingProxy, expect_all, through_proxy};
use crate::workload::{DidDoc, ROUND_TRIP_BATCH, SharedWorkload, TTL, decode, encode};

const DEFAULT_PORT: u16 = 6379;

/// The Redis store's contenders, preloaded.
pub async fn setup(url: &str, workload: &SharedWorkload) -> BenchResult<StoreBench> {
    let prefix = run_prefix();
    let backend = Arc::new(RedisBackend::open(url).await?);
    let facade = Facade::<false>::contender(backend.clone(), &format!("{prefix}f:"), workload);
    let raw = RawRedis::connect(url, full_keys(&format!("{prefix}r:"), workload), workload).await?;
    let server = server_version(&mut raw.connection.clone()).await.ok();
    let namespace = format!("cachette-bench-{}", std::process::id());
    let peer = CachedRedis::connect(url, &namespace, workload).await?;
    let peer_cache = Arc::clone(&peer.cache);
    let cleanup_backend = Arc::clone(&backend);
    let bench = StoreBench {
        facade,
        raw: Box::new(Timed::new(raw, Arc::clone(workload))),
        raw_name: "redis-rs multiplexed connection + ciborium (GET, SET PX, MGET, MULTI/EXEC)",
        peer: Some(Peer {
            name: "cached 4 `AsyncRedisCache` (MessagePack, its own key layout; no batch API)",
            contender: Box::new(Timed::new(peer, Arc::clone(workload))),
        }),
        cleanup: Box::pin(async move {
            use cache_core::Backend as _;
            cleanup_backend.clear_prefix(&prefix).await?;
            peer_cache.async_cache_clear().await?;
            Ok(())
        }),
        server,
        note: None,
    };
    bench.preloaded().await
}

async fn server_version(connection: &mut MultiplexedConnection) -> BenchResult<String> {
    let info: String = redis::cmd("INFO")
        .arg("server")
        .query_async(connection)
        .await?;
    let version = info
        .lines()
        .find_map(|line| line.strip_prefix("redis_version:"))
        .ok_or("INFO names no redis_version")?;
    Ok(format!("Redis {}", version.trim()))
}

/// A redis-rs connection the raw contenders drive, and how it writes a batch.
pub(super) trait RawConnection: ConnectionLike + Clone + Send + Sync + 'static {
    /// Sends `writes` (one `SET … PX` per key) as one batch, as this connection allows.
    fn write_batch(&self, writes: Vec<Cmd>) -> impl Future<Output = BenchResult<()>> + Send;
}

/// One server: a `MULTI`/`EXEC` pipeline, as the store sends.
impl RawConnection for MultiplexedConnection {
    async fn write_batch(&self, writes: Vec<Cmd>) -> BenchResult<()> {
        let mut pipeline = redis::pipe();
        pipeline.atomic();
        for write in writes {
            pipeline.add_command(write).ignore();
        }
        let () = pipeline.query_async(&mut self.clone()).await?;
        Ok(())
    }
}

/// The same work on redis-rs: the commands the store sends, with CBOR bytes, on a multiplexed
/// connection or (`super::redis_cluster`) redis-rs's cluster connection.
#[derive(Clone)]
pub(super) struct RawRedis<C = MultiplexedConnection> {
    connection: C,
    full_keys: Arc<Vec<String>>,
    workload: SharedWorkload,
}

impl RawRedis {
    async fn connect(
        url: &str,
        full_keys: Arc<Vec<String>>,
        workload: &SharedWorkload,
    ) -> BenchResult<Self> {
        let connection = redis::Client::open(url)?
            .get_multiplexed_async_connection()
            .await?;
        Ok(Self::over(connection, full_keys, workload))
    }
}

impl<C: RawConnection> RawRedis<C> {
    /// The contender on `connection`, writing `full_keys`.
    pub(super) fn over(
        connection: C,
        full_keys: Arc<Vec<String>>,
        workload: &SharedWorkload,
    ) -> Self {
        Self {
            connection,
            full_keys,
            workload: Arc::clone(workload),
        }
    }

    fn ttl_millis() -> u64 {
        u64::try_from(TTL.as_millis()).unwrap_or(u64::MAX)
    }

    /// `SET key value PX ttl` of the workload's key.
    fn set_command(&self, key: usize) -> BenchResult<Cmd> {
        let mut command = redis::cmd("SET");
        command
            .arg(&self.full_keys[key])
            .arg(encode(&self.workload.docs[key])?)
            .arg("PX")
            .arg(Self::ttl_millis());
        Ok(command)
    }
}

impl<C: RawConnection> Target for RawRedis<C> {
    const IN_PROCESS: bool = false;

    async fn get(&self, key: usize) -> BenchResult<bool> {
        let value: Option<Vec<u8>> = redis::cmd("GET")
            .arg(&self.full_keys[key])
            .query_async(&mut self.connection.clone())
            .await?;
        Ok(value.map(|bytes| decode(&bytes)).transpose()?.is_some())
    }

    async fn set(&self, key: usize) -> BenchResult<()> {
        let () = self
            .set_command(key)?
            .query_async(&mut self.connection.clone())
            .await?;
        Ok(())
    }

    async fn get_many(&self, keys: &[usize]) -> BenchResult<usize> {
        let mut command = redis::cmd("MGET");
        for &key in keys {
            command.arg(&self.full_keys[key]);
        }
        let values: Vec<Option<Vec<u8>>> =
            command.query_async(&mut self.connection.clone()).await?;
        let docs = values
            .iter()
            .map(|value| value.as_deref().map(decode).transpose())
            .collect::<BenchResult<Vec<Option<DidDoc>>>>()?;
        Ok(docs.iter().flatten().count())
    }

    async fn set_many(&self, keys: &[usize]) -> BenchResult<()> {
        let writes = keys
            .iter()
            .map(|&key| self.set_command(key))
            .collect::<BenchResult<Vec<Cmd>>>()?;
        self.connection.write_batch(writes).await
    }
}

/// The peer: the `cached` crate's `AsyncRedisCache`, typed like ours, with its own
/// serialization (MessagePack) and key layout. It has no batch calls.
#[derive(Clone)]
struct CachedRedis {
    cache: Arc<cached::AsyncRedisCache<String, DidDoc>>,
    workload: SharedWorkload,
}

impl CachedRedis {
    async fn connect(url: &str, namespace: &str, workload: &SharedWorkload) -> BenchResult<Self> {
        let cache = cached::AsyncRedisCache::builder("peer")
            .namespace(namespace)
            .connection_string(url)
            .ttl(TTL)
            .build()
            .await?;
        Ok(Self {
            cache: Arc::new(cache),
            workload: Arc::clone(workload),
        })
    }
}

impl Target for CachedRedis {
    const IN_PROCESS: bool = false;
    const BATCHES: bool = false;

    async fn get(&self, key: usize) -> BenchResult<bool> {
        Ok(self
            .cache
            .async_cache_get(&self.workload.keys[key])
            .await?
            .is_some())
    }

    async fn set(&self, key: usize) -> BenchResult<()> {
        let workload = &self.workload;
        self.cache
            .async_cache_set_ref(&workload.keys[key], &workload.docs[key])
            .await?;
        Ok(())
    }

    async fn get_many(&self, _: &[usize]) -> BenchResult<usize> {
        Err("cached's AsyncRedisCache has no batch read".into())
    }

    async fn set_many(&self, _: &[usize]) -> BenchResult<()> {
        Err("cached's AsyncRedisCache has no batch write".into())
    }
}

/// Round trips and server commands of `set_many` and `get_many` of 1,000 keys, facade and raw.
pub async fn round_trips(
    url: &str,
    store: &'static str,
    workload: &SharedWorkload,
) -> BenchResult<Vec<RoundTripRow>> {
    let (upstream, proxied) = through_proxy(url, DEFAULT_PORT).await?;
    let proxy = CountingProxy::start(upstream).await?;
    let proxied_url = proxied.at(&proxy)?;
    let prefix = format!("{}trips:", run_prefix());
    let backend = Arc::new(RedisBackend::open(&proxied_url).await?);
    let facade = Facade::<false>::new(backend.clone(), &format!("{prefix}f:"), workload);
    let raw = RawRedis::connect(
        &proxied_url,
        full_keys(&format!("{prefix}r:"), workload),
        workload,
    )
    .await?;
    // Server statistics are read on a connection of their own, around the proxy.
    let mut stats = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let keys = workload.run_of(0, ROUND_TRIP_BATCH);

    let mut rows = Vec::new();
    // First runs make any lazy set-up of the connections; second runs count.
    facade.set_many(&keys).await?;
    raw.set_many(&keys).await?;
    let before = command_stats(&mut stats).await?;
    let facade_set = proxy.count(facade.set_many(&keys)).await?;
    let set_commands = command_delta(&before, &command_stats(&mut stats).await?);
    let raw_set = proxy.count(raw.set_many(&keys)).await?;
    rows.push(RoundTripRow {
        store,
        op: "set_many",
        facade: facade_set,
        raw: raw_set,
        commands: Some(set_commands),
    });
    let before = command_stats(&mut stats).await?;
    let facade_get = proxy
        .count(expect_all(facade.get_many(&keys), keys.len()))
        .await?;
    let get_commands = command_delta(&before, &command_stats(&mut stats).await?);
    let raw_get = proxy
        .count(expect_all(raw.get_many(&keys), keys.len()))
        .await?;
    rows.push(RoundTripRow {
        store,
        op: "get_many",
        facade: facade_get,
        raw: raw_get,
        commands: Some(get_commands),
    });

    use cache_core::Backend as _;
    backend.clear_prefix(&prefix).await?;
    Ok(rows)
}

/// Calls per command, from `INFO commandstats`.
async fn command_stats(
    connection: &mut MultiplexedConnection,
) -> BenchResult<BTreeMap<String, u64>> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(connection)
        .await?;
    Ok(info
        .lines()
        .filter_map(|line| {
            let (name, fields) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = fields
                .split(',')
                .find_map(|field| field.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_ascii_uppercase(), calls))
        })
        .collect())
}

/// `SET ×1000, MULTI ×1, EXEC ×1`: the commands run between two snapshots, without the `INFO`
/// that took the first one.
fn command_delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> String {
    let mut delta: Vec<(u64, &str)> = after
        .iter()
        .filter_map(|(name, &calls)| {
            let mut ran = calls.saturating_sub(before.get(name).copied().unwrap_or(0));
            if name == "INFO" {
                ran = ran.saturating_sub(1);
            }
            (ran > 0).then_some((ran, name.as_str()))
        })
        .collect();
    delta.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
    if delta.is_empty() {
        return "none counted".to_owned();
    }
    delta
        .iter()
        .map(|(calls, name)| format!("{name} ×{calls}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_deltas_leave_out_the_snapshot_itself() {
        let before = BTreeMap::from([("INFO".to_owned(), 3), ("GET".to_owned(), 10)]);
        let after = BTreeMap::from([
            ("INFO".to_owned(), 4),
            ("GET".to_owned(), 10),
            ("SET".to_owned(), 1000),
            ("MULTI".to_owned(), 1),
            ("EXEC".to_owned(), 1),
        ]);
        assert_eq!(
            command_delta(&before, &after),
            "SET ×1000, EXEC ×1, MULTI ×1"
        );
        assert_eq!(command_delta(&before, &before), "none counted");
    }
}
