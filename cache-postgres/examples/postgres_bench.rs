//! Ops/s of the PostgreSQL store through `Cache<V>` next to raw sqlx doing the same work, for an
//! UNLOGGED and a logged table, in one run.
//!
//! ```text
//! CACHETTE_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test \
//!     cargo run --release -p cache-postgres --example postgres_bench
//! ```
//!
//! The value is a DID-document struct that CBOR encodes in about 400 bytes; every write has a
//! 300 s TTL; encoding and decoding happen inside the timed loops on both sides. "raw sqlx" runs
//! the same statements on a pool with the store's settings; "raw, sqlx default pool" tests each
//! connection before use, as sqlx does unless told otherwise. Medians of five rounds; batch
//! columns count keys per second; `BENCH_SAMPLES=1` prints every round to stderr. Tables `cachette_bench_unlogged` and `cachette_bench_logged`
//! are dropped at the end.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::{Backend, Cache};
use cache_postgres::{PostgresBackend, TableName};
use serde::{Deserialize, Serialize};
use sqlx::postgres::types::PgInterval;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool, SqlSafeStr, SqlStr};

const KEYS: usize = 10_000;
const SINGLE_OPS: usize = 2_000;
const BATCHES: usize = 100;
const BATCH: usize = 100;
const TASKS: usize = 64;
const OPS_PER_TASK: usize = 150;
const ROUNDS: usize = 5;
const TTL: Duration = Duration::from_secs(300);

type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct VerificationMethod {
    id: String,
    r#type: String,
    controller: String,
    public_key_multibase: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Service {
    id: String,
    r#type: String,
    endpoint: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DidDoc {
    id: String,
    also_known_as: Vec<String>,
    verification_methods: Vec<VerificationMethod>,
    services: Vec<Service>,
}

fn did_key(rng: &mut fastrand::Rng) -> String {
    const BASE32: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let tail: String = (0..24)
        .map(|_| char::from(BASE32[rng.usize(..BASE32.len())]))
        .collect();
    format!("did:plc:{tail}")
}

fn document(did: &str) -> DidDoc {
    let method = |n: u32| VerificationMethod {
        id: format!("#key-{n}"),
        r#type: "Multikey".into(),
        controller: did.to_owned(),
        public_key_multibase: "zQ3shXjHeiBuRCKmM36c".into(),
    };
    DidDoc {
        id: did.to_owned(),
        also_known_as: vec![
            format!("at://{}.bsky.social", &did[8..16]),
            "at://alias.example".into(),
        ],
        verification_methods: vec![method(1), method(2)],
        services: vec![Service {
            id: "#pds".into(),
            r#type: "AtprotoPDS".into(),
            endpoint: "https://pds.example".into(),
        }],
    }
}

fn encode(doc: &DidDoc) -> BenchResult<Vec<u8>> {
    let mut out = Vec::with_capacity(512);
    ciborium::into_writer(doc, &mut out)?;
    Ok(out)
}

fn decode(bytes: &[u8]) -> BenchResult<DidDoc> {
    Ok(ciborium::from_reader(bytes)?)
}

fn ttl_interval() -> PgInterval {
    PgInterval {
        months: 0,
        days: 0,
        microseconds: i64::try_from(TTL.as_micros()).unwrap_or(i64::MAX),
    }
}

/// The statements the store runs, written out by hand for the raw side.
struct RawSql {
    get: SqlStr,
    get_many: SqlStr,
    set: SqlStr,
    set_many: SqlStr,
}

impl RawSql {
    fn new(table: &str) -> Self {
        let live = "(expires_at IS NULL OR expires_at > statement_timestamp())";
        let upsert = "ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
                      expires_at = excluded.expires_at";
        let sql = |text: String| AssertSqlSafe(Arc::<str>::from(text)).into_sql_str();
        Self {
            get: sql(format!(
                "SELECT value FROM {table} WHERE key = $1 AND {live}"
            )),
            get_many: sql(format!(
                "SELECT key, value FROM {table} WHERE key = ANY($1::bytea[]) AND {live}"
            )),
            set: sql(format!(
                "INSERT INTO {table} (key, value, expires_at) \
                 VALUES ($1, $2, statement_timestamp() + $3::interval) {upsert}"
            )),
            set_many: sql(format!(
                "INSERT INTO {table} (key, value, expires_at) \
                 SELECT k, v, statement_timestamp() + $3::interval \
                 FROM UNNEST($1::bytea[], $2::bytea[]) AS u(k, v) {upsert}"
            )),
        }
    }
}

/// The same workload, through the facade or through raw sqlx.
trait Side: Send + Sync + 'static {
    fn get(&self, key: &str) -> impl Future<Output = BenchResult<Option<DidDoc>>> + Send;
    fn set(&self, key: &str, doc: &DidDoc) -> impl Future<Output = BenchResult<()>> + Send;
    fn get_many(&self, keys: &[String]) -> impl Future<Output = BenchResult<usize>> + Send;
    fn set_many(&self, items: &[(String, DidDoc)]) -> impl Future<Output = BenchResult<()>> + Send;
}

struct Facade(Cache<DidDoc>);

impl Side for Facade {
    async fn get(&self, key: &str) -> BenchResult<Option<DidDoc>> {
        Ok(self.0.get(key).await?)
    }

    async fn set(&self, key: &str, doc: &DidDoc) -> BenchResult<()> {
        Ok(self.0.set(key, doc).await?)
    }

    async fn get_many(&self, keys: &[String]) -> BenchResult<usize> {
        Ok(self
            .0
            .get_many(keys.iter().map(String::as_str))
            .await?
            .len())
    }

    async fn set_many(&self, items: &[(String, DidDoc)]) -> BenchResult<()> {
        Ok(self
            .0
            .set_many(items.iter().map(|(key, doc)| (key.as_str(), doc)))
            .await?)
    }
}

struct Raw {
    pool: PgPool,
    sql: RawSql,
}

impl Side for Raw {
    async fn get(&self, key: &str) -> BenchResult<Option<DidDoc>> {
        let value: Option<Vec<u8>> = sqlx::query_scalar(self.sql.get.clone())
            .bind(key.as_bytes())
            .fetch_optional(&self.pool)
            .await?;
        value.map(|bytes| decode(&bytes)).transpose()
    }

    async fn set(&self, key: &str, doc: &DidDoc) -> BenchResult<()> {
        sqlx::query(self.sql.set.clone())
            .bind(key.as_bytes())
            .bind(encode(doc)?)
            .bind(ttl_interval())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn get_many(&self, keys: &[String]) -> BenchResult<usize> {
        let wanted: Vec<&[u8]> = keys.iter().map(|key| key.as_bytes()).collect();
        let rows: Vec<(Vec<u8>, Vec<u8>)> = sqlx::query_as(self.sql.get_many.clone())
            .bind(&wanted)
            .fetch_all(&self.pool)
            .await?;
        let mut found = HashMap::with_capacity(rows.len());
        for (key, value) in rows {
            found.insert(String::from_utf8(key)?, decode(&value)?);
        }
        Ok(found.len())
    }

    async fn set_many(&self, items: &[(String, DidDoc)]) -> BenchResult<()> {
        let keys: Vec<&[u8]> = items.iter().map(|(key, _)| key.as_bytes()).collect();
        let values = items
            .iter()
            .map(|(_, doc)| encode(doc))
            .collect::<BenchResult<Vec<_>>>()?;
        sqlx::query(self.sql.set_many.clone())
            .bind(&keys)
            .bind(&values)
            .bind(ttl_interval())
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

const WORKLOADS: usize = 5;

/// Ops/s (keys/s for batches) of one run of `workload`: get, set, get_many, set_many, 64-task get.
/// The same seed gives every side the same keys.
async fn measure<S: Side>(
    side: &Arc<S>,
    workload: usize,
    keys: &Arc<Vec<String>>,
    seed: u64,
) -> BenchResult<f64> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut pick = || keys[rng.usize(..keys.len())].clone();
    let with_doc = |key: String| {
        let doc = document(&key);
        (key, doc)
    };
    // Consecutive slices of the (random) key list: distinct keys, so that the raw side needs no
    // deduplication to do the same work as the store.
    let mut starts = fastrand::Rng::with_seed(seed ^ 0x5eed);
    let mut batch = || {
        let start = starts.usize(..=keys.len() - BATCH);
        keys[start..start + BATCH].to_vec()
    };
    match workload {
        0 => {
            let reads: Vec<String> = (0..SINGLE_OPS).map(|_| pick()).collect();
            let started = Instant::now();
            for key in &reads {
                side.get(key).await?.ok_or("a bench key is missing")?;
            }
            Ok(SINGLE_OPS as f64 / started.elapsed().as_secs_f64())
        }
        1 => {
            let writes: Vec<(String, DidDoc)> = (0..SINGLE_OPS).map(|_| with_doc(pick())).collect();
            let started = Instant::now();
            for (key, doc) in &writes {
                side.set(key, doc).await?;
            }
            Ok(SINGLE_OPS as f64 / started.elapsed().as_secs_f64())
        }
        2 => {
            let batches: Vec<Vec<String>> = (0..BATCHES).map(|_| batch()).collect();
            let started = Instant::now();
            for keys in &batches {
                side.get_many(keys).await?;
            }
            Ok((BATCHES * BATCH) as f64 / started.elapsed().as_secs_f64())
        }
        3 => {
            let batches: Vec<Vec<(String, DidDoc)>> = (0..BATCHES)
                .map(|_| batch().into_iter().map(with_doc).collect())
                .collect();
            let started = Instant::now();
            for items in &batches {
                side.set_many(items).await?;
            }
            Ok((BATCHES * BATCH) as f64 / started.elapsed().as_secs_f64())
        }
        _ => {
            let started = Instant::now();
            let tasks: Vec<_> = (0..TASKS)
                .map(|task| {
                    let (side, keys) = (Arc::clone(side), Arc::clone(keys));
                    tokio::spawn(async move {
                        let mut rng = fastrand::Rng::with_seed(seed + task as u64);
                        for _ in 0..OPS_PER_TASK {
                            let key = &keys[rng.usize(..keys.len())];
                            side.get(key).await?.ok_or("a bench key is missing")?;
                        }
                        BenchResult::Ok(())
                    })
                })
                .collect();
            for task in tasks {
                task.await??;
            }
            Ok((TASKS * OPS_PER_TASK) as f64 / started.elapsed().as_secs_f64())
        }
    }
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn show(ops: f64) -> String {
    if ops >= 10_000.0 {
        format!("{:.0}k", ops / 1000.0)
    } else {
        format!("{:.2}k", ops / 1000.0)
    }
}

async fn raw_pool(url: &str, test_before_acquire: bool) -> BenchResult<PgPool> {
    let options: PgConnectOptions = url.split('?').next().unwrap_or(url).parse()?;
    Ok(PgPoolOptions::new()
        .max_connections(cache_postgres::DEFAULT_POOL_MAX)
        .test_before_acquire(test_before_acquire)
        .connect_with(options)
        .await?)
}

#[tokio::main]
async fn main() -> BenchResult<()> {
    let url = std::env::var("CACHETTE_POSTGRES_URL")
        .map_err(|_| "set CACHETTE_POSTGRES_URL, e.g. postgres://postgres@127.0.0.1:5432/test")?;
    let mut rng = fastrand::Rng::with_seed(7);
    let keys: Arc<Vec<String>> = Arc::new((0..KEYS).map(|_| did_key(&mut rng)).collect());
    let sample = encode(&document(&keys[0]))?;
    println!(
        "PostgreSQL store vs raw sqlx: {KEYS} keys, {}-byte CBOR values, {ROUNDS} rounds, medians\n",
        sample.len()
    );
    println!("| table | side | get | set+TTL | get_many 100 | set_many 100 | 64-task get |");
    println!("|---|---|---|---|---|---|---|");

    for unlogged in [true, false] {
        let mode = if unlogged { "unlogged" } else { "logged" };
        let table = format!("cachette_bench_{mode}");
        let separator = if url.contains('?') { '&' } else { '?' };
        let store_url =
            format!("{url}{separator}table={table}&unlogged={unlogged}&purge_interval=off");
        let store = Arc::new(PostgresBackend::connect(&store_url).await?);
        let facade = Arc::new(Facade(
            Cache::builder(Arc::clone(&store) as Arc<dyn Backend>)
                .default_ttl(TTL)
                .build(),
        ));
        let quoted = TableName::new(&table)?.quoted();
        let raw = Arc::new(Raw {
            pool: raw_pool(&url, false).await?,
            sql: RawSql::new(&quoted),
        });
        let raw_default = Arc::new(Raw {
            pool: raw_pool(&url, true).await?,
            sql: RawSql::new(&quoted),
        });
        // Every key present before the reads.
        for chunk in keys.chunks(1_000) {
            let items: Vec<(String, DidDoc)> = chunk
                .iter()
                .map(|key| (key.clone(), document(key)))
                .collect();
            facade.set_many(&items).await?;
        }

        // samples[side][workload]: one per round. Sides take turns on each workload, so a
        // change in the machine's load touches every side alike.
        let mut samples = vec![vec![Vec::new(); WORKLOADS]; 3];
        for round in 0..ROUNDS {
            for workload in 0..WORKLOADS {
                let seed = (round * WORKLOADS + workload) as u64;
                let results = [
                    measure(&facade, workload, &keys, seed).await?,
                    measure(&raw, workload, &keys, seed).await?,
                    measure(&raw_default, workload, &keys, seed).await?,
                ];
                for (side, ops) in samples.iter_mut().zip(results) {
                    side[workload].push(ops);
                }
            }
        }
        for (side, workloads) in ["`Cache<V>`", "raw sqlx", "raw, sqlx default pool"]
            .iter()
            .zip(samples)
        {
            if std::env::var_os("BENCH_SAMPLES").is_some() {
                eprintln!("{mode} {side}: every round, ops/s: {workloads:.0?}");
            }
            let cells: Vec<String> = workloads
                .into_iter()
                .map(|runs| show(median(runs)))
                .collect();
            println!("| {mode} | {side} | {} |", cells.join(" | "));
        }

        raw.pool.close().await;
        raw_default.pool.close().await;
        store.close().await?;
        sqlx::query(AssertSqlSafe(format!("DROP TABLE IF EXISTS {quoted}")))
            .execute(&raw_pool(&url, true).await?)
            .await?;
    }
    Ok(())
}
