//! What the PostgreSQL store promises beyond the conformance suite: NUL and long keys, purging,
//! timeouts, redaction, closing.

mod common;

use std::error::Error as _;
use std::time::{Duration, Instant};

use cache_core::{Backend, Bytes, Condition, Error};
use cache_postgres::{PostgresBackend, PostgresConfig};

fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

/// Polls `condition` every 20 ms for up to 10 s.
async fn eventually<F, Fut>(mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if condition().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// Writes `count` keys under `prefix` with a 1 ms TTL and waits until they have expired.
async fn write_expired(store: &PostgresBackend, prefix: &str, count: usize) {
    let entries = (0..count)
        .map(|i| (format!("{prefix}{i}"), bytes("soon gone")))
        .collect();
    if let Err(error) = store
        .set_many(entries, Some(Duration::from_millis(1)))
        .await
    {
        panic!("writing {count} short-lived keys failed: {error}");
    }
    let last = format!("{prefix}{}", count - 1);
    let expired = eventually(|| async {
        match store.contains(&last).await {
            Ok(present) => !present,
            Err(error) => panic!("contains failed: {error}"),
        }
    });
    assert!(expired.await, "the 1 ms keys never expired");
}

#[tokio::test]
async fn keys_with_nul_round_trip_in_every_method() {
    let table = common::fresh_table("nul");
    let store = common::store_on(&table, "purge_interval=off").await;
    let (a, b, cut) = ("x\0a".to_owned(), "x\0b".to_owned(), "x".to_owned());
    store
        .set(&cut, bytes("cut"), None, Condition::Always)
        .await
        .unwrap();
    store
        .set_many(vec![(a.clone(), bytes("A")), (b.clone(), bytes("B"))], None)
        .await
        .unwrap();
    assert_eq!(store.get(&a).await.unwrap(), Some(bytes("A")));
    assert_eq!(
        store
            .get_many(&[a.clone(), cut.clone(), b.clone()])
            .await
            .unwrap(),
        vec![Some(bytes("A")), Some(bytes("cut")), Some(bytes("B"))]
    );
    assert!(
        !store
            .set(&a, bytes("again"), None, Condition::IfNotExists)
            .await
            .unwrap()
    );
    assert!(
        store
            .expire_in(&a, Some(Duration::from_secs(60)))
            .await
            .unwrap()
    );
    assert!(store.ttl(&a).await.unwrap().is_some());
    assert_eq!(store.clear_prefix("x\0").await.unwrap(), 2);
    assert_eq!(store.get(&cut).await.unwrap(), Some(bytes("cut")));
    assert!(!store.contains(&a).await.unwrap());
    common::drop_table(&table).await;
}

#[tokio::test]
async fn keys_too_long_for_the_index_are_invalid_and_batches_stay_whole() {
    let table = common::fresh_table("long_keys");
    let store = common::store_on(&table, "purge_interval=off").await;
    // Incompressible, so PostgreSQL cannot squeeze it into a B-tree entry.
    let long: String = std::iter::repeat_with(fastrand::alphanumeric)
        .take(8 * 1024)
        .collect();
    match store.set(&long, bytes("v"), None, Condition::Always).await {
        Err(Error::InvalidKey { key, reason }) => {
            assert_eq!(key, long);
            assert!(reason.contains("too long"), "{reason}");
        }
        other => panic!("expected InvalidKey, got {other:?}"),
    }
    let batch = vec![("short".to_owned(), bytes("1")), (long.clone(), bytes("2"))];
    match store.set_many(batch, None).await {
        Err(Error::InvalidKey { key, .. }) => assert_eq!(key, long),
        other => panic!("expected InvalidKey, got {other:?}"),
    }
    assert_eq!(
        store.get("short").await.unwrap(),
        None,
        "half a batch was written"
    );
    // Reading or deleting such a key is fine: it is simply absent.
    assert_eq!(store.get(&long).await.unwrap(), None);
    assert!(!store.delete(&long).await.unwrap());
    // Long keys that compress well fit.
    let repetitive = "ab".repeat(32 * 1024);
    assert!(
        store
            .set(&repetitive, bytes("v"), None, Condition::Always)
            .await
            .unwrap()
    );
    assert_eq!(store.get(&repetitive).await.unwrap(), Some(bytes("v")));
    common::drop_table(&table).await;
}

#[tokio::test]
async fn a_refused_batch_does_not_blame_a_long_key_that_fits() {
    let table = common::fresh_table("long_batch");
    let store = common::store_on(&table, "purge_interval=off").await;
    // The longer key compresses into the index; the shorter, random one cannot.
    let fits = format!("z{}", "ab".repeat(32 * 1024));
    let refused: String = std::iter::once('a')
        .chain(std::iter::repeat_with(fastrand::alphanumeric).take(3000))
        .collect();
    let batch = vec![
        ("short".to_owned(), bytes("1")),
        (fits.clone(), bytes("2")),
        (refused.clone(), bytes("3")),
    ];
    match store.set_many(batch, None).await {
        Err(Error::InvalidKey { key, reason }) => {
            // The server does not say which key it refused; the store says it cannot tell.
            assert!(
                key == refused || key == fits,
                "named a key that cannot be refused"
            );
            assert!(reason.contains("a key in this batch"), "{reason}");
            assert!(reason.contains("one of these 2 keys"), "{reason}");
            assert!(reason.contains("(3001 bytes)"), "{reason}");
            assert!(
                reason.contains(&format!("({} bytes)", fits.len())),
                "{reason}"
            );
        }
        other => panic!("expected InvalidKey, got {other:?}"),
    }
    assert_eq!(
        store.get("short").await.unwrap(),
        None,
        "half a batch was written"
    );
    // Without the refused key, the batch, long key and all, is written.
    let batch = vec![("short".to_owned(), bytes("1")), (fits.clone(), bytes("2"))];
    store.set_many(batch, None).await.unwrap();
    assert_eq!(store.get(&fits).await.unwrap(), Some(bytes("2")));
    common::drop_table(&table).await;
}

#[tokio::test]
async fn timeouts_and_purge_intervals_set_in_code_are_refused_at_connect() {
    let url = common::with_options(&common::postgres_url(), "purge_interval=off");
    let config = || PostgresConfig::from_url(&url).unwrap();
    for (config, name) in [
        (
            config().statement_timeout(Duration::ZERO),
            "statement_timeout",
        ),
        (config().acquire_timeout(Duration::ZERO), "acquire_timeout"),
        // Once accepted, and the purge task panicked on its first tick.
        (
            config().purge_interval(Some(Duration::MAX)),
            "purge_interval",
        ),
        (
            config().purge_interval(Some(Duration::from_secs(u64::MAX / 4))),
            "purge_interval",
        ),
        (
            config().purge_interval(Some(Duration::ZERO)),
            "purge_interval",
        ),
    ] {
        match config.open().await {
            Err(Error::Config { message, .. }) => {
                assert!(
                    message.contains(name) && message.contains("outside"),
                    "{message}"
                )
            }
            other => panic!("expected a config error for {name}, got {other:?}"),
        }
    }
    let longest = config().purge_interval(Some(cache_postgres::MAX_PURGE_INTERVAL));
    let store = longest.open().await.unwrap();
    store.close().await.unwrap();
}

#[tokio::test]
async fn purge_expired_deletes_only_expired_rows_in_batches() {
    let table = common::fresh_table("purge");
    let store = common::store_on(&table, "purge_interval=off").await;
    let eternal: Vec<(String, Bytes)> = (0..10)
        .map(|i| (format!("keep:{i}"), bytes("kept")))
        .collect();
    store.set_many(eternal, None).await.unwrap();
    store
        .set(
            "later",
            bytes("v"),
            Some(Duration::from_secs(600)),
            Condition::Always,
        )
        .await
        .unwrap();
    // More than one purge batch (10,000 rows).
    write_expired(&store, "gone:", 25_000).await;
    assert_eq!(
        common::row_count(&table).await,
        25_011,
        "expired rows stay until purged"
    );
    assert_eq!(store.purge_expired().await.unwrap(), 25_000);
    assert_eq!(common::row_count(&table).await, 11);
    assert_eq!(store.purge_expired().await.unwrap(), 0);
    assert_eq!(store.get("keep:3").await.unwrap(), Some(bytes("kept")));
    assert!(store.contains("later").await.unwrap());
    common::drop_table(&table).await;
}

#[tokio::test]
async fn the_background_purge_empties_expired_rows() {
    let table = common::fresh_table("purge_bg");
    let store = common::store_on(&table, "purge_interval=100ms").await;
    store
        .set("kept", bytes("v"), None, Condition::Always)
        .await
        .unwrap();
    write_expired(&store, "gone:", 100).await;
    assert!(
        eventually(|| async { common::row_count(&table).await == 1 }).await,
        "expired rows were not purged in the background"
    );
    assert!(store.contains("kept").await.unwrap());
    store.close().await.unwrap();
    common::drop_table(&table).await;
}

#[tokio::test]
async fn clearing_everything_counts_live_keys_and_drops_expired_rows() {
    let table = common::fresh_table("clear_all");
    let store = common::store_on(&table, "purge_interval=off").await;
    let live = (0..7).map(|i| (format!("{i}"), bytes("v"))).collect();
    store.set_many(live, None).await.unwrap();
    write_expired(&store, "gone:", 5).await;
    assert_eq!(store.clear_prefix("").await.unwrap(), 7);
    assert_eq!(common::row_count(&table).await, 0);
    common::drop_table(&table).await;
}

#[tokio::test]
async fn a_statement_past_statement_timeout_fails_and_the_store_carries_on() {
    let table = common::fresh_table("timeout");
    let store = common::store_on(&table, "statement_timeout=300ms&purge_interval=off").await;
    store
        .set("locked", bytes("v"), None, Condition::Always)
        .await
        .unwrap();
    // Another session holds the row, so writing it waits until the server cancels the write.
    let lock = common::RowLock::take(&table, b"locked").await;
    match store
        .set("locked", bytes("w"), None, Condition::Always)
        .await
    {
        Err(Error::Backend { operation, key, .. }) => {
            assert_eq!(operation, "set");
            assert_eq!(key.as_deref(), Some("locked"));
        }
        other => panic!("expected a backend error, got {other:?}"),
    }
    assert_eq!(store.get("locked").await.unwrap(), Some(bytes("v")));
    lock.release().await;
    store
        .set("locked", bytes("w"), None, Condition::Always)
        .await
        .unwrap();
    assert_eq!(store.get("locked").await.unwrap(), Some(bytes("w")));
    common::drop_table(&table).await;
}

#[tokio::test]
async fn passwords_stay_out_of_debug_output_and_errors() {
    // Trust authentication ignores the password, so the store connects all the same.
    let base = common::postgres_url();
    let mut with_password = url::Url::parse(&base).unwrap();
    with_password.set_password(Some("hunter2")).unwrap();
    let store = PostgresBackend::open(with_password.as_str()).await.unwrap();
    let shown = format!("{store:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(shown.contains("***"), "{shown}");
    store.close().await.unwrap();

    // Nothing listens on port 1 of loopback: connecting fails, and says where without the
    // password.
    let url = "postgres://app:hunter2@127.0.0.1:1/db?acquire_timeout=300ms&password=swordfish";
    let error = PostgresBackend::open(url).await.unwrap_err();
    assert!(matches!(error, Error::Backend { .. }), "{error:?}");
    let mut chain = format!("{error} {error:?}");
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push_str(&format!(" {cause} {cause:?}"));
        source = cause.source();
    }
    assert!(chain.contains("127.0.0.1:1"), "{chain}");
    for secret in ["hunter2", "swordfish"] {
        assert!(!chain.contains(secret), "{chain}");
    }
}

#[tokio::test]
async fn calls_after_close_fail_as_backend_errors() {
    let table = common::fresh_table("closed");
    let store = common::store_on(&table, "").await;
    store
        .set("k", bytes("v"), None, Condition::Always)
        .await
        .unwrap();
    store.close().await.unwrap();
    assert!(matches!(store.get("k").await, Err(Error::Backend { .. })));
    assert!(matches!(
        store.set_many(vec![("k".into(), bytes("v"))], None).await,
        Err(Error::Backend { .. })
    ));
    common::drop_table(&table).await;
}

/// Another writer may give a row `expires_at = 'infinity'`: the row is live and eternal for every
/// method, `ttl` included (PostgreSQL cannot subtract an infinite timestamp).
#[tokio::test]
async fn a_row_that_expires_at_infinity_is_eternal() {
    let table = common::fresh_table("infinity");
    let store = common::store_on(&table, "purge_interval=off").await;
    store
        .set(
            "k",
            bytes("v"),
            Some(Duration::from_secs(60)),
            Condition::Always,
        )
        .await
        .unwrap();
    let mut raw = common::raw_connection(&common::postgres_url()).await;
    let sql = format!("UPDATE {table} SET expires_at = 'infinity'");
    sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
        .execute(&mut raw)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
    assert_eq!(store.get("k").await.unwrap(), Some(bytes("v")));
    assert!(store.contains("k").await.unwrap());
    assert_eq!(
        store.ttl("k").await.unwrap(),
        Some(cache_core::Ttl::Eternal)
    );
    assert!(
        store
            .expire_in("k", Some(Duration::from_secs(5)))
            .await
            .unwrap()
    );
    assert!(matches!(
        store.ttl("k").await.unwrap(),
        Some(cache_core::Ttl::Remaining(_))
    ));
    store.close().await.unwrap();
    common::drop_table(&table).await;
}

/// A port where nothing listens is named as refused, not reported as a pool that timed out.
#[tokio::test]
async fn a_refused_connection_says_so() {
    let port = common::free_port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres?acquire_timeout=300ms");
    let err = PostgresBackend::open(&url).await.unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err}");
    let mut chain = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        chain.push_str(&format!(" / {cause}"));
        source = cause.source();
    }
    assert!(chain.to_lowercase().contains("refused"), "{chain}");
    assert!(!chain.contains("pool timed out"), "{chain}");
}

/// `get_many` hands values up without a copy, each owning the row (and the share of sqlx's read
/// buffer) it came in: values kept while the connection reads and writes much more stay whole.
#[tokio::test]
async fn values_kept_from_a_batch_stay_whole_while_the_store_carries_on() {
    let table = common::fresh_table("kept");
    let store = common::store_on(&table, "purge_interval=off&pool_max=1").await;
    let value =
        |round: usize, key: usize| Bytes::from(format!("{round}:{key}:{}", "v".repeat(key % 700)));
    let keys: Vec<String> = (0..300).map(|key| format!("k{key}")).collect();
    let write = |round: usize| {
        keys.iter()
            .enumerate()
            .map(|(key, name)| (name.clone(), value(round, key)))
            .collect::<Vec<_>>()
    };
    store.set_many(write(0), None).await.unwrap();
    let mut asked = keys.clone();
    asked.push("k7".to_owned());
    asked.push("absent".to_owned());
    let kept = store.get_many(&asked).await.unwrap();
    // One pooled connection: every later call reads through the same buffer.
    for round in 1..=20 {
        store.set_many(write(round), None).await.unwrap();
        let again = store.get_many(&keys).await.unwrap();
        assert_eq!(again[299], Some(value(round, 299)));
    }
    for (key, held) in kept.iter().take(300).enumerate() {
        assert_eq!(
            held.as_ref(),
            Some(&value(0, key)),
            "k{key} changed while held"
        );
    }
    assert_eq!(
        kept[300],
        Some(value(0, 7)),
        "the repeated key has its value too"
    );
    assert_eq!(kept[301], None);
    common::drop_table(&table).await;
}
