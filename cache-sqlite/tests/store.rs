//! What the SQLite store does beyond the shared suite: files, tables, purging, bad files, locks.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::{Backend, Bytes, Cache, Condition, Error, Ttl};
use cache_sqlite::{MAX_PURGE_INTERVAL, SqliteBackend};
use rusqlite::Connection;

fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn database(dir: &tempfile::TempDir) -> PathBuf {
    dir.path().join("cache.db")
}

/// Rows in `table`, expired ones included, as another program reading the file sees them.
fn raw_rows(path: &Path, table: &str) -> i64 {
    let raw = Connection::open(path).expect("open the database file");
    raw.query_row(&format!("SELECT count(*) FROM \"{table}\""), [], |row| {
        row.get(0)
    })
    .expect("count the rows")
}

#[tokio::test]
async fn keys_with_nul_round_trip_whole_and_stay_distinct() {
    let store = SqliteBackend::memory().open().await.unwrap();
    let keys = ["a\0b", "a\0c", "a", "a\0", "\0"];
    for key in keys {
        store
            .set(key, bytes(key), None, Condition::Always)
            .await
            .unwrap();
    }
    for key in keys {
        assert_eq!(store.get(key).await.unwrap(), Some(bytes(key)), "{key:?}");
    }
    let owned: Vec<String> = keys.iter().map(|key| key.to_string()).collect();
    let values = store.get_many(&owned).await.unwrap();
    assert_eq!(values, keys.map(|key| Some(bytes(key))).to_vec());
    // Only the keys that really start with "a\0" go.
    assert_eq!(store.clear_prefix("a\0").await.unwrap(), 3);
    assert_eq!(store.get("a").await.unwrap(), Some(bytes("a")));
    assert_eq!(store.get("\0").await.unwrap(), Some(bytes("\0")));
    assert_eq!(store.get("a\0b").await.unwrap(), None);
}

#[tokio::test]
async fn entries_and_their_ttls_survive_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = database(&dir);
    let store = SqliteBackend::file(&path).open().await.unwrap();
    store
        .set("eternal", bytes("e"), None, Condition::Always)
        .await
        .unwrap();
    store
        .set(
            "hour",
            bytes("h"),
            Some(Duration::from_secs(3600)),
            Condition::Always,
        )
        .await
        .unwrap();
    store.close().await.unwrap();

    let store = SqliteBackend::open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert_eq!(store.get("eternal").await.unwrap(), Some(bytes("e")));
    assert_eq!(store.ttl("eternal").await.unwrap(), Some(Ttl::Eternal));
    match store.ttl("hour").await.unwrap() {
        Some(Ttl::Remaining(left)) => assert!(left > Duration::from_secs(3500), "{left:?}"),
        other => panic!("expected about an hour left, got {other:?}"),
    }
}

#[tokio::test]
async fn relative_urls_resolve_against_the_working_directory() {
    let dir = tempfile::tempdir_in(".").unwrap();
    let name = dir.path().file_name().unwrap().to_str().unwrap().to_owned();
    let store = SqliteBackend::open(&format!("sqlite://{name}/relative.db?table=rel"))
        .await
        .unwrap();
    store
        .set("k", bytes("v"), None, Condition::Always)
        .await
        .unwrap();
    store.close().await.unwrap();
    assert_eq!(raw_rows(&dir.path().join("relative.db"), "rel"), 1);
}

#[tokio::test]
async fn the_table_has_the_documented_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = database(&dir);
    let store = SqliteBackend::file(&path)
        .table("docs")
        .open()
        .await
        .unwrap();
    store
        .set(
            "k",
            bytes("v"),
            Some(Duration::from_secs(60)),
            Condition::Always,
        )
        .await
        .unwrap();
    let raw = Connection::open(&path).unwrap();
    let mode: String = raw
        .query_row("PRAGMA journal_mode", [], |row| row.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let (key, value, expires_at): (String, Vec<u8>, i64) = raw
        .query_row("SELECT key, value, expires_at FROM docs", [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .unwrap();
    assert_eq!((key.as_str(), value.as_slice()), ("k", b"v".as_slice()));
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert!((now_ms + 50_000..=now_ms + 60_000).contains(&expires_at));
    let index: String = raw
        .query_row(
            "SELECT name FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'docs' \
             AND sql LIKE '%expires_at%'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert_eq!(index, "docs_expires_at");
    // Values stay out of the key index: a rowid table, whose primary key is its own index.
    let table_sql: String = raw
        .query_row(
            "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'docs'",
            [],
            |row| row.get(0),
        )
        .unwrap();
    assert!(!table_sql.contains("WITHOUT ROWID"), "{table_sql}");
}

#[tokio::test]
async fn tables_in_one_file_are_separate_caches() {
    let dir = tempfile::tempdir().unwrap();
    let path = database(&dir);
    let users = SqliteBackend::file(&path)
        .table("users")
        .open()
        .await
        .unwrap();
    let docs = SqliteBackend::file(&path)
        .table("docs")
        .open()
        .await
        .unwrap();
    users
        .set("k", bytes("user"), None, Condition::Always)
        .await
        .unwrap();
    docs.set("k", bytes("doc"), None, Condition::Always)
        .await
        .unwrap();
    assert_eq!(users.clear_prefix("").await.unwrap(), 1);
    assert_eq!(docs.get("k").await.unwrap(), Some(bytes("doc")));
}

#[tokio::test]
async fn table_names_differing_only_in_case_are_one_table_and_one_cache() {
    let dir = tempfile::tempdir().unwrap();
    let path = database(&dir);
    let upper = SqliteBackend::file(&path)
        .table("Docs")
        .open()
        .await
        .unwrap();
    let lower = SqliteBackend::file(&path)
        .table("docs")
        .open()
        .await
        .unwrap();
    upper
        .set("k", bytes("v"), None, Condition::Always)
        .await
        .unwrap();
    assert_eq!(lower.get("k").await.unwrap(), Some(bytes("v")));
    assert_eq!(raw_rows(&path, "DOCS"), 1);
}

#[tokio::test]
async fn each_memory_handle_is_its_own_database() {
    let first = SqliteBackend::open("sqlite::memory:").await.unwrap();
    let second = SqliteBackend::open("sqlite::memory:").await.unwrap();
    first
        .set("k", bytes("first"), None, Condition::Always)
        .await
        .unwrap();
    assert_eq!(second.get("k").await.unwrap(), None);
    // Every reader connection of the handle sees the writer's database.
    for _ in 0..20 {
        assert_eq!(first.get("k").await.unwrap(), Some(bytes("first")));
    }
    assert_eq!(first.path(), None);
}

#[tokio::test]
async fn purge_expired_deletes_expired_rows_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = database(&dir);
    let store = SqliteBackend::file(&path)
        .purge_interval(None)
        .open()
        .await
        .unwrap();
    let entries = (0..12_000)
        .map(|i| (format!("short:{i}"), bytes("s")))
        .collect();
    store
        .set_many(entries, Some(Duration::from_millis(100)))
        .await
        .unwrap();
    // The batch's clock was read before set_many returned, so it has expired 100 ms after this.
    let written = Instant::now();
    store
        .set("eternal", bytes("e"), None, Condition::Always)
        .await
        .unwrap();
    store
        .set(
            "later",
            bytes("l"),
            Some(Duration::from_secs(3600)),
            Condition::Always,
        )
        .await
        .unwrap();
    tokio::time::sleep_until((written + Duration::from_millis(130)).into()).await;
    // Expired rows are invisible at once, and still in the file until purged.
    assert_eq!(store.get("short:0").await.unwrap(), None);
    assert_eq!(raw_rows(&path, "cachette"), 12_002);
    assert_eq!(store.purge_expired().await.unwrap(), 12_000);
    assert_eq!(raw_rows(&path, "cachette"), 2);
    assert_eq!(store.purge_expired().await.unwrap(), 0);
    assert!(store.contains("eternal").await.unwrap());
    assert!(store.contains("later").await.unwrap());
}

#[tokio::test]
async fn the_background_purge_empties_expired_rows_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let path = database(&dir);
    let store = SqliteBackend::open(&format!("sqlite://{}?purge_interval=50ms", path.display()))
        .await
        .unwrap();
    store
        .set(
            "gone",
            bytes("g"),
            Some(Duration::from_millis(20)),
            Condition::Always,
        )
        .await
        .unwrap();
    store
        .set("kept", bytes("k"), None, Condition::Always)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while raw_rows(&path, "cachette") != 1 {
        assert!(
            Instant::now() < deadline,
            "the expired row was not purged within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(store.contains("kept").await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_run_between_the_chunks_of_a_purge() {
    const EXPIRED: i64 = 100_000;
    let dir = tempfile::tempdir().unwrap();
    let path = database(&dir);
    let store = Arc::new(
        SqliteBackend::file(&path)
            .purge_interval(None)
            .open()
            .await
            .unwrap(),
    );
    let entries = (0..EXPIRED)
        .map(|i| (format!("old:{i}"), bytes("o")))
        .collect();
    store
        .set_many(entries, Some(Duration::from_millis(1)))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(10)).await;
    let purge = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.purge_expired().await })
    };
    // Once a first chunk is committed the purge is under way...
    let deadline = Instant::now() + Duration::from_secs(10);
    while raw_rows(&path, "cachette") == EXPIRED {
        assert!(Instant::now() < deadline, "the purge did not start");
        tokio::task::yield_now().await;
    }
    store
        .set("during", bytes("d"), None, Condition::Always)
        .await
        .unwrap();
    // ...and a write queued then waits for one chunk, not for the rest of the purge.
    let expired_left = raw_rows(&path, "cachette") - 1;
    assert!(expired_left > 0, "the write waited for the whole purge");
    assert_eq!(purge.await.unwrap().unwrap(), EXPIRED as u64);
    assert_eq!(raw_rows(&path, "cachette"), 1);
    assert!(store.contains("during").await.unwrap());
}

#[tokio::test]
async fn a_purge_interval_longer_than_a_day_is_a_config_error() {
    for url in [
        "sqlite::memory:?purge_interval=18446744073709551615",
        "sqlite::memory:?purge_interval=25h",
    ] {
        let err = SqliteBackend::open(url).await.unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{url}: {err}");
    }
    let err = SqliteBackend::memory()
        .purge_interval(Some(Duration::MAX))
        .open()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err}");
    let store = SqliteBackend::memory()
        .purge_interval(Some(MAX_PURGE_INTERVAL))
        .open()
        .await
        .unwrap();
    store
        .set("k", bytes("v"), None, Condition::Always)
        .await
        .unwrap();
    assert_eq!(store.get("k").await.unwrap(), Some(bytes("v")));
}

#[tokio::test]
async fn idle_connections_pin_no_snapshot_so_the_wal_checkpoints_fully() {
    let dir = tempfile::tempdir().unwrap();
    let path = database(&dir);
    let store = SqliteBackend::file(&path).readers(2).open().await.unwrap();
    let keys: Vec<String> = (0..2_000).map(|i| format!("k{i}")).collect();
    let entries = keys.iter().map(|key| (key.clone(), bytes(key))).collect();
    store.set_many(entries, None).await.unwrap();
    // Every read path, on every reader, then idle.
    for key in keys.iter().take(20) {
        store.get(key).await.unwrap();
        store.get_many(&keys[..100]).await.unwrap();
        store.contains(key).await.unwrap();
        store.ttl(key).await.unwrap();
    }
    store.delete_many(&keys[..10]).await.unwrap();
    store.clear_prefix("k1").await.unwrap();
    // A read transaction left open anywhere would keep the checkpoint from copying every frame
    // back, and the WAL file would grow without end.
    let raw = Connection::open(&path).unwrap();
    let (busy, frames, checkpointed): (i64, i64, i64) = raw
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .unwrap();
    assert_eq!(busy, 0);
    assert!(frames > 0);
    assert_eq!(checkpointed, frames);
}

#[tokio::test]
async fn an_invalid_table_name_is_a_config_error() {
    let err = SqliteBackend::memory()
        .table("users; DROP TABLE x")
        .open()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err}");
    let err = SqliteBackend::open("sqlite::memory:?table=sqlite_schema")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err}");
}

#[tokio::test]
async fn a_foreign_file_is_a_clear_backend_error_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = database(&dir);
    std::fs::write(&path, "name,email\nada,ada@example.com\n".repeat(200)).unwrap();
    let err = SqliteBackend::file(&path).open().await.unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("not a SQLite database, or it is corrupt"),
        "{message}"
    );
    assert!(message.contains(&path.display().to_string()), "{message}");
    // The file is left as it was.
    assert!(
        std::fs::read_to_string(&path)
            .unwrap()
            .starts_with("name,email")
    );
}

#[tokio::test]
async fn a_corrupt_database_file_is_a_clear_backend_error_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = database(&dir);
    let store = SqliteBackend::file(&path).open().await.unwrap();
    store
        .set("k", bytes("v"), None, Condition::Always)
        .await
        .unwrap();
    store.close().await.unwrap();
    // A checkpointed file whose header is overwritten: SQLite no longer recognises it.
    Connection::open(&path)
        .unwrap()
        .execute_batch("PRAGMA wal_checkpoint(TRUNCATE); PRAGMA journal_mode = DELETE;")
        .unwrap();
    let mut contents = std::fs::read(&path).unwrap();
    contents[..32].copy_from_slice(&[0x5a; 32]);
    std::fs::write(&path, contents).unwrap();
    let err = SqliteBackend::file(&path).open().await.unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err}");
    assert!(err.to_string().contains("corrupt"), "{err}");
}

#[tokio::test]
async fn a_table_of_another_shape_is_a_config_error_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = database(&dir);
    Connection::open(&path)
        .unwrap()
        .execute_batch(
            "CREATE TABLE cachette (id INTEGER PRIMARY KEY, name TEXT); \
             INSERT INTO cachette (name) VALUES ('precious');",
        )
        .unwrap();
    let err = SqliteBackend::file(&path).open().await.unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err}");
    assert!(err.to_string().contains("not a cachette table"), "{err}");
    assert_eq!(raw_rows(&path, "cachette"), 1);
}

#[tokio::test]
async fn a_table_with_the_columns_but_another_key_is_a_config_error_and_is_left_alone() {
    for (schema, complaint) in [
        (
            "key TEXT NOT NULL, value BLOB NOT NULL, expires_at INTEGER",
            "key text primary key",
        ),
        (
            "key TEXT NOT NULL, value BLOB NOT NULL, expires_at INTEGER, \
             PRIMARY KEY (key, expires_at)",
            "expires_at integer primary key",
        ),
        (
            "key TEXT COLLATE NOCASE NOT NULL PRIMARY KEY, value BLOB NOT NULL, \
             expires_at INTEGER",
            "NOCASE collation",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let path = database(&dir);
        Connection::open(&path)
            .unwrap()
            .execute_batch(&format!(
                "CREATE TABLE cachette ({schema}); \
                 INSERT INTO cachette VALUES ('precious', x'00', NULL);"
            ))
            .unwrap();
        let err = SqliteBackend::file(&path).open().await.unwrap_err();
        assert!(matches!(err, Error::Config { .. }), "{schema}: {err}");
        let message = err.to_string();
        assert!(message.contains("not a cachette table"), "{message}");
        assert!(message.contains(complaint), "{message}");
        assert_eq!(raw_rows(&path, "cachette"), 1);
        let indexes: i64 = Connection::open(&path)
            .unwrap()
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE name = 'cachette_expires_at'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(indexes, 0, "{schema}");
    }
}

#[tokio::test]
async fn a_utf16_database_is_a_config_error_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let path = database(&dir);
    Connection::open(&path)
        .unwrap()
        .execute_batch(
            "PRAGMA encoding = 'UTF-16le'; CREATE TABLE other (x TEXT); \
             INSERT INTO other VALUES ('kept');",
        )
        .unwrap();
    let err = SqliteBackend::file(&path).open().await.unwrap_err();
    assert!(matches!(err, Error::Config { .. }), "{err}");
    assert!(err.to_string().contains("UTF-16le"), "{err}");
    let raw = Connection::open(&path).unwrap();
    let (tables, mode): (i64, String) = raw
        .query_row(
            "SELECT (SELECT count(*) FROM sqlite_schema WHERE name = 'cachette'), \
                    (SELECT journal_mode FROM pragma_journal_mode)",
            [],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap();
    assert_eq!((tables, mode.as_str()), (0, "delete"));
}

#[tokio::test]
async fn a_missing_directory_is_a_clear_backend_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/cache.db");
    let err = SqliteBackend::file(&path).open().await.unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("check that the directory exists"),
        "{message}"
    );
}

#[tokio::test]
async fn a_write_waits_for_another_connections_lock_instead_of_failing() {
    let dir = tempfile::tempdir().unwrap();
    let path = database(&dir);
    let store = SqliteBackend::file(&path).open().await.unwrap();
    let (locked, lock_taken) = std::sync::mpsc::channel();
    let holder = {
        let path = path.clone();
        std::thread::spawn(move || {
            let raw = Connection::open(&path).unwrap();
            raw.execute_batch("BEGIN IMMEDIATE").unwrap();
            locked.send(()).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            raw.execute_batch("COMMIT").unwrap();
        })
    };
    lock_taken.recv().unwrap();
    store
        .set("k", bytes("v"), None, Condition::Always)
        .await
        .unwrap();
    assert_eq!(store.get("k").await.unwrap(), Some(bytes("v")));
    holder.join().unwrap();
}

#[tokio::test]
async fn a_lock_held_past_the_busy_timeout_is_a_backend_error_and_the_store_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = database(&dir);
    let store = SqliteBackend::file(&path)
        .busy_timeout(Duration::from_millis(50))
        .open()
        .await
        .unwrap();
    let raw = Connection::open(&path).unwrap();
    raw.execute_batch("BEGIN IMMEDIATE").unwrap();
    let err = store
        .set("k", bytes("v"), None, Condition::Always)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err}");
    assert!(err.to_string().contains("busy timeout"), "{err}");
    assert!(
        err.is_transient(),
        "a lock held too long is worth a retry: {err}"
    );
    // Readers are not blocked by a writer.
    assert_eq!(store.get("k").await.unwrap(), None);
    raw.execute_batch("COMMIT").unwrap();
    store
        .set("k", bytes("v"), None, Condition::Always)
        .await
        .unwrap();
    assert_eq!(store.get("k").await.unwrap(), Some(bytes("v")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_grouped_behind_a_lock_held_past_the_busy_timeout_fail_together_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = database(&dir);
    let timeout = Duration::from_millis(300);
    let store = Arc::new(
        SqliteBackend::file(&path)
            .busy_timeout(timeout)
            .open()
            .await
            .unwrap(),
    );
    let raw = Connection::open(&path).unwrap();
    raw.execute_batch("BEGIN IMMEDIATE").unwrap();
    let started = Instant::now();
    let writes: Vec<_> = (0..32)
        .map(|i| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let key = format!("k{i}");
                store.set(&key, bytes("v"), None, Condition::Always).await
            })
        })
        .collect();
    for write in writes {
        let err = write.await.unwrap().unwrap_err();
        assert!(matches!(err, Error::Backend { .. }), "{err}");
        assert!(err.to_string().contains("busy timeout"), "{err}");
    }
    // A few groups wait one timeout each; retried alone, the 32 writes would wait at least 32
    // timeouts in a row. The bound sits halfway, far from both, so load cannot flip it.
    let waited = started.elapsed();
    assert!(waited < timeout * 16, "the writes took {waited:?}");
    raw.execute_batch("COMMIT").unwrap();
    store
        .set("k", bytes("v"), None, Condition::Always)
        .await
        .unwrap();
    assert_eq!(store.get("k").await.unwrap(), Some(bytes("v")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_set_many_writes_nothing_and_spares_concurrent_writers() {
    let dir = tempfile::tempdir().unwrap();
    let path = database(&dir);
    let store = Arc::new(SqliteBackend::file(&path).open().await.unwrap());
    // A trigger stands in for any failure part-way through a batch (disk full, I/O error).
    Connection::open(&path)
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER poison BEFORE INSERT ON cachette WHEN NEW.key = 'poison' \
             BEGIN SELECT RAISE(ABORT, 'poisoned key'); END;",
        )
        .unwrap();
    let writers: Vec<_> = (0..16)
        .map(|task| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..20 {
                    let key = format!("ok:{task}:{i}");
                    store.set(&key, bytes("v"), None, Condition::Always).await?;
                }
                Ok::<_, Error>(())
            })
        })
        .collect();
    for round in 0..20 {
        let entries = vec![
            (format!("batch{round}:a"), bytes("a")),
            ("poison".to_owned(), bytes("p")),
            (format!("batch{round}:b"), bytes("b")),
        ];
        let err = store.set_many(entries, None).await.unwrap_err();
        assert!(err.to_string().contains("poisoned key"), "{err}");
        let keys = [format!("batch{round}:a"), format!("batch{round}:b")];
        assert_eq!(store.get_many(&keys).await.unwrap(), vec![None, None]);
    }
    for writer in writers {
        writer.await.unwrap().unwrap();
    }
    for task in 0..16 {
        for i in 0..20 {
            assert!(store.contains(&format!("ok:{task}:{i}")).await.unwrap());
        }
    }
}

#[tokio::test]
async fn calls_after_close_fail_with_a_backend_error() {
    let store = SqliteBackend::memory().open().await.unwrap();
    store
        .set("k", bytes("v"), None, Condition::Always)
        .await
        .unwrap();
    store.close().await.unwrap();
    let err = store.get("k").await.unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err}");
    assert!(err.to_string().contains("closed"), "{err}");
    // Closing twice is harmless.
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_typed_cache_over_a_file_round_trips_through_cachette_open_urls() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?table=typed", database(&dir).display());
    let cache: Cache<Vec<String>> =
        Cache::builder(Arc::new(SqliteBackend::open(&url).await.unwrap()))
            .prefix("names:")
            .build();
    cache
        .set("team", &vec!["ada".to_owned(), "grace".to_owned()])
        .await
        .unwrap();
    assert_eq!(
        cache.get("team").await.unwrap().map(|names| names.len()),
        Some(2)
    );
    assert_eq!(cache.clear().await.unwrap(), 1);
}

/// The permission bits of `path`.
#[cfg(unix)]
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The database file and the `-wal` and `-shm` files SQLite makes beside it.
#[cfg(unix)]
fn database_files(db: &Path) -> [PathBuf; 3] {
    let with = |suffix: &str| PathBuf::from(format!("{}{suffix}", db.display()));
    [db.to_path_buf(), with("-wal"), with("-shm")]
}

#[cfg(unix)]
#[tokio::test]
async fn new_database_files_are_readable_by_their_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("private.db");
    let store = SqliteBackend::file(&db).open().await.unwrap();
    store
        .set("token", bytes("secret"), None, Condition::Always)
        .await
        .unwrap();
    for file in database_files(&db) {
        assert_eq!(mode_of(&file), 0o600, "{}", file.display());
    }
    store.close().await.unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn the_mode_option_sets_the_permissions_of_new_files_and_spares_existing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let url = format!("sqlite://{}?mode=0640", db.display());
    let store = open_url(&url).await;
    store
        .set("k", bytes("v"), None, Condition::Always)
        .await
        .unwrap();
    for file in database_files(&db) {
        // The umask may take bits away, never add them; the owner keeps read and write.
        let mode = mode_of(&file);
        assert_eq!(mode & !0o640, 0, "{}: {mode:o}", file.display());
        assert_eq!(mode & 0o600, 0o600, "{}: {mode:o}", file.display());
    }
    store.close().await.unwrap();
    // An existing file keeps what its owner gave it.
    let existing = dir.path().join("existing.db");
    std::fs::write(&existing, b"").unwrap();
    std::fs::set_permissions(
        &existing,
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    let store = SqliteBackend::file(&existing).open().await.unwrap();
    assert_eq!(mode_of(&existing), 0o644);
    store.close().await.unwrap();
}

async fn open_url(url: &str) -> SqliteBackend {
    let builder = cache_sqlite::SqliteBackendBuilder::from_url(url)
        .unwrap_or_else(|error| panic!("{url}: {error}"));
    builder
        .open()
        .await
        .unwrap_or_else(|error| panic!("opening {url}: {error}"))
}

#[test]
fn file_modes_that_lock_the_owner_out_or_are_not_permissions_are_config_errors() {
    for bad in [
        "mode=400",
        "mode=0200",
        "mode=1777",
        "mode=rw",
        "mode=7",
        "mode=06400",
    ] {
        let url = format!("sqlite://x.db?{bad}");
        let outcome = cache_sqlite::SqliteBackendBuilder::from_url(&url);
        assert!(
            matches!(outcome, Err(Error::Config { .. })),
            "{bad}: {outcome:?}"
        );
    }
    assert!(cache_sqlite::SqliteBackendBuilder::from_url("sqlite://x.db?mode=0600").is_ok());
}

/// Another writer may store TEXT or a number where this store writes BLOBs: the store serves
/// their bytes (a number as its decimal text), so a JSON cache reads what it can and a typed
/// cache that cannot gets `Error::Decode` naming the key, not a store failure.
#[tokio::test]
async fn text_and_number_values_of_other_writers_read_as_their_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.db");
    let store = SqliteBackend::file(&path).open().await.unwrap();
    store
        .set("blob", bytes("1"), None, Condition::Always)
        .await
        .unwrap();
    let raw = Connection::open(&path).unwrap();
    raw.execute(
        "INSERT INTO cachette (key, value, expires_at) VALUES ('text', '{\"a\":1}', NULL), \
         ('integer', 42, NULL), ('real', 2.5, NULL)",
        [],
    )
    .unwrap();
    drop(raw);
    let values = store
        .get_many(&["text".into(), "integer".into(), "real".into()])
        .await
        .unwrap();
    assert_eq!(
        values,
        vec![
            Some(bytes("{\"a\":1}")),
            Some(bytes("42")),
            Some(bytes("2.5"))
        ]
    );
    let json: Cache<serde_json::Value> = Cache::builder(Arc::new(store))
        .serializer(cache_core::Json)
        .build();
    assert_eq!(
        json.get("integer").await.unwrap(),
        Some(serde_json::json!(42))
    );
    assert_eq!(
        json.get("text").await.unwrap(),
        Some(serde_json::json!({"a": 1}))
    );
    let strict: Cache<Vec<u64>> = Cache::builder(Arc::clone(json.backend())).build();
    match strict.get("text").await {
        Err(Error::Decode { key, .. }) => assert_eq!(key, "text"),
        other => panic!("expected Error::Decode, got {other:?}"),
    }
}
