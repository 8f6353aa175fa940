//! The facade with a protected-value layer (signed, encrypted or compressed values) against
//! the plain facade over the same store, in one run: what protecting each value costs.

use std::sync::Arc;

use cache_core::layers::{Compress, Encrypt, Sign};
use cache_core::raw::Layer;

use super::{StoreBench, layered_against_plain, open_local};
use crate::BenchResult;
use crate::workload::SharedWorkload;

/// Which layer protects the values.
#[derive(Debug, Clone, Copy)]
pub enum Protection {
    /// `Sign`: an HMAC-SHA256 per value.
    Signed,
    /// `Encrypt`: XChaCha20-Poly1305 per value.
    Encrypted,
    /// `Compress` with a 256-byte threshold, so that the workload's 393-byte documents are
    /// compressed (the default threshold, 1 KiB, would leave them as they are).
    Compressed,
}

/// Both facades over one `store` (`memory` or `sqlite`), preloaded: the protected one as the
/// "facade", the plain one in the raw driver's place, so the ratio is the layer's cost.
pub async fn setup(
    store: &str,
    protection: Protection,
    workload: &SharedWorkload,
) -> BenchResult<StoreBench> {
    let (backend, cleanup) = open_local(store, "cachette-bench-protect").await?;
    let protected = match protection {
        Protection::Signed => Sign::new(b"a benchmark secret of 32 bytes..")
            .salt(b"bench")
            .layer(Arc::clone(&backend)),
        Protection::Encrypted => Encrypt::new([7; 32]).layer(Arc::clone(&backend)),
        Protection::Compressed => Compress::new().threshold(256).layer(Arc::clone(&backend)),
    };
    layered_against_plain(store, backend, protected, cleanup, workload).await
}
