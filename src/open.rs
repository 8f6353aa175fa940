//! `cachette::open(url)`: pick a store at run time.

use std::sync::Arc;

use cache_core::raw::redact_url;
use cache_core::{Backend, Error, Result};

/// Opens the store a URL names, ready to hand to [`Cache::builder`](crate::Cache::builder).
///
/// | URL | store | feature |
/// |---|---|---|
/// | `memory://?capacity=N` or `memory://?max_bytes=N` | in-process, bounded | `memory` |
/// | `sqlite://relative/path.db`, `sqlite:///absolute/path.db`, `sqlite::memory:` | SQLite file | `sqlite` |
/// | `redis://[user:pass@]host:port/db`, `rediss://…`, `redis+cluster://h:p,h:p` | Redis | `redis` |
/// | `postgres://user@host/db?table=name` | PostgreSQL | `postgres` |
///
/// A scheme whose feature is off, or an unknown scheme, is an [`Error::Config`] that says what
/// to do.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> cachette::Result<()> {
/// use cachette::Cache;
///
/// let cache: Cache<u32> = Cache::builder(cachette::open("memory://?capacity=10000").await?).build();
/// cache.set("answer", &42).await?;
/// assert_eq!(cache.get("answer").await?, Some(42));
/// assert!(cachette::open("ftp://nope").await.is_err());
/// # Ok(()) }
/// ```
pub async fn open(url: &str) -> Result<Arc<dyn Backend>> {
    let scheme = url
        .split_once(':')
        .map(|(scheme, _)| scheme.to_ascii_lowercase())
        .ok_or_else(|| Error::config(format!("{url:?} is not a store URL (no scheme)")))?;
    match scheme.as_str() {
        "memory" => open_memory(url).await,
        "sqlite" => open_sqlite(url).await,
        "redis" | "rediss" | "redis+cluster" | "rediss+cluster" | "redis+unix" => {
            open_redis(url).await
        }
        "postgres" | "postgresql" => open_postgres(url).await,
        other => Err(Error::config(format!(
            "unknown store scheme {other:?} in {}; known: memory, sqlite, redis, rediss, \
             redis+cluster, rediss+cluster, redis+unix, postgres, postgresql",
            redact_url(url)
        ))),
    }
}

#[cfg(feature = "memory")]
async fn open_memory(url: &str) -> Result<Arc<dyn Backend>> {
    Ok(Arc::new(cache_memory::MemoryBackend::open(url).await?))
}

#[cfg(not(feature = "memory"))]
async fn open_memory(url: &str) -> Result<Arc<dyn Backend>> {
    Err(feature_off("memory", url))
}

#[cfg(feature = "sqlite")]
async fn open_sqlite(url: &str) -> Result<Arc<dyn Backend>> {
    Ok(Arc::new(cache_sqlite::SqliteBackend::open(url).await?))
}

#[cfg(not(feature = "sqlite"))]
async fn open_sqlite(url: &str) -> Result<Arc<dyn Backend>> {
    Err(feature_off("sqlite", url))
}

#[cfg(feature = "redis")]
async fn open_redis(url: &str) -> Result<Arc<dyn Backend>> {
    Ok(Arc::new(cache_redis::RedisBackend::open(url).await?))
}

#[cfg(not(feature = "redis"))]
async fn open_redis(url: &str) -> Result<Arc<dyn Backend>> {
    Err(feature_off("redis", url))
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &str) -> Result<Arc<dyn Backend>> {
    Ok(Arc::new(cache_postgres::PostgresBackend::open(url).await?))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(url: &str) -> Result<Arc<dyn Backend>> {
    Err(feature_off("postgres", url))
}

#[allow(dead_code)]
fn feature_off(feature: &str, url: &str) -> Error {
    Error::config(format!(
        "{} needs the `{feature}` feature of cachette: cachette = {{ features = [\"{feature}\"] }}",
        redact_url(url)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unknown_schemes_and_missing_features_are_config_errors() {
        let err = open("ftp://user:secret@host/x").await.unwrap_err();
        assert!(matches!(err, Error::Config { .. }));
        let message = err.to_string();
        assert!(message.contains("unknown store scheme"), "{message}");
        assert!(!message.contains("secret"), "{message}");
        assert!(matches!(open("no scheme").await, Err(Error::Config { .. })));
    }

    #[cfg(not(feature = "redis"))]
    #[tokio::test]
    async fn every_redis_scheme_names_the_feature_without_the_password() {
        for url in [
            "redis://:secret@h/0",
            "rediss://:secret@h/0",
            "redis+cluster://:secret@a:1,b:2",
            "rediss+cluster://:secret@a:1,b:2",
            "redis+unix:///s.sock?pass=secret",
        ] {
            let err = open(url).await.map(drop).unwrap_err();
            assert!(matches!(err, Error::Config { .. }), "{url}: {err:?}");
            let message = err.to_string();
            assert!(message.contains("`redis` feature"), "{message}");
            assert!(!message.contains("secret"), "{message}");
        }
    }

    #[cfg(not(feature = "postgres"))]
    #[tokio::test]
    async fn a_store_whose_feature_is_off_names_the_feature() {
        let err = open("postgres://app:hunter2@localhost/db")
            .await
            .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("`postgres` feature"), "{message}");
        assert!(!message.contains("hunter2"), "{message}");
    }
}
