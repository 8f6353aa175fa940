//! The SQLite store (a file in WAL mode) against rusqlite.

use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use cache_sqlite::SqliteBackend;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params};

use super::{Facade, Peer, StoreBench, full_keys, run_prefix};
use crate::BenchResult;
use crate::measure::{Target, Timed};
use crate::workload::{SharedWorkload, TTL, decode, encode};

/// The table the store creates by default; the raw contender works in the same table.
const TABLE: &str = "cachette";

/// The SQLite store's contenders, preloaded, over a fresh database file in a temporary
/// directory that the clean-up removes.
pub async fn setup(workload: &SharedWorkload) -> BenchResult<StoreBench> {
    let directory = tempfile::Builder::new()
        .prefix("cachette-bench-sqlite")
        .tempdir()?;
    let path = directory.path().join("bench.db");
    let backend = Arc::new(SqliteBackend::file(&path).table(TABLE).open().await?);
    let readers = std::thread::available_parallelism()
        .map_or(2, usize::from)
        .min(4);
    let prefix = run_prefix();
    let facade = Facade::<false>::contender(backend.clone(), &format!("{prefix}f:"), workload);
    let raw = RawSqlite::<false>::open(
        &path,
        readers,
        full_keys(&format!("{prefix}r:"), workload),
        workload,
    )
    .await?;
    let inline = RawSqlite::<true> {
        pool: Arc::clone(&raw.pool),
        full_keys: full_keys(&format!("{prefix}i:"), workload),
        workload: Arc::clone(workload),
    };
    let bench = StoreBench {
        facade,
        raw: Box::new(Timed::new(raw, Arc::clone(workload))),
        raw_name: "rusqlite + ciborium through `tokio::task::spawn_blocking`, one writer and \
                   one reader connection per core (at most 4), the store's SQL",
        peer: Some(Peer {
            name: "the same rusqlite code called inline on the async task: blocks the executor, \
                   so no option for a service, but the ceiling of any thread hand-off",
            contender: Box::new(Timed::new(inline, Arc::clone(workload))),
        }),
        cleanup: Box::pin(async move {
            use cache_core::Backend as _;
            backend.close().await?;
            drop(backend);
            // The directory and the database in it go when the last handle does.
            drop(directory);
            Ok(())
        }),
        server: Some(format!("SQLite {} (bundled), WAL", rusqlite::version())),
        note: None,
    };
    bench.preloaded().await
}

/// A writer connection and a few reader connections on the store's file.
struct Pool {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

impl Pool {
    fn open(path: &Path, readers: usize) -> BenchResult<Self> {
        let open = || -> BenchResult<Connection> {
            let connection = Connection::open(path)?;
            connection.busy_timeout(std::time::Duration::from_secs(5))?;
            // The store set WAL on the file already; these are per connection.
            connection.pragma_update(None, "synchronous", "NORMAL")?;
            rusqlite::vtab::array::load_module(&connection)?;
            Ok(connection)
        };
        Ok(Self {
            writer: Mutex::new(open()?),
            readers: (0..readers.max(1))
                .map(|_| open().map(Mutex::new))
                .collect::<BenchResult<_>>()?,
            next_reader: AtomicUsize::new(0),
        })
    }

    fn reader(&self) -> std::sync::MutexGuard<'_, Connection> {
        let index = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        self.readers[index]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.writer.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

fn expires_at() -> i64 {
    now_millis() + i64::try_from(TTL.as_millis()).unwrap_or(i64::MAX)
}

const GET: &str = "SELECT value FROM \"cachette\" WHERE key = ?1 \
                   AND (expires_at IS NULL OR expires_at > ?2)";
const GET_MANY: &str = "SELECT a.rowid, t.value FROM rarray(?1) AS a CROSS JOIN \"cachette\" AS t \
                        ON t.key = a.value WHERE (t.expires_at IS NULL OR t.expires_at > ?2)";
const UPSERT: &str = "INSERT INTO \"cachette\" (key, value, expires_at) VALUES (?1, ?2, ?3) \
                      ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
                      expires_at = excluded.expires_at";

/// The same work on rusqlite with the store's statements and CBOR bytes. `INLINE` calls SQLite
/// on the calling task; otherwise every call crosses to a blocking thread with
/// `tokio::task::spawn_blocking`, the usual way to call a blocking driver from async code.
#[derive(Clone)]
struct RawSqlite<const INLINE: bool> {
    pool: Arc<Pool>,
    full_keys: Arc<Vec<String>>,
    workload: SharedWorkload,
}

impl RawSqlite<false> {
    async fn open(
        path: &Path,
        readers: usize,
        full_keys: Arc<Vec<String>>,
        workload: &SharedWorkload,
    ) -> BenchResult<Self> {
        let path = path.to_owned();
        let pool = tokio::task::spawn_blocking(move || Pool::open(&path, readers)).await??;
        Ok(Self {
            pool: Arc::new(pool),
            full_keys,
            workload: Arc::clone(workload),
        })
    }
}

impl<const INLINE: bool> RawSqlite<INLINE> {
    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Self) -> BenchResult<T> + Send + 'static,
    ) -> BenchResult<T> {
        if INLINE {
            work(self)
        } else {
            let this = self.clone();
            tokio::task::spawn_blocking(move || work(&this)).await?
        }
    }

    fn read_one(&self, key: usize) -> BenchResult<bool> {
        let connection = self.pool.reader();
        let mut statement = connection.prepare_cached(GET)?;
        let value: Option<Vec<u8>> = statement
            .query_row(params![self.full_keys[key], now_millis()], |row| row.get(0))
            .optional()?;
        Ok(value.map(|bytes| decode(&bytes)).transpose()?.is_some())
    }

    fn write_one(&self, key: usize) -> BenchResult<()> {
        let value = encode(&self.workload.docs[key])?;
        let connection = self.pool.writer();
        let mut statement = connection.prepare_cached(UPSERT)?;
        statement.execute(params![self.full_keys[key], value, expires_at()])?;
        Ok(())
    }

    fn read_many(&self, keys: &[usize]) -> BenchResult<usize> {
        let array: Vec<Value> = keys
            .iter()
            .map(|&key| Value::Text(self.full_keys[key].clone()))
            .collect();
        let connection = self.pool.reader();
        let mut statement = connection.prepare_cached(GET_MANY)?;
        let mut rows = statement.query(params![Rc::new(array), now_millis()])?;
        let mut found = vec![None; keys.len()];
        while let Some(row) = rows.next()? {
            let position: i64 = row.get(0)?;
            let value: Vec<u8> = row.get(1)?;
            let slot = usize::try_from(position - 1)?;
            found[slot] = Some(decode(&value)?);
        }
        Ok(found.iter().flatten().count())
    }

    fn write_many(&self, keys: &[usize]) -> BenchResult<()> {
        let values = keys
            .iter()
            .map(|&key| encode(&self.workload.docs[key]))
            .collect::<BenchResult<Vec<_>>>()?;
        let mut connection = self.pool.writer();
        let transaction =
            connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut statement = transaction.prepare_cached(UPSERT)?;
            let expires_at = expires_at();
            for (&key, value) in keys.iter().zip(&values) {
                statement.execute(params![self.full_keys[key], value, expires_at])?;
            }
        }
        transaction.commit()?;
        Ok(())
    }
}

impl<const INLINE: bool> Target for RawSqlite<INLINE> {
    const IN_PROCESS: bool = INLINE;

    async fn get(&self, key: usize) -> BenchResult<bool> {
        self.blocking(move |this| this.read_one(key)).await
    }

    async fn set(&self, key: usize) -> BenchResult<()> {
        self.blocking(move |this| this.write_one(key)).await
    }

    async fn get_many(&self, keys: &[usize]) -> BenchResult<usize> {
        let keys = keys.to_vec();
        self.blocking(move |this| this.read_many(&keys)).await
    }

    async fn set_many(&self, keys: &[usize]) -> BenchResult<()> {
        let keys = keys.to_vec();
        self.blocking(move |this| this.write_many(&keys)).await
    }
}
