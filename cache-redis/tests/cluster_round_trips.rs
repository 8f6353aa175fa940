//! What a cluster batch sends, counted by the servers: one command (or one transaction) per hash
//! slot, never one per key, and `clear_prefix` scans every primary. The test forms its own
//! throwaway three-primary cluster, so that no other test's traffic adds to the counts.

mod common;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use cache_core::{Backend, Bytes};
use cache_redis::RedisBackend;
use common::{ThrowawayCluster, cluster_command_calls, delta};

struct Counted {
    cluster: ThrowawayCluster,
    store: RedisBackend,
    stats: Vec<redis::aio::MultiplexedConnection>,
    last: Vec<HashMap<String, u64>>,
}

impl Counted {
    async fn start() -> Self {
        let cluster = ThrowawayCluster::start().await;
        let store = RedisBackend::open(&cluster.url())
            .await
            .expect("connects to the throwaway cluster");
        // The first batch of more than one key fetches the slot map; let that happen before
        // counting.
        store
            .get_many(&["warm-up".to_owned(), "warm-up-2".to_owned()])
            .await
            .expect("get_many");
        let mut stats = cluster.raw_connections().await;
        let last = cluster_command_calls(&mut stats).await;
        Self {
            cluster,
            store,
            stats,
            last,
        }
    }

    /// Per node, the commands it ran since the last call.
    async fn sent(&mut self) -> Vec<HashMap<String, u64>> {
        let now = cluster_command_calls(&mut self.stats).await;
        let sent = self
            .last
            .iter()
            .zip(&now)
            .map(|(before, after)| delta(before, after).into_iter().collect())
            .collect();
        self.last = now;
        sent
    }

    /// The distinct hash slots of `keys`, as the cluster computes them.
    async fn slots(&mut self, keys: &[String]) -> usize {
        let mut connection = self.cluster.nodes[0].raw().await;
        let mut slots = HashSet::new();
        for key in keys {
            let slot: u16 = redis::cmd("CLUSTER")
                .arg("KEYSLOT")
                .arg(key)
                .query_async(&mut connection)
                .await
                .expect("CLUSTER KEYSLOT");
            slots.insert(slot);
        }
        // Those KEYSLOT calls are not the store's doing.
        self.sent().await;
        slots.len()
    }
}

fn total(sent: &[HashMap<String, u64>], command: &str) -> u64 {
    sent.iter().filter_map(|node| node.get(command)).sum()
}

fn entries(keys: &[String]) -> Vec<(String, Bytes)> {
    keys.iter()
        .map(|key| (key.clone(), Bytes::from(key.clone())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_batches_send_one_command_per_slot() {
    let mut counted = Counted::start().await;

    // 1,000 keys under 8 hash tags: 8 slots at most, whatever the keys.
    let tagged: Vec<String> = (0..1_000)
        .map(|i| format!("{{tag{}}}:{i}", i % 8))
        .collect();
    let slots = counted.slots(&tagged).await as u64;

    counted
        .store
        .set_many(entries(&tagged), Some(Duration::from_secs(600)))
        .await
        .expect("set_many");
    let sent = counted.sent().await;
    assert_eq!(total(&sent, "multi"), slots, "{sent:?}");
    assert_eq!(total(&sent, "exec"), slots, "{sent:?}");
    assert_eq!(total(&sent, "set"), 1_000, "{sent:?}");

    let values = counted.store.get_many(&tagged).await.expect("get_many");
    assert!(values.iter().all(Option::is_some));
    let sent = counted.sent().await;
    assert_eq!(total(&sent, "mget"), slots, "{sent:?}");

    assert_eq!(
        counted
            .store
            .delete_many(&tagged)
            .await
            .expect("delete_many"),
        1_000
    );
    let sent = counted.sent().await;
    assert_eq!(total(&sent, "unlink"), slots, "{sent:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_spread_over_the_cluster_reach_every_node_once_per_slot() {
    let mut counted = Counted::start().await;
    let keys: Vec<String> = (0..300).map(|i| format!("spread:{i}")).collect();
    let slots = counted.slots(&keys).await as u64;

    counted
        .store
        .set_many(entries(&keys), None)
        .await
        .expect("set_many");
    let sent = counted.sent().await;
    assert_eq!(total(&sent, "mset"), slots, "{sent:?}");
    assert!(
        sent.iter()
            .all(|node| node.get("mset").is_some_and(|&n| n > 0)),
        "300 keys touch every primary: {sent:?}"
    );

    let values = counted.store.get_many(&keys).await.expect("get_many");
    assert_eq!(values.iter().flatten().count(), 300);
    assert_eq!(total(&counted.sent().await, "mget"), slots);

    // Clearing scans every primary, each SCAN checked to have reached its node.
    assert_eq!(
        counted.store.clear_prefix("spread:").await.expect("clear"),
        300
    );
    let sent = counted.sent().await;
    for node in &sent {
        let scans = node.get("scan").copied().unwrap_or(0);
        assert!(scans > 0, "a primary was not scanned: {sent:?}");
        assert_eq!(node.get("cluster|myid").copied(), Some(scans), "{sent:?}");
    }
    assert!(!sent.iter().any(|node| node.contains_key("keys")
        || node.contains_key("flushdb")
        || node.contains_key("flushall")));
}
