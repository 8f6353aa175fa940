//! Layers: cross-cutting behaviour over any store, stacked with
//! [`CacheBuilder::layer`](crate::CacheBuilder::layer).
//!
//! Each layer is a [`Layer`](crate::Layer) whose store forwards every call it does not change
//! (see [`raw::Forward`](crate::raw::Forward)), so batches keep their single round trip and
//! `set_many` its atomicity through any stack. Each passes the conformance suite over the
//! reference store and over a real one.
//!
//! | layer | what it does |
//! |---|---|
//! | [`Observe`] | reports every call (store, operation, key count, hits, elapsed, error kind) to an [`Observer`]: [`TracingObserver`] (feature `tracing`), [`MetricsObserver`] (feature `metrics`) or your own |
//! | [`Timeout`] | gives each call a deadline; a late call fails as a transient [`Error::Backend`](crate::Error::Backend) |
//! | [`Retry`] | retries transient failures with bounded, jittered backoff, and never a call whose outcome a retry could miscount |
//! | [`Faults`] | for tests: fails, delays, hangs or loses the replies of calls by a seeded plan, or all calls during an outage |
//! | `Sign` (feature `sign`) | an HMAC-SHA256 over the full key and the value of every entry; forged or copied entries are refused |
//! | `Encrypt` (feature `encrypt`) | XChaCha20-Poly1305 with a random nonce per write and the full key as associated data |
//! | `Compress` (feature `compress`) | LZ4 above a size threshold, with a one-byte mark so small values and old entries stay as they are |
//!
//! Order matters. The last layer given is the outermost, the first a call goes through: give
//! `Encrypt` (or `Sign`) before `Compress`, so that values are compressed before they are
//! sealed.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> cache_core::Result<()> {
//! use std::sync::Arc;
//! use std::time::Duration;
//! use cache_core::Cache;
//! use cache_core::layers::{Retry, Timeout};
//! use cache_core::testing::ReferenceBackend;
//!
//! let cache: Cache<String> = Cache::builder(Arc::new(ReferenceBackend::default()))
//!     .layer(Timeout::new(Duration::from_millis(250))) // each attempt gets 250 ms
//!     .layer(Retry::new(3))                            // up to 3 attempts of transient failures
//!     .build();
//! cache.set("k", &"v".to_string()).await?;
//! # Ok(()) }
//! ```

mod faults;
mod observe;
mod retry;
#[cfg(any(feature = "sign", feature = "encrypt", feature = "compress"))]
mod sealed;
mod timeout;

#[cfg(feature = "compress")]
mod compress;
#[cfg(feature = "encrypt")]
mod encrypt;
#[cfg(feature = "sign")]
mod sign;

#[cfg(feature = "metrics")]
mod metrics;
#[cfg(feature = "tracing")]
mod tracing;

pub use faults::{Fault, Faults, Outage};
pub use observe::{CacheEvent, Call, CallEvent, Observe, Observer};
pub use retry::Retry;
pub use timeout::Timeout;

#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub use self::metrics::MetricsObserver;
#[cfg(feature = "tracing")]
#[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
pub use self::tracing::{KeyDisplay, TracingObserver};
#[cfg(feature = "compress")]
#[cfg_attr(docsrs, doc(cfg(feature = "compress")))]
pub use compress::Compress;
#[cfg(feature = "encrypt")]
#[cfg_attr(docsrs, doc(cfg(feature = "encrypt")))]
pub use encrypt::Encrypt;
#[cfg(feature = "sign")]
#[cfg_attr(docsrs, doc(cfg(feature = "sign")))]
pub use sign::Sign;
