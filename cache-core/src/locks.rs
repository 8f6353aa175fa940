//! Per-key locks ([`Cache::lock`]) and fleet-wide single flight
//! ([`CacheBuilder::fleet_single_flight`](crate::CacheBuilder::fleet_single_flight)): one load
//! per key for every caller of a process, and, with a lease in the store, for every process.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::loading::{LoadKind, Recheck};
use crate::planted::FacadeBug;
use crate::single_flight::{LeaderGuard, Role};
use crate::{Backend, Cache, Error, Result, SetOptions};

/// Where a lease lives: this mark, then the entry's full key (outside every prefix).
pub(crate) const LEASE_MARK: &str = "\u{FFFF}lease\u{FFFF}";

/// The longest pause between two looks of a caller waiting for another process's load.
const LONGEST_PAUSE: Duration = Duration::from_millis(100);

/// How fleet-wide single flight leases a load: see
/// [`CacheBuilder::fleet_single_flight`](crate::CacheBuilder::fleet_single_flight).
///
/// ```
/// use std::time::Duration;
/// use cache_core::Lease;
///
/// // Loads take a 10 s lease, renewed every 3⅓ s while they run; a caller of another process
/// // waits at most 5 s for it, then loads itself.
/// let lease = Lease::new(Duration::from_secs(10)).max_wait(Duration::from_secs(5));
/// assert_eq!(lease.ttl(), Duration::from_secs(10));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    ttl: Duration,
    max_wait: Duration,
    first_pause: Duration,
}

impl Lease {
    /// A lease of `ttl` (at least 100 ms): how long a holder that crashed keeps the key from
    /// the others. The holder renews it every third of `ttl` while it loads. Waiters wait at
    /// most three times `ttl` by default, and first look again after 10 ms.
    pub fn new(ttl: Duration) -> Self {
        let ttl = ttl.max(Duration::from_millis(100));
        Self {
            ttl,
            max_wait: ttl.saturating_mul(3),
            first_pause: Duration::from_millis(10),
        }
    }

    /// The longest a caller waits for another process's load before it loads itself.
    pub fn max_wait(mut self, max_wait: Duration) -> Self {
        self.max_wait = max_wait;
        self
    }

    /// The first pause of a waiting caller before it looks again; each pause doubles, up to
    /// 100 ms.
    pub fn first_pause(mut self, pause: Duration) -> Self {
        self.first_pause = pause.max(Duration::from_millis(1));
        self
    }

    /// The lease's time to live.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }
}

/// A lease this process holds in the store, renewed by a task of its own until it is released.
pub(crate) struct LeaseHolder {
    backend: Arc<dyn Backend>,
    key: String,
    token: String,
    renewal: Option<tokio::task::AbortHandle>,
    released: bool,
}

impl LeaseHolder {
    fn start(
        backend: Arc<dyn Backend>,
        key: String,
        token: String,
        lease: &Lease,
        renews: bool,
    ) -> Self {
        let runtime = tokio::runtime::Handle::try_current()
            .ok()
            .filter(|_| renews);
        let renewal = runtime.map(|runtime| {
            let (backend, key, token, ttl) =
                (Arc::clone(&backend), key.clone(), token.clone(), lease.ttl);
            runtime
                .spawn(async move {
                    loop {
                        tokio::time::sleep(ttl / 3).await;
                        if matches!(backend.renew_lease(&key, &token, ttl).await, Ok(true)) {
                            continue;
                        }
                        // Lapsed while this process or the store stalled: taken again if nobody
                        // took it meanwhile. Taken over, it stays the other holder's: the load
                        // goes on, and its value is stored all the same.
                        if !matches!(backend.acquire_lease(&key, &token, ttl).await, Ok(true)) {
                            return;
                        }
                    }
                })
                .abort_handle()
        });
        Self {
            backend,
            key,
            token,
            renewal,
            released: false,
        }
    }

    /// Stops renewing and removes the lease, if it is still this holder's. A failure leaves
    /// the lease to expire.
    pub(crate) async fn release(mut self) {
        self.released = true;
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
        let _ = self.backend.release_lease(&self.key, &self.token).await;
    }
}

impl Drop for LeaseHolder {
    fn drop(&mut self) {
        if let Some(renewal) = self.renewal.take() {
            renewal.abort();
        }
        if self.released {
            return;
        }
        // Dropped midway (a cancelled or panicking holder): release in the background, or let
        // the lease expire when there is no runtime to do it on.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (backend, key, token) = (
                Arc::clone(&self.backend),
                std::mem::take(&mut self.key),
                std::mem::take(&mut self.token),
            );
            runtime.spawn(async move {
                let _ = backend.release_lease(&key, &token).await;
            });
        }
    }
}

/// A random token naming one holder of one lease: the process and 128 random bits.
fn new_token() -> String {
    format!(
        "{:x}-{:016x}{:016x}",
        std::process::id(),
        fastrand::u64(..),
        fastrand::u64(..)
    )
}

/// What a leading caller does about the other processes.
pub(crate) enum FleetTurn<V> {
    /// No fleet-wide single flight: load.
    Alone,
    /// This caller holds the lease: load, then release it.
    Lead(LeaseHolder),
    /// Another process loaded meanwhile (or, for a refresh, is refreshing): its answer.
    Done(Option<V>),
    /// Waited as long as allowed: load without the lease.
    OwnLoad,
    /// Another process holds the lease, and the caller asked not to wait (a batch, which must
    /// not wait for some keys while it holds the leases of others).
    Busy,
}

impl<V: Clone + Send + Sync + 'static> Cache<V> {
    /// Takes the lease of `full_key` before a load, or waits for another process's load:
    /// see [`CacheBuilder::fleet_single_flight`](crate::CacheBuilder::fleet_single_flight).
    pub(crate) async fn fleet_turn(
        &self,
        key: &str,
        full_key: &str,
        kind: LoadKind,
        recheck: Recheck,
    ) -> Result<FleetTurn<V>> {
        self.fleet_turn_or_busy(key, full_key, kind, recheck, true)
            .await
    }

    /// [`Cache::fleet_turn`]; with `wait` false, a lease held elsewhere is [`FleetTurn::Busy`].
    pub(crate) async fn fleet_turn_or_busy(
        &self,
        key: &str,
        full_key: &str,
        kind: LoadKind,
        recheck: Recheck,
        wait: bool,
    ) -> Result<FleetTurn<V>> {
        let Some(lease) = self.inner.fleet else {
            return Ok(FleetTurn::Alone);
        };
        let lease_key = format!("{LEASE_MARK}{full_key}");
        let token = new_token();
        let backend = &self.inner.backend;
        let started = Instant::now();
        let mut pause = lease.first_pause;
        loop {
            let acquired = if self.planted(FacadeBug::FleetLeaseIgnored) {
                true
            } else {
                backend.acquire_lease(&lease_key, &token, lease.ttl).await?
            };
            if acquired {
                let renews = !self.planted(FacadeBug::FleetLeaseNotRenewed);
                let holder =
                    LeaseHolder::start(Arc::clone(backend), lease_key, token, &lease, renews);
                // The last holder may have stored its value and released just before.
                if kind == LoadKind::Load
                    && let Some(found) = self.fleet_found(key, recheck).await?
                {
                    holder.release().await;
                    return Ok(FleetTurn::Done(found));
                }
                return Ok(FleetTurn::Lead(holder));
            }
            if kind == LoadKind::Refresh {
                // Another process refreshes the key: its refresh is as new as this one.
                let current = self.recheck(key, Recheck::Entry).await?;
                return Ok(FleetTurn::Done(current.flatten()));
            }
            if !wait {
                return Ok(FleetTurn::Busy);
            }
            let waited = started.elapsed();
            if waited >= lease.max_wait {
                self.report_wait(key, waited);
                return Ok(FleetTurn::OwnLoad);
            }
            tokio::time::sleep(pause.min(lease.max_wait - waited)).await;
            pause = (pause * 2).min(LONGEST_PAUSE);
            if let Some(found) = self.fleet_found(key, recheck).await? {
                self.report_wait(key, started.elapsed());
                return Ok(FleetTurn::Done(found));
            }
        }
    }

    /// Reports a wait for another process's load, as a wait for a load.
    fn report_wait(&self, key: &str, waited: Duration) {
        if let Some(observer) = &self.inner.observer {
            observer.on_cache_event(&crate::layers::CacheEvent::LoadWaited { key, waited });
        }
    }

    /// What another process's load left under `key`, as the loading verb takes it.
    async fn fleet_found(&self, key: &str, recheck: Recheck) -> Result<Option<Option<V>>> {
        Ok(match self.recheck(key, Recheck::Entry).await? {
            Some(Some(value)) => Some(Some(value)),
            // A negative entry answers only the verbs that take "not found" for an answer.
            Some(None) if recheck == Recheck::Entry => Some(None),
            _ => None,
        })
    }

    /// The lock of `key`: [`Lock::Found`] with the value when it is there (at once, or once
    /// another caller holding the lock stores it), or [`Lock::Held`] with a guard when this
    /// caller is to produce it. The guard's [`LockGuard::set`] stores the value and hands it to
    /// every caller waiting for the lock; dropping the guard without a value (an error, a
    /// panic, a cancelled task) lets one waiter take the lock over.
    ///
    /// The lock is this cache's single flight, made explicit: callers of
    /// [`Cache::get_or_insert_with`] and of `lock` wait for each other. It holds across this
    /// process; with
    /// [`CacheBuilder::fleet_single_flight`](crate::CacheBuilder::fleet_single_flight) across
    /// every process sharing the store. Waiters give up after the load wait timeout
    /// ([`Error::LoadTimeout`]). A holder must not ask for its own key meanwhile: that caller
    /// would wait for the holder, as any other does.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> cache_core::Result<()> {
    /// use std::sync::Arc;
    /// use std::time::Duration;
    /// use cache_core::{Cache, Lock, SetOptions, testing::ReferenceBackend};
    ///
    /// let cache: Cache<String> = Cache::builder(Arc::new(ReferenceBackend::default())).build();
    /// let value = match cache.lock("report").await? {
    ///     Lock::Found(value) => value,
    ///     Lock::Held(guard) => {
    ///         let value = "computed".to_string();
    ///         // A TTL chosen for this value; every waiter gets it.
    ///         guard.set_with(&value, SetOptions::new().ttl(Duration::from_secs(60))).await?;
    ///         value
    ///     }
    /// };
    /// assert_eq!(value, "computed");
    /// assert!(matches!(cache.lock("report").await?, Lock::Found(_)));
    /// # Ok(()) }
    /// ```
    pub async fn lock(&self, key: &str) -> Result<Lock<V>> {
        let full_key = self.full_key(key)?.into_owned();
        self.refuse_reentrant_load(key, &full_key)?;
        loop {
            if !self.planted(FacadeBug::LockSkipsTheStore)
                && let Some(value) = self.get_for_loading(key).await?
            {
                return Ok(Lock::Found(value));
            }
            let slot = match self.inner.flights.join(&full_key) {
                Role::Leader(guard) => {
                    // A holder may have stored and gone between the read and the join.
                    if !self.planted(FacadeBug::LockSkipsTheStore)
                        && let Some(value) = self.get_for_loading(key).await?
                    {
                        guard.publish(Ok(Some(value.clone())));
                        return Ok(Lock::Found(value));
                    }
                    let lease = match self
                        .fleet_turn(key, &full_key, LoadKind::Load, Recheck::Value)
                        .await?
                    {
                        FleetTurn::Done(Some(value)) => {
                            guard.publish(Ok(Some(value.clone())));
                            return Ok(Lock::Found(value));
                        }
                        FleetTurn::Lead(holder) => Some(holder),
                        FleetTurn::Alone
                        | FleetTurn::OwnLoad
                        | FleetTurn::Busy
                        | FleetTurn::Done(None) => None,
                    };
                    return Ok(Lock::Held(LockGuard {
                        cache: self.clone(),
                        key: key.to_owned(),
                        guard,
                        lease,
                    }));
                }
                Role::Waiter(slot) => slot,
            };
            match self.wait_for_load(key, slot).await? {
                Some(Ok(Some(value))) => return Ok(Lock::Found(value)),
                Some(Err(source)) => {
                    return Err(Error::Load {
                        key: key.to_owned(),
                        source,
                    });
                }
                Some(Ok(None)) | None if self.planted(FacadeBug::LockWaiterGivesUp) => {
                    return Err(Error::Load {
                        key: key.to_owned(),
                        source: Arc::from(crate::BoxError::from("the holder went away")),
                    });
                }
                // The holder went without a value: try again, to take the lock over.
                Some(Ok(None)) | None => {}
            }
        }
    }
}

/// What [`Cache::lock`] gives: the value, or the lock to produce it.
#[derive(Debug)]
pub enum Lock<V> {
    /// The value was there, or another holder of the lock stored it.
    Found(V),
    /// This caller holds the lock: produce the value and [`LockGuard::set`] it.
    Held(LockGuard<V>),
}

/// The lock of one key: store the value with [`LockGuard::set`] or [`LockGuard::set_with`],
/// which hands it to every waiter; drop it to let a waiter take over.
pub struct LockGuard<V> {
    cache: Cache<V>,
    key: String,
    guard: LeaderGuard<Option<V>>,
    lease: Option<LeaseHolder>,
}

impl<V> std::fmt::Debug for LockGuard<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("key", &self.key)
            .field("fleet_lease", &self.lease.is_some())
            .finish_non_exhaustive()
    }
}

impl<V: Clone + Send + Sync + 'static> LockGuard<V> {
    /// The caller's key this guard locks.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Stores `value` with the cache's default TTL and hands it to every waiter.
    pub async fn set(self, value: &V) -> Result<()> {
        self.set_with(value, SetOptions::new()).await
    }

    /// Stores `value` as [`Cache::set_with`] does (a TTL of its own, tags) and hands it to
    /// every waiter, who get it even when storing it failed (then this call returns the
    /// error). The lock is released.
    pub async fn set_with(mut self, value: &V, options: SetOptions) -> Result<()> {
        let stored = self.cache.set_with(&self.key, value, options).await;
        if let Some(lease) = self.lease.take() {
            lease.release().await;
        }
        self.guard.publish(Ok(Some(value.clone())));
        stored.map(drop)
    }

    /// Releases the lock without a value: one waiter takes it over. The same as dropping it.
    pub fn release(self) {}
}
