//! The outage case fails for stores that answer wrongly while their server is away or forget
//! what they held, and passes for one that fails cleanly and recovers.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use cache_core::conformance::outage::{self, Outage};
use cache_core::layers::{self, Faults};
use cache_core::raw::{Forward, Layer};
use cache_core::testing::ReferenceBackend;
use cache_core::{Backend, Result};

/// The reference store behind a fault layer: a "server" that the outage switch takes away.
fn server() -> (Arc<ReferenceBackend>, Arc<dyn Backend>, layers::Outage) {
    let server = Arc::new(ReferenceBackend::default());
    let faults = Faults::new(0);
    let outage = faults.outage();
    let store = faults.layer(Arc::clone(&server) as Arc<dyn Backend>);
    (server, store, outage)
}

/// An outage after which the server has forgotten everything.
struct Forgetful {
    server: Arc<ReferenceBackend>,
    outage: layers::Outage,
}

#[async_trait]
impl Outage for Forgetful {
    async fn take_down(&self) {
        self.outage.begin();
    }

    async fn bring_back(&self) {
        self.server
            .clear_prefix("")
            .await
            .expect("the reference store clears");
        self.outage.end();
    }
}

/// A store that reads a miss instead of failing while its server is away: a layer that
/// overrides `get` alone.
#[derive(Debug)]
struct MissWhileAway {
    inner: Arc<dyn Backend>,
    outage: layers::Outage,
}

#[async_trait]
impl Forward for MissWhileAway {
    fn inner(&self) -> &dyn Backend {
        &*self.inner
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        if self.outage.is_on() {
            return Ok(None);
        }
        self.inner.get(key).await
    }
}

async fn passes(backend: Arc<dyn Backend>, outage: impl Outage + 'static) -> bool {
    tokio::spawn(outage::run(backend, outage)).await.is_ok()
}

#[tokio::test]
async fn a_store_that_fails_cleanly_and_recovers_passes() {
    let (_, store, outage) = server();
    assert!(passes(store, outage).await);
}

#[tokio::test]
async fn a_store_that_forgets_its_data_fails() {
    let (server, store, outage) = server();
    assert!(!passes(store, Forgetful { server, outage }).await);
}

#[tokio::test]
async fn a_store_that_reads_misses_while_away_fails() {
    let (_, store, outage) = server();
    let flawed = Arc::new(MissWhileAway {
        inner: store,
        outage: outage.clone(),
    });
    assert!(!passes(flawed, outage).await);
}
