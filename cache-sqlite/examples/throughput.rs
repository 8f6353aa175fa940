//! Ops/s of the SQLite store through `Cache<V>` next to raw rusqlite doing the same work, in one
//! run on one machine. A quick measurement, not the full benchmark:
//!
//! ```text
//! cargo run --release -p cache-sqlite --example throughput [seconds per cell, default 1]
//! ```
//!
//! Workload: 10,000 keys `did:plc:` + 24 base32 characters, a DID-document value that CBOR
//! encodes in 451 bytes, a 300 s TTL on every write; encoding and decoding are inside the
//! loop on both sides. Both sides use one database file (the raw side its own table with the
//! store's schema, WAL and `synchronous=NORMAL`) and the same statements. "raw, direct" calls
//! rusqlite on the calling thread (what an async program must not do); "raw via spawn_blocking"
//! is the usual way to call it from async code. The 64-task columns run 64 tasks at once on
//! Tokio's default multi-thread runtime.

use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cache_core::{BoxError, Cache, Cbor, Serializer};
use cache_sqlite::SqliteBackend;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};
use serde::{Deserialize, Serialize};

const KEYS: usize = 10_000;
const BATCH: usize = 100;
const TTL: Duration = Duration::from_secs(300);
const CONCURRENT_TASKS: usize = 64;

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

fn did(n: usize) -> String {
    const BASE32: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let mut state = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let tail: String = (0..24)
        .map(|_| {
            state ^= state >> 33;
            state = state.wrapping_mul(0xFF51_AFD7_ED55_8CCD);
            BASE32[(state % 32) as usize] as char
        })
        .collect();
    format!("did:plc:{tail}")
}

fn doc(id: &str) -> DidDoc {
    let method = |n: u32| VerificationMethod {
        id: format!("#k{n}"),
        r#type: "Multikey".into(),
        controller: id.into(),
        public_key_multibase: "z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK".into(),
    };
    DidDoc {
        id: id.into(),
        also_known_as: vec![
            format!("at://{}.test", &id[8..16]),
            format!("https://{}.test", &id[8..14]),
        ],
        verification_methods: vec![method(1), method(2)],
        services: vec![Service {
            id: "#pds".into(),
            r#type: "AtprotoPDS".into(),
            endpoint: "https://pds.test".into(),
        }],
    }
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64)
}

/// Raw rusqlite on one connection: the same schema, settings and statements as the store.
struct Raw {
    db: Connection,
}

const CREATE: &str = "CREATE TABLE IF NOT EXISTS raw (key TEXT COLLATE BINARY NOT NULL PRIMARY KEY, \
     value BLOB NOT NULL, expires_at INTEGER); \
     CREATE INDEX IF NOT EXISTS raw_expires_at ON raw (expires_at) WHERE expires_at IS NOT NULL;";
const GET: &str =
    "SELECT value FROM raw WHERE key = ?1 AND (expires_at IS NULL OR expires_at > ?2)";
const GET_MANY: &str = "SELECT a.rowid, t.value FROM rarray(?1) AS a CROSS JOIN raw AS t \
     ON t.key = a.value WHERE (t.expires_at IS NULL OR t.expires_at > ?2)";
const UPSERT: &str = "INSERT INTO raw (key, value, expires_at) VALUES (?1, ?2, ?3) \
     ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at";

type Fallible<T> = Result<T, BoxError>;

fn encode(value: &DidDoc) -> Fallible<Vec<u8>> {
    let mut bytes = Vec::with_capacity(512);
    ciborium::into_writer(value, &mut bytes)?;
    Ok(bytes)
}

fn decode(bytes: &[u8]) -> Fallible<DidDoc> {
    Ok(ciborium::from_reader(bytes)?)
}

impl Raw {
    fn open(path: &std::path::Path) -> Fallible<Self> {
        let db = Connection::open(path)?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "NORMAL")?;
        rusqlite::vtab::array::load_module(&db)?;
        db.execute_batch(CREATE)?;
        Ok(Self { db })
    }

    fn get(&self, key: &str) -> Fallible<Option<DidDoc>> {
        let bytes: Option<Vec<u8>> = self
            .db
            .prepare_cached(GET)?
            .query_row(params![key, now_millis()], |row| row.get(0))
            .optional()?;
        bytes.map(|bytes| decode(&bytes)).transpose()
    }

    fn set(&self, key: &str, value: &DidDoc) -> Fallible<()> {
        let expires_at = now_millis() + TTL.as_millis() as i64;
        self.db
            .prepare_cached(UPSERT)?
            .execute(params![key, encode(value)?, expires_at])?;
        Ok(())
    }

    fn get_many(&self, keys: &[String]) -> Fallible<Vec<Option<DidDoc>>> {
        let array = std::rc::Rc::new(
            keys.iter()
                .map(|key| Value::Text(key.clone()))
                .collect::<Vec<_>>(),
        );
        let mut values = vec![None; keys.len()];
        let mut statement = self.db.prepare_cached(GET_MANY)?;
        let mut rows = statement.query(params![array, now_millis()])?;
        while let Some(row) = rows.next()? {
            let position: i64 = row.get(0)?;
            let bytes: Vec<u8> = row.get(1)?;
            values[usize::try_from(position - 1)?] = Some(decode(&bytes)?);
        }
        Ok(values)
    }

    fn set_many(&mut self, entries: &[(String, DidDoc)]) -> Fallible<()> {
        let expires_at = now_millis() + TTL.as_millis() as i64;
        let transaction = self
            .db
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut upsert = transaction.prepare_cached(UPSERT)?;
            for (key, value) in entries {
                upsert.execute(params![key, encode(value)?, expires_at])?;
            }
        }
        transaction.commit()?;
        Ok(())
    }
}

/// Runs `op` (which does `per_call` operations) for `seconds`; returns operations per second.
async fn rate<F, Fut>(seconds: f64, per_call: usize, mut op: F) -> Fallible<f64>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Fallible<()>>,
{
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let mut calls = 0;
    while Instant::now() < deadline {
        for _ in 0..16 {
            op(calls).await?;
            calls += 1;
        }
    }
    Ok((calls * per_call) as f64 / started.elapsed().as_secs_f64())
}

/// [`rate`] for a blocking `op` called on this thread.
fn blocking_rate(
    seconds: f64,
    per_call: usize,
    mut op: impl FnMut(usize) -> Fallible<()>,
) -> Fallible<f64> {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let mut calls = 0;
    while Instant::now() < deadline {
        for _ in 0..16 {
            op(calls)?;
            calls += 1;
        }
    }
    Ok((calls * per_call) as f64 / started.elapsed().as_secs_f64())
}

/// [`CONCURRENT_TASKS`] tasks, each calling `op` until the deadline; returns calls per second.
async fn concurrent_rate<F, Fut>(seconds: f64, op: F) -> Fallible<f64>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Fallible<()>> + Send,
{
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..CONCURRENT_TASKS)
        .map(|task| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut calls = 0;
                while Instant::now() < deadline {
                    op(task * 7919 + calls).await?;
                    calls += 1;
                }
                Fallible::Ok(calls)
            })
        })
        .collect();
    let mut calls = 0;
    for task in tasks {
        calls += task.await??;
    }
    Ok(calls as f64 / started.elapsed().as_secs_f64())
}

fn batch_start(call: usize) -> usize {
    (call * BATCH) % (KEYS - BATCH)
}

fn lock(raw: &Mutex<Raw>) -> Fallible<MutexGuard<'_, Raw>> {
    raw.lock().map_err(|_| "a measurement panicked".into())
}

fn found<T>(value: Option<T>) -> Fallible<()> {
    value
        .map(drop)
        .ok_or_else(|| "a key written before the run is missing".into())
}

#[tokio::main]
async fn main() -> Fallible<()> {
    let seconds: f64 = match std::env::args().nth(1) {
        Some(arg) => arg.parse()?,
        None => 1.0,
    };
    let dir = tempfile::tempdir()?;
    let keys: Arc<Vec<String>> = Arc::new((0..KEYS).map(did).collect());
    let docs: Arc<Vec<DidDoc>> = Arc::new(keys.iter().map(|key| doc(key)).collect());
    let entries: Arc<Vec<(String, DidDoc)>> =
        Arc::new(keys.iter().cloned().zip(docs.iter().cloned()).collect());
    println!(
        "SQLite store vs raw rusqlite: {KEYS} keys, {}-byte CBOR values, {TTL:?} TTL, {seconds} s per cell",
        Serializer::<DidDoc>::encode(&Cbor, &docs[0])?.len()
    );

    let store = Arc::new(
        SqliteBackend::file(dir.path().join("store.db"))
            .open()
            .await?,
    );
    let cache: Cache<DidDoc> = Cache::builder(store.clone()).default_ttl(TTL).build();
    for chunk in entries.chunks(1000) {
        cache
            .set_many(chunk.iter().map(|(key, value)| (key.as_str(), value)))
            .await?;
    }
    let raw = Arc::new(Mutex::new(Raw::open(&dir.path().join("store.db"))?));
    lock(&raw)?.set_many(&entries)?;

    let facade = [
        rate(seconds, 1, |i| {
            let (cache, key) = (cache.clone(), keys[i % KEYS].clone());
            async move { found(cache.get(&key).await?) }
        })
        .await?,
        rate(seconds, 1, |i| {
            let (cache, key, value) = (
                cache.clone(),
                keys[i % KEYS].clone(),
                docs[i % KEYS].clone(),
            );
            async move { Ok(cache.set(&key, &value).await?) }
        })
        .await?,
        rate(seconds, BATCH, |i| {
            let cache = cache.clone();
            let batch = keys[batch_start(i)..batch_start(i) + BATCH].to_vec();
            async move {
                let values = cache.get_many(&batch).await?;
                found((values.len() == BATCH).then_some(()))
            }
        })
        .await?,
        rate(seconds, BATCH, |i| {
            let (cache, entries) = (cache.clone(), Arc::clone(&entries));
            async move {
                let batch = &entries[batch_start(i)..batch_start(i) + BATCH];
                Ok(cache
                    .set_many(batch.iter().map(|(key, value)| (key.as_str(), value)))
                    .await?)
            }
        })
        .await?,
        {
            let (cache, keys) = (cache.clone(), Arc::clone(&keys));
            concurrent_rate(seconds, move |i| {
                let (cache, key) = (cache.clone(), keys[i % KEYS].clone());
                async move { found(cache.get(&key).await?) }
            })
            .await?
        },
        {
            let (cache, entries) = (cache.clone(), Arc::clone(&entries));
            concurrent_rate(seconds, move |i| {
                let (cache, entries) = (cache.clone(), Arc::clone(&entries));
                async move {
                    let (key, value) = &entries[i % KEYS];
                    Ok(cache.set(key, value).await?)
                }
            })
            .await?
        },
    ];

    let direct = [
        blocking_rate(seconds, 1, |i| found(lock(&raw)?.get(&keys[i % KEYS])?))?,
        blocking_rate(seconds, 1, |i| {
            lock(&raw)?.set(&keys[i % KEYS], &docs[i % KEYS])
        })?,
        blocking_rate(seconds, BATCH, |i| {
            let values = lock(&raw)?.get_many(&keys[batch_start(i)..batch_start(i) + BATCH])?;
            found(values.iter().all(Option::is_some).then_some(()))
        })?,
        blocking_rate(seconds, BATCH, |i| {
            lock(&raw)?.set_many(&entries[batch_start(i)..batch_start(i) + BATCH])
        })?,
        f64::NAN,
        f64::NAN,
    ];

    let blocking_get = move |raw: Arc<Mutex<Raw>>, keys: Arc<Vec<String>>, i: usize| async move {
        tokio::task::spawn_blocking(move || found(lock(&raw)?.get(&keys[i % KEYS])?)).await?
    };
    let spawn_blocking = [
        rate(seconds, 1, |i| {
            blocking_get(Arc::clone(&raw), Arc::clone(&keys), i)
        })
        .await?,
        rate(seconds, 1, |i| {
            let (raw, keys, docs) = (Arc::clone(&raw), Arc::clone(&keys), Arc::clone(&docs));
            async move {
                tokio::task::spawn_blocking(move || {
                    lock(&raw)?.set(&keys[i % KEYS], &docs[i % KEYS])
                })
                .await?
            }
        })
        .await?,
        f64::NAN,
        f64::NAN,
        {
            let (raw, keys) = (Arc::clone(&raw), Arc::clone(&keys));
            concurrent_rate(seconds, move |i| {
                blocking_get(Arc::clone(&raw), Arc::clone(&keys), i)
            })
            .await?
        },
        {
            let (raw, entries) = (Arc::clone(&raw), Arc::clone(&entries));
            concurrent_rate(seconds, move |i| {
                let (raw, entries) = (Arc::clone(&raw), Arc::clone(&entries));
                async move {
                    tokio::task::spawn_blocking(move || {
                        let (key, value) = &entries[i % KEYS];
                        lock(&raw)?.set(key, value)
                    })
                    .await?
                }
            })
            .await?
        },
    ];

    println!();
    println!(
        "| ops/s (keys/s for batches) | get | set+TTL | get_many {BATCH} | set_many {BATCH} | {CONCURRENT_TASKS}-task get | {CONCURRENT_TASKS}-task set |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, cells) in [
        ("`Cache<V>` over `SqliteBackend`", facade),
        ("raw rusqlite, direct (blocks the caller)", direct),
        ("raw rusqlite via `spawn_blocking`", spawn_blocking),
    ] {
        let cells: Vec<String> = cells
            .iter()
            .map(|cell| match cell.is_nan() {
                true => String::new(),
                false => format!("{:.1}k", cell / 1000.0),
            })
            .collect();
        println!("| {name} | {} |", cells.join(" | "));
    }
    Ok(())
}
