//! Every cache call as a `tracing` span, and hit and miss counters in Prometheus's format.
//!
//! ```text
//! cargo run --example observe --features tracing,metrics
//! ```
//!
//! One observer can feed both: `observe((TracingObserver::new(), MetricsObserver::new()))`.

use std::time::Duration;

use cachette::Cache;
use cachette::layers::{KeyDisplay, MetricsObserver, TracingObserver};
use metrics_exporter_prometheus::PrometheusBuilder;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

#[tokio::main]
async fn main() -> cachette::Result<()> {
    // One line per cache call as it ends, with its fields and its time. `RUST_LOG` overrides the
    // filter; cachette's spans are at DEBUG.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("cachette=debug")),
        )
        .with_span_events(FmtSpan::CLOSE)
        .init();
    // The recorder comes before the first cache call. A service would serve `render()` on
    // `/metrics` (or let the exporter's own HTTP listener do it).
    let prometheus = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|error| cachette::Error::config_with("cannot install the recorder", error))?;

    let dir = std::env::temp_dir().join(format!("cachette-observe-{}", std::process::id()));
    std::fs::create_dir_all(&dir)
        .map_err(|error| cachette::Error::config_with("cannot make a directory", error))?;
    let url = format!("sqlite://{}", dir.join("cache.db").display());
    let cache: Cache<String> = Cache::builder(cachette::open(&url).await?)
        .prefix("greeting:")
        .default_ttl(Duration::from_secs(60))
        .observe((
            TracingObserver::new().keys(KeyDisplay::Hash),
            MetricsObserver::new(),
        ))
        .build();

    cache.set("en", &"hello".to_owned()).await?;
    cache.get("en").await?; // a hit
    cache.get("fr").await?; // a miss
    cache.get_many(["en", "fr", "de"]).await?; // one hit, two misses
    let loaded = cache
        .get_or_insert_with("de", || async {
            Ok::<_, std::io::Error>("hallo".to_owned())
        })
        .await?;
    assert_eq!(loaded, "hallo");
    cache.clear().await?;
    cache.backend().close().await?;
    std::fs::remove_dir_all(&dir).ok();

    let exposition = prometheus.render();
    println!("\n{exposition}");
    assert!(exposition.contains(r#"cachette_hits_total{store="sqlite",operation="get"} 1"#));
    assert!(exposition.contains(r#"cachette_misses_total{store="sqlite",operation="get_many"} 2"#));
    Ok(())
}
