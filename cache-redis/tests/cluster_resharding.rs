//! Slots move while the store holds the old slot map: batches still succeed (the store fetches
//! the map again and repeats the batch once), single-key calls follow the redirection, batches
//! work in the middle of a slot's migration, and `clear_prefix` finds a primary that joined.
//! Runs on throwaway clusters of three primaries (four for the last).

mod common;

use std::time::Duration;

use cache_core::{Backend, Bytes, Condition};
use cache_redis::RedisBackend;
use common::ThrowawayCluster;
use redis::aio::MultiplexedConnection;

async fn query<T: redis::FromRedisValue>(
    connection: &mut MultiplexedConnection,
    command: &mut redis::Cmd,
) -> T {
    command
        .query_async(connection)
        .await
        .unwrap_or_else(|error| panic!("{command:?}: {error}"))
}

/// Every node's id, in the order of `cluster.nodes`.
async fn node_ids(cluster: &ThrowawayCluster) -> Vec<String> {
    let mut ids = Vec::new();
    for connection in &mut cluster.raw_connections().await {
        let id: String = query(connection, redis::cmd("CLUSTER").arg("MYID")).await;
        ids.push(id);
    }
    ids
}

/// Marks `slot` as leaving node `from` for node `to` (IMPORTING / MIGRATING): from now on
/// `from` answers ASK (or TRYAGAIN) for keys of the slot it no longer holds.
async fn begin_migration(cluster: &ThrowawayCluster, slot: u16, from: usize, to: usize) {
    let ids = node_ids(cluster).await;
    let _: () = query(
        &mut cluster.nodes[to].raw().await,
        redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("IMPORTING")
            .arg(&ids[from]),
    )
    .await;
    let _: () = query(
        &mut cluster.nodes[from].raw().await,
        redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("MIGRATING")
            .arg(&ids[to]),
    )
    .await;
}

/// The keys of `slot` that node `from` still holds, at most `limit` of them.
async fn keys_in_slot(
    cluster: &ThrowawayCluster,
    slot: u16,
    from: usize,
    limit: usize,
) -> Vec<String> {
    query(
        &mut cluster.nodes[from].raw().await,
        redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(slot)
            .arg(limit),
    )
    .await
}

/// Copies `keys` from node `from` to node `to` and removes them from `from`, as resharding does.
async fn migrate_keys(cluster: &ThrowawayCluster, from: usize, to: usize, keys: &[String]) {
    if keys.is_empty() {
        return;
    }
    let _: () = query(
        &mut cluster.nodes[from].raw().await,
        redis::cmd("MIGRATE")
            .arg("127.0.0.1")
            .arg(cluster.nodes[to].port())
            .arg("")
            .arg(0)
            .arg(5_000)
            .arg("KEYS")
            .arg(keys),
    )
    .await;
}

/// Gives `slot` to node `to` on every node, which ends a migration.
async fn finish_migration(cluster: &ThrowawayCluster, slot: u16, to: usize) {
    let ids = node_ids(cluster).await;
    for connection in &mut cluster.raw_connections().await {
        let _: () = query(
            connection,
            redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg("NODE")
                .arg(&ids[to]),
        )
        .await;
    }
}

/// Moves `slot` and its keys from node `from` to node `to`, the way `redis-cli --cluster
/// reshard` does: IMPORTING / MIGRATING, MIGRATE of the keys, then SETSLOT NODE everywhere.
async fn move_slot(cluster: &ThrowawayCluster, slot: u16, from: usize, to: usize) {
    begin_migration(cluster, slot, from, to).await;
    let keys = keys_in_slot(cluster, slot, from, 10_000).await;
    assert!(!keys.is_empty(), "the slot to move holds the test's keys");
    migrate_keys(cluster, from, to, &keys).await;
    finish_migration(cluster, slot, to).await;
}

/// A hash tag whose slot the first primary serves (slots 0 to 5460), and that slot. Slot 0 is
/// left out: it is the slot the store routes the first primary's requests by.
async fn tag_on_first_primary(cluster: &ThrowawayCluster, name: &str) -> (String, u16) {
    let mut first = cluster.nodes[0].raw().await;
    for n in 0.. {
        let tag = format!("{{{name}{n}}}");
        let slot: u16 = query(&mut first, redis::cmd("CLUSTER").arg("KEYSLOT").arg(&tag)).await;
        if (1..=5_460).contains(&slot) {
            return (tag, slot);
        }
    }
    unreachable!("some tag hashes to the first primary")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_keep_working_after_a_slot_moves() {
    let cluster = ThrowawayCluster::start().await;
    let store = RedisBackend::open(&cluster.url())
        .await
        .expect("connects to the throwaway cluster");

    // A hash tag in a slot of the first primary, to be moved to the second. It then becomes
    // the lowest slot of the second primary, the slot a batch for that node is routed by: the
    // store must bring redis-rs's slot map up to date too, not only its own.
    let (tag, slot) = tag_on_first_primary(&cluster, "moving").await;
    let moving: Vec<String> = (0..50).map(|i| format!("{tag}:{i}")).collect();
    let mut keys: Vec<String> = (0..50).map(|i| format!("staying:{i}")).collect();
    keys.extend(moving.iter().cloned());
    let entries = |round: &str| -> Vec<(String, Bytes)> {
        keys.iter()
            .map(|key| (key.clone(), Bytes::from(format!("{key} {round}"))))
            .collect()
    };
    store
        .set_many(entries("before"), None)
        .await
        .expect("set_many");
    assert!(
        store
            .get_many(&keys)
            .await
            .expect("get_many")
            .iter()
            .all(Option::is_some)
    );

    // Move the slot to the second primary, behind the store's back.
    move_slot(&cluster, slot, 0, 1).await;

    // The store's slot map is now stale; a batch finds its way anyway.
    let values = store
        .get_many(&keys)
        .await
        .expect("get_many after the move");
    for (key, value) in keys.iter().zip(&values) {
        assert_eq!(value, &Some(Bytes::from(format!("{key} before"))), "{key}");
    }
    store
        .set_many(entries("after"), Some(Duration::from_secs(600)))
        .await
        .expect("set_many after the move");
    assert_eq!(
        store.get(&moving[7]).await.expect("get"),
        Some(Bytes::from(format!("{} after", moving[7])))
    );
    assert!(
        store
            .set(&moving[8], Bytes::from("x"), None, Condition::Always)
            .await
            .expect("set")
    );
    // Clearing scans the primaries of the new map and finds the moved keys on their new node.
    assert_eq!(
        store.clear_prefix(&format!("{tag}:")).await.expect("clear"),
        50
    );
    assert_eq!(store.delete_many(&keys).await.expect("delete_many"), 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_work_while_a_slot_is_migrating() {
    let cluster = ThrowawayCluster::start().await;
    let store = RedisBackend::open(&cluster.url())
        .await
        .expect("connects to the throwaway cluster");
    let (tag, slot) = tag_on_first_primary(&cluster, "migrating").await;
    let present: Vec<String> = (0..40).map(|i| format!("{tag}:{i}")).collect();
    let mut keys: Vec<String> = (0..40).map(|i| format!("elsewhere:{i}")).collect();
    keys.extend(present.iter().cloned());
    let entries = |keys: &[String], round: &str| -> Vec<(String, Bytes)> {
        keys.iter()
            .map(|key| (key.clone(), Bytes::from(format!("{key} {round}"))))
            .collect()
    };
    store
        .set_many(entries(&keys, "before"), None)
        .await
        .expect("set_many");

    // Half the slot's keys have reached the second primary; the first answers ASK for those
    // and TRYAGAIN for a command that names both halves.
    begin_migration(&cluster, slot, 0, 1).await;
    let half = keys_in_slot(&cluster, slot, 0, 20).await;
    assert_eq!(half.len(), 20);
    migrate_keys(&cluster, 0, 1, &half).await;

    // Keys of the slot that exist nowhere are misses, not errors. One key is named twice.
    let mut asked = keys.clone();
    asked.extend((0..5).map(|i| format!("{tag}:absent:{i}")));
    asked.push(half[3].clone());
    let values = store
        .get_many(&asked)
        .await
        .expect("get_many during the migration");
    for (key, value) in asked.iter().zip(&values) {
        let expected = (!key.contains(":absent:")).then(|| Bytes::from(format!("{key} before")));
        assert_eq!(value, &expected, "{key}");
    }

    // Writes of old keys on either node and of new keys of the slot succeed, with a TTL and
    // without.
    let mut written = keys.clone();
    written.extend((0..5).map(|i| format!("{tag}:new:{i}")));
    store
        .set_many(entries(&written, "during"), Some(Duration::from_secs(600)))
        .await
        .expect("set_many with a TTL during the migration");
    store
        .set_many(entries(&written, "again"), None)
        .await
        .expect("set_many without a TTL during the migration");
    let values = store.get_many(&written).await.expect("get_many");
    for (key, value) in written.iter().zip(&values) {
        assert_eq!(value, &Some(Bytes::from(format!("{key} again"))), "{key}");
    }

    // The migration ends; everything is where the store expects it.
    let rest = keys_in_slot(&cluster, slot, 0, 10_000).await;
    migrate_keys(&cluster, 0, 1, &rest).await;
    finish_migration(&cluster, slot, 1).await;
    let values = store
        .get_many(&written)
        .await
        .expect("get_many after the migration");
    for (key, value) in written.iter().zip(&values) {
        assert_eq!(value, &Some(Bytes::from(format!("{key} again"))), "{key}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_prefix_finds_keys_on_a_primary_it_has_not_seen() {
    let mut cluster = ThrowawayCluster::start().await;
    let store = RedisBackend::open(&cluster.url())
        .await
        .expect("connects to the throwaway cluster");
    let (tag, slot) = tag_on_first_primary(&cluster, "joining").await;
    let keys: Vec<String> = (0..30).map(|i| format!("{tag}:{i}")).collect();
    let entries: Vec<(String, Bytes)> = keys
        .iter()
        .map(|key| (key.clone(), Bytes::from(key.clone())))
        .collect();
    // The store learns the three-primary slot map here.
    store.set_many(entries, None).await.expect("set_many");

    // A fourth primary joins and takes the slot; the store meets no redirection meanwhile.
    cluster.add_primary().await;
    move_slot(&cluster, slot, 0, 3).await;

    assert_eq!(
        store.clear_prefix(&format!("{tag}:")).await.expect("clear"),
        30,
        "clear_prefix scans the primary that joined"
    );
    let left = keys_in_slot(&cluster, slot, 3, 100).await;
    assert!(left.is_empty(), "keys left behind: {left:?}");
}
