//! `RedisBackend`: the `Backend` impl, one round trip per call (one per node on a cluster).

use std::collections::HashSet;
use std::fmt;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use cache_core::raw::invalidation::InvalidationBus;
use cache_core::raw::ttl_millis;
use cache_core::{
    Backend, Bytes, Condition, Error, Result, ScanCursor, ScanOptions, ScanPage, Ttl, async_trait,
};
use futures_util::future::try_join_all;
use redis::{Cmd, Pipeline, RedisError, Value};

use crate::channel::RedisChannel;
use crate::cluster::{Node, NodeBatch, Topology};
use crate::coalesce::Coalescer;
use crate::config::RedisConfig;
use crate::core::{Core, STORE, foreign_type};

/// Keys asked for per `SCAN` page while clearing a prefix.
const SCAN_COUNT: usize = 1_000;

/// Keys gathered from `SCAN` pages before they are removed: a sparse scan then does not send a
/// command per page, and a dense one does not hold the whole prefix in memory.
const CLEAR_BATCH: usize = 1_000;

/// The most keys one `UNLINK` names. Redis takes a command's keys out of the keyspace in one go,
/// so a huge batch is cut into a few commands (still one pipeline) that let other clients'
/// requests in between.
const MAX_KEYS_PER_UNLINK: usize = 10_000;

/// A store on a Redis server, a Redis Cluster, or anything that speaks the protocol (Valkey,
/// KeyDB, Dragonfly…).
///
/// Every call is one round trip: `get_many` is one `MGET` (with an `EXISTS` of the same keys,
/// see below), `set_many` one `MULTI`/`EXEC` of
/// `SET … PX` (or one `MSET` without a TTL), `delete_many` one `UNLINK`, `set` with a TTL and
/// [`Condition::IfNotExists`] one `SET … PX … NX`. On a cluster a batch is split by hash slot
/// and sent as one pipeline per primary, all at once; `set_many` is then atomic per slot, so
/// keys that must change together share a `{hash tag}`. When a slot has moved (resharding,
/// failover), the store fetches the slot map again and repeats a `get_many` or `set_many` once.
/// While a slot is migrating, a `get_many` or `set_many` that meets `ASK` or `TRYAGAIN` sends
/// that node's keys again one key per request, to the slot's owner and, for a key that left
/// it, behind `ASKING` to the node the `ASK` names (so such a `set_many` is atomic per key
/// only, not per slot). `delete_many` and
/// `clear_prefix` report a moved or migrating slot as an error instead, since a repeat would
/// miscount. `clear_prefix` asks for the slot map afresh, then walks `SCAN` on every primary;
/// it never uses `KEYS` or `FLUSHDB`.
///
/// A key that holds another Redis type (a list, a hash, …) is present but holds no cache value:
/// `contains` and `ttl` see it, an if-not-exists write is refused, `delete` removes it, and
/// `get` and `get_many` answer [`Error::Decode`](cache_core::Error::Decode) naming it. `MGET`
/// alone cannot tell such a key from a missing one, so `get_many` sends an `EXISTS` count of the
/// same keys in the same round trip, and asks `TYPE` only when the count says a key went unseen.
///
/// The capabilities: `take` is `GETDEL` (Redis 6.2 or later), `take_many` one `MULTI` of
/// `GETDEL`s per slot, never repeated after a redirection (a repeat would find taken keys gone
/// and lose their values, so a `take_many` that meets a moving slot fails, transiently).
/// `get_with_ttl` is a transaction of `GET` and `PTTL`; `incr` a transaction of `SET … NX PX`
/// and `INCRBY`, so that only a new counter takes the TTL (a zero TTL lasts one millisecond,
/// since `PX` must be positive). Walks (`scan`) `SCAN` every primary of the slot map read when
/// the walk began; `SCAN` may return a key twice, and a 128-bit fingerprint of every key
/// returned (16 bytes each, for the length of the walk) keeps it from coming twice.
/// `count_prefix` is such a walk of the whole keyspace: O(keys in the database), one round trip
/// per 1,000 keys examined, so keep it off hot paths. `purge_expired` returns 0: Redis removes
/// expired keys by itself, and no call ever sees one.
///
/// Values longer than the server's `proto-max-bulk-len` (read at connect; 512 MB unless the
/// server says otherwise) are refused with
/// [`Error::ValueTooLarge`](cache_core::Error::ValueTooLarge) before anything is sent: past it the
/// server would drop the connection, and every call multiplexed on it would fail too. Big values
/// that fit still share that one connection: while one is sent or received, the calls behind it
/// wait, so give `response_timeout` room for your largest values.
///
/// The connection is multiplexed and reconnects by itself. A call made while the server is
/// unreachable fails with [`Error::Backend`](cache_core::Error::Backend) within its deadline
/// (two connect timeouts plus the response timeout and half a second), and calls succeed again
/// as soon as the server is back.
///
/// ```no_run
/// # async fn demo() -> cache_core::Result<()> {
/// use std::sync::Arc;
/// use cache_core::Cache;
/// use cache_redis::RedisBackend;
///
/// let store = RedisBackend::open("redis://127.0.0.1:6379/0?response_timeout=500ms").await?;
/// let cache: Cache<String> = Cache::builder(Arc::new(store)).prefix("names:").build();
/// cache.set("1", &"Ada".to_string()).await?;
/// # Ok(()) }
/// ```
pub struct RedisBackend {
    core: Arc<Core>,
    /// Concurrent `get`s of a standalone server, sent as one `MGET`.
    gets: Coalescer,
    /// Invalidations for local tiers, over Redis pub/sub.
    bus: Arc<InvalidationBus>,
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("config", &self.core.config)
            .field("deadline", &self.core.deadline())
            .finish()
    }
}

impl RedisBackend {
    /// Opens the store on the server or cluster a URL names; see [`RedisConfig::from_url`] for
    /// the forms and options, and [`RedisConfig::open`] for settings adjusted in code. Fails
    /// with [`Error::Config`](cache_core::Error::Config) for a wrong URL and
    /// [`Error::Backend`](cache_core::Error::Backend) when the server cannot be reached or
    /// refuses the credentials.
    pub async fn open(url: &str) -> Result<Self> {
        RedisConfig::from_url(url)?.open().await
    }

    pub(crate) async fn with_config(config: RedisConfig) -> Result<Self> {
        let core = Arc::new(Core::connect(config).await?);
        let bus = InvalidationBus::with_transport(Arc::new(RedisChannel::new(Arc::clone(&core))));
        Ok(Self {
            core,
            gets: Coalescer::default(),
            bus,
        })
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &RedisConfig {
        &self.core.config
    }

    /// Removes `keys` (distinct) with one `UNLINK` per slot (more past [`MAX_KEYS_PER_UNLINK`]
    /// keys), in one pipeline per node.
    async fn unlink(&self, operation: &'static str, keys: &[&[u8]]) -> Result<u64> {
        if keys.is_empty() {
            return Ok(0);
        }
        // Not repeated: the count of a first, partly applied attempt would be lost.
        let (_, replies) = self
            .core
            .send_keyed(operation, keys, false, |slots| {
                let mut pipeline = Pipeline::with_capacity(slots.len());
                for chunk in slots
                    .iter()
                    .flat_map(|positions| positions.chunks(MAX_KEYS_PER_UNLINK))
                {
                    let command = pipeline.cmd("UNLINK");
                    for &position in chunk {
                        command.arg(keys[position]);
                    }
                }
                pipeline
            })
            .await?;
        let mut removed = 0;
        for reply in replies.into_iter().flatten() {
            removed += self.parse::<u64>(operation, None, reply)?;
        }
        Ok(removed)
    }

    fn parse<T: redis::FromRedisValue>(
        &self,
        operation: &'static str,
        key: Option<&str>,
        reply: Value,
    ) -> Result<T> {
        redis::from_redis_value(reply).map_err(|error| {
            self.core
                .map_redis_error(operation, key, RedisError::from(error))
        })
    }

    /// Walks a `SCAN` of the server, or of one primary of a cluster, to the end of its cursor,
    /// and removes the keys that start with `prefix` in batches of about [`CLEAR_BATCH`].
    /// Counts what `UNLINK` removed, so that a key a page names twice, or one that expired
    /// meanwhile, is not counted.
    async fn clear_scanned(&self, node: Option<&Node>, prefix: &str) -> Result<u64> {
        let pattern = prefix_pattern(prefix);
        let mut cursor = 0_u64;
        let mut pending: Vec<Vec<u8>> = Vec::new();
        let mut removed = 0;
        loop {
            let (next, keys) = self
                .scan_page("clear_prefix", node, cursor, &pattern, SCAN_COUNT)
                .await?;
            // MATCH already chose these; the check makes the byte-prefix rule hold by itself.
            pending.extend(
                keys.into_iter()
                    .filter(|key| key.starts_with(prefix.as_bytes())),
            );
            cursor = next;
            // A page may be empty while the cursor goes on: only cursor 0 ends the walk.
            if pending.len() >= CLEAR_BATCH || cursor == 0 {
                let doomed: Vec<&[u8]> = pending.iter().map(Vec::as_slice).collect();
                removed += self.unlink("clear_prefix", &doomed).await?;
                pending.clear();
            }
            if cursor == 0 {
                return Ok(removed);
            }
        }
    }

    /// One `SCAN` page of the server, or of one primary of a cluster.
    async fn scan_page(
        &self,
        operation: &'static str,
        node: Option<&Node>,
        cursor: u64,
        pattern: &[u8],
        count: usize,
    ) -> Result<(u64, Vec<Vec<u8>>)> {
        match node {
            Some(node) => {
                self.scan_node(operation, node, cursor, pattern, count)
                    .await
            }
            None => {
                self.core
                    .query(operation, None, &scan(cursor, pattern, count))
                    .await
            }
        }
    }

    /// One `SCAN` page of one primary of a cluster. The `SCAN` travels with a `CLUSTER MYID`, so
    /// that a page from any other node (the slot map changed, or the node is down and redis-rs
    /// picked another) is an error rather than a silently wrong count. The first page may be
    /// asked twice: nothing of the node was removed yet, and a primary that redis-rs has not
    /// heard of (one that joined since it last looked) is reached once redis-rs has followed a
    /// redirection to it.
    async fn scan_node(
        &self,
        operation: &'static str,
        node: &Node,
        cursor: u64,
        pattern: &[u8],
        count: usize,
    ) -> Result<(u64, Vec<Vec<u8>>)> {
        if let Some(page) = self
            .scan_node_once(operation, node, cursor, pattern, count)
            .await?
        {
            return Ok(page);
        }
        self.core.follow_moved_slot(node.any_slot).await;
        if cursor == 0
            && let Some(page) = self
                .scan_node_once(operation, node, cursor, pattern, count)
                .await?
        {
            return Ok(page);
        }
        self.core.forget_topology();
        Err(self.core.map_redis_error(
            operation,
            None,
            unexpected("a SCAN meant for one primary reached another; the slot map changed"),
        ))
    }

    /// One `SCAN` page of `node`, or `None` when the page came from another node.
    async fn scan_node_once(
        &self,
        operation: &'static str,
        node: &Node,
        cursor: u64,
        pattern: &[u8],
        count: usize,
    ) -> Result<Option<(u64, Vec<Vec<u8>>)>> {
        let mut pipeline = Pipeline::with_capacity(2);
        pipeline.cmd("CLUSTER").arg("MYID");
        pipeline.add_command(scan(cursor, pattern, count));
        let mut connection = self.core.connection(operation, None)?;
        let replies = self
            .core
            .within(
                operation,
                None,
                connection.send_pipeline(pipeline, Some(node.any_slot)),
            )
            .await?;
        let [id, page] = <[Value; 2]>::try_from(replies).map_err(|_| {
            self.core
                .map_redis_error(operation, None, unexpected("two replies to MYID and SCAN"))
        })?;
        let id: String = self.parse(operation, None, id)?;
        if id != node.id {
            return Ok(None);
        }
        self.parse(operation, None, page).map(Some)
    }
}

/// Where a walk of a Redis store stands: the node (of a cluster's primaries as the slot map
/// named them when the walk began), its `SCAN` cursor, and a 128-bit fingerprint of every key
/// returned so far. `SCAN` may return a key twice (while the server resizes its table), and the
/// fingerprints keep such a key from coming twice: 16 bytes per key walked.
struct RedisWalk {
    topology: Option<Arc<Topology>>,
    node: usize,
    cursor: u64,
    seen: HashSet<u128>,
    hashers: (RandomState, RandomState),
}

impl RedisWalk {
    /// Whether `key` is new to the walk (and now seen).
    fn first_sight(&mut self, key: &[u8]) -> bool {
        let high = u128::from(self.hashers.0.hash_one(key));
        let low = u128::from(self.hashers.1.hash_one(key));
        self.seen.insert(high << 64 | low)
    }
}

/// The replies of a `MULTI` … `EXEC` of `queued` commands in a pipeline: `OK`, one `QUEUED`
/// each, then `EXEC`'s array, which this returns.
fn exec_reply(replies: &mut impl Iterator<Item = Value>, queued: usize) -> Option<Vec<Value>> {
    let exec = replies.nth(queued + 1)?;
    match exec {
        Value::Array(values) => Some(values),
        _ => None,
    }
}

/// Why Redis refused an `INCRBY` (not an integer, an overflow, another type), if it did. The
/// refusal may come alone or inside a transaction's or pipeline's errors.
fn counter_refusal(error: &RedisError) -> Option<String> {
    let errors = error.clone().into_server_errors()?;
    errors.iter().find_map(|(_, error)| {
        let detail = error.details().unwrap_or_default();
        if error.code() == "WRONGTYPE" {
            Some("the key holds a Redis type other than a string".into())
        } else if detail.contains("not an integer") {
            Some("it holds bytes that are not the decimal ASCII of a 64-bit integer".into())
        } else if detail.contains("overflow") {
            Some("the sum overflows a 64-bit integer".into())
        } else {
            None
        }
    })
}

fn scan(cursor: u64, pattern: &[u8], count: usize) -> Cmd {
    let mut command = redis::cmd("SCAN");
    command
        .arg(cursor)
        .arg("MATCH")
        .arg(pattern)
        .arg("COUNT")
        .arg(count);
    command
}

/// A `SCAN MATCH` pattern for the keys starting with `prefix`: every glob character of the
/// prefix matches only itself. (Bytes of multi-byte UTF-8 characters are never ASCII, so
/// escaping byte by byte is exact.)
fn prefix_pattern(prefix: &str) -> Vec<u8> {
    let mut pattern = Vec::with_capacity(prefix.len() * 2 + 1);
    for &byte in prefix.as_bytes() {
        if matches!(byte, b'*' | b'?' | b'[' | b']' | b'\\') {
            pattern.push(b'\\');
        }
        pattern.push(byte);
    }
    pattern.push(b'*');
    pattern
}

fn unexpected(what: &'static str) -> RedisError {
    RedisError::from((
        redis::ErrorKind::UnexpectedReturnType,
        "unexpected reply",
        what.to_owned(),
    ))
}

/// `SET key value [PX ms]`, the form every write takes.
fn set_command(key: &[u8], value: &[u8], ttl: Option<Duration>) -> Cmd {
    let mut command = redis::cmd("SET");
    command.arg(key).arg(value);
    if let Some(ttl) = ttl {
        command.arg("PX").arg(ttl_millis(ttl));
    }
    command
}

#[async_trait]
impl Backend for RedisBackend {
    fn name(&self) -> &'static str {
        STORE
    }

    fn invalidation_bus(&self) -> Option<Arc<InvalidationBus>> {
        Some(Arc::clone(&self.bus))
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.gets.get(&self.core, key).await
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        const OPERATION: &str = "get_many";
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        if let [key] = keys {
            // One key: a `GET` answers as `MGET` and `EXISTS` together do (a key of another
            // type is refused by name), in one command instead of two.
            let value = self
                .core
                .query(OPERATION, Some(key), redis::cmd("GET").arg(key.as_bytes()))
                .await?;
            return Ok(vec![value]);
        }
        let names: Vec<&[u8]> = keys.iter().map(|key| key.as_bytes()).collect();
        // `MGET` answers nil for a key of another type, as for a missing one; the `EXISTS` count
        // beside it, in the same round trip, tells the two apart (see `foreign_type`).
        let (batches, replies) = self
            .core
            .send_keyed(OPERATION, &names, true, |slots| {
                let mut pipeline = Pipeline::with_capacity(slots.len() * 2);
                for positions in slots {
                    let command = pipeline.cmd("MGET");
                    for &position in positions {
                        command.arg(keys[position].as_bytes());
                    }
                    let command = pipeline.cmd("EXISTS");
                    for &position in positions {
                        command.arg(keys[position].as_bytes());
                    }
                }
                pipeline
            })
            .await?;
        let mut values = vec![None; keys.len()];
        let mut unexplained = Vec::new();
        for (batch, replies) in batches.iter().zip(replies) {
            let mut replies = replies.into_iter();
            for positions in &batch.slots {
                let (Some(found), Some(existing)) = (replies.next(), replies.next()) else {
                    return Err(self.core.map_redis_error(
                        OPERATION,
                        None,
                        unexpected("fewer replies than MGET and EXISTS commands"),
                    ));
                };
                let found: Vec<Option<Bytes>> = self.parse(OPERATION, None, found)?;
                let existing: usize = self.parse(OPERATION, None, existing)?;
                if found.len() != positions.len() {
                    return Err(self.core.map_redis_error(
                        OPERATION,
                        None,
                        unexpected("MGET answered a different number of values"),
                    ));
                }
                if existing > found.iter().flatten().count() {
                    unexplained.extend(
                        positions
                            .iter()
                            .zip(&found)
                            .filter(|(_, value)| value.is_none())
                            .map(|(&position, _)| position),
                    );
                }
                for (&position, value) in positions.iter().zip(found) {
                    values[position] = value;
                }
            }
        }
        // More keys exist than had values: a key of another type, or one written between the
        // two commands. Rare, so each is asked about on its own.
        for position in unexplained {
            let key = &keys[position];
            let kind: String = self
                .core
                .query(OPERATION, Some(key), redis::cmd("TYPE").arg(key.as_bytes()))
                .await?;
            if kind != "string" && kind != "none" {
                return Err(foreign_type(key));
            }
        }
        Ok(values)
    }

    async fn set(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        condition: Condition,
    ) -> Result<bool> {
        if ttl == Some(Duration::ZERO) {
            // Already expired: nothing may remain, and `PX 0` is an error in Redis.
            return match condition {
                Condition::Always => {
                    self.core
                        .query::<u64>("set", Some(key), redis::cmd("UNLINK").arg(key))
                        .await?;
                    Ok(true)
                }
                Condition::IfNotExists => {
                    let exists: bool = self
                        .core
                        .query("set", Some(key), redis::cmd("EXISTS").arg(key))
                        .await?;
                    Ok(!exists)
                }
            };
        }
        self.core.check_value(key, &value)?;
        let mut command = set_command(key.as_bytes(), &value, ttl);
        if condition == Condition::IfNotExists {
            command.arg("NX");
        }
        // `OK` when written, nil when `NX` found the key: read as a bare value, not a string.
        let reply: redis::Value = self.core.query("set", Some(key), &command).await?;
        Ok(!matches!(reply, redis::Value::Nil))
    }

    async fn set_many(&self, entries: Vec<(String, Bytes)>, ttl: Option<Duration>) -> Result<()> {
        const OPERATION: &str = "set_many";
        if entries.is_empty() {
            return Ok(());
        }
        if ttl != Some(Duration::ZERO) {
            for (key, value) in &entries {
                self.core.check_value(key, value)?;
            }
        }
        let names: Vec<&[u8]> = entries.iter().map(|(key, _)| key.as_bytes()).collect();
        let (_, replies) = self
            .core
            .send_keyed(OPERATION, &names, true, |slots| {
                let mut pipeline = Pipeline::new();
                for positions in slots {
                    if ttl == Some(Duration::ZERO) {
                        // Already expired: the keys go, in one transaction per slot however
                        // many `UNLINK`s it takes, so that no reader sees a batch half removed.
                        pipeline.cmd("MULTI");
                        for chunk in positions.chunks(MAX_KEYS_PER_UNLINK) {
                            let command = pipeline.cmd("UNLINK");
                            for &position in chunk {
                                command.arg(entries[position].0.as_bytes());
                            }
                        }
                        pipeline.cmd("EXEC");
                    } else if ttl.is_none() {
                        // MSET is atomic by itself and, like SET, drops any old TTL.
                        let command = pipeline.cmd("MSET");
                        for &position in positions {
                            let (key, value) = &entries[position];
                            command.arg(key.as_bytes()).arg(value.as_ref());
                        }
                    } else {
                        pipeline.cmd("MULTI");
                        for &position in positions {
                            let (key, value) = &entries[position];
                            pipeline.add_command(set_command(key.as_bytes(), value, ttl));
                        }
                        pipeline.cmd("EXEC");
                    }
                }
                pipeline
            })
            .await?;
        // Failed commands already surfaced as errors; a transaction that did not run answers nil.
        if replies.iter().flatten().any(|reply| *reply == Value::Nil) {
            return Err(self.core.map_redis_error(
                OPERATION,
                None,
                unexpected("a MULTI/EXEC transaction was aborted"),
            ));
        }
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        let removed: u64 = self
            .core
            .query("delete", Some(key), redis::cmd("UNLINK").arg(key))
            .await?;
        Ok(removed > 0)
    }

    async fn delete_many(&self, keys: &[String]) -> Result<u64> {
        // UNLINK counts a key named twice once, but only within one command; deduplicating first
        // keeps the count exact however the keys are split.
        let mut seen = HashSet::with_capacity(keys.len());
        let distinct: Vec<&[u8]> = keys
            .iter()
            .map(|key| key.as_bytes())
            .filter(|key| seen.insert(*key))
            .collect();
        self.unlink("delete_many", &distinct).await
    }

    async fn contains(&self, key: &str) -> Result<bool> {
        self.core
            .query("contains", Some(key), redis::cmd("EXISTS").arg(key))
            .await
    }

    async fn expire_in(&self, key: &str, ttl: Option<Duration>) -> Result<bool> {
        const OPERATION: &str = "expire_in";
        match ttl {
            Some(Duration::ZERO) => {
                let removed: u64 = self
                    .core
                    .query(OPERATION, Some(key), redis::cmd("UNLINK").arg(key))
                    .await?;
                Ok(removed > 0)
            }
            Some(ttl) => {
                self.core
                    .query(
                        OPERATION,
                        Some(key),
                        redis::cmd("PEXPIRE").arg(key).arg(ttl_millis(ttl)),
                    )
                    .await
            }
            None => {
                // PERSIST answers 0 both for a missing key and for a key that had no TTL, so
                // EXISTS rides along in the same transaction to tell them apart.
                let mut pipeline = redis::pipe();
                pipeline
                    .atomic()
                    .cmd("EXISTS")
                    .arg(key)
                    .cmd("PERSIST")
                    .arg(key)
                    .ignore();
                let mut connection = self.core.connection(OPERATION, Some(key))?;
                let (exists,): (bool,) = self
                    .core
                    .within(OPERATION, Some(key), pipeline.query_async(&mut connection))
                    .await?;
                Ok(exists)
            }
        }
    }

    async fn ttl(&self, key: &str) -> Result<Option<Ttl>> {
        let millis: i64 = self
            .core
            .query("ttl", Some(key), redis::cmd("PTTL").arg(key))
            .await?;
        Ok(ttl_of(millis))
    }

    async fn clear_prefix(&self, prefix: &str) -> Result<u64> {
        if !self.core.is_cluster() {
            return self.clear_scanned(None, prefix).await;
        }
        // A kept slot map may predate a resharding that no call of this store noticed, and a
        // primary missing from it would never be scanned: its keys would stay, unreported.
        // One CLUSTER SLOTS is little beside the SCAN walk that follows.
        let topology = self.core.refresh_topology("clear_prefix").await?;
        let cleared = try_join_all(
            topology
                .primaries()
                .iter()
                .map(|node| self.clear_scanned(Some(node), prefix)),
        )
        .await?;
        Ok(cleared.into_iter().sum())
    }

    async fn take(&self, key: &str) -> Result<Option<Bytes>> {
        self.core
            .query("take", Some(key), redis::cmd("GETDEL").arg(key))
            .await
    }

    async fn take_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        const OPERATION: &str = "take_many";
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<&[u8]> = keys.iter().map(|key| key.as_bytes()).collect();
        // One transaction of `GETDEL`s per slot. Not repeated: a repeat would find taken keys
        // gone and lose their values.
        let (batches, replies) = self
            .core
            .send_keyed(OPERATION, &names, false, |slots| {
                let mut pipeline = Pipeline::new();
                for positions in slots {
                    pipeline.cmd("MULTI");
                    for &position in positions {
                        pipeline.cmd("GETDEL").arg(names[position]);
                    }
                    pipeline.cmd("EXEC");
                }
                pipeline
            })
            .await?;
        let mut taken = vec![None; keys.len()];
        self.fill_from_transactions(OPERATION, &batches, replies, 0, |positions, values| {
            for (&position, value) in positions.iter().zip(values) {
                taken[position] = self.parse(OPERATION, Some(&keys[position]), value)?;
            }
            Ok(())
        })?;
        Ok(taken)
    }

    async fn get_with_ttl(&self, key: &str) -> Result<Option<(Bytes, Ttl)>> {
        const OPERATION: &str = "get_with_ttl";
        let mut pipeline = redis::pipe();
        pipeline.atomic().cmd("GET").arg(key).cmd("PTTL").arg(key);
        let mut connection = self.core.connection(OPERATION, Some(key))?;
        let (value, millis): (Option<Bytes>, i64) = self
            .core
            .within(OPERATION, Some(key), pipeline.query_async(&mut connection))
            .await?;
        Ok(value.and_then(|value| Some((value, ttl_of(millis)?))))
    }

    async fn get_many_with_ttl(&self, keys: &[String]) -> Result<Vec<Option<(Bytes, Ttl)>>> {
        const OPERATION: &str = "get_many_with_ttl";
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<&[u8]> = keys.iter().map(|key| key.as_bytes()).collect();
        // Per slot, one transaction: an `MGET` and a `PTTL` of each key, read at one instant.
        let (batches, replies) = self
            .core
            .send_keyed(OPERATION, &names, true, |slots| {
                let mut pipeline = Pipeline::new();
                for positions in slots {
                    pipeline.cmd("MULTI");
                    let command = pipeline.cmd("MGET");
                    for &position in positions {
                        command.arg(names[position]);
                    }
                    for &position in positions {
                        pipeline.cmd("PTTL").arg(names[position]);
                    }
                    pipeline.cmd("EXEC");
                }
                pipeline
            })
            .await?;
        let mut found = vec![None; keys.len()];
        self.fill_from_transactions(OPERATION, &batches, replies, 1, |positions, answers| {
            let mut answers = answers.into_iter();
            let values: Vec<Option<Bytes>> =
                self.parse(OPERATION, None, answers.next().unwrap_or(Value::Nil))?;
            for ((&position, value), millis) in positions.iter().zip(values).zip(answers) {
                let millis: i64 = self.parse(OPERATION, Some(&keys[position]), millis)?;
                found[position] = match (value, ttl_of(millis)) {
                    (Some(value), Some(ttl)) => Some((value, ttl)),
                    // In one transaction, a key with a TTL but no value holds another type.
                    (None, Some(_)) => return Err(crate::core::foreign_type(&keys[position])),
                    (_, None) => None,
                };
            }
            Ok(())
        })?;
        Ok(found)
    }

    async fn scan(
        &self,
        prefix: &str,
        cursor: ScanCursor,
        options: ScanOptions,
    ) -> Result<ScanPage> {
        const OPERATION: &str = "scan";
        let mut walk = if cursor.is_start() {
            RedisWalk {
                // A primary missing from a kept slot map would never be walked: read it afresh.
                topology: if self.core.is_cluster() {
                    Some(self.core.refresh_topology(OPERATION).await?)
                } else {
                    None
                },
                node: 0,
                cursor: 0,
                seen: HashSet::new(),
                hashers: (RandomState::new(), RandomState::new()),
            }
        } else {
            cursor.into_state::<RedisWalk>().ok_or_else(|| {
                Error::backend(STORE, OPERATION, None, "the cursor is not a Redis store's")
            })?
        };
        let nodes = walk
            .topology
            .as_ref()
            .map_or(1, |topology| topology.primaries().len());
        if walk.node >= nodes {
            return Ok(ScanPage::default());
        }
        let node = walk
            .topology
            .as_ref()
            .map(|topology| topology.primaries()[walk.node].clone());
        let pattern = prefix_pattern(prefix);
        let (next, names) = self
            .scan_page(
                OPERATION,
                node.as_ref(),
                walk.cursor,
                &pattern,
                options.page.max(1),
            )
            .await?;
        let keys: Vec<String> = names
            .into_iter()
            .filter(|name| name.starts_with(prefix.as_bytes()) && walk.first_sight(name))
            // Keys this store writes are UTF-8; another client's that are not are no cache key.
            .filter_map(|name| String::from_utf8(name).ok())
            .collect();
        // A node's walk ends when its cursor comes back to 0.
        if next == 0 {
            walk.node += 1;
        }
        walk.cursor = next;
        let entries = if options.values {
            self.values_of(keys).await?
        } else {
            keys.into_iter().map(|key| (key, None)).collect()
        };
        let next = (walk.node < nodes).then(|| ScanCursor::state(walk));
        Ok(ScanPage { entries, next })
    }

    async fn count_prefix(&self, prefix: &str) -> Result<u64> {
        let mut cursor = ScanCursor::start();
        let mut count = 0;
        let options = ScanOptions {
            page: SCAN_COUNT,
            values: false,
        };
        loop {
            let page = self.scan(prefix, cursor, options).await?;
            count += page.entries.len() as u64;
            match page.next {
                Some(next) => cursor = next,
                None => return Ok(count),
            }
        }
    }

    async fn purge_expired(&self) -> Result<u64> {
        // Redis removes expired keys by itself, and none is ever visible.
        Ok(0)
    }

    async fn incr(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        const OPERATION: &str = "incr";
        let mut pipeline = redis::pipe();
        pipeline.atomic();
        if let Some(ttl) = ttl {
            // A new counter is created with its TTL first; `NX` leaves a live one (and its
            // expiry) alone. `PX` must be positive, so a zero TTL lasts a millisecond.
            pipeline
                .cmd("SET")
                .arg(key)
                .arg(0)
                .arg("NX")
                .arg("PX")
                .arg(ttl_millis(ttl).max(1))
                .ignore();
        }
        pipeline.cmd("INCRBY").arg(key).arg(delta);
        let mut connection = self.core.connection(OPERATION, Some(key))?;
        // A refusal is the answer, not the store failing: it comes out of the request as such.
        let request = async {
            match pipeline.query_async::<(i64,)>(&mut connection).await {
                Ok((value,)) => Ok(Ok(value)),
                Err(error) => match counter_refusal(&error) {
                    Some(reason) => Ok(Err(reason)),
                    None => Err(error),
                },
            }
        };
        match self.core.within(OPERATION, Some(key), request).await? {
            Ok(value) => Ok(value),
            Err(reason) => Err(Error::not_a_counter(key, reason)),
        }
    }

    async fn acquire_lease(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        let mut command = redis::cmd("SET");
        command
            .arg(key)
            .arg(token)
            .arg("NX")
            .arg("PX")
            .arg(ttl_millis(ttl).max(1));
        let reply: Option<String> = self
            .core
            .query("acquire_lease", Some(key), &command)
            .await?;
        Ok(reply.is_some())
    }

    async fn renew_lease(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        let mut command = redis::cmd("EVAL");
        command
            .arg(RENEW_LEASE)
            .arg(1)
            .arg(key)
            .arg(token)
            .arg(ttl_millis(ttl).max(1));
        let renewed: i64 = self.core.query("renew_lease", Some(key), &command).await?;
        Ok(renewed == 1)
    }

    async fn release_lease(&self, key: &str, token: &str) -> Result<bool> {
        let mut command = redis::cmd("EVAL");
        command.arg(RELEASE_LEASE).arg(1).arg(key).arg(token);
        let released: i64 = self
            .core
            .query("release_lease", Some(key), &command)
            .await?;
        Ok(released == 1)
    }

    async fn close(&self) -> Result<()> {
        self.core.close();
        Ok(())
    }
}

/// Extends a lease only while it holds the caller's token (one script, so atomic; a key's
/// script runs on the node of its slot in a Cluster).
const RENEW_LEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";

/// Removes a lease only while it holds the caller's token: compare-and-delete.
const RELEASE_LEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     return redis.call('DEL', KEYS[1]) else return 0 end";

impl RedisBackend {
    /// Hands each transaction's `EXEC` array of a keyed batch to `fill` with its slot's
    /// positions: one transaction per slot, of a command per key and `extra` more.
    fn fill_from_transactions(
        &self,
        operation: &'static str,
        batches: &[NodeBatch],
        replies: Vec<Vec<Value>>,
        extra: usize,
        mut fill: impl FnMut(&[usize], Vec<Value>) -> Result<()>,
    ) -> Result<()> {
        for (batch, replies) in batches.iter().zip(replies) {
            let mut replies = replies.into_iter();
            for positions in &batch.slots {
                let values =
                    exec_reply(&mut replies, positions.len() + extra).ok_or_else(|| {
                        self.core.map_redis_error(
                            operation,
                            None,
                            unexpected("a MULTI/EXEC transaction was aborted"),
                        )
                    })?;
                fill(positions, values)?;
            }
        }
        Ok(())
    }

    /// The values of `keys`, one `MGET` per slot; keys that expired or hold another type
    /// meanwhile are left out.
    async fn values_of(&self, keys: Vec<String>) -> Result<Vec<(String, Option<Bytes>)>> {
        const OPERATION: &str = "scan";
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let names: Vec<&[u8]> = keys.iter().map(|key| key.as_bytes()).collect();
        let (batches, replies) = self
            .core
            .send_keyed(OPERATION, &names, true, |slots| {
                let mut pipeline = Pipeline::with_capacity(slots.len());
                for positions in slots {
                    let command = pipeline.cmd("MGET");
                    for &position in positions {
                        command.arg(names[position]);
                    }
                }
                pipeline
            })
            .await?;
        let mut values: Vec<Option<Bytes>> = vec![None; keys.len()];
        for (batch, replies) in batches.iter().zip(replies) {
            for (positions, reply) in batch.slots.iter().zip(replies) {
                let found: Vec<Option<Bytes>> = self.parse(OPERATION, None, reply)?;
                for (&position, value) in positions.iter().zip(found) {
                    values[position] = value;
                }
            }
        }
        Ok(keys
            .into_iter()
            .zip(values)
            .filter_map(|(key, value)| Some((key, Some(value?))))
            .collect())
    }
}

/// A `PTTL` reply as a TTL: `None` for a missing key (-2).
fn ttl_of(millis: i64) -> Option<Ttl> {
    match millis {
        -1 => Some(Ttl::Eternal),
        millis if millis >= 0 => Some(Ttl::Remaining(Duration::from_millis(millis.unsigned_abs()))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sub-millisecond TTLs cannot be told apart over the network, so the conversion is checked
    /// here: `PX` carries `ttl_millis` (partial milliseconds up, huge TTLs clamped), and no TTL
    /// means no `PX`.
    #[test]
    fn set_commands_carry_the_ttl_in_rounded_up_milliseconds() {
        let args = |ttl| -> Vec<Vec<u8>> {
            set_command(b"k", b"v", ttl)
                .args_iter()
                .map(|arg| match arg {
                    redis::Arg::Simple(bytes) => bytes.to_vec(),
                    _ => Vec::new(),
                })
                .collect()
        };
        let px = |millis: u64| {
            vec![
                b"SET".to_vec(),
                b"k".to_vec(),
                b"v".to_vec(),
                b"PX".to_vec(),
                millis.to_string().into_bytes(),
            ]
        };
        for ttl in [
            Duration::from_nanos(1),
            Duration::from_micros(300),
            Duration::from_micros(1_001),
            Duration::from_millis(1_500),
            Duration::MAX,
        ] {
            assert_eq!(args(Some(ttl)), px(ttl_millis(ttl)), "{ttl:?}");
        }
        assert_eq!(ttl_millis(Duration::from_micros(300)), 1);
        assert_eq!(args(None).len(), 3);
    }

    #[test]
    fn glob_characters_of_a_prefix_are_escaped() {
        assert_eq!(prefix_pattern("app:"), b"app:*");
        assert_eq!(prefix_pattern(""), b"*");
        assert_eq!(
            prefix_pattern(r"a*b?c[d]e\f^g-h{i}"),
            br"a\*b\?c\[d\]e\\f^g-h{i}*"
        );
        assert_eq!(prefix_pattern("ключ*"), "ключ\\**".as_bytes());
    }
}
