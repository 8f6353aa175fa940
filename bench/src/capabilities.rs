//! The store capabilities, timed on every store in one run next to what a user would do without
//! them: `take` against a `get` then a `delete` (which is not atomic), `get_with_ttl` against
//! `get`, `incr` against `set`, a `keys()` walk of 10,000 keys against a `get_many` of the same
//! keys, and `len` against counting a `keys()` walk. And fleet-wide single flight: a miss under
//! a lease against one without, and the loads of one key for 8 caches of 64 tasks each.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cache_core::{Backend, Cache, Lease};
use futures_util::TryStreamExt;

use crate::BenchResult;
use crate::report::{CapabilityRow, Outcome};
use crate::stores::{Cleanup, open_any, run_prefix};
use crate::workload::{DidDoc, KEYS, SharedWorkload, TTL};

/// Calls per timed single-key sample.
const CALLS: usize = 500;

/// The store behind a row of the main table whose capabilities are timed, if it is one.
pub fn store_of(key: &str) -> Option<&'static str> {
    match key {
        "memory" => Some("memory"),
        "sqlite" => Some("sqlite"),
        "redis" => Some("redis"),
        "postgres-unlogged" => Some("postgres"),
        _ => None,
    }
}

/// Times every capability on `store`, `repeats` alternating samples each; the rows, or why not.
pub async fn measure(
    store: &str,
    name: &'static str,
    workload: &SharedWorkload,
    repeats: usize,
) -> BenchResult<Vec<CapabilityRow>> {
    let (backend, cleanup): (Arc<dyn Backend>, Cleanup) =
        open_any(store, "caps")
            .await
            .map_err(|outcome| match outcome {
                Outcome::Failed { error } => error,
                other => format!("{other:?}"),
            })?;
    let mut rows = rows(&backend, name, workload, repeats).await;
    if let Ok(found) = &mut rows {
        found.extend(lock_rows(&backend, name, workload, repeats).await?);
        found.push(hot_key_row(&backend, name, workload, repeats).await?);
        if store == "memory" {
            found.extend(local_hit_rows(&backend, name, workload, repeats).await?);
        }
    }
    cleanup.await?;
    if let (Ok(found), "memory" | "sqlite") = (&mut rows, store) {
        found.push(blocking_row(store, name, workload, repeats).await?);
    }
    #[cfg(feature = "sqlite")]
    if let (Ok(found), "sqlite") = (&mut rows, store) {
        found.extend(inline_read_rows(name, workload, repeats).await?);
    }
    rows
}

/// SQLite point reads run on the calling task (the default) against the same reads handed to
/// the reader threads (`inline_reads(false)`), two handles on one file, alternating: on one
/// task, and with 64 tasks at once, each reading the whole sample (32,000 gets a sample: with a
/// quarter of it each, a sample lasted about 20 ms and the ratio moved from 0.9 to 2.0 between
/// runs).
#[cfg(feature = "sqlite")]
async fn inline_read_rows(
    name: &'static str,
    workload: &SharedWorkload,
    repeats: usize,
) -> BenchResult<Vec<CapabilityRow>> {
    const TASKS: usize = 64;
    let directory = tempfile::Builder::new()
        .prefix("cachette-bench-inline")
        .tempdir()?;
    let path = directory.path().join("inline.db");
    let open = |inline: bool| {
        cache_sqlite::SqliteBackend::file(&path)
            .inline_reads(inline)
            .open()
    };
    let inline: Cache<DidDoc> = Cache::builder(Arc::new(open(true).await?)).build();
    let handed: Cache<DidDoc> = Cache::builder(Arc::new(open(false).await?)).build();
    let sample = Arc::new(write_sample(&inline, workload).await?);
    async fn one_task(cache: &Cache<DidDoc>, keys: &[String]) -> BenchResult<f64> {
        let began = Instant::now();
        for key in keys {
            found(cache.get(key).await?.is_some())?;
        }
        Ok(rate(keys.len(), began.elapsed()))
    }
    async fn many_tasks(cache: &Cache<DidDoc>, keys: &Arc<Vec<String>>) -> BenchResult<f64> {
        let began = Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let (cache, keys) = (cache.clone(), Arc::clone(keys));
                tokio::spawn(async move {
                    for key in keys.iter().cycle().skip(task * 7).take(keys.len()) {
                        found(cache.get(key).await?.is_some())?;
                    }
                    Ok::<_, crate::BenchError>(())
                })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        Ok(rate(TASKS * keys.len(), began.elapsed()))
    }
    let (mut single, mut single_handed, mut many, mut many_handed) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..repeats {
        single.push(one_task(&inline, &sample).await?);
        single_handed.push(one_task(&handed, &sample).await?);
        many.push(many_tasks(&inline, &sample).await?);
        many_handed.push(many_tasks(&handed, &sample).await?);
    }
    inline.clear().await?;
    inline.close().await?;
    handed.close().await?;
    Ok(vec![
        row(
            name,
            "get on the calling task (inline_reads, the default), 1 task",
            single,
            "the same get through a reader thread",
            single_handed,
            "ops/s",
        ),
        row(
            name,
            "get on the calling task, 64 tasks",
            many,
            "the same gets through reader threads",
            many_handed,
            "ops/s",
        ),
    ])
}

/// `blocking::Cache::get` from a thread without a runtime, against the async `get` over the
/// same store, alternating.
async fn blocking_row(
    store: &str,
    name: &'static str,
    workload: &SharedWorkload,
    repeats: usize,
) -> BenchResult<CapabilityRow> {
    let directory = tempfile::Builder::new()
        .prefix("cachette-bench-blocking")
        .tempdir()?;
    let url = match store {
        "sqlite" => format!(
            "sqlite://{}",
            directory.path().join("blocking.db").display()
        ),
        _ => "memory://".to_owned(),
    };
    let opened = tokio::task::spawn_blocking(move || cachette::blocking::open(&url)).await??;
    let prefix = format!("{}blocking:", run_prefix());
    let sync: cachette::blocking::Cache<DidDoc> =
        opened.cache_with(|builder| builder.prefix(prefix.clone()));
    let cache: Cache<DidDoc> = Cache::builder(Arc::clone(opened.backend()))
        .prefix(prefix)
        .build();
    let sample = write_sample(&cache, workload).await?;
    let (mut blocking, mut asynchronous) = (Vec::new(), Vec::new());
    for _ in 0..repeats {
        let (sync, keys) = (sync.clone(), sample.clone());
        let elapsed = std::thread::spawn(move || -> BenchResult<Duration> {
            let began = Instant::now();
            for key in &keys {
                found(sync.get(key)?.is_some())?;
            }
            Ok(began.elapsed())
        })
        .join()
        .map_err(|_| "the blocking reader panicked")??;
        blocking.push(rate(CALLS, elapsed));
        let began = Instant::now();
        for key in &sample {
            found(cache.get(key).await?.is_some())?;
        }
        asynchronous.push(rate(CALLS, began.elapsed()));
    }
    cache.clear().await?;
    drop((sync, cache));
    tokio::task::spawn_blocking(move || opened.close()).await??;
    Ok(row(
        name,
        "blocking get, from a thread",
        blocking,
        "async get, same store",
        asynchronous,
        "ops/s",
    ))
}

async fn rows(
    backend: &Arc<dyn Backend>,
    name: &'static str,
    workload: &SharedWorkload,
    repeats: usize,
) -> BenchResult<Vec<CapabilityRow>> {
    let cache: Cache<DidDoc> = Cache::builder(Arc::clone(backend))
        .prefix(format!("{}caps:", run_prefix()))
        .default_ttl(TTL)
        .build();
    let sample = &workload.keys[..CALLS];
    let write_sample = || {
        cache.set_many(
            sample
                .iter()
                .zip(&workload.docs)
                .map(|(key, doc)| (key.as_str(), doc)),
        )
    };
    let mut rows = Vec::new();

    // take against get + delete.
    let (mut took, mut read_deleted) = (Vec::new(), Vec::new());
    for _ in 0..repeats {
        write_sample().await?;
        let began = Instant::now();
        for key in sample {
            found(cache.take(key).await?.is_some())?;
        }
        took.push(rate(CALLS, began.elapsed()));
        write_sample().await?;
        let began = Instant::now();
        for key in sample {
            found(cache.get(key).await?.is_some())?;
            cache.delete(key).await?;
        }
        read_deleted.push(rate(CALLS, began.elapsed()));
    }
    rows.push(row(
        name,
        "take",
        took,
        "get then delete",
        read_deleted,
        "ops/s",
    ));

    // get_with_ttl against get.
    write_sample().await?;
    let (mut with_ttl, mut plain) = (Vec::new(), Vec::new());
    for _ in 0..repeats {
        let began = Instant::now();
        for key in sample {
            found(cache.get_with_ttl(key).await?.is_some())?;
        }
        with_ttl.push(rate(CALLS, began.elapsed()));
        let began = Instant::now();
        for key in sample {
            found(cache.get(key).await?.is_some())?;
        }
        plain.push(rate(CALLS, began.elapsed()));
    }
    rows.push(row(name, "get_with_ttl", with_ttl, "get", plain, "ops/s"));

    // incr against set.
    let (mut counted, mut written) = (Vec::new(), Vec::new());
    for _ in 0..repeats {
        let began = Instant::now();
        for n in 0..CALLS {
            cache.incr(&format!("counter{}", n % 50), 1).await?;
        }
        counted.push(rate(CALLS, began.elapsed()));
        let began = Instant::now();
        for (key, doc) in sample.iter().zip(&workload.docs) {
            cache.set(key, doc).await?;
        }
        written.push(rate(CALLS, began.elapsed()));
    }
    rows.push(row(name, "incr", counted, "set", written, "ops/s"));

    // A walk of 10,000 keys against a get_many of them; len against counting a walk.
    cache.clear().await?;
    let items = workload
        .keys
        .iter()
        .zip(&workload.docs)
        .map(|(key, doc)| (key.as_str(), doc));
    cache.set_many(items).await?;
    let (mut walked, mut batched, mut lens, mut counts) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..repeats {
        let began = Instant::now();
        let keys: Vec<String> = cache.keys().try_collect().await?;
        walked.push(rate(keys.len(), began.elapsed()));
        if keys.len() != KEYS {
            return Err(format!("the walk returned {} of {KEYS} keys", keys.len()).into());
        }
        let began = Instant::now();
        let values = cache.get_many(&workload.keys).await?;
        batched.push(rate(values.len(), began.elapsed()));
        let began = Instant::now();
        let len = cache.len().await?;
        lens.push(per_second(began.elapsed()));
        if len != KEYS as u64 {
            return Err(format!("len said {len} of {KEYS} keys").into());
        }
        let began = Instant::now();
        let counted = cache
            .keys()
            .try_fold(0_u64, |n, _| async move { Ok(n + 1) })
            .await?;
        counts.push(per_second(began.elapsed()));
        found(counted == KEYS as u64)?;
    }
    rows.push(row(
        name,
        "keys() walk of 10,000",
        walked,
        "get_many of the same 10,000",
        batched,
        "keys/s",
    ));
    rows.push(row(
        name,
        "len of 10,000",
        lens,
        "counting a keys() walk",
        counts,
        "calls/s",
    ));
    cache.clear().await?;
    Ok(rows)
}

/// Keys of the hot-key workload, the share of them that is hot, and how often reads go there.
const HOT_KEYS_TOTAL: usize = 100_000;
const HOT_KEYS: usize = HOT_KEYS_TOTAL / 100;
const HOT_READS_PERCENT: u32 = 90;
/// Tasks of the hot-key workload, and reads per task per sample.
const HOT_TASKS: usize = 16;
const HOT_READS: usize = 1_000;
/// The tier of the hot-key row: a tenth of the keys.
const HOT_TIER: u64 = (HOT_KEYS_TOTAL / 10) as u64;

/// The keys one task of the hot-key workload reads: 90% of them among the first 1% of the
/// keys, the rest among all, from a seeded generator.
fn hot_key_reads(seed: u64) -> Vec<usize> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..HOT_READS)
        .map(|_| {
            if rng.u32(..100) < HOT_READS_PERCENT {
                rng.usize(..HOT_KEYS)
            } else {
                rng.usize(..HOT_KEYS_TOTAL)
            }
        })
        .collect()
}

/// Reads every task's keys through `cache`, tasks at once; reads per second.
async fn hot_key_sample(
    cache: &Cache<DidDoc>,
    keys: &Arc<Vec<String>>,
    reads: &Arc<Vec<Vec<usize>>>,
) -> BenchResult<f64> {
    let began = Instant::now();
    let tasks: Vec<_> = (0..HOT_TASKS)
        .map(|task| {
            let (cache, keys, reads) = (cache.clone(), Arc::clone(keys), Arc::clone(reads));
            tokio::spawn(async move {
                for &key in &reads[task] {
                    found(cache.get(&keys[key]).await?.is_some())?;
                }
                BenchResult::Ok(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(rate(HOT_TASKS * HOT_READS, began.elapsed()))
}

/// Counts the local tier's hits and misses.
#[derive(Default)]
struct TierCounts {
    hits: AtomicUsize,
    misses: AtomicUsize,
}

impl cache_core::layers::Observer for TierCounts {
    fn on_call(&self, _event: &cache_core::layers::CallEvent<'_>) {}

    fn on_cache_event(&self, event: &cache_core::layers::CacheEvent<'_>) {
        match event {
            cache_core::layers::CacheEvent::LocalHit { .. } => {
                self.hits.fetch_add(1, Ordering::Relaxed);
            }
            cache_core::layers::CacheEvent::LocalMiss { .. } => {
                self.misses.fetch_add(1, Ordering::Relaxed);
            }
            _ => {}
        }
    }
}

/// The resident set of this process, in bytes (Linux; 0 elsewhere).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|statm| statm.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// A hot-key workload (90% of reads on 1% of 100,000 keys, 16 tasks) through a local tier of
/// 10,000 entries against the same reads without a tier; the tier's hit ratio, and what a held
/// copy costs in memory (the growth of the process while a fresh tier fills), in the row's name.
async fn hot_key_row(
    backend: &Arc<dyn Backend>,
    name: &'static str,
    workload: &SharedWorkload,
    repeats: usize,
) -> BenchResult<CapabilityRow> {
    if let Some(bus) = backend.invalidation_bus() {
        bus.start();
    }
    let prefix = format!("{}hot:", run_prefix());
    let builder = || {
        Cache::<DidDoc>::builder(Arc::clone(backend))
            .prefix(prefix.clone())
            .default_ttl(TTL)
    };
    let plain = builder().build();
    let keys: Arc<Vec<String>> = Arc::new(
        (0..HOT_KEYS_TOTAL)
            .map(|n| format!("{}:{n}", workload.keys[n % KEYS]))
            .collect(),
    );
    for chunk in keys.chunks(10_000) {
        plain
            .set_many(
                chunk
                    .iter()
                    .enumerate()
                    .map(|(n, key)| (key.as_str(), &workload.docs[n % KEYS])),
            )
            .await?;
    }
    let reads: Arc<Vec<Vec<usize>>> = Arc::new((0..HOT_TASKS as u64).map(hot_key_reads).collect());

    // The hit ratio and the memory of a held copy, untimed, on a tier of their own.
    let counts = Arc::new(TierCounts::default());
    let counted = builder()
        .local(cache_core::LocalTier::new(HOT_TIER))
        .observe(Arc::clone(&counts))
        .build();
    let before = resident_bytes();
    for key in keys.iter().take(HOT_TIER as usize) {
        found(counted.get(key).await?.is_some())?;
    }
    let per_copy = resident_bytes().saturating_sub(before) / HOT_TIER;
    counts.hits.store(0, Ordering::Relaxed);
    counts.misses.store(0, Ordering::Relaxed);
    hot_key_sample(&counted, &keys, &reads).await?;
    hot_key_sample(&counted, &keys, &reads).await?;
    let (hits, misses) = (
        counts.hits.load(Ordering::Relaxed),
        counts.misses.load(Ordering::Relaxed),
    );
    let hit_ratio = hits as f64 / (hits + misses).max(1) as f64;
    drop(counted);

    let tiered = builder()
        .local(cache_core::LocalTier::new(HOT_TIER))
        .build();
    hot_key_sample(&tiered, &keys, &reads).await?;
    let (mut with_tier, mut without) = (Vec::new(), Vec::new());
    for _ in 0..repeats {
        with_tier.push(hot_key_sample(&tiered, &keys, &reads).await?);
        without.push(hot_key_sample(&plain, &keys, &reads).await?);
    }
    plain.clear().await?;
    // Memory freed by earlier rows is handed out again without the process growing: then the
    // growth says nothing, and the row says so rather than print a zero.
    let memory = if per_copy > 0 {
        format!("~{per_copy} B per held copy")
    } else {
        "memory per copy: see the first store's row".to_owned()
    };
    let op: &'static str = Box::leak(
        format!(
            "hot keys (90% on 1% of 100,000), 16 tasks, local tier of 10,000: \
             hit ratio {hit_ratio:.2}, {memory}"
        )
        .into_boxed_str(),
    );
    Ok(row(
        name,
        op,
        with_tier,
        "same reads, no tier",
        without,
        "reads/s",
    ))
}

/// Reads per sample of the local-tier hit rows, and the keys they cycle over.
const HITS: usize = 20_000;
const HIT_KEYS: usize = 1_000;

/// A held key read through a local tier (`get`, which clones the value, and `get_arc`), one
/// task, against the memory store's typed `get` (a decode per read) and against moka holding
/// the struct (a clone per read) or an `Arc` of it: what a hit costs next to its floor.
async fn local_hit_rows(
    backend: &Arc<dyn Backend>,
    name: &'static str,
    workload: &SharedWorkload,
    repeats: usize,
) -> BenchResult<Vec<CapabilityRow>> {
    let prefix = format!("{}hits:", run_prefix());
    let plain: Cache<DidDoc> = Cache::builder(Arc::clone(backend))
        .prefix(prefix.clone())
        .default_ttl(TTL)
        .build();
    let tiered: Cache<DidDoc> = Cache::builder(Arc::clone(backend))
        .prefix(prefix)
        .default_ttl(TTL)
        .local(cache_core::LocalTier::new(HIT_KEYS as u64 * 4))
        .build();
    let keys = &workload.keys[..HIT_KEYS];
    let docs = &workload.docs[..HIT_KEYS];
    plain
        .set_many(keys.iter().zip(docs).map(|(key, doc)| (key.as_str(), doc)))
        .await?;
    let structs: moka::sync::Cache<String, DidDoc> = moka::sync::Cache::new(HIT_KEYS as u64 * 4);
    let shared: moka::sync::Cache<String, Arc<DidDoc>> =
        moka::sync::Cache::new(HIT_KEYS as u64 * 4);
    for (key, doc) in keys.iter().zip(docs) {
        structs.insert(key.clone(), doc.clone());
        shared.insert(key.clone(), Arc::new(doc.clone()));
        found(tiered.get(key).await?.is_some())?;
    }
    let (mut cloned, mut arcs, mut decoded, mut moka_struct, mut moka_arc) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..repeats {
        let began = Instant::now();
        for n in 0..HITS {
            found(tiered.get(&keys[n % HIT_KEYS]).await?.is_some())?;
        }
        cloned.push(rate(HITS, began.elapsed()));
        let began = Instant::now();
        for n in 0..HITS {
            found(tiered.get_arc(&keys[n % HIT_KEYS]).await?.is_some())?;
        }
        arcs.push(rate(HITS, began.elapsed()));
        let began = Instant::now();
        for n in 0..HITS {
            found(plain.get(&keys[n % HIT_KEYS]).await?.is_some())?;
        }
        decoded.push(rate(HITS, began.elapsed()));
        let began = Instant::now();
        for n in 0..HITS {
            found(structs.get(&keys[n % HIT_KEYS]).is_some())?;
        }
        moka_struct.push(rate(HITS, began.elapsed()));
        let began = Instant::now();
        for n in 0..HITS {
            found(shared.get(&keys[n % HIT_KEYS]).is_some())?;
        }
        moka_arc.push(rate(HITS, began.elapsed()));
    }
    plain.clear().await?;
    Ok(vec![
        row(
            name,
            "local tier hit, get (a clone)",
            cloned.clone(),
            "typed get from the store (a decode)",
            decoded.clone(),
            "ops/s",
        ),
        row(
            name,
            "local tier hit, get_arc",
            arcs.clone(),
            "typed get from the store (a decode)",
            decoded,
            "ops/s",
        ),
        row(
            name,
            "local tier hit, get (a clone)",
            cloned,
            "moka::sync holding the struct, get (a clone)",
            moka_struct,
            "ops/s",
        ),
        row(
            name,
            "local tier hit, get_arc",
            arcs,
            "moka::sync holding Arc<struct>, get",
            moka_arc,
            "ops/s",
        ),
    ])
}

/// Misses timed per sample in the lease row.
const MISSES: usize = 200;

/// Fleet-wide single flight: a miss that takes a lease against one that does not, and the
/// loads of one key when 8 caches (each its own single flight, as 8 processes have) ask with 64
/// tasks each, with and without the lease.
async fn lock_rows(
    backend: &Arc<dyn Backend>,
    name: &'static str,
    workload: &SharedWorkload,
    repeats: usize,
) -> BenchResult<Vec<CapabilityRow>> {
    let prefix = format!("{}locks:", run_prefix());
    let lease = Lease::new(Duration::from_secs(10));
    let build = |part: &str, fleet: bool| {
        let builder = Cache::<DidDoc>::builder(Arc::clone(backend))
            .prefix(format!("{prefix}{part}:"))
            .default_ttl(TTL);
        if fleet {
            builder.fleet_single_flight(lease).build()
        } else {
            builder.build()
        }
    };
    let (leased, plain) = (build("leased", true), build("plain", false));
    let doc = workload.docs[0].clone();
    let (mut with_lease, mut without) = (Vec::new(), Vec::new());
    for repeat in 0..repeats {
        for (cache, rates) in [(&leased, &mut with_lease), (&plain, &mut without)] {
            let began = Instant::now();
            for n in 0..MISSES {
                let doc = doc.clone();
                cache
                    .get_or_insert_with(&format!("{repeat}:{n}"), move || async move {
                        Ok::<_, std::convert::Infallible>(doc)
                    })
                    .await?;
            }
            rates.push(rate(MISSES, began.elapsed()));
        }
    }
    let mut rows = vec![row(
        name,
        "miss loaded under a fleet lease",
        with_lease,
        "miss, single flight per process",
        without,
        "loads/s",
    )];
    let (mut fleet_loads, mut process_loads) = (Vec::new(), Vec::new());
    for repeat in 0..repeats {
        for (fleet, loads) in [(true, &mut fleet_loads), (false, &mut process_loads)] {
            let part = format!("crowd{repeat}{}", if fleet { "f" } else { "p" });
            let caches: Vec<Cache<DidDoc>> = (0..8).map(|_| build(&part, fleet)).collect();
            let counted = Arc::new(AtomicUsize::new(0));
            let tasks: Vec<_> = caches
                .iter()
                .flat_map(|cache| std::iter::repeat_n(cache, 64))
                .map(|cache| {
                    let (cache, counted, doc) = (cache.clone(), Arc::clone(&counted), doc.clone());
                    tokio::spawn(async move {
                        cache
                            .get_or_insert_with("hot", move || async move {
                                counted.fetch_add(1, Ordering::SeqCst);
                                // A source of truth that takes 20 ms to answer.
                                tokio::time::sleep(Duration::from_millis(20)).await;
                                Ok::<_, std::convert::Infallible>(doc)
                            })
                            .await
                    })
                })
                .collect();
            for task in tasks {
                task.await??;
            }
            loads.push(counted.load(Ordering::SeqCst) as f64);
        }
    }
    rows.push(row(
        name,
        "loads of one key, 8 caches x 64 tasks, fleet lease",
        fleet_loads,
        "single flight per process",
        process_loads,
        "loads/key",
    ));
    leased.clear().await?;
    plain.clear().await?;
    backend.clear_prefix(&prefix).await?;
    Ok(rows)
}

/// Writes the workload's first [`CALLS`] keys through `cache`; returns them.
async fn write_sample(
    cache: &Cache<DidDoc>,
    workload: &SharedWorkload,
) -> BenchResult<Vec<String>> {
    let sample: Vec<String> = workload.keys[..CALLS].to_vec();
    cache
        .set_many(
            sample
                .iter()
                .zip(&workload.docs)
                .map(|(key, doc)| (key.as_str(), doc)),
        )
        .await?;
    Ok(sample)
}

fn found(present: bool) -> BenchResult<()> {
    if present {
        Ok(())
    } else {
        Err("a key that must be present was missing".into())
    }
}

fn rate(units: usize, elapsed: Duration) -> f64 {
    units as f64 / elapsed.as_secs_f64()
}

fn per_second(elapsed: Duration) -> f64 {
    1.0 / elapsed.as_secs_f64()
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn row(
    store: &'static str,
    op: &'static str,
    cachette: Vec<f64>,
    baseline_name: &'static str,
    baseline: Vec<f64>,
    unit: &'static str,
) -> CapabilityRow {
    let ratios: Vec<f64> = cachette.iter().zip(&baseline).map(|(a, b)| a / b).collect();
    CapabilityRow {
        store,
        op,
        rate: median(cachette),
        baseline_name,
        baseline: median(baseline),
        ratio: median(ratios),
        unit,
    }
}
