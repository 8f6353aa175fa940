//! The bounds of reads on the calling task: what an inline read leaves to a reader thread (a
//! locked database, a large value), that a loop of inline hits still lets other tasks run, and
//! how long a read of pages that are not in memory holds the task.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cache_core::{Backend, Bytes, Condition};
use rusqlite::{Connection, OpenFlags};

use crate::SqliteBackend;
use crate::connection::{Conn, Settings, Target};
use crate::worker::{Inline, Workers};

async fn file_store(dir: &tempfile::TempDir) -> SqliteBackend {
    SqliteBackend::file(dir.path().join("cache.db"))
        .readers(2)
        .open()
        .await
        .expect("the store opens")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_past_the_inline_limit_is_left_to_a_reader_thread_and_still_read() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store = file_store(&dir).await;
    let small = Bytes::from(vec![1_u8; 100]);
    let limit = usize::try_from(crate::worker::INLINE_VALUE_LIMIT).expect("a small limit");
    let edge = Bytes::from(vec![2_u8; limit]);
    let large = Bytes::from(vec![3_u8; 4 * 1024 * 1024]);
    for (key, value) in [("small", &small), ("edge", &edge), ("large", &large)] {
        store
            .set(key, value.clone(), None, Condition::Always)
            .await
            .expect("a write");
    }
    let inline = |key: &'static str| {
        let store = &store;
        async move {
            store
                .read_point_inline(key)
                .await
                .map(|outcome| outcome.expect("an inline read").map(|(value, _)| value))
        }
    };
    assert_eq!(inline("small").await, Some(Some(small.clone())));
    assert_eq!(inline("edge").await, Some(Some(edge.clone())));
    assert_eq!(inline("missing").await, Some(None));
    // Declined: the read goes to a reader thread, which copies the value out there.
    assert_eq!(inline("large").await, None);
    assert_eq!(
        store.get("large").await.expect("a read"),
        Some(large.clone())
    );
    let (value, _) = store
        .get_with_ttl("large")
        .await
        .expect("a read")
        .expect("present");
    assert_eq!(value, large);
    store.close().await.expect("closes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_database_never_makes_an_inline_read_wait() {
    let target = Target::fresh_memory();
    let Target::Memory(uri) = &target else {
        unreachable!("a memory target")
    };
    let workers = Arc::new(
        Workers::start(Settings {
            target: target.clone(),
            table: "t".to_owned(),
            busy_timeout: Duration::from_secs(10),
            purge_interval: None,
            readers: 2,
            mode: crate::config::DEFAULT_MODE,
            inline_reads: true,
        })
        .await
        .expect("the workers start"),
    );
    let count = |conn: &Conn| -> rusqlite::Result<i64> {
        conn.db
            .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
    };
    assert!(matches!(
        workers.read_inline(|conn, _| count(conn).map(Inline::Done)),
        Some(Ok(0))
    ));
    // Another connection holds the database's exclusive lock, as a writer does while it
    // commits: every other connection's read finds it busy until it lets go.
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_URI;
    let holder = Connection::open_with_flags(uri, flags).expect("opens");
    holder.execute_batch("BEGIN EXCLUSIVE").expect("locks");
    let began = Instant::now();
    let inline = workers.read_inline(|conn, _| count(conn).map(Inline::Done));
    let answered_in = began.elapsed();
    assert!(
        inline.is_none(),
        "an inline read of a locked database must hand the read on, neither wait nor fail"
    );
    // Handed on, the read waits on a reader thread, within the busy timeout, and answers.
    let waiting = {
        let workers = Arc::clone(&workers);
        tokio::spawn(async move { workers.read(move |conn, _| count(conn)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !waiting.is_finished(),
        "the handed-on read waits for the lock"
    );
    holder.execute_batch("COMMIT").expect("unlocks");
    assert!(matches!(waiting.await.expect("the read task"), Ok(0)));
    assert!(matches!(
        workers.read_inline(|conn, _| count(conn).map(Inline::Done)),
        Some(Ok(0))
    ));
    println!("an inline read of a locked database handed on after {answered_in:?}");
    drop(holder);
    workers.close().await;
}

#[test]
fn a_loop_of_inline_hits_lets_the_other_tasks_of_its_thread_run() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Arc::new(file_store(&dir).await);
        store
            .set("k", Bytes::from_static(b"v"), None, Condition::Always)
            .await
            .expect("a write");
        assert!(matches!(
            store.read_point_inline("k").await,
            Some(Ok(Some(_)))
        ));
        let ticks = Arc::new(AtomicU64::new(0));
        let ticker = {
            let ticks = Arc::clone(&ticks);
            tokio::spawn(async move {
                loop {
                    ticks.fetch_add(1, Ordering::Relaxed);
                    tokio::task::yield_now().await;
                }
            })
        };
        // One thread: the ticker runs only when the reading task gives the scheduler a turn,
        // and the reads themselves never wait for anything.
        let reader = {
            let (store, ticks) = (Arc::clone(&store), Arc::clone(&ticks));
            tokio::spawn(async move {
                let before = ticks.load(Ordering::Relaxed);
                for _ in 0..5_000 {
                    assert!(store.get("k").await.expect("a read").is_some());
                }
                ticks.load(Ordering::Relaxed) - before
            })
        };
        let turns = reader.await.expect("the reader");
        ticker.abort();
        assert!(
            turns >= 5_000 / 256,
            "5,000 inline hits let the other task run {turns} times"
        );
        Arc::into_inner(store)
            .expect("the last handle")
            .close()
            .await
            .expect("closes");
    });
}

/// Drops `path` from the operating system's page cache, as if it had not been read since boot.
fn evict(path: &std::path::Path) {
    let file = std::fs::File::open(path).expect("opens");
    rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed).expect("posix_fadvise");
}

/// Prints how long inline reads of pages neither SQLite nor the operating system hold took: the
/// measurement behind `inline_reads`' documented bound. It asserts only that every read answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_reads_of_pages_not_in_memory_are_measured() {
    const ROWS: usize = 100_000;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("cache.db");
    {
        let store = file_store(&dir).await;
        for chunk in (0..ROWS).collect::<Vec<_>>().chunks(10_000) {
            let entries = chunk
                .iter()
                .map(|n| (format!("key:{n:08}"), Bytes::from(vec![7_u8; 400])))
                .collect();
            store.set_many(entries, None).await.expect("a write");
        }
        store.close().await.expect("closes");
    }
    // Fresh connections (empty SQLite page caches) over a file out of the page cache.
    for file in ["cache.db", "cache.db-wal", "cache.db-shm"] {
        if dir.path().join(file).exists() {
            evict(&dir.path().join(file));
        }
    }
    let store = file_store(&dir).await;
    evict(&path);
    let mut took = Vec::new();
    for n in 0..2_000 {
        // Spread over the whole key range, so most reads touch pages no other read has.
        let key = format!("key:{:08}", (n * 7_919) % ROWS);
        let began = Instant::now();
        let outcome = store.read_point_inline(&key).await;
        took.push(began.elapsed());
        assert!(
            matches!(outcome, Some(Ok(Some(_)))),
            "{key}: an inline read of a present key did not answer it"
        );
    }
    took.sort();
    let at = |q: f64| took[((took.len() - 1) as f64 * q) as usize];
    println!(
        "inline reads of a {ROWS}-row file evicted from the page cache: p50 {:?}, p99 {:?}, \
         max {:?}",
        at(0.5),
        at(0.99),
        at(1.0)
    );
    store.close().await.expect("closes");
}
