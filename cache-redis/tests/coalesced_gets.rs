//! Concurrent `get`s of one handle go to the server as shared `MGET`s (on a cluster, as one
//! pipeline of `GET`s per node), and every caller still gets its own answer: values, misses, keys
//! of another type refused by name, cancelled callers and openers, and a server or a cluster
//! node that goes away.

mod common;

use std::sync::Arc;
use std::time::Duration;

use cache_core::{Backend, Bytes, Condition, Error};
use cache_redis::RedisBackend;
use common::{ThrowawayCluster, ThrowawayRedis, command_calls};

const TASKS: usize = 64;
const ROUNDS: usize = 50;

/// Runs `TASKS` tasks of `ROUNDS` gets each over `keys`, each task starting at its own place.
async fn read_concurrently(
    store: &Arc<RedisBackend>,
    keys: &Arc<Vec<String>>,
) -> Vec<Vec<(String, cache_core::Result<Option<Bytes>>)>> {
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (store, keys) = (Arc::clone(store), Arc::clone(keys));
            tokio::spawn(async move {
                let mut answers = Vec::with_capacity(ROUNDS);
                for round in 0..ROUNDS {
                    let key = &keys[(task * 7 + round) % keys.len()];
                    answers.push((key.clone(), store.get(key).await));
                }
                answers
            })
        })
        .collect();
    let mut all = Vec::with_capacity(TASKS);
    for task in tasks {
        all.push(task.await.expect("a reading task"));
    }
    all
}

/// Values `k0`..`k39`, misses `missing0`..`missing19` and a list under `a-list`, written through
/// `store` and `raw`; the keys to read.
async fn mixed_keys(
    store: &RedisBackend,
    raw: &mut impl redis::aio::ConnectionLike,
) -> Arc<Vec<String>> {
    let mut keys = Vec::new();
    for n in 0..40 {
        let key = format!("k{n}");
        store
            .set(&key, Bytes::from(format!("v{n}")), None, Condition::Always)
            .await
            .expect("set");
        keys.push(key);
    }
    keys.extend((0..20).map(|n| format!("missing{n}")));
    let _: () = redis::cmd("RPUSH")
        .arg("a-list")
        .arg("x")
        .query_async(raw)
        .await
        .expect("RPUSH");
    keys.push("a-list".to_owned());
    Arc::new(keys)
}

/// Every answer is the one its key deserves: its value, a miss, or the list refused by name.
fn check_answers(answers: Vec<Vec<(String, cache_core::Result<Option<Bytes>>)>>) {
    for (key, answer) in answers.into_iter().flatten() {
        match (key.as_str(), answer) {
            ("a-list", Err(Error::Decode { key: named, .. })) => assert_eq!(named, "a-list"),
            ("a-list", other) => panic!("a key of another type must be refused, got {other:?}"),
            (missing, Ok(None)) if missing.starts_with("missing") => {}
            (present, Ok(Some(value))) if present.starts_with('k') => {
                assert_eq!(
                    value,
                    Bytes::from(format!("v{}", &present[1..])),
                    "{present}"
                );
            }
            (key, other) => panic!("{key}: unexpected answer {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_gets_share_mgets_and_each_caller_gets_its_own_answer() {
    let server = ThrowawayRedis::start(&[]).await;
    let store = Arc::new(RedisBackend::open(&server.url()).await.expect("connects"));
    let mut raw = server.raw().await;
    let keys = mixed_keys(&store, &mut raw).await;
    let before = command_calls(&mut raw).await;
    let answers = read_concurrently(&store, &keys).await;
    let after = command_calls(&mut raw).await;
    check_answers(answers);
    let calls =
        |name: &str| after.get(name).copied().unwrap_or(0) - before.get(name).copied().unwrap_or(0);
    let (gets, mgets) = (calls("get"), calls("mget"));
    assert!(
        mgets > 0,
        "64 tasks reading at once sent no MGET ({gets} GETs)"
    );
    assert!(
        gets + mgets < (TASKS * ROUNDS) as u64,
        "{} gets took {gets} GETs and {mgets} MGETs: nothing was shared",
        TASKS * ROUNDS
    );
    println!("{} gets: {gets} GETs and {mgets} MGETs", TASKS * ROUNDS);
}

/// One thread, so that the callers reach their first wait (an opener yielding before it sends,
/// the others joined to its batch) before a share of them, openers among them, is cancelled.
#[tokio::test(flavor = "current_thread")]
async fn cancelled_callers_never_leave_the_others_waiting() {
    let server = ThrowawayRedis::start(&[]).await;
    let store = Arc::new(RedisBackend::open(&server.url()).await.expect("connects"));
    store
        .set("k", Bytes::from("v"), None, Condition::Always)
        .await
        .expect("set");
    for round in 0..20_u64 {
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let store = Arc::clone(&store);
                tokio::spawn(async move { store.get("k").await })
            })
            .collect();
        tokio::task::yield_now().await;
        // Abort a different share of the callers each round, openers among them.
        for (index, task) in tasks.iter().enumerate() {
            if (index as u64 + round).is_multiple_of(3) {
                task.abort();
            }
        }
        for task in tasks {
            match tokio::time::timeout(Duration::from_secs(10), task).await {
                Ok(Ok(answer)) => assert_eq!(answer.expect("get"), Some(Bytes::from("v"))),
                Ok(Err(join)) => assert!(join.is_cancelled(), "{join}"),
                Err(_) => panic!("a get waited on a batch that nobody sends"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_goes_away_fails_every_caller_within_the_deadline() {
    let mut server = ThrowawayRedis::start(&[]).await;
    let url = format!(
        "{}?response_timeout=500ms&connect_timeout=500ms",
        server.url()
    );
    let store = Arc::new(RedisBackend::open(&url).await.expect("connects"));
    store
        .set("k", Bytes::from("v"), None, Condition::Always)
        .await
        .expect("set");
    server.kill();
    let tasks: Vec<_> = (0..TASKS)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move { store.get("k").await })
        })
        .collect();
    for task in tasks {
        let answer = tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("a get hung after its server went away")
            .expect("a reading task");
        match answer {
            Err(Error::Backend { .. }) => {}
            other => panic!("a get of a gone server must fail as a backend error, got {other:?}"),
        }
    }
}

/// On a cluster the batch goes as one pipeline of `GET`s per node: keys of every slot, misses
/// and a key of another type (which fails its node's pipeline, so its callers ask alone) all get
/// their own answers, many times over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_gets_on_a_cluster_each_get_their_own_answer() {
    let cluster = ThrowawayCluster::start().await;
    let store = Arc::new(RedisBackend::open(&cluster.url()).await.expect("connects"));
    let mut raw = redis::cluster::ClusterClient::new(
        cluster
            .url()
            .trim_start_matches("redis+cluster://")
            .split(',')
            .map(|node| format!("redis://{node}"))
            .collect::<Vec<_>>(),
    )
    .expect("a cluster client")
    .get_async_connection()
    .await
    .expect("connects");
    let keys = mixed_keys(&store, &mut raw).await;
    for _ in 0..3 {
        check_answers(read_concurrently(&store, &keys).await);
    }
}

/// A node of the cluster goes away while 64 tasks read: every call ends within the bound, and
/// none answers a wrong value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_that_goes_away_never_hangs_or_misanswers_a_get() {
    let mut cluster = ThrowawayCluster::start().await;
    let url = format!(
        "{}?response_timeout=500ms&connect_timeout=500ms",
        cluster.url()
    );
    let store = Arc::new(RedisBackend::open(&url).await.expect("connects"));
    let keys: Arc<Vec<String>> = Arc::new((0..60).map(|n| format!("k{n}")).collect());
    for (n, key) in keys.iter().enumerate() {
        store
            .set(key, Bytes::from(format!("v{n}")), None, Condition::Always)
            .await
            .expect("set");
    }
    cluster.nodes[1].kill();
    // A get may take the batch it joined and then its own request, each bounded by the store's
    // deadline (2.5 s here): a call past 10 s has hung.
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let (store, keys) = (Arc::clone(&store), Arc::clone(&keys));
            tokio::spawn(async move {
                let mut answers = Vec::with_capacity(ROUNDS);
                let mut slowest = Duration::ZERO;
                for round in 0..ROUNDS {
                    let key = keys[(task * 7 + round) % keys.len()].clone();
                    let started = std::time::Instant::now();
                    let answer = tokio::time::timeout(Duration::from_secs(10), store.get(&key))
                        .await
                        .unwrap_or_else(|_| panic!("a get of {key} hung after a node went away"));
                    slowest = slowest.max(started.elapsed());
                    answers.push((key, answer));
                }
                (answers, slowest)
            })
        })
        .collect();
    let (mut served, mut failed, mut slowest) = (0, 0, Duration::ZERO);
    for task in tasks {
        let (answers, task_slowest) = task.await.expect("a reading task");
        slowest = slowest.max(task_slowest);
        for (key, answer) in answers {
            match answer {
                Ok(Some(value)) => {
                    assert_eq!(value, Bytes::from(format!("v{}", &key[1..])), "{key}");
                    served += 1;
                }
                Err(Error::Backend { .. }) => failed += 1,
                other => panic!("{key}: a present key answered {other:?}"),
            }
        }
    }
    assert!(failed > 0, "no get met the node that went away");
    println!("node gone: {served} gets served, {failed} failed; slowest get {slowest:?}");
}
