//! One typed cache API, [`Cache<V>`](Cache), over interchangeable stores: in-process memory, a
//! SQLite file, Redis (standalone or Cluster) and PostgreSQL.
//!
//! A Cargo feature compiles a store in (`memory` and `sqlite` by default, `redis`, `postgres`,
//! `full`); a URL given to [`open`] picks it at run time, so swapping storage changes no code.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> cachette::Result<()> {
//! use std::time::Duration;
//! use cachette::{Cache, SetOptions, Ttl};
//!
//! #[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
//! struct DidDoc {
//!     id: String,
//!     also_known_as: Vec<String>,
//! }
//!
//! let cache: Cache<DidDoc> = Cache::builder(cachette::open("memory://").await?)
//!     .prefix("did:")
//!     .default_ttl(Duration::from_secs(3600))
//!     .build();
//!
//! let alice = DidDoc { id: "did:plc:alice".into(), also_known_as: vec![] };
//! cache.set("alice", &alice).await?;
//! assert_eq!(cache.get("alice").await?, Some(alice.clone()));
//! assert!(matches!(cache.ttl("alice").await?, Some(Ttl::Remaining(_))));
//!
//! // Written only if absent: a second writer loses.
//! let first = SetOptions::new().if_not_exists();
//! assert!(!cache.set_with("alice", &alice, first).await?);
//!
//! // One load, however many callers ask at once; the value is cached afterwards.
//! let bob = cache
//!     .get_or_insert_with("bob", || async {
//!         Ok::<_, std::io::Error>(DidDoc { id: "did:plc:bob".into(), also_known_as: vec![] })
//!     })
//!     .await?;
//! assert_eq!(cache.get_many(["alice", "bob", "carol"]).await?.len(), 2);
//! assert_eq!(cache.clear().await?, 2);
//! # let _ = bob;
//! # Ok(()) }
//! ```
//!
//! The application API of [`cache_core`] is re-exported here: [`Cache`] and its builder,
//! [`Serializer`] with [`Cbor`] (default), [`Json`], [`Raw`] (and `MessagePack` with the
//! `msgpack` feature), the [`Error`] type, the
//! [`layers`] to stack with [`CacheBuilder::layer`], and [`Backend`], the trait every store
//! implements. What store and layer authors need besides lives in [`raw`].
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "blocking")]
#[cfg_attr(docsrs, doc(cfg(feature = "blocking")))]
pub mod blocking;
mod open;

pub use cache_core::{
    Backend, BoxError, Bytes, Cache, CacheBuilder, Cbor, Condition, DEFAULT_LOCAL_HOLD,
    DEFAULT_MAX_BACKGROUND_REFRESHES, DEFAULT_REFRESH_RETRY_AFTER, DecodePolicy, Entry, Error,
    Freshness, Json, Layer, Lease, Loaded, LocalTier, Lock, LockGuard, Raw, Result, ScanCursor,
    ScanOptions, ScanPage, Serializer, SetOptions, Ttl, layers, raw, testing,
};
pub use open::open;

#[cfg(feature = "msgpack")]
#[cfg_attr(docsrs, doc(cfg(feature = "msgpack")))]
pub use cache_core::MessagePack;

#[cfg(feature = "memory")]
#[cfg_attr(docsrs, doc(cfg(feature = "memory")))]
pub use cache_memory as memory;
#[cfg(feature = "memory")]
pub use cache_memory::MemoryBackend;

#[cfg(feature = "sqlite")]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub use cache_sqlite as sqlite;
#[cfg(feature = "sqlite")]
pub use cache_sqlite::SqliteBackend;

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use cache_redis as redis;
#[cfg(feature = "redis")]
pub use cache_redis::RedisBackend;

#[cfg(feature = "postgres")]
#[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
pub use cache_postgres as postgres;
#[cfg(feature = "postgres")]
pub use cache_postgres::PostgresBackend;
