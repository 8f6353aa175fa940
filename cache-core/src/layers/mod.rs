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
//!
//! Order matters. The last layer given is the outermost:
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
mod timeout;

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
