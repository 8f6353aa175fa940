//! The table: its DDL, its creation under an advisory lock, the check of an existing one, and
//! every statement the store runs against it.

use std::sync::Arc;

use cache_core::{Error, Result};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Postgres, SqlSafeStr, SqlStr, Transaction};

use crate::config::{PostgresConfig, TableName};
use crate::error::map_postgres_error;

/// The two-part advisory lock key that every store takes while it creates or checks its table
/// (`'cach'` and `'schm'` in ASCII). It is one fixed key, not one per table name: `cachette` and
/// `public.cachette` may be the same table, and so may two spellings under different
/// `search_path`s, and only a key that ignores the spelling keeps their creators from racing.
/// Stores of different tables wait on each other only for the few statements of creation.
const SCHEMA_LOCK: (i32, i32) = (0x6361_6368, 0x7363_686d);

/// Expiry is judged by the server clock at the start of each statement. `statement_timestamp()`
/// is stable within a statement (one instant for every row, and usable in index conditions),
/// unlike `clock_timestamp()`, and unlike `now()` it still moves on inside a transaction.
const NOW: &str = "statement_timestamp()";

/// The `CREATE` statements for `table`: what the store runs the first time it meets a database
/// without the table, and what a DBA can run by hand.
pub fn ddl(table: &TableName, unlogged: bool) -> [String; 2] {
    let unlogged = if unlogged { "UNLOGGED " } else { "" };
    let quoted = table.quoted();
    [
        format!(
            "CREATE {unlogged}TABLE IF NOT EXISTS {quoted} (\n    \
             key        bytea PRIMARY KEY,\n    \
             value      bytea NOT NULL,\n    \
             expires_at timestamptz\n)"
        ),
        format!(
            "CREATE INDEX IF NOT EXISTS {} ON {quoted} (expires_at) WHERE expires_at IS NOT NULL",
            table.index_identifier()
        ),
    ]
}

/// Every statement the store runs, built once per store with its table name in place.
#[derive(Debug)]
pub(crate) struct Statements {
    pub get: SqlStr,
    pub get_many: SqlStr,
    pub set: SqlStr,
    pub set_if_absent: SqlStr,
    pub set_many: SqlStr,
    pub delete: SqlStr,
    pub delete_keys: SqlStr,
    pub delete_many: SqlStr,
    pub contains: SqlStr,
    pub expire: SqlStr,
    pub ttl: SqlStr,
    pub clear_range: SqlStr,
    pub clear_from: SqlStr,
    pub purge: SqlStr,
    pub take: SqlStr,
    pub take_many: SqlStr,
    pub get_with_ttl: SqlStr,
    pub get_many_with_ttl: SqlStr,
    pub scan_range: SqlStr,
    pub scan_from: SqlStr,
    pub count_range: SqlStr,
    pub count_from: SqlStr,
    pub incr: SqlStr,
    pub renew_lease: SqlStr,
    pub release_lease: SqlStr,
}

impl Statements {
    pub(crate) fn new(table: &TableName) -> Self {
        let t = table.quoted();
        let live = format!("(expires_at IS NULL OR expires_at > {NOW})");
        // `$3` is the TTL as an interval; a NULL interval gives a NULL (eternal) expiry.
        let upsert = "ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at";
        let sql = |text: String| AssertSqlSafe(Arc::<str>::from(text)).into_sql_str();
        // Microseconds left, NULL for an eternal key: see `ttl`.
        let left = format!(
            "CASE WHEN expires_at IS NULL OR expires_at = 'infinity' THEN NULL \
             ELSE (extract(epoch FROM expires_at - {NOW}) * 1000000)::int8 END"
        );
        // The counter's text, or a string no cast accepts: a cast error is the refusal, and it
        // leaves the row as it was. The pattern is Redis's: no sign but `-`, no spaces, no
        // leading zeros, at most 19 digits (the cast refuses what is past `int8`).
        let counter = "(CASE WHEN convert_from(current.value, 'UTF8') ~ '^(0|-?[1-9][0-9]{0,18})$' \
                       THEN convert_from(current.value, 'UTF8') ELSE 'not a counter' END)::int8";
        Self {
            get: sql(format!("SELECT value FROM {t} WHERE key = $1 AND {live}")),
            get_many: sql(format!(
                "SELECT key, value FROM {t} WHERE key = ANY($1::bytea[]) AND {live}"
            )),
            set: sql(format!(
                "INSERT INTO {t} AS current (key, value, expires_at) \
                 VALUES ($1, $2, {NOW} + $3::interval) {upsert}"
            )),
            // One statement decides: a live row blocks the write (no row comes back), an expired
            // one is overwritten as if absent. Concurrent writers queue on the row lock and
            // re-check the condition against the winner's row, so exactly one of them writes.
            set_if_absent: sql(format!(
                "INSERT INTO {t} AS current (key, value, expires_at) \
                 VALUES ($1, $2, {NOW} + $3::interval) {upsert} \
                 WHERE current.expires_at <= {NOW} RETURNING true"
            )),
            // Rows are locked in the order they are inserted; ORDER BY makes that key order
            // whatever the plan, as in `delete_many`, so that overlapping batches cannot
            // deadlock. The client has already removed duplicates, which ON CONFLICT refuses.
            set_many: sql(format!(
                "INSERT INTO {t} AS current (key, value, expires_at) \
                 SELECT k, v, {NOW} + $3::interval FROM UNNEST($1::bytea[], $2::bytea[]) AS u(k, v) \
                 ORDER BY k {upsert}"
            )),
            delete: sql(format!("DELETE FROM {t} WHERE key = $1 RETURNING {live}")),
            // A plain `DELETE … WHERE key = ANY(…)` locks rows in whatever order its plan meets
            // them (heap order for a sequential or bitmap scan), which need not be the key order
            // in which `set_many` locks them; two overlapping batches could then deadlock. The
            // rows are therefore locked first, sorted, with FOR UPDATE (applied after ORDER BY).
            delete_keys: sql(format!(
                "DELETE FROM {t} WHERE key IN (SELECT key FROM {t} \
                 WHERE key = ANY($1::bytea[]) ORDER BY key FOR UPDATE)"
            )),
            delete_many: sql(format!(
                "WITH gone AS (DELETE FROM {t} WHERE key IN (SELECT key FROM {t} \
                 WHERE key = ANY($1::bytea[]) ORDER BY key FOR UPDATE) RETURNING expires_at) \
                 SELECT count(*) FROM gone WHERE {live}"
            )),
            contains: sql(format!(
                "SELECT EXISTS (SELECT 1 FROM {t} WHERE key = $1 AND {live})"
            )),
            expire: sql(format!(
                "UPDATE {t} SET expires_at = {NOW} + $2::interval \
                 WHERE key = $1 AND {live} RETURNING true"
            )),
            // NULL for an eternal key, also one another writer gave `infinity` (which cannot be
            // subtracted from); microseconds left otherwise (at least 1, as the row is live).
            ttl: sql(format!(
                "SELECT CASE WHEN expires_at = 'infinity' THEN NULL \
                 ELSE (extract(epoch FROM expires_at - {NOW}) * 1000000)::int8 END \
                 FROM {t} WHERE key = $1 AND {live}"
            )),
            // A range of the primary key's index, never LIKE: no character of a prefix is special.
            clear_range: sql(format!(
                "WITH gone AS (DELETE FROM {t} WHERE key >= $1 AND key < $2 RETURNING expires_at) \
                 SELECT count(*) FROM gone WHERE {live}"
            )),
            clear_from: sql(format!(
                "WITH gone AS (DELETE FROM {t} WHERE key >= $1 RETURNING expires_at) \
                 SELECT count(*) FROM gone WHERE {live}"
            )),
            take: sql(format!(
                "DELETE FROM {t} WHERE key = $1 RETURNING value, {live}"
            )),
            // Rows locked in key order, as in `delete_many`; each comes back once however often
            // the caller named it.
            take_many: sql(format!(
                "DELETE FROM {t} WHERE key IN (SELECT key FROM {t} \
                 WHERE key = ANY($1::bytea[]) ORDER BY key FOR UPDATE) \
                 RETURNING key, value, {live}"
            )),
            get_with_ttl: sql(format!(
                "SELECT value, {left} FROM {t} WHERE key = $1 AND {live}"
            )),
            get_many_with_ttl: sql(format!(
                "SELECT key, value, {left} FROM {t} WHERE key = ANY($1::bytea[]) AND {live}"
            )),
            // Keyset pages over the primary key's index: `$1` is the prefix, then the smallest
            // key after the last one returned; values are read only when `$3` asks.
            scan_range: sql(format!(
                "SELECT key, CASE WHEN $3 THEN value END FROM {t} \
                 WHERE key >= $1 AND key < $4 AND {live} ORDER BY key LIMIT $2"
            )),
            scan_from: sql(format!(
                "SELECT key, CASE WHEN $3 THEN value END FROM {t} \
                 WHERE key >= $1 AND {live} ORDER BY key LIMIT $2"
            )),
            count_range: sql(format!(
                "SELECT count(*) FROM {t} WHERE key >= $1 AND key < $2 AND {live}"
            )),
            count_from: sql(format!(
                "SELECT count(*) FROM {t} WHERE key >= $1 AND {live}"
            )),
            // One statement: a new or expired key starts at `$2` with the TTL `$3`; a live
            // counter adds `$2` and keeps its expiry. Concurrent increments queue on the row lock.
            incr: sql(format!(
                "INSERT INTO {t} AS current (key, value, expires_at) \
                 VALUES ($1, convert_to($2::int8::text, 'UTF8'), {NOW} + $3::interval) \
                 ON CONFLICT (key) DO UPDATE SET \
                 value = CASE WHEN current.expires_at <= {NOW} THEN excluded.value \
                 ELSE convert_to(({counter} + $2::int8)::text, 'UTF8') END, \
                 expires_at = CASE WHEN current.expires_at <= {NOW} THEN excluded.expires_at \
                 ELSE current.expires_at END \
                 RETURNING convert_from(value, 'UTF8')::int8"
            )),
            // A lease changes only while it is live and holds the caller's token.
            renew_lease: sql(format!(
                "UPDATE {t} SET expires_at = {NOW} + $2::interval \
                 WHERE key = $1 AND {live} AND value = $3"
            )),
            release_lease: sql(format!(
                "DELETE FROM {t} WHERE key = $1 AND {live} AND value = $2"
            )),
            // Batches keep each statement short, and SKIP LOCKED lets several processes purge at
            // once without waiting on each other. The outer condition is checked again on the
            // row as it is when locked, so a key rewritten meanwhile survives. Both counts come
            // back: rows selected (a full batch means there may be more) and rows deleted.
            purge: sql(format!(
                "WITH picked AS (SELECT key FROM {t} WHERE expires_at <= {NOW} \
                 LIMIT $1 FOR UPDATE SKIP LOCKED), \
                 gone AS (DELETE FROM {t} WHERE key IN (SELECT key FROM picked) \
                 AND expires_at <= {NOW} RETURNING 1) \
                 SELECT (SELECT count(*) FROM picked), (SELECT count(*) FROM gone)"
            )),
        }
    }
}

/// Creates the table and its index if missing and checks an existing table's shape, under a
/// transaction-scoped advisory lock: `CREATE TABLE IF NOT EXISTS` alone fails with a duplicate
/// key error when two sessions create the same table at once.
pub(crate) async fn ensure(connection: &mut PgConnection, config: &PostgresConfig) -> Result<()> {
    let fail = |error| map_postgres_error("create_table", None, error);
    let table = config.get_table();
    let quoted = table.quoted();
    let mut tx = connection.begin().await.map_err(fail)?;
    sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
        .bind(SCHEMA_LOCK.0)
        .bind(SCHEMA_LOCK.1)
        .execute(&mut *tx)
        .await
        .map_err(fail)?;
    let [create_table, create_index] = ddl(table, config.is_unlogged());
    let (table_exists, index_exists): (bool, bool) =
        sqlx::query_as("SELECT to_regclass($1) IS NOT NULL, to_regclass($2) IS NOT NULL")
            .bind(&quoted)
            .bind(table.quoted_index())
            .fetch_one(&mut *tx)
            .await
            .map_err(fail)?;
    if table_exists {
        check_shape(&mut tx, config).await?;
    } else {
        run_ddl(&mut tx, create_table).await?;
    }
    if !index_exists {
        run_ddl(&mut tx, create_index).await?;
    }
    tx.commit().await.map_err(fail)
}

async fn run_ddl(tx: &mut Transaction<'_, Postgres>, statement: String) -> Result<()> {
    sqlx::query(AssertSqlSafe(statement))
        .persistent(false)
        .execute(&mut **tx)
        .await
        .map_err(|error| map_postgres_error("create_table", None, error))
        .map(drop)
}

/// An existing table must have the columns the statements use and a unique index on `key`
/// (for `ON CONFLICT`); anything else is a configuration error naming the table, rather than a
/// server error on every call.
async fn check_shape(tx: &mut Transaction<'_, Postgres>, config: &PostgresConfig) -> Result<()> {
    let table = config.get_table();
    let columns: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), c.relpersistence::text \
         FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
         WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped",
    )
    .bind(table.quoted())
    .fetch_all(&mut **tx)
    .await
    .map_err(|error| map_postgres_error("create_table", None, error))?;
    for (column, expected) in [
        ("key", "bytea"),
        ("value", "bytea"),
        ("expires_at", "timestamp with time zone"),
    ] {
        let found = columns.iter().find(|(name, _, _)| name == column);
        if found.is_none_or(|(_, found, _)| found != expected) {
            return Err(Error::config(format!(
                "table {table} exists but is not a cachette table: column {column} should be \
                 {expected}, found {}; drop it or choose another with ?table=",
                found.map_or("nothing", |(_, found, _)| found.as_str())
            )));
        }
    }
    let key_is_unique: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a \
         ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] \
         WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indnkeyatts = 1 \
         AND i.indpred IS NULL AND a.attname = 'key')",
    )
    .bind(table.quoted())
    .fetch_one(&mut **tx)
    .await
    .map_err(|error| map_postgres_error("create_table", None, error))?;
    if !key_is_unique {
        return Err(Error::config(format!(
            "table {table} exists but has no unique index on key, which the cache needs"
        )));
    }
    let unlogged = columns
        .first()
        .is_some_and(|(_, _, persistence)| persistence == "u");
    if unlogged != config.is_unlogged() {
        // The table's persistence is the DBA's call once it exists; say so, but serve.
        tracing::warn!(
            table = %table,
            "cache table is {} but the URL asks for unlogged={}; using the table as it is \
             (ALTER TABLE … SET {} to change it)",
            if unlogged { "UNLOGGED" } else { "logged" },
            config.is_unlogged(),
            if config.is_unlogged() { "UNLOGGED" } else { "LOGGED" },
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_quotes_the_table_and_names_the_index() {
        let table = TableName::new("app.cache").unwrap();
        let [create_table, create_index] = ddl(&table, true);
        assert!(create_table.starts_with(r#"CREATE UNLOGGED TABLE IF NOT EXISTS "app"."cache" ("#));
        assert!(create_table.contains("key        bytea PRIMARY KEY"));
        assert!(create_index.starts_with(
            r#"CREATE INDEX IF NOT EXISTS "cache_expires_at_idx" ON "app"."cache" (expires_at)"#
        ));
        let [logged, _] = ddl(&table, false);
        assert!(logged.starts_with("CREATE TABLE"));
    }
}
