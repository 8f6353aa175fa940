//! The client: the pool, the statements, time limits, and the one function that turns sqlx's
//! errors into cachette's.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cache_core::{Error, Result};
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres};

use crate::config::PostgresConfig;
use crate::schema::{self, Statements};

/// What the client waits beyond `statement_timeout` before giving up on a silent server: enough
/// for the server's own cancellation to arrive first in the usual case.
const CLIENT_GRACE: Duration = Duration::from_millis(500);

/// SQLSTATE 54000: `index row size … exceeds btree version 4 maximum 2704`.
const PROGRAM_LIMIT_EXCEEDED: &str = "54000";

/// Rows deleted per purge statement.
pub(crate) const PURGE_BATCH: i64 = 10_000;

/// The pool, the statements and the limits; shared by the store and its purge task.
pub(crate) struct Core {
    pub pool: PgPool,
    pub sql: Statements,
    pub config: PostgresConfig,
    retirement: Arc<Retirement>,
}

impl Core {
    pub(crate) async fn connect(config: PostgresConfig) -> Result<Self> {
        let retirement = Arc::new(Retirement::default());
        let keep = Arc::clone(&retirement);
        let statement_timeout = config.get_statement_timeout().as_millis().to_string();
        let connect = config
            .connect_options()
            .clone()
            .options([("statement_timeout", statement_timeout.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(config.get_pool_max())
            .min_connections(0)
            .acquire_timeout(config.get_acquire_timeout())
            // sqlx already tests every connection when it is released; a second round trip
            // before each use would double the cost of a cache read. Connections that died
            // while idle are instead retired as soon as one of them fails (see `Retirement`).
            .test_before_acquire(false)
            .before_acquire(move |_, meta| {
                let keep = keep.keeps(meta.age);
                Box::pin(async move { Ok(keep) })
            })
            .connect_with(connect)
            .await
            .map_err(|error| {
                Error::backend(
                    "postgres",
                    "connect",
                    None,
                    ConnectError {
                        url: config.redacted_url().to_owned(),
                        source: error,
                    },
                )
            })?;
        schema::ensure(&pool, &config).await?;
        Ok(Self {
            sql: Statements::new(config.get_table()),
            pool,
            config,
            retirement,
        })
    }

    /// A pooled connection, within `acquire_timeout`.
    pub(crate) async fn acquire(
        &self,
        operation: &'static str,
        key: Option<&str>,
    ) -> Result<PoolConnection<Postgres>> {
        self.pool
            .acquire()
            .await
            .map_err(|error| self.failed(operation, key, error))
    }

    /// Runs a statement's future under the client-side limit.
    pub(crate) async fn timed<T>(
        &self,
        statement: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Outcome<T> {
        let limit = self.config.get_statement_timeout() + CLIENT_GRACE;
        match tokio::time::timeout(limit, statement).await {
            Ok(result) => Outcome::Done(result),
            Err(_) => Outcome::TimedOut(limit),
        }
    }

    /// The statement's result as cachette's; a connection that timed out or broke is closed
    /// rather than handed to the next caller.
    pub(crate) fn settle<T>(
        &self,
        operation: &'static str,
        key: Option<&str>,
        connection: &mut PoolConnection<Postgres>,
        outcome: Outcome<T>,
    ) -> Result<T> {
        match outcome {
            Outcome::Done(Ok(value)) => Ok(value),
            Outcome::Done(Err(error)) => {
                if is_connection_lost(&error) {
                    connection.close_on_drop();
                }
                Err(self.failed(operation, key, error))
            }
            Outcome::TimedOut(limit) => {
                // Mid-statement, the connection's state is unknown: never reuse it.
                connection.close_on_drop();
                self.retirement.connection_failed();
                Err(Error::backend(
                    "postgres",
                    operation,
                    key,
                    StatementTimedOut(limit),
                ))
            }
        }
    }

    /// [`Core::settle`] for statements that write keys: PostgreSQL refuses a key whose index
    /// entry would exceed a third of a page (about 2.7 KB after compression), and that is the
    /// key's fault, so it is [`Error::InvalidKey`] naming `refused`.
    pub(crate) fn settle_write<T>(
        &self,
        operation: &'static str,
        refused: &str,
        key: Option<&str>,
        connection: &mut PoolConnection<Postgres>,
        outcome: Outcome<T>,
    ) -> Result<T> {
        if let Outcome::Done(Err(sqlx::Error::Database(error))) = &outcome
            && error.code().as_deref() == Some(PROGRAM_LIMIT_EXCEEDED)
        {
            return Err(Error::invalid_key(
                refused,
                format!(
                    "the key is {} bytes long and too long for PostgreSQL's index: {}",
                    refused.len(),
                    error.message()
                ),
            ));
        }
        self.settle(operation, key, connection, outcome)
    }

    fn failed(&self, operation: &'static str, key: Option<&str>, error: sqlx::Error) -> Error {
        if is_connection_lost(&error) {
            self.retirement.connection_failed();
        }
        map_postgres_error(operation, key, error)
    }

    /// Deletes expired rows in batches; returns how many.
    pub(crate) async fn purge_expired(&self) -> Result<u64> {
        let mut purged = 0;
        loop {
            let mut connection = self.acquire("purge_expired", None).await?;
            let outcome = self
                .timed(
                    sqlx::query(self.sql.purge.clone())
                        .bind(PURGE_BATCH)
                        .execute(&mut *connection),
                )
                .await;
            let deleted = self
                .settle("purge_expired", None, &mut connection, outcome)?
                .rows_affected();
            purged += deleted;
            if deleted < PURGE_BATCH.unsigned_abs() {
                return Ok(purged);
            }
        }
    }
}

/// A statement's end: its result, or the client-side limit it ran into.
pub(crate) enum Outcome<T> {
    Done(Result<T, sqlx::Error>),
    TimedOut(Duration),
}

/// When a server restarts, every idle connection in the pool is dead, and without a test before
/// each use each would fail one call. Instead, the first failure marks the moment, and every
/// connection opened before it is closed when next taken from the pool, in favour of a new one.
#[derive(Debug, Default)]
struct Retirement {
    failed_at: Mutex<Option<Instant>>,
}

impl Retirement {
    fn connection_failed(&self) {
        *self
            .failed_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now());
    }

    /// Whether a connection of this age may serve.
    fn keeps(&self, age: Duration) -> bool {
        let failed_at = *self
            .failed_at
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match (failed_at, Instant::now().checked_sub(age)) {
            (Some(failed_at), Some(opened_at)) => opened_at > failed_at,
            _ => true,
        }
    }
}

/// Errors after which the connection, and likely its siblings, no longer reach the server.
fn is_connection_lost(error: &sqlx::Error) -> bool {
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

/// Every sqlx error becomes an [`Error::Backend`] of store `postgres` with the operation and key.
pub(crate) fn map_postgres_error(
    operation: &'static str,
    key: Option<&str>,
    error: sqlx::Error,
) -> Error {
    Error::backend("postgres", operation, key, error)
}

/// The client stopped waiting for a statement the server did not answer.
#[derive(Debug)]
pub struct StatementTimedOut(Duration);

impl std::fmt::Display for StatementTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no answer from PostgreSQL within {:?}", self.0)
    }
}

impl std::error::Error for StatementTimedOut {}

/// A failed first connection, naming the (redacted) URL.
#[derive(Debug)]
struct ConnectError {
    url: String,
    source: sqlx::Error,
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
    fn connections_opened_before_a_failure_are_retired() {
        let retirement = Retirement::default();
        assert!(retirement.keeps(Duration::from_secs(3600)));
        retirement.connection_failed();
        std::thread::sleep(Duration::from_millis(5));
        assert!(!retirement.keeps(Duration::from_millis(1000)));
        assert!(retirement.keeps(Duration::ZERO));
    }
}
