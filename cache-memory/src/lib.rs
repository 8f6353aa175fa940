//! The bounded in-process store of [cachette](https://docs.rs/cachette), on
//! [moka](https://docs.rs/moka).
//!
//! Values are kept as immutable [`Bytes`](cache_core::Bytes), so no caller can change cached
//! state through a value it wrote or read. The store is bounded by entry count or by bytes
//! (key + value + bookkeeping); moka evicts with TinyLFU when full. TTLs are per entry, to the
//! millisecond, and expired entries are reclaimed by moka's housekeeping during normal use, not
//! merely hidden.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> cache_core::Result<()> {
//! use std::sync::Arc;
//! use cache_core::Cache;
//! use cache_memory::MemoryBackend;
//!
//! let store = MemoryBackend::builder().max_bytes(64 * 1024 * 1024).build();
//! let cache: Cache<String> = Cache::builder(Arc::new(store)).prefix("names:").build();
//! cache.set("1", &"Ada".to_string()).await?;
//! assert_eq!(cache.get("1").await?.as_deref(), Some("Ada"));
//! # Ok(()) }
//! ```

mod backend;
mod config;

pub use backend::{MemoryBackend, MemoryBackendBuilder};
