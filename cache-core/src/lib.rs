#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backend;
mod cache;
mod error;
mod options;
mod redact;
mod serializer;
mod single_flight;
pub mod testing;
mod ttl;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use async_trait::async_trait;
pub use backend::{Backend, Condition, Ttl};
pub use bytes::Bytes;
pub use cache::{Cache, CacheBuilder, DecodePolicy};
pub use error::{BoxError, Error, Result};
pub use options::SetOptions;
pub use redact::{is_secret_option, redact_url};
pub use serializer::{Cbor, Json, Raw, Serializer};
pub use ttl::{MAX_TTL_MILLIS, ttl_millis};
