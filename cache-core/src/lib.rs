#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod backend;
#[cfg(feature = "blocking")]
#[cfg_attr(docsrs, doc(cfg(feature = "blocking")))]
pub mod blocking;
mod cache;
mod capabilities;
mod error;
mod freshness;
pub mod layers;
mod loading;
mod local;
mod locks;
mod options;
mod planted;
pub mod raw;
mod serializer;
mod single_flight;
mod tags;
pub mod testing;

#[cfg(feature = "conformance")]
pub mod conformance;

pub use async_trait::async_trait;
pub use backend::{Backend, Condition, ScanCursor, ScanOptions, ScanPage, Ttl};
pub use bytes::Bytes;
pub use cache::{
    Cache, CacheBuilder, DEFAULT_MAX_BACKGROUND_REFRESHES, DEFAULT_REFRESH_RETRY_AFTER,
    DecodePolicy,
};
pub use error::{BoxError, Error, Result};
pub use freshness::{Entry, Freshness, Loaded};
pub use local::{DEFAULT_LOCAL_HOLD, LocalTier};
pub use locks::{Lease, Lock, LockGuard};
pub use options::SetOptions;
pub use raw::Layer;
#[cfg(feature = "msgpack")]
pub use serializer::MessagePack;
pub use serializer::{Cbor, Json, Raw, Serializer};
