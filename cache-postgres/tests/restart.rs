//! A server restart in the middle of traffic, on a throwaway PostgreSQL of this test's own: calls
//! fail with `Error::Backend` within the configured timeouts while it is down, the pool recovers
//! once it is back, and nothing written before is lost.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_core::{Backend, Bytes, Condition, Error};
use cache_postgres::PostgresBackend;
use common::throwaway::ThrowawayPostgres;

const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(1);
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(1);
/// A call may take its acquire and statement timeouts plus the client's grace; beyond this
/// margin over that, the timeouts are not being honoured (a hang), whatever the machine's load.
const HANG_MARGIN: Duration = Duration::from_secs(5);

fn call_limit() -> Duration {
    ACQUIRE_TIMEOUT + STATEMENT_TIMEOUT + HANG_MARGIN
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|error| panic!("a blocking step failed: {error}"))
}

/// One call that checks the contract while the server may be down: it returns within the
/// limit, and if it fails, it fails as a backend error.
async fn timed_get(store: &PostgresBackend, key: &str) -> Result<Option<Bytes>, Error> {
    let started = Instant::now();
    let result = tokio::time::timeout(call_limit(), store.get(key))
        .await
        .unwrap_or_else(|_| panic!("a get hung for more than {:?}", call_limit()));
    if let Err(error) = &result {
        assert!(matches!(error, Error::Backend { .. }), "{error:?}");
        assert!(
            error.is_transient(),
            "a server away is worth a retry: {error:?}"
        );
    }
    assert!(started.elapsed() < call_limit());
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_restart_fails_calls_with_backend_errors_then_the_pool_recovers() {
    let server = Arc::new(blocking(ThrowawayPostgres::start).await);
    let url = format!(
        "{}?table=restart&pool_max=4&acquire_timeout={}ms&statement_timeout={}ms\
         &purge_interval=off",
        server.url(),
        ACQUIRE_TIMEOUT.as_millis(),
        STATEMENT_TIMEOUT.as_millis()
    );
    let store = Arc::new(PostgresBackend::open(&url).await.unwrap());
    let written: Vec<(String, Bytes)> = (0..500)
        .map(|i| (format!("before:{i}"), Bytes::from(format!("value {i}"))))
        .collect();
    store.set_many(written.clone(), None).await.unwrap();

    // Traffic from several tasks all through the restart.
    let stop = Arc::new(AtomicBool::new(false));
    let (successes, failures) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let traffic: Vec<_> = (0..6)
        .map(|task| {
            let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
            let (successes, failures) = (Arc::clone(&successes), Arc::clone(&failures));
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let key = format!("traffic:{task}:{}", i % 50);
                    let started = Instant::now();
                    let outcome = tokio::time::timeout(
                        call_limit(),
                        store.set(&key, Bytes::from_static(b"x"), None, Condition::Always),
                    )
                    .await
                    .unwrap_or_else(|_| panic!("a set hung for more than {:?}", call_limit()));
                    assert!(started.elapsed() < call_limit());
                    match outcome {
                        Ok(_) => successes.fetch_add(1, Ordering::Relaxed),
                        Err(Error::Backend { .. }) => failures.fetch_add(1, Ordering::Relaxed),
                        Err(other) => panic!("expected a backend error, got {other:?}"),
                    };
                    i += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let down = Arc::clone(&server);
    blocking(move || down.stop()).await;
    // While it is down, every call fails, as a backend error, within the timeouts.
    for _ in 0..5 {
        assert!(
            timed_get(&store, "before:1").await.is_err(),
            "a get succeeded with the server down"
        );
    }

    let up = Arc::clone(&server);
    blocking(move || up.start_again()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while timed_get(&store, "before:1").await.is_err() {
        assert!(
            Instant::now() < deadline,
            "the store did not recover within 30 s of the restart"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Recovered: calls succeed again, one after another and all at once.
    for i in 0..50 {
        timed_get(&store, &format!("before:{i}")).await.unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for task in traffic {
        task.await.unwrap();
    }
    assert!(
        failures.load(Ordering::Relaxed) > 0,
        "no traffic call saw the outage"
    );
    assert!(successes.load(Ordering::Relaxed) > 0);

    // A clean restart keeps even an UNLOGGED table's rows.
    let keys: Vec<String> = written.iter().map(|(key, _)| key.clone()).collect();
    let values = store.get_many(&keys).await.unwrap();
    for ((key, value), read) in written.iter().zip(values) {
        assert_eq!(read.as_ref(), Some(value), "{key} was lost in the restart");
    }
    store.close().await.unwrap();
}
