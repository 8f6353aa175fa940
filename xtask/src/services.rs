//! `cargo xtask services up|down|status`, and finding the servers a run needs: from the
//! environment, from `services up`, or started for the run.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::process;
use crate::servers::{self, Kind, Lifetime, Record, Server};

/// Where `services up` remembers its servers. It sits in the checkout's `target/` whatever
/// `CARGO_TARGET_DIR` says, so every build directory finds the same servers.
pub fn state_path() -> PathBuf {
    crate::project_root()
        .join("target")
        .join("xtask")
        .join("services.json")
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    servers: Vec<Record>,
}

fn load() -> Result<Option<State>> {
    let path = state_path();
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .with_context(|| format!("reading {}", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(error).with_context(|| format!("reading {}", path.display())),
    }
}

fn save(state: &State) -> Result<()> {
    let path = state_path();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(state)?;
    // Written aside and renamed, so a reader never sees half a file.
    let partial = path.with_extension("json.partial");
    std::fs::write(&partial, text).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, &path).with_context(|| format!("writing {}", path.display()))
}

fn remove_state() -> Result<()> {
    match std::fs::remove_file(state_path()) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(error).with_context(|| format!("removing {}", state_path().display()))
        }
        _ => Ok(()),
    }
}

fn export_line(kind: Kind, url: &str) -> String {
    format!("export {}={url}", kind.env_var())
}

/// `services up`: starts every server unless all are already up, saves the state and prints
/// `export` lines on stdout (progress goes to stderr), so `eval "$(cargo xtask services up)"`
/// works.
pub fn up() -> Result<()> {
    if let Some(state) = load()? {
        let dead: Vec<String> = state
            .servers
            .iter()
            .filter_map(|record| {
                let error = record.check().err()?;
                Some(format!("{}: {error:#}", record.kind.name()))
            })
            .collect();
        let complete = Kind::ALL
            .iter()
            .all(|kind| state.servers.iter().any(|record| record.kind == *kind));
        if dead.is_empty() && complete {
            say!("xtask: services are already running");
            print_exports(&state.servers);
            return Ok(());
        }
        if dead.is_empty() {
            say!("xtask: replacing an incomplete set of services");
        } else {
            say!(
                "xtask: replacing services that are not all answering ({})",
                dead.join("; ")
            );
        }
        stop_records(&state.servers)?;
        remove_state()?;
    }
    servers::check_installed(&Kind::ALL)?;
    let mut started: Vec<Server> = Vec::new();
    for kind in Kind::ALL {
        say!("xtask: starting {}", kind.name());
        // On failure, dropping `started` stops what already runs.
        started.push(kind.start(Lifetime::Kept)?);
    }
    let records: Vec<Record> = started.into_iter().map(Server::into_record).collect();
    let state = State { servers: records };
    if let Err(error) = save(&state) {
        let _ = stop_records(&state.servers);
        return Err(error);
    }
    say!(
        "xtask: services are up (state in {}); `cargo xtask test` uses them. Stop them with \
         `cargo xtask services down`. To use them from your shell:\n  \
         eval \"$(cargo xtask services up)\"",
        state_path().display()
    );
    print_exports(&state.servers);
    Ok(())
}

fn print_exports(records: &[Record]) {
    let mut stdout = std::io::stdout().lock();
    for record in records {
        let _ = writeln!(stdout, "{}", export_line(record.kind, &record.url));
    }
}

fn stop_records(records: &[Record]) -> Result<()> {
    let failures: Vec<String> = records
        .iter()
        .filter_map(|record| record.stop().err().map(|error| format!("{error:#}")))
        .collect();
    if failures.is_empty() {
        Ok(())
    } else {
        bail!("{}", failures.join("; "))
    }
}

/// `services down`: stops the servers and removes their directories and the state file.
pub fn down() -> Result<()> {
    let Some(state) = load()? else {
        say!("xtask: no services are running");
        return Ok(());
    };
    for record in &state.servers {
        say!("xtask: stopping {}", record.kind.name());
    }
    let result = stop_records(&state.servers);
    remove_state()?;
    result?;
    say!("xtask: services are down");
    Ok(())
}

/// `services status`: one line per server; fails unless all are up.
pub fn status() -> Result<()> {
    let Some(state) = load()? else {
        bail!("no services are running (start them with `cargo xtask services up`)");
    };
    let mut down = Vec::new();
    let mut out = std::io::stdout().lock();
    for record in &state.servers {
        let pids: Vec<String> = record.pids.iter().map(i32::to_string).collect();
        match record.check() {
            Ok(()) => writeln!(
                out,
                "{:<14} up    {}  (pid {})",
                record.kind.name(),
                record.url,
                pids.join(",")
            )?,
            Err(error) => {
                println!(
                    "{:<14} DOWN  {}  ({error:#})",
                    record.kind.name(),
                    record.url
                );
                down.push(record.kind.name());
            }
        }
    }
    if !down.is_empty() {
        bail!(
            "not answering: {} (restart with `cargo xtask services down && cargo xtask services \
             up`)",
            down.join(", ")
        );
    }
    Ok(())
}

/// Where a run's server came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The variable was already set.
    Environment,
    /// A server from `cargo xtask services up`.
    Services,
    /// Started for this run; stopped when it ends.
    Started,
}

/// The servers one run uses. Dropping it stops those started for the run.
#[derive(Debug)]
pub struct Provided {
    urls: Vec<(Kind, String, Origin)>,
    started: Vec<Server>,
}

impl Provided {
    /// `(variable, URL)` for every server, to export to the commands of the run.
    pub fn env(&self) -> impl Iterator<Item = (&'static str, &str)> {
        self.urls
            .iter()
            .map(|(kind, url, _)| (kind.env_var(), url.as_str()))
    }

    /// Stops the servers started for the run.
    pub fn stop(mut self) -> Result<()> {
        let failures: Vec<String> = self
            .started
            .iter_mut()
            .filter_map(|server| server.stop().err().map(|error| format!("{error:#}")))
            .collect();
        if failures.is_empty() {
            Ok(())
        } else {
            bail!("{}", failures.join("; "))
        }
    }

    /// Whether the run started any server of its own.
    pub fn started_any(&self) -> bool {
        !self.started.is_empty()
    }
}

/// The variable's value, when set to something.
fn from_env(kind: Kind) -> Option<String> {
    std::env::var(kind.env_var())
        .ok()
        .filter(|url| !url.trim().is_empty())
}

/// Fails early, before a long run, when servers will have to be started and a program they
/// need is missing.
pub fn preflight(kinds: &[Kind]) -> Result<()> {
    let reusable = load().ok().flatten().unwrap_or_default();
    let to_start: Vec<Kind> = kinds
        .iter()
        .copied()
        .filter(|&kind| {
            from_env(kind).is_none()
                && !reusable
                    .servers
                    .iter()
                    .any(|record| record.kind == kind && record.check().is_ok())
        })
        .collect();
    servers::check_installed(&to_start)
}

/// Finds or starts each server: the environment variable when set, else a live server from
/// `services up`, else a throwaway one.
pub fn provide(kinds: &[Kind]) -> Result<Provided> {
    let state = match load() {
        Ok(state) => state.unwrap_or_default(),
        Err(error) => {
            say!("xtask: ignoring the services state: {error:#}");
            State::default()
        }
    };
    let mut provided = Provided {
        urls: Vec::new(),
        started: Vec::new(),
    };
    for &kind in kinds {
        process::check_interrupted()?;
        if let Some(url) = from_env(kind) {
            provided.urls.push((kind, url, Origin::Environment));
            continue;
        }
        let record = state.servers.iter().find(|record| record.kind == kind);
        match record.map(|record| (record, record.check())) {
            Some((record, Ok(()))) => {
                provided
                    .urls
                    .push((kind, record.url.clone(), Origin::Services));
                continue;
            }
            Some((_, Err(error))) => say!(
                "xtask: the {} server of `cargo xtask services up` is not answering ({error:#}); \
                 starting one for this run",
                kind.name()
            ),
            None => {}
        }
        servers::check_installed(&[kind])?;
        // On failure, dropping `provided` stops what this run already started.
        let server = kind.start(Lifetime::Throwaway)?;
        provided
            .urls
            .push((kind, server.url().to_owned(), Origin::Started));
        provided.started.push(server);
    }
    for (kind, url, origin) in &provided.urls {
        let origin = match origin {
            Origin::Environment => "from the environment",
            Origin::Services => "from `cargo xtask services up`",
            Origin::Started => "started for this run",
        };
        say!("    {}={}  ({origin})", kind.env_var(), redact(url));
    }
    Ok(provided)
}

/// The URL with its passwords hidden, for messages.
pub use cachette::raw::redact_url as redact;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_json() {
        let state = State {
            servers: vec![Record {
                kind: Kind::RedisCluster,
                url: "redis+cluster://127.0.0.1:1,127.0.0.1:2,127.0.0.1:3".into(),
                pids: vec![10, 11, 12],
                ports: vec![1, 2, 3],
                dir: PathBuf::from("/tmp/cachette-redis-cluster-1-0"),
            }],
        };
        let text = serde_json::to_string(&state).unwrap();
        assert!(text.contains(r#""kind":"redis-cluster""#), "{text}");
        let back: State = serde_json::from_str(&text).unwrap();
        assert_eq!(back.servers[0].pids, [10, 11, 12]);
        assert_eq!(back.servers[0].kind, Kind::RedisCluster);
    }
}
