//! Fleet-wide single flight across real processes, on every shared store (a SQLite file,
//! Redis, Redis Cluster, PostgreSQL): eight child processes (this binary, started again), each
//! with 64 tasks, ask at once for one missing key through caches with `fleet_single_flight`. The
//! loader runs once in all. Then the same with the loading process killed (SIGKILL) mid-load: its lease expires, one
//! waiter loads again, and every surviving process gets that value: two loads, not eight.
//!
//! Each loader appends a line to a log file shared by the run, so the loads are counted across
//! processes without the store's help.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use cachette::{Cache, Lease};

const CHILDREN: usize = 8;
/// Tasks in each child asking for the key at once.
const TASKS: usize = 64;
const CHILD: &str = "CACHETTE_FLEET_CHILD";
/// The lease the children's caches take: a killed holder blocks the key for at most this long.
const LEASE: Duration = Duration::from_secs(1);

fn main() {
    if std::env::var_os(CHILD).is_some() {
        child();
        return;
    }
    let directory = tempfile::tempdir().expect("a temporary directory");
    let stores = [
        (
            "sqlite file",
            format!("sqlite://{}", directory.path().join("fleet.db").display()),
        ),
        (
            "redis",
            cachette_test_support::server_url("CACHETTE_REDIS_URL", "redis://127.0.0.1:6379/0"),
        ),
        (
            "redis cluster",
            cachette_test_support::server_url(
                "CACHETTE_REDIS_CLUSTER_URL",
                "redis+cluster://127.0.0.1:7000",
            ),
        ),
        (
            "postgres",
            cachette_test_support::server_url(
                "CACHETTE_POSTGRES_URL",
                "postgres://postgres@127.0.0.1:5432/test",
            ),
        ),
    ];
    let mut passed = 0;
    for (name, url) in &stores {
        let started = Instant::now();
        eight_processes_load_a_missing_key_once(url, directory.path());
        println!(
            "test {name}: eight processes of 64 tasks, one load ... ok ({:?})",
            started.elapsed()
        );
        passed += 1;
        let started = Instant::now();
        a_killed_holder_costs_one_more_load(url, directory.path());
        println!(
            "test {name}: holder killed mid-load, two loads ... ok ({:?})",
            started.elapsed()
        );
        passed += 1;
    }
    println!("\ntest result: ok. {passed} passed; 0 failed; 0 ignored; 0 measured; 0 filtered out");
}

/// What a child does, from its environment: opens the store, waits for the common start, asks
/// for the key, prints the value it got.
fn child() {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set"));
    let (url, prefix, log) = (var("FLEET_URL"), var("FLEET_PREFIX"), var("FLEET_LOG"));
    let start_at: u128 = var("FLEET_START_AT").parse().expect("a start time");
    let hang_first = var("FLEET_HANG_FIRST") == "1";
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let value = runtime.block_on(async move {
        let backend = cachette::open(&url).await.expect("open the store");
        let cache: Cache<String> = Cache::builder(backend)
            .prefix(prefix)
            .default_ttl(Duration::from_secs(300))
            .fleet_single_flight(Lease::new(LEASE).max_wait(Duration::from_secs(60)))
            .build();
        let now = unix_millis();
        if start_at > now {
            tokio::time::sleep(Duration::from_millis((start_at - now) as u64)).await;
        }
        let tasks: Vec<_> = (0..TASKS)
            .map(|_| {
                let (cache, log) = (cache.clone(), log.clone());
                tokio::spawn(async move {
                    cache
                        .get_or_insert_with("missing", move || async move {
                            let loads_before = append_line(
                                Path::new(&log),
                                &format!("load {}", std::process::id()),
                            );
                            if hang_first && loads_before == 0 {
                                // The first loader hangs, to be killed mid-load.
                                tokio::time::sleep(Duration::from_secs(3600)).await;
                            }
                            tokio::time::sleep(Duration::from_millis(300)).await;
                            Ok::<_, std::io::Error>(format!("loaded by {}", std::process::id()))
                        })
                        .await
                        .expect("the value")
                })
            })
            .collect();
        let mut values = Vec::with_capacity(TASKS);
        for task in tasks {
            values.push(task.await.expect("a task of the child"));
        }
        values.dedup();
        assert_eq!(values.len(), 1, "every task of a process gets one value");
        values.pop().expect("a value")
    });
    println!("{value}");
}

fn unix_millis() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_millis()
}

/// Appends `line` to the log under an exclusive open (one `write` of the whole line with
/// `O_APPEND`) and returns how many lines were there before it.
fn append_line(log: &Path, line: &str) -> usize {
    let before = read_lines(log).len();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("open the log");
    file.write_all(format!("{line}\n").as_bytes())
        .expect("write the log");
    before
}

fn read_lines(log: &Path) -> Vec<String> {
    match std::fs::File::open(log) {
        Ok(file) => std::io::BufReader::new(file)
            .lines()
            .map(|line| line.expect("a log line"))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Starts the children for one scenario, all asking at the same instant, two seconds from now
/// (past every child's start and store connection).
fn start_children(url: &str, scratch: &Path, hang_first: bool) -> (Vec<Child>, PathBuf) {
    let tag: String = std::iter::repeat_with(fastrand::alphanumeric)
        .take(10)
        .collect();
    let log = scratch.join(format!("loads-{tag}.log"));
    let start_at = unix_millis() + 2_000;
    let children = (0..CHILDREN)
        .map(|_| {
            Command::new(std::env::current_exe().expect("this test binary"))
                .env(CHILD, "1")
                .env("FLEET_URL", url)
                .env("FLEET_PREFIX", format!("fleet:{tag}:"))
                .env("FLEET_LOG", &log)
                .env("FLEET_START_AT", start_at.to_string())
                .env("FLEET_HANG_FIRST", if hang_first { "1" } else { "0" })
                .stdout(Stdio::piped())
                .spawn()
                .expect("start a child process")
        })
        .collect();
    (children, log)
}

/// Waits for `child` (at most two minutes) and returns what it printed, or `None` if it was
/// killed.
fn value_of(mut child: Child) -> Option<String> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match child.try_wait().expect("wait for a child") {
            Some(status) if status.success() => break,
            Some(status) => {
                assert!(status.code().is_none(), "a child process failed: {status}");
                return None;
            }
            None if Instant::now() > deadline => {
                let _ = child.kill();
                panic!("a child process was still waiting after two minutes");
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    let output = child.wait_with_output().expect("the child's output");
    Some(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

fn eight_processes_load_a_missing_key_once(url: &str, scratch: &Path) {
    let (children, log) = start_children(url, scratch, false);
    let values: Vec<String> = children.into_iter().filter_map(value_of).collect();
    assert_eq!(values.len(), CHILDREN, "every process answers");
    let loads = read_lines(&log);
    assert_eq!(
        loads.len(),
        1,
        "{url}: loads across {CHILDREN} processes of {TASKS} tasks: {loads:?}"
    );
    let loader = loads[0].trim_start_matches("load ");
    assert!(
        values
            .iter()
            .all(|value| *value == format!("loaded by {loader}")),
        "{url}: {values:?}"
    );
}

fn a_killed_holder_costs_one_more_load(url: &str, scratch: &Path) {
    let (mut children, log) = start_children(url, scratch, true);
    // The first loader announces itself in the log, then hangs: kill it there.
    let deadline = Instant::now() + Duration::from_secs(60);
    let holder: u32 = loop {
        if let Some(line) = read_lines(&log).first() {
            break line
                .trim_start_matches("load ")
                .parse()
                .expect("a process id");
        }
        assert!(
            Instant::now() < deadline,
            "{url}: no process started a load"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let position = children
        .iter()
        .position(|child| child.id() == holder)
        .expect("the holder is one of the children");
    let mut killed = children.swap_remove(position);
    killed.kill().expect("SIGKILL the holder");
    let _ = killed.wait();
    let values: Vec<String> = children.into_iter().filter_map(value_of).collect();
    assert_eq!(
        values.len(),
        CHILDREN - 1,
        "every surviving process answers"
    );
    let loads = read_lines(&log);
    assert_eq!(
        loads.len(),
        2,
        "{url}: loads with the first holder killed: {loads:?}"
    );
    let second = loads[1].trim_start_matches("load ");
    assert!(
        values
            .iter()
            .all(|value| *value == format!("loaded by {second}")),
        "{url}: {values:?}"
    );
}
