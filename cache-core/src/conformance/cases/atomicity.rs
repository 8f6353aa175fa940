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

/// Reads `names` on `peer` until `done`, panicking at the first answer that mixes two states;
/// returns how many reads it made.
async fn read_whole_batches(
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
        match reader.await {
            Ok(reads) => assert!(reads? > 0),
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => return Err(Error::backend("conformance", "join", None, error)),
        }
    }
    Ok(())
}
