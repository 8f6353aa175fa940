//! Timing: one contender, one operation, for a fixed wall-clock slice (or a fixed number of
//! calls, for profilers).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::BenchResult;
use crate::workload::{BATCH, KEYS, SharedWorkload, TASKS};

/// The operations of the workload, in table order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `get` of a present key, keys in random order, one task.
    Get,
    /// `set` with the 300 s TTL, one task.
    Set,
    /// `get_many` of 100 present keys.
    GetMany,
    /// `set_many` of 100 items with the 300 s TTL.
    SetMany,
    /// `get` of present keys from 64 concurrent tasks.
    ConcurrentGet,
    /// The scale series: `get_many` of this many present keys.
    BatchOf(usize),
    /// The scale series: `get` of present keys from this many concurrent tasks.
    TasksOf(usize),
    /// The scale series: `get_many_vec` (the answer by position, not a map) of this many
    /// present keys.
    PositionalOf(usize),
}

impl Op {
    /// Every operation, in table order.
    pub const ALL: [Op; 5] = [
        Op::Get,
        Op::Set,
        Op::GetMany,
        Op::SetMany,
        Op::ConcurrentGet,
    ];

    /// The scale series, run on the stores of [`SCALE_STORES`]: batches of 1 to 10,000 keys,
    /// then 1 to 256 concurrent tasks, then the large batches answered by position.
    pub const SCALE: [Op; 11] = [
        Op::BatchOf(1),
        Op::BatchOf(10),
        Op::BatchOf(100),
        Op::BatchOf(1_000),
        Op::BatchOf(10_000),
        Op::TasksOf(1),
        Op::TasksOf(8),
        Op::TasksOf(64),
        Op::TasksOf(256),
        Op::PositionalOf(1_000),
        Op::PositionalOf(10_000),
    ];

    /// The name in tables and progress lines.
    pub fn label(self) -> String {
        match self {
            Op::Get => "get".to_owned(),
            Op::Set => "set (TTL)".to_owned(),
            Op::GetMany => "get_many 100".to_owned(),
            Op::SetMany => "set_many 100 (TTL)".to_owned(),
            Op::ConcurrentGet => "get, 64 tasks".to_owned(),
            Op::BatchOf(keys) => format!("get_many {keys}"),
            Op::TasksOf(1) => "get, 1 task".to_owned(),
            Op::TasksOf(tasks) => format!("get, {tasks} tasks"),
            Op::PositionalOf(keys) => format!("get_many_vec {keys}"),
        }
    }

    /// The name `--ops` knows it by (`scale` for the whole series).
    pub fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Set => "set",
            Op::GetMany => "get_many",
            Op::SetMany => "set_many",
            Op::ConcurrentGet => "get64",
            Op::BatchOf(_) | Op::TasksOf(_) | Op::PositionalOf(_) => "scale",
        }
    }

    /// Whether the operation belongs to the scale series.
    pub fn is_scale(self) -> bool {
        matches!(self, Op::BatchOf(_) | Op::TasksOf(_) | Op::PositionalOf(_))
    }

    /// What one counted unit is: batch operations count keys, so that their rate reads next to
    /// single-key rates.
    pub fn unit(self) -> &'static str {
        match self {
            Op::GetMany | Op::SetMany | Op::BatchOf(_) | Op::PositionalOf(_) => "keys/s",
            Op::Get | Op::Set | Op::ConcurrentGet | Op::TasksOf(_) => "ops/s",
        }
    }
}

/// The `--only` names of the stores the scale series runs on: one row per store kind (the
/// layered and featured rows would repeat their store's series).
pub const SCALE_STORES: [&str; 5] = [
    "memory",
    "sqlite",
    "redis",
    "redis-cluster",
    "postgres-unlogged",
];

/// One way of doing the workload's operations: the facade over a store, the store's raw driver,
/// or a peer library. Key arguments are indices into the workload.
///
/// Reads return how many of the asked keys they found, so that a run that misses (a
/// mis-configured contender would be fast for the wrong reason) is reported rather than timed.
pub trait Target: Clone + Send + Sync + 'static {
    /// Whether calls stay in this process: the clock is then read every few calls rather than
    /// after each, so that reading it does not weigh on sub-microsecond calls.
    const IN_PROCESS: bool;
    /// Whether the contender has batch calls; without them `get_many` and `set_many` are not
    /// timed (a loop of single calls is a different operation).
    const BATCHES: bool = true;

    /// Reads one key; whether it was found.
    fn get(&self, key: usize) -> impl Future<Output = BenchResult<bool>> + Send;
    /// Writes one key with the workload's TTL.
    fn set(&self, key: usize) -> impl Future<Output = BenchResult<()>> + Send;
    /// Reads `keys` in one call; how many were found.
    fn get_many(&self, keys: &[usize]) -> impl Future<Output = BenchResult<usize>> + Send;
    /// Reads `keys` in one call, answered by position; how many were found. Raw drivers answer
    /// by position already, so this is their `get_many`; the facade has a call of its own.
    fn get_many_positional(
        &self,
        keys: &[usize],
    ) -> impl Future<Output = BenchResult<usize>> + Send {
        self.get_many(keys)
    }
    /// Writes `keys` in one call with the workload's TTL.
    fn set_many(&self, keys: &[usize]) -> impl Future<Output = BenchResult<()>> + Send;
}

/// How long one slice runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// For this long: the benchmark.
    For(Duration),
    /// For this many calls: for a profiler, which slows calls too much for a time budget and
    /// wants the same work from every contender.
    Calls(u64),
}

impl Budget {
    /// Whether a slice that began at `began` and made `calls` calls is over. The clock is read
    /// only every `stride` calls.
    fn spent(self, calls: u64, stride: u64, began: Instant) -> bool {
        match self {
            Budget::Calls(budget) => calls >= budget,
            Budget::For(slice) => calls.is_multiple_of(stride) && began.elapsed() >= slice,
        }
    }

    /// [`Budget::spent`] for batch calls: a full-length slice also makes at least
    /// [`MIN_BATCH_CALLS`] calls, so that batches of thousands of keys (tens of milliseconds a
    /// call on a server store) are not timed over two or three calls a slice.
    fn spent_batches(self, calls: u64, began: Instant) -> bool {
        match self {
            Budget::For(slice) if slice >= FULL_SLICE && calls < MIN_BATCH_CALLS => false,
            _ => self.spent(calls, 1, began),
        }
    }

    /// The budget of one of `tasks` tasks sharing this one.
    fn share(self, tasks: usize) -> Self {
        match self {
            Budget::Calls(budget) => Budget::Calls((budget / tasks as u64).max(1)),
            Budget::For(slice) => Budget::For(slice),
        }
    }
}

/// Calls a full-length slice of batch calls makes at the least.
pub const MIN_BATCH_CALLS: u64 = 8;
/// Slices this long or longer are a full run's (a `--quick` slice is 20 ms).
const FULL_SLICE: Duration = Duration::from_millis(100);

/// What one timed slice did.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Calls (single-key operations) or keys (batch operations) completed.
    pub units: u64,
    /// Reads that found nothing where every key is present.
    pub misses: u64,
    /// Wall-clock time of the slice.
    pub elapsed: Duration,
}

impl Sample {
    /// Units per second.
    pub fn rate(&self) -> f64 {
        self.units as f64 / self.elapsed.as_secs_f64()
    }
}

/// A [`Target`] behind a trait object, so that a store's contenders of different types sit in one
/// list. Only the call that runs a whole slice is dynamic; the timed loop inside is not.
pub trait Contender: Send + Sync {
    /// Whether the contender can do `op` at all.
    fn supports(&self, op: Op) -> bool;
    /// Runs `op` for `budget`, starting at position `start` of the workload's random order.
    fn run(
        &self,
        op: Op,
        budget: Budget,
        start: usize,
    ) -> Pin<Box<dyn Future<Output = BenchResult<Sample>> + Send + '_>>;
    /// Writes every key of the workload, in batches when the contender has them.
    fn preload(&self) -> Pin<Box<dyn Future<Output = BenchResult<()>> + Send + '_>>;
}

/// A [`Target`] with the workload it walks.
pub struct Timed<T> {
    target: T,
    workload: SharedWorkload,
}

impl<T: Target> Timed<T> {
    /// Times `target` over `workload`.
    pub fn new(target: T, workload: SharedWorkload) -> Self {
        Self { target, workload }
    }
}

impl<T: Target> Contender for Timed<T> {
    fn supports(&self, op: Op) -> bool {
        match op {
            Op::GetMany | Op::SetMany | Op::BatchOf(_) | Op::PositionalOf(_) => T::BATCHES,
            Op::Get | Op::Set | Op::ConcurrentGet | Op::TasksOf(_) => true,
        }
    }

    fn run(
        &self,
        op: Op,
        budget: Budget,
        start: usize,
    ) -> Pin<Box<dyn Future<Output = BenchResult<Sample>> + Send + '_>> {
        let (target, workload) = (&self.target, &self.workload);
        Box::pin(async move {
            match op {
                Op::Get => single(target, workload, budget, start, true).await,
                Op::Set => single(target, workload, budget, start, false).await,
                Op::GetMany => batches(target, workload, budget, start, BATCH, Batch::Map).await,
                Op::SetMany => batches(target, workload, budget, start, BATCH, Batch::Write).await,
                Op::ConcurrentGet => concurrent(target, workload, budget, start, TASKS).await,
                Op::BatchOf(keys) => {
                    batches(target, workload, budget, start, keys, Batch::Map).await
                }
                Op::PositionalOf(keys) => {
                    batches(target, workload, budget, start, keys, Batch::Positional).await
                }
                Op::TasksOf(tasks) => concurrent(target, workload, budget, start, tasks).await,
            }
        })
    }

    fn preload(&self) -> Pin<Box<dyn Future<Output = BenchResult<()>> + Send + '_>> {
        Box::pin(async move {
            let all: Vec<usize> = (0..KEYS).collect();
            for chunk in all.chunks(BATCH) {
                if T::BATCHES {
                    self.target.set_many(chunk).await?;
                } else {
                    for &key in chunk {
                        self.target.set(key).await?;
                    }
                }
            }
            Ok(())
        })
    }
}

/// How many in-process calls run between two reads of the clock.
const CLOCK_STRIDE: u64 = 32;

fn stride<T: Target>() -> u64 {
    if T::IN_PROCESS { CLOCK_STRIDE } else { 1 }
}

async fn single<T: Target>(
    target: &T,
    workload: &SharedWorkload,
    budget: Budget,
    start: usize,
    read: bool,
) -> BenchResult<Sample> {
    let order = &workload.order;
    let stride = stride::<T>();
    let (mut units, mut misses) = (0_u64, 0_u64);
    let began = Instant::now();
    loop {
        let key = order[(start + units as usize) % order.len()];
        if read {
            if !target.get(key).await? {
                misses += 1;
            }
        } else {
            target.set(key).await?;
        }
        units += 1;
        if budget.spent(units, stride, began) {
            break;
        }
    }
    Ok(Sample {
        units,
        misses,
        elapsed: began.elapsed(),
    })
}

/// What a batch call does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Batch {
    /// `get_many`.
    Map,
    /// `get_many_positional`.
    Positional,
    /// `set_many`.
    Write,
}

async fn batches<T: Target>(
    target: &T,
    workload: &SharedWorkload,
    budget: Budget,
    start: usize,
    size: usize,
    call: Batch,
) -> BenchResult<Sample> {
    // The batches are cut before the clock starts: building the key list is the caller's
    // business, not the contender's.
    let size = size.clamp(1, KEYS);
    let runs: Vec<Vec<usize>> = (0..KEYS / size)
        .map(|batch| workload.run_of(start + batch * size, size))
        .collect();
    let (mut units, mut misses, mut calls) = (0_u64, 0_u64, 0_u64);
    let began = Instant::now();
    loop {
        let keys = &runs[calls as usize % runs.len()];
        let found = match call {
            Batch::Map => target.get_many(keys).await?,
            Batch::Positional => target.get_many_positional(keys).await?,
            Batch::Write => {
                target.set_many(keys).await?;
                keys.len()
            }
        };
        misses += keys.len().saturating_sub(found) as u64;
        units += keys.len() as u64;
        calls += 1;
        if budget.spent_batches(calls, began) {
            break;
        }
    }
    Ok(Sample {
        units,
        misses,
        elapsed: began.elapsed(),
    })
}

async fn concurrent<T: Target>(
    target: &T,
    workload: &SharedWorkload,
    budget: Budget,
    start: usize,
    count: usize,
) -> BenchResult<Sample> {
    let stride = stride::<T>();
    let count = count.max(1);
    let budget = budget.share(count);
    let ready = Arc::new(tokio::sync::Barrier::new(count + 1));
    let (began_tx, began_rx) = tokio::sync::watch::channel(None::<Instant>);
    let mut tasks = Vec::with_capacity(count);
    for task in 0..count {
        let (target, workload, ready) = (target.clone(), Arc::clone(workload), Arc::clone(&ready));
        let mut began_rx = began_rx.clone();
        let first = start + task * (KEYS / count);
        tasks.push(tokio::spawn(async move {
            ready.wait().await;
            let began = *began_rx
                .wait_for(Option::is_some)
                .await
                .map_err(|_| "the timer went away")?;
            let began = began.ok_or("no start time")?;
            let (mut units, mut misses) = (0_u64, 0_u64);
            loop {
                let key = workload.order[(first + units as usize) % workload.order.len()];
                if !target.get(key).await? {
                    misses += 1;
                }
                units += 1;
                if budget.spent(units, stride, began) {
                    break;
                }
                if units.is_multiple_of(stride) {
                    // An in-process get never waits, so without this the first two tasks would
                    // run to the deadline and the other 62 never: yield as a request handler
                    // would at its next I/O.
                    if T::IN_PROCESS {
                        tokio::task::yield_now().await;
                    }
                }
            }
            BenchResult::Ok((units, misses))
        }));
    }
    // Every task is spawned and parked before the clock starts; all share one start.
    ready.wait().await;
    let began = Instant::now();
    began_tx.send_replace(Some(began));
    let (mut units, mut misses) = (0, 0);
    for task in tasks {
        let (task_units, task_misses) = task.await??;
        units += task_units;
        misses += task_misses;
    }
    Ok(Sample {
        units,
        misses,
        elapsed: began.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_slice_of_batches_makes_its_minimum_of_calls_and_a_quick_one_does_not_wait() {
        let long_ago = Instant::now()
            .checked_sub(Duration::from_secs(1))
            .unwrap_or_else(Instant::now);
        let full = Budget::For(Duration::from_millis(250));
        assert!(!full.spent_batches(MIN_BATCH_CALLS - 1, long_ago));
        assert!(full.spent_batches(MIN_BATCH_CALLS, long_ago));
        assert!(
            !full.spent_batches(MIN_BATCH_CALLS, Instant::now()),
            "time still counts"
        );
        let quick = Budget::For(Duration::from_millis(20));
        assert!(quick.spent_batches(1, long_ago));
        assert!(Budget::Calls(3).spent_batches(3, Instant::now()));
        assert!(!Budget::Calls(3).spent_batches(2, long_ago));
    }
}
