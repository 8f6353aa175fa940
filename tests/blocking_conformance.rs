//! The suite's facade cases (the typed cache's groups: facade, faults, loading, freshness, tags
//! and the typed capabilities) on what a blocking user gets: a store opened by
//! `blocking::open`, on the handle's own runtime, each case started with `Store::block_on` from
//! threads without a runtime, over the memory store and a SQLite file. Each case drives the
//! async cache as one future, so this proves the handle's runtime and store serve every typed
//! feature (background refreshes, single flight, tags); the per-call bridge of
//! `blocking::Cache` itself is tested in `tests/blocking.rs`.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use cache_core::conformance::{Case, cases, run_case};
use cachette::blocking;

/// The groups whose cases build typed caches.
const FACADE_GROUPS: [&str; 6] = [
    "facade",
    "faults",
    "loading",
    "freshness",
    "tags",
    "typed_capabilities",
];

fn message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "panicked".into())
}

fn run_facade_cases(url: &str) {
    let store = blocking::open(url).expect("open the store");
    let facade: Vec<Case> = cases()
        .into_iter()
        .filter(|case| FACADE_GROUPS.contains(&case.group))
        .collect();
    assert!(facade.len() >= 45, "only {} facade cases", facade.len());
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    // Four threads at a time, each taking the next case.
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                loop {
                    let Some(case) = facade.get(next.fetch_add(1, Ordering::SeqCst)) else {
                        return;
                    };
                    let backend = Arc::clone(store.backend());
                    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        store.block_on(run_case(case.run, backend, None))
                    }));
                    let failure = match outcome {
                        Ok(Ok(())) => continue,
                        Ok(Err(error)) => error.to_string(),
                        Err(panic) => message(&*panic),
                    };
                    failures
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(format!("{case:?}: {failure}"));
                }
            });
        }
    });
    let failures = failures
        .into_inner()
        .unwrap_or_else(PoisonError::into_inner);
    assert!(
        failures.is_empty(),
        "{} facade case(s) failed through the blocking bridge:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn facade_cases_pass_through_the_blocking_bridge_on_memory() {
    run_facade_cases("memory://");
}

#[test]
fn facade_cases_pass_through_the_blocking_bridge_on_sqlite() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    run_facade_cases(&format!(
        "sqlite://{}",
        directory.path().join("facade.db").display()
    ));
}
