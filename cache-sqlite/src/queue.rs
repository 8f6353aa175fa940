//! The job queue between async callers and the worker threads.
//!
//! A mutex-guarded deque and a condition variable, on purpose: an idle worker sleeps in the
//! kernel until a push wakes it. With crossbeam's channel, whose receivers spin and
//! `sched_yield` before sleeping, sequential gets fell from ~70k to 0.2k–5k ops/s in a third of
//! the runs while other builds kept both cores busy (a yielding thread waits behind every other
//! runnable one; a woken sleeper runs at once), and `spawn_blocking` beat it in those runs. With
//! this queue no run fell below `spawn_blocking`.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// Many producers, many consumers; closing lets the consumers drain what is queued.
pub(crate) struct Queue<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

struct State<T> {
    jobs: VecDeque<T>,
    open: bool,
    /// Consumers asleep in `wait`: a push wakes one only if there is one.
    sleeping: usize,
}

/// What [`Queue::pop_until`] found.
pub(crate) enum Popped<T> {
    Job(T),
    /// The deadline passed with nothing queued.
    TimedOut,
    /// The queue is closed and empty.
    Closed,
}

impl<T> Queue<T> {
    pub(crate) fn new() -> Self {
        Self {
            state: Mutex::new(State {
                jobs: VecDeque::new(),
                open: true,
                sleeping: 0,
            }),
            ready: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // Jobs run outside the lock, so a poisoned lock still guards a consistent deque.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `job`, or gives it back if the queue is closed.
    pub(crate) fn push(&self, job: T) -> Result<(), T> {
        let mut state = self.lock();
        if !state.open {
            return Err(job);
        }
        state.jobs.push_back(job);
        let wake = state.sleeping > 0;
        drop(state);
        if wake {
            self.ready.notify_one();
        }
        Ok(())
    }

    /// The next job without waiting.
    pub(crate) fn try_pop(&self) -> Option<T> {
        self.lock().jobs.pop_front()
    }

    /// The next job, waiting for one; `None` once the queue is closed and drained.
    pub(crate) fn pop(&self) -> Option<T> {
        match self.pop_until(None) {
            Popped::Job(job) => Some(job),
            Popped::TimedOut | Popped::Closed => None,
        }
    }

    /// Waits for a job, then takes it and those queued behind it, at most `max` in all, into
    /// `batch`; `false` once the queue is closed and drained.
    pub(crate) fn pop_batch(&self, batch: &mut Vec<T>, max: usize) -> bool {
        let Some(first) = self.pop() else {
            return false;
        };
        batch.push(first);
        let mut state = self.lock();
        let behind = state.jobs.len().min(max.saturating_sub(1));
        batch.extend(state.jobs.drain(..behind));
        true
    }

    /// How many jobs are queued.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.lock().jobs.len()
    }

    /// The next job, waiting until `deadline` at most (forever if `None`).
    pub(crate) fn pop_until(&self, deadline: Option<Instant>) -> Popped<T> {
        let mut state = self.lock();
        loop {
            if let Some(job) = state.jobs.pop_front() {
                return Popped::Job(job);
            }
            if !state.open {
                return Popped::Closed;
            }
            state.sleeping += 1;
            state = match deadline {
                None => self
                    .ready
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        state.sleeping -= 1;
                        return Popped::TimedOut;
                    }
                    self.ready
                        .wait_timeout(state, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
            state.sleeping -= 1;
        }
    }

    /// Refuses new jobs and wakes every consumer; queued jobs are still handed out.
    pub(crate) fn close(&self) {
        self.lock().open = false;
        self.ready.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn consumers_drain_what_was_queued_before_close_then_stop() {
        let queue = Arc::new(Queue::new());
        let consumers: Vec<_> = (0..3)
            .map(|_| {
                let queue = Arc::clone(&queue);
                std::thread::spawn(move || {
                    let mut taken = Vec::new();
                    while let Some(job) = queue.pop() {
                        taken.push(job);
                    }
                    taken
                })
            })
            .collect();
        for job in 0..1000 {
            queue.push(job).unwrap();
        }
        queue.close();
        assert_eq!(queue.push(1000), Err(1000));
        let mut taken: Vec<i32> = consumers
            .into_iter()
            .flat_map(|consumer| consumer.join().unwrap())
            .collect();
        taken.sort_unstable();
        assert_eq!(taken, (0..1000).collect::<Vec<_>>());
    }

    #[test]
    fn pop_until_times_out_on_an_empty_queue() {
        let queue: Queue<()> = Queue::new();
        let deadline = Instant::now() + Duration::from_millis(20);
        assert!(matches!(queue.pop_until(Some(deadline)), Popped::TimedOut));
        assert!(Instant::now() >= deadline);
        queue.push(()).unwrap();
        assert!(matches!(queue.pop_until(Some(deadline)), Popped::Job(())));
        queue.close();
        assert!(matches!(queue.pop_until(None), Popped::Closed));
    }
}
