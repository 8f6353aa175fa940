//! The table: created once when many stores start at once, logged or not, checked when it
//! already exists, and quoted whatever its name.

mod common;

use std::sync::Arc;

use cache_core::{Backend, Bytes, Condition, Error};
use cache_postgres::{PostgresBackend, PostgresConfig, TableName};
use tokio::sync::Barrier;

async fn persistence(table_sql: &str) -> Option<String> {
    let mut connection = common::raw_connection(&common::postgres_url()).await;
    sqlx::query_scalar("SELECT relpersistence::text FROM pg_class WHERE oid = to_regclass($1)")
        .bind(table_sql)
        .fetch_optional(&mut connection)
        .await
        .unwrap_or_else(|error| panic!("cannot look up {table_sql}: {error}"))
}

async fn exists(relation_sql: &str) -> bool {
    persistence(relation_sql).await.is_some()
}

async fn execute(sql: String) {
    let mut connection = common::raw_connection(&common::postgres_url()).await;
    sqlx::query(sqlx::AssertSqlSafe(sql.clone()))
        .execute(&mut connection)
        .await
        .unwrap_or_else(|error| panic!("{sql}: {error}"));
}

/// Connects a store to each URL, all released at the same instant; panics naming the round if
/// any start fails.
async fn start_at_once(urls: Vec<String>, round: usize) -> Vec<PostgresBackend> {
    let barrier = Arc::new(Barrier::new(urls.len()));
    let starts: Vec<_> = urls
        .into_iter()
        .map(|url| {
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                PostgresBackend::open(&url).await
            })
        })
        .collect();
    let mut stores = Vec::new();
    for start in starts {
        match start.await.expect("a start task panicked") {
            Ok(store) => stores.push(store),
            Err(error) => panic!("round {round}: a concurrent start failed: {error:?}"),
        }
    }
    stores
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_stores_starting_at_once_create_the_table_once() {
    const STORES: usize = 16;
    for round in 0..4 {
        let table = common::fresh_table("concurrent");
        let url = common::with_options(
            &common::postgres_url(),
            &format!("table={table}&pool_max=2&purge_interval=off"),
        );
        let stores = start_at_once(vec![url; STORES], round).await;
        let quoted = format!("\"{table}\"");
        assert_eq!(
            persistence(&quoted).await.as_deref(),
            Some("u"),
            "UNLOGGED by default"
        );
        assert!(exists(&format!("\"{table}_expires_at_idx\"")).await);
        // Every store sees what another wrote: one table, not several.
        stores[0]
            .set("k", Bytes::from_static(b"v"), None, Condition::Always)
            .await
            .unwrap();
        for store in &stores {
            assert_eq!(
                store.get("k").await.unwrap(),
                Some(Bytes::from_static(b"v"))
            );
        }
        for store in &stores {
            store.close().await.unwrap();
        }
        common::drop_table(&table).await;
    }
}

/// `table=x` and `table=public.x` are one table; stores spelling it either way and starting at
/// once must still create it exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stores_spelling_one_table_two_ways_create_it_once() {
    const STORES: usize = 16;
    for round in 0..6 {
        let table = common::fresh_table("spelled");
        let urls = (0..STORES)
            .map(|i| {
                let spelled = if i % 2 == 0 {
                    table.clone()
                } else {
                    format!("public.{table}")
                };
                common::with_options(
                    &common::postgres_url(),
                    &format!("table={spelled}&pool_max=1&purge_interval=off"),
                )
            })
            .collect();
        let stores = start_at_once(urls, round).await;
        assert!(exists(&format!("public.\"{table}\"")).await);
        for store in &stores {
            store.close().await.unwrap();
        }
        common::drop_table(&table).await;
    }
}

#[tokio::test]
async fn unlogged_false_creates_a_logged_table() {
    let table = common::fresh_table("logged");
    let store = common::store_on(&table, "unlogged=false").await;
    assert!(!store.config().is_unlogged());
    assert_eq!(
        persistence(&format!("\"{table}\"")).await.as_deref(),
        Some("p")
    );
    store.close().await.unwrap();
    common::drop_table(&table).await;
}

#[tokio::test]
async fn a_table_created_from_the_documented_ddl_is_used_as_it_is() {
    let table = common::fresh_table("by_hand");
    for statement in cache_postgres::ddl(&TableName::new(&table).unwrap(), false) {
        execute(statement).await;
    }
    // The URL asks for UNLOGGED, but an existing table is the DBA's: it stays logged.
    let store = common::store_on(&table, "").await;
    store
        .set("k", Bytes::from_static(b"v"), None, Condition::Always)
        .await
        .unwrap();
    assert_eq!(
        store.get("k").await.unwrap(),
        Some(Bytes::from_static(b"v"))
    );
    assert_eq!(
        persistence(&format!("\"{table}\"")).await.as_deref(),
        Some("p")
    );
    common::drop_table(&table).await;
}

#[tokio::test]
async fn a_table_of_another_shape_is_a_config_error() {
    let table = common::fresh_table("foreign");
    execute(format!(
        "CREATE TABLE \"{table}\" (key text PRIMARY KEY, value bytea NOT NULL, expires_at timestamptz)"
    ))
    .await;
    let url = common::with_options(&common::postgres_url(), &format!("table={table}"));
    match PostgresBackend::open(&url).await {
        Err(Error::Config { message, .. }) => {
            assert!(message.contains(&table), "{message}");
            assert!(message.contains("column key"), "{message}");
        }
        other => panic!("expected a config error, got {other:?}"),
    }
    common::drop_table(&table).await;
}

#[tokio::test]
async fn mixed_case_and_schema_qualified_names_are_quoted_and_distinct() {
    let lower = common::fresh_table("case");
    let upper = lower.to_uppercase();
    let lower_store = common::store_on(&lower, "").await;
    let upper_store = common::store_on(&upper, "").await;
    lower_store
        .set("k", Bytes::from_static(b"lower"), None, Condition::Always)
        .await
        .unwrap();
    assert_eq!(upper_store.get("k").await.unwrap(), None);
    assert!(exists(&format!("\"{upper}\"")).await);

    let schema = common::fresh_table("schema");
    execute(format!("CREATE SCHEMA \"{schema}\"")).await;
    let qualified = format!("{schema}.entries");
    let url = common::with_options(&common::postgres_url(), &format!("table={qualified}"));
    let config = PostgresConfig::from_url(&url).unwrap();
    let store = config.open().await.unwrap();
    store
        .set("k", Bytes::from_static(b"v"), None, Condition::Always)
        .await
        .unwrap();
    assert!(exists(&format!("\"{schema}\".\"entries\"")).await);
    assert!(exists(&format!("\"{schema}\".\"entries_expires_at_idx\"")).await);
    store.close().await.unwrap();

    common::drop_table(&lower).await;
    common::drop_table(&upper).await;
    execute(format!("DROP SCHEMA \"{schema}\" CASCADE")).await;
}
