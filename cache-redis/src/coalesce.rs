//! Concurrent single `get`s of one store handle, sent together: as one `MGET` to a standalone
//! server, as one pipeline of `GET`s per node to a cluster.
//!
//! When many `get`s are in flight at once, a `get` that finds no batch open opens one and
//! yields to the scheduler once; the `get`s that
//! run meanwhile on the same runtime join it, and the opener sends them all as one `MGET` (with
//! an `EXISTS` beside it, in the same round trip, that tells a key of another type from a
//! missing one). A `get` alone sends its plain `GET`. The server then parses and answers one
//! command where it would have answered dozens, which is what bounds a busy Redis.
//!
//! On a cluster, keys of different slots cannot share an `MGET`; the batch goes instead as one
//! pipeline of `GET`s to each node, through the routing every batch of the store takes (slot
//! map, moved and migrating slots). What it saves there is the client's work: one request
//! through redis-rs's cluster connection per node rather than one per key.
//!
//! Every way out is a plain `GET` of the caller's own, never a wrong answer or a wait without
//! end: an opener that is cancelled, or a batch in which a key of another type may hide, lets
//! its callers ask alone; a batch that fails (the server went away, the deadline passed) gives
//! each caller that failure, naming its key.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use cache_core::{Bytes, Error, Result};
use redis::{ErrorKind, FromRedisValue, Pipeline, RedisError, ServerErrorKind};
use tokio::sync::oneshot;

use crate::core::Core;

/// At most this many keys share one `MGET`; a `get` that finds the open batch full asks alone.
const MAX_BATCH: usize = 512;

/// Below this many `get`s in flight on the handle, each is sent alone: the multiplexed
/// connection already pipelines a few concurrent commands, and a batch of a few keys costs its
/// callers more (a turn of the scheduler, a wake-up each) than it saves the server. Measured:
/// 8 tasks ran at 0.72 of plain `GET`s when batched, 64 tasks at 1.14 and 256 at 1.25.
const BUSY: usize = 16;

/// What a caller that joined a batch is told.
enum Answer {
    /// The value, or `None`.
    Found(Option<Bytes>),
    /// The batch failed: the driver's error, for each caller to report under its own key.
    Failed(RedisError),
    /// The batch found no answer within the store's deadline.
    TimedOut,
}

struct Batch {
    /// Which opening this is, so that a cancelled opener closes its own batch only.
    generation: u64,
    keys: Vec<String>,
    waiting: Vec<oneshot::Sender<Answer>>,
}

/// The open batch of one store handle.
#[derive(Default)]
pub(crate) struct Coalescer {
    state: Mutex<State>,
    /// `get`s of this handle under way.
    in_flight: AtomicUsize,
}

/// Counts a `get` in flight for as long as it lives, however it ends.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Default)]
struct State {
    open: Option<Batch>,
    openings: u64,
}

/// Closes the batch its opener opened if the opener goes away before sending it: the callers
/// that joined wake and ask alone.
struct Opened<'a> {
    coalescer: &'a Coalescer,
    generation: u64,
    armed: bool,
}

impl Drop for Opened<'_> {
    fn drop(&mut self) {
        if self.armed {
            let mut state = self.coalescer.lock();
            if state
                .open
                .as_ref()
                .is_some_and(|batch| batch.generation == self.generation)
            {
                // Dropping the senders wakes every caller that joined.
                state.open = None;
            }
        }
    }
}

impl Coalescer {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Nothing runs under the lock that could leave the state half-changed.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `GET key`, shared with the concurrent `get`s of this handle.
    pub(crate) async fn get(&self, core: &Core, key: &str) -> Result<Option<Bytes>> {
        let busy = self.in_flight.fetch_add(1, Ordering::Relaxed) >= BUSY;
        let _in_flight = InFlight(&self.in_flight);
        if !busy {
            return plain_get(core, key).await;
        }
        let joined = {
            let mut state = self.lock();
            match state.open.as_mut() {
                Some(batch) if batch.keys.len() < MAX_BATCH => {
                    let (reply, answer) = oneshot::channel();
                    batch.keys.push(key.to_owned());
                    batch.waiting.push(reply);
                    Some(Ok(answer))
                }
                Some(_) => None,
                None => {
                    state.openings += 1;
                    let generation = state.openings;
                    state.open = Some(Batch {
                        generation,
                        keys: Vec::new(),
                        waiting: Vec::new(),
                    });
                    Some(Err(generation))
                }
            }
        };
        match joined {
            None => plain_get(core, key).await,
            Some(Ok(answer)) => match answer.await {
                Ok(Answer::Found(value)) => Ok(value),
                Ok(Answer::Failed(error)) => Err(core.map_redis_error("get", Some(key), error)),
                Ok(Answer::TimedOut) => Err(core.timed_out("get", Some(key))),
                // The opener went away, or could not answer this key alone: ask alone.
                Err(_) => plain_get(core, key).await,
            },
            Some(Err(generation)) => self.send(core, key, generation).await,
        }
    }

    /// The opener's part: let the others join, then send the batch.
    async fn send(&self, core: &Core, key: &str, generation: u64) -> Result<Option<Bytes>> {
        let mut opened = Opened {
            coalescer: self,
            generation,
            armed: true,
        };
        tokio::task::yield_now().await;
        let batch = {
            let mut state = self.lock();
            match &state.open {
                Some(batch) if batch.generation == generation => state.open.take(),
                _ => None,
            }
        };
        opened.armed = false;
        let Some(batch) = batch.filter(|batch| !batch.keys.is_empty()) else {
            return plain_get(core, key).await;
        };
        let mut keys: Vec<&str> = Vec::with_capacity(batch.keys.len() + 1);
        keys.push(key);
        keys.extend(batch.keys.iter().map(String::as_str));
        if core.is_cluster() {
            return send_to_cluster(core, &keys, batch.waiting).await;
        }
        let mut pipeline = Pipeline::with_capacity(2);
        pipeline.cmd("MGET").arg(&keys).cmd("EXISTS").arg(&keys);
        let mut connection = core.connection("get", Some(key))?;
        let sent: std::result::Result<(Vec<Option<Bytes>>, usize), RedisError> =
            match tokio::time::timeout(core.deadline(), pipeline.query_async(&mut connection)).await
            {
                Ok(outcome) => outcome,
                Err(_) => {
                    for reply in batch.waiting {
                        let _ = reply.send(Answer::TimedOut);
                    }
                    return Err(core.timed_out("get", Some(key)));
                }
            };
        match sent {
            Ok((mut values, existing)) if values.len() == keys.len() => {
                let present = values.iter().filter(|value| value.is_some()).count();
                // More keys exist than had values: one of the empty answers may be a key of
                // another type (or one written meanwhile). Those callers ask alone, where a
                // key of another type is refused by name.
                let trust_misses = existing <= present;
                let own = values.remove(0);
                for (reply, value) in batch.waiting.into_iter().zip(values) {
                    if value.is_some() || trust_misses {
                        let _ = reply.send(Answer::Found(value));
                    }
                }
                if own.is_some() || trust_misses {
                    Ok(own)
                } else {
                    plain_get(core, key).await
                }
            }
            // An answer of another shape: nobody trusts it, everyone asks alone.
            Ok(_) => plain_get(core, key).await,
            Err(error) => {
                for reply in batch.waiting {
                    let _ = reply.send(Answer::Failed(error.clone()));
                }
                Err(core.map_redis_error("get", Some(key), error))
            }
        }
    }
}

/// The opener's part on a cluster: one pipeline of `GET`s per node. `keys[0]` is the opener's
/// own key; `waiting` answers the others, in order. Each node's outcome is its keys' alone:
/// their values; or, when the node's pipeline met a key of another type or a slot that moved or
/// is migrating, a request of each caller's own (which names such a key, and which redis-rs
/// redirects); or that node's failure, under each caller's own key. A batch past the deadline
/// times out for all of its callers.
async fn send_to_cluster(
    core: &Core,
    keys: &[&str],
    waiting: Vec<oneshot::Sender<Answer>>,
) -> Result<Option<Bytes>> {
    const OPERATION: &str = "get";
    let own = keys[0];
    let names: Vec<&[u8]> = keys.iter().map(|key| key.as_bytes()).collect();
    let batches = core.topology(OPERATION).await?.group(names.iter().copied());
    let build = |slots: &[Vec<usize>]| {
        let mut pipeline = Pipeline::with_capacity(slots.iter().map(Vec::len).sum());
        for &position in slots.iter().flatten() {
            pipeline.cmd("GET").arg(names[position]);
        }
        pipeline
    };
    let outcomes = match core.send_batches(OPERATION, &batches, &build).await {
        Ok(outcomes) => outcomes,
        Err(error) if is_timeout(&error) => {
            for reply in waiting {
                let _ = reply.send(Answer::TimedOut);
            }
            return Err(core.timed_out(OPERATION, Some(own)));
        }
        // Not a node's answer (the store was closed): each caller finds out alone.
        Err(_) => {
            drop(waiting);
            return plain_get(core, own).await;
        }
    };
    // Per position: the answer, or `None` for a caller who asks alone.
    let mut answers: Vec<Option<Answer>> = (0..keys.len()).map(|_| None).collect();
    for (batch, outcome) in batches.iter().zip(outcomes) {
        let positions = batch.slots.iter().flatten();
        match outcome {
            Ok(replies) if positions.clone().count() == replies.len() => {
                for (&position, reply) in positions.zip(replies) {
                    answers[position] = Option::<Bytes>::from_redis_value(reply)
                        .ok()
                        .map(Answer::Found);
                }
            }
            // An answer of another shape: nobody trusts it.
            Ok(_) => {}
            Err(error) if asks_alone(&error) => {
                if matches!(error.kind(), ErrorKind::Server(ServerErrorKind::Moved)) {
                    core.forget_topology();
                }
            }
            Err(error) => {
                for &position in positions {
                    answers[position] = Some(Answer::Failed(error.clone()));
                }
            }
        }
    }
    let mut answers = answers.into_iter();
    let own_answer = answers.next().flatten();
    for (reply, answer) in waiting.into_iter().zip(answers) {
        if let Some(answer) = answer {
            let _ = reply.send(answer);
        }
    }
    match own_answer {
        Some(Answer::Found(value)) => Ok(value),
        Some(Answer::Failed(error)) => Err(core.map_redis_error(OPERATION, Some(own), error)),
        Some(Answer::TimedOut) => Err(core.timed_out(OPERATION, Some(own))),
        None => plain_get(core, own).await,
    }
}

/// Whether a node's failed pipeline leaves its callers to ask alone: a key of another type (its
/// own `GET` names it), or a slot that moved or is migrating (its own `GET` is redirected).
fn asks_alone(error: &RedisError) -> bool {
    error.code() == Some("WRONGTYPE")
        || matches!(
            error.kind(),
            ErrorKind::Server(
                ServerErrorKind::Moved | ServerErrorKind::Ask | ServerErrorKind::TryAgain
            )
        )
}

/// Whether the store's call failed because its deadline passed.
fn is_timeout(error: &Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(io) = current.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return true;
        }
        source = current.source();
    }
    false
}

/// The caller's own `GET`.
async fn plain_get(core: &Core, key: &str) -> Result<Option<Bytes>> {
    core.query("get", Some(key), redis::cmd("GET").arg(key))
        .await
}
