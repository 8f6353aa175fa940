//! If-not-exists writes racing on one key: exactly one writer wins, whether the key was absent
//! or held an expired row, and none wins against a live row.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::{Backend, Bytes, Condition, Ttl};
use cache_postgres::PostgresBackend;
use tokio::sync::Barrier;

const TASKS: usize = 64;
const ROUNDS: usize = 8;

/// Starts `TASKS` if-not-exists writes of `key` at once; returns the values that were written.
async fn race(store: &Arc<PostgresBackend>, key: &str) -> Vec<Bytes> {
    let barrier = Arc::new(Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (store, barrier, key) = (Arc::clone(store), Arc::clone(&barrier), key.to_owned());
            tokio::spawn(async move {
                let value = Bytes::from(format!("task {task}"));
                barrier.wait().await;
                let won = store
                    .set(
                        &key,
                        value.clone(),
                        Some(Duration::from_secs(600)),
                        Condition::IfNotExists,
                    )
                    .await
                    .unwrap_or_else(|error| panic!("task {task}: {error}"));
                won.then_some(value)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        winners.extend(
            task.await
                .unwrap_or_else(|error| panic!("a racer failed: {error}")),
        );
    }
    winners
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_winner_per_round_whether_the_key_is_absent_or_expired() {
    let table = common::fresh_table("race");
    let store = Arc::new(common::store_on(&table, "pool_max=32&purge_interval=off").await);
    for round in 0..ROUNDS {
        let key = format!("race:{round}");
        if round % 2 == 1 {
            // Leave an expired row behind: the race must treat it as absent.
            store
                .set(
                    &key,
                    Bytes::from_static(b"stale"),
                    Some(Duration::from_millis(1)),
                    Condition::Always,
                )
                .await
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            while store.ttl(&key).await.unwrap().is_some() {
                assert!(Instant::now() < deadline, "the 1 ms key never expired");
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        let winners = race(&store, &key).await;
        assert_eq!(winners.len(), 1, "round {round}: {} winners", winners.len());
        assert_eq!(
            store.get(&key).await.unwrap(),
            Some(winners[0].clone()),
            "round {round}"
        );
        assert!(matches!(
            store.ttl(&key).await.unwrap(),
            Some(Ttl::Remaining(_))
        ));
    }
    common::drop_table(&table).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nobody_wins_against_a_live_row() {
    let table = common::fresh_table("race_live");
    let store = Arc::new(common::store_on(&table, "pool_max=32&purge_interval=off").await);
    for round in 0..3 {
        let key = format!("live:{round}");
        store
            .set(&key, Bytes::from_static(b"first"), None, Condition::Always)
            .await
            .unwrap();
        assert!(race(&store, &key).await.is_empty(), "round {round}");
        assert_eq!(
            store.get(&key).await.unwrap(),
            Some(Bytes::from_static(b"first"))
        );
        assert_eq!(store.ttl(&key).await.unwrap(), Some(Ttl::Eternal));
    }
    common::drop_table(&table).await;
}
