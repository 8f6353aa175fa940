//! A server that goes silent mid-conversation, through a proxy that stops forwarding: `connect`
//! and calls give up within their limits with `Error::Backend`, and one statement that times out
//! costs its own connection only, not the rest of the pool.

mod common;

use std::error::Error as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::{Backend, Bytes, Condition, Error};
use cache_postgres::{PostgresBackend, StatementTimedOut};
use common::proxy::SilencingProxy;

/// Past this, the client-side limits are not being honoured (a hang), whatever the load.
const HANG: Duration = Duration::from_secs(20);

fn timed_out_on_the_client(error: &Error) -> bool {
    error
        .source()
        .is_some_and(|source| source.downcast_ref::<StatementTimedOut>().is_some())
}

#[tokio::test]
async fn connect_gives_up_when_the_server_goes_silent_while_creating_the_table() {
    // The store's first statements after connecting are those creating or checking the table.
    let proxy = SilencingProxy::start(&common::postgres_url(), b"pg_advisory_xact_lock").await;
    let table = common::fresh_table("silent_connect");
    let url = common::with_options(
        &proxy.url(&common::postgres_url()),
        &format!("table={table}&acquire_timeout=500ms&statement_timeout=300ms&purge_interval=off"),
    );
    let started = Instant::now();
    let result = tokio::time::timeout(HANG, PostgresBackend::open(&url))
        .await
        .unwrap_or_else(|_| panic!("connect hung for {HANG:?} on a silent server"));
    match result {
        Err(error @ Error::Backend { operation, .. }) => {
            assert_eq!(operation, "create_table");
            assert!(timed_out_on_the_client(&error), "{error:?}");
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
    // Statement limit plus the client's grace, with room for a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert!(proxy.accepted() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_timed_out_statement_does_not_retire_the_other_connections() {
    const POOL: usize = 3;
    let proxy = SilencingProxy::start(&common::postgres_url(), b"silence-this-connection").await;
    let table = common::fresh_table("silent_call");
    let url = common::with_options(
        &proxy.url(&common::postgres_url()),
        &format!(
            "table={table}&pool_max={POOL}&acquire_timeout=5s&statement_timeout=2s\
             &purge_interval=off"
        ),
    );
    let store = Arc::new(PostgresBackend::open(&url).await.unwrap());
    store
        .set("locked", Bytes::from_static(b"v"), None, Condition::Always)
        .await
        .unwrap();

    // Open every pooled connection: writers queue on a row another session holds, each on its
    // own connection, until the pool is full.
    let lock = common::RowLock::take(&table, b"locked").await;
    let writers: Vec<_> = (0..POOL)
        .map(|_| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                store
                    .set("locked", Bytes::from_static(b"w"), None, Condition::Always)
                    .await
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.accepted() < POOL {
        assert!(Instant::now() < deadline, "the pool never filled");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    lock.release().await;
    for writer in writers {
        writer.await.unwrap().unwrap();
    }
    assert_eq!(proxy.accepted(), POOL);

    // One statement meets a silent server: the client gives up on it, and closes its connection.
    let started = Instant::now();
    match store.get("silence-this-connection").await {
        Err(error @ Error::Backend { .. }) => assert!(timed_out_on_the_client(&error), "{error:?}"),
        other => panic!("expected a client-side timeout, got {other:?}"),
    }
    assert!(started.elapsed() < HANG);

    // The other connections still serve. The pool may open one connection in the place of the
    // closed one (a call can find both idle ones still being checked on release), but replacing
    // the connections that did nothing wrong would take more.
    for i in 0..20 {
        store
            .set(
                &format!("after:{i}"),
                Bytes::from_static(b"x"),
                None,
                Condition::Always,
            )
            .await
            .unwrap();
        assert_eq!(
            store.get(&format!("after:{i}")).await.unwrap(),
            Some(Bytes::from_static(b"x"))
        );
    }
    let opened = proxy.accepted() - POOL;
    assert!(
        opened <= 1,
        "{opened} connections opened after one timed out: healthy ones were replaced"
    );
    store.close().await.unwrap();
    common::drop_table(&table).await;
}
