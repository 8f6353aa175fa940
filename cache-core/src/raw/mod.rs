//! For store and layer authors: the seam layers plug into, and the helpers every store shares.
//!
//! Applications need none of this; they hold a [`Cache`](crate::Cache) over what
//! `cachette::open(url)` returns and stack layers with
//! [`CacheBuilder::layer`](crate::CacheBuilder::layer). A store author implements
//! [`Backend`](crate::Backend) with the helpers here (TTL arithmetic, prefix ranges, URL
//! redaction, the named per-key fallbacks); a layer author implements [`Forward`] (overriding
//! only what the layer changes) or, for a layer that does the same around every call,
//! [`Intercept`], and a [`Layer`] that wraps a store in it. [`header`] documents, byte by
//! byte, what a cache with freshness stores before each value, for clients in other languages.

mod counter;
mod fallback_impl;
pub mod header;
mod intercept;
pub mod invalidation;
mod layer;
mod options;
mod prefix;
mod redact;
mod ttl;

pub use async_trait::async_trait;
pub use counter::{add_to_counter, counter_bytes, parse_counter};
pub use intercept::{Answer, Call, CallFuture, Intercept, Intercepted};
pub use layer::{Forward, Layer, LayerFn, layer_fn};
pub use options::{Options, check_duration, parse_duration};
pub use prefix::{prefix_upper_bound, prefix_upper_bound_bytes};
pub use redact::{is_secret_option, redact_url};
pub use ttl::{MAX_TTL_MILLIS, ttl_millis};

/// Per-key loops for a store that truly cannot batch, chosen by name on purpose.
///
/// They make one round trip per key, so a store that uses them says so in its docs. There is
/// none for `set_many`: a loop of `set` calls is not atomic, and `set_many` must be.
pub mod fallback {
    pub use super::fallback_impl::{delete_many_each, get_many_each};
}
