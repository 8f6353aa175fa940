//! The one error type of cachette.

use std::fmt;
use std::sync::Arc;

/// A boxed error from a driver, a serializer or a loader.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with [`Error`] as its default error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a cache call.
///
/// Match on the variant to decide what to do: a [`Error::Backend`] is usually worth a retry or a
/// fallback to the source of truth, a [`Error::Decode`] means the stored bytes are not a `V`
/// (an old schema, another writer), an [`Error::InvalidKey`] is a bug in the caller.
///
/// ```
/// use cache_core::Error;
///
/// let err = Error::invalid_key("a\0b", "PostgreSQL text cannot hold NUL");
/// assert!(matches!(err, Error::InvalidKey { .. }));
/// assert!(err.to_string().contains(r#""a\0b""#));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The store failed: connection refused or lost, timeout, server error, I/O error.
    #[error("{store} store failed during {operation}{}: {source}", KeySuffix(key.as_deref()))]
    Backend {
        /// Which store, e.g. `redis`.
        store: &'static str,
        /// The operation, e.g. `get_many`.
        operation: &'static str,
        /// The key involved, when the operation has exactly one.
        key: Option<String>,
        /// The driver's error.
        #[source]
        source: BoxError,
        /// Whether the same call may well succeed if made again: see [`Error::is_transient`].
        transient: bool,
    },
    /// The bytes under a key could not be decoded into the requested type.
    #[error("cannot decode the value under key {}: {source}", ShowKey(key))]
    Decode {
        /// The caller's key (without the cache prefix).
        key: String,
        /// The serializer's error.
        #[source]
        source: BoxError,
    },
    /// A value could not be encoded.
    #[error("cannot encode the value for key {}: {source}", ShowKey(key))]
    Encode {
        /// The caller's key (without the cache prefix).
        key: String,
        /// The serializer's error.
        #[source]
        source: BoxError,
    },
    /// The store cannot hold this key.
    #[error("invalid key {}: {reason}", ShowKey(key))]
    InvalidKey {
        /// The key as the store received it.
        key: String,
        /// Why the store refuses it.
        reason: String,
    },
    /// The value is larger than the store can hold. Nothing was written: a value is never
    /// stored cut short.
    #[error(
        "the value for key {} is {size} bytes; this store holds values of at most {limit} bytes",
        ShowKey(key)
    )]
    ValueTooLarge {
        /// The key as the store received it.
        key: String,
        /// The value's length in bytes.
        size: usize,
        /// The largest value the store holds, in bytes.
        limit: usize,
    },
    /// A loader asked, on its own task, for the key it is loading (directly or through other
    /// loads): it would wait for itself forever.
    #[error(
        "the loader for key {} asked for that same key: a load cannot wait for itself",
        ShowKey(key)
    )]
    LoadCycle {
        /// The caller's key.
        key: String,
    },
    /// Another caller's load of the key took longer than the cache's
    /// [`load_wait_timeout`](crate::CacheBuilder::load_wait_timeout). That load goes on.
    #[error("waited {waited:?} for another caller's load of key {}", ShowKey(key))]
    LoadTimeout {
        /// The caller's key.
        key: String,
        /// How long this caller waited.
        waited: std::time::Duration,
    },
    /// A URL, an option or a setting is wrong, or names a store whose feature is off.
    #[error("configuration error: {message}")]
    Config {
        /// What is wrong and, where it helps, how to fix it.
        message: String,
        /// The underlying error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The store does not support this operation.
    #[error("the {store} store does not support {operation}")]
    Unsupported {
        /// Which store.
        store: &'static str,
        /// The operation it lacks.
        operation: &'static str,
    },
    /// [`incr`](crate::Backend::incr) met a value under the key that is not a counter (not the
    /// decimal ASCII of an `i64`), or the sum would overflow an `i64`. The stored value is left
    /// as it was.
    #[error("the value under key {} is not a counter: {reason}", ShowKey(key))]
    NotACounter {
        /// The key as the store received it (the caller's key, from a [`Cache`](crate::Cache)).
        key: String,
        /// What is wrong with it: not an integer, or the sum overflows.
        reason: String,
    },
    /// The loader given to [`Cache::get_or_insert_with`](crate::Cache::get_or_insert_with)
    /// failed. Every caller waiting on the same load receives the same error.
    #[error("loading the value for key {} failed: {source}", ShowKey(key))]
    Load {
        /// The caller's key.
        key: String,
        /// The loader's error, shared by every waiter.
        #[source]
        source: Arc<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl Error {
    /// A [`Error::Backend`] for `operation` on `store`, with the key if there is one. It is not
    /// transient; a store's error mapping marks the ones that are with
    /// [`Error::with_transient`].
    pub fn backend(
        store: &'static str,
        operation: &'static str,
        key: Option<&str>,
        source: impl Into<BoxError>,
    ) -> Self {
        Error::Backend {
            store,
            operation,
            key: key.map(str::to_owned),
            source: source.into(),
            transient: false,
        }
    }

    /// This error, marked transient or not when it is an [`Error::Backend`] (other errors are
    /// never transient). Each store calls it in its one error-mapping function.
    #[must_use]
    pub fn with_transient(mut self, is_transient: bool) -> Self {
        if let Error::Backend { transient, .. } = &mut self {
            *transient = is_transient;
        }
        self
    }

    /// Whether the same call may well succeed if made again soon: the store's connection was
    /// refused, lost or timed out, or the store was busy (a SQLite lock held too long, a Redis
    /// Cluster slot moving, a PostgreSQL server starting or shutting down). Retry and
    /// fail-safe layers retry or fall back on these only; a bad key, a value too large, a
    /// decode error, a configuration error or a server that refused the command are never
    /// transient.
    ///
    /// ```
    /// use cache_core::Error;
    ///
    /// let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
    /// assert!(Error::backend("redis", "get", Some("k"), reset).with_transient(true).is_transient());
    /// assert!(!Error::invalid_key("k", "too long").with_transient(true).is_transient());
    /// ```
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::Backend {
                transient: true,
                ..
            }
        )
    }

    /// A short, stable name of the error's kind, for metrics labels and logs: `backend`,
    /// `transient` (a transient `backend` error), `decode`, `encode`, `invalid_key`,
    /// `value_too_large`, `load_cycle`, `load_timeout`, `config`, `unsupported`,
    /// `not_a_counter` or `load`.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Backend {
                transient: true, ..
            } => "transient",
            Error::Backend { .. } => "backend",
            Error::Decode { .. } => "decode",
            Error::Encode { .. } => "encode",
            Error::InvalidKey { .. } => "invalid_key",
            Error::ValueTooLarge { .. } => "value_too_large",
            Error::LoadCycle { .. } => "load_cycle",
            Error::LoadTimeout { .. } => "load_timeout",
            Error::Config { .. } => "config",
            Error::Unsupported { .. } => "unsupported",
            Error::NotACounter { .. } => "not_a_counter",
            Error::Load { .. } => "load",
        }
    }

    /// An [`Error::InvalidKey`].
    pub fn invalid_key(key: &str, reason: impl Into<String>) -> Self {
        Error::InvalidKey {
            key: key.to_owned(),
            reason: reason.into(),
        }
    }

    /// An [`Error::ValueTooLarge`].
    pub fn value_too_large(key: &str, size: usize, limit: usize) -> Self {
        Error::ValueTooLarge {
            key: key.to_owned(),
            size,
            limit,
        }
    }

    /// An [`Error::Unsupported`]: `store` lacks `operation`.
    pub fn unsupported(store: &'static str, operation: &'static str) -> Self {
        Error::Unsupported { store, operation }
    }

    /// An [`Error::NotACounter`].
    pub fn not_a_counter(key: &str, reason: impl Into<String>) -> Self {
        Error::NotACounter {
            key: key.to_owned(),
            reason: reason.into(),
        }
    }

    /// An [`Error::Config`] without an underlying error.
    pub fn config(message: impl Into<String>) -> Self {
        Error::Config {
            message: message.into(),
            source: None,
        }
    }

    /// An [`Error::Config`] caused by `source`.
    pub fn config_with(message: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Error::Config {
            message: message.into(),
            source: Some(source.into()),
        }
    }

    /// The key this error is about, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            Error::Backend { key, .. } => key.as_deref(),
            Error::Decode { key, .. }
            | Error::Encode { key, .. }
            | Error::InvalidKey { key, .. }
            | Error::ValueTooLarge { key, .. }
            | Error::LoadCycle { key }
            | Error::LoadTimeout { key, .. }
            | Error::NotACounter { key, .. }
            | Error::Load { key, .. } => Some(key),
            Error::Config { .. } | Error::Unsupported { .. } => None,
        }
    }
}

/// Keys can be 64 KiB of anything: show them escaped and cut to a readable length.
struct ShowKey<'a>(&'a str);

const SHOWN_KEY_CHARS: usize = 200;

impl fmt::Display for ShowKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.0.chars();
        let head: String = chars.by_ref().take(SHOWN_KEY_CHARS).collect();
        let rest = chars.count();
        write!(f, "{head:?}")?;
        if rest > 0 {
            write!(f, " (and {rest} more characters)")?;
        }
        Ok(())
    }
}

struct KeySuffix<'a>(Option<&'a str>);

impl fmt::Display for KeySuffix<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(key) => write!(f, " of key {}", ShowKey(key)),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_keys_are_cut_in_messages_but_kept_whole() {
        let key = "k".repeat(70_000);
        let err = Error::invalid_key(&key, "too long");
        let message = err.to_string();
        assert!(message.len() < 400, "{message}");
        assert!(message.contains("69800 more characters"), "{message}");
        assert_eq!(err.key(), Some(key.as_str()));
    }

    #[test]
    fn backend_errors_name_store_operation_key_and_source() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let err = Error::backend("redis", "get", Some("user:1"), io);
        assert_eq!(
            err.to_string(),
            r#"redis store failed during get of key "user:1": reset by peer"#
        );
        assert!(std::error::Error::source(&err).is_some());
    }
}
