//! A PostgreSQL server of a test's own, from the installed binaries, in a temp dir, on a free
//! loopback port; stopped when dropped, also when the test panics.
//!
//! PostgreSQL refuses to run as root, so under root (as in CI) `initdb` and `pg_ctl` run as the
//! unprivileged `postgres` system user, which then owns the temp dir.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::ports::free_port;

/// A running (or stopped, between [`ThrowawayPostgres::stop`] and
/// [`ThrowawayPostgres::start_again`]) throwaway server.
pub struct ThrowawayPostgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    as_postgres_user: bool,
}

impl ThrowawayPostgres {
    /// Creates a cluster and starts it. Blocking: call through `spawn_blocking`.
    pub fn start() -> Self {
        let bin = postgres_bin_dir();
        let as_postgres_user = running_as_root();
        let dir = tempfile::Builder::new()
            .prefix("cachette-pg-")
            .tempdir()
            .unwrap_or_else(|error| panic!("cannot make a temp dir: {error}"));
        if as_postgres_user {
            run(Command::new("chown")
                .arg("postgres:postgres")
                .arg(dir.path()));
        }
        let server = Self {
            dir,
            bin,
            port: free_port(),
            as_postgres_user,
        };
        let data = server.data_dir();
        server.run_tool(
            "initdb",
            &[
                "-D",
                path_str(&data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
        );
        server.start_again();
        server
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server the way an operator restarting it would (fast shutdown: sessions are
    /// ended, data is kept). Blocking.
    pub fn stop(&self) {
        let data = self.data_dir();
        self.run_tool(
            "pg_ctl",
            &[
                "-D",
                path_str(&data),
                "-m",
                "fast",
                "-w",
                "-t",
                "60",
                "stop",
            ],
        );
    }

    /// Kills the server as a crash would: SIGKILL to the postmaster, no shutdown at all. Waits
    /// until it and its backends are dead, then removes the lock file they left (a process
    /// nobody reaps stays a zombie whose PID looks alive). The next start runs crash recovery.
    /// Blocking.
    pub fn crash(&self) {
        let pid_file = self.data_dir().join("postmaster.pid");
        let pid = std::fs::read_to_string(&pid_file)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", pid_file.display()));
        let pid = pid.lines().next().unwrap_or_default().trim().to_owned();
        let children = Command::new("pgrep")
            .args(["-P", &pid])
            .output()
            .map(|output| String::from_utf8_lossy(&output.stdout).into_owned())
            .unwrap_or_default();
        run(Command::new("kill").args(["-KILL", &pid]));
        let processes: Vec<String> = std::iter::once(pid)
            .chain(children.split_whitespace().map(str::to_owned))
            .collect();
        let dead = |pid: &String| {
            std::fs::read_to_string(format!("/proc/{pid}/status")).map_or(true, |status| {
                status
                    .lines()
                    .any(|line| line.starts_with("State:") && line.contains('Z'))
            })
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !processes.iter().all(dead) {
            assert!(
                std::time::Instant::now() < deadline,
                "the killed PostgreSQL was still running 30 s later"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let socket = self.dir.path().join(format!(".s.PGSQL.{}", self.port));
        let socket_lock = self.dir.path().join(format!(".s.PGSQL.{}.lock", self.port));
        for stale in [pid_file, socket, socket_lock] {
            // The socket may be gone already; a lock file that stays would stop the restart.
            let _ = std::fs::remove_file(&stale);
        }
    }

    /// Starts the stopped server again on the same port and data. Blocking.
    pub fn start_again(&self) {
        let data = self.data_dir();
        let log = self.dir.path().join("server.log");
        let settings = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            path_str(self.dir.path())
        );
        let started = self.tool(
            "pg_ctl",
            &[
                "-D",
                path_str(&data),
                "-l",
                path_str(&log),
                "-o",
                &settings,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
        if !started.status.success() {
            let log = std::fs::read_to_string(&log).unwrap_or_default();
            panic!(
                "the throwaway PostgreSQL did not start: {}\n{log}",
                String::from_utf8_lossy(&started.stderr)
            );
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn tool(&self, name: &str, args: &[&str]) -> std::process::Output {
        let program = self.bin.join(name);
        let mut command = if self.as_postgres_user {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(program);
            command
        } else {
            Command::new(program)
        };
        command
            .args(args)
            .output()
            .unwrap_or_else(|error| panic!("cannot run {name}: {error}"))
    }

    fn run_tool(&self, name: &str, args: &[&str]) {
        let output = self.tool(name, args);
        assert!(
            output.status.success(),
            "{name} {args:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for ThrowawayPostgres {
    fn drop(&mut self) {
        // Immediate: the data dir is deleted next anyway. Errors are moot (it may be stopped).
        let data = self.data_dir();
        let _ = self.tool(
            "pg_ctl",
            &["-D", path_str(&data), "-m", "immediate", "-w", "stop"],
        );
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str()
        .unwrap_or_else(|| panic!("temp path {path:?} is not UTF-8"))
}

fn running_as_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// The newest `/usr/lib/postgresql/<version>/bin` that has `initdb`.
fn postgres_bin_dir() -> PathBuf {
    let mut candidates: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    candidates.sort();
    match candidates.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "no PostgreSQL server binaries in /usr/lib/postgresql/*/bin: install the \
             postgresql package to run the fault tests"
        ),
    }
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot run {command:?}: {error}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}
