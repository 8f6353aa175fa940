//! A slot moves to another primary while the store holds the old slot map: batches still
//! succeed (the store fetches the map again and repeats the batch once), and single-key calls
//! follow the redirection. Runs on a throwaway three-primary cluster.

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

/// Moves `slot` and its keys from node `from` to node `to`, the way `redis-cli --cluster
/// reshard` does: IMPORTING / MIGRATING, MIGRATE of the keys, then SETSLOT NODE everywhere.
async fn move_slot(cluster: &ThrowawayCluster, slot: u16, from: usize, to: usize) {
    let mut connections = cluster.raw_connections().await;
    let mut ids = Vec::new();
    for connection in &mut connections {
        let id: String = query(connection, redis::cmd("CLUSTER").arg("MYID")).await;
        ids.push(id);
    }
    let _: () = query(
        &mut connections[to],
        redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("IMPORTING")
            .arg(&ids[from]),
    )
    .await;
    let _: () = query(
        &mut connections[from],
        redis::cmd("CLUSTER")
            .arg("SETSLOT")
            .arg(slot)
            .arg("MIGRATING")
            .arg(&ids[to]),
    )
    .await;
    let keys: Vec<String> = query(
        &mut connections[from],
        redis::cmd("CLUSTER")
            .arg("GETKEYSINSLOT")
            .arg(slot)
            .arg(10_000),
    )
    .await;
    assert!(!keys.is_empty(), "the slot to move holds the test's keys");
    let _: () = query(
        &mut connections[from],
        redis::cmd("MIGRATE")
            .arg("127.0.0.1")
            .arg(cluster.nodes[to].port())
            .arg("")
            .arg(0)
            .arg(5_000)
            .arg("KEYS")
            .arg(&keys),
    )
    .await;
    for connection in &mut connections {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_keep_working_after_a_slot_moves() {
    let cluster = ThrowawayCluster::start().await;
    let store = RedisBackend::connect(&cluster.url())
        .await
        .expect("connects to the throwaway cluster");

    // A hash tag in a slot of the first primary (slots 0 to 5460), to be moved to the second.
    // It then becomes the lowest slot of the second primary, the slot a batch for that node is
    // routed by: the store must bring redis-rs's slot map up to date too, not only its own.
    let mut first = cluster.nodes[0].raw().await;
    let mut tag = String::new();
    let mut slot = u16::MAX;
    for n in 0.. {
        tag = format!("{{moving{n}}}");
        slot = query(&mut first, redis::cmd("CLUSTER").arg("KEYSLOT").arg(&tag)).await;
        if slot <= 5_460 {
            break;
        }
    }
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
