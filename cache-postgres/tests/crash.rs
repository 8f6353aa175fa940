//! A server crash (SIGKILL, then crash recovery) on a throwaway PostgreSQL of this test's own:
//! a logged table keeps every acknowledged write, and the default UNLOGGED table is emptied, as
//! PostgreSQL does to every unlogged table after a crash. The README says so where it describes
//! `unlogged`; this test keeps that sentence true.

mod common;

use cache_core::{Backend, Bytes};
use cache_postgres::PostgresBackend;
use common::throwaway::ThrowawayPostgres;

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|error| panic!("a blocking step failed: {error}"))
}

async fn store(server_url: &str, table: &str, unlogged: bool) -> PostgresBackend {
    let url = format!("{server_url}?table={table}&unlogged={unlogged}&purge_interval=off");
    PostgresBackend::open(&url)
        .await
        .unwrap_or_else(|error| panic!("cannot open the store on {table}: {error}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_keeps_a_logged_table_and_empties_an_unlogged_one() {
    let server = std::sync::Arc::new(blocking(ThrowawayPostgres::start).await);
    let entries: Vec<(String, Bytes)> = (0..300)
        .map(|i| (format!("k{i}"), Bytes::from(format!("value {i}"))))
        .collect();
    let keys: Vec<String> = entries.iter().map(|(key, _)| key.clone()).collect();
    for (table, unlogged) in [("crash_logged", false), ("crash_unlogged", true)] {
        let store = store(&server.url(), table, unlogged).await;
        store.set_many(entries.clone(), None).await.unwrap();
        for (key, value) in entries.iter().take(20) {
            store
                .set(key, value.clone(), None, cache_core::Condition::Always)
                .await
                .unwrap();
        }
        store.close().await.unwrap();
    }

    let crashed = std::sync::Arc::clone(&server);
    blocking(move || {
        crashed.crash();
        crashed.start_again();
    })
    .await;

    let logged = store(&server.url(), "crash_logged", false).await;
    let found = logged.get_many(&keys).await.unwrap();
    let lost = found.iter().filter(|value| value.is_none()).count();
    assert_eq!(
        lost, 0,
        "a logged table lost {lost} acknowledged writes in a crash"
    );
    assert_eq!(
        found,
        entries
            .iter()
            .map(|(_, value)| Some(value.clone()))
            .collect::<Vec<_>>()
    );
    let unlogged = store(&server.url(), "crash_unlogged", true).await;
    let kept = unlogged
        .get_many(&keys)
        .await
        .unwrap()
        .iter()
        .filter(|value| value.is_some())
        .count();
    assert_eq!(
        kept, 0,
        "crash recovery empties an UNLOGGED table; {kept} rows survived, so the README's \
         sentence about `unlogged` no longer holds"
    );
}
