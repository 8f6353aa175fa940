//! How much `Cache<V>` over `RedisBackend` costs next to raw redis-rs doing the same work, in
//! one run against one server: get, set with a TTL, get_many(100), set_many(100) and 64
//! concurrent gets, with a ~400-byte struct encoded as CBOR on both sides.
//!
//! ```text
//! CACHETTE_REDIS_URL=redis://127.0.0.1:6379/0 cargo run --release -p cache-redis --example redis_bench
//! ```
//!
//! `BENCH_SECS` sets the seconds per measurement (default 1); `BENCH_OPS` picks operations
//! (e.g. `get,concurrent`). Each figure is the median of three rounds, facade, store alone and
//! raw taking turns. Keys live under a random `cachette-bench:` prefix
//! that is cleared at the end. Numbers only: nothing here asserts a speed.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::{Backend, Bytes, Cache, Condition, SetOptions};
use cache_redis::RedisBackend;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};

const KEYS: usize = 10_000;
const BATCH: usize = 100;
const TASKS: usize = 64;
const ROUNDS: usize = 3;
const TTL: Duration = Duration::from_secs(300);

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DidDoc {
    id: String,
    also_known_as: Vec<String>,
    verification_methods: Vec<VerificationMethod>,
    services: Vec<Service>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct VerificationMethod {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    controller: String,
    public_key_multibase: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Service {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    endpoint: String,
}

/// A small deterministic generator, so that every run stores the same keys and bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn base32(&mut self, len: usize) -> String {
        const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
        (0..len)
            .map(|_| char::from(ALPHABET[(self.next() % 32) as usize]))
            .collect()
    }
}

fn doc(did: &str, index: usize, rng: &mut Rng) -> DidDoc {
    let handle = format!("u{index:05}");
    let method = |id: &str, key: String| VerificationMethod {
        id: id.to_owned(),
        kind: "Multikey".to_owned(),
        controller: did.to_owned(),
        public_key_multibase: key,
    };
    DidDoc {
        id: did.to_owned(),
        also_known_as: vec![
            format!("at://{handle}.bsky.social"),
            format!("at://{handle}.me"),
        ],
        verification_methods: vec![
            method("#atproto", format!("zQ3sh{}", rng.base32(16))),
            method("#label", format!("zDn{}", rng.base32(10))),
        ],
        services: vec![Service {
            id: "#pds".to_owned(),
            kind: "AtprotoPds".to_owned(),
            endpoint: format!("https://pds{:02}.example", index % 64),
        }],
    }
}

fn encode(doc: &DidDoc) -> Result<Vec<u8>, BoxError> {
    let mut bytes = Vec::with_capacity(512);
    ciborium::into_writer(doc, &mut bytes)?;
    Ok(bytes)
}

fn decode(bytes: &[u8]) -> Result<DidDoc, BoxError> {
    Ok(ciborium::from_reader(bytes)?)
}

/// Runs `op` (which reports how many items it handled) back to back for `secs`; items per second.
async fn rate<F, Fut>(secs: Duration, mut op: F) -> Result<f64, BoxError>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = Result<usize, BoxError>>,
{
    let started = Instant::now();
    let (mut items, mut i) = (0, 0);
    while started.elapsed() < secs {
        items += op(i).await?;
        i += 1;
    }
    Ok(items as f64 / started.elapsed().as_secs_f64())
}

/// `TASKS` tasks doing `op` for `secs`; total items per second.
async fn concurrent_rate<F, Fut>(secs: Duration, op: F) -> Result<f64, BoxError>
where
    F: Fn(usize) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<usize, BoxError>> + Send,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..TASKS)
        .map(|task| {
            let op = op.clone();
            tokio::spawn(async move {
                let (mut items, mut i) = (0, task * 7919);
                while started.elapsed() < secs {
                    items += op(i).await?;
                    i += 1;
                }
                Ok::<usize, BoxError>(items)
            })
        })
        .collect();
    let mut items = 0;
    for task in tasks {
        items += task.await??;
    }
    Ok(items as f64 / started.elapsed().as_secs_f64())
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

struct Bench {
    cache: Cache<DidDoc>,
    store: Arc<dyn Backend>,
    raw: redis::aio::MultiplexedConnection,
    prefix: String,
    keys: Arc<Vec<String>>,
    docs: Arc<Vec<DidDoc>>,
    secs: Duration,
}

impl Bench {
    fn full_key(&self, i: usize) -> String {
        format!("{}{}", self.prefix, self.keys[i % KEYS])
    }

    fn batch(&self, i: usize) -> std::ops::Range<usize> {
        let start = (i * BATCH) % (KEYS - BATCH);
        start..start + BATCH
    }

    async fn facade(&self, op: &str) -> Result<f64, BoxError> {
        let secs = self.secs;
        match op {
            "get" => {
                rate(secs, |i| async move {
                    let found = self.cache.get(&self.keys[(i * 7) % KEYS]).await?;
                    Ok(usize::from(found.is_some()))
                })
                .await
            }
            "set" => {
                rate(secs, |i| async move {
                    let k = (i * 13) % KEYS;
                    self.cache.set(&self.keys[k], &self.docs[k]).await?;
                    Ok(1)
                })
                .await
            }
            "get_many" => {
                rate(secs, |i| async move {
                    let keys = &self.keys[self.batch(i)];
                    Ok(self.cache.get_many(keys).await?.len())
                })
                .await
            }
            "set_many" => {
                rate(secs, |i| async move {
                    let range = self.batch(i);
                    let items = range
                        .clone()
                        .map(|k| (self.keys[k].as_str(), &self.docs[k]));
                    self.cache
                        .set_many_with(items, SetOptions::new().ttl(TTL))
                        .await?;
                    Ok(range.len())
                })
                .await
            }
            _ => {
                let (cache, keys) = (self.cache.clone(), Arc::clone(&self.keys));
                concurrent_rate(secs, move |i| {
                    let (cache, keys) = (cache.clone(), Arc::clone(&keys));
                    async move {
                        let found = cache.get(&keys[(i * 7) % KEYS]).await?;
                        Ok(usize::from(found.is_some()))
                    }
                })
                .await
            }
        }
    }

    /// The store alone, called with full keys and the same CBOR as raw: what `RedisBackend`
    /// costs, without the facade's prefixing and `HashMap` of results.
    async fn store(&self, op: &str) -> Result<f64, BoxError> {
        let secs = self.secs;
        match op {
            "get" => {
                rate(secs, |i| async move {
                    let bytes = self.store.get(&self.full_key(i * 7)).await?;
                    Ok(usize::from(
                        bytes.map(|b| decode(&b)).transpose()?.is_some(),
                    ))
                })
                .await
            }
            "set" => {
                rate(secs, |i| async move {
                    let k = (i * 13) % KEYS;
                    let bytes = Bytes::from(encode(&self.docs[k])?);
                    self.store
                        .set(&self.full_key(k), bytes, Some(TTL), Condition::Always)
                        .await?;
                    Ok(1)
                })
                .await
            }
            "get_many" => {
                rate(secs, |i| async move {
                    let keys: Vec<String> = self.batch(i).map(|k| self.full_key(k)).collect();
                    let mut found = 0;
                    for bytes in self.store.get_many(&keys).await?.into_iter().flatten() {
                        decode(&bytes)?;
                        found += 1;
                    }
                    Ok(found)
                })
                .await
            }
            "set_many" => {
                rate(secs, |i| async move {
                    let entries = self
                        .batch(i)
                        .map(|k| Ok((self.full_key(k), Bytes::from(encode(&self.docs[k])?))))
                        .collect::<Result<Vec<_>, BoxError>>()?;
                    let written = entries.len();
                    self.store.set_many(entries, Some(TTL)).await?;
                    Ok(written)
                })
                .await
            }
            _ => {
                let (store, prefix, keys) = (
                    Arc::clone(&self.store),
                    self.prefix.clone(),
                    Arc::clone(&self.keys),
                );
                concurrent_rate(secs, move |i| {
                    let store = Arc::clone(&store);
                    let key = format!("{prefix}{}", keys[(i * 7) % KEYS]);
                    async move {
                        let bytes = store.get(&key).await?;
                        Ok(usize::from(
                            bytes.map(|b| decode(&b)).transpose()?.is_some(),
                        ))
                    }
                })
                .await
            }
        }
    }

    async fn raw(&self, op: &str) -> Result<f64, BoxError> {
        let secs = self.secs;
        let ttl_ms = TTL.as_millis() as u64;
        match op {
            "get" => {
                rate(secs, |i| {
                    let mut raw = self.raw.clone();
                    async move {
                        let bytes: Option<Vec<u8>> = raw.get(self.full_key(i * 7)).await?;
                        Ok(usize::from(
                            bytes.map(|b| decode(&b)).transpose()?.is_some(),
                        ))
                    }
                })
                .await
            }
            "set" => {
                rate(secs, |i| {
                    let mut raw = self.raw.clone();
                    async move {
                        let k = (i * 13) % KEYS;
                        let bytes = encode(&self.docs[k])?;
                        let _: () = raw.pset_ex(self.full_key(k), bytes, ttl_ms).await?;
                        Ok(1)
                    }
                })
                .await
            }
            "get_many" => {
                rate(secs, |i| {
                    let mut raw = self.raw.clone();
                    async move {
                        let keys: Vec<String> = self.batch(i).map(|k| self.full_key(k)).collect();
                        let values: Vec<Option<Vec<u8>>> = raw.mget(&keys).await?;
                        let mut found = 0;
                        for bytes in values.into_iter().flatten() {
                            decode(&bytes)?;
                            found += 1;
                        }
                        Ok(found)
                    }
                })
                .await
            }
            "set_many" => {
                rate(secs, |i| {
                    let mut raw = self.raw.clone();
                    async move {
                        let mut pipe = redis::pipe();
                        pipe.atomic();
                        let range = self.batch(i);
                        for k in range.clone() {
                            let bytes = encode(&self.docs[k])?;
                            pipe.pset_ex(self.full_key(k), bytes, ttl_ms).ignore();
                        }
                        let _: () = pipe.query_async(&mut raw).await?;
                        Ok(range.len())
                    }
                })
                .await
            }
            _ => {
                let (raw, prefix, keys) = (
                    self.raw.clone(),
                    self.prefix.clone(),
                    Arc::clone(&self.keys),
                );
                concurrent_rate(secs, move |i| {
                    let (mut raw, keys) = (raw.clone(), Arc::clone(&keys));
                    let key = format!("{prefix}{}", keys[(i * 7) % KEYS]);
                    async move {
                        let bytes: Option<Vec<u8>> = raw.get(key).await?;
                        Ok(usize::from(
                            bytes.map(|b| decode(&b)).transpose()?.is_some(),
                        ))
                    }
                })
                .await
            }
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let url = std::env::var("CACHETTE_REDIS_URL").map_err(
        |_| "set CACHETTE_REDIS_URL to the Redis server to measure, e.g. redis://127.0.0.1:6379/0",
    )?;
    let secs = Duration::from_secs_f64(
        std::env::var("BENCH_SECS")
            .ok()
            .and_then(|secs| secs.parse().ok())
            .unwrap_or(1.0),
    );
    let only = std::env::var("BENCH_OPS").ok();
    let mut rng = Rng(0x00ca_c4e7_7e00_0006);
    let keys: Vec<String> = (0..KEYS)
        .map(|_| format!("did:plc:{}", rng.base32(24)))
        .collect();
    let docs: Vec<DidDoc> = keys
        .iter()
        .enumerate()
        .map(|(index, did)| doc(did, index, &mut rng))
        .collect();
    let prefix = format!(
        "cachette-bench:{:x}:",
        Rng(std::process::id().into()).next()
    );

    let store: Arc<dyn Backend> = Arc::new(RedisBackend::connect(&url).await?);
    let cache: Cache<DidDoc> = Cache::builder(Arc::clone(&store))
        .prefix(prefix.clone())
        .default_ttl(TTL)
        .build();
    let raw_url = url.split('?').next().unwrap_or(&url).to_owned();
    let raw = redis::Client::open(raw_url)?
        .get_multiplexed_async_connection()
        .await?;
    let bench = Bench {
        cache,
        store: Arc::clone(&store),
        raw,
        prefix: prefix.clone(),
        keys: Arc::new(keys),
        docs: Arc::new(docs),
        secs,
    };
    // Preload every key so that reads find values to decode.
    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(1_000) {
        let items = chunk
            .iter()
            .map(|&k| (bench.keys[k].as_str(), &bench.docs[k]));
        bench.cache.set_many(items).await?;
    }
    println!(
        "value: {} bytes of CBOR; {ROUNDS} rounds of {secs:?} per figure, median\n",
        encode(&bench.docs[0])?.len()
    );
    println!(
        "| operation | Cache<V> (facade) | RedisBackend alone | raw redis-rs | facade / raw | \
         store / raw |"
    );
    println!("|---|---|---|---|---|---|");
    for (op, label) in [
        ("get", "get (ops/s)"),
        ("set", "set + TTL (ops/s)"),
        ("get_many", "get_many(100) (keys/s)"),
        ("set_many", "set_many(100) + TTL (keys/s)"),
        ("concurrent", "64-task get (ops/s)"),
    ] {
        if only.as_ref().is_some_and(|only| !only.contains(op)) {
            continue;
        }
        let (mut facade, mut store, mut raw) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            facade.push(bench.facade(op).await?);
            store.push(bench.store(op).await?);
            raw.push(bench.raw(op).await?);
        }
        let (facade, store, raw) = (median(facade), median(store), median(raw));
        println!(
            "| {label} | {facade:.0} | {store:.0} | {raw:.0} | {:.0}% | {:.0}% |",
            100.0 * facade / raw,
            100.0 * store / raw
        );
    }
    let removed = store.clear_prefix(&prefix).await?;
    println!("\ncleared {removed} keys under {prefix}");
    Ok(())
}
