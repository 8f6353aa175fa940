//! A PostgreSQL cluster made by `initdb`, with a `cachette` database.
//!
//! PostgreSQL refuses to run as root, and CI runs as root: then `initdb` and `postgres` run as
//! the `postgres` system user (which the Debian package creates) in a directory that user owns.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use nix::unistd::{Uid, User};

use super::{Kind, Lifetime, Missing, Server, find_on_path, free_ports, spawn};
use crate::process;

/// The Debian package with the server binaries.
const PACKAGE: &str = "postgresql";

/// The programs the server needs from its bin directory.
const PROGRAMS: [&str; 4] = ["initdb", "postgres", "pg_isready", "createdb"];

/// The database the tests use.
const DATABASE: &str = "cachette";

pub(super) fn missing_programs() -> Vec<Missing> {
    let missing = |program: &str| Missing {
        program: program.into(),
        package: PACKAGE,
    };
    match bin_dir() {
        Some(dir) => PROGRAMS
            .iter()
            .filter(|program| !dir.join(program).is_file())
            .map(|program| missing(program))
            .collect(),
        None => PROGRAMS.iter().map(|program| missing(program)).collect(),
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` with a server in it, else what
/// `pg_config --bindir` says, else the directory of `initdb` on `PATH`.
fn bin_dir() -> Option<PathBuf> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    let newest = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = version_key(&entry.file_name().to_string_lossy())?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_server(dir))
        .max_by(|(a, _), (b, _)| a.cmp(b))
        .map(|(_, dir)| dir);
    newest
        .or_else(|| {
            let output = Command::new("pg_config").arg("--bindir").output().ok()?;
            let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
            has_server(&dir).then_some(dir)
        })
        .or_else(|| find_on_path("initdb")?.parent().map(Path::to_path_buf))
}

/// Orders version directory names numerically (`9.6` < `15` < `16`); other names are skipped.
fn version_key(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

fn program(name: &str) -> Result<PathBuf> {
    let dir = bin_dir().ok_or_else(|| {
        anyhow!("PostgreSQL is not installed: install the Debian package `{PACKAGE}`")
    })?;
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        bail!(
            "{} is missing: install the Debian package `{PACKAGE}`",
            path.display()
        )
    }
}

/// The user the server runs as: `None` for the current one, or the `postgres` system user's
/// uid and gid when running as root.
fn server_user() -> Result<Option<(u32, u32)>> {
    if !Uid::effective().is_root() {
        return Ok(None);
    }
    let user = User::from_name("postgres")
        .context("looking up the `postgres` user")?
        .ok_or_else(|| {
            anyhow!(
                "PostgreSQL refuses to run as root and there is no `postgres` user to run it \
                 as: install the Debian package `{PACKAGE}` (it creates the user) or run as a \
                 non-root user"
            )
        })?;
    Ok(Some((user.uid.as_raw(), user.gid.as_raw())))
}

/// A command for a server program, run as `user` when given.
fn server_command(program: &Path, user: Option<(u32, u32)>, dir: &Path) -> Command {
    let mut command = Command::new(program);
    command.current_dir(dir);
    if let Some((uid, gid)) = user {
        // Setting the uid as root also drops root's supplementary groups.
        command.uid(uid).gid(gid);
    }
    command
}

/// Runs `initdb`, starts `postgres -k TMP -p P -h 127.0.0.1` with the default (durable)
/// settings, waits for `pg_isready` and creates the database.
pub fn start(lifetime: Lifetime) -> Result<Server> {
    super::with_port_retries(Kind::Postgres, || {
        let initdb = program("initdb")?;
        let postgres = program("postgres")?;
        let createdb = program("createdb")?;
        let user = server_user()?;
        let [port] = free_ports(1)?[..] else {
            bail!("expected one port");
        };
        let mut server = Server::new(
            Kind::Postgres,
            format!("postgres://postgres@127.0.0.1:{port}/{DATABASE}"),
            vec![port],
        )?;
        let dir = server.dir().to_path_buf();
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid))
                .with_context(|| format!("giving {} to the postgres user", dir.display()))?;
        }
        let data = dir.join("data");
        process::run_checked(
            server_command(&initdb, user, &dir)
                .arg("--pgdata")
                .arg(&data)
                .args([
                    "--username=postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "--no-sync",
                ]),
        )?;
        let log = dir.join("postgres.log");
        spawn(
            &mut server,
            lifetime,
            server_command(&postgres, user, &dir)
                .arg("-D")
                .arg(&data)
                .arg("-k")
                .arg(&dir)
                .args(["-p", &port.to_string(), "-h", "127.0.0.1"])
                // Durability stays as a production server has it, so that `cargo xtask bench`
                // measures what logged and UNLOGGED tables really cost; the tests take no longer
                // for it, since the store's tables are UNLOGGED by default.
                .args([
                    // Test binaries run in parallel, each with its own pools.
                    "-c",
                    "max_connections=200",
                ]),
            &log,
        )?;
        server.wait_until(
            "accepting connections",
            &log,
            Duration::from_secs(60),
            || Ok(check(port).is_ok()),
        )?;
        process::run_checked(
            Command::new(createdb)
                .args(["-h", "127.0.0.1", "-p", &port.to_string()])
                .args(["-U", "postgres", DATABASE]),
        )?;
        Ok(server)
    })
}

/// Fails unless the server on `port` accepts connections.
pub fn check(port: u16) -> Result<()> {
    let output = process::output(
        Command::new(program("pg_isready")?)
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(["-U", "postgres", "-d", "postgres", "-t", "2"]),
    )?;
    if output.status.success() {
        Ok(())
    } else {
        bail!(
            "postgres on port {port}: {}",
            String::from_utf8_lossy(&output.stdout).trim()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_versions_sort_higher() {
        let mut names = vec!["16", "9.6", "15", "extension", "10"];
        names.sort_by_key(|name| version_key(name));
        assert_eq!(names, ["extension", "9.6", "10", "15", "16"]);
        assert_eq!(version_key("extension"), None);
    }
}
