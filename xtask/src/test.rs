//! `cargo xtask test`: the one command that passes all tests, the same for developers and CI.
//!
//! Formatting, lints, docs and the quickstart and observe examples run first; then the servers are found or
//! started, every crate's tests run against them with every feature, the facade's tests run
//! again with only the memory store compiled in, the soak runs its short version and the
//! benchmark makes a quick smoke run. A failing step does not stop the later
//! ones, so one run shows every problem; the run fails if any step failed.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use crate::process;
use crate::servers::Kind;
use crate::services::{self, Provided};

/// The steps in order, for the `[n/N]` progress count.
const STEPS: [&str; 16] = [
    "fmt",
    "clippy",
    "clippy (no TLS)",
    "doc",
    "quickstart",
    "observe example",
    "atproto example",
    "pomdapi example",
    "aiohttp example",
    "aries example",
    "cachetory example",
    "servers",
    "test",
    "test (memory only)",
    "soak (short)",
    "bench",
];

/// Runs every step and prints a summary; fails if any step failed or a signal arrived.
pub fn run() -> Result<()> {
    // Missing programs would only surface after minutes of linting; say so at once.
    services::preflight(&Kind::ALL)?;

    let mut run = Run::default();
    run.cargo("fmt", &["fmt", "--all", "--", "--check"], &[]);
    run.cargo(
        "clippy",
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--all-features",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    );
    // `--all-features` compiles the Redis store with TLS; its plain build has code of its own.
    run.cargo(
        "clippy (no TLS)",
        &[
            "clippy",
            "--package",
            "cache-redis",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    );
    run.cargo(
        "doc",
        &["doc", "--workspace", "--no-deps", "--all-features"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    );
    // The README's first command, exactly as a newcomer types it.
    run.cargo("quickstart", &["run", "--example", "quickstart"], &[]);
    // Spans and Prometheus counters, as the README's observability section shows them.
    run.cargo(
        "observe example",
        &[
            "run",
            "--example",
            "observe",
            "--features",
            "tracing,metrics",
        ],
        &[("RUST_LOG", "cachette=debug")],
    );
    // Each seed system's API rebuilt on cachette; each asserts what it shows.
    run.cargo(
        "atproto example",
        &[
            "run",
            "--example",
            "atproto_did_cache",
            "--features",
            "blocking",
        ],
        &[],
    );
    run.cargo(
        "pomdapi example",
        &[
            "run",
            "--example",
            "pomdapi_cache",
            "--features",
            "blocking",
        ],
        &[],
    );
    run.cargo(
        "aiohttp example",
        &[
            "run",
            "--example",
            "aiohttp_client_cache",
            "--features",
            "sign,blocking",
        ],
        &[],
    );
    run.cargo(
        "aries example",
        &[
            "run",
            "--example",
            "aries_cache_lock",
            "--features",
            "blocking",
        ],
        &[],
    );
    run.cargo(
        "cachetory example",
        &[
            "run",
            "--example",
            "cachetory",
            "--features",
            "blocking,compress,msgpack",
        ],
        &[],
    );
    let servers = run.step(
        "servers",
        "find or start Redis, Redis Cluster and PostgreSQL".into(),
        || services::provide(&Kind::ALL),
    );
    match servers {
        Some(servers) => {
            let env: Vec<(&str, &str)> = servers.env().collect();
            // Keep going after the first failing test binary so the summary lists them all.
            run.cargo(
                "test",
                &["test", "--workspace", "--all-features", "--no-fail-fast"],
                &env,
            );
            // With the other stores' features off, their URLs must say which feature to turn on.
            run.cargo(
                "test (memory only)",
                &[
                    "test",
                    "--package",
                    "cachette",
                    "--no-default-features",
                    "--features",
                    "memory",
                ],
                &[],
            );
            // Verified writes while throwaway servers are killed: the soak's short version.
            run.step("soak (short)", "cargo xtask soak --quick".into(), || {
                // A throwaway server that will not come back panics in the harness: a
                // failed step, not a crashed run that leaves servers behind.
                std::panic::catch_unwind(|| crate::soak::run(&["--quick"]))
                    .unwrap_or_else(|_| bail!("the soak's harness panicked"))
            });
            // A smoke run of every benchmark path against the same servers; it times
            // nothing that could fail the run, but a broken contender fails it.
            let mut bench = crate::bench::command(&["--quick"]);
            bench.envs(env.iter().copied());
            run.command("bench", &mut bench);
            stop_servers(&mut run, servers);
        }
        None if process::interrupted() => run.skip("test", "interrupted"),
        None => run.skip("test", "no servers to test against"),
    }
    run.finish()
}

fn stop_servers(run: &mut Run, servers: Provided) {
    if !servers.started_any() {
        return;
    }
    say!("==> stopping the servers started for this run");
    let started = Instant::now();
    if let Err(error) = servers.stop() {
        say!("    FAILED: {error:#}");
        run.results.push(StepResult {
            name: "stop servers",
            command: "stop the servers started for this run".into(),
            outcome: Outcome::Failed(format!("{error:#}")),
            elapsed: started.elapsed(),
        });
    }
}

#[derive(Debug)]
enum Outcome {
    Passed,
    Failed(String),
    NotRun(String),
}

#[derive(Debug)]
struct StepResult {
    name: &'static str,
    command: String,
    outcome: Outcome,
    elapsed: Duration,
}

#[derive(Debug, Default)]
struct Run {
    results: Vec<StepResult>,
}

impl Run {
    /// Runs `cargo ARGS` in the project root with `env` added.
    fn cargo(&mut self, name: &'static str, args: &[&str], env: &[(&str, &str)]) {
        let mut command = Command::new(cargo());
        command
            .current_dir(crate::project_root())
            .args(args)
            .envs(env.iter().copied());
        self.command(name, &mut command);
    }

    /// Runs a prepared cargo command as step `name`.
    fn command(&mut self, name: &'static str, command: &mut Command) {
        let shown_env: String = command
            .get_envs()
            .filter_map(|(key, value)| Some((key.to_str()?, value?.to_str()?)))
            .filter(|(key, _)| !key.starts_with("CACHETTE_"))
            .map(|(key, value)| format!("{key}={value:?} "))
            .collect();
        let mut shown = process::describe(command);
        // Show `cargo`, not the toolchain path cargo gave us.
        if let Some(rest) = shown.split_once(' ').map(|(_, rest)| rest.to_owned()) {
            shown = format!("cargo {rest}");
        }
        self.step(name, format!("{shown_env}{shown}"), || {
            let status = process::run_foreground(command)?;
            if status.success() {
                Ok(())
            } else {
                bail!("{status}")
            }
        });
    }

    /// Runs one step with a progress line before and a result line after.
    fn step<T>(
        &mut self,
        name: &'static str,
        command: String,
        body: impl FnOnce() -> Result<T>,
    ) -> Option<T> {
        if process::interrupted() {
            self.skip(name, "interrupted");
            return None;
        }
        let number = STEPS
            .iter()
            .position(|step| *step == name)
            .map_or(0, |i| i + 1);
        say!("==> [{number}/{}] {command}", STEPS.len());
        let started = Instant::now();
        let result = body();
        let elapsed = started.elapsed();
        let (outcome, value) = match result {
            Ok(value) => {
                say!("    {name}: ok ({:.1} s)", elapsed.as_secs_f64());
                (Outcome::Passed, Some(value))
            }
            Err(error) => {
                say!(
                    "    {name}: FAILED ({:.1} s): {error:#}",
                    elapsed.as_secs_f64()
                );
                (Outcome::Failed(format!("{error:#}")), None)
            }
        };
        self.results.push(StepResult {
            name,
            command,
            outcome,
            elapsed,
        });
        value
    }

    fn skip(&mut self, name: &'static str, why: &str) {
        self.results.push(StepResult {
            name,
            command: String::new(),
            outcome: Outcome::NotRun(why.into()),
            elapsed: Duration::ZERO,
        });
    }

    /// Prints the summary and fails unless every step passed.
    fn finish(self) -> Result<()> {
        say!("\n==> summary of `cargo xtask test`");
        for result in &self.results {
            let (verdict, detail) = match &result.outcome {
                Outcome::Passed => ("ok", String::new()),
                Outcome::Failed(why) => ("FAILED", first_line(why)),
                Outcome::NotRun(why) => ("NOT RUN", why.clone()),
            };
            say!(
                "    {verdict:<8} {:<18} {:>7.1} s  {}{}",
                result.name,
                result.elapsed.as_secs_f64(),
                result.command,
                if detail.is_empty() {
                    String::new()
                } else {
                    format!("  -- {detail}")
                }
            );
        }
        let bad: Vec<&str> = self
            .results
            .iter()
            .filter(|result| !matches!(result.outcome, Outcome::Passed))
            .map(|result| result.name)
            .collect();
        if process::interrupted() {
            bail!("interrupted");
        }
        if !bad.is_empty() {
            bail!("`cargo xtask test` failed: {}", bad.join(", "));
        }
        say!("    every step passed");
        Ok(())
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_owned()
}

/// The cargo that runs xtask, so the same toolchain does every step.
pub fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}
