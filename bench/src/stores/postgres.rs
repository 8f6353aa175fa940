//! The PostgreSQL store, on a logged and on an unlogged table, against sqlx.

use std::sync::Arc;

use cache_postgres::PostgresBackend;
use sqlx::postgres::types::PgInterval;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Row};

use super::{Facade, StoreBench, full_keys, run_prefix};
use crate::BenchResult;
use crate::measure::{Target, Timed};
use crate::report::RoundTripRow;
use crate::round_trips::{CountTrips, CountingProxy, expect_all, through_proxy};
use crate::workload::{DidDoc, ROUND_TRIP_BATCH, SharedWorkload, TTL, decode, encode};

const DEFAULT_PORT: u16 = 5432;
/// The store's default pool size; the raw pool gets the same.
const POOL_MAX: u32 = 10;

/// The table of this run: unique per process and kind, dropped by the clean-up.
fn table(unlogged: bool) -> String {
    let kind = if unlogged { "unlogged" } else { "logged" };
    format!("cachette_bench_{}_{kind}", std::process::id())
}

/// `url` with the store's options added to its query.
fn with_options(url: &str, options: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{options}")
}

/// The store on a table of this run's own, `name`d, for rows that compare two facades over it
/// (the tags rows), and the clean-up that drops the table. A table of its own keeps the rows
/// clear of whatever churn the server's shared table has seen; statements get a minute, since
/// those rows write and delete 10,000 keys at a time.
pub async fn open_for_rows(
    url: &str,
    name: &str,
) -> BenchResult<(Arc<dyn cache_core::Backend>, super::Cleanup)> {
    let table = format!("cachette_bench_{}_{name}", std::process::id());
    let store_url = with_options(url, &format!("table={table}&statement_timeout=60s"));
    let backend = Arc::new(PostgresBackend::open(&store_url).await?);
    let pool = PgPoolOptions::new().max_connections(1).connect(url).await?;
    let closing = Arc::clone(&backend);
    let cleanup: super::Cleanup = Box::pin(async move {
        use cache_core::Backend as _;
        // Drop the table even when closing the store failed, so no run leaves one behind.
        let closed = closing.close().await;
        let drop_table = format!("DROP TABLE IF EXISTS \"{table}\"");
        let dropped = sqlx::query(AssertSqlSafe(drop_table)).execute(&pool).await;
        pool.close().await;
        closed?;
        dropped?;
        Ok(())
    });
    Ok((backend, cleanup))
}

/// The store's contenders on a logged or an unlogged table, preloaded.
pub async fn setup(
    url: &str,
    unlogged: bool,
    workload: &SharedWorkload,
) -> BenchResult<StoreBench> {
    let table = table(unlogged);
    let store_url = with_options(url, &format!("table={table}&unlogged={unlogged}"));
    let backend = Arc::new(PostgresBackend::open(&store_url).await?);
    let prefix = run_prefix();
    let facade = Facade::<false>::contender(backend.clone(), &format!("{prefix}f:"), workload);
    let raw = RawPostgres::connect(
        url,
        POOL_MAX,
        &table,
        full_keys(&format!("{prefix}r:"), workload),
        workload,
    )
    .await?;
    // The durability settings decide what a logged table costs, so the report names them.
    let server: Option<String> = sqlx::query_scalar(
        "SELECT version() || ' | fsync=' || current_setting('fsync') \
         || ', synchronous_commit=' || current_setting('synchronous_commit')",
    )
    .fetch_one(&raw.pool)
    .await
    .ok()
    .map(|described: String| {
        let (version, settings) = described.split_once(" | ").unwrap_or((&described, ""));
        let version = version.split(" on ").next().unwrap_or_default();
        format!("{version}, {settings}")
    });
    let pool = raw.pool.clone();
    let kind = if unlogged { "UNLOGGED" } else { "logged" };
    let bench = StoreBench {
        facade,
        raw: Box::new(Timed::new(raw, Arc::clone(workload))),
        raw_name: "sqlx pool (10 connections) + ciborium, the store's statements (= ANY, UNNEST)",
        peer: None,
        cleanup: Box::pin(async move {
            use cache_core::Backend as _;
            // Drop the table even when closing the store failed, so no run leaves one behind.
            let closed = backend.close().await;
            let drop_table = format!("DROP TABLE IF EXISTS \"{table}\"");
            let dropped = sqlx::query(AssertSqlSafe(drop_table)).execute(&pool).await;
            pool.close().await;
            closed?;
            dropped?;
            Ok(())
        }),
        server: server.map(|version| format!("{version}, {kind} table")),
        note: None,
    };
    bench.facade.preload().await?;
    bench.raw.preload().await?;
    Ok(bench)
}

/// The same work on sqlx: a pool like the store's, its SQL, CBOR bytes.
#[derive(Clone)]
struct RawPostgres {
    pool: PgPool,
    get: Arc<str>,
    get_many: Arc<str>,
    set: Arc<str>,
    set_many: Arc<str>,
    full_keys: Arc<Vec<String>>,
    workload: SharedWorkload,
}

impl RawPostgres {
    async fn connect(
        url: &str,
        connections: u32,
        table: &str,
        full_keys: Arc<Vec<String>>,
        workload: &SharedWorkload,
    ) -> BenchResult<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(connections)
            // As the store does: no health-check round trip before each use.
            .test_before_acquire(false)
            .connect(url)
            .await?;
        let t = format!("\"{table}\"");
        let live = "(expires_at IS NULL OR expires_at > statement_timestamp())";
        let upsert = "ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
                      expires_at = excluded.expires_at";
        Ok(Self {
            pool,
            get: format!("SELECT value FROM {t} WHERE key = $1 AND {live}").into(),
            get_many: format!("SELECT key, value FROM {t} WHERE key = ANY($1::bytea[]) AND {live}")
                .into(),
            set: format!(
                "INSERT INTO {t} (key, value, expires_at) \
                 VALUES ($1, $2, statement_timestamp() + $3::interval) {upsert}"
            )
            .into(),
            set_many: format!(
                "INSERT INTO {t} (key, value, expires_at) \
                 SELECT k, v, statement_timestamp() + $3::interval \
                 FROM UNNEST($1::bytea[], $2::bytea[]) AS u(k, v) {upsert}"
            )
            .into(),
            full_keys,
            workload: Arc::clone(workload),
        })
    }

    fn ttl() -> PgInterval {
        PgInterval {
            months: 0,
            days: 0,
            microseconds: i64::try_from(TTL.as_micros()).unwrap_or(i64::MAX),
        }
    }
}

impl Target for RawPostgres {
    const IN_PROCESS: bool = false;

    async fn get(&self, key: usize) -> BenchResult<bool> {
        let value: Option<Vec<u8>> = sqlx::query_scalar(AssertSqlSafe(Arc::clone(&self.get)))
            .bind(self.full_keys[key].as_bytes())
            .fetch_optional(&self.pool)
            .await?;
        Ok(value.map(|bytes| decode(&bytes)).transpose()?.is_some())
    }

    async fn set(&self, key: usize) -> BenchResult<()> {
        let value = encode(&self.workload.docs[key])?;
        sqlx::query(AssertSqlSafe(Arc::clone(&self.set)))
            .bind(self.full_keys[key].as_bytes())
            .bind(value)
            .bind(Self::ttl())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get_many(&self, keys: &[usize]) -> BenchResult<usize> {
        let wanted: Vec<&[u8]> = keys
            .iter()
            .map(|&key| self.full_keys[key].as_bytes())
            .collect();
        let rows = sqlx::query(AssertSqlSafe(Arc::clone(&self.get_many)))
            .bind(&wanted)
            .fetch_all(&self.pool)
            .await?;
        let docs = rows
            .iter()
            .map(|row| {
                let value: &[u8] = row.try_get(1)?;
                decode(value)
            })
            .collect::<BenchResult<Vec<DidDoc>>>()?;
        Ok(docs.len())
    }

    async fn set_many(&self, keys: &[usize]) -> BenchResult<()> {
        let names: Vec<&[u8]> = keys
            .iter()
            .map(|&key| self.full_keys[key].as_bytes())
            .collect();
        let values = keys
            .iter()
            .map(|&key| encode(&self.workload.docs[key]))
            .collect::<BenchResult<Vec<_>>>()?;
        sqlx::query(AssertSqlSafe(Arc::clone(&self.set_many)))
            .bind(&names)
            .bind(&values)
            .bind(Self::ttl())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Round trips of `set_many` and `get_many` of 1,000 keys, facade and raw, each counted on a
/// second call so that statement preparation (once per connection) is not counted.
pub async fn round_trips(
    url: &str,
    unlogged: bool,
    store: &'static str,
    workload: &SharedWorkload,
) -> BenchResult<Vec<RoundTripRow>> {
    let (upstream, proxied) = through_proxy(url, DEFAULT_PORT).await?;
    let proxy = CountingProxy::start(upstream).await?;
    let proxied_url = proxied.at(&proxy)?;
    let table = format!("{}_trips", table(unlogged));
    // One connection each, so that the counted call runs on the connection whose statements the
    // first call prepared.
    let store_url = with_options(
        &proxied_url,
        &format!("table={table}&unlogged={unlogged}&pool_max=1"),
    );
    let backend = Arc::new(PostgresBackend::open(&store_url).await?);
    let prefix = format!("{}trips:", run_prefix());
    let facade = Facade::<false>::new(backend.clone(), &format!("{prefix}f:"), workload);
    let raw = RawPostgres::connect(
        &proxied_url,
        1,
        &table,
        full_keys(&format!("{prefix}r:"), workload),
        workload,
    )
    .await?;
    let keys = workload.run_of(0, ROUND_TRIP_BATCH);
    let counted = async {
        // First runs prepare the statements on the one pooled connection; second runs count.
        facade.set_many(&keys).await?;
        raw.set_many(&keys).await?;
        facade.get_many(&keys).await?;
        raw.get_many(&keys).await?;
        let facade_set = proxy.count(facade.set_many(&keys)).await?;
        let raw_set = proxy.count(raw.set_many(&keys)).await?;
        let facade_get = proxy
            .count(expect_all(facade.get_many(&keys), keys.len()))
            .await?;
        let raw_get = proxy
            .count(expect_all(raw.get_many(&keys), keys.len()))
            .await?;
        BenchResult::Ok(vec![
            RoundTripRow {
                store,
                op: "set_many",
                facade: facade_set,
                raw: raw_set,
                commands: None,
            },
            RoundTripRow {
                store,
                op: "get_many",
                facade: facade_get,
                raw: raw_get,
                commands: None,
            },
        ])
    }
    .await;
    use cache_core::Backend as _;
    // Drop the table even when counting or closing failed, so no run leaves one behind.
    let closed = backend.close().await;
    let drop_table = format!("DROP TABLE IF EXISTS \"{table}\"");
    let dropped = sqlx::query(AssertSqlSafe(drop_table))
        .execute(&raw.pool)
        .await;
    raw.pool.close().await;
    let counted = counted?;
    closed?;
    dropped?;
    Ok(counted)
}
