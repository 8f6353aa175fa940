//! `SqliteBackend`: the `Backend` impl over the worker threads of `core`.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cache_core::raw::invalidation::InvalidationBus;
use cache_core::raw::{
    add_to_counter, counter_bytes, parse_counter, prefix_upper_bound, ttl_millis,
};
use cache_core::{
    Backend, Bytes, Condition, Error, Result, ScanCursor, ScanOptions, ScanPage, Ttl, async_trait,
};
use rusqlite::types::ValueRef;
use rusqlite::{OptionalExtension, params};

use crate::SqliteBackendBuilder;
use crate::channel::SqliteChannel;
use crate::config::Location;
use crate::connection::{Conn, Settings, Target};
use crate::error::Failure;
use crate::error::map_sqlite_error;
use crate::sql::now_millis;
use crate::sql::{array_keys, key_array, with_array};
use crate::worker::{INLINE_VALUE_LIMIT, Inline, Workers};

/// Reads are CPU bound: past one thread per core they only queue on the scheduler.
const MAX_DEFAULT_READERS: usize = 4;

/// A cache store in a SQLite database file (or in memory), shared safely by every task of the
/// process and by other processes that open the same file.
///
/// Open one with [`SqliteBackend::open`] (a URL), [`SqliteBackend::file`] or
/// [`SqliteBackend::memory`]. Cloning is not needed: hand it to
/// [`Cache::builder`](cache_core::Cache::builder) in an `Arc`, once, and clone the caches.
///
/// One writer thread and a few reader threads own the connections, and calls reach them through
/// job queues; only point reads short enough to cost less than the hand-off run on the calling
/// task ([`SqliteBackendBuilder::inline_reads`]). See the [crate docs](crate) for the schema,
/// the settings and the guarantees.
pub struct SqliteBackend {
    workers: Arc<Workers>,
    /// Invalidations for local tiers: in process for a memory database, through a log table
    /// for a file other processes may share.
    bus: Arc<InvalidationBus>,
    location: Location,
    table: String,
    readers: usize,
    purge_interval: Option<Duration>,
}

impl fmt::Debug for SqliteBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteBackend")
            .field("location", &self.location)
            .field("table", &self.table)
            .field("readers", &self.readers)
            .field("purge_interval", &self.purge_interval)
            .finish()
    }
}

impl SqliteBackendBuilder {
    /// Opens the database (creating the file and the table if missing) and starts the worker
    /// threads.
    ///
    /// Fails with [`Error::Config`](cache_core::Error::Config) for bad settings or a table of that name that is not a
    /// cache table, and with [`Error::Backend`](cache_core::Error::Backend) when the file cannot be created or written, or
    /// is not a SQLite database.
    pub async fn open(self) -> Result<SqliteBackend> {
        self.validate()?;
        let readers = self.readers.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map_or(2, usize::from)
                .min(MAX_DEFAULT_READERS)
        });
        let target = match &self.location {
            Location::File(path) => Target::File(path.clone()),
            Location::Memory => Target::fresh_memory(),
        };
        let workers = Workers::start(Settings {
            target,
            table: self.table.clone(),
            busy_timeout: self.busy_timeout,
            purge_interval: self.purge_interval,
            readers,
            mode: self.mode,
            inline_reads: self.inline_reads,
        })
        .await?;
        let workers = Arc::new(workers);
        let bus = match &self.location {
            Location::File(path) => InvalidationBus::with_transport(Arc::new(SqliteChannel::new(
                Arc::clone(&workers),
                path.clone(),
                &self.table,
                self.busy_timeout,
            ))),
            Location::Memory => InvalidationBus::in_process(),
        };
        Ok(SqliteBackend {
            workers,
            bus,
            location: self.location,
            table: self.table,
            readers,
            purge_interval: self.purge_interval,
        })
    }
}

/// How a write's TTL lands in `expires_at`.
#[derive(Debug, Clone, Copy)]
enum Expiry {
    Never,
    AfterMillis(i64),
    /// `Duration::ZERO`: the key is gone after the write.
    Gone,
}

impl Expiry {
    fn of(ttl: Option<Duration>) -> Self {
        match ttl.map(ttl_millis) {
            None => Expiry::Never,
            Some(0) => Expiry::Gone,
            // ttl_millis clamps to 2^53, far inside i64 even added to the current time.
            Some(millis) => Expiry::AfterMillis(i64::try_from(millis).unwrap_or(i64::MAX)),
        }
    }

    fn at(self, now: i64) -> Option<i64> {
        match self {
            Expiry::AfterMillis(millis) => Some(now.saturating_add(millis)),
            Expiry::Never | Expiry::Gone => None,
        }
    }
}

impl SqliteBackend {
    /// Deletes every expired row now and returns how many it deleted. Expired rows are already
    /// invisible to every call; deleting them lets SQLite reuse their pages. A background pass
    /// does the same every [`purge_interval`](SqliteBackendBuilder::purge_interval).
    pub async fn purge_expired(&self) -> Result<u64> {
        self.workers
            .purge()
            .await
            .map_err(|failure| map_sqlite_error("purge_expired", None, failure))
    }

    /// The database file, or `None` for an in-memory database.
    pub fn path(&self) -> Option<&Path> {
        match &self.location {
            Location::File(path) => Some(path),
            Location::Memory => None,
        }
    }

    /// The table that holds the entries.
    pub fn table(&self) -> &str {
        &self.table
    }
}

impl SqliteBackend {
    /// A point read of `key` on the calling task (see [`SqliteBackendBuilder::inline_reads`]):
    /// the value and its expiry, or `None` when a reader thread must run it. After a read that
    /// ran, the task spends a unit of its Tokio budget, so that a loop of hits yields in time.
    pub(crate) async fn read_point_inline(
        &self,
        key: &str,
    ) -> Option<std::result::Result<Option<(Bytes, Option<i64>)>, Failure>> {
        let outcome = self.workers.read_inline(|conn, now| {
            conn.check_key(key)?;
            let row = conn
                .db
                .prepare_cached(&conn.sql.get_inline)?
                .query_row(params![key, now, INLINE_VALUE_LIMIT], |row| {
                    let length: Option<i64> = row.get(1)?;
                    if length.is_some_and(|length| length > INLINE_VALUE_LIMIT) {
                        return Ok(None);
                    }
                    Ok(Some((blob(row, 0)?, row.get::<_, Option<i64>>(2)?)))
                })
                .optional()?;
            Ok(match row {
                None => Inline::Done(None),
                Some(None) => Inline::Declined,
                Some(Some(found)) => Inline::Done(Some(found)),
            })
        })?;
        tokio::task::consume_budget().await;
        Some(outcome)
    }
}

/// The value of a row as bytes. Rows written by this store hold a BLOB; another writer's TEXT
/// is its UTF-8 bytes and a number its decimal text (as SQLite's own `CAST(… AS BLOB)` gives
/// them), so that the typed cache answers `Error::Decode` naming the key when they are not a
/// `V`, never a store failure.
fn blob(row: &rusqlite::Row<'_>, column: usize) -> rusqlite::Result<Bytes> {
    Ok(match row.get_ref(column)? {
        ValueRef::Blob(bytes) | ValueRef::Text(bytes) => Bytes::copy_from_slice(bytes),
        ValueRef::Integer(number) => Bytes::from(number.to_string()),
        ValueRef::Real(number) => Bytes::from(number.to_string()),
        ValueRef::Null => Bytes::new(),
    })
}

#[async_trait]
impl Backend for SqliteBackend {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn invalidation_bus(&self) -> Option<Arc<InvalidationBus>> {
        Some(Arc::clone(&self.bus))
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        if let Some(outcome) = self.read_point_inline(key).await {
            return outcome
                .map(|found| found.map(|(value, _)| value))
                .map_err(|failure| map_sqlite_error("get", Some(key), failure));
        }
        let owned = key.to_owned();
        self.workers
            .read(move |conn, now| {
                conn.check_key(&owned)?;
                conn.db
                    .prepare_cached(&conn.sql.get)?
                    .query_row(params![owned, now], |row| blob(row, 0))
                    .optional()
            })
            .await
            .map_err(|failure| map_sqlite_error("get", Some(key), failure))
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let count = keys.len();
        let mut array = key_array(keys);
        self.workers
            .read(move |conn, now| {
                conn.check_keys(array_keys(&array))?;
                with_array(&mut array, |array| {
                    by_position(conn, &conn.sql.get_many, array, now, count, |row| {
                        blob(row, 1)
                    })
                })
            })
            .await
            .map_err(|failure| map_sqlite_error("get_many", None, failure))
    }

    async fn set(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        condition: Condition,
    ) -> Result<bool> {
        let owned = key.to_owned();
        let expiry = Expiry::of(ttl);
        self.workers
            .write(move |conn, now| {
                conn.check_key(&owned)?;
                let sql = &conn.sql;
                match (condition, expiry) {
                    (Condition::Always, Expiry::Gone) => {
                        conn.db.prepare_cached(&sql.delete)?.execute([&owned])?;
                        Ok(true)
                    }
                    (Condition::Always, _) => {
                        conn.db.prepare_cached(&sql.upsert)?.execute(params![
                            owned,
                            &value[..],
                            expiry.at(now)
                        ])?;
                        Ok(true)
                    }
                    // Written and gone at once, unless a live value keeps the key.
                    (Condition::IfNotExists, Expiry::Gone) => {
                        let live = conn
                            .db
                            .prepare_cached(&sql.contains)?
                            .exists(params![owned, now])?;
                        if !live {
                            conn.db.prepare_cached(&sql.delete)?.execute([&owned])?;
                        }
                        Ok(!live)
                    }
                    (Condition::IfNotExists, _) => {
                        let changed = conn
                            .db
                            .prepare_cached(&sql.insert_if_absent)?
                            .execute(params![owned, &value[..], expiry.at(now), now])?;
                        Ok(changed == 1)
                    }
                }
            })
            .await
            .map_err(|failure| map_sqlite_error("set", Some(key), failure))
    }

    async fn set_many(&self, entries: Vec<(String, Bytes)>, ttl: Option<Duration>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let expiry = Expiry::of(ttl);
        self.workers
            .write(move |conn, now| {
                conn.check_keys(entries.iter().map(|(key, _)| key.as_str()))?;
                if let Expiry::Gone = expiry {
                    let mut delete = conn.db.prepare_cached(&conn.sql.delete)?;
                    for (key, _) in &entries {
                        delete.execute([key])?;
                    }
                } else {
                    let mut upsert = conn.db.prepare_cached(&conn.sql.upsert)?;
                    let expires_at = expiry.at(now);
                    for (key, value) in &entries {
                        upsert.execute(params![key, &value[..], expires_at])?;
                    }
                }
                Ok(())
            })
            .await
            .map_err(|failure| map_sqlite_error("set_many", None, failure))
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        let owned = key.to_owned();
        self.workers
            .write(move |conn, now| {
                conn.check_key(&owned)?;
                delete_reporting_live(conn, &owned, now)
            })
            .await
            .map_err(|failure| map_sqlite_error("delete", Some(key), failure))
    }

    async fn delete_many(&self, keys: &[String]) -> Result<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        let mut array = key_array(keys);
        self.workers
            .write(move |conn, now| {
                conn.check_keys(array_keys(&array))?;
                with_array(&mut array, |array| {
                    let live: i64 = conn
                        .db
                        .prepare_cached(&conn.sql.count_live_many)?
                        .query_row(params![array, now], |row| row.get(0))?;
                    conn.db
                        .prepare_cached(&conn.sql.delete_many)?
                        .execute(params![array])?;
                    Ok(live.unsigned_abs())
                })
            })
            .await
            .map_err(|failure| map_sqlite_error("delete_many", None, failure))
    }

    async fn contains(&self, key: &str) -> Result<bool> {
        let owned = key.to_owned();
        self.workers
            .read(move |conn, now| {
                conn.check_key(&owned)?;
                conn.db
                    .prepare_cached(&conn.sql.contains)?
                    .exists(params![owned, now])
            })
            .await
            .map_err(|failure| map_sqlite_error("contains", Some(key), failure))
    }

    async fn expire_in(&self, key: &str, ttl: Option<Duration>) -> Result<bool> {
        let owned = key.to_owned();
        let expiry = Expiry::of(ttl);
        self.workers
            .write(move |conn, now| {
                conn.check_key(&owned)?;
                match expiry {
                    Expiry::Gone => delete_reporting_live(conn, &owned, now),
                    Expiry::Never | Expiry::AfterMillis(_) => {
                        let changed = conn
                            .db
                            .prepare_cached(&conn.sql.expire)?
                            .execute(params![owned, now, expiry.at(now)])?;
                        Ok(changed == 1)
                    }
                }
            })
            .await
            .map_err(|failure| map_sqlite_error("expire_in", Some(key), failure))
    }

    async fn ttl(&self, key: &str) -> Result<Option<Ttl>> {
        let owned = key.to_owned();
        self.workers
            .read(move |conn, now| {
                conn.check_key(&owned)?;
                let expires_at = conn
                    .db
                    .prepare_cached(&conn.sql.ttl)?
                    .query_row(params![owned, now], |row| row.get::<_, Option<i64>>(0))
                    .optional()?;
                Ok(expires_at.map(|expires_at| match expires_at {
                    None => Ttl::Eternal,
                    Some(at) => {
                        Ttl::Remaining(Duration::from_millis(at.saturating_sub(now).unsigned_abs()))
                    }
                }))
            })
            .await
            .map_err(|failure| map_sqlite_error("ttl", Some(key), failure))
    }

    async fn clear_prefix(&self, prefix: &str) -> Result<u64> {
        let lower = prefix.to_owned();
        let upper = prefix_upper_bound(prefix);
        self.workers
            .write(move |conn, now| {
                // A prefix SQLite cannot bind is refused like a key of that length.
                conn.check_key(&lower)?;
                let sql = &conn.sql;
                let live: i64 = match &upper {
                    Some(upper) => {
                        let live = conn
                            .db
                            .prepare_cached(&sql.count_live_range)?
                            .query_row(params![lower, now, upper], |row| row.get(0))?;
                        conn.db
                            .prepare_cached(&sql.delete_range)?
                            .execute(params![lower, upper])?;
                        live
                    }
                    None => {
                        let live = conn
                            .db
                            .prepare_cached(&sql.count_live_from)?
                            .query_row(params![lower, now], |row| row.get(0))?;
                        conn.db
                            .prepare_cached(&sql.delete_from)?
                            .execute(params![lower])?;
                        live
                    }
                };
                Ok(live.unsigned_abs())
            })
            .await
            .map_err(|failure| map_sqlite_error("clear_prefix", None, failure))
    }

    async fn take(&self, key: &str) -> Result<Option<Bytes>> {
        let owned = key.to_owned();
        self.workers
            .write(move |conn, now| {
                conn.check_key(&owned)?;
                take_row(conn, &owned, now)
            })
            .await
            .map_err(|failure| map_sqlite_error("take", Some(key), failure))
    }

    async fn take_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let keys = keys.to_vec();
        self.workers
            .write(move |conn, now| {
                conn.check_keys(keys.iter().map(String::as_str))?;
                // One transaction: each row goes with its value; a key named again finds none.
                keys.iter().map(|key| take_row(conn, key, now)).collect()
            })
            .await
            .map_err(|failure| map_sqlite_error("take_many", None, failure))
    }

    async fn get_with_ttl(&self, key: &str) -> Result<Option<(Bytes, Ttl)>> {
        if let Some(outcome) = self.read_point_inline(key).await {
            let now = now_millis();
            return outcome
                .map(|found| found.map(|(value, expires)| (value, ttl_at(expires, now))))
                .map_err(|failure| map_sqlite_error("get_with_ttl", Some(key), failure));
        }
        let owned = key.to_owned();
        self.workers
            .read(move |conn, now| {
                conn.check_key(&owned)?;
                conn.db
                    .prepare_cached(&conn.sql.get_with_ttl)?
                    .query_row(params![owned, now], |row| {
                        Ok((blob(row, 0)?, ttl_at(row.get(1)?, now)))
                    })
                    .optional()
            })
            .await
            .map_err(|failure| map_sqlite_error("get_with_ttl", Some(key), failure))
    }

    async fn get_many_with_ttl(&self, keys: &[String]) -> Result<Vec<Option<(Bytes, Ttl)>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let count = keys.len();
        let mut array = key_array(keys);
        self.workers
            .read(move |conn, now| {
                conn.check_keys(array_keys(&array))?;
                with_array(&mut array, |array| {
                    by_position(
                        conn,
                        &conn.sql.get_many_with_ttl,
                        array,
                        now,
                        count,
                        |row| Ok((blob(row, 1)?, ttl_at(row.get(2)?, now))),
                    )
                })
            })
            .await
            .map_err(|failure| map_sqlite_error("get_many_with_ttl", None, failure))
    }

    async fn scan(
        &self,
        prefix: &str,
        cursor: ScanCursor,
        options: ScanOptions,
    ) -> Result<ScanPage> {
        // Keyset pages: each starts at the smallest key after the last one returned (that key
        // and a NUL), so a page costs the same however far the walk has come.
        let from = match cursor.last_key() {
            Some(last) => format!("{last}\0"),
            None if cursor.is_start() => prefix.to_owned(),
            None => {
                return Err(Error::backend(
                    "sqlite",
                    "scan",
                    None,
                    "the cursor is not a SQLite store's",
                ));
            }
        };
        let prefix = prefix.to_owned();
        let upper = prefix_upper_bound(&prefix);
        let limit = i64::try_from(options.page.max(1)).unwrap_or(i64::MAX);
        let values = options.values;
        let entries = self
            .workers
            .read(move |conn, now| {
                conn.check_key(&from)?;
                let sql = &conn.sql;
                let mut statement = match upper {
                    Some(_) => conn.db.prepare_cached(&sql.scan_range)?,
                    None => conn.db.prepare_cached(&sql.scan_from)?,
                };
                let mut rows = match &upper {
                    Some(upper) => statement.query(params![from, now, limit, values, upper])?,
                    None => statement.query(params![from, now, limit, values])?,
                };
                let mut entries = Vec::new();
                while let Some(row) = rows.next()? {
                    let key: String = row.get(0)?;
                    let value = if values { Some(blob(row, 1)?) } else { None };
                    entries.push((key, value));
                }
                Ok(entries)
            })
            .await
            .map_err(|failure| map_sqlite_error("scan", None, failure))?;
        let full = u64::try_from(entries.len()).ok() == u64::try_from(limit).ok();
        let next = match entries.last() {
            Some((last, _)) if full && last.starts_with(prefix.as_str()) => {
                Some(ScanCursor::after(last.clone()))
            }
            _ => None,
        };
        Ok(ScanPage { entries, next })
    }

    async fn count_prefix(&self, prefix: &str) -> Result<u64> {
        let lower = prefix.to_owned();
        let upper = prefix_upper_bound(prefix);
        self.workers
            .read(move |conn, now| {
                conn.check_key(&lower)?;
                let sql = &conn.sql;
                let live: i64 = match &upper {
                    Some(upper) => conn
                        .db
                        .prepare_cached(&sql.count_live_range)?
                        .query_row(params![lower, now, upper], |row| row.get(0))?,
                    None => conn
                        .db
                        .prepare_cached(&sql.count_live_from)?
                        .query_row(params![lower, now], |row| row.get(0))?,
                };
                Ok(live.unsigned_abs())
            })
            .await
            .map_err(|failure| map_sqlite_error("count_prefix", None, failure))
    }

    async fn purge_expired(&self) -> Result<u64> {
        SqliteBackend::purge_expired(self).await
    }

    async fn incr(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        let owned = key.to_owned();
        let expiry = Expiry::of(ttl);
        // A refusal is the job's answer, not a failure: the rest of its group commits.
        self.workers
            .write(move |conn, now| {
                conn.check_key(&owned)?;
                let sql = &conn.sql;
                let current = conn
                    .db
                    .prepare_cached(&sql.counter)?
                    .query_row(params![owned, now], |row| {
                        Ok((blob(row, 0)?, row.get::<_, Option<i64>>(1)?))
                    })
                    .optional()?;
                let (current, expires_at) = match current {
                    Some((bytes, expires_at)) => match parse_counter(&owned, &bytes) {
                        Ok(current) => (current, expires_at),
                        Err(error) => return Ok(Err(error)),
                    },
                    None => (0, expiry.at(now)),
                };
                let value = match add_to_counter(&owned, current, delta) {
                    Ok(value) => value,
                    Err(error) => return Ok(Err(error)),
                };
                if matches!(expiry, Expiry::Gone) && expires_at.is_none_or(|at| at <= now) {
                    conn.db.prepare_cached(&sql.delete)?.execute([&owned])?;
                } else {
                    conn.db.prepare_cached(&sql.upsert)?.execute(params![
                        owned,
                        &counter_bytes(value)[..],
                        expires_at
                    ])?;
                }
                Ok(Ok(value))
            })
            .await
            .map_err(|failure| map_sqlite_error("incr", Some(key), failure))?
    }

    async fn acquire_lease(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        let value = Bytes::copy_from_slice(token.as_bytes());
        self.set(
            key,
            value,
            Some(ttl.max(Duration::from_millis(1))),
            Condition::IfNotExists,
        )
        .await
    }

    async fn renew_lease(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        let (owned, token) = (key.to_owned(), token.to_owned());
        let expiry = Expiry::of(Some(ttl.max(Duration::from_millis(1))));
        self.workers
            .write(move |conn, now| {
                let changed = conn
                    .db
                    .prepare_cached(&conn.sql.renew_lease)?
                    .execute(params![owned, now, expiry.at(now), token.as_bytes()])?;
                Ok(changed == 1)
            })
            .await
            .map_err(|failure| map_sqlite_error("renew_lease", Some(key), failure))
    }

    async fn release_lease(&self, key: &str, token: &str) -> Result<bool> {
        let (owned, token) = (key.to_owned(), token.to_owned());
        self.workers
            .write(move |conn, now| {
                let changed = conn
                    .db
                    .prepare_cached(&conn.sql.release_lease)?
                    .execute(params![owned, now, token.as_bytes()])?;
                Ok(changed == 1)
            })
            .await
            .map_err(|failure| map_sqlite_error("release_lease", Some(key), failure))
    }

    async fn close(&self) -> Result<()> {
        self.workers.close().await;
        Ok(())
    }
}

/// Runs a batch read whose rows lead with the 1-based position of their key in the request
/// (see `Sql::get_many`), and places what `read` makes of each row at its position.
fn by_position<T: Clone>(
    conn: &Conn,
    sql: &str,
    array: &std::rc::Rc<Vec<rusqlite::types::Value>>,
    now: i64,
    count: usize,
    read: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<Vec<Option<T>>> {
    let mut found = vec![None; count];
    let mut statement = conn.db.prepare_cached(sql)?;
    let mut rows = statement.query(params![array, now])?;
    while let Some(row) = rows.next()? {
        let position: i64 = row.get(0)?;
        let slot = usize::try_from(position - 1)
            .ok()
            .and_then(|index| found.get_mut(index));
        if let Some(slot) = slot {
            *slot = Some(read(row)?);
        }
    }
    Ok(found)
}

/// Deletes `key` whatever its state and returns its value if it was live.
fn take_row(conn: &Conn, key: &str, now: i64) -> rusqlite::Result<Option<Bytes>> {
    let mut statement = conn.db.prepare_cached(&conn.sql.take)?;
    let mut rows = statement.query(params![key, now])?;
    let mut taken = None;
    while let Some(row) = rows.next()? {
        if row.get::<_, bool>(1)? {
            taken = Some(blob(row, 0)?);
        }
    }
    Ok(taken)
}

/// The TTL of a live row from its `expires_at`.
fn ttl_at(expires_at: Option<i64>, now: i64) -> Ttl {
    match expires_at {
        None => Ttl::Eternal,
        Some(at) => Ttl::Remaining(Duration::from_millis(at.saturating_sub(now).unsigned_abs())),
    }
}

/// Deletes `key` whatever its state and reports whether it was live.
fn delete_reporting_live(conn: &Conn, key: &str, now: i64) -> rusqlite::Result<bool> {
    let mut statement = conn.db.prepare_cached(&conn.sql.delete_live)?;
    let mut rows = statement.query(params![key, now])?;
    let mut live = false;
    while let Some(row) = rows.next()? {
        live |= row.get::<_, bool>(0)?;
    }
    Ok(live)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cache_core::Error;
    use rusqlite::limits::Limit;

    /// Sub-millisecond TTLs cannot be told apart black-box, so the conversion is checked here:
    /// the stored deadline is `now + ttl_millis(ttl)`, zero means gone, huge TTLs clamp.
    #[test]
    fn expiry_is_the_ttl_in_rounded_up_milliseconds() {
        let now = 1_700_000_000_000_i64;
        for ttl in [
            Duration::from_nanos(1),
            Duration::from_micros(300),
            Duration::from_micros(1_001),
            Duration::from_millis(1_500),
            Duration::MAX,
        ] {
            let expected = now + i64::try_from(ttl_millis(ttl)).unwrap();
            assert_eq!(Expiry::of(Some(ttl)).at(now), Some(expected), "{ttl:?}");
        }
        assert!(matches!(Expiry::of(Some(Duration::ZERO)), Expiry::Gone));
        assert!(matches!(Expiry::of(None), Expiry::Never));
    }

    /// Far below SQLite's own limit of a billion bytes, which a test cannot afford to reach.
    const LIMIT: usize = 1_000;

    fn bytes(text: &str) -> Bytes {
        Bytes::copy_from_slice(text.as_bytes())
    }

    /// A store whose three connections, a writer, a reader and an inline reader, hold strings of at most
    /// [`LIMIT`] bytes.
    async fn store_with_a_small_length_limit() -> SqliteBackend {
        let store = SqliteBackend::memory().readers(1).open().await.unwrap();
        let limit = i32::try_from(LIMIT).unwrap();
        store
            .workers
            .write(move |conn, _| conn.db.set_limit(Limit::SQLITE_LIMIT_LENGTH, limit))
            .await
            .unwrap();
        store
            .workers
            .read(move |conn, _| conn.db.set_limit(Limit::SQLITE_LIMIT_LENGTH, limit))
            .await
            .unwrap();
        // One reader thread, so one inline connection.
        let inline = store.workers.read_inline(|conn, _| {
            conn.db.set_limit(Limit::SQLITE_LIMIT_LENGTH, limit)?;
            Ok(Inline::Done(()))
        });
        assert!(matches!(inline, Some(Ok(()))));
        store
    }

    #[tokio::test]
    async fn a_key_longer_than_sqlites_length_limit_is_an_invalid_key_and_loses_nothing() {
        let store = store_with_a_small_length_limit().await;
        store
            .set("kept", bytes("v"), None, Condition::Always)
            .await
            .unwrap();
        let long = "k".repeat(LIMIT + 1);
        let names_the_key = |outcome: Result<_>, call: &str| match outcome {
            Err(Error::InvalidKey { key, reason }) => {
                assert_eq!(key, long, "{call}");
                assert!(reason.contains("1001 bytes"), "{call}: {reason}");
            }
            Err(other) => panic!("{call}: expected InvalidKey, got {other}"),
            Ok(()) => panic!("{call}: expected InvalidKey, got Ok"),
        };
        let ttl = Some(Duration::from_secs(60));
        names_the_key(
            store
                .set(&long, bytes("v"), None, Condition::Always)
                .await
                .map(drop),
            "set",
        );
        names_the_key(
            store
                .set(&long, bytes("v"), ttl, Condition::IfNotExists)
                .await
                .map(drop),
            "set if not exists",
        );
        names_the_key(store.get(&long).await.map(drop), "get");
        names_the_key(store.contains(&long).await.map(drop), "contains");
        names_the_key(store.ttl(&long).await.map(drop), "ttl");
        names_the_key(store.delete(&long).await.map(drop), "delete");
        names_the_key(store.expire_in(&long, ttl).await.map(drop), "expire_in");
        names_the_key(store.clear_prefix(&long).await.map(drop), "clear_prefix");
        let keys = ["kept".to_owned(), long.clone()];
        names_the_key(store.get_many(&keys).await.map(drop), "get_many");
        names_the_key(store.delete_many(&keys).await.map(drop), "delete_many");
        let entries = vec![("fresh".to_owned(), bytes("f")), (long.clone(), bytes("l"))];
        names_the_key(store.set_many(entries, None).await, "set_many");
        // Writes queued beside the refused one, perhaps in its group, all land.
        let (before, refused, after) = tokio::join!(
            store.set("before", bytes("b"), None, Condition::Always),
            store.set(&long, bytes("l"), None, Condition::Always),
            store.set("after", bytes("a"), None, Condition::Always),
        );
        names_the_key(refused.map(drop), "set in a group");
        assert!(before.unwrap() && after.unwrap());
        assert_eq!(store.get("kept").await.unwrap(), Some(bytes("v")));
        assert_eq!(store.get("fresh").await.unwrap(), None);
        assert_eq!(store.get("before").await.unwrap(), Some(bytes("b")));
        assert_eq!(store.get("after").await.unwrap(), Some(bytes("a")));
        // A key of exactly the limit can be bound.
        assert_eq!(store.get(&"k".repeat(LIMIT)).await.unwrap(), None);
        // A value too long is not the key's fault.
        let err = store
            .set(
                "short",
                Bytes::from(vec![0; LIMIT + 1]),
                None,
                Condition::Always,
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Backend { .. }), "{err}");
        assert!(err.to_string().contains("length limit"), "{err}");
    }
}
