//! The client: the pool, the statements, time limits, and the one function that turns sqlx's
//! errors into cachette's.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use cache_core::{Error, Result};
use sqlx::pool::PoolConnection;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgPool, Postgres};

use crate::config::PostgresConfig;
use crate::error::{
    ConnectError, NoConnection, StatementTimedOut, is_connection_lost, is_key_too_long,
    is_transient, map_postgres_error,
};
use crate::schema::{self, Statements};

/// What the client waits beyond `statement_timeout` before giving up on a silent server: enough
/// for the server's own cancellation to arrive first in the usual case.
const CLIENT_GRACE: Duration = Duration::from_millis(500);

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
        // A config adjusted after `from_url` has not been checked yet.
        config.check()?;
        let retirement = Arc::new(Retirement::default());
        let keep = Arc::clone(&retirement);
        let statement_timeout = config.get_statement_timeout().as_millis().to_string();
        let connect = config
            .connect_options()
            .clone()
            .options([("statement_timeout", statement_timeout.as_str())]);
        let opened = PgPoolOptions::new()
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
            .connect_with(connect.clone())
            .await;
        let pool = match opened {
            Ok(pool) => pool,
            Err(error) => {
                let source = match error {
                    sqlx::Error::PoolTimedOut => probe_cause(&connect)
                        .await
                        .unwrap_or(sqlx::Error::PoolTimedOut),
                    other => other,
                };
                let url = config.redacted_url().to_owned();
                let transient = is_transient(&source);
                return Err(Error::backend(
                    "postgres",
                    "connect",
                    None,
                    ConnectError { url, source },
                )
                .with_transient(transient));
            }
        };
        Self::ensure_table(&pool, &config).await?;
        Ok(Self {
            sql: Statements::new(config.get_table()),
            pool,
            config,
            retirement,
        })
    }

    /// Creates or checks the table within the same client-side limit as any call, so that a
    /// server that goes silent after accepting the connection cannot hang `connect`.
    async fn ensure_table(pool: &PgPool, config: &PostgresConfig) -> Result<()> {
        let mut connection = match pool.acquire().await {
            Ok(connection) => connection,
            Err(sqlx::Error::PoolTimedOut) if pool.size() == 0 => {
                let waited = config.get_acquire_timeout();
                return Err(no_connection(pool, "create_table", None, waited).await);
            }
            Err(error) => return Err(map_postgres_error("create_table", None, error)),
        };
        let limit = config.get_statement_timeout() + CLIENT_GRACE;
        match tokio::time::timeout(limit, schema::ensure(&mut connection, config)).await {
            Ok(done) => done,
            Err(_) => {
                // Mid-transaction, the connection's state is unknown: never reuse it.
                connection.close_on_drop();
                Err(
                    Error::backend("postgres", "create_table", None, StatementTimedOut(limit))
                        .with_transient(true),
                )
            }
        }
    }

    /// A pooled connection, within `acquire_timeout`.
    pub(crate) async fn acquire(
        &self,
        operation: &'static str,
        key: Option<&str>,
    ) -> Result<PoolConnection<Postgres>> {
        match self.pool.acquire().await {
            Ok(connection) => Ok(connection),
            Err(sqlx::Error::PoolTimedOut) if self.pool.size() == 0 => {
                let waited = self.config.get_acquire_timeout();
                Err(no_connection(&self.pool, operation, key, waited).await)
            }
            Err(error) => Err(self.failed(operation, key, error)),
        }
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
                // Mid-statement, the connection's state is unknown: never reuse it. Its siblings
                // are kept: one slow or stuck statement says nothing about them, and retiring
                // them all would churn the pool under load. If the server is really gone, their
                // next use fails as connection lost, and that retires them.
                connection.close_on_drop();
                Err(
                    Error::backend("postgres", operation, key, StatementTimedOut(limit))
                        .with_transient(true),
                )
            }
        }
    }

    /// [`Core::settle`] for statements that write keys: PostgreSQL refuses a key whose index
    /// entry would exceed a third of a page (about 2.7 KB after compression), and that is the
    /// key's fault, so `refused` turns it into [`Error::InvalidKey`] given the server's message.
    pub(crate) fn settle_write<T>(
        &self,
        operation: &'static str,
        refused: impl FnOnce(&str) -> Error,
        key: Option<&str>,
        connection: &mut PoolConnection<Postgres>,
        outcome: Outcome<T>,
    ) -> Result<T> {
        if let Outcome::Done(Err(sqlx::Error::Database(error))) = &outcome
            && is_key_too_long(error.code().as_deref(), error.message())
        {
            return Err(refused(error.message()));
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
                    sqlx::query_as::<_, (i64, i64)>(self.sql.purge.clone())
                        .bind(PURGE_BATCH)
                        .fetch_one(&mut *connection),
                )
                .await;
            let (selected, deleted) =
                self.settle("purge_expired", None, &mut connection, outcome)?;
            purged += deleted.unsigned_abs();
            // A full selection means more expired rows may remain, even when some of it was
            // rewritten meanwhile and so not deleted; only a short one shows the end.
            if selected < PURGE_BATCH {
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

/// How long the one extra connection attempt that names the cause of an empty pool may take.
const CAUSE_PROBE: Duration = Duration::from_secs(2);

/// The error of an `acquire` that timed out with not one connection in the pool. sqlx retries a
/// refused connection until the deadline (it takes it for a server starting up) and then says
/// only "pool timed out"; one more attempt, bounded by [`CAUSE_PROBE`], names what is wrong
/// (connection refused, unknown host, bad password).
async fn no_connection(
    pool: &PgPool,
    operation: &'static str,
    key: Option<&str>,
    waited: Duration,
) -> Error {
    let cause = probe_cause(&pool.connect_options()).await;
    // No connection now; the server may be back for the next call.
    Error::backend("postgres", operation, key, NoConnection { waited, cause }).with_transient(true)
}

/// One direct connection attempt, bounded by [`CAUSE_PROBE`]: its error, if it fails with one.
async fn probe_cause(options: &sqlx::postgres::PgConnectOptions) -> Option<sqlx::Error> {
    use sqlx::{ConnectOptions, Connection};
    match tokio::time::timeout(CAUSE_PROBE, options.connect()).await {
        Ok(Err(cause)) => Some(cause),
        Ok(Ok(connection)) => {
            // The server is back: the next call will find it.
            let _ = connection.close().await;
            None
        }
        Err(_) => None,
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
