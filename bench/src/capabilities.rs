//! The store capabilities, timed on every store in one run next to what a user would do without
//! them: `take` against a `get` then a `delete` (which is not atomic), `get_with_ttl` against
//! `get`, `incr` against `set`, a `keys()` walk of 10,000 keys against a `get_many` of the same
//! keys, and `len` against counting a `keys()` walk.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::{Backend, Cache};
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
