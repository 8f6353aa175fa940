//! Batches that overlap, running at once: `set_many` and `delete_many` lock rows in key order
//! whatever order the caller gives and whatever order the rows lie in the table, so they queue
//! behind each other and never deadlock.

mod common;

use std::sync::Arc;
use std::time::Duration;

use cache_core::{Backend, Bytes, Condition};
use tokio::sync::Barrier;

const KEYS: usize = 200;
const ROUNDS: usize = 30;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_batches_in_opposite_orders_do_not_deadlock() {
    let table = common::fresh_table("lock_order");
    let store = Arc::new(common::store_on(&table, "pool_max=16&purge_interval=off").await);
    let keys: Vec<String> = (0..KEYS).map(|i| format!("key:{i:04}")).collect();
    let reversed: Vec<String> = keys.iter().rev().cloned().collect();
    // One row at a time in descending order: the table's physical order is then the reverse of
    // key order, which is the order a sequential or bitmap scan meets (and would lock) them in.
    for key in &reversed {
        store
            .set(key, Bytes::from_static(b"seed"), None, Condition::Always)
            .await
            .unwrap();
    }
    let barrier = Arc::new(Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let (store, barrier) = (Arc::clone(&store), Arc::clone(&barrier));
            let (keys, reversed) = (keys.clone(), reversed.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                for round in 0..ROUNDS {
                    let result = match task % 4 {
                        0 => {
                            let entries = keys
                                .iter()
                                .map(|key| (key.clone(), Bytes::from(format!("{task}:{round}"))))
                                .collect();
                            store.set_many(entries, None).await.map(drop)
                        }
                        1 => store.delete_many(&reversed).await.map(drop),
                        // An already-expired batch is a delete of its keys.
                        2 => {
                            let entries = reversed
                                .iter()
                                .map(|key| (key.clone(), Bytes::from_static(b"gone")))
                                .collect();
                            store.set_many(entries, Some(Duration::ZERO)).await
                        }
                        // Rewrites rows one by one in descending order, so that rows keep
                        // landing in the table out of key order.
                        _ => {
                            let mut result = Ok(());
                            for key in reversed.iter().step_by(7) {
                                result = store
                                    .set(key, Bytes::from_static(b"one"), None, Condition::Always)
                                    .await
                                    .map(drop);
                                if result.is_err() {
                                    break;
                                }
                            }
                            result
                        }
                    };
                    if let Err(error) = result {
                        panic!("task {task}, round {round}: {error:?}");
                    }
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap_or_else(|error| panic!("{error}"));
    }
    common::drop_table(&table).await;
}
