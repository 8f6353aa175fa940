//! `cachette-bench`: every store through `Cache<DidDoc>` next to the same work on its raw driver
//! and next to the libraries a user might pick instead, in one run; a markdown table and a PNG
//! chart of the facade/raw ratios under `target/bench/`. See `bench/README.md`.

// With some stores left out, parts of the harness only they use are idle; that is fine.
#![cfg_attr(
    not(all(
        feature = "memory",
        feature = "sqlite",
        feature = "redis",
        feature = "postgres"
    )),
    allow(dead_code, unused_variables, unused_imports)
)]

mod capabilities;
mod chart;
mod cli;
mod measure;
mod report;
mod round_trips;
mod stores;
mod workload;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use cli::{Command, Options};
use measure::{Contender, Sample};
use report::{
    CapabilityRow, Machine, OpResult, Outcome, PeerCell, RoundTripRow, RunInfo, StoreReport,
};
use stores::StoreBench;
use workload::{SharedWorkload, Workload};

/// Errors of a benchmark run: anything, boxed, reported by its message.
pub type BenchResult<T> = Result<T, BenchError>;

/// The error of [`BenchResult`].
pub type BenchError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The stores in table order: the `--only` name, the table name.
const STORES: [(&str, &str); 37] = [
    ("memory", "memory"),
    ("memory-tracing", "memory + Observe(tracing)"),
    ("memory-metrics", "memory + Observe(metrics)"),
    ("memory-fresh", "memory + fresh_for, fresh hits"),
    ("memory-stale", "memory + fresh_for, stale hits"),
    ("sqlite", "sqlite (WAL file)"),
    ("sqlite-tracing", "sqlite + Observe(tracing)"),
    ("sqlite-metrics", "sqlite + Observe(metrics)"),
    ("sqlite-fresh", "sqlite + fresh_for, fresh hits"),
    ("sqlite-stale", "sqlite + fresh_for, stale hits"),
    ("memory-signed", "memory + Sign"),
    ("memory-encrypted", "memory + Encrypt"),
    ("memory-compressed", "memory + Compress"),
    ("sqlite-signed", "sqlite + Sign"),
    ("sqlite-encrypted", "sqlite + Encrypt"),
    ("sqlite-compressed", "sqlite + Compress"),
    ("memory-msgpack", "memory, MessagePack"),
    ("memory-json", "memory, JSON"),
    ("sqlite-msgpack", "sqlite, MessagePack"),
    ("sqlite-json", "sqlite, JSON"),
    ("memory-tags1", "memory + 1 tag"),
    ("memory-tags5", "memory + 5 tags"),
    ("sqlite-tags1", "sqlite + 1 tag"),
    ("sqlite-tags5", "sqlite + 5 tags"),
    ("redis", "redis"),
    ("redis-cluster", "redis cluster"),
    ("postgres-logged", "postgres (logged)"),
    ("postgres-unlogged", "postgres (unlogged)"),
    ("redis-tags1", "redis + 1 tag"),
    ("redis-tags5", "redis + 5 tags"),
    ("postgres-tags1", "postgres (unlogged) + 1 tag"),
    ("postgres-tags5", "postgres (unlogged) + 5 tags"),
    ("memory-local", "memory + local tier"),
    ("memory-local-arc", "memory + local tier, get_arc"),
    ("sqlite-local", "sqlite + local tier"),
    ("redis-local", "redis + local tier"),
    ("postgres-local", "postgres (unlogged) + local tier"),
];

fn main() -> ExitCode {
    let options = match cli::parse(std::env::args().skip(1)) {
        Ok(Command::Run(options)) => options,
        Ok(Command::Help) => {
            print!("{}", cli::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("cachette-bench: {message}\n\n{}", cli::USAGE);
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("cachette-bench: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The run is a task on the worker threads, like the request handlers of a service, rather
    // than the future `block_on` drives on the main thread.
    let outcome = runtime.block_on(async { tokio::spawn(run(options)).await });
    match outcome {
        Ok(Ok(true)) => ExitCode::SUCCESS,
        Ok(Ok(false)) => ExitCode::FAILURE,
        Ok(Err(error)) => {
            eprintln!("cachette-bench: {error}");
            ExitCode::FAILURE
        }
        Err(panic) => {
            eprintln!("cachette-bench: the run panicked: {panic}");
            ExitCode::FAILURE
        }
    }
}

/// Runs everything; `Ok(false)` when a store failed or a read missed.
async fn run(options: Options) -> BenchResult<bool> {
    let began = Instant::now();
    let machine = Machine::detect();
    let workload: SharedWorkload = Arc::new(Workload::new());
    stores::observe::install();
    let mode = match (options.calls, options.quick) {
        (Some(_), _) => "profile",
        (None, true) => "quick",
        (None, false) => "full",
    };
    let slices = match options.calls {
        Some(calls) => format!(
            "{} slices of {calls} calls per contender and operation, after {} calls of warm-up",
            options.repeats(),
            (calls / 10).max(1)
        ),
        None => format!(
            "{} slices of {} ms{} per contender and operation, after a {} ms warm-up",
            options.repeats(),
            options.slice().as_millis(),
            if options.quick {
                String::new()
            } else {
                format!(
                    " (and of at least {} batch calls)",
                    measure::MIN_BATCH_CALLS
                )
            },
            options.warmup().as_millis()
        ),
    };
    eprintln!(
        "cachette-bench: {mode} mode, {slices}; {} cores, {}",
        machine.cores, machine.cpu
    );

    let ops_of = |key: &str| -> Vec<measure::Op> {
        let scaled = measure::SCALE_STORES.contains(&key);
        options
            .ops
            .iter()
            .copied()
            .filter(|op| scaled || !op.is_scale())
            .collect()
    };
    let total_steps: usize = STORES
        .iter()
        .filter(|(key, _)| options.runs(key))
        .map(|(key, _)| ops_of(key).len())
        .sum();
    let mut step = 0;
    let mut reports = Vec::new();
    let mut round_trips: Vec<RoundTripRow> = Vec::new();
    let mut round_trip_notes = Vec::new();
    let mut capabilities: Vec<CapabilityRow> = Vec::new();
    let mut capability_notes = Vec::new();
    for &(key, name) in &STORES {
        if !options.runs(key) {
            reports.push(StoreReport {
                name,
                outcome: Outcome::Skipped {
                    reason: "left out by --only".into(),
                },
            });
            continue;
        }
        eprintln!("[{name}] setting up and preloading 10,000 keys per contender");
        let ops = ops_of(key);
        let outcome = match stores::setup(key, &workload).await {
            Err(outcome) => {
                step += ops.len();
                if let Outcome::Skipped { reason } = &outcome {
                    eprintln!("[{name}] SKIPPED: {reason}");
                } else if let Outcome::NotBuilt { feature } = &outcome {
                    eprintln!("[{name}] NOT BUILT: feature `{feature}` of cachette-bench is off");
                } else if let Outcome::Failed { error } = &outcome {
                    eprintln!("[{name}] FAILED to set up: {error}");
                }
                outcome
            }
            Ok(bench) => {
                let StoreBench {
                    facade,
                    raw,
                    raw_name,
                    peer,
                    cleanup,
                    server,
                    note,
                } = bench;
                let contenders = Contenders {
                    facade: facade.as_ref(),
                    raw: raw.as_ref(),
                    peer: peer.as_ref().map(|peer| peer.contender.as_ref()),
                };
                let measured =
                    measure_store(&options, &ops, name, &contenders, &mut step, total_steps).await;
                if let Err(error) = cleanup.await {
                    eprintln!("[{name}] clean-up failed: {error}");
                }
                match measured {
                    Ok(ops) => Outcome::Measured {
                        raw_name,
                        peer_name: peer.map(|peer| peer.name),
                        server,
                        note,
                        ops,
                    },
                    Err(error) => {
                        eprintln!("[{name}] FAILED: {error}");
                        Outcome::Failed {
                            error: error.to_string(),
                        }
                    }
                }
            }
        };
        if matches!(outcome, Outcome::Measured { .. }) {
            match stores::round_trips(key, name, &workload).await {
                Ok(Some(rows)) => {
                    for row in &rows {
                        eprintln!(
                            "[{name}] {} of 1,000 keys: facade {} round trips, raw {}",
                            row.op, row.facade, row.raw
                        );
                    }
                    round_trips.extend(rows);
                }
                Ok(None) => {}
                Err(error) => {
                    eprintln!("[{name}] round trips not counted: {error}");
                    round_trip_notes.push(format!("{name}: round trips not counted: {error}"));
                }
            }
        }
        if matches!(outcome, Outcome::Measured { .. })
            && let Some(store) = capabilities::store_of(key)
        {
            eprintln!("[{name}] timing take, get_with_ttl, incr, keys() and len");
            match capabilities::measure(store, name, &workload, options.repeats()).await {
                Ok(rows) => {
                    for row in &rows {
                        eprintln!(
                            "[{name}] {}: {} {} · {} {} · ratio {:.2}",
                            row.op,
                            report::human(row.rate),
                            row.unit,
                            row.baseline_name,
                            report::human(row.baseline),
                            row.ratio
                        );
                    }
                    capabilities.extend(rows);
                }
                Err(error) => {
                    eprintln!("[{name}] capabilities FAILED: {error}");
                    capability_notes.push(format!("{name}: capabilities failed: {error}"));
                }
            }
        }
        reports.push(StoreReport { name, outcome });
    }
    let run = RunInfo {
        mode,
        slices,
        value_bytes: workload.value_bytes()?,
        total_secs: began.elapsed().as_secs_f64(),
    };
    let markdown = report::markdown(
        &machine,
        &run,
        &reports,
        &round_trips,
        &round_trip_notes,
        &capabilities,
        &capability_notes,
    );
    std::fs::create_dir_all(&options.out)
        .map_err(|error| format!("cannot create {}: {error}", options.out.display()))?;
    let results = options.out.join("results.md");
    std::fs::write(&results, &markdown)
        .map_err(|error| format!("cannot write {}: {error}", results.display()))?;
    let png = options.out.join("ratios.png");
    chart::draw(&png, &reports, &machine, mode)
        .map_err(|error| format!("cannot draw {}: {error}", png.display()))?;
    let scale_png = options.out.join("scale.png");
    chart::draw_scale(&scale_png, &reports, &machine, mode)
        .map_err(|error| format!("cannot draw {}: {error}", scale_png.display()))?;
    println!("{markdown}");
    eprintln!(
        "cachette-bench: wrote {} and {} in {:.0} s",
        results.display(),
        png.display(),
        began.elapsed().as_secs_f64()
    );

    let mut healthy = capability_notes.is_empty();
    for store in &reports {
        match &store.outcome {
            Outcome::Failed { .. } => healthy = false,
            Outcome::Measured { ops, .. } if ops.iter().any(|op| op.misses() > 0) => {
                eprintln!(
                    "cachette-bench: {} missed keys that must be present",
                    store.name
                );
                healthy = false;
            }
            _ => {}
        }
    }
    Ok(healthy)
}

/// The contenders of one store, borrowed for timing.
struct Contenders<'a> {
    facade: &'a dyn Contender,
    raw: &'a dyn Contender,
    peer: Option<&'a dyn Contender>,
}

/// Times every operation of one store: per operation, a warm-up slice of each contender, then
/// `repeats` rounds in which every contender runs one slice, in an order that rotates from round
/// to round so that none always runs first.
async fn measure_store(
    options: &Options,
    ops: &[measure::Op],
    name: &str,
    bench: &Contenders<'_>,
    step: &mut usize,
    total_steps: usize,
) -> BenchResult<Vec<OpResult>> {
    let mut results = Vec::with_capacity(ops.len());
    for &op in ops {
        *step += 1;
        let began = Instant::now();
        let mut contenders: Vec<&dyn Contender> = vec![bench.facade, bench.raw];
        if let Some(peer) = bench.peer.filter(|peer| peer.supports(op)) {
            contenders.push(peer);
        }
        for contender in &contenders {
            contender
                .run(
                    op,
                    options.warmup_budget(),
                    fastrand::usize(..workload::KEYS),
                )
                .await?;
        }
        let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); contenders.len()];
        for round in 0..options.repeats() {
            for turn in 0..contenders.len() {
                let index = (round + turn) % contenders.len();
                let start = fastrand::usize(..workload::KEYS);
                let sample = contenders[index].run(op, options.budget(), start).await?;
                samples[index].push(sample);
            }
        }
        let mut samples = samples.into_iter();
        let facade = samples.next().unwrap_or_default();
        let raw = samples.next().unwrap_or_default();
        let peer = match (&bench.peer, samples.next()) {
            (None, _) => PeerCell::None,
            (Some(_), None) => PeerCell::Unsupported,
            (Some(_), Some(peer)) => PeerCell::Measured(peer),
        };
        let result = OpResult {
            op,
            facade,
            raw,
            peer,
        };
        progress(
            *step,
            total_steps,
            name,
            &result,
            began.elapsed().as_secs_f64(),
        );
        results.push(result);
    }
    Ok(results)
}

fn progress(step: usize, total: usize, store: &str, result: &OpResult, secs: f64) {
    let rate = |samples: &[Sample]| {
        report::rates(samples).map_or_else(|| "—".to_owned(), |s| report::human(s.median))
    };
    let mut line = format!(
        "[{step:>2}/{total}] {store} · {}: facade {} · raw {} {}",
        result.op.label(),
        rate(&result.facade),
        rate(&result.raw),
        result.op.unit()
    );
    if let Some(ratio) = result.ratio() {
        line.push_str(&format!(" · ratio {:.2}", ratio.median));
    }
    if let PeerCell::Measured(peer) = &result.peer {
        line.push_str(&format!(" · peer {}", rate(peer)));
    }
    let misses = result.misses();
    if misses > 0 {
        line.push_str(&format!(" · {misses} MISSES"));
    }
    line.push_str(&format!(" ({secs:.1} s)"));
    eprintln!("{line}");
}
