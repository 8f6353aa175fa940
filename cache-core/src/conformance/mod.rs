//! The conformance suite: what every store must do, as runnable cases.
//!
//! A store's test file runs all of it with one macro call, which expands into one
//! `#[tokio::test]` per case so a failure names its case:
//!
//! ```rust,ignore
//! cache_core::conformance_tests!(async {
//!     std::sync::Arc::new(MyStore::new()) as std::sync::Arc<dyn cache_core::Backend>
//! });
//! ```
//!
//! The expression is evaluated once per case and must produce an `Arc<dyn Backend>` when
//! awaited; the crate needs `tokio` (with `macros` and `rt-multi-thread`) as a dev-dependency.
//! [`run_conformance`] runs the same cases at run time against any `Arc<dyn Backend>`, which is
//! what `cargo xtask conformance URL` does.
//!
//! Every case works under its own random key prefix, so cases run in parallel on one shared
//! server, and removes its keys when it passes.
//!
//! One more case needs a way to take the store's server away and bring it back, so a store
//! with a server runs it from a test of its own: [`outage::run`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::{Backend, Cache, CacheBuilder, Result};

pub mod cases;
pub mod outage;

/// What a case returns: `Ok` when it passed. Assertion failures panic with a message.
pub type CaseFuture = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// One case of the suite.
#[derive(Clone, Copy)]
pub struct Case {
    /// The group, e.g. `ttl`.
    pub group: &'static str,
    /// The case, e.g. `expired_key_is_absent_for_get`.
    pub name: &'static str,
    /// Runs the case.
    pub run: fn(Ctx) -> CaseFuture,
}

impl std::fmt::Debug for Case {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}::{}", self.group, self.name)
    }
}

/// Every case of the suite, in order.
pub fn cases() -> Vec<Case> {
    macro_rules! table {
        ($(($group:ident :: $case:ident))*) => {
            vec![$(Case {
                group: stringify!($group),
                name: stringify!($case),
                run: |ctx| Box::pin(cases::$group::$case(ctx)),
            }),*]
        };
    }
    crate::__conformance_case_list!([table])
}

/// What a case receives: the store, and a random key prefix of its own.
#[derive(Debug, Clone)]
pub struct Ctx {
    backend: Arc<dyn Backend>,
    prefix: String,
}

impl Ctx {
    /// A context with a fresh random prefix.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        let tag: String = std::iter::repeat_with(fastrand::alphanumeric)
            .take(12)
            .collect();
        Self {
            backend,
            prefix: format!("cachette-conformance:{tag}:"),
        }
    }

    /// The store under test.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// This case's prefix; every key the case touches starts with it.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full store key for `name`.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// A cache over the store with this case's prefix.
    pub fn cache<V: Serialize + for<'de> Deserialize<'de> + Send + Sync + 'static>(
        &self,
    ) -> Cache<V> {
        self.builder().build()
    }

    /// A cache builder over the store with this case's prefix.
    pub fn builder<V: Send + Sync + 'static>(&self) -> CacheBuilder<V> {
        Cache::builder(Arc::clone(&self.backend)).prefix(self.prefix.clone())
    }
}

/// Runs one case against the store the factory makes and panics with the case's failure; what
/// `conformance_tests!` calls.
pub async fn run_case(case: fn(Ctx) -> CaseFuture, backend: Arc<dyn Backend>) {
    let ctx = Ctx::new(backend);
    if let Err(error) = case(ctx.clone()).await {
        panic!("case returned an error: {error}");
    }
    // Tidy up only after a pass, so a failure leaves its keys for a look.
    if let Err(error) = ctx.backend.clear_prefix(&ctx.prefix).await {
        panic!("case passed, but removing its keys failed: {error}");
    }
}

/// How one case ended in [`run_conformance`].
#[derive(Debug, Clone)]
pub struct CaseReport {
    /// `group::name`.
    pub case: String,
    /// `None` when it passed, else why it failed.
    pub failure: Option<String>,
    /// How long it ran.
    pub elapsed: Duration,
}

/// Runs every case against `backend` at run time, `parallelism` at a time, and reports each.
/// Requires a running Tokio runtime.
pub async fn run_conformance(backend: Arc<dyn Backend>, parallelism: usize) -> Vec<CaseReport> {
    let semaphore = Arc::new(tokio::sync::Semaphore::new(parallelism.max(1)));
    let mut tasks = Vec::new();
    for case in cases() {
        let backend = Arc::clone(&backend);
        let semaphore = Arc::clone(&semaphore);
        tasks.push(tokio::spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            let started = Instant::now();
            let outcome = tokio::spawn(run_case(case.run, backend)).await;
            let failure = match outcome {
                Ok(()) => None,
                Err(error) if error.is_panic() => Some(panic_message(error.into_panic())),
                Err(error) => Some(error.to_string()),
            };
            CaseReport {
                case: format!("{}::{}", case.group, case.name),
                failure,
                elapsed: started.elapsed(),
            }
        }));
    }
    let mut reports = Vec::with_capacity(tasks.len());
    for task in tasks {
        match task.await {
            Ok(report) => reports.push(report),
            Err(error) => reports.push(CaseReport {
                case: "runner".into(),
                failure: Some(error.to_string()),
                elapsed: Duration::ZERO,
            }),
        }
    }
    reports
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "panicked".to_owned()
    }
}

/// Expands into one `#[tokio::test]` per conformance case, each running against the store that
/// `$factory` (an expression that, awaited, gives an `Arc<dyn Backend>`) makes.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr $(,)?) => {
        $crate::__conformance_case_list! { [$crate::__conformance_test_fns] ($factory) }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_test_fns {
    (($factory:expr) $(($group:ident :: $case:ident))*) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let backend: ::std::sync::Arc<dyn $crate::Backend> = $factory.await;
                $crate::conformance::run_case(
                    |ctx| ::std::boxed::Box::pin($crate::conformance::cases::$group::$case(ctx)),
                    backend,
                )
                .await;
            }
        )*
    };
}
