//! The facade with an `Observe` layer against the plain facade over the same store, in one run:
//! what observation costs when it is on. (With no observer a cache has no such layer, so it
//! costs nothing.)

use std::sync::{Arc, Once};

use cache_core::layers::{MetricsObserver, Observe, TracingObserver};
use cache_core::raw::Layer;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;

use super::{StoreBench, layered_against_plain, open_local};
use crate::BenchResult;
use crate::workload::SharedWorkload;

/// Which observer the layer reports to.
#[derive(Debug, Clone, Copy)]
pub enum Observer {
    /// `TracingObserver` with cachette's spans enabled and recorded by a `tracing` registry (no
    /// output: what any span exporter pays at least).
    Tracing,
    /// `MetricsObserver` recording into a Prometheus recorder.
    Metrics,
}

/// Installs, once per process, the subscriber and recorder the observers report to. Installed
/// before any row runs, so every row runs under the same conditions.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let subscriber = tracing_subscriber::registry().with(EnvFilter::new("warn,cachette=debug"));
        if tracing::subscriber::set_global_default(subscriber).is_err() {
            eprintln!("cachette-bench: a tracing subscriber was installed already");
        }
        let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder();
        if let Err(error) = recorder {
            eprintln!("cachette-bench: no Prometheus recorder: {error}");
        }
    });
}

/// Both facades over one `store` (`memory` or `sqlite`), preloaded: the observed one as the
/// "facade", the plain one in the raw driver's place, so the ratio is the layer's cost.
pub async fn setup(
    store: &str,
    observer: Observer,
    workload: &SharedWorkload,
) -> BenchResult<StoreBench> {
    install();
    let (backend, cleanup) = open_local(store, "cachette-bench-observe").await?;
    let observed = match observer {
        Observer::Tracing => Observe::new(TracingObserver::new()).layer(Arc::clone(&backend)),
        Observer::Metrics => Observe::new(MetricsObserver::new()).layer(Arc::clone(&backend)),
    };
    layered_against_plain(store, backend, observed, cleanup, workload).await
}
