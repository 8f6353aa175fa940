//! The blocking cache: every verb from plain threads, single flight across threads, calls from
//! inside async runtimes of both flavours (no panic, no deadlock), and the runtime's threads
//! gone once the last handle is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cachette::blocking;
use cachette::{Error, Loaded, SetOptions, Ttl};

/// How many threads of this process carry `name` (Linux keeps the first 15 bytes).
fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
                .filter(|comm| comm.trim() == name)
                .count()
        })
        .unwrap_or(0)
}

fn exercise(cache: &blocking::Cache<String>) -> cachette::Result<()> {
    cache.clear()?;
    cache.set("a", &"1".to_string())?;
    cache.set_with(
        "b",
        &"2".to_string(),
        SetOptions::new().ttl(Duration::from_secs(60)),
    )?;
    assert_eq!(cache.get("a")?.as_deref(), Some("1"));
    assert_eq!(cache.get_many(["a", "b", "c"])?.len(), 2);
    assert!(matches!(cache.ttl("b")?, Some(Ttl::Remaining(_))));
    assert!(matches!(cache.get_with_ttl("a")?, Some((_, Ttl::Eternal))));
    let mut keys: Vec<String> = cache.keys().collect::<cachette::Result<_>>()?;
    keys.sort();
    assert_eq!(keys, ["a", "b"]);
    assert_eq!(cache.entries().count(), 2);
    assert_eq!(cache.len()?, 2);
    assert_eq!(cache.take("a")?.as_deref(), Some("1"));
    assert_eq!(cache.take("a")?, None);
    assert!(cache.delete("b")?);
    assert_eq!(cache.incr("n", 5)?, 5);
    assert_eq!(cache.counter("n")?, Some(5));
    let loaded = cache.get_or_insert_with("c", || Ok::<_, std::io::Error>("3".to_string()))?;
    assert_eq!(loaded, "3");
    let failed = cache.get_or_insert_with("d", || {
        Err::<String, _>(std::io::Error::other("the source is down"))
    });
    assert!(matches!(failed, Err(Error::Load { .. })), "{failed:?}");
    Ok(())
}

#[test]
fn every_verb_works_from_plain_threads_on_memory_and_sqlite() -> cachette::Result<()> {
    let directory = tempfile::tempdir().map_err(|e| Error::config(e.to_string()))?;
    for url in [
        "memory://".to_string(),
        format!(
            "sqlite://{}",
            directory.path().join("blocking.db").display()
        ),
    ] {
        let store = blocking::open(&url)?;
        let cache: blocking::Cache<String> = store.cache_with(|builder| builder.prefix("t:"));
        exercise(&cache)?;
        let threads: Vec<_> = (0..4)
            .map(|n| {
                let cache: blocking::Cache<String> =
                    store.cache_with(|builder| builder.prefix(format!("thread{n}:")));
                std::thread::spawn(move || exercise(&cache))
            })
            .collect();
        for thread in threads {
            thread.join().expect("no thread panics")?;
        }
        store.close()?;
    }
    Ok(())
}

#[test]
fn concurrent_threads_share_one_load() -> cachette::Result<()> {
    let store = blocking::open("memory://")?;
    let cache: blocking::Cache<u32> = store.cache();
    let loads = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (cache, loads) = (cache.clone(), Arc::clone(&loads));
            std::thread::spawn(move || {
                cache.get_or_insert_with("k", move || {
                    loads.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(100));
                    Ok::<_, std::io::Error>(7)
                })
            })
        })
        .collect();
    for thread in threads {
        assert_eq!(thread.join().expect("no thread panics")?, 7);
    }
    assert_eq!(loads.load(Ordering::SeqCst), 1);
    Ok(())
}

#[test]
fn a_loader_asking_for_its_own_key_fails_instead_of_waiting_for_itself() -> cachette::Result<()> {
    let store = blocking::open("memory://")?;
    let cache: blocking::Cache<u32> = store.cache();
    let inner = cache.clone();
    let loaded = cache.get_or_insert_with("k", move || {
        // The plain closure calls the cache, as a loader of real code may.
        match inner.get_or_insert_with("k", || Ok::<_, std::io::Error>(2)) {
            Err(Error::LoadCycle { key }) if key == "k" => {}
            other => panic!("the loader's own key answered {other:?}, not LoadCycle"),
        }
        let other = inner.get_or_insert_with("other", || Ok::<_, std::io::Error>(7))?;
        Ok::<_, Error>(other + 1)
    })?;
    assert_eq!(loaded, 8);
    assert_eq!(cache.get("other")?, Some(7));
    Ok(())
}

#[test]
fn stale_values_are_served_while_a_plain_closure_refreshes_them() -> cachette::Result<()> {
    let store = blocking::open("memory://")?;
    let cache: blocking::Cache<u32> = store.cache_with(|builder| {
        builder
            .default_ttl(Duration::from_secs(60))
            .fresh_for(Duration::from_millis(20))
    });
    cache.set("k", &1)?;
    std::thread::sleep(Duration::from_millis(40));
    let served = cache.get_or_refresh("k", || Ok::<_, std::io::Error>(Loaded::value(2)))?;
    assert_eq!(served, Some(1), "the stale value, at once");
    let deadline = Instant::now() + Duration::from_secs(10);
    while cache.get("k")? != Some(2) {
        assert!(
            Instant::now() < deadline,
            "the background refresh never landed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

#[tokio::test(flavor = "current_thread")]
async fn calls_inside_a_current_thread_runtime_neither_panic_nor_deadlock() -> cachette::Result<()>
{
    let store = blocking::open("memory://")?;
    let cache: blocking::Cache<String> = store.cache();
    exercise(&cache)?;
    // Dropping the last handle here, in an async context, must not panic either.
    drop(cache);
    drop(store);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_inside_a_multi_thread_runtime_neither_panic_nor_deadlock() -> cachette::Result<()> {
    let store = blocking::open("memory://")?;
    let cache: blocking::Cache<String> = store.cache();
    exercise(&cache)?;
    // The runtime's other tasks still run meanwhile.
    let ticker = tokio::spawn(async { tokio::time::sleep(Duration::from_millis(5)).await });
    cache.set("slow", &"x".to_string())?;
    ticker.await.map_err(|e| Error::config(e.to_string()))?;
    // From a task on a worker, and from the runtime's blocking pool.
    let on_worker = cache.clone();
    tokio::spawn(async move { exercise(&on_worker) })
        .await
        .map_err(|e| Error::config(e.to_string()))??;
    let on_pool = cache.clone();
    tokio::task::spawn_blocking(move || exercise(&on_pool))
        .await
        .map_err(|e| Error::config(e.to_string()))??;
    Ok(())
}

#[test]
fn dropping_the_last_handle_stops_the_runtime_threads() -> cachette::Result<()> {
    const NAME: &str = "cachette-blocki";
    let store = blocking::open("sqlite::memory:")?;
    let cache: blocking::Cache<u8> = store.cache();
    cache.set("k", &1)?;
    assert!(threads_named(NAME) >= 2, "the runtime's workers run");
    drop(store);
    assert_eq!(cache.get("k")?, Some(1), "a cache keeps the runtime alive");
    drop(cache);
    // Other tests of this binary may hold runtimes of their own: wait for at most theirs.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = threads_named(NAME);
        if left == 0 {
            return Ok(());
        }
        assert!(
            Instant::now() < deadline,
            "{left} runtime threads outlived every handle"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
