//! A server that dies or freezes mid-traffic: calls fail with `Error::Backend` instead of
//! hanging, and the same store serves again once the server is back. Each test runs its own
//! throwaway `redis-server`, never a shared one.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache_core::{Backend, Cache, Error};
use cache_redis::RedisBackend;
use common::ThrowawayRedis;

/// Short timeouts, so that the test is quick; the store's deadline is derived from them.
const TIMEOUTS: &str = "connect_timeout=300ms&response_timeout=500ms";

/// Far beyond the store's deadline (about 1.6 s with `TIMEOUTS`): a call still running by then
/// has hung. This is a hang detector, not a speed check.
const HANG_LIMIT: Duration = Duration::from_secs(15);

/// How long the store may take to notice the server is back.
const RECOVERY_LIMIT: Duration = Duration::from_secs(15);

async fn no_hang<T>(what: &str, call: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(HANG_LIMIT, call)
        .await
        .unwrap_or_else(|_| panic!("{what} hung for {HANG_LIMIT:?}"))
}

async fn recovers(store: &RedisBackend) {
    let deadline = Instant::now() + RECOVERY_LIMIT;
    loop {
        let written = no_hang(
            "set after restart",
            store.set("back", "yes".into(), None, Default::default()),
        )
        .await;
        match written {
            Ok(_) => return,
            Err(Error::Backend { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("the store did not recover within {RECOVERY_LIMIT:?}: {error}"),
        }
    }
}

/// Every kind of call fails with `Error::Backend`, promptly.
async fn every_call_fails_with_backend_error(store: &RedisBackend) {
    let keys = vec!["a".to_owned(), "b".to_owned()];
    let outcomes = [
        ("get", no_hang("get", store.get("a")).await.map(drop)),
        (
            "set",
            no_hang("set", store.set("a", "v".into(), None, Default::default()))
                .await
                .map(drop),
        ),
        (
            "get_many",
            no_hang("get_many", store.get_many(&keys)).await.map(drop),
        ),
        (
            "set_many",
            no_hang(
                "set_many",
                store.set_many(vec![("a".into(), "v".into())], Some(Duration::from_secs(9))),
            )
            .await,
        ),
        (
            "delete_many",
            no_hang("delete_many", store.delete_many(&keys))
                .await
                .map(drop),
        ),
        ("ttl", no_hang("ttl", store.ttl("a")).await.map(drop)),
        (
            "expire_in",
            no_hang("expire_in", store.expire_in("a", None))
                .await
                .map(drop),
        ),
        (
            "clear_prefix",
            no_hang("clear_prefix", store.clear_prefix(""))
                .await
                .map(drop),
        ),
    ];
    for (call, outcome) in outcomes {
        match outcome {
            Err(
                error @ Error::Backend {
                    store, operation, ..
                },
            ) => {
                assert_eq!(store, "redis");
                assert_eq!(operation, call);
                assert!(
                    error.is_transient(),
                    "a server away is worth a retry: {error}"
                );
            }
            other => panic!("{call} with the server gone: expected Error::Backend, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_server_gives_backend_errors_then_the_store_recovers_on_restart() {
    let mut server = ThrowawayRedis::start(&[]).await;
    let store = Arc::new(
        RedisBackend::open(&format!("{}?{TIMEOUTS}", server.url()))
            .await
            .expect("connects to the throwaway server"),
    );
    let cache: Cache<String> = Cache::builder(Arc::clone(&store) as Arc<dyn Backend>)
        .prefix("traffic:")
        .build();

    // Traffic from several tasks, running while the server dies and comes back.
    let stop = Arc::new(AtomicBool::new(false));
    let (successes, failures) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let workers: Vec<_> = (0..4)
        .map(|worker| {
            let (cache, stop) = (cache.clone(), Arc::clone(&stop));
            let (successes, failures) = (Arc::clone(&successes), Arc::clone(&failures));
            tokio::spawn(async move {
                let mut round = 0_u64;
                while !stop.load(Ordering::Acquire) {
                    let key = format!("w{worker}:{}", round % 50);
                    let outcome = no_hang("a traffic call", async {
                        cache.set(&key, &format!("value {round}")).await?;
                        cache.get_many([key.as_str(), "other"]).await?;
                        cache.get(&key).await
                    })
                    .await;
                    match outcome {
                        Ok(_) => successes.fetch_add(1, Ordering::Relaxed),
                        Err(Error::Backend { .. }) => failures.fetch_add(1, Ordering::Relaxed),
                        Err(other) => panic!("traffic got a non-backend error: {other:?}"),
                    };
                    round += 1;
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            })
        })
        .collect();

    while successes.load(Ordering::Relaxed) < 100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill();
    every_call_fails_with_backend_error(&store).await;
    let failures_while_down = failures.load(Ordering::Relaxed);

    server.restart().await;
    recovers(&store).await;
    let successes_before = successes.load(Ordering::Relaxed);
    let deadline = Instant::now() + RECOVERY_LIMIT;
    while successes.load(Ordering::Relaxed) < successes_before + 100 {
        assert!(
            Instant::now() < deadline,
            "traffic did not resume after the restart"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Release);
    for worker in workers {
        worker.await.expect("a traffic task panicked");
    }
    assert!(
        failures_while_down > 0 || failures.load(Ordering::Relaxed) > 0,
        "the traffic never noticed the server was gone"
    );

    // The restarted server is empty; the store works in full on it.
    cache.set("after", &"restart".into()).await.expect("set");
    assert_eq!(
        cache.get("after").await.expect("get").as_deref(),
        Some("restart")
    );
    let written = cache_entries(&store).await;
    assert!(written > 0);
    assert_eq!(cache.clear().await.expect("clear"), written);
}

async fn cache_entries(store: &RedisBackend) -> u64 {
    let mut count = 0;
    for worker in 0..4 {
        for i in 0..50 {
            if store
                .contains(&format!("traffic:w{worker}:{i}"))
                .await
                .expect("contains")
            {
                count += 1;
            }
        }
    }
    count + u64::from(store.contains("traffic:after").await.expect("contains"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frozen_server_times_out_with_backend_errors_and_serves_again_when_thawed() {
    let server = ThrowawayRedis::start(&[]).await;
    let store = RedisBackend::open(&format!("{}?{TIMEOUTS}", server.url()))
        .await
        .expect("connects to the throwaway server");
    store
        .set("k", "v".into(), None, Default::default())
        .await
        .expect("set");

    // SIGSTOP: the socket stays open but nothing answers, the case a response timeout is for.
    server.signal("STOP");
    let outcome = no_hang("get on a frozen server", store.get("k")).await;
    server.signal("CONT");
    match outcome {
        Err(error @ Error::Backend { .. }) => {
            let message = error.to_string();
            assert!(message.contains("during get"), "{message}");
            assert!(
                error.is_transient(),
                "a timed-out call is worth a retry: {message}"
            );
        }
        other => panic!("expected Error::Backend from a frozen server, got {other:?}"),
    }
    recovers(&store).await;
    assert_eq!(
        store.get("k").await.expect("get").as_deref(),
        Some(&b"v"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_a_dead_server_is_a_prompt_backend_error() {
    let mut server = ThrowawayRedis::start(&[]).await;
    let url = format!("{}?{TIMEOUTS}", server.url());
    server.kill();
    match no_hang("connect", RedisBackend::open(&url)).await {
        Err(error @ Error::Backend { operation, .. }) => {
            assert_eq!(operation, "connect");
            assert!(error.is_transient(), "{error}");
        }
        other => panic!("expected Error::Backend, got {other:?}"),
    }
}

/// Past the server's `proto-max-bulk-len` the server drops the connection, and every call
/// multiplexed on it fails with it. The store reads the limit at connect and refuses such a value
/// with `Error::ValueTooLarge` before sending it: the small calls in flight beside it all succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_over_the_servers_limit_is_refused_before_it_breaks_the_connection() {
    let server = ThrowawayRedis::start(&["--proto-max-bulk-len", "1mb"]).await;
    let store = Arc::new(
        RedisBackend::open(&format!("{}?{TIMEOUTS}", server.url()))
            .await
            .expect("connect"),
    );
    let small: Vec<_> = (0..16)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .set(
                        &format!("small{i}"),
                        "v".into(),
                        None,
                        cache_core::Condition::Always,
                    )
                    .await
            })
        })
        .collect();
    let big = cache_core::Bytes::from(vec![7_u8; 2 * 1024 * 1024]);
    match store
        .set("big", big.clone(), None, cache_core::Condition::Always)
        .await
    {
        Err(Error::ValueTooLarge { key, size, limit }) => {
            assert_eq!((key.as_str(), size, limit), ("big", big.len(), 1024 * 1024));
        }
        other => panic!("expected ValueTooLarge, got {other:?}"),
    }
    let batch = store
        .set_many(vec![("a".into(), "v".into()), ("big".into(), big)], None)
        .await;
    assert!(
        matches!(batch, Err(Error::ValueTooLarge { .. })),
        "{batch:?}"
    );
    for task in small {
        assert!(
            task.await
                .expect("join")
                .expect("a small write beside the big one")
        );
    }
    assert_eq!(
        store.get("a").await.expect("get"),
        None,
        "a refused batch wrote a key"
    );
    assert_eq!(
        store.get("small0").await.expect("get").as_deref(),
        Some(&b"v"[..])
    );
}
