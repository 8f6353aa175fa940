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
    }
    cleanup.await?;
    if let (Ok(found), "memory" | "sqlite") = (&mut rows, store) {
        found.push(blocking_row(store, name, workload, repeats).await?);
    }
    rows
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
    let sample: Vec<String> = workload.keys[..CALLS].to_vec();
    cache
        .set_many(
            sample
                .iter()
                .zip(&workload.docs)
                .map(|(key, doc)| (key.as_str(), doc)),
        )
        .await?;
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
