//! The facade with another serializer against the plain facade (CBOR, the default) over the same
//! store, in one run: what a format costs or saves on each call.

use cache_core::{Cache, Json, MessagePack};

use super::{Facade, StoreBench, open_local, run_prefix};
use crate::BenchResult;
use crate::measure::Timed;
use crate::workload::{SharedWorkload, TTL};

/// The format the measured facade stores its values in.
#[derive(Debug, Clone, Copy)]
pub enum Format {
    /// serde_json text.
    Json,
    /// MessagePack through rmp-serde, fields by name.
    MessagePack,
}

/// Both facades over one `store` (`memory` or `sqlite`), preloaded: the one with `format` as the
/// "facade", the CBOR one in the raw driver's place, so the ratio is the format's gain or cost.
pub async fn setup(
    store: &str,
    format: Format,
    workload: &SharedWorkload,
) -> BenchResult<StoreBench> {
    let (backend, cleanup) = open_local(store, "cachette-bench-serializer").await?;
    let prefix = run_prefix();
    let builder = Cache::builder(std::sync::Arc::clone(&backend))
        .prefix(format!("{prefix}f:"))
        .default_ttl(TTL);
    let measured = match format {
        Format::Json => builder.serializer(Json).build(),
        Format::MessagePack => builder.serializer(MessagePack).build(),
    };
    let plain = Cache::builder(backend)
        .prefix(format!("{prefix}p:"))
        .default_ttl(TTL)
        .build();
    let (facade, raw): (
        Box<dyn crate::measure::Contender>,
        Box<dyn crate::measure::Contender>,
    ) = if store == "memory" {
        (
            Box::new(Timed::new(
                Facade::<true>::over(measured, workload),
                workload.clone(),
            )),
            Box::new(Timed::new(
                Facade::<true>::over(plain, workload),
                workload.clone(),
            )),
        )
    } else {
        (
            Box::new(Timed::new(
                Facade::<false>::over(measured, workload),
                workload.clone(),
            )),
            Box::new(Timed::new(
                Facade::<false>::over(plain, workload),
                workload.clone(),
            )),
        )
    };
    StoreBench {
        facade,
        raw,
        raw_name: "the facade with CBOR (the default) over the same store",
        peer: None,
        cleanup,
        server: None,
        note: None,
    }
    .preloaded()
    .await
}
