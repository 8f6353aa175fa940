//! The invalidation channel of a database file shared by several processes: announcements are
//! rows of a log table beside the cache table, written through the writer thread; a thread per
//! subscription polls `PRAGMA data_version` (which changes when another connection commits) and
//! reads the rows it has not seen.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use cache_core::raw::invalidation::{Notice, Subscription, Transport};
use cache_core::{Bytes, Error, Result, async_trait};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use crate::error::map_sqlite_error;
use crate::worker::Workers;

/// How often a subscription looks at the file's data version: the bound on how late another
/// process's write reaches this one's local tier, beside the write itself.
pub const POLL_INTERVAL: Duration = Duration::from_millis(2);

/// How long announcements stay in the log; a subscriber that falls further behind empties its
/// tiers.
const KEEP_MILLIS: i64 = 60_000;

pub(crate) struct SqliteChannel {
    workers: Arc<Workers>,
    path: PathBuf,
    busy_timeout: Duration,
    create: String,
    insert: String,
    prune: String,
    newer: String,
    last: String,
}

impl SqliteChannel {
    pub(crate) fn new(
        workers: Arc<Workers>,
        path: PathBuf,
        table: &str,
        busy_timeout: Duration,
    ) -> Self {
        // The table name is validated to `[A-Za-z_][A-Za-z0-9_]*`, so quoting cannot be escaped.
        let log = format!("\"{table}__invalidations\"");
        Self {
            workers,
            path,
            busy_timeout,
            create: format!(
                "CREATE TABLE IF NOT EXISTS {log} (id INTEGER PRIMARY KEY AUTOINCREMENT, \
                 at INTEGER NOT NULL, message BLOB NOT NULL)"
            ),
            insert: format!("INSERT INTO {log} (at, message) VALUES (?1, ?2)"),
            prune: format!("DELETE FROM {log} WHERE at < ?1"),
            newer: format!("SELECT id, message FROM {log} WHERE id > ?1 ORDER BY id"),
            // The last id handed out, even when its row is pruned since.
            last: format!(
                "SELECT coalesce((SELECT seq FROM sqlite_sequence \
                 WHERE name = '{table}__invalidations'), 0)"
            ),
        }
    }
}

impl std::fmt::Debug for SqliteChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteChannel")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl Transport for SqliteChannel {
    async fn publish(&self, message: Bytes) -> Result<()> {
        let (create, insert, prune) =
            (self.create.clone(), self.insert.clone(), self.prune.clone());
        self.workers
            .write(move |conn, now| {
                conn.db.prepare_cached(&create)?.execute([])?;
                conn.db
                    .prepare_cached(&insert)?
                    .execute(params![now, &message[..]])?;
                conn.db
                    .prepare_cached(&prune)?
                    .execute([now - KEEP_MILLIS])?;
                Ok(())
            })
            .await
            .map_err(|failure| map_sqlite_error("publish", None, failure))
    }

    async fn subscribe(&self) -> Result<Subscription> {
        let (notices, received) = mpsc::channel(1_024);
        let (ready, opened) = oneshot::channel();
        let listener = Listener {
            path: self.path.clone(),
            busy_timeout: self.busy_timeout,
            create: self.create.clone(),
            newer: self.newer.clone(),
            last: self.last.clone(),
        };
        std::thread::Builder::new()
            .name("cachette-sqlite-listen".into())
            .spawn(move || listener.run(&notices, ready))
            .map_err(|error| Error::backend("sqlite", "subscribe", None, error))?;
        opened
            .await
            .map_err(|_| Error::backend("sqlite", "subscribe", None, "the listening thread ended"))?
            .map_err(|error| map_sqlite_error("subscribe", None, error.into()))?;
        Ok(Subscription::new(futures_util::stream::unfold(
            received,
            |mut received| async move { received.recv().await.map(|notice| (notice, received)) },
        )))
    }
}

struct Listener {
    path: PathBuf,
    busy_timeout: Duration,
    create: String,
    newer: String,
    last: String,
}

impl Listener {
    fn open(&self) -> rusqlite::Result<(Connection, i64, i64)> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let db = Connection::open_with_flags(&self.path, flags)?;
        db.busy_timeout(self.busy_timeout)?;
        db.execute(&self.create, [])?;
        let last: i64 = db.query_row(&self.last, [], |row| row.get(0))?;
        let version = data_version(&db)?;
        Ok((db, last, version))
    }

    fn run(self, notices: &mpsc::Sender<Notice>, ready: oneshot::Sender<rusqlite::Result<()>>) {
        let (db, mut last, mut version) = match self.open() {
            Ok(opened) => opened,
            Err(error) => {
                let _ = ready.send(Err(error));
                return;
            }
        };
        if ready.send(Ok(())).is_err() {
            return;
        }
        while !notices.is_closed() {
            std::thread::sleep(POLL_INTERVAL);
            let read = data_version(&db).and_then(|now| {
                if now == version {
                    return Ok(Vec::new());
                }
                version = now;
                let mut statement = db.prepare_cached(&self.newer)?;
                let rows = statement.query_map([last], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
                })?;
                rows.collect::<rusqlite::Result<Vec<_>>>()
            });
            let rows = match read {
                Ok(rows) => rows,
                Err(error) => {
                    let _ = notices.blocking_send(Notice::Lost(error.to_string()));
                    return;
                }
            };
            for (id, message) in rows {
                // Ids only grow, one by one: a gap is announcements pruned before they were
                // read.
                if id != last + 1 {
                    let _ = notices
                        .blocking_send(Notice::Lost("announcements were pruned unread".into()));
                    return;
                }
                last = id;
                if notices
                    .blocking_send(Notice::Message(Bytes::from(message)))
                    .is_err()
                {
                    return;
                }
            }
        }
    }
}

fn data_version(db: &Connection) -> rusqlite::Result<i64> {
    db.query_row("PRAGMA data_version", [], |row| row.get(0))
        .optional()
        .map(Option::unwrap_or_default)
}
