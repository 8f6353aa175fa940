//! Opening a connection: the file and its permissions, the pragmas, the table, and the
//! transaction and busy-retry helpers every job runs through.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cache_core::Error;
use rusqlite::limits::Limit;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::error::{KeyTooLong, is_busy, open_error};
use crate::sql::{Sql, now_millis};
use crate::worker::PURGE_CHUNK;

/// Room for every statement of [`Sql`] and the transaction statements.
const STATEMENT_CACHE: usize = 32;

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

    pub(crate) fn describe(&self) -> String {
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
    /// Whether point reads may run on the calling task (`Workers::read_inline`).
    pub(crate) inline_reads: bool,
}

impl Settings {
    /// How many connections serve inline reads: one per two reader threads. When every one is
    /// in use, concurrent reads go to the reader threads, which run those queued together in one
    /// read transaction. More inline connections do not help: two threads reading the file at
    /// once queue on SQLite's shared-memory lock mutex (`unixShmLock`) and sleep there; with
    /// two inline connections on two cores, 64 tasks kept 1.36 cores busy against 1.70 with
    /// one, and read fewer gets a second.
    pub(crate) fn inline_connections(&self) -> usize {
        if self.inline_reads {
            self.readers.div_ceil(2)
        } else {
            0
        }
    }
}

/// A connection and the statements of its table.
pub(crate) struct Conn {
    pub(crate) db: Connection,
    pub(crate) sql: Arc<Sql>,
    busy_timeout: Duration,
}

impl Conn {
    pub(crate) fn open(settings: &Settings, sql: Arc<Sql>, writer: bool) -> Result<Self, Error> {
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

    /// A read-only connection for reads on the calling task: it never waits for a lock (a busy
    /// timeout of zero), so a locked database answers busy at once and the read goes to a
    /// reader thread instead.
    pub(crate) fn open_inline(settings: &Settings, sql: Arc<Sql>) -> Result<Self, Error> {
        let mut conn = Self::open(settings, sql, false)?;
        conn.db
            .busy_timeout(Duration::ZERO)
            .map_err(|error| open_error(&settings.target.describe(), error))?;
        conn.busy_timeout = Duration::ZERO;
        // Prepared now, on a reader thread, rather than by the first inline read.
        conn.db
            .prepare_cached(&conn.sql.get_inline)
            .map_err(|error| open_error(&settings.target.describe(), error))?;
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
    pub(crate) fn retry_busy<T>(
        &self,
        mut work: impl FnMut() -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
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
    pub(crate) fn transaction<T>(
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

    /// Opens a read transaction for the statements that follow, deferred so that its snapshot
    /// is taken by the first of them; whether it did (it does not inside another transaction,
    /// and the statements then run each in its own).
    pub(crate) fn begin_read(&self) -> bool {
        self.db.is_autocommit()
            && self
                .db
                .prepare_cached("BEGIN")
                .and_then(|mut begin| begin.execute([]))
                .is_ok()
    }

    /// Ends any transaction left open, the one [`Conn::begin_read`] opened included: a reader
    /// connection must never carry an old snapshot into the reads that come next.
    pub(crate) fn end_read(&self) {
        if self.db.is_autocommit() {
            return;
        }
        if self
            .db
            .prepare_cached("COMMIT")
            .and_then(|mut commit| commit.execute([]))
            .is_err()
            && !self.db.is_autocommit()
        {
            let _ = self.db.execute_batch("ROLLBACK");
        }
        if !self.db.is_autocommit() {
            tracing::error!("a SQLite read transaction could not be ended");
        }
    }

    /// Deletes up to [`PURGE_CHUNK`] expired rows in one transaction; returns how many.
    pub(crate) fn purge_chunk(&self) -> rusqlite::Result<usize> {
        self.transaction(|conn| {
            conn.db
                .prepare_cached(&conn.sql.purge)?
                .execute(params![now_millis(), PURGE_CHUNK])
        })
    }
}
