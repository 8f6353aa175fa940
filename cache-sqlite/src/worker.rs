//! The threads that own the connections: one writer with group commit, a few readers.
//!
//! SQLite calls block, so none runs on the async executor. One writer thread owns the only
//! writing connection of a store handle; a few reader threads own a read-only connection each
//! and take jobs from one shared queue. A caller queues a job and awaits its reply on a
//! oneshot: no `spawn_blocking` hop, whose cost (~19 µs here) exceeds a point read.
//!
//! The writer runs every job in a `BEGIN IMMEDIATE` transaction. When jobs queue up behind one
//! another it runs the queued ones in one transaction (group commit) and replies only after the
//! commit; if any of them fails, the group is rolled back and each job runs alone, so one
//! caller's failure never touches another's write. The one exception is a lock that another
//! process held past the busy timeout: every job of the group fails with it at once, as each
//! would alone after waiting as long again.
//!
//! A worker thread that ends for any reason, a panic included, closes its queue on the way out,
//! so that queued and later calls fail with [`Failure::Closed`] instead of waiting forever.

use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex, PoisonError, TryLockError};
use std::thread;
use std::time::{Duration, Instant};

use cache_core::Error;
use tokio::sync::oneshot;

use crate::connection::{Conn, Settings};
use crate::error::{Explained, Failure, STORE, copy_error, is_busy};
use crate::queue::{Popped, Queue};
use crate::sql::{Sql, now_millis};

/// At most this many queued writes share one transaction, so that one commit never holds the
/// write lock for long.
const MAX_GROUP: usize = 128;
/// The most read jobs a reader thread runs in one read transaction: few enough that the WAL
/// snapshot they share is held for microseconds, and a checkpoint is not held up by it.
const MAX_READ_BATCH: usize = 32;

/// Expired rows deleted per purge transaction. The writer runs one chunk per turn of its loop,
/// so a write of this process queued meanwhile waits for one chunk, not for the whole purge, and
/// other processes get the lock between chunks.
pub(crate) const PURGE_CHUNK: i64 = 5_000;

/// A write that can run again: inside a group first, alone if the group failed.
trait WriteJob: Send {
    fn run(&mut self, conn: &Conn, now: i64) -> rusqlite::Result<()>;
    fn succeed(self: Box<Self>);
    fn fail(self: Box<Self>, error: rusqlite::Error);
}

struct Pending<T, F> {
    work: F,
    outcome: Option<T>,
    reply: oneshot::Sender<Result<T, Failure>>,
}

impl<T, F> WriteJob for Pending<T, F>
where
    T: Send,
    F: FnMut(&Conn, i64) -> rusqlite::Result<T> + Send,
{
    fn run(&mut self, conn: &Conn, now: i64) -> rusqlite::Result<()> {
        self.outcome = Some((self.work)(conn, now)?);
        Ok(())
    }

    fn succeed(self: Box<Self>) {
        // A caller that stopped waiting no longer needs the answer.
        let _ = self.reply.send(self.outcome.ok_or(Failure::Closed));
    }

    fn fail(self: Box<Self>, error: rusqlite::Error) {
        let _ = self.reply.send(Err(Failure::Sqlite(error)));
    }
}

enum WriterMessage {
    Job(Box<dyn WriteJob>),
    Purge(oneshot::Sender<Result<u64, Failure>>),
}

type ReadJob = Box<dyn FnOnce(&Conn) + Send>;

/// The worker threads of one store handle.
pub(crate) struct Workers {
    writer: Arc<Queue<WriterMessage>>,
    readers: Arc<Queue<ReadJob>>,
    /// Connections for point reads run on the calling task (see [`Workers::read_inline`]); empty
    /// when inline reads are off.
    inline: Vec<Mutex<Option<Conn>>>,
    /// Where the next inline read starts looking for a free connection.
    next_inline: AtomicUsize,
    /// Each resolves when its thread has closed its connection.
    exits: Mutex<Vec<oneshot::Receiver<()>>>,
}

/// What a read run on the calling task answers.
pub(crate) enum Inline<T> {
    /// The read ran to its end.
    Done(T),
    /// The read would take longer than an inline read may (a value past
    /// [`INLINE_VALUE_LIMIT`]): a reader thread runs it instead.
    Declined,
}

/// The largest value an inline read copies out; a larger one is read by a reader thread. Four
/// overflow pages of the default 4 KiB page and a copy of 16 KiB: microseconds from the page
/// cache.
pub(crate) const INLINE_VALUE_LIMIT: i64 = 16 * 1024;

impl Workers {
    /// Opens the writer connection (creating the file and the table), then the readers.
    pub(crate) async fn start(settings: Settings) -> Result<Self, Error> {
        let sql = Arc::new(Sql::new(&settings.table));
        // Built first so that an early return drops it, which closes the queues and so ends
        // every thread started so far.
        let mut workers = Self {
            writer: Arc::new(Queue::new()),
            readers: Arc::new(Queue::new()),
            inline: Vec::with_capacity(settings.inline_connections()),
            next_inline: AtomicUsize::new(0),
            exits: Mutex::new(Vec::with_capacity(settings.readers + 1)),
        };
        let (ready, started) = oneshot::channel();
        let (exit, exited) = oneshot::channel();
        workers.exited_on(exited);
        {
            let (settings, sql) = (settings.clone(), Arc::clone(&sql));
            let queue = Arc::clone(&workers.writer);
            spawn("cachette-sqlite-writer", move || {
                let _exit = exit;
                let _serving = Serving(Arc::clone(&queue));
                match Conn::open(&settings, sql, true) {
                    Ok(conn) => {
                        let _ = ready.send(Ok(()));
                        write_loop(&conn, &queue, settings.purge_interval);
                    }
                    Err(error) => {
                        let _ = ready.send(Err(error));
                    }
                }
            })?;
        }
        started.await.map_err(|_| stopped_while_opening())??;
        let mut starting = Vec::with_capacity(settings.readers);
        for reader in 0..settings.readers {
            // The first reader threads also open the inline connections, so that no open runs
            // on the executor; they are handed over with the ready signal.
            let inline = reader < settings.inline_connections();
            let (ready, started) = oneshot::channel::<Result<Option<Conn>, Error>>();
            let (exit, exited) = oneshot::channel();
            workers.exited_on(exited);
            starting.push(started);
            let (settings, sql) = (settings.clone(), Arc::clone(&sql));
            let queue = Arc::clone(&workers.readers);
            spawn("cachette-sqlite-reader", move || {
                let _exit = exit;
                let _serving = Serving(Arc::clone(&queue));
                let opened = Conn::open(&settings, Arc::clone(&sql), false).and_then(|conn| {
                    let spare = inline
                        .then(|| Conn::open_inline(&settings, Arc::clone(&sql)))
                        .transpose()?;
                    Ok((conn, spare))
                });
                match opened {
                    Ok((conn, spare)) => {
                        let _ = ready.send(Ok(spare));
                        read_loop(&conn, &queue);
                    }
                    Err(error) => {
                        let _ = ready.send(Err(error));
                    }
                }
            })?;
        }
        for started in starting {
            if let Some(conn) = started.await.map_err(|_| stopped_while_opening())?? {
                workers.inline.push(Mutex::new(Some(conn)));
            }
        }
        Ok(workers)
    }

    fn exited_on(&self, exited: oneshot::Receiver<()>) {
        self.exits
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(exited);
    }

    /// Runs `work` on a reader connection, retrying while the database is busy.
    pub(crate) async fn read<T, F>(&self, mut work: F) -> Result<T, Failure>
    where
        T: Send + 'static,
        F: FnMut(&Conn, i64) -> rusqlite::Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: ReadJob = Box::new(move |conn: &Conn| {
            let outcome = conn.retry_busy(|| work(conn, now_millis()));
            let _ = reply.send(outcome.map_err(Failure::Sqlite));
        });
        self.readers.push(job).map_err(|_| Failure::Closed)?;
        answer.await.map_err(|_| Failure::Closed)?
    }

    /// Runs `work` on the calling thread, on an inline connection that no other caller is using,
    /// when there is one: a point read costs a few microseconds there, where handing it to a
    /// reader thread and back costs a thread wake-up each way (~30 µs).
    ///
    /// It never waits: an inline connection has no busy timeout, so a read that finds the
    /// database locked (by another process's exclusive lock, or a memory database's writer)
    /// answers `None` at once, as does one that finds every inline connection in use or `work`
    /// answering [`Inline::Declined`]. The caller then goes through [`Workers::read`], which
    /// waits and retries on a reader thread. What `work` may do is the caller's bound: a point
    /// lookup by key (a B-tree descent of a few pages) and a value of at most
    /// [`INLINE_VALUE_LIMIT`] bytes.
    pub(crate) fn read_inline<T>(
        &self,
        work: impl FnOnce(&Conn, i64) -> rusqlite::Result<Inline<T>>,
    ) -> Option<Result<T, Failure>> {
        let count = self.inline.len();
        if count == 0 {
            return None;
        }
        let start = self.next_inline.fetch_add(1, AtomicOrdering::Relaxed);
        for offset in 0..count {
            let slot = &self.inline[(start + offset) % count];
            let mut guard = match slot.try_lock() {
                Ok(guard) => guard,
                Err(TryLockError::WouldBlock) => continue,
                // A read that panicked left nothing half-done in a connection between reads.
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            };
            let conn = guard.as_mut()?;
            return match work(conn, now_millis()) {
                Ok(Inline::Done(value)) => Some(Ok(value)),
                Ok(Inline::Declined) => None,
                Err(error) if is_busy(&error) => None,
                Err(error) => Some(Err(Failure::Sqlite(error))),
            };
        }
        None
    }

    /// Hands the inline connections to a reader thread to close: closing the last connection
    /// of a WAL file checkpoints it, which must not run on the executor.
    fn retire_inline(&self) {
        let conns: Vec<Conn> = self
            .inline
            .iter()
            .filter_map(|slot| slot.lock().unwrap_or_else(PoisonError::into_inner).take())
            .collect();
        if !conns.is_empty() {
            // A closed queue gives the job back, and it is dropped here: nothing else is left.
            let _ = self.readers.push(Box::new(move |_: &Conn| drop(conns)));
        }
    }

    /// Runs `work` on the writer connection inside a write transaction. It may run more than
    /// once (a failed group is retried job by job), and its outcome counts only once committed.
    pub(crate) async fn write<T, F>(&self, work: F) -> Result<T, Failure>
    where
        T: Send + 'static,
        F: FnMut(&Conn, i64) -> rusqlite::Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = WriterMessage::Job(Box::new(Pending {
            work,
            outcome: None,
            reply,
        }));
        self.writer.push(job).map_err(|_| Failure::Closed)?;
        answer.await.map_err(|_| Failure::Closed)?
    }

    /// Deletes every expired row, in chunks.
    pub(crate) async fn purge(&self) -> Result<u64, Failure> {
        let (reply, answer) = oneshot::channel();
        self.writer
            .push(WriterMessage::Purge(reply))
            .map_err(|_| Failure::Closed)?;
        answer.await.map_err(|_| Failure::Closed)?
    }

    /// Stops taking jobs, lets the threads finish the queued ones, and waits until every
    /// connection is closed.
    pub(crate) async fn close(&self) {
        self.retire_inline();
        self.writer.close();
        self.readers.close();
        let exits = std::mem::take(&mut *self.exits.lock().unwrap_or_else(PoisonError::into_inner));
        for exited in exits {
            // Resolves with an error when the thread drops its end: the normal way out.
            let _ = exited.await;
        }
    }
}

impl Drop for Workers {
    /// A handle dropped without `close` still stops its threads once they drain their queues.
    fn drop(&mut self) {
        self.retire_inline();
        self.writer.close();
        self.readers.close();
    }
}

/// A reader thread's loop: it takes the jobs queued so far, at most [`MAX_READ_BATCH`], and runs
/// them in one read transaction ([`run_reads`]), until the queue is closed and drained.
fn read_loop(conn: &Conn, queue: &Queue<ReadJob>) {
    let mut batch: Vec<ReadJob> = Vec::with_capacity(MAX_READ_BATCH);
    while queue.pop_batch(&mut batch, MAX_READ_BATCH) {
        run_reads(conn, &mut batch);
    }
}

/// Runs the queued read jobs of `batch`, emptying it. Two or more share one read transaction:
/// SQLite then takes its WAL read lock once for all of them rather than once per statement,
/// and that lock goes through a mutex that every connection of the process to the file shares
/// (`unixShmLock`), the point where concurrent reads queue. Every job was queued before the
/// transaction's first read, so each sees every write that had returned before it was asked.
fn run_reads(conn: &Conn, batch: &mut Vec<ReadJob>) {
    if batch.len() > 1 {
        conn.begin_read();
    }
    for job in batch.drain(..) {
        job(conn);
    }
    conn.end_read();
}

/// Held by a worker thread while it runs, and dropped however the thread ends, a panic
/// included: it closes the thread's queue and drops the jobs left in it, whose callers then get
/// [`Failure::Closed`]. Without it, a thread that died would leave its queue open and every
/// later call waiting forever. It is declared after the thread's exit signal, so dropped before
/// it: [`Workers::close`] returns only once the queue is empty. A reader closes the queue of all
/// readers: the others drain it and stop, and the handle fails loudly rather than run on fewer
/// threads unnoticed.
struct Serving<T>(Arc<Queue<T>>);

impl<T> Drop for Serving<T> {
    fn drop(&mut self) {
        if thread::panicking() {
            tracing::error!("a SQLite worker thread panicked; the store's calls now fail");
        }
        self.0.close();
        while self.0.try_pop().is_some() {}
    }
}

fn stopped_while_opening() -> Error {
    Error::backend(
        STORE,
        "open",
        None,
        Explained {
            context: "a worker thread stopped while opening the database".to_owned(),
            source: None,
        },
    )
}

fn spawn(name: &str, body: impl FnOnce() + Send + 'static) -> Result<(), Error> {
    thread::Builder::new()
        .name(name.to_owned())
        .spawn(body)
        .map(drop)
        .map_err(|error| Error::backend(STORE, "open", None, error))
}

/// A purge under way. It deletes one chunk per turn of the writer's loop, so that writes queued
/// meanwhile run between chunks.
#[derive(Default)]
struct PurgeRun {
    purged: u64,
    /// Callers of `purge_expired`, each with the count when it asked: it is told how many rows
    /// were deleted after that.
    waiting: Vec<(oneshot::Sender<Result<u64, Failure>>, u64)>,
}

impl PurgeRun {
    /// Deletes the next chunk; returns whether the purge is over, done or failed.
    fn step(&mut self, conn: &Conn) -> bool {
        match conn.purge_chunk() {
            Ok(removed) => {
                self.purged += removed as u64;
                if (removed as i64) < PURGE_CHUNK {
                    for (reply, asked_at) in self.waiting.drain(..) {
                        let _ = reply.send(Ok(self.purged.saturating_sub(asked_at)));
                    }
                    return true;
                }
                false
            }
            Err(error) => {
                if self.waiting.is_empty() {
                    tracing::warn!(%error, "background purge of expired SQLite rows failed");
                }
                for (reply, _) in self.waiting.drain(..) {
                    let _ = reply.send(Err(Failure::Sqlite(copy_error(&error))));
                }
                true
            }
        }
    }
}

fn write_loop(conn: &Conn, queue: &Queue<WriterMessage>, purge_interval: Option<Duration>) {
    // Validation keeps the interval to a day; one the clock cannot reach would mean never.
    let schedule = || purge_interval.and_then(|every| Instant::now().checked_add(every));
    let mut next_purge = schedule();
    let mut purge: Option<PurgeRun> = None;
    let mut group: Vec<Box<dyn WriteJob>> = Vec::with_capacity(MAX_GROUP);
    loop {
        // While a purge is under way, only the writes already queued run before its next chunk.
        let wait_until = if purge.is_some() {
            Some(Instant::now())
        } else {
            next_purge
        };
        match queue.pop_until(wait_until) {
            Popped::Job(first) => {
                let mut next = Some(first);
                while let Some(message) = next {
                    match message {
                        WriterMessage::Job(job) => group.push(job),
                        WriterMessage::Purge(reply) => {
                            let run = purge.get_or_insert_with(PurgeRun::default);
                            run.waiting.push((reply, run.purged));
                        }
                    }
                    next = if group.len() < MAX_GROUP {
                        queue.try_pop()
                    } else {
                        None
                    };
                }
                run_group(conn, &mut group);
            }
            Popped::TimedOut => {}
            Popped::Closed if purge.is_none() => return,
            // A purge asked for before the close still runs to its end and answers.
            Popped::Closed => {}
        }
        // Checked after every group, not only when the queue runs dry: under sustained writes it
        // never does, and the purge would never run.
        if purge.is_none() && next_purge.is_some_and(|due| Instant::now() >= due) {
            purge = Some(PurgeRun::default());
        }
        if let Some(run) = &mut purge
            && run.step(conn)
        {
            purge = None;
            next_purge = schedule();
        }
    }
}

fn run_group(conn: &Conn, group: &mut Vec<Box<dyn WriteJob>>) {
    if group.len() > 1 {
        let together = conn.transaction(|conn| {
            let now = now_millis();
            group.iter_mut().try_for_each(|job| job.run(conn, now))
        });
        match together {
            Ok(()) => {
                group.drain(..).for_each(WriteJob::succeed);
                return;
            }
            // Another process held the lock past the busy timeout. Alone, each job would wait
            // as long again, and the last caller of a full group 128 timeouts.
            Err(error) if is_busy(&error) => {
                for job in group.drain(..) {
                    job.fail(copy_error(&error));
                }
                return;
            }
            // One job failed: each runs alone, so that the failure stays with its caller.
            Err(_) => {}
        }
    }
    for mut job in group.drain(..) {
        match conn.transaction(|conn| job.run(conn, now_millis())) {
            Ok(()) => job.succeed(),
            Err(error) => job.fail(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::Target;
    use rusqlite::Connection;
    use std::sync::atomic::AtomicBool;
    use std::sync::atomic::Ordering;

    async fn workers() -> Workers {
        Workers::start(Settings {
            target: Target::fresh_memory(),
            table: "t".to_owned(),
            busy_timeout: Duration::from_secs(1),
            purge_interval: None,
            readers: 1,
            mode: crate::config::DEFAULT_MODE,
            inline_reads: true,
        })
        .await
        .unwrap()
    }

    /// Waits for `answer` at most ten seconds: without the queue being closed it waits forever.
    async fn settled<T>(answer: impl Future<Output = T>) -> T {
        tokio::time::timeout(Duration::from_secs(10), answer)
            .await
            .expect("a call was left waiting on a queue nobody serves")
    }

    /// A write that queues the next one as it completes, so that the writer's queue is never
    /// empty when the writer looks: sustained writes, without timing luck.
    struct Perpetual {
        queue: Arc<Queue<WriterMessage>>,
        stop: Arc<AtomicBool>,
    }

    impl WriteJob for Perpetual {
        fn run(&mut self, conn: &Conn, _: i64) -> rusqlite::Result<()> {
            conn.db
                .execute(
                    "INSERT OR REPLACE INTO t (key, value) VALUES ('busy', x'00')",
                    [],
                )
                .map(drop)
        }

        fn succeed(self: Box<Self>) {
            if !self.stop.load(Ordering::Relaxed) {
                let next = Box::new(Perpetual {
                    queue: Arc::clone(&self.queue),
                    stop: Arc::clone(&self.stop),
                });
                let _ = self.queue.push(WriterMessage::Job(next));
            }
        }

        fn fail(self: Box<Self>, error: rusqlite::Error) {
            panic!("the perpetual write failed: {error}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_background_purge_runs_while_the_writer_queue_never_runs_dry() {
        let dir = tempfile::tempdir().unwrap();
        let workers = Workers::start(Settings {
            target: Target::File(dir.path().join("cache.db")),
            table: "t".to_owned(),
            busy_timeout: Duration::from_secs(1),
            purge_interval: Some(Duration::from_millis(50)),
            readers: 1,
            mode: crate::config::DEFAULT_MODE,
            inline_reads: true,
        })
        .await
        .unwrap();
        workers
            .write(|conn, now| {
                conn.db.execute(
                    "INSERT INTO t (key, value, expires_at) VALUES ('gone', x'00', ?1)",
                    [now - 1],
                )
            })
            .await
            .unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let first = Box::new(Perpetual {
            queue: Arc::clone(&workers.writer),
            stop: Arc::clone(&stop),
        });
        assert!(workers.writer.push(WriterMessage::Job(first)).is_ok());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let rows: i64 = workers
                .read(|conn, _| {
                    conn.db
                        .query_row("SELECT count(*) FROM t WHERE key = 'gone'", [], |row| {
                            row.get(0)
                        })
                })
                .await
                .unwrap();
            if rows == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the expired row was not purged within 10 s of writes"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.store(true, Ordering::Relaxed);
        workers.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_worker_thread_that_panics_fails_queued_and_later_calls_instead_of_hanging() {
        let workers = Arc::new(workers().await);
        let running = Arc::new(tokio::sync::Notify::new());
        let (release, released) = std::sync::mpsc::channel::<()>();
        let panicking = {
            let (workers, running) = (Arc::clone(&workers), Arc::clone(&running));
            tokio::spawn(async move {
                workers
                    .write(move |_, _| -> rusqlite::Result<()> {
                        running.notify_one();
                        let _ = released.recv();
                        panic!("a bug in a write job");
                    })
                    .await
            })
        };
        running.notified().await;
        // Queued while the writer is busy with the job that is about to panic.
        let (reply, queued) = oneshot::channel();
        let job: Box<dyn WriteJob> = Box::new(Pending {
            work: |_: &Conn, _: i64| Ok(()),
            outcome: None,
            reply,
        });
        assert!(workers.writer.push(WriterMessage::Job(job)).is_ok());
        release.send(()).unwrap();
        assert!(matches!(
            settled(panicking).await.unwrap(),
            Err(Failure::Closed)
        ));
        assert!(settled(queued).await.is_err());
        assert!(matches!(
            settled(workers.write(|_, _| Ok(()))).await,
            Err(Failure::Closed)
        ));
        // A reader that panics closes the readers' queue the same way.
        let outcome =
            settled(workers.read(|_, _| -> rusqlite::Result<()> { panic!("a bug in a read job") }))
                .await;
        assert!(matches!(outcome, Err(Failure::Closed)));
        assert!(matches!(
            settled(workers.read(|_, _| Ok(()))).await,
            Err(Failure::Closed)
        ));
        settled(workers.close()).await;
    }

    /// The plan SQLite picks for `sql`, one line per step.
    fn plan(sql: &str) -> String {
        let db = Connection::open_in_memory().unwrap();
        rusqlite::vtab::array::load_module(&db).unwrap();
        let statements = Sql::new("t");
        db.execute_batch(&statements.create_table).unwrap();
        db.execute_batch(&statements.create_index).unwrap();
        let mut explain = db.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        // Unbound parameters are NULL: the plan does not depend on them.
        let mut rows = explain.raw_query();
        let mut steps = Vec::new();
        while let Some(row) = rows.next().unwrap() {
            steps.push(row.get::<_, String>(3).unwrap());
        }
        steps.join("\n")
    }

    #[test]
    fn batch_prefix_and_purge_statements_search_indexes_instead_of_scanning() {
        let sql = Sql::new("t");
        let get_many = plan(&sql.get_many);
        assert!(get_many.contains("SCAN a VIRTUAL TABLE"), "{get_many}");
        assert!(
            get_many.contains("SEARCH t USING INDEX sqlite_autoindex_t_1 (key=?)"),
            "{get_many}"
        );
        let range = plan(&sql.count_live_range);
        assert!(
            range.contains("SEARCH t USING INDEX sqlite_autoindex_t_1 (key>? AND key<?)"),
            "{range}"
        );
        let many = plan(&sql.count_live_many);
        assert!(
            many.contains("SEARCH t USING INDEX sqlite_autoindex_t_1 (key=?)"),
            "{many}"
        );
        for delete in [&sql.delete_many, &sql.delete_range, &sql.delete_live] {
            let steps = plan(delete);
            assert!(steps.contains("INDEX sqlite_autoindex_t_1 (key"), "{steps}");
        }
        let purge = plan(&sql.purge);
        assert!(
            purge.contains("INDEX t_expires_at (expires_at<?)"),
            "{purge}"
        );
        assert!(!purge.contains("SCAN t"), "{purge}");
    }

    /// Reads queued behind a busy reader thread run together in one read transaction, and the
    /// transaction ends with them: each round's reads see the write that returned before they
    /// were asked, never a snapshot an earlier batch kept open.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queued_reads_share_one_snapshot_and_leave_none_behind() {
        const QUEUED: usize = 8;
        let dir = tempfile::tempdir().unwrap();
        let workers = Arc::new(
            Workers::start(Settings {
                target: Target::File(dir.path().join("cache.db")),
                table: "t".to_owned(),
                busy_timeout: Duration::from_secs(1),
                purge_interval: None,
                readers: 1,
                mode: crate::config::DEFAULT_MODE,
                inline_reads: false,
            })
            .await
            .unwrap(),
        );
        for round in 0..10u8 {
            settled(workers.write(move |conn, _| {
                conn.db.execute(
                    "INSERT OR REPLACE INTO t (key, value) VALUES ('k', ?1)",
                    [vec![round]],
                )
            }))
            .await
            .unwrap();
            // The only reader thread waits inside a job until the reads below are queued.
            let (release, hold) = std::sync::mpsc::channel::<()>();
            let (entered, inside) = oneshot::channel::<()>();
            let mut entered = Some(entered);
            let holding = {
                let workers = Arc::clone(&workers);
                tokio::spawn(async move {
                    workers
                        .read(move |_, _| {
                            if let Some(entered) = entered.take() {
                                let _ = entered.send(());
                            }
                            let _ = hold.recv_timeout(Duration::from_secs(10));
                            Ok(())
                        })
                        .await
                })
            };
            settled(inside).await.unwrap();
            let reads: Vec<_> = (0..QUEUED)
                .map(|_| {
                    let workers = Arc::clone(&workers);
                    tokio::spawn(async move {
                        workers
                            .read(|conn, _| {
                                let value: Vec<u8> = conn.db.query_row(
                                    "SELECT value FROM t WHERE key = 'k'",
                                    [],
                                    |row| row.get(0),
                                )?;
                                Ok((value, conn.db.is_autocommit()))
                            })
                            .await
                    })
                })
                .collect();
            let deadline = Instant::now() + Duration::from_secs(10);
            while workers.readers.len() < QUEUED {
                assert!(Instant::now() < deadline, "the reads were never queued");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            release.send(()).unwrap();
            settled(holding).await.unwrap().unwrap();
            for read in reads {
                let (value, alone) = settled(read).await.unwrap().unwrap();
                assert_eq!(value, vec![round], "a read saw an older write");
                assert!(!alone, "queued reads run in one read transaction");
            }
        }
        settled(workers.close()).await;
    }
}
