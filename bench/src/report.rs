//! Results: statistics, the markdown report and the machine it ran on.

use std::fmt::Write as _;

use crate::measure::{Op, Sample};
use crate::round_trips::Trips;

/// Median, minimum and maximum of a series.
#[derive(Debug, Clone, Copy)]
pub struct Spread {
    /// The median.
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
}

impl Spread {
    /// The spread of `values`; `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Self> {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        if sorted.is_empty() {
            return None;
        }
        sorted.sort_by(f64::total_cmp);
        let middle = sorted.len() / 2;
        let median = if sorted.len() % 2 == 1 {
            sorted[middle]
        } else {
            (sorted[middle - 1] + sorted[middle]) / 2.0
        };
        Some(Self {
            median,
            min: sorted[0],
            max: sorted[sorted.len() - 1],
        })
    }
}

/// The peer's part of one operation.
#[derive(Debug, Clone)]
pub enum PeerCell {
    /// The store has no peer.
    None,
    /// The peer's API has no such operation.
    Unsupported,
    /// The peer's samples.
    Measured(Vec<Sample>),
}

/// One operation of one store.
#[derive(Debug, Clone)]
pub struct OpResult {
    /// Which operation.
    pub op: Op,
    /// The facade's samples, one per repeat.
    pub facade: Vec<Sample>,
    /// The raw driver's samples, one per repeat, taken alternately with the facade's.
    pub raw: Vec<Sample>,
    /// The peer's samples.
    pub peer: PeerCell,
}

impl OpResult {
    /// Facade/raw per repeat: each pair ran back to back, so the ratio of a pair cancels the
    /// slow drifts of a shared machine that the ratio of two medians would not.
    pub fn ratio(&self) -> Option<Spread> {
        let ratios: Vec<f64> = self
            .facade
            .iter()
            .zip(&self.raw)
            .map(|(facade, raw)| facade.rate() / raw.rate())
            .collect();
        Spread::of(&ratios)
    }

    /// Reads that found nothing, over every contender and repeat.
    pub fn misses(&self) -> u64 {
        let peer: &[Sample] = match &self.peer {
            PeerCell::Measured(samples) => samples,
            PeerCell::None | PeerCell::Unsupported => &[],
        };
        self.facade
            .iter()
            .chain(&self.raw)
            .chain(peer)
            .map(|sample| sample.misses)
            .sum()
    }
}

/// Rates of `samples`.
pub fn rates(samples: &[Sample]) -> Option<Spread> {
    Spread::of(&samples.iter().map(Sample::rate).collect::<Vec<_>>())
}

/// What happened to one store.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Timed.
    Measured {
        /// The raw contender, e.g. `redis-rs`.
        raw_name: &'static str,
        /// The peer, if the store has one.
        peer_name: Option<&'static str>,
        /// The server's version, for server stores.
        server: Option<String>,
        /// A measurement of the store's own, for the legend.
        note: Option<String>,
        /// One entry per operation.
        ops: Vec<OpResult>,
    },
    /// The store is not compiled into this binary.
    #[allow(dead_code, reason = "only built when a store's feature is off")]
    NotBuilt {
        /// The feature of `cachette-bench` that would compile it in.
        feature: &'static str,
    },
    /// Not run, and why (a server URL is unset, or `--only` left it out).
    Skipped {
        /// Why.
        reason: String,
    },
    /// Setting it up or timing it failed.
    Failed {
        /// The error.
        error: String,
    },
}

/// One store's row group.
#[derive(Debug, Clone)]
pub struct StoreReport {
    /// The store as the table names it, e.g. `postgres (unlogged)`.
    pub name: &'static str,
    /// What happened.
    pub outcome: Outcome,
}

/// One store capability timed against what a user would do without it.
#[derive(Debug, Clone)]
pub struct CapabilityRow {
    /// The store.
    pub store: &'static str,
    /// The capability timed.
    pub op: &'static str,
    /// Its rate, the median of the samples.
    pub rate: f64,
    /// What it is timed against.
    pub baseline_name: &'static str,
    /// The baseline's rate, the median of the samples.
    pub baseline: f64,
    /// The median of the per-sample ratios.
    pub ratio: f64,
    /// What the rates count.
    pub unit: &'static str,
}

/// Server round trips of one batch of 1,000 keys.
#[derive(Debug, Clone)]
pub struct RoundTripRow {
    /// The store.
    pub store: &'static str,
    /// `get_many` or `set_many`.
    pub op: &'static str,
    /// Round trips the facade made.
    pub facade: Trips,
    /// Round trips the raw driver made.
    pub raw: Trips,
    /// Commands the server executed for the facade's call, where the server counts them
    /// (Redis `INFO commandstats`), with their names.
    pub commands: Option<String>,
}

/// How the run was set up, for the report's header.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// `full` or `quick`.
    pub mode: &'static str,
    /// How the slices were cut, in words.
    pub slices: String,
    /// CBOR bytes of one value.
    pub value_bytes: usize,
    /// Wall-clock seconds of the whole run.
    pub total_secs: f64,
}

/// Where the run happened.
#[derive(Debug, Clone)]
pub struct Machine {
    /// UTC date, `YYYY-MM-DD`.
    pub date: String,
    /// Logical cores available to the process.
    pub cores: usize,
    /// CPU model name.
    pub cpu: String,
    /// Kernel release.
    pub kernel: String,
    /// Total memory.
    pub memory: String,
}

impl Machine {
    /// This machine, now.
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|line| line.strip_prefix("model name"))
            .and_then(|rest| rest.split_once(':'))
            .map_or_else(|| "unknown".to_owned(), |(_, name)| name.trim().to_owned());
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(
            |_| "unknown".to_owned(),
            |release| release.trim().to_owned(),
        );
        let memory = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|info| {
                let line = info.lines().find(|line| line.starts_with("MemTotal:"))?;
                let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
                Some(format!("{:.0} GiB", kib as f64 / 1024.0 / 1024.0))
            })
            .unwrap_or_else(|| "unknown".to_owned());
        Self {
            date: utc_date(std::time::SystemTime::now()),
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            cpu,
            kernel,
            memory,
        }
    }
}

/// `YYYY-MM-DD` of a time, in UTC (days-to-civil, proleptic Gregorian).
pub fn utc_date(time: std::time::SystemTime) -> String {
    let secs = time
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let days = (secs / 86_400) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// `1234567.0` → `1.23M`, `10400.0` → `10.4k`.
pub fn human(rate: f64) -> String {
    if rate >= 1e6 {
        format!("{:.2}M", rate / 1e6)
    } else if rate >= 1e5 {
        format!("{:.0}k", rate / 1e3)
    } else if rate >= 1e4 {
        format!("{:.1}k", rate / 1e3)
    } else if rate >= 1e3 {
        format!("{:.2}k", rate / 1e3)
    } else {
        format!("{rate:.0}")
    }
}

fn spread_cell(spread: Option<Spread>) -> String {
    spread.map_or_else(
        || "—".to_owned(),
        |s| format!("{} ({}–{})", human(s.median), human(s.min), human(s.max)),
    )
}

/// Whether a facade/raw ratio misses the 0.95 goal, judged on the figure as printed (two
/// decimals), so that a row shown as 0.95 is never flagged.
pub fn below_goal(ratio: f64) -> bool {
    (ratio * 100.0).round() < 95.0
}

fn ratio_cell(spread: Option<Spread>) -> String {
    spread.map_or_else(
        || "—".to_owned(),
        |s| {
            let flag = if below_goal(s.median) { " ⚠" } else { "" };
            format!("**{:.2}**{flag} ({:.2}–{:.2})", s.median, s.min, s.max)
        },
    )
}

/// The main table: one row per store and operation.
pub fn table(stores: &[StoreReport]) -> String {
    let mut out = String::new();
    out.push_str(
        "| store | operation | facade | raw driver | facade/raw | peer |\n\
         |---|---|---|---|---|---|\n",
    );
    for store in stores {
        match &store.outcome {
            Outcome::Measured { ops, .. } => {
                for op in ops.iter().filter(|op| !op.op.is_scale()) {
                    let peer = match &op.peer {
                        PeerCell::None => String::new(),
                        PeerCell::Unsupported => "no batch API".to_owned(),
                        PeerCell::Measured(samples) => spread_cell(rates(samples)),
                    };
                    let _ = writeln!(
                        out,
                        "| {} | {} ({}) | {} | {} | {} | {} |",
                        store.name,
                        op.op.label(),
                        op.op.unit(),
                        spread_cell(rates(&op.facade)),
                        spread_cell(rates(&op.raw)),
                        ratio_cell(op.ratio()),
                        peer
                    );
                }
            }
            Outcome::NotBuilt { feature } => {
                let _ = writeln!(
                    out,
                    "| {} | — | not built (feature `{feature}` of cachette-bench is off) | | | |",
                    store.name
                );
            }
            Outcome::Skipped { reason } => {
                let _ = writeln!(out, "| {} | — | skipped: {reason} | | | |", store.name);
            }
            Outcome::Failed { error } => {
                let _ = writeln!(
                    out,
                    "| {} | — | failed: {} | | | |",
                    store.name,
                    error.replace('|', "/").replace('\n', " ")
                );
            }
        }
    }
    out
}

/// The scale tables: per store, facade/raw and both rates for `get_many` of 1 to 10,000 keys,
/// for `get` from 1 to 256 tasks and for `get_many_vec` of 1,000 and 10,000 keys; empty when no
/// scale operation ran.
pub fn scale_tables(stores: &[StoreReport]) -> String {
    let measured: Vec<(&str, &[OpResult])> = stores
        .iter()
        .filter_map(|store| match &store.outcome {
            Outcome::Measured { ops, .. } if ops.iter().any(|op| op.op.is_scale()) => {
                Some((store.name, ops.as_slice()))
            }
            _ => None,
        })
        .collect();
    if measured.is_empty() {
        return String::new();
    }
    let mut out = String::new();
    let kind = |op: &Op| std::mem::discriminant(op);
    for (title, series_of) in [
        ("`get_many` of N keys (keys/s)", Op::BatchOf(0)),
        ("`get` from N concurrent tasks (ops/s)", Op::TasksOf(0)),
        (
            "`get_many_vec` of N keys, answered by position rather than in a map (keys/s)",
            Op::PositionalOf(0),
        ),
    ] {
        let series: Vec<Op> = Op::SCALE
            .into_iter()
            .filter(|op| kind(op) == kind(&series_of))
            .collect();
        let _ = writeln!(out, "{title}, facade/raw, then facade / raw rates:\n");
        out.push_str("| store |");
        for op in &series {
            let n = match op {
                Op::BatchOf(n) | Op::TasksOf(n) | Op::PositionalOf(n) => *n,
                _ => 0,
            };
            let _ = write!(out, " N = {} |", thousands(n));
        }
        out.push_str("\n|---|");
        out.push_str(&"---|".repeat(series.len()));
        out.push('\n');
        for (name, ops) in &measured {
            let _ = write!(out, "| {name} |");
            for wanted in &series {
                match ops.iter().find(|op| op.op == *wanted) {
                    Some(op) => {
                        let rate = |samples: &[Sample]| {
                            rates(samples).map_or_else(|| "—".to_owned(), |s| human(s.median))
                        };
                        let ratio = op.ratio().map_or_else(
                            || "—".to_owned(),
                            |s| {
                                let flag = if below_goal(s.median) { " ⚠" } else { "" };
                                format!("**{:.2}**{flag}", s.median)
                            },
                        );
                        let _ =
                            write!(out, " {ratio} · {} / {} |", rate(&op.facade), rate(&op.raw));
                    }
                    None => out.push_str(" — |"),
                }
            }
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

/// `10000` as `10,000`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// The whole markdown report.
pub fn markdown(
    machine: &Machine,
    run: &RunInfo,
    stores: &[StoreReport],
    round_trips: &[RoundTripRow],
    round_trip_notes: &[String],
    capabilities: &[CapabilityRow],
    capability_notes: &[String],
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# cachette benchmark ({} mode)\n", run.mode);
    match run.mode {
        "quick" => out.push_str(
            "> Quick mode is a smoke check: slices of a few milliseconds, not numbers to quote.\n\n",
        ),
        "profile" => out.push_str(
            "> Profile mode: a fixed number of calls per slice, for profilers; rates under a \
             profiler are not numbers to quote.\n\n",
        ),
        _ => {}
    }
    let _ = writeln!(
        out,
        "{} · {} cores · {} · {} RAM · Linux {}  ",
        machine.date, machine.cores, machine.cpu, machine.memory, machine.kernel
    );
    let _ = writeln!(
        out,
        "Median of {} (min–max in brackets); facade and raw slices alternate. Values: DID \
         documents of {} bytes in CBOR, 10,000 `did:plc:` keys preloaded, every write with a \
         300 s TTL. Whole run: {:.0} s.\n",
        run.slices, run.value_bytes, run.total_secs
    );
    out.push_str(&table(stores));
    out.push('\n');
    out.push_str(
        "facade = `Cache<DidDoc>` (CBOR) over the store; raw driver = the same work written \
         directly on the store's driver with the same CBOR bytes; facade/raw = median of the \
         per-repeat ratios (≥ 0.95 is the goal, ⚠ marks a row below it).\n\n",
    );
    for store in stores {
        if let Outcome::Measured {
            raw_name,
            peer_name,
            server,
            note,
            ops,
        } = &store.outcome
        {
            let _ = write!(out, "- **{}**: raw = {raw_name}", store.name);
            if let Some(peer) = peer_name {
                let _ = write!(out, "; peer = {peer}");
            }
            if let Some(server) = server {
                let _ = write!(out, "; server: {server}");
            }
            if let Some(note) = note {
                let _ = write!(out, "; {note}");
            }
            let misses: u64 = ops.iter().map(OpResult::misses).sum();
            if misses > 0 {
                let _ = write!(
                    out,
                    "; **{misses} reads missed** keys that should be present: read rates are suspect"
                );
            }
            out.push('\n');
        }
    }
    let scale = scale_tables(stores);
    if !scale.is_empty() {
        out.push_str("\n## Scale: batch sizes and concurrent tasks\n\n");
        out.push_str(&scale);
        out.push_str(
            "The same facade and raw contenders as the table above, on one store row of each \
             kind; `scale.png` draws the ratios of the first two tables. The raw contenders \
             answer by position in both batch tables (they build no map); the facade's \
             `get_many` returns a `HashMap` of the caller's keys, its `get_many_vec` a `Vec` in \
             the order asked.\n",
        );
    }
    out.push_str("\n## Server round trips per batch of 1,000 keys\n\n");
    if round_trips.is_empty() {
        out.push_str("No server store ran.\n");
    } else {
        out.push_str(
            "| store | operation | facade | raw driver | server commands (facade call) |\n\
             |---|---|---|---|---|\n",
        );
        for row in round_trips {
            let _ = writeln!(
                out,
                "| {} | {} 1,000 | {} | {} | {} |",
                row.store,
                row.op,
                row.facade,
                row.raw,
                row.commands.as_deref().unwrap_or("—")
            );
        }
        out.push('\n');
        out.push_str(
            "Round trips are counted by a loopback TCP proxy between the client and the server: \
             one round trip is one turn of the conversation (the client sends, then waits for \
             the server's answer). Only the counted client passes through it, so other clients \
             of a shared server do not count. Each call is counted on its second run, once \
             statements are prepared. \"after the call\": turns the client made in the \
             background once the caller had its answer (sqlx's pool pings every connection it \
             takes back). Server commands come from Redis `INFO commandstats` deltas, which on a \
             shared server include other clients' commands.\n",
        );
    }
    for note in round_trip_notes {
        let _ = writeln!(out, "- {note}");
    }
    out.push_str("\n## Store capabilities\n\n");
    if capabilities.is_empty() {
        out.push_str("None timed.\n");
    } else {
        out.push_str(
            "| store | capability | rate | against | its rate | ratio |\n\
             |---|---|---|---|---|---|\n",
        );
        for row in capabilities {
            let _ = writeln!(
                out,
                "| {} | {} | {} {unit} | {} | {} {unit} | {:.2} |",
                row.store,
                row.op,
                human(row.rate),
                row.baseline_name,
                human(row.baseline),
                row.ratio,
                unit = row.unit,
            );
        }
        out.push_str(
            "\nEach through `Cache<DidDoc>` on one task, timed against what a user would write \
             without it, in alternating samples of the same run (medians; 500 calls per \
             single-key sample). `get then delete` is not atomic: it is what `take` replaces. \
             A miss under a fleet lease pays the lease's round trips (take, look again, \
             release; 200 misses per sample). The loads row counts loader calls for one key \
             asked by 8 caches of 64 tasks each (8 single flights, as 8 processes have, over \
             one store), the loader taking 20 ms: lower is better.\n",
        );
    }
    for note in capability_notes {
        let _ = writeln!(out, "- {note}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn median_and_spread_of_odd_and_even_series() {
        let odd = Spread::of(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((odd.median, odd.min, odd.max), (2.0, 1.0, 3.0));
        let even = Spread::of(&[4.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(even.median, 2.5);
        assert!(Spread::of(&[]).is_none());
        assert!(Spread::of(&[f64::NAN]).is_none());
    }

    #[test]
    fn dates_are_utc_calendar_days() {
        assert_eq!(utc_date(UNIX_EPOCH), "1970-01-01");
        let leap_day = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(utc_date(leap_day), "2000-02-29");
        let later = UNIX_EPOCH + Duration::from_secs(1_767_225_599);
        assert_eq!(utc_date(later), "2025-12-31");
    }

    #[test]
    fn rates_read_like_people_write_them() {
        assert_eq!(human(1_234_567.0), "1.23M");
        assert_eq!(human(298_765.0), "299k");
        assert_eq!(human(10_400.0), "10.4k");
        assert_eq!(human(7_100.0), "7.10k");
        assert_eq!(human(512.0), "512");
    }

    #[test]
    fn stores_that_did_not_run_say_why_and_show_no_numbers() {
        let stores = [
            StoreReport {
                name: "redis",
                outcome: Outcome::Skipped {
                    reason: "CACHETTE_REDIS_URL is unset".into(),
                },
            },
            StoreReport {
                name: "sqlite (WAL file)",
                outcome: Outcome::NotBuilt { feature: "sqlite" },
            },
        ];
        let table = table(&stores);
        assert!(table.contains("| redis | — | skipped: CACHETTE_REDIS_URL is unset |"));
        assert!(table.contains("not built (feature `sqlite` of cachette-bench is off)"));
        assert!(!table.contains("ops/s") && !table.contains("**"));
    }
}
