//! The SQL text of one table, the clock rows are judged by, and keys bound as one array.

use std::rc::Rc;
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::types::Value;

/// Milliseconds since the Unix epoch: the clock `expires_at` is kept in, shared with every other
/// process that opens the file.
pub(crate) fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}

/// Keys as one `rarray` parameter: a batch of any size binds a single value, so SQLite's
/// bound-variable limit never applies.
pub(crate) fn key_array(keys: &[String]) -> Vec<Value> {
    keys.iter().map(|key| Value::Text(key.clone())).collect()
}

/// The keys of an array made by [`key_array`].
pub(crate) fn array_keys(array: &[Value]) -> impl Iterator<Item = &str> {
    array.iter().filter_map(|value| match value {
        Value::Text(key) => Some(key.as_str()),
        _ => None,
    })
}

/// Binds `keys` as one array for `work`, then takes them back, so that a retry binds them again
/// without a copy. `work` must drop its statement before returning (cached statements clear their
/// bindings when they go back to the cache).
pub(crate) fn with_array<T>(keys: &mut Vec<Value>, work: impl FnOnce(&Rc<Vec<Value>>) -> T) -> T {
    let array = Rc::new(std::mem::take(keys));
    let outcome = work(&array);
    *keys = Rc::try_unwrap(array).unwrap_or_else(|shared| (*shared).clone());
    outcome
}

/// The statements of one table. `?now` is the current time in ms; a row is live when its
/// `expires_at` is NULL or later than now.
#[derive(Debug)]
pub(crate) struct Sql {
    pub(crate) get: String,
    pub(crate) get_many: String,
    pub(crate) contains: String,
    pub(crate) ttl: String,
    pub(crate) upsert: String,
    pub(crate) insert_if_absent: String,
    pub(crate) delete: String,
    pub(crate) delete_live: String,
    pub(crate) count_live_many: String,
    pub(crate) delete_many: String,
    pub(crate) expire: String,
    pub(crate) count_live_from: String,
    pub(crate) count_live_range: String,
    pub(crate) delete_from: String,
    pub(crate) delete_range: String,
    pub(crate) purge: String,
    pub(crate) take: String,
    pub(crate) get_with_ttl: String,
    /// A point read bounded for the calling task: the value only when its length (read from
    /// the record header, without loading overflow pages) is at most `?3`, then that length
    /// and the expiry.
    pub(crate) get_inline: String,
    pub(crate) get_many_with_ttl: String,
    pub(crate) scan_from: String,
    pub(crate) scan_range: String,
    pub(crate) counter: String,
    pub(crate) renew_lease: String,
    pub(crate) release_lease: String,
    pub(crate) create_table: String,
    pub(crate) create_index: String,
}

impl Sql {
    pub(crate) fn new(table: &str) -> Self {
        // The name is validated to `[A-Za-z_][A-Za-z0-9_]*`, so quoting cannot be escaped.
        let t = format!("\"{table}\"");
        let live = "(expires_at IS NULL OR expires_at > ?2)";
        Self {
            get: format!("SELECT value FROM {t} WHERE key = ?1 AND {live}"),
            // The array drives the loop (CROSS JOIN fixes the order) and its rowid is the
            // 1-based position of the key in the request, so duplicates answer each position.
            get_many: format!(
                "SELECT a.rowid, t.value FROM rarray(?1) AS a CROSS JOIN {t} AS t \
                 ON t.key = a.value WHERE (t.expires_at IS NULL OR t.expires_at > ?2)"
            ),
            contains: format!("SELECT 1 FROM {t} WHERE key = ?1 AND {live}"),
            ttl: format!("SELECT expires_at FROM {t} WHERE key = ?1 AND {live}"),
            upsert: format!(
                "INSERT INTO {t} (key, value, expires_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
                 expires_at = excluded.expires_at"
            ),
            // Replaces only an expired row; a live one makes the statement change nothing.
            insert_if_absent: format!(
                "INSERT INTO {t} (key, value, expires_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value, \
                 expires_at = excluded.expires_at \
                 WHERE {t}.expires_at IS NOT NULL AND {t}.expires_at <= ?4"
            ),
            delete: format!("DELETE FROM {t} WHERE key = ?1"),
            delete_live: format!("DELETE FROM {t} WHERE key = ?1 RETURNING {live}"),
            count_live_many: format!("SELECT count(*) FROM {t} WHERE key IN rarray(?1) AND {live}"),
            delete_many: format!("DELETE FROM {t} WHERE key IN rarray(?1)"),
            expire: format!("UPDATE {t} SET expires_at = ?3 WHERE key = ?1 AND {live}"),
            // Prefix clears compare keys as byte ranges under the BINARY collation: no LIKE, so
            // `%`, `_` and `\` are ordinary characters and case matters.
            count_live_from: format!("SELECT count(*) FROM {t} WHERE key >= ?1 AND {live}"),
            count_live_range: format!(
                "SELECT count(*) FROM {t} WHERE key >= ?1 AND key < ?3 AND {live}"
            ),
            delete_from: format!("DELETE FROM {t} WHERE key >= ?1"),
            delete_range: format!("DELETE FROM {t} WHERE key >= ?1 AND key < ?2"),
            purge: format!(
                "DELETE FROM {t} WHERE rowid IN (SELECT rowid FROM {t} \
                 WHERE expires_at <= ?1 LIMIT ?2)"
            ),
            take: format!("DELETE FROM {t} WHERE key = ?1 RETURNING value, {live}"),
            get_with_ttl: format!("SELECT value, expires_at FROM {t} WHERE key = ?1 AND {live}"),
            get_inline: format!(
                "SELECT CASE WHEN octet_length(value) <= ?3 THEN value END, octet_length(value), \
                 expires_at FROM {t} WHERE key = ?1 AND {live}"
            ),
            get_many_with_ttl: format!(
                "SELECT a.rowid, t.value, t.expires_at FROM rarray(?1) AS a CROSS JOIN {t} AS t \
                 ON t.key = a.value WHERE (t.expires_at IS NULL OR t.expires_at > ?2)"
            ),
            // A walk's page: a range of the key index from `?1` (the prefix, then the smallest
            // key after the last one returned), in key order, values read only when `?4` asks.
            scan_from: format!(
                "SELECT key, CASE WHEN ?4 THEN value END FROM {t} \
                 WHERE key >= ?1 AND {live} ORDER BY key LIMIT ?3"
            ),
            scan_range: format!(
                "SELECT key, CASE WHEN ?4 THEN value END FROM {t} \
                 WHERE key >= ?1 AND key < ?5 AND {live} ORDER BY key LIMIT ?3"
            ),
            counter: format!("SELECT value, expires_at FROM {t} WHERE key = ?1 AND {live}"),
            // A lease changes only while it is live and holds the caller's token.
            renew_lease: format!(
                "UPDATE {t} SET expires_at = ?3 WHERE key = ?1 AND {live} AND value = ?4"
            ),
            release_lease: format!("DELETE FROM {t} WHERE key = ?1 AND {live} AND value = ?3"),
            // A rowid table on purpose: WITHOUT ROWID would keep whole rows, values included, in
            // the interior b-tree pages, so that a seek past a row holding a 4 MiB value reads
            // all 4 MiB (observed: a 20,000-key delete_many took 8-18 s instead of 0.1 s).
            // Here the key index holds keys only and values live in the table's leaves.
            create_table: format!(
                "CREATE TABLE IF NOT EXISTS {t} (\
                     key TEXT COLLATE BINARY NOT NULL PRIMARY KEY, \
                     value BLOB NOT NULL, \
                     expires_at INTEGER\
                 )"
            ),
            create_index: format!(
                "CREATE INDEX IF NOT EXISTS \"{table}_expires_at\" ON {t} (expires_at) \
                 WHERE expires_at IS NOT NULL"
            ),
        }
    }
}
