//! `cargo xtask soak`: verified writes from many tasks while the servers under them are killed
//! and restarted, and a report of what survived.
//!
//! Each store runs on a throwaway server of its own, configured to be durable (an append-only
//! file synced on every write for Redis and each Cluster node, a logged table for PostgreSQL, a
//! WAL file for SQLite), so that an acknowledged write that is gone afterwards is a defect, not a
//! cache doing its job. Writer tasks own their keys: each write carries a sequence number that
//! only grows, is read back at once, and every key is read once more at the end. A write whose
//! reply was lost may have landed, so a key may hold a newer value than the last acknowledged
//! one, but never an older one, and never one that was not written.
//!
//! Meanwhile a killer SIGKILLs the server (one Cluster node at a time, a SQLite writer process)
//! and brings it back. The report counts acknowledged writes, acknowledged writes lost, wrong
//! answers, errors, calls that took longer than the store's own timeouts allow, the slowest
//! call, the time from a server's return to the next acknowledged write, and panics.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cache_core::{Backend, Bytes, Condition};
use cachette_test_support::postgres::ThrowawayPostgres;
use cachette_test_support::redis::{ThrowawayCluster, ThrowawayRedis};

use crate::usage;

/// Keys each writer owns.
const KEYS_PER_TASK: u64 = 16;
/// What a call may take beyond the store's own timeouts before it counts as past them.
const SLACK: Duration = Duration::from_millis(500);
/// How long a restarted server gets to take an acknowledged write before the soak gives up.
const RECOVERY_LIMIT: Duration = Duration::from_secs(60);

/// The stores a soak can run, in the order it runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Redis,
    Cluster,
    Postgres,
    Sqlite,
}

impl Target {
    const ALL: [Self; 4] = [Self::Redis, Self::Cluster, Self::Postgres, Self::Sqlite];

    fn name(self) -> &'static str {
        match self {
            Self::Redis => "redis",
            Self::Cluster => "cluster",
            Self::Postgres => "postgres",
            Self::Sqlite => "sqlite",
        }
    }

    /// What the soak runs the store on, for the report.
    fn setup(self) -> &'static str {
        match self {
            Self::Redis => "redis-server, appendfsync always; SIGKILL and restart",
            Self::Cluster => "3 primaries, appendfsync always; SIGKILL and restart one node",
            Self::Postgres => "logged table; SIGKILL of the postmaster, crash recovery",
            Self::Sqlite => "one WAL file, a writer process per task; SIGKILL one writer",
        }
    }
}

/// What `cargo xtask soak` was asked to do.
#[derive(Debug, Clone, PartialEq)]
struct Plan {
    targets: Vec<Target>,
    tasks: u64,
    duration: Duration,
    kill_every: Duration,
    down_for: Duration,
}

impl Plan {
    fn full() -> Self {
        Self {
            targets: Target::ALL.to_vec(),
            tasks: 32,
            duration: Duration::from_secs(60),
            kill_every: Duration::from_secs(5),
            down_for: Duration::from_secs(1),
        }
    }

    /// The short version `cargo xtask test` runs: every store, a few outages each.
    fn quick() -> Self {
        Self {
            targets: Target::ALL.to_vec(),
            tasks: 8,
            duration: Duration::from_secs(7),
            kill_every: Duration::from_secs(2),
            down_for: Duration::from_millis(300),
        }
    }

    /// `[--quick] [--only STORES] [--tasks N] [--seconds S] [--kill-every S]`.
    fn parse(args: &[&str]) -> Result<Self> {
        let mut plan = if args.contains(&"--quick") {
            Self::quick()
        } else {
            Self::full()
        };
        let mut args = args.iter();
        while let Some(&arg) = args.next() {
            let mut value = || {
                args.next()
                    .copied()
                    .ok_or_else(|| usage(format!("{arg} needs a value")))
            };
            match arg {
                "--quick" => {}
                "--only" => {
                    let list = value()?;
                    plan.targets = list
                        .split(',')
                        .map(|name| {
                            Target::ALL
                                .into_iter()
                                .find(|target| target.name() == name.trim())
                                .ok_or_else(|| {
                                    usage(format!(
                                        "--only takes redis, cluster, postgres, sqlite, not {name:?}"
                                    ))
                                })
                        })
                        .collect::<Result<_>>()?;
                }
                "--tasks" => plan.tasks = positive(arg, value()?)?,
                "--seconds" => plan.duration = Duration::from_secs(positive(arg, value()?)?),
                "--kill-every" => plan.kill_every = Duration::from_secs(positive(arg, value()?)?),
                other => bail!(usage(format!("unknown soak option {other:?}"))),
            }
        }
        Ok(plan)
    }
}

fn positive(flag: &str, value: &str) -> Result<u64> {
    match value.parse() {
        Ok(n) if n > 0 => Ok(n),
        _ => bail!(usage(format!(
            "{flag} needs a positive whole number, not {value:?}"
        ))),
    }
}

/// What one store's soak counted.
#[derive(Debug, Default)]
struct Report {
    outages: u64,
    acknowledged: u64,
    lost: u64,
    wrong: u64,
    errors: u64,
    past_timeout: u64,
    slowest: Duration,
    /// The call bound: the store's own timeouts plus [`SLACK`].
    bound: Duration,
    recovery: Vec<Duration>,
    panics: u64,
    /// The first few problems, word for word.
    examples: Vec<String>,
}

impl Report {
    fn note(&mut self, problem: String) {
        if self.examples.len() < 5 {
            self.examples.push(problem);
        }
    }

    fn merge(&mut self, other: Report) {
        self.acknowledged += other.acknowledged;
        self.lost += other.lost;
        self.wrong += other.wrong;
        self.errors += other.errors;
        self.past_timeout += other.past_timeout;
        self.slowest = self.slowest.max(other.slowest);
        self.panics += other.panics;
        for example in other.examples {
            self.note(example);
        }
    }

    fn failed(&self) -> bool {
        self.lost > 0 || self.wrong > 0 || self.past_timeout > 0 || self.panics > 0
    }

    fn timed(&mut self, elapsed: Duration, what: &str) {
        self.slowest = self.slowest.max(elapsed);
        if elapsed > self.bound {
            self.past_timeout += 1;
            self.note(format!(
                "{what} took {elapsed:?}, past the bound of {:?}",
                self.bound
            ));
        }
    }
}

/// `cargo xtask soak ARGS`.
pub fn run(args: &[&str]) -> Result<()> {
    if let ["sqlite-writer", rest @ ..] = args {
        return sqlite_writer(rest);
    }
    let plan = Plan::parse(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the Tokio runtime")?;
    say!(
        "soak: {} writer tasks per store for {:?}, a server killed every {:?} and down for {:?}",
        plan.tasks,
        plan.duration,
        plan.kill_every,
        plan.down_for
    );
    let mut rows = Vec::new();
    for &target in &plan.targets {
        if crate::process::interrupted() {
            bail!("interrupted");
        }
        say!("soak: {} ({})", target.name(), target.setup());
        let report = runtime.block_on(soak(target, &plan))?;
        say!("soak: {}", row(target, &report));
        rows.push((target, report));
    }
    print_table(&plan, &rows);
    let failed: Vec<&str> = rows
        .iter()
        .filter(|(_, report)| report.failed())
        .map(|(target, _)| target.name())
        .collect();
    if !failed.is_empty() {
        for (target, report) in &rows {
            for example in &report.examples {
                say!("soak: {}: {example}", target.name());
            }
        }
        bail!("the soak found defects on: {}", failed.join(", "));
    }
    Ok(())
}

/// The report's row of the table [`print_table`] prints.
fn row(target: Target, report: &Report) -> String {
    let mut recovery = report.recovery.clone();
    recovery.sort();
    let median = recovery
        .get(recovery.len() / 2)
        .map_or("-".into(), |median| format!("{median:.0?}"));
    format!(
        "| {} | {} | {} | {} | {} | {} | {} ({:?}) | {:.0?} | {median} / {} | {} |",
        target.name(),
        report.outages,
        report.acknowledged,
        report.lost,
        report.wrong,
        report.errors,
        report.past_timeout,
        report.bound,
        report.slowest,
        show_recovery(&report.recovery),
        report.panics
    )
}

fn show_recovery(recovery: &[Duration]) -> String {
    match recovery.iter().max() {
        Some(most) => format!("{most:.0?}"),
        None => "-".into(),
    }
}

fn print_table(plan: &Plan, rows: &[(Target, Report)]) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "\n{} writer tasks per store, {:?} per store, a SIGKILL every {:?}, down for {:?}\n",
        plan.tasks, plan.duration, plan.kill_every, plan.down_for
    );
    let _ = writeln!(
        out,
        "| store | outages | writes acknowledged | acknowledged writes lost | wrong answers | \
         errors | calls past the timeout (bound) | slowest call | recovery (median / max) | panics |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|---|");
    for (target, report) in rows {
        let _ = writeln!(out, "{}", row(*target, report));
    }
}

/// A server the killer can take down and bring back.
enum Server {
    Redis(ThrowawayRedis),
    Cluster(ThrowawayCluster),
    Postgres(Arc<ThrowawayPostgres>),
}

impl Server {
    /// Kills it (one node of a cluster, chosen by `round`).
    async fn kill(&mut self, round: u64) -> Result<()> {
        match self {
            Self::Redis(server) => server.kill(),
            Self::Cluster(cluster) => {
                let node = round as usize % cluster.nodes.len();
                cluster.nodes[node].kill();
            }
            Self::Postgres(server) => {
                let server = Arc::clone(server);
                tokio::task::spawn_blocking(move || server.crash())
                    .await
                    .context("killing PostgreSQL")?;
            }
        }
        Ok(())
    }

    /// Brings back what [`Server::kill`] took down, and returns once it accepts connections.
    async fn bring_back(&mut self, round: u64) -> Result<()> {
        match self {
            Self::Redis(server) => server.restart().await,
            Self::Cluster(cluster) => {
                let node = round as usize % cluster.nodes.len();
                cluster.nodes[node].restart().await;
            }
            Self::Postgres(server) => {
                let server = Arc::clone(server);
                tokio::task::spawn_blocking(move || server.start_again())
                    .await
                    .context("restarting PostgreSQL")?;
            }
        }
        Ok(())
    }
}

/// Starts the target's server, opens the store on it and returns both, with the bound a call
/// may take.
async fn start(target: Target) -> Result<(Server, Arc<dyn Backend>, Duration)> {
    const DURABLE: [&str; 4] = ["--appendonly", "yes", "--appendfsync", "always"];
    let (server, url, bound) = match target {
        Target::Redis => {
            let server = ThrowawayRedis::start(&DURABLE).await;
            let url = format!(
                "{}?connect_timeout=500ms&response_timeout=500ms",
                server.url()
            );
            (Server::Redis(server), url, Duration::from_secs(1))
        }
        Target::Cluster => {
            let cluster = ThrowawayCluster::start_with(&DURABLE).await;
            let url = format!(
                "{}?connect_timeout=500ms&response_timeout=500ms",
                cluster.url()
            );
            (Server::Cluster(cluster), url, Duration::from_secs(1))
        }
        Target::Postgres => {
            let server = tokio::task::spawn_blocking(ThrowawayPostgres::start)
                .await
                .context("starting PostgreSQL")?;
            let url = format!(
                "{}?table=soak&unlogged=false&purge_interval=off&acquire_timeout=1s&\
                 statement_timeout=1s",
                server.url()
            );
            (
                Server::Postgres(Arc::new(server)),
                url,
                Duration::from_secs(2),
            )
        }
        Target::Sqlite => unreachable!("the SQLite soak runs writer processes"),
    };
    let store = cachette::open(&url)
        .await
        .with_context(|| format!("opening the {} store", target.name()))?;
    Ok((server, store, bound + SLACK))
}

async fn soak(target: Target, plan: &Plan) -> Result<Report> {
    if target == Target::Sqlite {
        return tokio::task::spawn_blocking({
            let plan = plan.clone();
            move || soak_sqlite(&plan)
        })
        .await
        .context("the SQLite soak")?;
    }
    let (mut server, store, bound) = start(target).await?;
    let started = Instant::now();
    // When each writer last had a write acknowledged, in nanoseconds since `started`.
    let last_ack: Arc<Vec<AtomicU64>> =
        Arc::new((0..plan.tasks).map(|_| AtomicU64::new(0)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..plan.tasks)
        .map(|task| {
            let writer = Writer {
                store: Arc::clone(&store),
                task,
                bound,
                started,
                last_ack: Arc::clone(&last_ack),
            };
            tokio::spawn(writer.run(Arc::clone(&stop)))
        })
        .collect();

    let mut outages = 0;
    let mut recovery = Vec::new();
    while started.elapsed() + plan.kill_every < plan.duration {
        tokio::time::sleep(plan.kill_every).await;
        server.kill(outages).await?;
        tokio::time::sleep(plan.down_for).await;
        server.bring_back(outages).await?;
        let up = started.elapsed();
        outages += 1;
        // Recovered once every writer has had a write acknowledged since the server came back
        // (on a cluster, the writers whose keys live on other nodes never stopped).
        let deadline = Instant::now() + RECOVERY_LIMIT;
        loop {
            let recovered = last_ack
                .iter()
                .all(|acked| Duration::from_nanos(acked.load(Ordering::Acquire)) > up);
            if recovered {
                recovery.push(started.elapsed() - up);
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "{}: some writer had no write acknowledged in the {RECOVERY_LIMIT:?} after \
                     the server came back",
                    target.name()
                );
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let rest = plan.duration.saturating_sub(started.elapsed());
    tokio::time::sleep(rest).await;
    stop.store(true, Ordering::Release);

    let mut report = Report {
        bound,
        outages,
        recovery,
        ..Report::default()
    };
    let mut ledgers = Vec::new();
    for writer in writers {
        match writer.await {
            Ok((part, ledger)) => {
                report.merge(part);
                ledgers.push(ledger);
            }
            Err(error) if error.is_panic() => {
                report.panics += 1;
                report.note(format!("a writer panicked: {error}"));
            }
            Err(error) => bail!("a writer task failed: {error}"),
        }
    }
    verify(&*store, ledgers, &mut report).await;
    drop(server);
    Ok(report)
}

/// What a writer knows of each of its keys: the last acknowledged and the last attempted
/// sequence number.
type Ledger = HashMap<String, (u64, u64)>;

/// Reads every key once more and holds it against what was acknowledged.
async fn verify(store: &dyn Backend, ledgers: Vec<Ledger>, report: &mut Report) {
    let ledger: Ledger = ledgers.into_iter().flatten().collect();
    let keys: Vec<String> = ledger.keys().cloned().collect();
    // A server that just came back may still be loading: give it time to answer.
    let deadline = Instant::now() + RECOVERY_LIMIT;
    let values = loop {
        match store.get_many(&keys).await {
            Ok(values) => break values,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => {
                report.lost += keys.len() as u64;
                report.note(format!("the final read failed: {error}"));
                return;
            }
        }
    };
    for (key, value) in keys.iter().zip(values) {
        let (acked, attempted) = ledger[key];
        check(
            key,
            value.as_deref(),
            acked,
            attempted,
            report,
            "at the end",
        );
    }
}

/// Holds `found` against the ledger of `key`; counts what is lost or wrong.
fn check(
    key: &str,
    found: Option<&[u8]>,
    acked: u64,
    attempted: u64,
    report: &mut Report,
    when: &str,
) {
    let Some(found) = found else {
        if acked > 0 {
            report.lost += 1;
            report.note(format!(
                "{key}: absent {when}, write {acked} was acknowledged"
            ));
        }
        return;
    };
    match sequence(found) {
        Some(seq) if seq > attempted => {
            report.wrong += 1;
            report.note(format!("{key}: holds {seq} {when}, never written"));
        }
        Some(seq) if seq < acked => {
            report.lost += 1;
            report.note(format!(
                "{key}: holds {seq} {when}, write {acked} was acknowledged"
            ));
        }
        Some(_) => {}
        None => {
            report.wrong += 1;
            report.note(format!(
                "{key}: holds {:?} {when}, not a soak value",
                String::from_utf8_lossy(found)
            ));
        }
    }
}

/// The value of write `seq` of a key: the number, padded so that a torn value shows.
fn value_of(key: &str, seq: u64) -> Bytes {
    Bytes::from(format!("{seq}|{key}|{}", "x".repeat(64)))
}

fn sequence(value: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(value).ok()?;
    let (seq, _) = text.split_once('|')?;
    seq.parse().ok()
}

/// One writer task: writes, reads back, sometimes in batches.
struct Writer {
    store: Arc<dyn Backend>,
    task: u64,
    bound: Duration,
    started: Instant,
    last_ack: Arc<Vec<AtomicU64>>,
}

impl Writer {
    fn key(&self, k: u64) -> String {
        // The hash tag puts a writer's keys on one Cluster slot, so its batches are one slot's.
        format!("soak:{{t{}}}:{k}", self.task)
    }

    fn acknowledged(&self) {
        let now = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        if let Some(mine) = usize::try_from(self.task)
            .ok()
            .and_then(|i| self.last_ack.get(i))
        {
            mine.fetch_max(now, Ordering::AcqRel);
        }
    }

    async fn run(self, stop: Arc<AtomicBool>) -> (Report, Ledger) {
        let mut report = Report {
            bound: self.bound,
            ..Report::default()
        };
        let mut ledger: Ledger = (0..KEYS_PER_TASK).map(|k| (self.key(k), (0, 0))).collect();
        let mut seq = 0_u64;
        let mut round = 0_u64;
        while !stop.load(Ordering::Acquire) {
            round += 1;
            let errors = report.errors;
            if round.is_multiple_of(8) {
                self.batch(&mut seq, &mut ledger, &mut report).await;
            } else {
                let key = self.key(round % KEYS_PER_TASK);
                seq += 1;
                self.one(&key, seq, &mut ledger, &mut report).await;
            }
            if report.errors > errors {
                // While the server is down, do not spin on refused connections.
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        (report, ledger)
    }

    async fn one(&self, key: &str, seq: u64, ledger: &mut Ledger, report: &mut Report) {
        if let Some((_, attempted)) = ledger.get_mut(key) {
            *attempted = seq;
        }
        let began = Instant::now();
        let written = self
            .store
            .set(key, value_of(key, seq), None, Condition::Always)
            .await;
        report.timed(began.elapsed(), "set");
        if written.is_err() {
            report.errors += 1;
            return;
        }
        report.acknowledged += 1;
        self.acknowledged();
        if let Some((acked, _)) = ledger.get_mut(key) {
            *acked = seq;
        }
        let began = Instant::now();
        let read = self.store.get(key).await;
        report.timed(began.elapsed(), "get");
        match read {
            Ok(found) => {
                let (acked, attempted) = ledger[key];
                check(key, found.as_deref(), acked, attempted, report, "read back");
            }
            Err(_) => report.errors += 1,
        }
    }

    async fn batch(&self, seq: &mut u64, ledger: &mut Ledger, report: &mut Report) {
        let keys: Vec<String> = (0..4)
            .map(|k| self.key((*seq + k) % KEYS_PER_TASK))
            .collect();
        *seq += 1;
        for key in &keys {
            if let Some((_, attempted)) = ledger.get_mut(key) {
                *attempted = *seq;
            }
        }
        let entries = keys
            .iter()
            .map(|key| (key.clone(), value_of(key, *seq)))
            .collect();
        let began = Instant::now();
        let written = self.store.set_many(entries, None).await;
        report.timed(began.elapsed(), "set_many");
        if written.is_err() {
            report.errors += 1;
            return;
        }
        report.acknowledged += keys.len() as u64;
        self.acknowledged();
        for key in &keys {
            if let Some((acked, _)) = ledger.get_mut(key) {
                *acked = *seq;
            }
        }
        let began = Instant::now();
        let read = self.store.get_many(&keys).await;
        report.timed(began.elapsed(), "get_many");
        match read {
            Ok(values) => {
                for (key, found) in keys.iter().zip(values) {
                    let (acked, attempted) = ledger[key];
                    check(key, found.as_deref(), acked, attempted, report, "read back");
                }
            }
            Err(_) => report.errors += 1,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// SQLite: one file, a writer process per task, SIGKILLed one at a time.

/// The SQLite store's busy timeout in the soak, and so its call bound.
const SQLITE_BUSY: Duration = Duration::from_secs(2);

/// A writer's generation goes in the high bits of its sequence numbers, so the writer started
/// in place of a killed one writes numbers above everything its predecessor wrote.
const GENERATION_SHIFT: u32 = 40;

fn sqlite_url(file: &Path) -> String {
    format!(
        "sqlite://{}?busy_timeout={}ms&purge_interval=off",
        file.display(),
        SQLITE_BUSY.as_millis()
    )
}

/// What a writer process says on stdout, one line each.
enum Said {
    /// `ack KEY SEQ`: the write of SEQ to KEY returned `Ok`.
    Ack(String, u64),
    /// `try KEY SEQ`: about to write SEQ to KEY.
    Try(String, u64),
    /// `slowest NANOS`: the writer's slowest call so far.
    Slowest(Duration),
    /// `lost|wrong|late|error TEXT`.
    Problem(&'static str, String),
}

fn parse_said(line: &str) -> Option<Said> {
    let (word, rest) = line.split_once(' ')?;
    let pair = |rest: &str| {
        let (key, seq) = rest.rsplit_once(' ')?;
        Some((key.to_owned(), seq.parse().ok()?))
    };
    Some(match word {
        "ack" => pair(rest).map(|(key, seq)| Said::Ack(key, seq))?,
        "try" => pair(rest).map(|(key, seq)| Said::Try(key, seq))?,
        "slowest" => Said::Slowest(Duration::from_nanos(rest.parse().ok()?)),
        "lost" => Said::Problem("lost", rest.to_owned()),
        "wrong" => Said::Problem("wrong", rest.to_owned()),
        "late" => Said::Problem("late", rest.to_owned()),
        "error" => Said::Problem("error", rest.to_owned()),
        _ => return None,
    })
}

struct WriterProcess {
    child: Child,
    started: Instant,
}

fn spawn_writer(
    file: &Path,
    slot: u64,
    generation: u64,
    until: Duration,
    said: &mpsc::Sender<(u64, Instant, String)>,
) -> Result<WriterProcess> {
    let exe = std::env::current_exe().context("finding the xtask binary")?;
    let mut child = Command::new(exe)
        .args(["soak", "sqlite-writer"])
        .arg(file)
        .arg(slot.to_string())
        .arg(generation.to_string())
        .arg(until.as_millis().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting a SQLite writer process")?;
    let stdout = child.stdout.take().context("the writer's stdout")?;
    let said = said.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if said.send((slot, Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    Ok(WriterProcess {
        child,
        started: Instant::now(),
    })
}

fn soak_sqlite(plan: &Plan) -> Result<Report> {
    let dir = tempfile::Builder::new()
        .prefix("cachette-soak-")
        .tempdir()
        .context("a temporary directory")?;
    let file = dir.path().join("soak.db");
    let (said, heard) = mpsc::channel();
    let started = Instant::now();
    let mut writers = Vec::new();
    for slot in 0..plan.tasks {
        writers.push(Some(spawn_writer(&file, slot, 0, plan.duration, &said)?));
    }
    let mut generations = vec![0_u64; writers.len()];
    let mut ledger = Ledger::new();
    let mut report = Report {
        bound: SQLITE_BUSY + SLACK,
        ..Report::default()
    };
    // A respawned writer: when it started, to time its first acknowledged write.
    let mut respawned: HashMap<u64, Instant> = HashMap::new();
    let mut hear = |report: &mut Report, respawned: &mut HashMap<u64, Instant>, wait: Duration| {
        let until = Instant::now() + wait;
        while let Ok((slot, at, line)) =
            heard.recv_timeout(until.saturating_duration_since(Instant::now()))
        {
            match parse_said(&line) {
                Some(Said::Try(key, seq)) => {
                    let entry = ledger.entry(key).or_insert((0, 0));
                    entry.1 = entry.1.max(seq);
                }
                Some(Said::Ack(key, seq)) => {
                    report.acknowledged += 1;
                    let entry = ledger.entry(key).or_insert((0, 0));
                    entry.0 = entry.0.max(seq);
                    if let Some(began) = respawned.remove(&slot) {
                        report.recovery.push(at.saturating_duration_since(began));
                    }
                }
                Some(Said::Slowest(took)) => report.slowest = report.slowest.max(took),
                Some(Said::Problem(kind, text)) => {
                    match kind {
                        "lost" => report.lost += 1,
                        "wrong" => report.wrong += 1,
                        "late" => report.past_timeout += 1,
                        _ => report.errors += 1,
                    }
                    if kind != "error" {
                        report.note(format!("writer {slot}: {kind} {text}"));
                    }
                }
                None => report.note(format!("writer {slot} said {line:?}")),
            }
            if Instant::now() >= until {
                break;
            }
        }
    };

    let mut round = 0_u64;
    while started.elapsed() + plan.kill_every < plan.duration {
        hear(&mut report, &mut respawned, plan.kill_every);
        let slot = round % plan.tasks;
        round += 1;
        let Some(mut victim) = writers[slot as usize].take() else {
            continue;
        };
        let _ = victim.child.kill();
        let _ = victim.child.wait();
        report.outages += 1;
        std::thread::sleep(plan.down_for);
        generations[slot as usize] += 1;
        let left = plan.duration.saturating_sub(started.elapsed());
        let writer = spawn_writer(&file, slot, generations[slot as usize], left, &said)?;
        respawned.insert(slot, writer.started);
        writers[slot as usize] = Some(writer);
    }
    drop(said);
    for writer in writers.iter_mut().flatten() {
        let status = writer.child.wait().context("waiting for a writer")?;
        // A panic exits with 101; SIGKILL, which the soak sends, has no code.
        if status.code() == Some(101) {
            report.panics += 1;
            report.note(format!("a writer process panicked: {status}"));
        } else if !status.success() {
            report.errors += 1;
            report.note(format!("a writer process ended with {status}"));
        }
    }
    hear(&mut report, &mut respawned, Duration::from_secs(2));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("a runtime for the final read")?;
    runtime.block_on(async {
        let store = cachette::open(&sqlite_url(&file))
            .await
            .context("opening the soak's SQLite file")?;
        verify(&*store, vec![ledger], &mut report).await;
        store
            .close()
            .await
            .context("closing the soak's SQLite file")
    })?;
    Ok(report)
}

/// `cargo xtask soak sqlite-writer FILE SLOT GENERATION MILLIS`: a writer process of the SQLite
/// soak. It writes until MILLIS have passed, saying on stdout what it tried, what was
/// acknowledged and what went wrong.
fn sqlite_writer(args: &[&str]) -> Result<()> {
    let [file, slot, generation, millis] = args else {
        bail!(usage("sqlite-writer takes FILE SLOT GENERATION MILLIS"));
    };
    let slot: u64 = slot.parse().context("SLOT")?;
    let generation: u64 = generation.parse().context("GENERATION")?;
    let until = Instant::now() + Duration::from_millis(millis.parse().context("MILLIS")?);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the Tokio runtime")?;
    let say = |line: String| {
        let mut out = std::io::stdout().lock();
        // The parent reads every line; a closed pipe means it is gone, and so is the point.
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            std::process::exit(0);
        }
    };
    runtime.block_on(async {
        let store = cachette::open(&sqlite_url(Path::new(file)))
            .await
            .context("opening the soak's SQLite file")?;
        let bound = SQLITE_BUSY + SLACK;
        let mut slowest = Duration::ZERO;
        let mut timed = |took: Duration, what: &str, key: &str| {
            if took > bound {
                say(format!("late {what} of {key} took {took:?}"));
            }
            if took > slowest {
                slowest = took;
                say(format!("slowest {}", took.as_nanos()));
            }
        };
        let mut n = 0_u64;
        while Instant::now() < until {
            n += 1;
            let key = format!("soak:w{slot}:{}", n % KEYS_PER_TASK);
            let seq = (generation << GENERATION_SHIFT) | n;
            say(format!("try {key} {seq}"));
            let began = Instant::now();
            let written = store
                .set(&key, value_of(&key, seq), None, Condition::Always)
                .await;
            timed(began.elapsed(), "set", &key);
            if let Err(error) = written {
                say(format!("error {error}"));
                continue;
            }
            say(format!("ack {key} {seq}"));
            let began = Instant::now();
            let read = store.get(&key).await;
            timed(began.elapsed(), "get", &key);
            match read {
                Ok(Some(found)) => match sequence(&found) {
                    Some(found) if found == seq => {}
                    Some(found) if found < seq => say(format!("lost {key}: {found} after {seq}")),
                    Some(found) => say(format!("wrong {key}: {found} after {seq}")),
                    None => say(format!("wrong {key}: not a soak value")),
                },
                Ok(None) => say(format!("lost {key}: absent after {seq}")),
                Err(error) => say(format!("error {error}")),
            }
        }
        store.close().await.context("closing the store")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_soak_arguments() {
        assert_eq!(Plan::parse(&[]).unwrap(), Plan::full());
        assert_eq!(Plan::parse(&["--quick"]).unwrap(), Plan::quick());
        let plan =
            Plan::parse(&["--only", "redis,sqlite", "--tasks", "4", "--seconds", "9"]).unwrap();
        assert_eq!(plan.targets, [Target::Redis, Target::Sqlite]);
        assert_eq!((plan.tasks, plan.duration), (4, Duration::from_secs(9)));
        for bad in [
            &["--only", "mysql"][..],
            &["--tasks", "0"],
            &["--tasks"],
            &["--fast"],
        ] {
            assert!(
                Plan::parse(bad).unwrap_err().is::<crate::UsageError>(),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_value_older_than_its_acknowledgement_is_lost_and_one_never_written_is_wrong() {
        let mut report = Report::default();
        check("k", Some(&value_of("k", 5)), 5, 6, &mut report, "now");
        check("k", Some(&value_of("k", 6)), 5, 6, &mut report, "now");
        assert_eq!((report.lost, report.wrong), (0, 0), "{:?}", report.examples);
        check("k", Some(&value_of("k", 4)), 5, 6, &mut report, "now");
        check("k", None, 5, 6, &mut report, "now");
        assert_eq!(report.lost, 2);
        check("k", Some(&value_of("k", 7)), 5, 6, &mut report, "now");
        check("k", Some(b"garbage"), 5, 6, &mut report, "now");
        assert_eq!(report.wrong, 2);
        check("k", None, 0, 3, &mut report, "now");
        assert_eq!(report.lost, 2, "a key never acknowledged may be absent");
    }
}
