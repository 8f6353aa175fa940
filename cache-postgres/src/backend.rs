//! `PostgresBackend`: the `Backend` impl over one table.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cache_core::raw::invalidation::InvalidationBus;
use cache_core::raw::{prefix_upper_bound_bytes, ttl_millis};
use cache_core::{
    Backend, Bytes, Condition, Error, Result, ScanCursor, ScanOptions, ScanPage, Ttl, async_trait,
};
use sqlx::Row;
use sqlx::postgres::PgRow;
use sqlx::postgres::types::PgInterval;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;

use crate::channel::PostgresChannel;
use crate::config::PostgresConfig;
use crate::core::{Core, Outcome};

/// TTLs clamp here: far beyond any cache's needs, and far inside `timestamptz`'s range (which
/// ends in the year 294276) whatever the server's clock says.
pub const MAX_TTL: Duration = Duration::from_secs(10_000 * 365 * 24 * 3600);

/// A cache table in PostgreSQL.
///
/// Cheap to share behind an `Arc` (which [`Cache`](cache_core::Cache) does); every call takes a
/// connection from the store's pool for one statement. See the [crate docs](crate) for the
/// table, the URL options and how expiry works.
pub struct PostgresBackend {
    core: Arc<Core>,
    purger: Mutex<Option<JoinHandle<()>>>,
    /// Invalidations for local tiers, over `LISTEN/NOTIFY`.
    bus: Arc<InvalidationBus>,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("config", &self.core.config)
            .field("connections", &self.core.pool.size())
            .field("idle", &self.core.pool.num_idle())
            .finish()
    }
}

impl Drop for PostgresBackend {
    fn drop(&mut self) {
        self.stop_purger();
    }
}

impl PostgresBackend {
    /// Opens the store a `postgres://` URL names (see [`PostgresConfig::from_url`] for its
    /// options, and [`PostgresConfig::open`] for settings adjusted in code): connects, creates
    /// the table if it is missing, and starts the background purge.
    ///
    /// Fails with [`Error::Config`](cache_core::Error::Config) for a bad URL or an existing table
    /// of another shape, and with [`Error::Backend`](cache_core::Error::Backend) when the server
    /// cannot be reached within `acquire_timeout`.
    pub async fn open(url: &str) -> Result<Self> {
        PostgresConfig::from_url(url)?.open().await
    }

    pub(crate) async fn with_config(config: PostgresConfig) -> Result<Self> {
        let purge_interval = config.get_purge_interval();
        let core = Arc::new(Core::connect(config).await?);
        let purger = purge_interval.map(|every| spawn_purger(&core, every));
        let bus =
            InvalidationBus::with_transport(Arc::new(PostgresChannel::new(Arc::clone(&core))));
        Ok(Self {
            core,
            purger: Mutex::new(purger),
            bus,
        })
    }

    /// The settings this store runs with.
    pub fn config(&self) -> &PostgresConfig {
        &self.core.config
    }

    /// Deletes every expired row now and returns how many it deleted. Expired rows are already
    /// invisible to every call; this gives their space back. The background purge calls it
    /// every `purge_interval`.
    pub async fn purge_expired(&self) -> Result<u64> {
        self.core.purge_expired().await
    }

    /// Deletes `key` for `operation`; returns whether it was live.
    async fn remove(&self, operation: &'static str, key: &str) -> Result<bool> {
        let core = &self.core;
        let mut connection = core.acquire(operation, Some(key)).await?;
        let outcome = core
            .timed(
                sqlx::query_scalar::<_, bool>(core.sql.delete.clone())
                    .bind(key.as_bytes())
                    .fetch_optional(&mut *connection),
            )
            .await;
        let was_live = core.settle(operation, Some(key), &mut connection, outcome)?;
        Ok(was_live == Some(true))
    }

    fn stop_purger(&self) {
        let purger = self
            .purger
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(purger) = purger {
            purger.abort();
        }
    }
}

fn spawn_purger(core: &Arc<Core>, every: Duration) -> JoinHandle<()> {
    // A weak handle: the task must not keep a dropped store's pool alive.
    let core = Arc::downgrade(core);
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let Some(core) = core.upgrade() else { return };
            if core.pool.is_closed() {
                return;
            }
            match core.purge_expired().await {
                Ok(purged) => tracing::debug!(purged, "purged expired cache rows"),
                Err(error) => tracing::warn!(%error, "purging expired cache rows failed"),
            }
        }
    })
}

/// The TTL of a live row from the microseconds the statements compute (`NULL`: eternal).
fn ttl_from_micros(micros: Option<i64>) -> Ttl {
    match micros {
        None => Ttl::Eternal,
        Some(micros) => Ttl::Remaining(Duration::from_micros(micros.unsigned_abs())),
    }
}

/// Why `incr` was refused, from the SQLSTATE of its failure: the stored bytes are not UTF-8
/// (22021) or not an integer (22P02), or the sum leaves `int8` (22003). `None` for any other
/// failure, which is the store's.
fn counter_refusal(code: Option<&str>, delta: i64) -> Option<String> {
    match code? {
        "22021" | "22P02" => {
            Some("it holds bytes that are not the decimal ASCII of a 64-bit integer".into())
        }
        "22003" => Some(format!("adding {delta} overflows a 64-bit integer")),
        _ => None,
    }
}

/// `None` for no expiry, else the TTL in whole milliseconds (rounded up, clamped) as an interval.
fn interval(ttl: Option<Duration>) -> Option<PgInterval> {
    ttl.map(|ttl| PgInterval {
        months: 0,
        days: 0,
        // At most MAX_TTL: ~3.2e17 µs, far inside i64.
        microseconds: i64::try_from(ttl_millis(ttl.min(MAX_TTL)) * 1000).unwrap_or(i64::MAX),
    })
}

/// The longest key that always fits PostgreSQL's B-tree index with its default 8 KB pages: an
/// entry may take 2,704 bytes, of which 8 are the entry's header and 4 the value's, and
/// compression only ever makes an entry smaller. Only longer keys can be refused.
const ALWAYS_INDEXABLE_KEY_BYTES: usize = 2_692;

/// How much of a key a message shows.
const KEY_PREVIEW_CHARS: usize = 32;

/// The error for a refused single-key write: the server's message is about this very key.
fn key_too_long(key: &str, message: &str) -> Error {
    Error::invalid_key(
        key,
        format!(
            "the key is {} bytes long and too long for PostgreSQL's index: {message}",
            key.len()
        ),
    )
}

/// The error for a batch the server refused because some key's index entry is too big. The
/// server does not say which key, and a long key that compresses well fits where a shorter one
/// that does not fails, so length alone cannot tell. A key is named as the culprit only when it
/// is the one key in the batch long enough to be refused; otherwise the first of the keys long
/// enough is named and the message says that it is one of them, listing them all.
fn batch_key_too_long(entries: &[(String, Bytes)], message: &str) -> Error {
    let mut candidates: Vec<&str> = entries
        .iter()
        .map(|(key, _)| key.as_str())
        .filter(|key| key.len() > ALWAYS_INDEXABLE_KEY_BYTES)
        .collect();
    if candidates.is_empty() {
        // A server built with smaller pages refuses shorter keys: any key may be the one.
        candidates = entries.iter().map(|(key, _)| key.as_str()).collect();
    }
    match candidates.as_slice() {
        [only] => key_too_long(only, message),
        [first, ..] => {
            let listed: Vec<String> = candidates.iter().map(|key| preview(key)).collect();
            Error::invalid_key(
                first,
                format!(
                    "a key in this batch is too long for PostgreSQL's index, and PostgreSQL does \
                     not say which; it is one of these {} keys (this one or another): {}. \
                     Nothing of the batch was written: {message}",
                    candidates.len(),
                    listed.join(", ")
                ),
            )
        }
        // Unreachable: `set_many` returns early on an empty batch.
        [] => key_too_long("", message),
    }
}

/// The start of `key` and its length, so that a message naming several long keys stays short.
fn preview(key: &str) -> String {
    match key.char_indices().nth(KEY_PREVIEW_CHARS) {
        Some((cut, _)) => format!("{:?}… ({} bytes)", &key[..cut], key.len()),
        None => format!("{key:?} ({} bytes)", key.len()),
    }
}

/// The same key at most once, keeping its last value, ordered by key: the order in which rows
/// are locked, so that concurrent batches over the same keys cannot deadlock.
fn last_value_per_key(mut entries: Vec<(String, Bytes)>) -> Vec<(String, Bytes)> {
    // Stable, so duplicates keep their order and the last one is the one kept.
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut unique: Vec<(String, Bytes)> = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        match unique.last_mut() {
            Some(last) if last.0 == key => last.1 = value,
            _ => unique.push((key, value)),
        }
    }
    unique
}

#[async_trait]
impl Backend for PostgresBackend {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn invalidation_bus(&self) -> Option<Arc<InvalidationBus>> {
        Some(Arc::clone(&self.bus))
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let core = &self.core;
        let mut connection = core.acquire("get", Some(key)).await?;
        let outcome = core
            .timed(
                sqlx::query_scalar::<_, Vec<u8>>(core.sql.get.clone())
                    .bind(key.as_bytes())
                    .fetch_optional(&mut *connection),
            )
            .await;
        let value = core.settle("get", Some(key), &mut connection, outcome)?;
        Ok(value.map(Bytes::from))
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let core = &self.core;
        let wanted: Vec<&[u8]> = keys.iter().map(|key| key.as_bytes()).collect();
        let mut connection = core.acquire("get_many", None).await?;
        let outcome = core
            .timed(
                sqlx::query(core.sql.get_many.clone())
                    .bind(&wanted)
                    .fetch_all(&mut *connection),
            )
            .await;
        let rows = core.settle("get_many", None, &mut connection, outcome)?;
        place_rows("get_many", &wanted, rows, ValueOf::bytes)
    }

    async fn set(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        condition: Condition,
    ) -> Result<bool> {
        let core = &self.core;
        if ttl == Some(Duration::ZERO) && condition == Condition::Always {
            // Already expired: the write leaves the key absent, so remove it outright.
            self.remove("set", key).await?;
            return Ok(true);
        }
        let statement = match condition {
            Condition::Always => core.sql.set.clone(),
            Condition::IfNotExists => core.sql.set_if_absent.clone(),
        };
        let mut connection = core.acquire("set", Some(key)).await?;
        let outcome = core
            .timed(
                sqlx::query(statement)
                    .bind(key.as_bytes())
                    .bind(value.as_ref())
                    .bind(interval(ttl))
                    .execute(&mut *connection),
            )
            .await;
        let done = core.settle_write(
            "set",
            |message| key_too_long(key, message),
            Some(key),
            &mut connection,
            outcome,
        )?;
        Ok(condition == Condition::Always || done.rows_affected() == 1)
    }

    async fn set_many(&self, entries: Vec<(String, Bytes)>, ttl: Option<Duration>) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let core = &self.core;
        if ttl == Some(Duration::ZERO) {
            let keys: Vec<&[u8]> = entries.iter().map(|(key, _)| key.as_bytes()).collect();
            let mut connection = core.acquire("set_many", None).await?;
            let outcome = core
                .timed(
                    sqlx::query(core.sql.delete_keys.clone())
                        .bind(&keys)
                        .execute(&mut *connection),
                )
                .await;
            core.settle("set_many", None, &mut connection, outcome)?;
            return Ok(());
        }
        // ON CONFLICT cannot touch one row twice in a statement, so duplicates go first.
        let entries = last_value_per_key(entries);
        let keys: Vec<&[u8]> = entries.iter().map(|(key, _)| key.as_bytes()).collect();
        let values: Vec<&[u8]> = entries.iter().map(|(_, value)| value.as_ref()).collect();
        let mut connection = core.acquire("set_many", None).await?;
        let outcome = core
            .timed(
                sqlx::query(core.sql.set_many.clone())
                    .bind(&keys)
                    .bind(&values)
                    .bind(interval(ttl))
                    .execute(&mut *connection),
            )
            .await;
        core.settle_write(
            "set_many",
            |message| batch_key_too_long(&entries, message),
            None,
            &mut connection,
            outcome,
        )?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        self.remove("delete", key).await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        let core = &self.core;
        let mut connection = core.acquire("delete_many", None).await?;
        let outcome = core
            .timed(
                sqlx::query_scalar::<_, i64>(core.sql.delete_many.clone())
                    .bind(keys.iter().map(|key| key.as_bytes()).collect::<Vec<_>>())
                    .fetch_one(&mut *connection),
            )
            .await;
        let removed = core.settle("delete_many", None, &mut connection, outcome)?;
        Ok(removed.unsigned_abs())
    }

    async fn contains(&self, key: &str) -> Result<bool> {
        let core = &self.core;
        let mut connection = core.acquire("contains", Some(key)).await?;
        let outcome = core
            .timed(
                sqlx::query_scalar::<_, bool>(core.sql.contains.clone())
                    .bind(key.as_bytes())
                    .fetch_one(&mut *connection),
            )
            .await;
        core.settle("contains", Some(key), &mut connection, outcome)
    }

    async fn expire_in(&self, key: &str, ttl: Option<Duration>) -> Result<bool> {
        if ttl == Some(Duration::ZERO) {
            return self.remove("expire_in", key).await;
        }
        let core = &self.core;
        let mut connection = core.acquire("expire_in", Some(key)).await?;
        let outcome = core
            .timed(
                sqlx::query(core.sql.expire.clone())
                    .bind(key.as_bytes())
                    .bind(interval(ttl))
                    .execute(&mut *connection),
            )
            .await;
        let done = core.settle("expire_in", Some(key), &mut connection, outcome)?;
        Ok(done.rows_affected() == 1)
    }

    async fn ttl(&self, key: &str) -> Result<Option<Ttl>> {
        let core = &self.core;
        let mut connection = core.acquire("ttl", Some(key)).await?;
        let outcome = core
            .timed(
                sqlx::query_scalar::<_, Option<i64>>(core.sql.ttl.clone())
                    .bind(key.as_bytes())
                    .fetch_optional(&mut *connection),
            )
            .await;
        let row = core.settle("ttl", Some(key), &mut connection, outcome)?;
        Ok(row.map(|micros| match micros {
            None => Ttl::Eternal,
            Some(micros) => Ttl::Remaining(Duration::from_micros(micros.unsigned_abs())),
        }))
    }

    async fn clear_prefix(&self, prefix: &str) -> Result<u64> {
        let core = &self.core;
        let mut connection = core.acquire("clear_prefix", Some(prefix)).await?;
        let query = match prefix_upper_bound_bytes(prefix.as_bytes()) {
            Some(upper) => sqlx::query_scalar::<_, i64>(core.sql.clear_range.clone())
                .bind(prefix.as_bytes())
                .bind(upper),
            None => {
                sqlx::query_scalar::<_, i64>(core.sql.clear_from.clone()).bind(prefix.as_bytes())
            }
        };
        let outcome = core.timed(query.fetch_one(&mut *connection)).await;
        let removed = core.settle("clear_prefix", Some(prefix), &mut connection, outcome)?;
        Ok(removed.unsigned_abs())
    }

    async fn take(&self, key: &str) -> Result<Option<Bytes>> {
        let core = &self.core;
        let mut connection = core.acquire("take", Some(key)).await?;
        let outcome = core
            .timed(
                sqlx::query_as::<_, (Vec<u8>, bool)>(core.sql.take.clone())
                    .bind(key.as_bytes())
                    .fetch_optional(&mut *connection),
            )
            .await;
        let row = core.settle("take", Some(key), &mut connection, outcome)?;
        Ok(row.and_then(|(value, live)| live.then(|| Bytes::from(value))))
    }

    async fn take_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let core = &self.core;
        let wanted: Vec<&[u8]> = keys.iter().map(|key| key.as_bytes()).collect();
        let mut connection = core.acquire("take_many", None).await?;
        let outcome = core
            .timed(
                sqlx::query_as::<_, (Vec<u8>, Vec<u8>, bool)>(core.sql.take_many.clone())
                    .bind(&wanted)
                    .fetch_all(&mut *connection),
            )
            .await;
        let rows = core.settle("take_many", None, &mut connection, outcome)?;
        // Each row answers the first position of its key; later ones stay `None`.
        let mut first: HashMap<&[u8], usize> = HashMap::with_capacity(wanted.len());
        for (position, key) in wanted.iter().enumerate().rev() {
            first.insert(key, position);
        }
        let mut taken = vec![None; wanted.len()];
        for (key, value, live) in rows {
            if live && let Some(&position) = first.get(key.as_slice()) {
                taken[position] = Some(Bytes::from(value));
            }
        }
        Ok(taken)
    }

    async fn get_with_ttl(&self, key: &str) -> Result<Option<(Bytes, Ttl)>> {
        let core = &self.core;
        let mut connection = core.acquire("get_with_ttl", Some(key)).await?;
        let outcome = core
            .timed(
                sqlx::query_as::<_, (Vec<u8>, Option<i64>)>(core.sql.get_with_ttl.clone())
                    .bind(key.as_bytes())
                    .fetch_optional(&mut *connection),
            )
            .await;
        let row = core.settle("get_with_ttl", Some(key), &mut connection, outcome)?;
        Ok(row.map(|(value, micros)| (Bytes::from(value), ttl_from_micros(micros))))
    }

    async fn get_many_with_ttl(&self, keys: &[String]) -> Result<Vec<Option<(Bytes, Ttl)>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let core = &self.core;
        let wanted: Vec<&[u8]> = keys.iter().map(|key| key.as_bytes()).collect();
        let mut connection = core.acquire("get_many_with_ttl", None).await?;
        let outcome = core
            .timed(
                sqlx::query(core.sql.get_many_with_ttl.clone())
                    .bind(&wanted)
                    .fetch_all(&mut *connection),
            )
            .await;
        let rows = core.settle("get_many_with_ttl", None, &mut connection, outcome)?;
        place_rows("get_many_with_ttl", &wanted, rows, |row| {
            let micros: Option<i64> = row.try_get(2)?;
            Ok((ValueOf::bytes(row)?, ttl_from_micros(micros)))
        })
    }

    async fn scan(
        &self,
        prefix: &str,
        cursor: ScanCursor,
        options: ScanOptions,
    ) -> Result<ScanPage> {
        // Keyset pages: each starts at the smallest key after the last one returned (that key
        // and a zero byte), so a page costs the same however far the walk has come.
        let from: Vec<u8> = match cursor.last_key() {
            Some(last) => [last.as_bytes(), &[0]].concat(),
            None if cursor.is_start() => prefix.as_bytes().to_vec(),
            None => {
                return Err(Error::backend(
                    "postgres",
                    "scan",
                    None,
                    "the cursor is not a PostgreSQL store's",
                ));
            }
        };
        let limit = i64::try_from(options.page.max(1)).unwrap_or(i64::MAX);
        let core = &self.core;
        let mut connection = core.acquire("scan", None).await?;
        let query = match prefix_upper_bound_bytes(prefix.as_bytes()) {
            Some(upper) => {
                sqlx::query_as::<_, (Vec<u8>, Option<Vec<u8>>)>(core.sql.scan_range.clone())
                    .bind(from)
                    .bind(limit)
                    .bind(options.values)
                    .bind(upper)
            }
            None => sqlx::query_as::<_, (Vec<u8>, Option<Vec<u8>>)>(core.sql.scan_from.clone())
                .bind(from)
                .bind(limit)
                .bind(options.values),
        };
        let outcome = core.timed(query.fetch_all(&mut *connection)).await;
        let rows = core.settle("scan", None, &mut connection, outcome)?;
        let full = rows.len() == options.page.max(1);
        let mut entries = Vec::with_capacity(rows.len());
        for (key, value) in rows {
            // Keys are written from `&str`; another writer's bytes that are not UTF-8 are no
            // key of this cache's.
            if let Ok(key) = String::from_utf8(key) {
                entries.push((key, value.map(Bytes::from)));
            }
        }
        let next = if full {
            entries
                .last()
                .map(|(last, _)| ScanCursor::after(last.clone()))
        } else {
            None
        };
        Ok(ScanPage { entries, next })
    }

    async fn count_prefix(&self, prefix: &str) -> Result<u64> {
        let core = &self.core;
        let mut connection = core.acquire("count_prefix", None).await?;
        let query = match prefix_upper_bound_bytes(prefix.as_bytes()) {
            Some(upper) => sqlx::query_scalar::<_, i64>(core.sql.count_range.clone())
                .bind(prefix.as_bytes())
                .bind(upper),
            None => {
                sqlx::query_scalar::<_, i64>(core.sql.count_from.clone()).bind(prefix.as_bytes())
            }
        };
        let outcome = core.timed(query.fetch_one(&mut *connection)).await;
        let live = core.settle("count_prefix", None, &mut connection, outcome)?;
        Ok(live.unsigned_abs())
    }

    async fn purge_expired(&self) -> Result<u64> {
        PostgresBackend::purge_expired(self).await
    }

    async fn acquire_lease(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        let value = Bytes::copy_from_slice(token.as_bytes());
        let ttl = Some(ttl.max(Duration::from_millis(1)));
        self.set(key, value, ttl, Condition::IfNotExists).await
    }

    async fn renew_lease(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        let core = &self.core;
        let mut connection = core.acquire("renew_lease", Some(key)).await?;
        let outcome = core
            .timed(
                sqlx::query(core.sql.renew_lease.clone())
                    .bind(key.as_bytes())
                    .bind(interval(Some(ttl.max(Duration::from_millis(1)))))
                    .bind(token.as_bytes())
                    .execute(&mut *connection),
            )
            .await;
        let done = core.settle("renew_lease", Some(key), &mut connection, outcome)?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_lease(&self, key: &str, token: &str) -> Result<bool> {
        let core = &self.core;
        let mut connection = core.acquire("release_lease", Some(key)).await?;
        let outcome = core
            .timed(
                sqlx::query(core.sql.release_lease.clone())
                    .bind(key.as_bytes())
                    .bind(token.as_bytes())
                    .execute(&mut *connection),
            )
            .await;
        let done = core.settle("release_lease", Some(key), &mut connection, outcome)?;
        Ok(done.rows_affected() == 1)
    }

    async fn incr(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        let core = &self.core;
        let mut connection = core.acquire("incr", Some(key)).await?;
        let outcome = core
            .timed(
                sqlx::query_scalar::<_, i64>(core.sql.incr.clone())
                    .bind(key.as_bytes())
                    .bind(delta)
                    .bind(interval(ttl))
                    .fetch_one(&mut *connection),
            )
            .await;
        if let Outcome::Done(Err(sqlx::Error::Database(error))) = &outcome
            && let Some(reason) = counter_refusal(error.code().as_deref(), delta)
        {
            return Err(Error::not_a_counter(key, reason));
        }
        core.settle_write(
            "incr",
            |message| key_too_long(key, message),
            Some(key),
            &mut connection,
            outcome,
        )
    }

    async fn close(&self) -> Result<()> {
        self.stop_purger();
        self.core.pool.close().await;
        Ok(())
    }
}

/// The answer of a batch read in the order of `wanted`: each row of `rows` (its key in the first
/// column) read by `answer` and placed where its key was asked, `None` where no row came.
///
/// Rows come back in no particular order. Each is placed by its key read in place from the row,
/// against positions indexed by the caller's own keys, so no key is copied; a key asked more
/// than once gets the answer at each of its places.
fn place_rows<T: Clone>(
    operation: &'static str,
    wanted: &[&[u8]],
    rows: Vec<PgRow>,
    answer: impl Fn(PgRow) -> std::result::Result<T, sqlx::Error>,
) -> Result<Vec<Option<T>>> {
    let failed = |error| Error::backend("postgres", operation, None, error);
    // The caller's keys, hashed once each way: foldhash, seeded afresh for every map, costs a
    // fraction of SipHash on keys of this length, and the map lives for one call.
    let mut positions: HashMap<&[u8], usize, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(wanted.len(), foldhash::fast::RandomState::default());
    let mut repeated = false;
    for (position, key) in wanted.iter().enumerate().rev() {
        repeated |= positions.insert(key, position).is_some();
    }
    let mut found: Vec<Option<T>> = vec![None; wanted.len()];
    for row in rows {
        let key: &[u8] = row.try_get(0).map_err(failed)?;
        if let Some(&position) = positions.get(key) {
            found[position] = Some(answer(row).map_err(failed)?);
        }
    }
    if repeated {
        for (position, key) in wanted.iter().enumerate() {
            if let Some(&first) = positions.get(key)
                && first != position
            {
                found[position] = found[first].clone();
            }
        }
    }
    Ok(found)
}

/// A row's value column as [`Bytes`] without a copy: the row itself is the bytes' owner.
struct ValueOf(PgRow);

impl ValueOf {
    /// The value (the second column) of `row`, checked to read as bytes.
    fn bytes(row: PgRow) -> std::result::Result<Bytes, sqlx::Error> {
        row.try_get::<&[u8], _>(1)?;
        Ok(Bytes::from_owner(Self(row)))
    }
}

impl AsRef<[u8]> for ValueOf {
    fn as_ref(&self) -> &[u8] {
        // The column's type was checked in `ValueOf::bytes`, the only way one is made.
        self.0.try_get_unchecked::<&[u8], _>(1).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_keep_the_last_value_of_each_key() {
        let entries = vec![
            ("b".to_owned(), Bytes::from_static(b"b1")),
            ("a".to_owned(), Bytes::from_static(b"a1")),
            ("b".to_owned(), Bytes::from_static(b"b2")),
            ("a".to_owned(), Bytes::from_static(b"a2")),
            ("c".to_owned(), Bytes::from_static(b"c1")),
            ("b".to_owned(), Bytes::from_static(b"b3")),
        ];
        let unique = last_value_per_key(entries);
        let shown: Vec<(&str, &[u8])> = unique
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_ref()))
            .collect();
        assert_eq!(
            shown,
            vec![("a", &b"a2"[..]), ("b", &b"b3"[..]), ("c", &b"c1"[..])]
        );
    }

    #[test]
    fn a_refused_batch_names_its_one_long_key_or_says_it_cannot_tell() {
        let entries = |keys: &[String]| -> Vec<(String, Bytes)> {
            keys.iter()
                .map(|key| (key.clone(), Bytes::from_static(b"v")))
                .collect()
        };
        let (short, long, longer) = ("s".to_owned(), "l".repeat(3000), "m".repeat(9000));
        match batch_key_too_long(&entries(&[short.clone(), long.clone()]), "index row size") {
            Error::InvalidKey { key, reason } => {
                assert_eq!(key, long);
                assert!(reason.starts_with("the key is 3000 bytes long"), "{reason}");
            }
            other => panic!("expected InvalidKey, got {other:?}"),
        }
        let batch = entries(&[short, long.clone(), longer]);
        match batch_key_too_long(&batch, "index row size") {
            Error::InvalidKey { key, reason } => {
                assert_eq!(key, long);
                assert!(reason.contains("one of these 2 keys"), "{reason}");
                assert!(reason.contains("(3000 bytes)"), "{reason}");
                assert!(reason.contains("(9000 bytes)"), "{reason}");
                assert!(reason.len() < 400, "{reason}");
            }
            other => panic!("expected InvalidKey, got {other:?}"),
        }
    }

    #[test]
    fn ttls_become_millisecond_intervals() {
        // Sub-millisecond TTLs cannot be told apart over the network, so the conversion is
        // checked here: partial milliseconds round up, as `ttl_millis` does.
        assert!(interval(None).is_none());
        let micros = |ttl| interval(Some(ttl)).map(|i| i.microseconds);
        assert_eq!(micros(Duration::from_nanos(1)), Some(1_000));
        assert_eq!(micros(Duration::from_micros(1)), Some(1_000));
        assert_eq!(micros(Duration::from_micros(300)), Some(1_000));
        assert_eq!(micros(Duration::from_micros(1_001)), Some(2_000));
        assert_eq!(micros(Duration::from_millis(1500)), Some(1_500_000));
        assert_eq!(micros(Duration::MAX), Some(MAX_TTL.as_micros() as i64));
    }
}
