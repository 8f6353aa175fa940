//! `cargo xtask bench [--quick] [--only STORES]`: every store through `Cache<V>` next to its raw
//! driver and the peers, in one release-mode run of the `cachette-bench` binary against the
//! Redis and PostgreSQL that [`services`] finds or starts.

use std::process::Command;

use anyhow::{Result, bail};

use crate::servers::Kind;
use crate::services;
use crate::{process, test};

/// The servers the benchmark measures against.
const KINDS: [Kind; 3] = [Kind::Redis, Kind::RedisCluster, Kind::Postgres];

/// The bench binary's command line, for `cargo xtask test` as well.
pub fn command(args: &[&str]) -> Command {
    let mut command = Command::new(test::cargo());
    command
        .current_dir(crate::project_root())
        .args(["run", "--release", "--package", "cachette-bench", "--"])
        .args(args);
    command
}

/// Runs the benchmark with `args` passed through, then stops any servers it started.
pub fn run(args: &[&str]) -> Result<()> {
    services::preflight(&KINDS)?;
    let servers = services::provide(&KINDS)?;
    let mut bench = command(args);
    bench.envs(servers.env());
    say!("==> {}", process::describe(&bench));
    let status = process::run_foreground(&mut bench);
    let stopped = if servers.started_any() {
        servers.stop()
    } else {
        Ok(())
    };
    let status = status?;
    stopped?;
    if !status.success() {
        bail!("the benchmark failed: {status}");
    }
    Ok(())
}
