//! The command line.

use std::path::PathBuf;
use std::time::Duration;

use crate::measure::{Budget, Op};

/// The usage text, also printed by `--help`.
pub const USAGE: &str = "\
cachette-bench: every cachette store through the typed facade next to its raw driver and peers.

USAGE:
    cachette-bench [--quick] [--out DIR] [--only STORE[,STORE...]] [--ops OP[,OP...]] [--calls N]

OPTIONS:
    --quick        5 slices of 20 ms instead of 10 of 250 ms: a smoke check in seconds
    --out DIR      where results.md and ratios.png go
                   [default: <workspace>/target/bench, or <workspace>/target/bench/quick with --quick]
    --only LIST    run only these stores: memory, sqlite, redis, redis-cluster, postgres (both tables),
                   postgres-logged, postgres-unlogged, and the Observe layer's rows:
                   memory-tracing, memory-metrics, sqlite-tracing, sqlite-metrics
                   (observe: all four); and freshness's rows: memory-fresh,
                   memory-stale, sqlite-fresh, sqlite-stale (freshness: all four); and
                   the tags rows: memory-tags1, memory-tags5 and the same for sqlite,
                   redis and postgres (tags: all eight); and the protected-value rows:
                   memory-signed, memory-encrypted, memory-compressed and the same for
                   sqlite (protect: all six); and the local tier's rows: memory-local,
                   memory-local-arc, sqlite-local, redis-local, postgres-local (local: all five);
                   and other serializers against CBOR: memory-msgpack, memory-json,
                   sqlite-msgpack, sqlite-json (serializers: all four)
    --ops LIST     run only these operations: get, set, get_many, set_many, get64, and
                   scale: get_many of 1, 10, 100, 1,000 and 10,000 keys and get from 1, 8,
                   64 and 256 tasks, on memory, sqlite, redis, redis-cluster and
                   postgres-unlogged only
                   [default: all of them]
    --calls N      every slice makes N calls instead of running for a time (for profilers
                   such as callgrind, which slow calls too much for time slices)
    -h, --help     this text

ENVIRONMENT:
    CACHETTE_REDIS_URL      Redis server, e.g. redis://127.0.0.1:6379/0; unset: Redis is skipped
    CACHETTE_REDIS_CLUSTER_URL
                            Redis Cluster, e.g. redis+cluster://127.0.0.1:7000,127.0.0.1:7001;
                            unset: the cluster is skipped
    CACHETTE_POSTGRES_URL   PostgreSQL server, e.g. postgres://postgres@127.0.0.1:5432/test;
                            unset: PostgreSQL is skipped
";

/// The stores, as `--only` names them.
pub const STORE_NAMES: [&str; 37] = [
    "memory",
    "memory-tracing",
    "memory-metrics",
    "memory-fresh",
    "memory-stale",
    "sqlite",
    "sqlite-tracing",
    "sqlite-metrics",
    "sqlite-fresh",
    "sqlite-stale",
    "memory-signed",
    "memory-encrypted",
    "memory-compressed",
    "sqlite-signed",
    "sqlite-encrypted",
    "sqlite-compressed",
    "memory-msgpack",
    "memory-json",
    "sqlite-msgpack",
    "sqlite-json",
    "memory-tags1",
    "memory-tags5",
    "sqlite-tags1",
    "sqlite-tags5",
    "redis",
    "redis-cluster",
    "postgres-logged",
    "postgres-unlogged",
    "redis-tags1",
    "redis-tags5",
    "postgres-tags1",
    "postgres-tags5",
    "memory-local",
    "memory-local-arc",
    "sqlite-local",
    "redis-local",
    "postgres-local",
];

/// Parsed options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Smoke mode.
    pub quick: bool,
    /// Output directory.
    pub out: PathBuf,
    /// Stores to run (names from [`STORE_NAMES`]).
    pub only: Vec<&'static str>,
    /// Operations to run.
    pub ops: Vec<Op>,
    /// Calls per slice instead of a time, for profilers.
    pub calls: Option<u64>,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Run the benchmark.
    Run(Options),
    /// Print [`USAGE`].
    Help,
}

impl Options {
    /// Timed slices per contender and operation. Many short slices rather than a few long
    /// ones: a facade slice and the raw slice after it then share the same moment of a busy
    /// machine, and their ratio is steadier.
    pub fn repeats(&self) -> usize {
        if self.quick { 5 } else { 10 }
    }

    /// Length of one timed slice.
    pub fn slice(&self) -> Duration {
        if self.quick {
            Duration::from_millis(20)
        } else {
            Duration::from_millis(250)
        }
    }

    /// Length of the untimed warm-up slice before the timed ones.
    pub fn warmup(&self) -> Duration {
        if self.quick {
            Duration::from_millis(10)
        } else {
            Duration::from_millis(300)
        }
    }

    /// The budget of one timed slice.
    pub fn budget(&self) -> Budget {
        self.calls.map_or(Budget::For(self.slice()), Budget::Calls)
    }

    /// The budget of the warm-up slice.
    pub fn warmup_budget(&self) -> Budget {
        self.calls.map_or(Budget::For(self.warmup()), |calls| {
            Budget::Calls((calls / 10).max(1))
        })
    }

    /// Whether `store` (a name from [`STORE_NAMES`]) runs.
    pub fn runs(&self, store: &str) -> bool {
        self.only.contains(&store)
    }
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut quick = false;
    let mut out = None;
    let mut only: Option<Vec<&'static str>> = None;
    let mut ops: Option<Vec<Op>> = None;
    let mut calls = None;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--out" => {
                let dir = args.next().ok_or("--out needs a directory")?;
                out = Some(PathBuf::from(dir));
            }
            "--only" => {
                let list = args.next().ok_or("--only needs a list of stores")?;
                let mut stores = Vec::new();
                for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    if name == "postgres" {
                        stores.extend(["postgres-logged", "postgres-unlogged"]);
                        continue;
                    }
                    if name == "tags" {
                        stores.extend(STORE_NAMES.iter().filter(|store| store.contains("-tags")));
                        continue;
                    }
                    if name == "freshness" {
                        stores.extend([
                            "memory-fresh",
                            "memory-stale",
                            "sqlite-fresh",
                            "sqlite-stale",
                        ]);
                        continue;
                    }
                    if name == "protect" {
                        stores.extend(STORE_NAMES.iter().filter(|store| {
                            store.ends_with("-signed")
                                || store.ends_with("-encrypted")
                                || store.ends_with("-compressed")
                        }));
                        continue;
                    }
                    if name == "serializers" {
                        stores.extend([
                            "memory-msgpack",
                            "memory-json",
                            "sqlite-msgpack",
                            "sqlite-json",
                        ]);
                        continue;
                    }
                    if name == "local" {
                        stores.extend(STORE_NAMES.iter().filter(|store| store.contains("-local")));
                        continue;
                    }
                    if name == "observe" {
                        stores.extend([
                            "memory-tracing",
                            "memory-metrics",
                            "sqlite-tracing",
                            "sqlite-metrics",
                        ]);
                        continue;
                    }
                    let known = STORE_NAMES
                        .iter()
                        .find(|known| **known == name)
                        .ok_or_else(|| {
                            format!(
                                "unknown store {name:?} for --only (known: {}, postgres, observe, freshness, tags, protect, serializers, local)",
                                STORE_NAMES.join(", ")
                            )
                        })?;
                    stores.push(*known);
                }
                if stores.is_empty() {
                    return Err("--only needs at least one store".into());
                }
                only = Some(stores);
            }
            "--ops" => {
                let list = args.next().ok_or("--ops needs a list of operations")?;
                let mut chosen = Vec::new();
                for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    if name == "scale" {
                        chosen.extend(Op::SCALE);
                        continue;
                    }
                    let op = Op::ALL
                        .into_iter()
                        .find(|op| op.name() == name)
                        .ok_or_else(|| {
                            format!(
                                "unknown operation {name:?} for --ops (known: {}, scale)",
                                Op::ALL.map(Op::name).join(", ")
                            )
                        })?;
                    chosen.push(op);
                }
                if chosen.is_empty() {
                    return Err("--ops needs at least one operation".into());
                }
                ops = Some(chosen);
            }
            "--calls" => {
                let count = args.next().ok_or("--calls needs a number")?;
                let count: u64 =
                    count
                        .parse()
                        .ok()
                        .filter(|count| *count > 0)
                        .ok_or_else(|| {
                            format!("--calls needs a positive whole number, not {count:?}")
                        })?;
                calls = Some(count);
            }
            "-h" | "--help" => return Ok(Command::Help),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let out = out.unwrap_or_else(|| {
        let base = workspace_root().join("target").join("bench");
        if quick { base.join("quick") } else { base }
    });
    Ok(Command::Run(Options {
        quick,
        out,
        only: only.unwrap_or_else(|| STORE_NAMES.to_vec()),
        ops: ops.unwrap_or_else(|| Op::ALL.into_iter().chain(Op::SCALE).collect()),
        calls,
    }))
}

/// The workspace this binary was built from: `target/bench` is under it whatever directory
/// `cargo run` was started in.
fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map_or_else(|| manifest.clone(), PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(words: &str) -> Result<Command, String> {
        parse(words.split_whitespace().map(String::from))
    }

    #[test]
    fn defaults_run_every_store_in_full_mode() {
        let Ok(Command::Run(options)) = parse_words("") else {
            panic!("no arguments must run");
        };
        assert!(!options.quick);
        assert_eq!(options.only, STORE_NAMES.to_vec());
        assert!(options.out.ends_with("target/bench"));
    }

    #[test]
    fn quick_writes_apart_from_the_full_results() {
        let Ok(Command::Run(options)) = parse_words("--quick") else {
            panic!("--quick must run");
        };
        assert!(options.quick);
        assert!(options.out.ends_with("target/bench/quick"));
        assert!(options.slice() < Duration::from_millis(100));
    }

    #[test]
    fn only_selects_stores_and_postgres_means_both_tables() {
        let Ok(Command::Run(options)) = parse_words("--only memory,postgres --out /tmp/x") else {
            panic!("--only must run");
        };
        assert_eq!(
            options.only,
            vec!["memory", "postgres-logged", "postgres-unlogged"]
        );
        assert_eq!(options.out, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn ops_and_calls_narrow_a_run_for_a_profiler() {
        let Ok(Command::Run(options)) = parse_words("--ops get,set_many --calls 5000") else {
            panic!("--ops and --calls must run");
        };
        assert_eq!(options.ops, vec![Op::Get, Op::SetMany]);
        assert_eq!(options.budget(), Budget::Calls(5000));
        assert_eq!(options.warmup_budget(), Budget::Calls(500));
        let Ok(Command::Run(options)) = parse_words("") else {
            panic!("no arguments must run");
        };
        assert_eq!(options.ops[..5], Op::ALL);
        assert_eq!(options.ops[5..], Op::SCALE);
        assert_eq!(options.budget(), Budget::For(Duration::from_millis(250)));
        let Ok(Command::Run(options)) = parse_words("--ops get64,scale") else {
            panic!("--ops scale must run");
        };
        assert_eq!(options.ops[0], Op::ConcurrentGet);
        assert_eq!(options.ops[1..], Op::SCALE);
    }

    #[test]
    fn bad_arguments_are_errors() {
        assert!(parse_words("--ops put").is_err());
        assert!(parse_words("--calls 0").is_err());
        assert!(parse_words("--calls many").is_err());
        assert!(parse_words("--only mysql").is_err());
        assert!(parse_words("--only").is_err());
        assert!(parse_words("--out").is_err());
        assert!(parse_words("--fast").is_err());
        assert!(matches!(parse_words("--help"), Ok(Command::Help)));
    }
}
