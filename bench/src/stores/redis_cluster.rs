//! The Redis store on a Redis Cluster against redis-rs's own cluster client.

use std::sync::Arc;

use cache_redis::{DEFAULT_RESPONSE_TIMEOUT, RedisBackend};
use redis::Cmd;
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;

use super::redis::{RawConnection, RawRedis};
use super::{Facade, StoreBench, full_keys, run_prefix};
use crate::BenchResult;
use crate::measure::Timed;
use crate::workload::SharedWorkload;

/// The cluster's contenders, preloaded. `url` is the store's `redis+cluster://` URL; redis-rs
/// gets the same seed nodes.
pub async fn setup(url: &str, workload: &SharedWorkload) -> BenchResult<StoreBench> {
    let prefix = run_prefix();
    let backend = Arc::new(RedisBackend::open(url).await?);
    let facade = Facade::<false>::contender(backend.clone(), &format!("{prefix}f:"), workload);
    // redis-rs's cluster client waits for a reply without end unless told otherwise (its
    // standalone connections wait 500 ms by default). A silent node would hang the raw contender
    // for good, so it gets the store's default reply timeout too; the timer costs 3–5% of a
    // single `SET` (9.9k against 9.5k, and 10.8k against 10.2k, per second in two runs).
    let connection = ClusterClientBuilder::new(seed_nodes(url)?)
        .response_timeout(DEFAULT_RESPONSE_TIMEOUT)
        .build()?
        .get_async_connection()
        .await?;
    let raw = RawRedis::over(
        connection,
        full_keys(&format!("{prefix}r:"), workload),
        workload,
    );
    let cleanup_backend = Arc::clone(&backend);
    let bench = StoreBench {
        facade,
        raw: Box::new(Timed::new(raw, Arc::clone(workload))),
        raw_name: "redis-rs `ClusterClient` async connection with the store's 2 s reply \
                   timeout + ciborium (GET, SET PX, MGET split by slot by redis-rs; `set_many` as \
                   concurrent SET PX commands, not atomic, where the store sends one MULTI/EXEC \
                   per slot)",
        peer: None,
        cleanup: Box::pin(async move {
            use cache_core::Backend as _;
            cleanup_backend.clear_prefix(&prefix).await?;
            Ok(())
        }),
        server: Some("Redis Cluster, 3 primaries".into()),
        note: None,
    };
    bench.preloaded().await
}

/// The seed nodes of a `redis+cluster://host:port,host:port` URL as redis-rs URLs.
fn seed_nodes(url: &str) -> BenchResult<Vec<String>> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("not a URL: {url}"))?;
    let scheme = match scheme {
        "redis+cluster" => "redis",
        "rediss+cluster" => "rediss",
        other => return Err(format!("not a cluster URL scheme: {other}").into()),
    };
    let (credentials, hosts) = match rest.rsplit_once('@') {
        Some((credentials, hosts)) => (format!("{credentials}@"), hosts),
        None => (String::new(), rest),
    };
    let hosts = hosts.split(['/', '?']).next().unwrap_or_default();
    Ok(hosts
        .split(',')
        .map(|host| format!("{scheme}://{credentials}{host}"))
        .collect())
}

/// redis-rs's cluster connection routes each command by slot and splits a multi-slot `MGET`
/// itself, but refuses a pipeline whose keys span slots: its way to write many keys is many
/// commands in flight at once on its multiplexed node connections.
impl RawConnection for ClusterConnection {
    async fn write_batch(&self, writes: Vec<Cmd>) -> BenchResult<()> {
        let sent = writes.into_iter().map(|write| {
            let mut connection = self.clone();
            async move {
                let () = write.query_async(&mut connection).await?;
                BenchResult::Ok(())
            }
        });
        futures_util::future::try_join_all(sent).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::seed_nodes;

    #[test]
    fn seed_nodes_keep_scheme_credentials_and_every_host() {
        assert_eq!(
            seed_nodes("redis+cluster://127.0.0.1:7000,127.0.0.1:7001").unwrap(),
            ["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"]
        );
        assert_eq!(
            seed_nodes("rediss+cluster://:pw@a:1,b:2/?timeout=1s").unwrap(),
            ["rediss://:pw@a:1", "rediss://:pw@b:2"]
        );
        assert!(seed_nodes("redis://127.0.0.1:6379").is_err());
    }
}
