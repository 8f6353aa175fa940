//! Batches bigger than any chunk a store would pick, read on another handle.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;

use super::LONG_TTL;
use crate::conformance::Ctx;
use crate::{Backend, Error, Result};

/// Keys per batch: past every chunk size a store might cut a batch into (SQLite's 999 or 32,766
/// parameters, Redis's 10,000 keys per `UNLINK`, a driver's page).
const KEYS: usize = 20_000;

/// Reads `names` on `peer` until `done` (at least once), panicking at the first answer that
/// mixes two states; returns how many reads it made.
pub(crate) async fn read_whole_batches(
    peer: Arc<dyn Backend>,
    names: Vec<String>,
    done: Arc<AtomicBool>,
) -> Result<usize> {
    let mut reads = 0;
    while !done.load(Ordering::Acquire) || reads == 0 {
        let values = peer.get_many(&names).await?;
        assert_eq!(values.len(), names.len());
        let first = &values[0];
        if let Some(torn) = values.iter().position(|value| value != first) {
            let show = |value: &Option<Bytes>| {
                value
                    .as_ref()
                    .map(|v| String::from_utf8_lossy(v).into_owned())
            };
            panic!(
                "get_many saw a partly applied batch: {:?} is {:?}, {:?} is {:?}",
                names[0],
                show(first),
                names[torn],
                show(&values[torn])
            );
        }
        reads += 1;
        tokio::task::yield_now().await;
    }
    Ok(reads)
}

/// While batches of 20,000 keys are written, alternately with a TTL and with `Duration::ZERO`
/// (which removes them), readers on another handle see every `get_many` whole: all keys of one
/// batch or none of them. One reader reads all 20,000 keys (a snapshot, however the store
/// chunks reads); the other reads a few keys spread over the whole batch, with requests small
/// enough for a server to serve between two chunks of a batch it cut up. The keys share a `{…}`
/// hash tag so that a sharded store keeps them on one shard, where atomicity is defined.
pub async fn set_many_of_20000_keys_is_atomic_for_a_reader_on_another_handle(
    ctx: Ctx,
) -> Result<()> {
    const ROUNDS: usize = 12;
    let names: Vec<String> = (0..KEYS)
        .map(|i| ctx.key(&format!("{{big}}:{i}")))
        .collect();
    let sample: Vec<String> = names
        .iter()
        .step_by(997)
        .chain(names.last())
        .cloned()
        .collect();
    let done = Arc::new(AtomicBool::new(false));
    let readers = [names.clone(), sample].map(|names| {
        tokio::spawn(read_whole_batches(
            Arc::clone(ctx.peer()),
            names,
            Arc::clone(&done),
        ))
    });
    for round in 0..ROUNDS {
        let value = Bytes::from(format!("round {round}"));
        let entries = names
            .iter()
            .map(|key| (key.clone(), value.clone()))
            .collect();
        let ttl = if round % 2 == 0 {
            Some(LONG_TTL)
        } else {
            Some(Duration::ZERO)
        };
        ctx.backend().set_many(entries, ttl).await?;
        tokio::task::yield_now().await;
    }
    done.store(true, Ordering::Release);
    for reader in readers {
        joined(reader).await?;
    }
    Ok(())
}

/// What a reader task returned, with its panic (a failed assertion) passed on as it was.
pub(crate) async fn joined<T>(task: tokio::task::JoinHandle<Result<T>>) -> Result<T> {
    match task.await {
        Ok(outcome) => outcome,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(error) => Err(Error::backend("conformance", "join", None, error)),
    }
}

/// A batch of 100,000 keys, then clearing them, never blocks the runtime: beside them on the
/// suite's two-worker runtime, small `get_many` calls keep being made and a 5 ms timer never
/// fires late by more than half a second or half the batch's time, whichever is more. (A store
/// that takes a blocking lock around a batch stalls both workers, the one running the batch and
/// the one whose small call waits on the lock, for about the whole batch; a busy machine only
/// slows the runtime down.)
pub async fn big_batches_never_stall_the_runtime(ctx: Ctx) -> Result<()> {
    // A store that holds the worker stalls the timer on every try; a machine too busy to run
    // the timer on time (every case at once on two cores) rarely does twice in a row.
    let mut tries = 0;
    loop {
        tries += 1;
        let (late, batch_took) = time_a_big_batch(&ctx).await?;
        if late <= Duration::from_millis(500).max(batch_took / 2) {
            return Ok(());
        }
        assert!(
            tries < 2,
            "a 5 ms timer fired {late:?} late while a batch of 100000 keys was written and \
             cleared in {batch_took:?}, on both tries"
        );
    }
}

/// Writes and clears 100,000 keys beside a 5 ms timer and small reads: how late the timer
/// fired at worst, and how long the batch took.
async fn time_a_big_batch(ctx: &Ctx) -> Result<(Duration, Duration)> {
    const KEYS: usize = 100_000;
    let done = Arc::new(AtomicBool::new(false));
    let ticker = {
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let (mut latest, mut ticks) = (Duration::ZERO, 0);
            while !done.load(Ordering::Acquire) || ticks == 0 {
                ticks += 1;
                let asked = std::time::Instant::now();
                tokio::time::sleep(Duration::from_millis(5)).await;
                latest = latest.max(asked.elapsed().saturating_sub(Duration::from_millis(5)));
            }
            latest
        })
    };
    let (started, running) = tokio::sync::oneshot::channel();
    let small = {
        let (backend, done) = (Arc::clone(ctx.backend()), Arc::clone(&done));
        let keys = vec![ctx.key("small:a"), ctx.key("small:b"), ctx.key("small:c")];
        tokio::spawn(async move {
            let mut started = Some(started);
            let mut calls = 0_u64;
            while !done.load(Ordering::Acquire) || calls == 0 {
                backend.get_many(&keys).await?;
                calls += 1;
                if let Some(started) = started.take() {
                    let _ = started.send(());
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Result::Ok(calls)
        })
    };
    // Start the batch only once the small calls run on a worker of their own.
    let _ = running.await;
    let entries = (0..KEYS)
        .map(|i| (ctx.key(&format!("many:{i}")), Bytes::from_static(b"v")))
        .collect();
    let batch_started = std::time::Instant::now();
    ctx.backend().set_many(entries, Some(LONG_TTL)).await?;
    assert_eq!(
        ctx.backend().clear_prefix(&ctx.key("many:")).await?,
        KEYS as u64
    );
    let batch_took = batch_started.elapsed();
    done.store(true, Ordering::Release);
    let join = |error| Error::backend("conformance", "join", None, error);
    let late = ticker.await.map_err(join)?;
    let calls = small.await.map_err(join)??;
    assert!(calls > 0);
    Ok((late, batch_took))
}
