//! The loading verbs' shared machinery: one load per key at a time (single flight), re-entrant
//! loads refused, waiters bounded, every load reported; and `get_or_insert_with` on top of it.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use crate::cache::Stored;
use crate::layers::CacheEvent;
use crate::locks::FleetTurn;
use crate::single_flight::{self, LeaderGuard, Outcome, Role, Slot};
use crate::{BoxError, Cache, DecodePolicy, Error, Result};
use std::time::Duration;

tokio::task_local! {
    /// The keys the current task is loading, each with the cache it loads for: a loader that
    /// asks for one of them again would wait for itself.
    static LOADING: LoadingKeys;
}

/// The keys the current task is loading (see `LOADING`), to hand to a loader that runs
/// elsewhere: the blocking cache's loaders run on a thread of their own.
pub(crate) type LoadingKeys = Vec<(usize, String)>;

/// The keys the current task is loading, if it is loading any.
#[cfg(feature = "blocking")]
pub(crate) fn loading_keys() -> Option<LoadingKeys> {
    LOADING.try_with(Clone::clone).ok()
}

/// Runs `work` as a task loading `keys`: a call from a blocking loader, on the loader's behalf.
#[cfg(feature = "blocking")]
pub(crate) async fn loading_as<T>(keys: LoadingKeys, work: impl Future<Output = T>) -> T {
    LOADING.scope(keys, work).await
}

/// What a leader's load produced: the outcome every waiter gets (`Ok(None)`: the source has no
/// such value), and, for the leader alone, whether storing it worked.
pub(crate) struct Landed<V> {
    pub(crate) outcome: Outcome<Option<V>>,
    pub(crate) stored: Result<()>,
}

impl<V> Landed<V> {
    /// A loader that failed: nothing was stored.
    pub(crate) fn failed(error: impl Into<BoxError>) -> Self {
        let source: BoxError = error.into();
        Self {
            outcome: Err(Arc::from(source)),
            stored: Ok(()),
        }
    }
}

/// What a caller that ends up loading looks for in the store first, since another load may have
/// finished between its own miss and its turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recheck {
    /// A value (`get_or_insert_with`: a negative entry is no answer).
    Value,
    /// Any entry, a negative one included (`get_or_refresh`).
    Entry,
}

/// Which kind of load a leader runs, for its report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoadKind {
    /// A caller waits for it: the key was absent.
    Load,
    /// A refresh of a present key, in the background or asked for.
    Refresh,
}

impl<V: Clone + Send + Sync + 'static> Cache<V> {
    /// The value under `key`; when absent, runs `loader`, stores its value with the default TTL
    /// and returns it.
    ///
    /// Single flight: while one caller loads a key, every other caller of this cache (and its
    /// clones) asking for the same key waits for that load instead of starting its own. A loader
    /// error reaches every waiter as [`Error::Load`] and nothing is cached. If the loading caller
    /// is cancelled or its loader panics, a waiter takes over with its own loader. When storing
    /// the loaded value fails, the loading caller gets that error and the waiters get the value.
    /// A negative entry ([`Loaded::not_found`](crate::Loaded::not_found)) is no value here: the
    /// loader runs. For stale-while-revalidate and "not found" answers, see
    /// [`Cache::get_or_refresh`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> cache_core::Result<()> {
    /// use std::sync::Arc;
    /// use cache_core::{Cache, testing::ReferenceBackend};
    ///
    /// let cache: Cache<u64> = Cache::builder(Arc::new(ReferenceBackend::default())).build();
    /// let answer = cache
    ///     .get_or_insert_with("answer", || async { Ok::<_, std::io::Error>(42) })
    ///     .await?;
    /// assert_eq!(answer, 42);
    /// assert_eq!(cache.get("answer").await?, Some(42));
    /// # Ok(()) }
    /// ```
    pub async fn get_or_insert_with<F, Fut, E>(&self, key: &str, loader: F) -> Result<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, E>>,
        E: Into<BoxError>,
    {
        if let Some(value) = self.get_for_loading(key).await? {
            return Ok(value);
        }
        let loaded = self
            .load_once(key, Recheck::Value, true, || async {
                match loader().await {
                    Ok(value) => {
                        let stored = self.set(key, &value).await;
                        Landed {
                            outcome: Ok(Some(value)),
                            stored,
                        }
                    }
                    Err(error) => Landed::failed(error),
                }
            })
            .await?;
        // Every outcome of this loader is a value, and a load of another verb that found
        // nothing makes this caller load for itself, so there is always one.
        loaded.ok_or_else(|| Error::Load {
            key: key.to_owned(),
            source: Arc::from(BoxError::from("the load found no value")),
        })
    }

    /// Loads `key` once for every caller asking meanwhile: waits for a load already in flight,
    /// or leads one with `run`. `retry_on_none`: a load in flight that found nothing (or whose
    /// caller went away) makes this caller look again and load itself, instead of answering
    /// `None`.
    pub(crate) async fn load_once<R, Fut>(
        &self,
        key: &str,
        recheck: Recheck,
        retry_on_none: bool,
        run: R,
    ) -> Result<Option<V>>
    where
        R: FnOnce() -> Fut,
        Fut: Future<Output = Landed<V>>,
    {
        let full_key = self.full_key(key)?.into_owned();
        self.refuse_reentrant_load(key, &full_key)?;
        let guard = loop {
            match self.inner.flights.join(&full_key) {
                Role::Leader(guard) => break guard,
                Role::Waiter(slot) => match self.wait_for_load(key, slot).await? {
                    Some(Ok(Some(value))) => return Ok(Some(value)),
                    Some(Ok(None)) if !retry_on_none => return Ok(None),
                    Some(Err(source)) => {
                        return Err(Error::Load {
                            key: key.to_owned(),
                            source,
                        });
                    }
                    // The load found nothing, or its caller went away without an outcome: look
                    // again, then try to lead.
                    Some(Ok(None)) | None => {
                        if let Some(found) = self.recheck(key, recheck).await? {
                            return Ok(found);
                        }
                    }
                },
            }
        };
        if let Some(found) = self.recheck(key, recheck).await? {
            guard.publish(Ok(found.clone()));
            return Ok(found);
        }
        self.lead(key, full_key, guard, LoadKind::Load, recheck, run)
            .await
    }

    /// Runs `run` as the leader of `full_key`, holding its guard: the loader knows every key this
    /// task is loading, this one included (so that asking for any of them again fails at once
    /// instead of waiting for itself); its outcome goes to every waiter; the load is reported.
    /// Dropped midway (a cancelled caller, a panicking loader), the guard lets a waiter take over.
    pub(crate) async fn lead<R, Fut>(
        &self,
        key: &str,
        full_key: String,
        guard: LeaderGuard<Option<V>>,
        kind: LoadKind,
        recheck: Recheck,
        run: R,
    ) -> Result<Option<V>>
    where
        R: FnOnce() -> Fut,
        Fut: Future<Output = Landed<V>>,
    {
        let lease = match self.fleet_turn(key, &full_key, kind, recheck).await? {
            FleetTurn::Done(found) => {
                guard.publish(Ok(found.clone()));
                return Ok(found);
            }
            FleetTurn::Lead(holder) => Some(holder),
            FleetTurn::Alone | FleetTurn::OwnLoad | FleetTurn::Busy => None,
        };
        let started = Instant::now();
        let Landed { outcome, stored } = self.scoped_load(vec![full_key], run()).await;
        // Released once the value is stored, so a process that takes the lease next finds it.
        if let Some(lease) = lease {
            lease.release().await;
        }
        guard.publish(outcome.clone());
        let found = matches!(outcome, Ok(Some(_)));
        let result = match outcome {
            Ok(value) => stored.map(|()| value),
            Err(source) => Err(Error::Load {
                key: key.to_owned(),
                source,
            }),
        };
        self.report_load(key, kind, started.elapsed(), result.as_ref().err(), found);
        result
    }

    /// Runs `load`, a load of every key of `full_keys` at once, knowing them as being loaded by
    /// this task (see [`Cache::lead`]).
    pub(crate) async fn scoped_load<T>(
        &self,
        full_keys: Vec<String>,
        load: impl Future<Output = T>,
    ) -> T {
        let mut loading = LOADING.try_with(Clone::clone).unwrap_or_default();
        loading.extend(full_keys.into_iter().map(|full_key| (self.id(), full_key)));
        LOADING.scope(loading, load).await
    }

    /// Refuses a load of `key` from inside a loader of the same key of this cache.
    pub(crate) fn refuse_reentrant_load(&self, key: &str, full_key: &str) -> Result<()> {
        let cache_id = self.id();
        let reentrant = LOADING
            .try_with(|loading| {
                loading
                    .iter()
                    .any(|(id, loading)| *id == cache_id && loading == full_key)
            })
            .unwrap_or(false);
        if reentrant {
            return Err(Error::LoadCycle {
                key: key.to_owned(),
            });
        }
        Ok(())
    }

    /// Waits for another caller's load of `key`, within the load wait timeout, and reports the
    /// wait. `None`: that caller went away without an outcome.
    pub(crate) async fn wait_for_load(
        &self,
        key: &str,
        mut slot: Slot<Option<V>>,
    ) -> Result<Option<Outcome<Option<V>>>> {
        let waiting = self.inner.observer.as_ref().map(|_| Instant::now());
        let outcome = match self.inner.load_wait_timeout {
            None => single_flight::outcome(&mut slot).await,
            Some(limit) => tokio::time::timeout(limit, single_flight::outcome(&mut slot))
                .await
                .map_err(|_| Error::LoadTimeout {
                    key: key.to_owned(),
                    waited: limit,
                })?,
        };
        if let (Some(observer), Some(since)) = (&self.inner.observer, waiting) {
            observer.on_cache_event(&CacheEvent::LoadWaited {
                key,
                waited: since.elapsed(),
            });
        }
        Ok(outcome)
    }

    pub(crate) async fn recheck(&self, key: &str, recheck: Recheck) -> Result<Option<Option<V>>> {
        Ok(match recheck {
            Recheck::Value => self.get_for_loading(key).await?.map(Some),
            Recheck::Entry => self.get_stored_for_loading(key).await?.map(|s| s.value),
        })
    }

    /// `get` as the loading verbs read: an entry that does not decode, or a negative one, is a
    /// miss (to be loaded and overwritten) unless the policy is [`DecodePolicy::Fail`].
    pub(crate) async fn get_for_loading(&self, key: &str) -> Result<Option<V>> {
        Ok(self
            .get_stored_for_loading(key)
            .await?
            .and_then(|stored| stored.value))
    }

    /// The entry under `key` as the loading verbs read it: one that does not decode is absent
    /// unless the policy is [`DecodePolicy::Fail`].
    pub(crate) async fn get_stored_for_loading(&self, key: &str) -> Result<Option<Stored<V>>> {
        match self.get_stored(key).await {
            Err(error @ Error::Decode { .. }) => {
                let as_miss = self.inner.decode_policy != DecodePolicy::Fail;
                self.report_decode(&error, as_miss);
                if as_miss { Ok(None) } else { Err(error) }
            }
            other => other,
        }
    }

    /// Tells the observer, if any, that a load or refresh of `key` ended.
    pub(crate) fn report_load(
        &self,
        key: &str,
        kind: LoadKind,
        elapsed: Duration,
        error: Option<&Error>,
        found: bool,
    ) {
        let Some(observer) = &self.inner.observer else {
            return;
        };
        observer.on_cache_event(&match kind {
            LoadKind::Load => CacheEvent::Loaded {
                key,
                elapsed,
                error,
            },
            LoadKind::Refresh => CacheEvent::Refreshed {
                key,
                elapsed,
                error,
                found,
            },
        });
    }

    /// This cache's identity among the caches a task may be loading for.
    fn id(&self) -> usize {
        Arc::as_ptr(&self.inner).cast::<()>() as usize
    }
}
