//! Tests that need a second OS process: two writers on one file, a writer killed mid-batch, and
//! a user who may not write the database.
//!
//! Each test re-runs its own test binary as the child, filtered to the same test and told its
//! role by an environment variable. Children report on stdout with lines holding `@@ ` and the report.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use cache_core::{Backend, Bytes, Condition, Error};
use cache_sqlite::SqliteBackend;

const ROLE: &str = "CACHETTE_SQLITE_TEST_ROLE";
const DATABASE: &str = "CACHETTE_SQLITE_TEST_DATABASE";
const REPORT: &str = "@@ ";
/// A child that says nothing for this long is stuck.
const SILENCE_LIMIT: Duration = Duration::from_secs(120);

/// The database path when this process is the child playing `role`.
fn child_role(role: &str) -> Option<PathBuf> {
    if std::env::var(ROLE).ok()? != role {
        return None;
    }
    std::env::var_os(DATABASE).map(PathBuf::from)
}

fn report(line: impl std::fmt::Display) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{REPORT}{line}").expect("write a report to stdout");
    stdout.flush().expect("flush the report");
}

/// A child process running `test` as `role`, with its reports arriving on a channel.
struct ChildProcess {
    child: Child,
    reports: mpsc::Receiver<String>,
}

impl ChildProcess {
    fn spawn(
        test: &str,
        role: &str,
        database: &Path,
        configure: impl FnOnce(&mut Command),
    ) -> Self {
        let binary = std::env::current_exe().expect("find this test binary");
        Self::spawn_binary(&binary, test, role, database, configure)
    }

    fn spawn_binary(
        binary: &Path,
        test: &str,
        role: &str,
        database: &Path,
        configure: impl FnOnce(&mut Command),
    ) -> Self {
        let mut command = Command::new(binary);
        command
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(ROLE, role)
            .env(DATABASE, database)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        configure(&mut command);
        let mut child = command.spawn().expect("start the child test process");
        let stdout = child.stdout.take().expect("the child's stdout is piped");
        let (sender, reports) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // libtest may have started the line with the test's name.
                if let Some((_, report)) = line.split_once(REPORT)
                    && sender.send(report.to_owned()).is_err()
                {
                    return;
                }
            }
        });
        Self { child, reports }
    }

    /// The next report; `None` once the child has closed its stdout.
    fn next_report(&self) -> Option<String> {
        match self.reports.recv_timeout(SILENCE_LIMIT) {
            Ok(line) => Some(line),
            Err(mpsc::RecvTimeoutError::Disconnected) => None,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("the child process said nothing for {SILENCE_LIMIT:?}")
            }
        }
    }

    fn wait_for(&self, expected: &str) {
        while let Some(line) = self.next_report() {
            if line == expected {
                return;
            }
        }
        panic!("the child process ended before reporting {expected:?}");
    }

    fn finish(mut self) -> Vec<String> {
        let mut reports = Vec::new();
        while let Some(line) = self.next_report() {
            reports.push(line);
        }
        let status = self.child.wait().expect("wait for the child process");
        assert!(status.success(), "the child process failed: {status}");
        reports
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        // A parent that panics must not leave its child running.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("start a Tokio runtime")
}

// ---------------------------------------------------------------------------------------------
// Two processes writing one file.

const SINGLE_WRITES: usize = 400;
const BATCHES: usize = 40;
const BATCH_SIZE: usize = 10;
const RACED_KEYS: usize = 100;

/// Writes this process's share, racing the other process for the `race:` keys; returns the
/// race keys it won.
async fn write_share(store: &SqliteBackend, who: &str) -> Result<Vec<usize>, Error> {
    let mut won = Vec::new();
    for i in 0..SINGLE_WRITES {
        let value = Bytes::from(format!("{who}/{i}"));
        store
            .set(&format!("{who}:single:{i}"), value, None, Condition::Always)
            .await?;
        if i % 4 == 0 {
            let race = i / 4;
            let written = store
                .set(
                    &format!("race:{race}"),
                    Bytes::from(who.to_owned()),
                    None,
                    Condition::IfNotExists,
                )
                .await?;
            if written {
                won.push(race);
            }
        }
    }
    for batch in 0..BATCHES {
        let entries = (0..BATCH_SIZE)
            .map(|j| {
                (
                    format!("{who}:batch:{batch}:{j}"),
                    Bytes::from(format!("{who}/{batch}/{j}")),
                )
            })
            .collect();
        store.set_many(entries, None).await?;
    }
    Ok(won)
}

async fn expect_share(store: &SqliteBackend, who: &str) {
    let keys: Vec<String> = (0..SINGLE_WRITES)
        .map(|i| format!("{who}:single:{i}"))
        .collect();
    let values = store.get_many(&keys).await.expect("read the singles");
    for (i, value) in values.into_iter().enumerate() {
        assert_eq!(
            value,
            Some(Bytes::from(format!("{who}/{i}"))),
            "{who} single {i}"
        );
    }
    for batch in 0..BATCHES {
        let keys: Vec<String> = (0..BATCH_SIZE)
            .map(|j| format!("{who}:batch:{batch}:{j}"))
            .collect();
        let values = store.get_many(&keys).await.expect("read a batch");
        for (j, value) in values.into_iter().enumerate() {
            let expected = Bytes::from(format!("{who}/{batch}/{j}"));
            assert_eq!(value, Some(expected), "{who} batch {batch} entry {j}");
        }
    }
}

#[test]
fn two_processes_writing_one_file_lose_nothing() {
    const TEST: &str = "two_processes_writing_one_file_lose_nothing";
    if let Some(path) = child_role("writer") {
        return runtime().block_on(async {
            let store = SqliteBackend::file(path).open().await.unwrap();
            report("ready");
            let won = write_share(&store, "child").await.unwrap();
            for race in won {
                report(format!("won {race}"));
            }
            store.close().await.unwrap();
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    runtime().block_on(async {
        let store = SqliteBackend::file(&path).open().await.unwrap();
        let child = ChildProcess::spawn(TEST, "writer", &path, |_| {});
        child.wait_for("ready");
        let parent_won = write_share(&store, "parent").await.unwrap();
        let child_won: Vec<usize> = child
            .finish()
            .iter()
            .filter_map(|line| line.strip_prefix("won ")?.parse().ok())
            .collect();

        expect_share(&store, "parent").await;
        expect_share(&store, "child").await;
        let parent_won: HashSet<usize> = parent_won.into_iter().collect();
        let child_won: HashSet<usize> = child_won.into_iter().collect();
        eprintln!(
            "the parent won {} and the child {} of the {RACED_KEYS} raced keys",
            parent_won.len(),
            child_won.len()
        );
        for race in 0..RACED_KEYS {
            let winner = match (parent_won.contains(&race), child_won.contains(&race)) {
                (true, false) => "parent",
                (false, true) => "child",
                (both, _) => panic!("race:{race} was won by both or neither (both: {both})"),
            };
            assert_eq!(
                store.get(&format!("race:{race}")).await.unwrap(),
                Some(Bytes::from(winner)),
                "race:{race}"
            );
        }
    });
}

// ---------------------------------------------------------------------------------------------
// A writer killed in the middle of a big batch.

const CRASH_BATCH: usize = 30_000;

fn crash_entries(round: usize, batch: usize) -> Vec<(String, Bytes)> {
    (0..CRASH_BATCH)
        .map(|i| {
            let value = format!("{round}/{batch}/{i}/").repeat(20);
            (format!("r{round}:b{batch}:{i:05}"), Bytes::from(value))
        })
        .collect()
}

#[test]
fn a_process_killed_during_set_many_leaves_the_batch_whole_or_absent() {
    const TEST: &str = "a_process_killed_during_set_many_leaves_the_batch_whole_or_absent";
    if let Some(path) = child_role("crasher") {
        let round: usize = std::env::var("CACHETTE_SQLITE_TEST_ROUND")
            .unwrap()
            .parse()
            .unwrap();
        return runtime().block_on(async {
            let store = SqliteBackend::file(path).open().await.unwrap();
            for batch in 0.. {
                let entries = crash_entries(round, batch);
                report(format!("begin {batch}"));
                store.set_many(entries, None).await.unwrap();
                report(format!("end {batch}"));
            }
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    // Kill at a few different moments after the third batch began.
    for (round, delay_ms) in [(0_usize, 2_u64), (1, 30), (2, 120)] {
        let mut child = ChildProcess::spawn(TEST, "crasher", &path, |command| {
            command.env("CACHETTE_SQLITE_TEST_ROUND", round.to_string());
        });
        child.wait_for("begin 2");
        std::thread::sleep(Duration::from_millis(delay_ms));
        // Child::kill sends SIGKILL: no destructor, no rollback, no checkpoint runs.
        child.child.kill().unwrap();
        child.child.wait().unwrap();

        let raw = rusqlite::Connection::open(&path).unwrap();
        let check: String = raw
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .unwrap();
        assert_eq!(check, "ok", "round {round}");
        drop(raw);

        runtime().block_on(async {
            let store = Arc::new(SqliteBackend::file(&path).open().await.unwrap());
            for batch in 0..4 {
                let entries = crash_entries(round, batch);
                let keys: Vec<String> = entries.iter().map(|(key, _)| key.clone()).collect();
                let values = store.get_many(&keys).await.unwrap();
                let present = values.iter().filter(|value| value.is_some()).count();
                assert!(
                    present == 0 || present == CRASH_BATCH,
                    "round {round}: batch {batch} is partly there ({present} of {CRASH_BATCH})"
                );
                if batch < 2 {
                    assert_eq!(
                        present, CRASH_BATCH,
                        "round {round}: batch {batch} was committed"
                    );
                }
                if present == CRASH_BATCH {
                    for ((_, expected), value) in entries.into_iter().zip(values) {
                        assert_eq!(value, Some(expected));
                    }
                }
                if batch == 2 {
                    eprintln!(
                        "round {round}: killed {delay_ms} ms into batch 2, which is {}",
                        if present == 0 { "absent" } else { "complete" }
                    );
                }
            }
            // The file takes writes again.
            store
                .set(
                    "after-crash",
                    Bytes::from_static(b"ok"),
                    None,
                    Condition::Always,
                )
                .await
                .unwrap();
            store.close().await.unwrap();
        });
    }
}

// ---------------------------------------------------------------------------------------------
// A user who may read but not write the database and its directory.

/// What any user without write permission sees: clear errors at open, never a panic.
async fn expect_read_only_errors(dir: &Path, existing: &Path) {
    let err = SqliteBackend::file(existing)
        .open()
        .await
        .expect_err("opening a read-only database must fail");
    assert!(matches!(err, Error::Backend { .. }), "{err}");
    assert!(
        !err.is_transient(),
        "a read-only file stays read-only: {err}"
    );
    let message = err.to_string();
    assert!(message.contains("read-only"), "{message}");
    assert!(
        message.contains(&existing.display().to_string()),
        "{message}"
    );

    let fresh = dir.join("fresh.db");
    let err = SqliteBackend::file(&fresh)
        .open()
        .await
        .expect_err("creating a database in a read-only directory must fail");
    assert!(matches!(err, Error::Backend { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("may create and write files in it"),
        "{message}"
    );
}

/// Unix's unprivileged `nobody`.
const NOBODY: u32 = 65534;

#[test]
fn a_database_the_process_may_not_write_is_a_clear_error() {
    const TEST: &str = "a_database_the_process_may_not_write_is_a_clear_error";
    if let Some(existing) = child_role("reader") {
        let dir = existing.parent().unwrap().to_owned();
        return runtime().block_on(async {
            expect_read_only_errors(&dir, &existing).await;
            report("checked");
        });
    }
    let dir = tempfile::tempdir().unwrap();
    let existing = dir.path().join("cache.db");
    runtime().block_on(async {
        let store = SqliteBackend::file(&existing).open().await.unwrap();
        store
            .set("k", Bytes::from_static(b"v"), None, Condition::Always)
            .await
            .unwrap();
        store.close().await.unwrap();
    });
    let set_mode = |path: &Path, mode| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    let running_as_root = std::fs::metadata(dir.path()).unwrap().uid() == 0;
    if running_as_root {
        // Permissions do not bind root, so the check runs as `nobody`, for whom the root-owned
        // directory and file below are readable and not writable.
        set_mode(dir.path(), 0o755);
        set_mode(&existing, 0o644);
        // The build directory may be private to root; a copy of this binary beside the
        // database is reachable by `nobody` wherever the build lives.
        let binary = dir.path().join("read-only-check");
        std::fs::copy(std::env::current_exe().unwrap(), &binary).unwrap();
        set_mode(&binary, 0o755);
        let child = ChildProcess::spawn_binary(&binary, TEST, "reader", &existing, |command| {
            command.uid(NOBODY).gid(NOBODY);
        });
        assert_eq!(child.finish(), ["checked"]);
    } else {
        set_mode(dir.path(), 0o555);
        set_mode(&existing, 0o444);
        runtime().block_on(expect_read_only_errors(dir.path(), &existing));
        set_mode(dir.path(), 0o755);
    }
}
