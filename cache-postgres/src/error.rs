//! The one place sqlx failures become [`cache_core::Error`]s, and the errors the store makes
//! itself. Both the connection core and the schema code use it, so neither imports the other
//! for it.

use std::time::Duration;

use cache_core::Error;

/// SQLSTATE 54000, `program_limit_exceeded`: among others, `index row size … exceeds btree
/// version 4 maximum 2704`, which is the one that means the key is too long.
const PROGRAM_LIMIT_EXCEEDED: &str = "54000";

/// Whether a write failed because a key's index entry is too big. SQLSTATE 54000 covers every
/// program limit (too many columns, arrays too large, …), so the message must be about an index
/// row as well; any other limit stays an [`Error::Backend`]. (A server whose `lc_messages` is not
/// English reports even an over-long key as `Error::Backend`: less precise, never wrong.)
pub(crate) fn is_key_too_long(code: Option<&str>, message: &str) -> bool {
    code == Some(PROGRAM_LIMIT_EXCEEDED) && message.contains("index row")
}

/// Errors after which the connection, and likely its siblings, no longer reach the server.
pub(crate) fn is_connection_lost(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => true,
        // Class 08 is connection exceptions; 57P01-57P03 are shutdown and startup.
        sqlx::Error::Database(error) => error.code().is_some_and(|code| {
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

/// Errors after which the same call may well succeed if made again: a lost or refused
/// connection, a pool with no connection free in time, a server starting or shutting down, and
/// the conflicts PostgreSQL itself says to retry (serialization failure, deadlock, lock not
/// available, too many connections, a statement cancelled by its timeout).
pub(crate) fn is_transient(error: &sqlx::Error) -> bool {
    is_connection_lost(error)
        || matches!(error, sqlx::Error::PoolTimedOut)
        || matches!(error, sqlx::Error::Database(error) if error.code().is_some_and(|code| {
            matches!(code.as_ref(), "40001" | "40P01" | "55P03" | "53300" | "57014")
        }))
}

/// Every sqlx error becomes an [`Error::Backend`] of store `postgres` with the operation and key.
pub(crate) fn map_postgres_error(
    operation: &'static str,
    key: Option<&str>,
    error: sqlx::Error,
) -> Error {
    let transient = is_transient(&error);
    Error::backend("postgres", operation, key, error).with_transient(transient)
}

/// No connection could be made within the acquire timeout, and why when that is known.
#[derive(Debug)]
pub struct NoConnection {
    pub(crate) waited: Duration,
    pub(crate) cause: Option<sqlx::Error>,
}

impl std::fmt::Display for NoConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no connection to PostgreSQL within {:?}", self.waited)?;
        match &self.cause {
            Some(cause) => write!(f, ": {cause}"),
            None => write!(f, " (the pool timed out)"),
        }
    }
}

impl std::error::Error for NoConnection {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_ref()
            .map(|cause| cause as &(dyn std::error::Error + 'static))
    }
}

/// The client stopped waiting for a statement the server did not answer.
#[derive(Debug)]
pub struct StatementTimedOut(pub(crate) Duration);

impl std::fmt::Display for StatementTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no answer from PostgreSQL within {:?}", self.0)
    }
}

impl std::error::Error for StatementTimedOut {}

/// A failed first connection, naming the (redacted) URL.
#[derive(Debug)]
pub(crate) struct ConnectError {
    pub(crate) url: String,
    pub(crate) source: sqlx::Error,
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot connect to {}: {}", self.url, self.source)
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_index_row_limits_mean_a_key_is_too_long() {
        assert!(is_key_too_long(
            Some("54000"),
            "index row size 8216 exceeds btree version 4 maximum 2704 for index \"t_pkey\""
        ));
        assert!(is_key_too_long(
            Some("54000"),
            "index row requires 9000 bytes, maximum size is 8191"
        ));
        assert!(!is_key_too_long(
            Some("54000"),
            "array size exceeds the maximum allowed (134217727)"
        ));
        assert!(!is_key_too_long(Some("54001"), "index row size 9000"));
        assert!(!is_key_too_long(None, "index row size 9000"));
    }
}
