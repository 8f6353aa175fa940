//! What each call sends, counted by the server: `INFO commandstats` deltas around batches of
//! 1,000 keys. Command statistics are server-wide, so the test runs its own throwaway server,
//! where no other test's traffic can add to them.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cache_core::layers::Retry;
use cache_core::raw::Layer;
use cache_core::{Backend, Bytes, Condition};
use cache_redis::RedisBackend;
use cachette_test_support::layers;
use common::{ThrowawayRedis, command_calls, delta};

const BATCH: usize = 1_000;

struct Counted {
    server: ThrowawayRedis,
    store: RedisBackend,
    stats: redis::aio::MultiplexedConnection,
    last: HashMap<String, u64>,
}

impl Counted {
    async fn start() -> Self {
        let server = ThrowawayRedis::start(&[]).await;
        let store = RedisBackend::open(&server.url())
            .await
            .expect("connects to the throwaway server");
        let mut stats = server.raw().await;
        let last = command_calls(&mut stats).await;
        Self {
            server,
            store,
            stats,
            last,
        }
    }

    /// The commands the server ran since the last call.
    async fn sent(&mut self) -> Vec<(String, u64)> {
        let now = command_calls(&mut self.stats).await;
        let sent = delta(&self.last, &now);
        self.last = now;
        sent
    }
}

fn sent(pairs: &[(&str, u64)]) -> Vec<(String, u64)> {
    pairs
        .iter()
        .map(|(name, calls)| ((*name).to_owned(), *calls))
        .collect()
}

fn keys(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("rt:{i}")).collect()
}

fn entries(keys: &[String]) -> Vec<(String, Bytes)> {
    keys.iter()
        .map(|key| (key.clone(), Bytes::from(key.clone())))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_of_1000_keys_are_one_command_each() {
    let mut counted = Counted::start().await;
    let store = &counted.store;
    let batch = keys(0..BATCH);

    store
        .set_many(entries(&batch), Some(Duration::from_secs(600)))
        .await
        .unwrap();
    assert_eq!(
        counted.sent().await,
        sent(&[("exec", 1), ("multi", 1), ("set", BATCH as u64)]),
        "set_many with a TTL is one MULTI/EXEC transaction of SET … PX"
    );

    let store = &counted.store;
    store.set_many(entries(&batch), None).await.unwrap();
    assert_eq!(
        counted.sent().await,
        sent(&[("mset", 1)]),
        "set_many without a TTL is one MSET"
    );

    // Half present, half missing, plus duplicates: still one MGET, answered positionally, with
    // the EXISTS count that tells a missing key from one of another type.
    let store = &counted.store;
    let mut asked = keys(BATCH / 2..BATCH + BATCH / 2);
    asked.extend(keys(0..10));
    let values = store.get_many(&asked).await.unwrap();
    assert_eq!(counted.sent().await, sent(&[("exists", 1), ("mget", 1)]));
    assert_eq!(
        values.iter().filter(|value| value.is_some()).count(),
        BATCH / 2 + 10
    );
    assert_eq!(values[BATCH], Some(Bytes::from("rt:0")));

    // 1,000 present keys named twice, and 500 missing ones: one UNLINK, an exact count.
    let store = &counted.store;
    let mut doomed = batch.clone();
    doomed.extend(batch.iter().cloned());
    doomed.extend(keys(BATCH..BATCH + 500));
    assert_eq!(store.delete_many(&doomed).await.unwrap(), BATCH as u64);
    assert_eq!(counted.sent().await, sent(&[("unlink", 1)]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_key_calls_are_one_command_each() {
    let mut counted = Counted::start().await;
    let ttl = Some(Duration::from_secs(60));

    let store = &counted.store;
    assert!(
        store
            .set("k", Bytes::from("v"), ttl, Condition::IfNotExists)
            .await
            .unwrap()
    );
    assert!(
        !store
            .set("k", Bytes::from("w"), ttl, Condition::IfNotExists)
            .await
            .unwrap()
    );
    assert_eq!(
        counted.sent().await,
        sent(&[("set", 2)]),
        "set with a TTL and if-not-exists is one SET … PX … NX"
    );

    // A zero TTL deletes instead of sending PX 0.
    let store = &counted.store;
    store
        .set(
            "k",
            Bytes::from("v"),
            Some(Duration::ZERO),
            Condition::Always,
        )
        .await
        .unwrap();
    assert_eq!(counted.sent().await, sent(&[("unlink", 1)]));

    // Persisting an eternal key reports it present: EXISTS and PERSIST in one transaction.
    let store = &counted.store;
    store
        .set("eternal", Bytes::from("v"), None, Condition::Always)
        .await
        .unwrap();
    counted.sent().await;
    let store = &counted.store;
    assert!(store.expire_in("eternal", None).await.unwrap());
    assert!(!store.expire_in("missing", None).await.unwrap());
    assert_eq!(
        counted.sent().await,
        sent(&[("exec", 2), ("exists", 2), ("multi", 2), ("persist", 2)])
    );

    let store = &counted.store;
    assert!(
        store
            .expire_in("eternal", Some(Duration::from_micros(1500)))
            .await
            .unwrap()
    );
    assert!(
        store.ttl("eternal").await.unwrap().is_some() || !store.contains("eternal").await.unwrap()
    );
    assert_eq!(
        counted
            .sent()
            .await
            .into_iter()
            .filter(|(name, _)| name == "pexpire")
            .collect::<Vec<_>>(),
        sent(&[("pexpire", 1)]),
        "TTLs are milliseconds: PEXPIRE, never EXPIRE"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clear_scans_and_unlinks_in_batches_and_never_flushes() {
    let mut counted = Counted::start().await;
    let store = &counted.store;
    // 2,500 keys under the prefix, and neighbours whose names a careless glob would match.
    let prefix = "app:[v1]*?\\:";
    let doomed: Vec<String> = (0..2_500).map(|i| format!("{prefix}{i}")).collect();
    let spared = [
        "app:v*?\\:1".to_owned(),
        "app:1*?\\:1".to_owned(),
        "app:[v1]X?\\:1".to_owned(),
        "app:[v1]*?:1".to_owned(),
        "app:[v1]*?\\".to_owned(),
        "APP:[v1]*?\\:1".to_owned(),
        "other".to_owned(),
    ];
    store.set_many(entries(&doomed), None).await.unwrap();
    store.set_many(entries(&spared), None).await.unwrap();
    counted.sent().await;

    let store = &counted.store;
    assert_eq!(store.clear_prefix(prefix).await.unwrap(), 2_500);
    let sent = counted.sent().await;
    let names: Vec<&str> = sent.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ["scan", "unlink"], "{sent:?}");
    let unlinks = sent[1].1;
    // Pages are gathered into UNLINKs of a thousand keys or so: a few, not one per key or page.
    assert!(
        (2..=4).contains(&unlinks),
        "{unlinks} UNLINKs for 2,500 keys"
    );

    let store = &counted.store;
    let left = store.get_many(&spared).await.unwrap();
    assert!(
        left.iter().all(Option::is_some),
        "a neighbour was removed: {left:?}"
    );
    assert_eq!(store.clear_prefix(prefix).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_through_a_stack_of_layers_are_still_one_command_each() {
    let mut counted = Counted::start().await;
    let store: Arc<dyn Backend> = Arc::new(
        RedisBackend::open(&counted.server.url())
            .await
            .expect("connects to the throwaway server"),
    );
    let store = layers::get_only(store);
    let store = layers::timed(store);
    let store = Retry::new(3).layer(store);
    let store = layers::observed(store);
    let store = layers::get_only(store);
    counted.sent().await;
    let batch = keys(0..BATCH);

    store
        .set_many(entries(&batch), Some(Duration::from_secs(600)))
        .await
        .unwrap();
    assert_eq!(
        counted.sent().await,
        sent(&[("exec", 1), ("multi", 1), ("set", BATCH as u64)]),
        "set_many stays one MULTI/EXEC transaction through the layers"
    );
    let values = store.get_many(&batch).await.unwrap();
    assert!(values.iter().all(Option::is_some));
    assert_eq!(counted.sent().await, sent(&[("exists", 1), ("mget", 1)]));
    assert_eq!(store.delete_many(&batch).await.unwrap(), BATCH as u64);
    assert_eq!(counted.sent().await, sent(&[("unlink", 1)]));
}
