//! The one place SQLite failures become [`cache_core::Error`]s, with a sentence on what each
//! likely means for a cache.

use std::fmt;

use cache_core::Error;
use rusqlite::ErrorCode;

/// The store's name in errors and metrics.
pub(crate) const STORE: &str = "sqlite";

/// What a worker reports when a job did not complete.
#[derive(Debug)]
pub(crate) enum Failure {
    /// SQLite refused.
    Sqlite(rusqlite::Error),
    /// The store was closed, or its thread is gone.
    Closed,
}

impl From<rusqlite::Error> for Failure {
    fn from(error: rusqlite::Error) -> Self {
        Failure::Sqlite(error)
    }
}

/// A SQLite error with a sentence on what it likely means for a cache.
#[derive(Debug)]
pub(crate) struct Explained {
    pub(crate) context: String,
    pub(crate) source: Option<rusqlite::Error>,
}

impl fmt::Display for Explained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(source) => write!(f, "{source}{}", self.context),
            None => f.write_str(&self.context),
        }
    }
}

impl std::error::Error for Explained {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|source| source as &(dyn std::error::Error + 'static))
    }
}

fn hint(error: &rusqlite::Error) -> &'static str {
    match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            " (another connection or process held the lock for longer than the busy timeout)"
        }
        Some(ErrorCode::ReadOnly) => " (the database file or its directory is read-only)",
        Some(ErrorCode::CannotOpen) => {
            " (check that the directory exists and that this process may create and write \
             files in it)"
        }
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            " (the file is not a SQLite database, or it is corrupt)"
        }
        Some(ErrorCode::DiskFull) => " (the disk is full)",
        Some(ErrorCode::TooBig) => {
            " (the value, or the key and value together, exceed SQLite's length limit)"
        }
        Some(ErrorCode::PermissionDenied) => " (permission denied)",
        _ => "",
    }
}

/// A key longer than a connection's length limit: SQLite cannot bind it.
#[derive(Debug)]
pub(crate) struct KeyTooLong {
    pub(crate) key: String,
    pub(crate) limit: usize,
}

impl fmt::Display for KeyTooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the key is {} bytes long, more than the {} bytes SQLite holds in one string",
            self.key.len(),
            self.limit
        )
    }
}

impl std::error::Error for KeyTooLong {}

/// A copy of `error` for each of several callers it reaches (rusqlite errors are not `Clone`):
/// SQLite's codes and message are kept, so hints and `is_busy` read the same.
pub(crate) fn copy_error(error: &rusqlite::Error) -> rusqlite::Error {
    match error {
        rusqlite::Error::SqliteFailure(code, message) => {
            rusqlite::Error::SqliteFailure(*code, message.clone())
        }
        other => rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some(other.to_string()),
        ),
    }
}

/// Every SQLite failure becomes an [`Error::Backend`] here, naming the operation and the key,
/// except a key SQLite cannot hold, which is the caller's fault: [`Error::InvalidKey`].
pub(crate) fn map_sqlite_error(
    operation: &'static str,
    key: Option<&str>,
    failure: Failure,
) -> Error {
    if let Failure::Sqlite(rusqlite::Error::ToSqlConversionFailure(source)) = &failure
        && let Some(too_long) = source.downcast_ref::<KeyTooLong>()
    {
        return Error::invalid_key(&too_long.key, too_long.to_string());
    }
    let transient = matches!(&failure, Failure::Sqlite(error) if is_busy(error));
    let explained = match failure {
        Failure::Sqlite(error) => Explained {
            context: hint(&error).to_owned(),
            source: Some(error),
        },
        Failure::Closed => Explained {
            context: "the store is closed, or its worker thread stopped".to_owned(),
            source: None,
        },
    };
    // A lock held past the busy timeout is the one failure that waiting may cure.
    Error::backend(STORE, operation, key, explained).with_transient(transient)
}

/// An error opening `what`, worded for the person who configured it.
pub(crate) fn open_error(what: &str, error: rusqlite::Error) -> Error {
    Error::backend(
        STORE,
        "open",
        None,
        Explained {
            context: format!("{} while opening {what}", hint(&error)),
            source: Some(error),
        },
    )
}

/// A lock another connection or process held past the busy timeout.
pub(crate) fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}
