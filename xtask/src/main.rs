//! `cargo xtask`: the project's developer commands, in Rust so that CI runs exactly what a
//! developer runs (`.ci/run` installs the system packages, then calls `cargo xtask test`).
//!
//! One module per subcommand:
//! - [`mod@test`]: `cargo xtask test`, fmt + clippy + docs + every test against real servers;
//! - [`services`]: `cargo xtask services up|down|status`, servers kept between runs;
//! - [`conformance`]: `cargo xtask conformance URL`, the suite against any store;
//! - [`mod@bench`]: `cargo xtask bench [--quick]`, the facade against raw drivers and peers;
//! - [`soak`]: `cargo xtask soak [--quick]`, verified writes while servers are killed.
//!
//! [`servers`] starts the throwaway servers and [`process`] runs commands and handles Ctrl-C.

/// Prints a line to stderr like `eprintln!`, but never panics: when whoever reads the output
/// goes away, the servers must still be stopped.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod bench;
mod conformance;
mod process;
mod servers;
mod services;
mod soak;
mod test;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, bail};

const HELP: &str = "\
cargo xtask: the developer commands of cachette

USAGE:
    cargo xtask test
        The one command that passes all tests: cargo fmt --check, clippy -D warnings,
        rustdoc -D warnings, then `cargo test --workspace --all-features` with
        CACHETTE_REDIS_URL, CACHETTE_REDIS_CLUSTER_URL and CACHETTE_POSTGRES_URL set,
        then `soak --quick` and a quick benchmark run.
        A variable already set is used as is; otherwise servers from `services up` are
        reused when alive; otherwise throwaway servers are started on free loopback ports
        and stopped afterwards (also on failure and Ctrl-C).

    cargo xtask services up|down|status
        up:     start standalone Redis, a 3-primary Redis Cluster and PostgreSQL, keep them
                running and print `export` lines (eval \"$(cargo xtask services up)\")
        down:   stop them and remove their directories
        status: say whether each answers; fails unless all do

    cargo xtask conformance URL [--parallel N] [--exclusive]
        Run the conformance suite against the store URL names (memory://, sqlite://...,
        redis://..., redis+cluster://..., postgres://...) and print PASS/FAIL per case.
        N cases run at once (default 16). --exclusive says the store is the run's alone:
        the cases that clear it whole then run too (without it they are listed as SKIP).

    cargo xtask bench [--quick] [--only STORES]
        Every store through Cache<V> next to its raw driver and the peer libraries, in one
        release-mode run against Redis and PostgreSQL found or started as for `test`.
        Writes target/bench/results.md and target/bench/ratios.png. --quick is a smoke run of
        seconds whose numbers are not to be quoted; it writes under target/bench/quick/ so the
        full results stay in place. --only memory,sqlite,redis,postgres.

    cargo xtask soak [--quick] [--only STORES] [--tasks N] [--seconds S] [--kill-every S]
        Verified writes from N tasks (default 32) for S seconds per store (default 60) while
        a throwaway server is SIGKILLed every few seconds (default 5) and restarted: Redis and
        each Cluster node with an append-only file synced on every write, PostgreSQL with a
        logged table, and a SQLite file shared by one writer process per task. Prints a table
        of writes acknowledged, acknowledged writes lost, wrong answers, errors, calls past the
        store's timeouts, the slowest call, recovery time and panics, and fails on any loss,
        wrong answer, late call or panic. --quick: 8 tasks, 7 s per store (as `test` runs it).
        --only redis,cluster,postgres,sqlite.

    cargo xtask help
        This text.

Servers need redis-server (Debian package redis-server), redis-cli (redis-tools) and
PostgreSQL's initdb/postgres (postgresql). They never use the shared ports 6379/5432.
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = process::install_signal_handler().and_then(|()| dispatch(&args));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            say!("xtask: error: {error:#}");
            if process::interrupted() {
                ExitCode::from(process::INTERRUPTED_EXIT_CODE)
            } else if error.is::<UsageError>() {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// A command line xtask does not understand.
#[derive(Debug)]
struct UsageError(String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; see `cargo xtask help`", self.0)
    }
}

impl std::error::Error for UsageError {}

fn usage(message: impl Into<String>) -> anyhow::Error {
    UsageError(message.into()).into()
}

fn dispatch(args: &[&str]) -> Result<()> {
    match args {
        [] | ["help" | "-h" | "--help"] => {
            use std::io::Write as _;
            let _ = std::io::stdout().write_all(HELP.as_bytes());
            Ok(())
        }
        ["test"] => test::run(),
        ["bench", rest @ ..] => bench::run(rest),
        ["soak", rest @ ..] => soak::run(rest),
        ["services", "up"] => services::up(),
        ["services", "down"] => services::down(),
        ["services", "status"] => services::status(),
        ["services", ..] => Err(usage("`services` takes one of: up, down, status")),
        ["conformance", rest @ ..] => {
            let (url, parallelism, exclusive) = parse_conformance(rest)?;
            conformance::run(url, parallelism, exclusive)
        }
        [other, ..] => Err(usage(format!("unknown command {other:?}"))),
    }
}

/// `URL [--parallel N] [--exclusive]`, in any order.
fn parse_conformance<'a>(args: &[&'a str]) -> Result<(&'a str, usize, bool)> {
    let mut url = None;
    let mut exclusive = false;
    let mut parallelism = conformance::DEFAULT_PARALLELISM;
    let mut args = args.iter();
    while let Some(&arg) = args.next() {
        match arg {
            "--parallel" | "-j" => {
                let value = args
                    .next()
                    .ok_or_else(|| usage(format!("{arg} needs a number")))?;
                parallelism = match value.parse() {
                    Ok(n) if n > 0 => n,
                    _ => bail!(usage(format!(
                        "{arg} needs a positive number, not {value:?}"
                    ))),
                };
            }
            "--exclusive" => exclusive = true,
            flag if flag.starts_with('-') => bail!(usage(format!("unknown option {flag:?}"))),
            _ if url.is_some() => bail!(usage("`conformance` takes one URL")),
            _ => url = Some(arg),
        }
    }
    let url = url.ok_or_else(|| usage("`conformance` needs a store URL, e.g. memory://"))?;
    Ok((url, parallelism, exclusive))
}

/// The workspace root: xtask lives one level below it.
fn project_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_conformance_arguments() {
        assert_eq!(
            parse_conformance(&["memory://"]).unwrap(),
            ("memory://", conformance::DEFAULT_PARALLELISM, false)
        );
        assert_eq!(
            parse_conformance(&["--parallel", "4", "redis://127.0.0.1:7000", "--exclusive"])
                .unwrap(),
            ("redis://127.0.0.1:7000", 4, true)
        );
        for bad in [
            &[][..],
            &["memory://", "-j"],
            &["memory://", "-j", "0"],
            &["memory://", "--fast"],
            &["memory://", "sqlite::memory:"],
        ] {
            let error = parse_conformance(bad).unwrap_err();
            assert!(error.is::<UsageError>(), "{bad:?}: {error}");
        }
    }

    #[test]
    fn unknown_commands_are_usage_errors() {
        for bad in [&["tset"][..], &["services"], &["services", "restart"]] {
            assert!(dispatch(bad).unwrap_err().is::<UsageError>(), "{bad:?}");
        }
    }

    #[test]
    fn the_project_root_holds_the_workspace() {
        assert!(project_root().join("Cargo.toml").is_file());
        assert!(project_root().join("xtask").is_dir());
    }
}
