//! The connections, the threads that own them, and the one place SQLite errors become
//! [`cache_core::Error`]s.
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

use std::fmt;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cache_core::Error;
use rusqlite::limits::Limit;
use rusqlite::types::Value;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};
use tokio::sync::oneshot;

use crate::queue::{Popped, Queue};

/// The store's name in errors.
pub(crate) const STORE: &str = "sqlite";

/// At most this many queued writes share one transaction, so that one commit never holds the
/// write lock for long.
const MAX_GROUP: usize = 128;

/// Expired rows deleted per purge transaction. The writer runs one chunk per turn of its loop,
/// so a write of this process queued meanwhile waits for one chunk, not for the whole purge, and
/// other processes get the lock between chunks.
const PURGE_CHUNK: i64 = 5_000;

/// Room for every statement of [`Sql`] and the transaction statements.
const STATEMENT_CACHE: usize = 32;

/// What a worker reports when a job did not complete.
#[derive(Debug)]
pub(crate) enum Failure {
    /// SQLite refused.
    Sqlite(rusqlite::Error),
    /// The store was closed, or its thread is gone.
    Closed,
}

impl From<rusqlite::Error> for Failure {
    fn from(error: rusqlite::Error) -> Self {
        Failure::Sqlite(error)
    }
}

/// A SQLite error with a sentence on what it likely means for a cache.
#[derive(Debug)]
struct Explained {
    context: String,
    source: Option<rusqlite::Error>,
}

impl fmt::Display for Explained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(source) => write!(f, "{source}{}", self.context),
            None => f.write_str(&self.context),
        }
    }
}

impl std::error::Error for Explained {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}

fn hint(error: &rusqlite::Error) -> &'static str {
    match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            " (another connection or process held the lock for longer than the busy timeout)"
        }
        Some(ErrorCode::ReadOnly) => " (the database file or its directory is read-only)",
        Some(ErrorCode::CannotOpen) => {
            " (check that the directory exists and that this process may create and write \
             files in it)"
        }
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            " (the file is not a SQLite database, or it is corrupt)"
        }
        Some(ErrorCode::DiskFull) => " (the disk is full)",
        Some(ErrorCode::TooBig) => {
            " (the value, or the key and value together, exceed SQLite's length limit)"
        }
        Some(ErrorCode::PermissionDenied) => " (permission denied)",
        _ => "",
    }
}

/// A key longer than a connection's length limit: SQLite cannot bind it.
#[derive(Debug)]
struct KeyTooLong {
    key: String,
    limit: usize,
}

impl fmt::Display for KeyTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the key is {} bytes long, more than the {} bytes SQLite holds in one string",
            self.key.len(),
            self.limit
        )
    }
}

impl std::error::Error for KeyTooLong {}

/// A copy of `error` for each of several callers it reaches (rusqlite errors are not `Clone`):
/// SQLite's codes and message are kept, so hints and `is_busy` read the same.
fn copy_error(error: &rusqlite::Error) -> rusqlite::Error {
    match error {
        rusqlite::Error::SqliteFailure(code, message) => {
            rusqlite::Error::SqliteFailure(*code, message.clone())
        }
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}

/// Every SQLite failure becomes an [`Error::Backend`] here, naming the operation and the key,
/// except a key SQLite cannot hold, which is the caller's fault: [`Error::InvalidKey`].
pub(crate) fn map_sqlite_error(
    operation: &'static str,
    key: Option<&str>,
    failure: Failure,
) -> Error {
    if let Failure::Sqlite(rusqlite::Error::ToSqlConversionFailure(source)) = &failure
        && let Some(too_long) = source.downcast_ref::<KeyTooLong>()
    {
        return Error::invalid_key(&too_long.key, too_long.to_string());
    }
    let transient = matches!(&failure, Failure::Sqlite(error) if is_busy(error));
    let explained = match failure {
        Failure::Sqlite(error) => Explained {
            context: hint(&error).to_owned(),
            source: Some(error),
        },
        Failure::Closed => Explained {
            context: "the store is closed, or its worker thread stopped".to_owned(),
            source: None,
        },
    };
    // A lock held past the busy timeout is the one failure that waiting may cure.
    Error::backend(STORE, operation, key, explained).with_transient(transient)
}

/// An error opening `what`, worded for the person who configured it.
fn open_error(what: &str, error: rusqlite::Error) -> Error {
    Error::backend(
        STORE,
        "open",
        None,
        Explained {
            context: format!("{} while opening {what}", hint(&error)),
            source: Some(error),
        },
    )
}

/// Milliseconds since the Unix epoch: the clock `expires_at` is kept in, shared with every other
/// process that opens the file.
pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// Keys as one `rarray` parameter: a batch of any size binds a single value, so SQLite's
/// bound-variable limit never applies.
pub(crate) fn key_array(keys: &[String]) -> Vec<Value> {
    keys.iter().map(|key| Value::Text(key.clone())).collect()
}

/// The keys of an array made by [`key_array`].
pub(crate) fn array_keys(array: &[Value]) -> impl Iterator<Item = &str> {
    array.iter().filter_map(|value| match value {
        Value::Text(key) => Some(key.as_str()),
        _ => None,
    })
}

/// Binds `keys` as one array for `work`, then takes them back, so that a retry binds them again
/// without a copy. `work` must drop its statement before returning (cached statements clear their
/// bindings when they go back to the cache).
pub(crate) fn with_array<T>(keys: &mut Vec<Value>, work: impl FnOnce(&Rc<Vec<Value>>) -> T) -> T {
    let array = Rc::new(std::mem::take(keys));
    let outcome = work(&array);
    *keys = Rc::try_unwrap(array).unwrap_or_else(|shared| (*shared).clone());
    outcome
}

/// The statements of one table. `?now` is the current time in ms; a row is live when its
/// `expires_at` is NULL or later than now.
#[derive(Debug)]
pub(crate) struct Sql {
    pub(crate) get: String,
    pub(crate) get_many: String,
    pub(crate) contains: String,
    pub(crate) ttl: String,
    pub(crate) upsert: String,
    pub(crate) insert_if_absent: String,
    pub(crate) delete: String,
    pub(crate) delete_live: String,
    pub(crate) count_live_many: String,
    pub(crate) delete_many: String,
    pub(crate) expire: String,
    pub(crate) count_live_from: String,
    pub(crate) count_live_range: String,
    pub(crate) delete_from: String,
    pub(crate) delete_range: String,
    pub(crate) purge: String,
    create_table: String,
    create_index: String,
}

impl Sql {
    pub(crate) fn new(table: &str) -> Self {
        // The name is validated to `[A-Za-z_][A-Za-z0-9_]*`, so quoting cannot be escaped.
        let t = format!("\"{table}\"");
        let live = "(expires_at IS NULL OR expires_at > ?2)";
        Self {
            get: format!("SELECT value FROM {t} WHERE key = ?1 AND {live}"),
            // The array drives the loop (CROSS JOIN fixes the order) and its rowid is the
            // 1-based position of the key in the request, so duplicates answer each position.
            get_many: format!(
                "SELECT a.rowid, t.value FROM rarray(?1) AS a CROSS JOIN {t} AS t \
                 ON t.key = a.value WHERE (t.expires_at IS NULL OR t.expires_at > ?2)"
            ),
            contains: format!("SELECT 1 FROM {t} WHERE key = ?1 AND {live}"),
            ttl: format!("SELECT expires_at FROM {t} WHERE key = ?1 AND {live}"),
            upsert: format!(
                "INSERT INTO {t} (key, value, expires_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
                 expires_at = excluded.expires_at"
            ),
            // Replaces only an expired row; a live one makes the statement change nothing.
            insert_if_absent: format!(
                "INSERT INTO {t} (key, value, expires_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
                 expires_at = excluded.expires_at \
                 WHERE {t}.expires_at IS NOT NULL AND {t}.expires_at <= ?4"
            ),
            delete: format!("DELETE FROM {t} WHERE key = ?1"),
            delete_live: format!("DELETE FROM {t} WHERE key = ?1 RETURNING {live}"),
            count_live_many: format!("SELECT count(*) FROM {t} WHERE key IN rarray(?1) AND {live}"),
            delete_many: format!("DELETE FROM {t} WHERE key IN rarray(?1)"),
            expire: format!("UPDATE {t} SET expires_at = ?3 WHERE key = ?1 AND {live}"),
            // Prefix clears compare keys as byte ranges under the BINARY collation: no LIKE, so
            // `%`, `_` and `\` are ordinary characters and case matters.
            count_live_from: format!("SELECT count(*) FROM {t} WHERE key >= ?1 AND {live}"),
            count_live_range: format!(
                "SELECT count(*) FROM {t} WHERE key >= ?1 AND key < ?3 AND {live}"
            ),
            delete_from: format!("DELETE FROM {t} WHERE key >= ?1"),
            delete_range: format!("DELETE FROM {t} WHERE key >= ?1 AND key < ?2"),
            purge: format!(
                "DELETE FROM {t} WHERE rowid IN (SELECT rowid FROM {t} \
                 WHERE expires_at <= ?1 LIMIT ?2)"
            ),
            // A rowid table on purpose: WITHOUT ROWID would keep whole rows, values included, in
            // the interior b-tree pages, so that a seek past a row holding a 4 MiB value reads
            // all 4 MiB (observed: a 20,000-key delete_many took 8-18 s instead of 0.1 s).
            // Here the key index holds keys only and values live in the table's leaves.
            create_table: format!(
                "CREATE TABLE IF NOT EXISTS {t} (\
                     key TEXT COLLATE BINARY NOT NULL PRIMARY KEY, \
                     value BLOB NOT NULL, \
                     expires_at INTEGER\
                 )"
            ),
            create_index: format!(
                "CREATE INDEX IF NOT EXISTS \"{table}_expires_at\" ON {t} (expires_at) \
                 WHERE expires_at IS NOT NULL"
            ),
        }
    }
}

/// Where the database is, resolved for connecting.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    File(PathBuf),
    /// The name of a process-wide memdb database: every connection that opens this name sees
    /// the same database, which lives as long as one of them is open.
    Memory(String),
}

impl Target {
    pub(crate) fn fresh_memory() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos());
        Target::Memory(format!(
            "file:/cachette-{}-{n}-{nanos}?vfs=memdb",
            std::process::id()
        ))
    }

    fn describe(&self) -> String {
        match self {
            Target::File(path) => path.display().to_string(),
            Target::Memory(_) => "an in-memory database".to_owned(),
        }
    }
}

/// Creates the database file, empty, with `mode` (before the umask) when it does not exist yet,
/// so that SQLite never creates it with the process's default permissions; SQLite gives the
/// `-wal` and `-shm` files the database file's permissions. An existing file is left as it is.
/// A file that cannot be created here cannot be created by SQLite either, and SQLite's own error
/// at open says why better (a read-only directory, a missing one), so a failure is left to it.
fn create_with_mode(path: &std::path::Path, mode: u32) {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    drop(options.open(path));
}

/// Everything a worker needs to open and use its connection.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) target: Target,
    pub(crate) table: String,
    pub(crate) busy_timeout: Duration,
    pub(crate) purge_interval: Option<Duration>,
    pub(crate) readers: usize,
    /// The permissions of a database file the writer creates.
    pub(crate) mode: u32,
}

/// A connection and the statements of its table.
pub(crate) struct Conn {
    pub(crate) db: Connection,
    pub(crate) sql: Arc<Sql>,
    busy_timeout: Duration,
}

fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

impl Conn {
    fn open(settings: &Settings, sql: Arc<Sql>, writer: bool) -> Result<Self, Error> {
        let what = settings.target.describe();
        let fail = |error| open_error(&what, error);
        let mut flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if writer && let Target::File(path) = &settings.target {
            create_with_mode(path, settings.mode);
        }
        let db = match &settings.target {
            // Without the URI flag a path is always a path, even one starting with `file:`.
            Target::File(path) => Connection::open_with_flags(path, flags),
            Target::Memory(uri) => {
                flags |= OpenFlags::SQLITE_OPEN_URI;
                Connection::open_with_flags(uri, flags)
            }
        }
        .map_err(fail)?;
        // SQLite takes the timeout as an i32 of milliseconds.
        let busy = settings
            .busy_timeout
            .min(Duration::from_millis(i32::MAX as u64));
        db.busy_timeout(busy).map_err(fail)?;
        db.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        rusqlite::vtab::array::load_module(&db).map_err(fail)?;
        let conn = Conn {
            db,
            sql,
            busy_timeout: busy,
        };
        // The first statement reads the header: a foreign or corrupt file fails here, and a file
        // of the wrong encoding fails before anything, the journal mode included, changes it.
        if writer {
            conn.check_encoding(&what)?;
        }
        match &settings.target {
            Target::File(_) => {
                if conn.db.is_readonly("main").map_err(fail)? {
                    return Err(fail(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_READONLY),
                        Some("the database can only be opened read-only".to_owned()),
                    )));
                }
                if writer {
                    let mode: String = conn
                        .retry_busy(|| {
                            conn.db
                                .pragma_update_and_check(None, "journal_mode", "WAL", |row| {
                                    row.get(0)
                                })
                        })
                        .map_err(fail)?;
                    if !mode.eq_ignore_ascii_case("wal") {
                        tracing::warn!(
                            database = %what,
                            journal_mode = %mode,
                            "SQLite refused WAL mode; readers and the writer will block each other"
                        );
                    }
                }
                conn.db
                    .pragma_update(None, "synchronous", "NORMAL")
                    .map_err(fail)?;
            }
            // memdb keeps the database in memory but would put a rollback journal on disk.
            Target::Memory(_) => conn
                .db
                .pragma_update(None, "journal_mode", "MEMORY")
                .map_err(fail)?,
        }
        if writer {
            conn.create_table(&settings.table, &what)?;
        } else {
            conn.db
                .pragma_update(None, "query_only", true)
                .map_err(fail)?;
        }
        Ok(conn)
    }

    /// Prefix clears compare keys as bytes and count on UTF-8, whose byte order is code point
    /// order; UTF-16 text sorts otherwise, so a clear would miss keys or remove others.
    fn check_encoding(&self, what: &str) -> Result<(), Error> {
        let encoding: String = self
            .retry_busy(|| {
                self.db
                    .pragma_query_value(None, "encoding", |row| row.get(0))
            })
            .map_err(|error| open_error(what, error))?;
        if encoding.eq_ignore_ascii_case("UTF-8") {
            Ok(())
        } else {
            Err(Error::config(format!(
                "{what} is a {encoding} database, and a cachette store needs a UTF-8 one (its \
                 prefix clears compare keys in UTF-8 byte order); use another file"
            )))
        }
    }

    fn create_table(&self, table: &str, what: &str) -> Result<(), Error> {
        const EXPECTED: [&str; 3] = ["key text primary key", "value blob", "expires_at integer"];
        let (columns, key_collation) = self
            .transaction(|conn| {
                conn.db.execute_batch(&conn.sql.create_table)?;
                let mut info = conn
                    .db
                    .prepare(&format!("PRAGMA table_info(\"{table}\")"))?;
                let columns = info
                    .query_map([], |row| {
                        let name: String = row.get(1)?;
                        let declared: String = row.get(2)?;
                        // Every upsert names `key` as its conflict target, so it must be the
                        // primary key, alone.
                        let primary: i64 = row.get(5)?;
                        let primary = if primary > 0 { " primary key" } else { "" };
                        Ok(format!("{name} {declared}{primary}").to_ascii_lowercase())
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                // The key index's collation decides which keys are one: under NOCASE `A` and
                // `a` would overwrite each other.
                let key_collation: Option<String> = conn
                    .db
                    .query_row(
                        "SELECT x.coll FROM pragma_index_list(?1) AS l, \
                         pragma_index_xinfo(l.name) AS x \
                         WHERE l.origin = 'pk' AND x.key = 1 AND x.name = 'key'",
                        [table],
                        |row| row.get(0),
                    )
                    .optional()?;
                let binary = key_collation
                    .as_deref()
                    .is_some_and(|collation| collation.eq_ignore_ascii_case("BINARY"));
                // A table of another shape is left exactly as it is.
                if columns == EXPECTED && binary {
                    conn.db.execute_batch(&conn.sql.create_index)?;
                }
                Ok((columns, key_collation))
            })
            .map_err(|error| open_error(what, error))?;
        if columns != EXPECTED {
            return Err(Error::config(format!(
                "table {table:?} in {what} exists with columns ({}) and is not a cachette table, \
                 whose columns are ({}); name another table with the `table` option",
                columns.join(", "),
                EXPECTED.join(", ")
            )));
        }
        if let Some(collation) = key_collation
            && !collation.eq_ignore_ascii_case("BINARY")
        {
            return Err(Error::config(format!(
                "table {table:?} in {what} compares its keys with the {collation} collation, so \
                 distinct keys could be one; it is not a cachette table (BINARY): name another \
                 table with the `table` option"
            )));
        }
        Ok(())
    }

    /// Refuses, before any statement runs, a key longer than this connection's length limit:
    /// SQLite cannot bind it, and that is the key's fault, so [`map_sqlite_error`] turns the
    /// error into an [`Error::InvalidKey`] naming the key, not a backend failure.
    pub(crate) fn check_keys<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k str>,
    ) -> rusqlite::Result<()> {
        let limit = usize::try_from(self.db.limit(Limit::SQLITE_LIMIT_LENGTH)?).unwrap_or(0);
        match keys.into_iter().find(|key| key.len() > limit) {
            Some(key) => Err(rusqlite::Error::ToSqlConversionFailure(Box::new(
                KeyTooLong {
                    key: key.to_owned(),
                    limit,
                },
            ))),
            None => Ok(()),
        }
    }

    /// [`Conn::check_keys`] for one key.
    pub(crate) fn check_key(&self, key: &str) -> rusqlite::Result<()> {
        self.check_keys([key])
    }

    /// Runs `work` again while SQLite answers busy or locked without waiting itself (it waits
    /// through the busy timeout first where it can), until the busy timeout has passed.
    fn retry_busy<T>(&self, mut work: impl FnMut() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
        let deadline = Instant::now() + self.busy_timeout;
        let mut pause = Duration::from_micros(200);
        loop {
            match work() {
                Err(error) if is_busy(&error) && Instant::now() < deadline => {
                    thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                outcome => return outcome,
            }
        }
    }

    /// Runs `work` in a `BEGIN IMMEDIATE` transaction: it takes the write lock up front, so a
    /// read cannot turn into a write that has to fail with `SQLITE_BUSY` part-way.
    fn transaction<T>(
        &self,
        mut work: impl FnMut(&Conn) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        self.retry_busy(|| {
            self.db.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
            let outcome = work(self).and_then(|value| {
                self.db.prepare_cached("COMMIT")?.execute([])?;
                Ok(value)
            });
            if outcome.is_err() && !self.db.is_autocommit() {
                // The error that matters is the one being returned.
                let _ = self.db.execute_batch("ROLLBACK");
            }
            outcome
        })
    }

    /// Deletes up to [`PURGE_CHUNK`] expired rows in one transaction; returns how many.
    fn purge_chunk(&self) -> rusqlite::Result<usize> {
        self.transaction(|conn| {
            conn.db
                .prepare_cached(&conn.sql.purge)?
                .execute(params![now_millis(), PURGE_CHUNK])
        })
    }
}

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
    /// Each resolves when its thread has closed its connection.
    exits: Mutex<Vec<oneshot::Receiver<()>>>,
}

impl Workers {
    /// Opens the writer connection (creating the file and the table), then the readers.
    pub(crate) async fn start(settings: Settings) -> Result<Self, Error> {
        let sql = Arc::new(Sql::new(&settings.table));
        // Built first so that an early return drops it, which closes the queues and so ends
        // every thread started so far.
        let workers = Self {
            writer: Arc::new(Queue::new()),
            readers: Arc::new(Queue::new()),
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
        for _ in 0..settings.readers {
            let (ready, started) = oneshot::channel();
            let (exit, exited) = oneshot::channel();
            workers.exited_on(exited);
            starting.push(started);
            let (settings, sql) = (settings.clone(), Arc::clone(&sql));
            let queue = Arc::clone(&workers.readers);
            spawn("cachette-sqlite-reader", move || {
                let _exit = exit;
                let _serving = Serving(Arc::clone(&queue));
                match Conn::open(&settings, sql, false) {
                    Ok(conn) => {
                        let _ = ready.send(Ok(()));
                        while let Some(job) = queue.pop() {
                            job(&conn);
                        }
                    }
                    Err(error) => {
                        let _ = ready.send(Err(error));
                    }
                }
            })?;
        }
        for started in starting {
            started.await.map_err(|_| stopped_while_opening())??;
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
        self.writer.close();
        self.readers.close();
    }
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
    use std::sync::atomic::AtomicBool;

    async fn workers() -> Workers {
        Workers::start(Settings {
            target: Target::fresh_memory(),
            table: "t".to_owned(),
            busy_timeout: Duration::from_secs(1),
            purge_interval: None,
            readers: 1,
            mode: crate::config::DEFAULT_MODE,
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
}
