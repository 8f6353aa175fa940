//! The conformance suite: what every store must do, as runnable cases.
//!
//! A store's test file runs all of it with one macro call. The macro expands into one
//! `#[tokio::test]` per case, so a failure names its case, plus one test,
//! `all_cases_on_one_shared_store`, that runs every case at once on one store, as
//! [`run_conformance`] does: some bugs show only when each case has a fresh store, others only
//! when many cases share one.
//!
//! ```rust,ignore
//! // Each await makes a new, empty store of its own (an in-process store):
//! cache_core::conformance_tests!(async {
//!     std::sync::Arc::new(MyStore::new()) as std::sync::Arc<dyn cache_core::Backend>
//! });
//!
//! // Each await opens a new handle on one shared store (a server, a file): cases then also read
//! // through a second handle, on its own connection, what the first one wrote.
//! cache_core::conformance_tests!(handles = async {
//!     std::sync::Arc::new(MyStore::open(URL).await.unwrap()) as std::sync::Arc<dyn cache_core::Backend>
//! });
//! ```
//!
//! The crate needs `tokio` (with `macros` and `rt-multi-thread`) as a dev-dependency.
//! [`run_conformance`] runs the same cases at run time against any `Arc<dyn Backend>`, which is
//! what `cargo xtask conformance URL` does.
//!
//! # Cases that need the store to themselves
//! Every case works under its own random key prefix, so cases run in parallel on one shared
//! server, and removes its keys when it passes. A few cases ([`Case::exclusive`]) look at the
//! whole store: clearing the empty prefix, the raw empty key `""`. The macro runs them one at a
//! time while no other case of the test binary runs (a process-wide gate), so in `handles` mode
//! they assume that no other program uses the store meanwhile. [`run_conformance`] runs them last,
//! alone, and only when [`RunOptions::exclusive`] says the store is the run's to empty; otherwise
//! it reports them as not run.
//!
//! # What the suite proves, and what it cannot see
//! The cases check every sentence of the contract in [`Backend`]'s docs on each path where a
//! store implements it separately (single, conditional and batch writes, `expire_in`; every read),
//! right after the write and after time has passed, next to near-miss keys, with batches larger
//! than any chunk a store would pick, and with a reader on a second handle. Black-box, they cannot
//! see: a TTL off by less than about a millisecond (each store unit-tests its own conversion
//! against [`ttl_millis`](crate::raw::ttl_millis)); atomicity across Redis Cluster hash slots (the
//! contract promises it per slot only); a bounded store's eviction policy; durability across a
//! crash (the outage case, [`outage::run`], covers a restart).
//!
//! # Timeouts
//! Some cases move 64 MiB values and batches of 100,000 keys, and other calls of the same handle
//! may queue behind them (one multiplexed connection serves its calls in order). Give the store
//! call timeouts of several seconds for the suite, or correct calls may time out on a busy
//! machine.
//!
//! # Working set
//! One case holds at most [`WORKING_SET_KEYS`] keys and [`WORKING_SET_BYTES`] bytes of values
//! alive at once; all cases at once (the shared-store test, [`run_conformance`] with its
//! default parallelism) hold at most about 150,000 keys and 100 MiB. A bounded store must be
//! configured at least that big to pass, or it may evict what a case is about to read.
//!
//! One more case needs a way to take the store's server away and bring it back, so a store
//! with a server runs it from a test of its own: [`outage::run`].

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::{Backend, Cache, CacheBuilder, Result};

#[doc(hidden)]
pub use crate::planted::FacadeBug;

pub mod cases;
pub mod outage;
pub mod secrets;
mod under_test;

pub use under_test::{CacheUnderTest, GuardUnderTest, LockUnderTest, WalkStream};

/// The most keys one case holds alive at once: the 100,000 keys written beside a timer to show
/// that no batch stalls the runtime (every other case holds at most about 27,000).
pub const WORKING_SET_KEYS: usize = 100_000;

/// The most value bytes one case holds alive at once (the 64 MiB value).
pub const WORKING_SET_BYTES: usize = 65 * 1024 * 1024;

/// The groups whose cases drive the typed cache rather than the store: what a facade of its
/// own (the blocking one) runs.
pub const FACADE_GROUPS: [&str; 8] = [
    "facade",
    "faults",
    "loading",
    "locks",
    "freshness",
    "tags",
    "typed_capabilities",
    "local",
];

/// What a case returns: `Ok` when it passed. Assertion failures panic with a message.
pub type CaseFuture = Pin<Box<dyn Future<Output = Result<()>> + Send>>;

/// One case of the suite.
#[derive(Clone, Copy)]
pub struct Case {
    /// The group, e.g. `ttl`.
    pub group: &'static str,
    /// The case, e.g. `expired_key_is_absent_for_get`.
    pub name: &'static str,
    /// Whether the case needs the store to itself: it looks at keys outside its own prefix
    /// (clearing the empty prefix, the raw empty key), so no other case may run meanwhile.
    pub exclusive: bool,
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
        ($(($group:ident :: $case:ident $($exclusive:ident)?))*) => {
            vec![$(Case {
                group: stringify!($group),
                name: stringify!($case),
                exclusive: $crate::__conformance_is_exclusive!($($exclusive)?),
                run: |ctx| Box::pin(cases::$group::$case(ctx)),
            }),*]
        };
    }
    crate::__conformance_case_list!([table])
}

/// What a case receives: the store, a second handle on it, and a random key prefix of its own.
#[derive(Debug, Clone)]
pub struct Ctx {
    backend: Arc<dyn Backend>,
    peer: Arc<dyn Backend>,
    prefix: String,
    facade_bug: Option<FacadeBug>,
    /// The local tier every typed cache of the case gets, if the run gives one.
    local: Option<crate::LocalTier>,
    /// The runtime of the blocking facade the cases drive, if they drive that one.
    #[cfg(feature = "blocking")]
    blocking: Option<crate::blocking::Runtime>,
}

impl Ctx {
    /// A context with a fresh random prefix, whose peer is the store itself.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        let peer = Arc::clone(&backend);
        Self::with_peer(backend, peer)
    }

    /// A context with a fresh random prefix and `peer`, another handle on the same data (its own
    /// connection to the same server, the same file opened again).
    pub fn with_peer(backend: Arc<dyn Backend>, peer: Arc<dyn Backend>) -> Self {
        let tag: String = std::iter::repeat_with(fastrand::alphanumeric)
            .take(12)
            .collect();
        Self {
            backend,
            peer,
            prefix: format!("cachette-conformance:{tag}:"),
            facade_bug: None,
            local: None,
            #[cfg(feature = "blocking")]
            blocking: None,
        }
    }

    /// The store under test.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Another handle on the same data, for readers that must not share the writer's
    /// connection (a connection serves its own calls in order, which hides torn batches). The
    /// store itself when it has no second handle (an in-process store).
    pub fn peer(&self) -> &Arc<dyn Backend> {
        &self.peer
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
    pub fn cache<V: Serialize + for<'de> Deserialize<'de> + Clone + Send + Sync + 'static>(
        &self,
    ) -> CacheUnderTest<V> {
        self.typed(self.builder())
    }

    /// The cache `builder` builds, as the facade under test: the async cache, or its blocking
    /// twin in a context made by [`Ctx::through_blocking`].
    pub fn typed<V, S>(&self, builder: CacheBuilder<V, S>) -> CacheUnderTest<V>
    where
        V: Clone + Send + Sync + 'static,
        S: crate::Serializer<V>,
    {
        let builder = match &self.local {
            Some(tier) => builder.local(tier.clone()),
            None => builder,
        };
        let cache = builder.build();
        #[cfg(feature = "blocking")]
        if let Some(runtime) = &self.blocking {
            return CacheUnderTest::blocking(runtime.cache(cache));
        }
        CacheUnderTest::new(cache)
    }

    /// This context, whose typed caches are the blocking facade over `runtime`: each verb is
    /// called from a plain thread of its own, as a program without an async runtime calls it.
    #[cfg(feature = "blocking")]
    pub fn through_blocking(mut self, runtime: crate::blocking::Runtime) -> Self {
        self.blocking = Some(runtime);
        self
    }

    /// This context, whose typed caches all have the local tier `tier` in front of the store.
    /// Its store handles (and every cache built over them) announce their writes, so that raw
    /// writes of a case reach the tiers at once, as a cache's own do; the second handle is the
    /// first one, since another handle's writes arrive over the store's channel, a few
    /// milliseconds later (the coherence tests of each store measure that).
    pub fn with_local_tier(mut self, tier: crate::LocalTier) -> Self {
        use crate::Layer as _;
        self.backend = crate::raw::invalidation::PublishWrites.layer(Arc::clone(&self.backend));
        self.peer = Arc::clone(&self.backend);
        self.local = Some(tier);
        self
    }

    /// Whether the typed caches of this context have a local tier.
    pub fn has_local_tier(&self) -> bool {
        self.local.is_some()
    }

    /// Goes on when the facade under test lets a caller be cancelled; a blocking call cannot
    /// be, so a case that cancels callers is not applicable to the blocking facade.
    pub fn require_cancellable_callers(&self) -> Result<()> {
        #[cfg(feature = "blocking")]
        if self.blocking.is_some() {
            return Err(crate::Error::unsupported(
                "blocking facade",
                "cancelling a caller",
            ));
        }
        Ok(())
    }

    /// A cache builder over the store with this case's prefix.
    pub fn builder<V: Send + Sync + 'static>(&self) -> CacheBuilder<V> {
        Cache::builder(Arc::clone(&self.backend))
            .prefix(self.prefix.clone())
            .planted_bug(self.facade_bug)
    }

    /// This context, whose caches are built with `bug`: for the kit's own test that its cases
    /// catch what they target.
    #[doc(hidden)]
    pub fn with_facade_bug(mut self, bug: FacadeBug) -> Self {
        self.facade_bug = Some(bug);
        self
    }
}

/// Runs one case against `backend` with caches built with `bug`, and panics with its failure:
/// for the kit's own test that its cases catch what they target.
#[doc(hidden)]
pub async fn run_case_with_facade_bug(
    case: fn(Ctx) -> CaseFuture,
    backend: Arc<dyn Backend>,
    bug: Option<FacadeBug>,
) {
    let mut ctx = Ctx::new(backend);
    ctx.facade_bug = bug;
    if let Err(error) = case(ctx).await {
        panic!("case returned an error: {error}");
    }
}

/// Runs one case against `backend` (with `peer` as its second handle, or the store itself) and
/// panics with the case's failure; what `conformance_tests!` calls.
pub async fn run_case(
    case: fn(Ctx) -> CaseFuture,
    backend: Arc<dyn Backend>,
    peer: Option<Arc<dyn Backend>>,
) {
    let ctx = match peer {
        Some(peer) => Ctx::with_peer(backend, peer),
        None => Ctx::new(backend),
    };
    run_case_in(case, ctx).await;
}

/// Runs one case in `ctx` (its store, second handle and prefix, and the facade under test) and
/// panics with the case's failure.
pub async fn run_case_in(case: fn(Ctx) -> CaseFuture, ctx: Ctx) {
    match case(ctx.clone()).await {
        Ok(()) => {}
        // A test of the macro cannot end as "not applicable", so it fails, saying why;
        // `run_conformance` reports such a case as not applicable instead.
        Err(error @ crate::Error::Unsupported { .. }) => {
            panic!("{NOT_APPLICABLE}: {error}")
        }
        Err(error) => panic!("case returned an error: {error}"),
    }
    // Tidy up only after a pass, so a failure leaves its keys for a look.
    if let Err(error) = ctx.backend.clear_prefix(&ctx.prefix).await {
        panic!("case passed, but removing its keys failed: {error}");
    }
}

/// How a case that met [`Error::Unsupported`](crate::Error::Unsupported) begins its failure.
const NOT_APPLICABLE: &str = "not applicable";

/// The process-wide gate of the test macro: ordinary cases share it, an exclusive case (and the
/// shared-store run) holds it alone, so nothing else of the test binary touches the store then.
#[doc(hidden)]
pub enum Gate {
    Shared(RwLockReadGuard<'static, ()>),
    Alone(RwLockWriteGuard<'static, ()>),
}

#[doc(hidden)]
pub async fn gate(alone: bool) -> Gate {
    static GATE: OnceLock<RwLock<()>> = OnceLock::new();
    let gate = GATE.get_or_init(|| RwLock::new(()));
    if alone {
        Gate::Alone(gate.write().await)
    } else {
        Gate::Shared(gate.read().await)
    }
}

/// How [`run_conformance`] runs the suite.
#[derive(Debug, Clone)]
#[must_use]
pub struct RunOptions {
    backend: Arc<dyn Backend>,
    peer: Option<Arc<dyn Backend>>,
    parallelism: usize,
    exclusive: bool,
    groups: Option<Vec<&'static str>>,
    facade_bug: Option<FacadeBug>,
    local: Option<crate::LocalTier>,
    #[cfg(feature = "blocking")]
    blocking: Option<crate::blocking::Runtime>,
}

impl RunOptions {
    /// Every case against `backend`, 16 at a time, without the exclusive cases.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Self {
            backend,
            peer: None,
            parallelism: 16,
            exclusive: false,
            groups: None,
            facade_bug: None,
            local: None,
            #[cfg(feature = "blocking")]
            blocking: None,
        }
    }

    /// Every typed cache of the cases gets the local tier `tier` (see
    /// [`Ctx::with_local_tier`]); run it with [`FACADE_GROUPS`].
    pub fn local_tier(mut self, tier: crate::LocalTier) -> Self {
        self.local = Some(tier);
        self
    }

    /// Only the cases of `groups` (e.g. [`FACADE_GROUPS`]); the others are left out of the report.
    pub fn only_groups(mut self, groups: &[&'static str]) -> Self {
        self.groups = Some(groups.to_vec());
        self
    }

    /// The typed caches of the cases are the blocking facade over `runtime` (see
    /// [`Ctx::through_blocking`]); run it with [`FACADE_GROUPS`].
    #[cfg(feature = "blocking")]
    pub fn through_blocking(mut self, runtime: crate::blocking::Runtime) -> Self {
        self.blocking = Some(runtime);
        self
    }

    /// The cases' caches are built with `bug`: for the kit's own test that its cases catch
    /// what they target.
    #[doc(hidden)]
    pub fn facade_bug(mut self, bug: FacadeBug) -> Self {
        self.facade_bug = Some(bug);
        self
    }

    fn ctx(&self) -> Ctx {
        let mut ctx = match &self.peer {
            Some(peer) => Ctx::with_peer(Arc::clone(&self.backend), Arc::clone(peer)),
            None => Ctx::new(Arc::clone(&self.backend)),
        };
        ctx.facade_bug = self.facade_bug;
        if let Some(tier) = &self.local {
            ctx = ctx.with_local_tier(tier.clone());
        }
        #[cfg(feature = "blocking")]
        if let Some(runtime) = &self.blocking {
            ctx = ctx.through_blocking(runtime.clone());
        }
        ctx
    }

    fn runs(&self, case: &Case) -> bool {
        self.groups
            .as_ref()
            .is_none_or(|groups| groups.contains(&case.group))
    }

    /// A second handle on the same data, for the cases that read on another connection.
    pub fn peer(mut self, peer: Arc<dyn Backend>) -> Self {
        self.peer = Some(peer);
        self
    }

    /// How many cases run at once (at least one).
    pub fn parallelism(mut self, cases: usize) -> Self {
        self.parallelism = cases.max(1);
        self
    }

    /// Whether the store is this run's alone, so that the exclusive cases may run (last, one at a
    /// time). They clear the empty prefix, which empties the store.
    pub fn exclusive(mut self, store_is_ours: bool) -> Self {
        self.exclusive = store_is_ours;
        self
    }
}

/// How one case ended in [`run_conformance`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The case passed.
    Passed,
    /// The case failed, and why.
    Failed(String),
    /// The case did not run, and why (an exclusive case on a store that is not the run's alone).
    NotRun(&'static str),
    /// The case needs a capability the store does not have: the store's
    /// [`Error::Unsupported`](crate::Error::Unsupported), as a sentence. Never counted as passed.
    NotApplicable(String),
}

/// How one case ended in [`run_conformance`].
#[derive(Debug, Clone)]
pub struct CaseReport {
    /// `group::name`.
    pub case: String,
    /// Passed, failed or not run.
    pub verdict: Verdict,
    /// How long it ran.
    pub elapsed: Duration,
}

impl CaseReport {
    /// Why the case failed, if it did.
    pub fn failure(&self) -> Option<&str> {
        match &self.verdict {
            Verdict::Failed(why) => Some(why),
            _ => None,
        }
    }
}

/// Runs every case as `options` say and reports each: the cases at once, in the suite's order;
/// then the case that times the runtime (a timer beside a big batch), alone; then the exclusive
/// cases, one at a time. Requires a running Tokio
/// runtime.
pub async fn run_conformance(options: RunOptions) -> Vec<CaseReport> {
    let all: Vec<Case> = cases()
        .into_iter()
        .filter(|case| options.runs(case))
        .collect();
    let semaphore = Arc::new(tokio::sync::Semaphore::new(options.parallelism));
    let mut tasks = Vec::new();
    let together = |case: &Case| !case.exclusive && !times_the_runtime(case);
    for case in all.iter().copied().filter(together) {
        let (options, semaphore) = (options.clone(), Arc::clone(&semaphore));
        tasks.push(tokio::spawn(async move {
            let _permit = semaphore.acquire_owned().await;
            run_reported(case, &options).await
        }));
    }
    let mut reports = Vec::with_capacity(all.len());
    for task in tasks {
        reports.push(task.await.unwrap_or_else(|error| CaseReport {
            case: "runner".into(),
            verdict: Verdict::Failed(error.to_string()),
            elapsed: Duration::ZERO,
        }));
    }
    // Alone on a quiet runtime: with every other case at once on two workers, a timer is late
    // for want of a free worker, not because the store blocked one.
    for case in all.iter().copied().filter(times_the_runtime) {
        reports.push(run_reported(case, &options).await);
    }
    for case in all.into_iter().filter(|case| case.exclusive) {
        reports.push(if options.exclusive {
            run_reported(case, &options).await
        } else {
            CaseReport {
                case: format!("{case:?}"),
                verdict: Verdict::NotRun(
                    "it empties the store: run it on a store of its own (--exclusive)",
                ),
                elapsed: Duration::ZERO,
            }
        });
    }
    reports
}

/// The facade cases that cancel a caller: not applicable to a facade whose calls cannot be
/// cancelled (the blocking one).
pub const CANCELLING_CASES: [&str; 3] = [
    "freshness::cancelled_readers_neither_stop_a_refresh_nor_block_a_load",
    "loading::cancelled_loader_lets_a_waiter_take_over",
    "locks::cancelled_lock_holders_and_waiters_lose_nothing",
];

/// Panics unless at least `at_least` cases ran, none failed or was left out, and the cases
/// reported not applicable are exactly `not_applicable` (in any order): what a test of a
/// facade, or of a store without some capability, asserts of [`run_conformance`]'s reports.
pub fn assert_reports(reports: &[CaseReport], at_least: usize, not_applicable: &[&str]) {
    assert!(
        reports.len() >= at_least,
        "only {} cases ran",
        reports.len()
    );
    let failures: Vec<String> = reports
        .iter()
        .filter_map(|report| match &report.verdict {
            Verdict::Failed(why) => Some(format!("{}: {why}", report.case)),
            Verdict::NotRun(why) => Some(format!("{} was not run: {why}", report.case)),
            Verdict::Passed | Verdict::NotApplicable(_) => None,
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let mut found: Vec<&str> = reports
        .iter()
        .filter(|report| matches!(report.verdict, Verdict::NotApplicable(_)))
        .map(|report| report.case.as_str())
        .collect();
    found.sort_unstable();
    let mut expected = not_applicable.to_vec();
    expected.sort_unstable();
    assert_eq!(found, expected, "the cases not applicable");
}

/// Whether `case` times the runtime it runs on (a timer beside a big batch), so that it must
/// not share the runtime with every other case.
fn times_the_runtime(case: &Case) -> bool {
    (case.group, case.name) == ("atomicity", "big_batches_never_stall_the_runtime")
}

async fn run_reported(case: Case, options: &RunOptions) -> CaseReport {
    let started = Instant::now();
    let outcome = tokio::spawn(run_case_in(case.run, options.ctx())).await;
    let verdict = match outcome {
        Ok(()) => Verdict::Passed,
        Err(error) if error.is_panic() => {
            let message = panic_message(error.into_panic());
            match message.strip_prefix(NOT_APPLICABLE) {
                Some(why) => Verdict::NotApplicable(why.trim_start_matches(": ").to_owned()),
                None => Verdict::Failed(message),
            }
        }
        Err(error) => Verdict::Failed(error.to_string()),
    };
    CaseReport {
        case: format!("{case:?}"),
        verdict,
        elapsed: started.elapsed(),
    }
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

/// Runs every case at once on one store, as [`run_conformance`] does with the exclusive cases,
/// and panics listing the cases that failed; the macro's `all_cases_on_one_shared_store`.
pub async fn run_all_on_one_store(backend: Arc<dyn Backend>, peer: Option<Arc<dyn Backend>>) {
    let mut options = RunOptions::new(backend).exclusive(true);
    if let Some(peer) = peer {
        options = options.peer(peer);
    }
    let failures: Vec<String> = run_conformance(options)
        .await
        .into_iter()
        .filter_map(|report| match report.verdict {
            Verdict::Passed => None,
            Verdict::Failed(why) => Some(format!("{}: {why}", report.case)),
            Verdict::NotRun(why) => Some(format!("{} was not run: {why}", report.case)),
            Verdict::NotApplicable(why) => {
                Some(format!("{} is not applicable: {why}", report.case))
            }
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} case(s) failed on one shared store:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Expands into one `#[tokio::test]` per conformance case, each running against the store that
/// the factory (an expression that, awaited, gives an `Arc<dyn Backend>`) makes, plus
/// `all_cases_on_one_shared_store`, which runs them all at once on one store.
///
/// `conformance_tests!(factory)`: each await makes a new, empty store of its own.
/// `conformance_tests!(handles = factory)`: each await opens another handle on one shared store;
/// every case then gets a second handle as [`Ctx::peer`]. See the [module docs](self) for the
/// exclusive cases.
#[macro_export]
macro_rules! conformance_tests {
    (handles = $factory:expr $(,)?) => {
        $crate::__conformance_case_list! { [$crate::__conformance_test_fns] (true, $factory) }
    };
    ($factory:expr $(,)?) => {
        $crate::__conformance_case_list! { [$crate::__conformance_test_fns] (false, $factory) }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_is_exclusive {
    () => {
        false
    };
    (exclusive) => {
        true
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_test_fns {
    (($handles:expr, $factory:expr) $(($group:ident :: $case:ident $($exclusive:ident)?))*) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let _gate = $crate::conformance::gate(
                    $crate::__conformance_is_exclusive!($($exclusive)?),
                )
                .await;
                let backend: ::std::sync::Arc<dyn $crate::Backend> = $factory.await;
                let peer: ::std::option::Option<::std::sync::Arc<dyn $crate::Backend>> =
                    if $handles { ::std::option::Option::Some($factory.await) } else { None };
                $crate::conformance::run_case(
                    |ctx| ::std::boxed::Box::pin($crate::conformance::cases::$group::$case(ctx)),
                    backend,
                    peer,
                )
                .await;
            }
        )*

        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn all_cases_on_one_shared_store() {
            let _gate = $crate::conformance::gate(true).await;
            let backend: ::std::sync::Arc<dyn $crate::Backend> = $factory.await;
            let peer: ::std::option::Option<::std::sync::Arc<dyn $crate::Backend>> =
                if $handles { ::std::option::Option::Some($factory.await) } else { None };
            $crate::conformance::run_all_on_one_store(backend, peer).await;
        }
    };
}

/// How a case builds the typed cache it drives: see [`Ctx::typed`].
pub(crate) trait UnderTest<V> {
    /// The built cache, as the facade under test in `ctx`.
    fn under_test(self, ctx: &Ctx) -> CacheUnderTest<V>;
}

impl<V, S> UnderTest<V> for CacheBuilder<V, S>
where
    V: Clone + Send + Sync + 'static,
    S: crate::Serializer<V>,
{
    fn under_test(self, ctx: &Ctx) -> CacheUnderTest<V> {
        ctx.typed(self)
    }
}
