//! What the PostgreSQL tests share: the server URL, fresh tables, and throwaway servers.

// Each test file uses a different part of this module.
#![allow(dead_code, unused_imports)]

pub use cachette_test_support::ports::free_port;
pub use cachette_test_support::postgres as throwaway;
pub use cachette_test_support::proxy;

use std::sync::Arc;

use cache_core::Backend;
use cache_postgres::PostgresBackend;
use sqlx::Connection;

/// The server under test, from `CACHETTE_POSTGRES_URL`; fails the test when it is unset.
pub fn postgres_url() -> String {
    cachette_test_support::server_url(
        "CACHETTE_POSTGRES_URL",
        "postgres://postgres@127.0.0.1:5432/test",
    )
}

/// `url` with more query options, whether or not it already has some.
pub fn with_options(url: &str, options: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{options}")
}

/// A table name no other test uses.
pub fn fresh_table(purpose: &str) -> String {
    let tag: String = std::iter::repeat_with(fastrand::lowercase)
        .take(10)
        .collect();
    format!("cachette_{purpose}_{tag}")
}

/// The store the conformance suite runs against: the URL's own table and options.
pub async fn conformance_backend() -> Arc<dyn Backend> {
    // The suite runs batches of 20,000 and 100,000 keys beside each other, all cases at once in
    // its shared-store run: on a busy machine a statement took longer than 30 s (a 20,000-key
    // upsert beside 20,000-key snapshot reads), far past the default 5 s,
    // and a call may wait longer than that for one of the pool's connections.
    let url = with_options(
        &postgres_url(),
        "statement_timeout=120s&acquire_timeout=30s",
    );
    match PostgresBackend::open(&url).await {
        Ok(store) => Arc::new(store),
        Err(error) => panic!(
            "cannot open the PostgreSQL store at {}: {error}",
            cache_core::raw::redact_url(&url)
        ),
    }
}

/// A store on its own fresh table (dropped by [`drop_table`]).
pub async fn store_on(table: &str, options: &str) -> PostgresBackend {
    let url = with_options(&postgres_url(), &format!("table={table}&{options}"));
    PostgresBackend::open(&url)
        .await
        .unwrap_or_else(|error| panic!("cannot open the PostgreSQL store: {error}"))
}

/// A plain connection for looking at tables behind the store's back.
pub async fn raw_connection(url: &str) -> sqlx::PgConnection {
    let options: sqlx::postgres::PgConnectOptions = strip_store_options(url)
        .parse()
        .unwrap_or_else(|error| panic!("bad URL: {error}"));
    sqlx::PgConnection::connect_with(&options)
        .await
        .unwrap_or_else(|error| panic!("cannot connect to PostgreSQL: {error}"))
}

/// A row of a test table locked by a session of the test's own, so that writers of that key
/// wait on it; [`RowLock::release`] ends the lock.
pub struct RowLock(sqlx::PgConnection);

impl RowLock {
    /// Locks `key` of `table` (`SELECT … FOR UPDATE` in an open transaction).
    pub async fn take(table: &str, key: &[u8]) -> Self {
        let mut connection = raw_connection(&postgres_url()).await;
        sqlx::query("BEGIN")
            .execute(&mut connection)
            .await
            .expect("BEGIN");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT 1 FROM \"{table}\" WHERE key = $1 FOR UPDATE"
        )))
        .bind(key)
        .execute(&mut connection)
        .await
        .expect("locking the row");
        Self(connection)
    }

    /// Rolls the locking transaction back, which frees the row.
    pub async fn release(mut self) {
        sqlx::query("ROLLBACK")
            .execute(&mut self.0)
            .await
            .expect("ROLLBACK");
    }
}

/// Drops a test table and its index.
pub async fn drop_table(table: &str) {
    let mut connection = raw_connection(&postgres_url()).await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP TABLE IF EXISTS \"{table}\""
    )))
    .execute(&mut connection)
    .await
    .unwrap_or_else(|error| panic!("cannot drop {table}: {error}"));
}

/// Rows in a table, expired ones included.
pub async fn row_count(table: &str) -> i64 {
    let mut connection = raw_connection(&postgres_url()).await;
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count(*) FROM \"{table}\""
    )))
    .fetch_one(&mut connection)
    .await
    .unwrap_or_else(|error| panic!("cannot count {table}: {error}"))
}

/// The URL without the store's own options, which sqlx would warn about.
fn strip_store_options(url: &str) -> String {
    let mut parsed = url::Url::parse(url).unwrap_or_else(|error| panic!("bad URL: {error}"));
    let kept: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(name, _)| {
            ![
                "table",
                "unlogged",
                "pool_max",
                "acquire_timeout",
                "statement_timeout",
                "purge_interval",
            ]
            .contains(&name.as_ref())
        })
        .map(|(name, value)| (name.into_owned(), value.into_owned()))
        .collect();
    parsed.set_query(None);
    if !kept.is_empty() {
        parsed.query_pairs_mut().extend_pairs(kept);
    }
    parsed.to_string()
}
