//! Throwaway Redis, Redis Cluster and PostgreSQL servers on free loopback ports, started from the
//! installed binaries in a temp directory of their own, never on the shared 6379/5432.

pub mod postgres;
pub mod redis;

use std::fs::{File, OpenOptions};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use cachette_test_support::ports;
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use crate::process;

/// A server the tests need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// One standalone `redis-server`.
    Redis,
    /// Three `redis-server` primaries joined into a cluster.
    RedisCluster,
    /// One PostgreSQL cluster with a `cachette` database.
    Postgres,
}

impl Kind {
    /// Every server `cargo xtask test` provides.
    pub const ALL: [Kind; 3] = [Kind::Redis, Kind::RedisCluster, Kind::Postgres];

    /// The environment variable through which tests find this server.
    pub fn env_var(self) -> &'static str {
        match self {
            Kind::Redis => "CACHETTE_REDIS_URL",
            Kind::RedisCluster => "CACHETTE_REDIS_CLUSTER_URL",
            Kind::Postgres => "CACHETTE_POSTGRES_URL",
        }
    }

    /// A short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Redis => "redis",
            Kind::RedisCluster => "redis-cluster",
            Kind::Postgres => "postgres",
        }
    }

    /// Starts a server of this kind.
    pub fn start(self, lifetime: Lifetime) -> Result<Server> {
        match self {
            Kind::Redis => redis::start_standalone(lifetime),
            Kind::RedisCluster => redis::start_cluster(lifetime),
            Kind::Postgres => postgres::start(lifetime),
        }
    }

    /// The signal that shuts this server down cleanly and promptly. PostgreSQL's SIGTERM waits
    /// for clients to disconnect; SIGINT is its "fast" shutdown.
    fn stop_signal(self) -> Signal {
        match self {
            Kind::Redis | Kind::RedisCluster => Signal::SIGTERM,
            Kind::Postgres => Signal::SIGINT,
        }
    }

    /// A word every process of this server has in its command line.
    fn process_marker(self) -> &'static str {
        match self {
            Kind::Redis | Kind::RedisCluster => "redis-server",
            Kind::Postgres => "postgres",
        }
    }

    fn missing_programs(self) -> Vec<Missing> {
        match self {
            Kind::Redis | Kind::RedisCluster => redis::missing_programs(),
            Kind::Postgres => postgres::missing_programs(),
        }
    }

    fn check(self, ports: &[u16]) -> Result<()> {
        match (self, ports) {
            (Kind::Redis, [port]) => redis::check_standalone(*port),
            (Kind::RedisCluster, ports) => redis::check_cluster(ports),
            (Kind::Postgres, [port]) => postgres::check(*port),
            (kind, ports) => bail!("a {} server cannot have ports {ports:?}", kind.name()),
        }
    }
}

/// A program a server needs that is not installed, and the Debian package that has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The program, e.g. `redis-cli`.
    pub program: String,
    /// The Debian package to install, e.g. `redis-tools`.
    pub package: &'static str,
}

/// Fails with one message naming every missing program and the packages to install.
pub fn check_installed(kinds: &[Kind]) -> Result<()> {
    let mut missing: Vec<Missing> = Vec::new();
    for kind in kinds {
        for program in kind.missing_programs() {
            if !missing.contains(&program) {
                missing.push(program);
            }
        }
    }
    let vars: Vec<&str> = kinds.iter().map(|kind| kind.env_var()).collect();
    match missing_message(&missing, &vars) {
        None => Ok(()),
        Some(message) => bail!("{message}"),
    }
}

fn missing_message(missing: &[Missing], vars: &[&str]) -> Option<String> {
    if missing.is_empty() {
        return None;
    }
    let programs: Vec<String> = missing
        .iter()
        .map(|m| format!("{} (Debian package `{}`)", m.program, m.package))
        .collect();
    let mut packages: Vec<&str> = Vec::new();
    for m in missing {
        if !packages.contains(&m.package) {
            packages.push(m.package);
        }
    }
    Some(format!(
        "the test servers need programs that are not installed: {}.\n\
         Install them with: apt-get install -y {}\n\
         (or point {} at servers of your own)",
        programs.join(", "),
        packages.join(" "),
        vars.join(", ")
    ))
}

/// Finds a program on `PATH`.
pub fn find_on_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Whether a server dies with xtask or outlives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Stopped when xtask finishes, fails or is interrupted. It stays in xtask's process group,
    /// so a Ctrl-C that reaches the whole group stops it even if xtask cannot.
    Throwaway,
    /// Left running for later runs (`cargo xtask services up`); in its own process group, so a
    /// Ctrl-C in the terminal that started it does not reach it.
    Kept,
}

/// A running server: its processes, ports and directory.
#[derive(Debug)]
pub struct Server {
    kind: Kind,
    url: String,
    ports: Vec<u16>,
    dir: PathBuf,
    processes: Vec<ServerProcess>,
    /// Cleared when the server is handed over to `services`, so dropping it stops nothing.
    owned: bool,
    dir_registration: u64,
}

#[derive(Debug)]
struct ServerProcess {
    pid: i32,
    child: Child,
    registration: u64,
}

impl Server {
    /// A server with no process yet, owning a new directory that goes when it stops.
    fn new(kind: Kind, url: String, ports: Vec<u16>) -> Result<Self> {
        let dir = make_dir(kind)?;
        let dir_registration = process::register_dir(&dir);
        Ok(Self {
            kind,
            url,
            ports,
            dir,
            processes: Vec::new(),
            owned: true,
            dir_registration,
        })
    }

    /// The server's directory.
    fn dir(&self) -> &Path {
        &self.dir
    }

    /// The URL the tests connect with.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops every process and removes the directory. Safe to call twice.
    pub fn stop(&mut self) -> Result<()> {
        if !self.owned {
            return Ok(());
        }
        let signal = self.kind.stop_signal();
        let mut failures = Vec::new();
        // Signal every process first so a cluster winds down together.
        for process in &mut self.processes {
            if matches!(process.child.try_wait(), Ok(None)) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(process.pid), signal);
            }
        }
        for mut process in self.processes.drain(..) {
            if let Err(error) = process::stop(
                process.pid,
                Some(&mut process.child),
                signal,
                Duration::from_secs(30),
            ) {
                failures.push(error.to_string());
            }
            process::unregister(process.registration);
        }
        if self.dir.exists()
            && let Err(error) = std::fs::remove_dir_all(&self.dir)
        {
            failures.push(format!("removing {}: {error}", self.dir.display()));
        }
        process::unregister(self.dir_registration);
        self.owned = false;
        if failures.is_empty() {
            Ok(())
        } else {
            bail!(
                "stopping the {} server: {}",
                self.kind.name(),
                failures.join("; ")
            )
        }
    }

    /// Hands the server over to a record that outlives this process.
    pub fn into_record(mut self) -> Record {
        self.owned = false;
        process::unregister(self.dir_registration);
        let pids = self.processes.iter().map(|p| p.pid).collect();
        for process in self.processes.drain(..) {
            process::unregister(process.registration);
        }
        Record {
            kind: self.kind,
            url: std::mem::take(&mut self.url),
            pids,
            ports: std::mem::take(&mut self.ports),
            dir: std::mem::take(&mut self.dir),
        }
    }

    /// Fails with the end of the log if any process of the server has exited.
    fn ensure_running(&mut self, log: &Path) -> Result<()> {
        for process in &mut self.processes {
            if let Ok(Some(status)) = process.child.try_wait() {
                bail!(
                    "{} (pid {}) exited during start-up ({status}); the end of its log:\n{}",
                    self.kind.name(),
                    process.pid,
                    log_tail(log)
                );
            }
        }
        Ok(())
    }

    /// Polls `ready` until it reports true, failing early when a process dies or a signal
    /// arrives, and with the log's end on timeout.
    fn wait_until(
        &mut self,
        what: &str,
        log: &Path,
        timeout: Duration,
        mut ready: impl FnMut() -> Result<bool>,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.ensure_running(log)?;
            if ready()? {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} was not {what} after {timeout:?}; the end of its log:\n{}",
                    self.kind.name(),
                    log_tail(log)
                );
            }
            process::sleep(Duration::from_millis(50))?;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            say!("xtask: {error:#}");
        }
    }
}

/// What `services.json` remembers about a server started by `cargo xtask services up`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// The server's kind.
    pub kind: Kind,
    /// The URL the tests connect with.
    pub url: String,
    /// Its processes.
    pub pids: Vec<i32>,
    /// Its ports.
    pub ports: Vec<u16>,
    /// Its directory, removed when it stops.
    pub dir: PathBuf,
}

impl Record {
    /// Fails with the reason unless every process runs and the server answers.
    pub fn check(&self) -> Result<()> {
        for &pid in &self.pids {
            if !self.owns(pid) {
                bail!("process {pid} is gone");
            }
        }
        self.kind.check(&self.ports)
    }

    /// Whether `pid` is still a running process of this server rather than a reused pid.
    fn owns(&self, pid: i32) -> bool {
        process::is_running(pid)
            && process::command_line(pid)
                .is_none_or(|line| line.contains(self.kind.process_marker()))
    }

    /// Stops what is left of the server and removes its directory.
    pub fn stop(&self) -> Result<()> {
        let signal = self.kind.stop_signal();
        let mut failures = Vec::new();
        for &pid in &self.pids {
            if self.owns(pid)
                && let Err(error) = process::stop(pid, None, signal, Duration::from_secs(30))
            {
                failures.push(error.to_string());
            }
        }
        if self.dir.exists()
            && let Err(error) = std::fs::remove_dir_all(&self.dir)
        {
            failures.push(format!("removing {}: {error}", self.dir.display()));
        }
        if failures.is_empty() {
            Ok(())
        } else {
            bail!(
                "stopping the {} server: {}",
                self.kind.name(),
                failures.join("; ")
            )
        }
    }
}

/// `count` distinct free loopback ports (see `cachette_test_support::ports`, which the tests'
/// throwaway servers use too).
pub fn free_ports(count: usize) -> Result<Vec<u16>> {
    ports::free_ports(count).context("asking the OS for free loopback ports")
}

/// Like [`free_ports`], keeping only ports for which `accept` holds.
pub fn free_ports_where(count: usize, accept: impl Fn(u16) -> bool) -> Result<Vec<u16>> {
    ports::free_ports_where(count, accept).context("asking the OS for free loopback ports")
}

pub use cachette_test_support::ports::port_is_free;

/// A new empty directory for one server under the system temp dir.
fn make_dir(kind: Kind) -> Result<PathBuf> {
    let base = std::env::temp_dir();
    for attempt in 0..100u32 {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.subsec_nanos())
            .unwrap_or(attempt);
        let dir = base.join(format!(
            "cachette-{}-{}-{nanos:08x}",
            kind.name(),
            std::process::id()
        ));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => {
                return Err(error).with_context(|| format!("creating {}", dir.display()));
            }
        }
    }
    bail!("could not create a temp directory in {}", base.display())
}

/// Starts one server process with its output going to `log`.
fn spawn(server: &mut Server, lifetime: Lifetime, command: &mut Command, log: &Path) -> Result<()> {
    process::check_interrupted()?;
    let log_file = open_log(log)?;
    command
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file);
    if lifetime == Lifetime::Kept {
        command.process_group(0);
    }
    let child = command
        .spawn()
        .with_context(|| format!("starting {}", process::describe(command)))?;
    let pid = process::pid_of(&child);
    let registration = process::register_process(pid, server.kind.stop_signal());
    server.processes.push(ServerProcess {
        pid,
        child,
        registration,
    });
    Ok(())
}

fn open_log(path: &Path) -> Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// The last lines of a log, for error messages.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(25);
    lines[start..]
        .iter()
        .map(|line| format!("    {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether a failed start-up was another process taking one of our ports first.
fn lost_port_race(error: &anyhow::Error) -> bool {
    format!("{error:#}").contains("Address already in use")
}

/// Runs `start` again with fresh ports when a port was taken between choosing and binding it.
fn with_port_retries(kind: Kind, mut start: impl FnMut() -> Result<Server>) -> Result<Server> {
    let mut attempt = 1;
    loop {
        match start() {
            Err(error) if attempt < 3 && lost_port_race(&error) => {
                say!(
                    "xtask: a port of the {} server was taken meanwhile; retrying",
                    kind.name()
                );
                attempt += 1;
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_server_starts_answers_and_leaves_nothing_behind() {
        for kind in Kind::ALL {
            let mut server = kind.start(Lifetime::Throwaway).unwrap();
            let pids: Vec<i32> = server.processes.iter().map(|p| p.pid).collect();
            let ports = server.ports.clone();
            let dir = server.dir.clone();
            kind.check(&ports).unwrap();
            server.stop().unwrap();
            assert!(
                pids.iter().all(|&pid| !process::is_running(pid)),
                "{kind:?}"
            );
            assert!(!dir.exists(), "{kind:?}");
            assert!(kind.check(&ports).is_err(), "{kind:?}");
        }
    }

    #[test]
    fn a_kept_server_outlives_its_handle_until_its_record_stops_it() {
        let server = Kind::Redis.start(Lifetime::Kept).unwrap();
        let record = server.into_record();
        record.check().unwrap();
        record.stop().unwrap();
        assert!(record.check().is_err());
        assert!(!record.dir.exists());
    }

    #[test]
    fn a_server_that_dies_at_start_up_fails_with_its_log() {
        let mut server = Server::new(Kind::Redis, "redis://127.0.0.1:1".into(), vec![1]).unwrap();
        let log = server.dir().join("redis.log");
        spawn(
            &mut server,
            Lifetime::Throwaway,
            Command::new("sh").args(["-c", "echo 'bind: Address already in use'; exit 1"]),
            &log,
        )
        .unwrap();
        let error = server
            .wait_until("ready", &log, Duration::from_secs(10), || Ok(false))
            .unwrap_err();
        let message = format!("{error:#}");
        assert!(message.contains("exited during start-up"), "{message}");
        assert!(
            message.contains("    bind: Address already in use"),
            "{message}"
        );
        assert!(lost_port_race(&error));
    }

    #[test]
    fn the_missing_programs_message_names_each_package_once() {
        let missing = |program: &str, package| Missing {
            program: program.into(),
            package,
        };
        let message = missing_message(
            &[
                missing("redis-server", "redis-server"),
                missing("redis-cli", "redis-tools"),
                missing("initdb", "postgresql"),
                missing("postgres", "postgresql"),
            ],
            &["CACHETTE_REDIS_URL"],
        )
        .unwrap();
        assert!(
            message.contains("apt-get install -y redis-server redis-tools postgresql\n"),
            "{message}"
        );
        assert!(
            message.contains("redis-cli (Debian package `redis-tools`)"),
            "{message}"
        );
        assert_eq!(missing_message(&[], &[]), None);
    }
}
