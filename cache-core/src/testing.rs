//! A small reference store for examples, doctests and the conformance suite's own tests.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{Mutex, MutexGuard};

use crate::raw::{add_to_counter, counter_bytes, parse_counter};
use crate::{Backend, Condition, Result, ScanCursor, ScanOptions, ScanPage, Ttl};

/// An unbounded in-process store over a `BTreeMap` behind one async mutex: easy to read and
/// obviously correct, so it documents the [`Backend`] contract in code and lets examples run
/// without a server. It never evicts; for real use pick `cache-memory`'s bounded store.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> cache_core::Result<()> {
/// use cache_core::{Backend, Condition, testing::ReferenceBackend};
///
/// let store = ReferenceBackend::default();
/// assert!(store.set("k", "v".into(), None, Condition::IfNotExists).await?);
/// assert!(!store.set("k", "w".into(), None, Condition::IfNotExists).await?);
/// assert_eq!(store.get("k").await?.as_deref(), Some(&b"v"[..]));
/// # Ok(()) }
/// ```
#[derive(Debug, Default)]
pub struct ReferenceBackend {
    entries: Mutex<BTreeMap<String, Entry>>,
    /// Every writer of the store is in this process: its bus needs no transport.
    bus: std::sync::OnceLock<std::sync::Arc<crate::raw::invalidation::InvalidationBus>>,
}

#[derive(Debug, Clone)]
struct Entry {
    value: Bytes,
    expires_at: Option<Instant>,
}

impl Entry {
    fn is_live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

fn deadline(ttl: Option<Duration>, now: Instant) -> Option<Instant> {
    ttl.map(|ttl| {
        let millis = crate::raw::ttl_millis(ttl);
        now.checked_add(Duration::from_millis(millis))
            .unwrap_or_else(|| now + Duration::from_secs(u32::MAX.into()))
    })
}

impl ReferenceBackend {
    /// The map, behind an async mutex: a call that waits for a big batch of another task
    /// gives its worker thread back to the runtime instead of parking it.
    async fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Entry>> {
        self.entries.lock().await
    }

    /// The keys present now (expired ones left out), in byte order.
    pub async fn keys(&self) -> Vec<String> {
        let now = Instant::now();
        self.lock()
            .await
            .iter()
            .filter(|(_, entry)| entry.is_live(now))
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Every key stored, expired ones included (the store drops them lazily), in byte order.
    pub async fn stored_keys(&self) -> Vec<String> {
        self.lock().await.keys().cloned().collect()
    }

    fn live(entries: &BTreeMap<String, Entry>, key: &str, now: Instant) -> Option<Entry> {
        entries.get(key).filter(|entry| entry.is_live(now)).cloned()
    }

    fn with_ttl(entry: Entry, now: Instant) -> (Bytes, Ttl) {
        let ttl = match entry.expires_at {
            None => Ttl::Eternal,
            Some(at) => Ttl::Remaining(at.duration_since(now)),
        };
        (entry.value, ttl)
    }

    /// The live keys from `from` on that start with `prefix`, in byte order.
    fn live_range<'a>(
        entries: &'a BTreeMap<String, Entry>,
        prefix: &'a str,
        from: Bound<&'a str>,
        now: Instant,
    ) -> impl Iterator<Item = (&'a String, &'a Entry)> + 'a {
        let from = match from {
            Bound::Unbounded => Bound::Included(prefix),
            other => other,
        };
        entries
            .range::<str, _>((from, Bound::Unbounded))
            .take_while(move |(key, _)| key.starts_with(prefix))
            .filter(move |(_, entry)| entry.is_live(now))
    }
}

#[async_trait]
impl Backend for ReferenceBackend {
    fn name(&self) -> &'static str {
        "reference"
    }

    fn invalidation_bus(
        &self,
    ) -> Option<std::sync::Arc<crate::raw::invalidation::InvalidationBus>> {
        Some(std::sync::Arc::clone(self.bus.get_or_init(
            crate::raw::invalidation::InvalidationBus::in_process,
        )))
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let entries = self.lock().await;
        Ok(Self::live(&entries, key, Instant::now()).map(|entry| entry.value))
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        let entries = self.lock().await;
        let now = Instant::now();
        Ok(keys
            .iter()
            .map(|key| Self::live(&entries, key, now).map(|entry| entry.value))
            .collect())
    }

    async fn set(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        condition: Condition,
    ) -> Result<bool> {
        let mut entries = self.lock().await;
        let now = Instant::now();
        if condition == Condition::IfNotExists && Self::live(&entries, key, now).is_some() {
            return Ok(false);
        }
        if ttl == Some(Duration::ZERO) {
            entries.remove(key);
        } else {
            let expires_at = deadline(ttl, now);
            entries.insert(key.to_owned(), Entry { value, expires_at });
        }
        Ok(true)
    }

    async fn set_many(&self, items: Vec<(String, Bytes)>, ttl: Option<Duration>) -> Result<()> {
        let mut entries = self.lock().await;
        let now = Instant::now();
        for (key, value) in items {
            if ttl == Some(Duration::ZERO) {
                entries.remove(&key);
            } else {
                let expires_at = deadline(ttl, now);
                entries.insert(key, Entry { value, expires_at });
            }
        }
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        let mut entries = self.lock().await;
        let now = Instant::now();
        Ok(entries.remove(key).is_some_and(|entry| entry.is_live(now)))
    }

    async fn delete_many(&self, keys: &[String]) -> Result<u64> {
        let mut entries = self.lock().await;
        let now = Instant::now();
        let removed = keys
            .iter()
            .filter(|key| entries.remove(key.as_str()).is_some_and(|e| e.is_live(now)))
            .count();
        Ok(removed as u64)
    }

    async fn contains(&self, key: &str) -> Result<bool> {
        let entries = self.lock().await;
        Ok(Self::live(&entries, key, Instant::now()).is_some())
    }

    async fn expire_in(&self, key: &str, ttl: Option<Duration>) -> Result<bool> {
        let mut entries = self.lock().await;
        let now = Instant::now();
        if Self::live(&entries, key, now).is_none() {
            entries.remove(key);
            return Ok(false);
        }
        if ttl == Some(Duration::ZERO) {
            entries.remove(key);
        } else if let Some(entry) = entries.get_mut(key) {
            entry.expires_at = deadline(ttl, now);
        }
        Ok(true)
    }

    async fn ttl(&self, key: &str) -> Result<Option<Ttl>> {
        let entries = self.lock().await;
        let now = Instant::now();
        Ok(
            Self::live(&entries, key, now).map(|entry| match entry.expires_at {
                None => Ttl::Eternal,
                Some(at) => Ttl::Remaining(at.duration_since(now)),
            }),
        )
    }

    async fn take(&self, key: &str) -> Result<Option<Bytes>> {
        let mut entries = self.lock().await;
        let now = Instant::now();
        Ok(entries
            .remove(key)
            .filter(|entry| entry.is_live(now))
            .map(|entry| entry.value))
    }

    async fn take_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        let mut entries = self.lock().await;
        let now = Instant::now();
        Ok(keys
            .iter()
            .map(|key| {
                entries
                    .remove(key)
                    .filter(|entry| entry.is_live(now))
                    .map(|entry| entry.value)
            })
            .collect())
    }

    async fn get_with_ttl(&self, key: &str) -> Result<Option<(Bytes, Ttl)>> {
        let entries = self.lock().await;
        let now = Instant::now();
        Ok(Self::live(&entries, key, now).map(|entry| Self::with_ttl(entry, now)))
    }

    async fn get_many_with_ttl(&self, keys: &[String]) -> Result<Vec<Option<(Bytes, Ttl)>>> {
        let entries = self.lock().await;
        let now = Instant::now();
        Ok(keys
            .iter()
            .map(|key| Self::live(&entries, key, now).map(|entry| Self::with_ttl(entry, now)))
            .collect())
    }

    async fn scan(
        &self,
        prefix: &str,
        cursor: ScanCursor,
        options: ScanOptions,
    ) -> Result<ScanPage> {
        let entries = self.lock().await;
        let now = Instant::now();
        let from = cursor.last_key().map_or(Bound::Unbounded, Bound::Excluded);
        let page: Vec<(String, Option<Bytes>)> = Self::live_range(&entries, prefix, from, now)
            .take(options.page.max(1))
            .map(|(key, entry)| (key.clone(), options.values.then(|| entry.value.clone())))
            .collect();
        let next = match page.last() {
            Some((last, _)) if page.len() == options.page.max(1) => {
                Some(ScanCursor::after(last.clone()))
            }
            _ => None,
        };
        Ok(ScanPage {
            entries: page,
            next,
        })
    }

    async fn count_prefix(&self, prefix: &str) -> Result<u64> {
        let entries = self.lock().await;
        let now = Instant::now();
        Ok(Self::live_range(&entries, prefix, Bound::Unbounded, now).count() as u64)
    }

    async fn purge_expired(&self) -> Result<u64> {
        let mut entries = self.lock().await;
        let now = Instant::now();
        let before = entries.len();
        entries.retain(|_, entry| entry.is_live(now));
        Ok((before - entries.len()) as u64)
    }

    async fn incr(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        let mut entries = self.lock().await;
        let now = Instant::now();
        let (current, expires_at) = match Self::live(&entries, key, now) {
            Some(entry) => (parse_counter(key, &entry.value)?, entry.expires_at),
            None => (0, deadline(ttl, now)),
        };
        let value = add_to_counter(key, current, delta)?;
        if ttl == Some(Duration::ZERO) && expires_at.is_some_and(|at| at <= now) {
            // Created already expired: nothing remains, as for a zero-TTL `set`.
            entries.remove(key);
        } else {
            let value = counter_bytes(value);
            entries.insert(key.to_owned(), Entry { value, expires_at });
        }
        Ok(value)
    }

    async fn acquire_lease(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        let mut entries = self.lock().await;
        let now = Instant::now();
        if Self::live(&entries, key, now).is_some() {
            return Ok(false);
        }
        let entry = Entry {
            value: Bytes::copy_from_slice(token.as_bytes()),
            expires_at: deadline(Some(ttl.max(Duration::from_millis(1))), now),
        };
        entries.insert(key.to_owned(), entry);
        Ok(true)
    }

    async fn renew_lease(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        let mut entries = self.lock().await;
        let now = Instant::now();
        match entries.get_mut(key) {
            Some(entry) if entry.is_live(now) && entry.value == token.as_bytes() => {
                entry.expires_at = deadline(Some(ttl.max(Duration::from_millis(1))), now);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release_lease(&self, key: &str, token: &str) -> Result<bool> {
        let mut entries = self.lock().await;
        let now = Instant::now();
        match entries.get(key) {
            Some(entry) if entry.is_live(now) && entry.value == token.as_bytes() => {
                entries.remove(key);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn clear_prefix(&self, prefix: &str) -> Result<u64> {
        let mut entries = self.lock().await;
        let now = Instant::now();
        let doomed: Vec<String> = entries
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, _)| key.clone())
            .collect();
        let mut removed = 0;
        for key in doomed {
            if entries.remove(&key).is_some_and(|entry| entry.is_live(now)) {
                removed += 1;
            }
        }
        Ok(removed)
    }
}
