//! The outage case fails for stores that answer wrongly while their server is away or forget
//! what they held, and passes for one that fails cleanly and recovers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cache_core::conformance::outage::{self, Outage};
use cache_core::testing::ReferenceBackend;
use cache_core::{Backend, Condition, Error, Result, Ttl};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Flaw {
    None,
    /// Forgets everything when the server comes back.
    LosesDataOnReturn,
    /// Reads as a miss instead of an error while the server is away.
    MissWhileAway,
}

/// A store in front of a "server" (the reference store) that can be switched off.
#[derive(Debug)]
struct Switchable {
    server: ReferenceBackend,
    away: AtomicBool,
    flaw: Flaw,
}

impl Switchable {
    fn new(flaw: Flaw) -> Arc<Self> {
        Arc::new(Self {
            server: ReferenceBackend::default(),
            away: AtomicBool::new(false),
            flaw,
        })
    }

    fn reachable(&self, operation: &'static str, key: Option<&str>) -> Result<()> {
        if self.away.load(Ordering::SeqCst) {
            let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
            return Err(Error::backend("switchable", operation, key, refused));
        }
        Ok(())
    }
}

#[async_trait]
impl Outage for Switchable {
    async fn take_down(&self) {
        self.away.store(true, Ordering::SeqCst);
    }

    async fn bring_back(&self) {
        if self.flaw == Flaw::LosesDataOnReturn {
            self.server
                .clear_prefix("")
                .await
                .expect("the reference store clears");
        }
        self.away.store(false, Ordering::SeqCst);
    }
}

#[async_trait]
impl Backend for Switchable {
    fn name(&self) -> &'static str {
        "switchable"
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        if self.flaw == Flaw::MissWhileAway && self.away.load(Ordering::SeqCst) {
            return Ok(None);
        }
        self.reachable("get", Some(key))?;
        self.server.get(key).await
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        self.reachable("get_many", None)?;
        self.server.get_many(keys).await
    }

    async fn set(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        condition: Condition,
    ) -> Result<bool> {
        self.reachable("set", Some(key))?;
        self.server.set(key, value, ttl, condition).await
    }

    async fn set_many(&self, entries: Vec<(String, Bytes)>, ttl: Option<Duration>) -> Result<()> {
        self.reachable("set_many", None)?;
        self.server.set_many(entries, ttl).await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        self.reachable("delete", Some(key))?;
        self.server.delete(key).await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<u64> {
        self.reachable("delete_many", None)?;
        self.server.delete_many(keys).await
    }

    async fn contains(&self, key: &str) -> Result<bool> {
        self.reachable("contains", Some(key))?;
        self.server.contains(key).await
    }

    async fn expire_in(&self, key: &str, ttl: Option<Duration>) -> Result<bool> {
        self.reachable("expire_in", Some(key))?;
        self.server.expire_in(key, ttl).await
    }

    async fn ttl(&self, key: &str) -> Result<Option<Ttl>> {
        self.reachable("ttl", Some(key))?;
        self.server.ttl(key).await
    }

    async fn clear_prefix(&self, prefix: &str) -> Result<u64> {
        self.reachable("clear_prefix", None)?;
        self.server.clear_prefix(prefix).await
    }
}

async fn outage_case_passes(flaw: Flaw) -> bool {
    let store = Switchable::new(flaw);
    let backend: Arc<dyn Backend> = store.clone();
    tokio::spawn(outage::run(backend, store)).await.is_ok()
}

#[tokio::test]
async fn a_store_that_fails_cleanly_and_recovers_passes() {
    assert!(outage_case_passes(Flaw::None).await);
}

#[tokio::test]
async fn a_store_that_forgets_its_data_fails() {
    assert!(!outage_case_passes(Flaw::LosesDataOnReturn).await);
}

#[tokio::test]
async fn a_store_that_reads_misses_while_away_fails() {
    assert!(!outage_case_passes(Flaw::MissWhileAway).await);
}
