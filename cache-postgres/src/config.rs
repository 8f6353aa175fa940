//! `postgres://` URLs and the settings they carry.

use std::fmt;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

use cache_core::raw::{Options, check_duration, redact_url, ttl_millis};
use cache_core::{Error, Result};
use sqlx::postgres::PgConnectOptions;

/// The table used when the URL names none.
pub const DEFAULT_TABLE: &str = "cachette";
/// Connections per pool when the URL sets no `pool_max`.
pub const DEFAULT_POOL_MAX: u32 = 10;
/// How long a call waits for a pooled connection (including opening one) by default.
pub const DEFAULT_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one statement may run by default, enforced by the server and by the client.
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest `acquire_timeout` or `statement_timeout`: PostgreSQL keeps `statement_timeout` in
/// milliseconds as a 32-bit integer (about 24.8 days), and one ceiling for both keeps the client's
/// deadlines far from overflowing `Instant`.
pub const MAX_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);
/// How often expired rows are deleted in the background by default.
pub const DEFAULT_PURGE_INTERVAL: Duration = Duration::from_secs(60);
/// The longest purge interval: one day. A longer one is surely a mistake, and the bound keeps
/// the purge task's clock arithmetic far from overflow.
pub const MAX_PURGE_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);
/// The most connections a pool may open.
const MAX_POOL: u32 = 10_000;

/// The timeouts a store accepts, from URLs and builders alike.
const TIMEOUTS: RangeInclusive<Duration> = Duration::from_nanos(1)..=MAX_TIMEOUT;
/// The purge intervals a store accepts, from URLs and builders alike.
const PURGE_INTERVALS: RangeInclusive<Duration> = Duration::from_millis(1)..=MAX_PURGE_INTERVAL;

/// PostgreSQL truncates identifiers at 63 bytes; the index name adds [`INDEX_SUFFIX`] to the
/// table name, so table names stop at 48 bytes to keep both names whole.
const MAX_TABLE_NAME_BYTES: usize = 48;
pub(crate) const INDEX_SUFFIX: &str = "_expires_at_idx";

/// Query options that sqlx understands and that are passed on to it unchanged.
const DRIVER_OPTIONS: &[&str] = &[
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

/// Our own query options; everything else except [`DRIVER_OPTIONS`] is refused.
const STORE_OPTIONS: &[&str] = &[
    "table",
    "unlogged",
    "pool_max",
    "acquire_timeout",
    "statement_timeout",
    "purge_interval",
];

/// A validated table name, optionally schema-qualified (`schema.table`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableName {
    schema: Option<String>,
    table: String,
}

impl TableName {
    /// Checks `name`: one or two dot-separated parts, each starting with an ASCII letter or `_`
    /// and holding only ASCII letters, digits and `_`; the table part at most 48 bytes. Names are
    /// quoted in SQL, so case is kept: `Cache` and `cache` are different tables.
    pub fn new(name: &str) -> Result<Self> {
        let (schema, table) = match name.split_once('.') {
            Some((schema, table)) => (Some(schema), table),
            None => (None, name),
        };
        if let Some(schema) = schema {
            check_identifier(name, schema, 63)?;
        }
        check_identifier(name, table, MAX_TABLE_NAME_BYTES)?;
        Ok(Self {
            schema: schema.map(str::to_owned),
            table: table.to_owned(),
        })
    }

    /// The name as SQL, quoted: `"cachette"` or `"app"."cachette"`.
    pub fn quoted(&self) -> String {
        self.quoted_with_suffix("")
    }

    /// The quoted name of the expiry index, which lives in the table's schema.
    pub(crate) fn quoted_index(&self) -> String {
        self.quoted_with_suffix(INDEX_SUFFIX)
    }

    /// The bare name of the expiry index, as `CREATE INDEX` wants it (no schema).
    pub(crate) fn index_identifier(&self) -> String {
        format!("\"{}{INDEX_SUFFIX}\"", self.table)
    }

    fn quoted_with_suffix(&self, suffix: &str) -> String {
        // Validation allows no `"`, so wrapping in quotes needs no escaping.
        match &self.schema {
            Some(schema) => format!("\"{schema}\".\"{}{suffix}\"", self.table),
            None => format!("\"{}{suffix}\"", self.table),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.schema {
            Some(schema) => write!(f, "{schema}.{}", self.table),
            None => f.write_str(&self.table),
        }
    }
}

fn check_identifier(name: &str, part: &str, max_bytes: usize) -> Result<()> {
    let mut chars = part.chars();
    let starts_well = chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !starts_well || !rest_ok {
        return Err(Error::config(format!(
            "invalid PostgreSQL table name {name:?}: use `table` or `schema.table`, each part \
             starting with a letter or `_` and holding only ASCII letters, digits and `_`"
        )));
    }
    if part.len() > max_bytes {
        return Err(Error::config(format!(
            "PostgreSQL table name {name:?} is too long: {part:?} has {} bytes, at most \
             {max_bytes} are allowed so that the table and its index names stay whole",
            part.len()
        )));
    }
    Ok(())
}

/// Everything a [`PostgresBackend`](crate::PostgresBackend) needs: where to connect, which table,
/// how to pool and time out, and how often to purge.
///
/// Built from a URL with [`PostgresConfig::from_url`] and adjusted with its methods. `Debug` and
/// every message show the URL with its password replaced by `***`.
///
/// ```
/// use std::time::Duration;
/// use cache_postgres::PostgresConfig;
///
/// let config = PostgresConfig::from_url(
///     "postgres://app:s3cret@db.internal:5432/app?table=cache&pool_max=20&statement_timeout=2s",
/// )?
/// .purge_interval(Some(Duration::from_secs(300)));
/// assert_eq!(config.get_table().to_string(), "cache");
/// assert_eq!(config.get_pool_max(), 20);
/// assert!(!format!("{config:?}").contains("s3cret"));
/// # Ok::<(), cache_core::Error>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct PostgresConfig {
    connect: PgConnectOptions,
    redacted_url: String,
    table: TableName,
    unlogged: bool,
    pool_max: u32,
    acquire_timeout: Duration,
    statement_timeout: Duration,
    purge_interval: Option<Duration>,
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `PgConnectOptions` prints its password, so it stays out of here.
        f.debug_struct("PostgresConfig")
            .field("url", &self.redacted_url)
            .field("table", &self.table.to_string())
            .field("unlogged", &self.unlogged)
            .field("pool_max", &self.pool_max)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("purge_interval", &self.purge_interval)
            .finish()
    }
}

impl PostgresConfig {
    /// Parses `postgres://user:pass@host:port/db?options` (or `postgresql://`).
    ///
    /// Store options, all optional:
    ///
    /// | option | default | meaning |
    /// |---|---|---|
    /// | `table` | `cachette` | the table, `name` or `schema.name` |
    /// | `unlogged` | `true` | create the table `UNLOGGED` (no write-ahead log) |
    /// | `pool_max` | `10` | connections in the pool |
    /// | `acquire_timeout` | `5s` | how long a call waits for a connection; more than zero |
    /// | `statement_timeout` | `5s` | how long one statement may run; more than zero |
    /// | `purge_interval` | `60s` | background deletion of expired rows; `off` disables it |
    ///
    /// Durations take a unit: `250ms`, `5s`, `2m`, `1h`. Neither timeout may be zero (there is no
    /// "no limit" setting) or longer than [`MAX_TIMEOUT`]. The driver's own options (`sslmode`,
    /// `host`, `port`, `user`, `password`, `dbname`, `application_name`, `options`, …) pass
    /// through to sqlx; any other option is an [`Error::Config`], so a typo cannot silently
    /// select the default.
    pub fn from_url(url: &str) -> Result<Self> {
        let redacted_url = redact_url(url);
        let parsed = url::Url::parse(url).map_err(|error| {
            Error::config_with(format!("invalid PostgreSQL URL {redacted_url}"), error)
        })?;
        if !matches!(parsed.scheme(), "postgres" | "postgresql") {
            return Err(Error::config(format!(
                "a PostgreSQL URL starts with postgres:// or postgresql://, not {redacted_url}"
            )));
        }
        let mut config = Self {
            connect: PgConnectOptions::new_without_pgpass(),
            redacted_url: redacted_url.clone(),
            table: TableName::new(DEFAULT_TABLE)?,
            unlogged: true,
            pool_max: DEFAULT_POOL_MAX,
            acquire_timeout: DEFAULT_ACQUIRE_TIMEOUT,
            statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
            purge_interval: Some(DEFAULT_PURGE_INTERVAL),
        };
        let mut options = Options::parse("PostgreSQL", url, parsed.query().unwrap_or(""))?;
        if let Some(table) = options.text("table") {
            config = config.table(&table)?;
        }
        if let Some(unlogged) = options.flag("unlogged")? {
            config = config.unlogged(unlogged);
        }
        if let Some(max) = options.number("pool_max", 1..=MAX_POOL)? {
            config = config.pool_max(max);
        }
        if let Some(timeout) = options.duration("acquire_timeout", TIMEOUTS)? {
            config = config.acquire_timeout(timeout);
        }
        if let Some(timeout) = options.duration("statement_timeout", TIMEOUTS)? {
            config = config.statement_timeout(timeout);
        }
        if let Some(every) = options.interval_or_off("purge_interval", PURGE_INTERVALS)? {
            config = config.purge_interval(every);
        }
        // What the store did not ask for goes to sqlx if sqlx knows it.
        let mut driver_url = parsed.clone();
        driver_url.set_query(None);
        let mut has_application_name = false;
        {
            let mut driver_query = driver_url.query_pairs_mut();
            let mut after_secret = false;
            for (name, value) in options.rest() {
                if DRIVER_OPTIONS.contains(&name.as_str()) || is_driver_setting(&name) {
                    has_application_name |= name == "application_name";
                    after_secret |= cache_core::raw::is_secret_option(&name);
                    driver_query.append_pair(&name, &value);
                } else if after_secret {
                    // Its name may be the tail of a password that held a raw `&`.
                    return Err(Error::config(format!(
                        "an unknown PostgreSQL URL option follows a password option in \
                         {redacted_url}; percent-encode `&` in a password as %26"
                    )));
                } else {
                    // A name may be a password's tail or user info typed in the wrong place.
                    let name = cache_core::raw::redact_url(&name);
                    return Err(Error::config(format!(
                        "unknown PostgreSQL URL option {name:?} in {redacted_url}; store options: \
                         {}; driver options: {}",
                        STORE_OPTIONS.join(", "),
                        DRIVER_OPTIONS.join(", ")
                    )));
                }
            }
        }
        if driver_url.query() == Some("") {
            driver_url.set_query(None);
        }
        let connect = PgConnectOptions::from_str(driver_url.as_str()).map_err(|error| {
            Error::config_with(format!("invalid PostgreSQL URL {redacted_url}"), error)
        })?;
        // Shows up in `pg_stat_activity`, so a DBA can tell the cache's sessions apart.
        config.connect = if has_application_name {
            connect
        } else {
            connect.application_name("cachette")
        };
        config.check()?;
        Ok(config)
    }

    /// Refuses timeouts the store cannot honour. PostgreSQL reads a `statement_timeout` of 0 as
    /// "no limit" while the client would give up after its grace period, and an
    /// `acquire_timeout` of 0 fails every call at once; so zero is an error rather than a
    /// setting whose meaning differs between server and client.
    pub(crate) fn check(&self) -> Result<()> {
        for (name, timeout) in [
            ("acquire_timeout", self.acquire_timeout),
            ("statement_timeout", self.statement_timeout),
        ] {
            check_duration("PostgreSQL", name, timeout, TIMEOUTS)?;
        }
        if let Some(every) = self.purge_interval {
            // A longer interval overflows the purge task's clock; zero would purge without
            // pause. `None` turns the purge off.
            check_duration("PostgreSQL", "purge_interval", every, PURGE_INTERVALS)?;
        }
        Ok(())
    }

    /// Opens the store with these settings; see [`PostgresBackend::open`](crate::PostgresBackend::open).
    pub async fn open(self) -> Result<crate::PostgresBackend> {
        crate::PostgresBackend::with_config(self).await
    }

    /// Uses table `name` (`table` or `schema.table`); see [`TableName::new`] for the rules.
    pub fn table(mut self, name: &str) -> Result<Self> {
        self.table = TableName::new(name)?;
        Ok(self)
    }

    /// Whether the table is created `UNLOGGED` (default `true`): faster writes, no replication,
    /// and **emptied by crash recovery** (a server killed or a machine that lost power; a clean
    /// restart keeps the rows). With `false` every acknowledged write survives a crash. Applies
    /// only when the store creates the table.
    pub fn unlogged(mut self, unlogged: bool) -> Self {
        self.unlogged = unlogged;
        self
    }

    /// The most connections the pool opens (default 10; at least 1).
    pub fn pool_max(mut self, max: u32) -> Self {
        self.pool_max = max.max(1);
        self
    }

    /// How long a call waits for a connection, including opening one (default 5 s). When the
    /// server is unreachable, calls fail with [`Error::Backend`] after about this long. Zero or
    /// more than [`MAX_TIMEOUT`] makes connecting fail with [`Error::Config`].
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// How long one statement may run (default 5 s): the server cancels it
    /// (`statement_timeout`), and the client gives up shortly after if the server does not
    /// answer at all. The server counts whole milliseconds, so a partial millisecond rounds up
    /// rather than down to 0, which the server would read as no limit. Zero or more than
    /// [`MAX_TIMEOUT`] makes connecting fail with [`Error::Config`].
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = Duration::from_millis(ttl_millis(timeout));
        self
    }

    /// How often a background task deletes expired rows (default 60 s); `None` turns it off, and
    /// [`PostgresBackend::purge_expired`](crate::PostgresBackend::purge_expired) still works.
    /// Zero or more than [`MAX_PURGE_INTERVAL`] makes connecting fail with [`Error::Config`].
    pub fn purge_interval(mut self, interval: Option<Duration>) -> Self {
        self.purge_interval = interval;
        self
    }

    /// The table.
    pub fn get_table(&self) -> &TableName {
        &self.table
    }

    /// Whether a table the store creates is `UNLOGGED`.
    pub fn is_unlogged(&self) -> bool {
        self.unlogged
    }

    /// The most connections the pool opens.
    pub fn get_pool_max(&self) -> u32 {
        self.pool_max
    }

    /// How long a call waits for a connection.
    pub fn get_acquire_timeout(&self) -> Duration {
        self.acquire_timeout
    }

    /// How long one statement may run.
    pub fn get_statement_timeout(&self) -> Duration {
        self.statement_timeout
    }

    /// How often expired rows are purged in the background, if at all.
    pub fn get_purge_interval(&self) -> Option<Duration> {
        self.purge_interval
    }

    /// The URL with its password replaced by `***`, for messages.
    pub fn redacted_url(&self) -> &str {
        &self.redacted_url
    }

    pub(crate) fn connect_options(&self) -> &PgConnectOptions {
        &self.connect
    }
}

/// `options[name]=value` sets a server setting at connection start; sqlx passes it on.
fn is_driver_setting(name: &str) -> bool {
    name.starts_with("options[") && name.ends_with(']')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_apply_when_the_url_sets_nothing() {
        let config = PostgresConfig::from_url("postgres://postgres@127.0.0.1:5432/test").unwrap();
        assert_eq!(config.get_table().to_string(), "cachette");
        assert!(config.is_unlogged());
        assert_eq!(config.get_pool_max(), DEFAULT_POOL_MAX);
        assert_eq!(config.get_acquire_timeout(), DEFAULT_ACQUIRE_TIMEOUT);
        assert_eq!(config.get_statement_timeout(), DEFAULT_STATEMENT_TIMEOUT);
        assert_eq!(config.get_purge_interval(), Some(DEFAULT_PURGE_INTERVAL));
        let connect = config.connect_options();
        assert_eq!(connect.get_host(), "127.0.0.1");
        assert_eq!(connect.get_port(), 5432);
        assert_eq!(connect.get_username(), "postgres");
        assert_eq!(connect.get_database(), Some("test"));
        assert_eq!(connect.get_application_name(), Some("cachette"));
    }

    #[test]
    fn store_options_are_read() {
        let config = PostgresConfig::from_url(
            "postgresql://u@h/db?table=app.cache_v2&unlogged=false&pool_max=3\
             &acquire_timeout=250ms&statement_timeout=2s&purge_interval=5m",
        )
        .unwrap();
        assert_eq!(config.get_table().quoted(), r#""app"."cache_v2""#);
        assert_eq!(
            config.get_table().quoted_index(),
            r#""app"."cache_v2_expires_at_idx""#
        );
        assert!(!config.is_unlogged());
        assert_eq!(config.get_pool_max(), 3);
        assert_eq!(config.get_acquire_timeout(), Duration::from_millis(250));
        assert_eq!(config.get_statement_timeout(), Duration::from_secs(2));
        assert_eq!(config.get_purge_interval(), Some(Duration::from_secs(300)));
        let url = "postgres://u@h/db?purge_interval=off";
        assert_eq!(
            PostgresConfig::from_url(url).unwrap().get_purge_interval(),
            None
        );
    }

    #[test]
    fn driver_options_pass_through_and_store_options_do_not() {
        let config = PostgresConfig::from_url(
            "postgres://u@h:6000/db?application_name=billing&sslmode=disable&table=t\
             &options[search_path]=cache",
        )
        .unwrap();
        let connect = config.connect_options();
        assert_eq!(connect.get_application_name(), Some("billing"));
        assert_eq!(connect.get_port(), 6000);
        let options = connect.get_options().unwrap_or_default();
        assert!(options.contains("search_path=cache"), "{options}");
        assert!(!options.contains("table"), "{options}");
    }

    #[test]
    fn bad_urls_and_options_are_config_errors() {
        for bad in [
            "postgres://u@h/db?tabel=x",
            "postgres://u@h/db?table=",
            "postgres://u@h/db?table=1abc",
            "postgres://u@h/db?table=a-b",
            "postgres://u@h/db?table=a.b.c",
            "postgres://u@h/db?table=x%22%3B%20DROP%20TABLE%20y",
            "postgres://u@h/db?unlogged=maybe",
            "postgres://u@h/db?pool_max=0",
            "postgres://u@h/db?pool_max=-1",
            "postgres://u@h/db?acquire_timeout=5",
            "postgres://u@h/db?statement_timeout=5 s",
            "postgres://u@h/db?statement_timeout=99999999999999999999h",
            "postgres://u@h/db?purge_interval=soon",
            "postgres://u@h/db?sslmode=sometimes",
            "redis://h/0",
            "not a url",
        ] {
            match PostgresConfig::from_url(bad) {
                Err(Error::Config { .. }) => {}
                other => panic!("{bad}: expected a config error, got {other:?}"),
            }
        }
    }

    #[test]
    fn table_names_are_validated_and_quoted() {
        assert_eq!(TableName::new("cache").unwrap().quoted(), "\"cache\"");
        assert_eq!(TableName::new("Cache_1").unwrap().quoted(), "\"Cache_1\"");
        assert_eq!(TableName::new("_x").unwrap().to_string(), "_x");
        assert_eq!(
            TableName::new("cache").unwrap().index_identifier(),
            "\"cache_expires_at_idx\""
        );
        assert!(TableName::new(&"t".repeat(48)).is_ok());
        assert!(TableName::new(&"t".repeat(49)).is_err());
        for bad in ["", ".", "a.", ".a", "a b", "é", "a\"b", "a;b", "a\0b"] {
            assert!(TableName::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn passwords_never_show() {
        let url = "postgres://app:hunter2@db:5432/app?table=t&password=swordfish";
        let config = PostgresConfig::from_url(url).unwrap();
        let shown = format!("{config:?} {}", config.redacted_url());
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("swordfish"), "{shown}");
        assert!(shown.contains("app:***@db"), "{shown}");
        let err = PostgresConfig::from_url("postgres://app:hunter2@db/app?bogus=1").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let err = PostgresConfig::from_url("postgres://app:hunter2@db/app?pool_max=x").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(!redact_url("postgres://app:hunter2@[bad").contains("hunter2"));
        assert!(!redact_url("garbage password=hunter2").contains("hunter2"));
    }

    #[test]
    fn unparseable_urls_never_show_a_password() {
        let secret = "hunter2";
        for url in [
            "postgres://u@[bad/db?password=hunter2",
            "postgres://u:hunter2@[bad/db",
            "postgres://u:hunter2@[bad/db?password=hunter2@x",
            "postgres://u:hun@ter2@[bad",
            "postgres://u:hunter2@h:99999/db",
            "postgres://[bad/db?p%61ssword=hunter2",
            "postgres://[bad/db?PASSWORD=hunter2",
            "postgres://u:hunter2@@[",
        ] {
            let shown = redact_url(url);
            assert!(!shown.contains(secret), "{url} shows as {shown}");
            assert!(!shown.contains("ter2"), "{url} shows as {shown}");
            let err = PostgresConfig::from_url(url).unwrap_err();
            assert!(matches!(err, Error::Config { .. }), "{url}: {err:?}");
            let mut chain = format!("{err} {err:?}");
            let mut source = std::error::Error::source(&err);
            while let Some(cause) = source {
                chain.push_str(&format!(" {cause} {cause:?}"));
                source = cause.source();
            }
            assert!(!chain.contains("ter2"), "{url}: {chain}");
        }
        // With nothing that can carry a password, the whole URL stays for the reader.
        assert_eq!(redact_url("postgres://[bad/db"), "postgres://[bad/db");
    }

    #[test]
    fn zero_and_overlong_timeouts_are_refused() {
        for bad in [
            "statement_timeout=0s",
            "statement_timeout=0ms",
            "acquire_timeout=0s",
            "acquire_timeout=0ms",
            "statement_timeout=600h",
            "acquire_timeout=600h",
        ] {
            let name = bad.split('=').next().unwrap_or_default();
            match PostgresConfig::from_url(&format!("postgres://u@h/db?{bad}")) {
                Err(Error::Config { message, .. }) => {
                    assert!(message.contains(name), "{bad}: {message}")
                }
                other => panic!("{bad}: expected a config error, got {other:?}"),
            }
        }
        let config = PostgresConfig::from_url("postgres://u@h/db").unwrap();
        assert!(
            config
                .clone()
                .statement_timeout(Duration::ZERO)
                .check()
                .is_err()
        );
        assert!(
            config
                .clone()
                .acquire_timeout(Duration::ZERO)
                .check()
                .is_err()
        );
        assert!(
            config
                .clone()
                .acquire_timeout(Duration::MAX)
                .check()
                .is_err()
        );
        assert!(
            config
                .clone()
                .statement_timeout(Duration::MAX)
                .check()
                .is_err()
        );
        assert!(
            config
                .clone()
                .statement_timeout(MAX_TIMEOUT)
                .check()
                .is_ok()
        );
        assert!(
            config
                .clone()
                .acquire_timeout(Duration::from_micros(1))
                .check()
                .is_ok()
        );
    }

    #[test]
    fn partial_milliseconds_of_statement_timeout_round_up() {
        let config = PostgresConfig::from_url("postgres://u@h/db").unwrap();
        let rounded = |timeout| {
            config
                .clone()
                .statement_timeout(timeout)
                .get_statement_timeout()
        };
        assert_eq!(rounded(Duration::from_micros(1)), Duration::from_millis(1));
        assert_eq!(
            rounded(Duration::from_micros(1500)),
            Duration::from_millis(2)
        );
        assert_eq!(
            rounded(Duration::from_millis(250)),
            Duration::from_millis(250)
        );
        assert!(
            config
                .statement_timeout(Duration::from_nanos(1))
                .check()
                .is_ok()
        );
    }

    #[test]
    fn options_follow_the_one_grammar_and_old_spellings_say_what_to_write() {
        for (option, hint) in [
            ("acquire_timeout=5", "write 5s"),
            ("statement_timeout=2min", "write 2m"),
            ("purge_interval=none", "write off"),
            ("purge_interval=0", "write off"),
            ("purge_interval=25h", "outside"),
            ("unlogged=yes", "write true or false"),
            ("unlogged=0", "write true or false"),
            ("pool_max=0", "outside 1 to 10000"),
            ("table=a&table=b", "twice"),
        ] {
            match PostgresConfig::from_url(&format!("postgres://u@h/db?{option}")) {
                Err(Error::Config { message, .. }) => {
                    assert!(message.contains(hint), "{option}: {message}");
                }
                other => panic!("{option}: expected a config error, got {other:?}"),
            }
        }
        let config = PostgresConfig::from_url(
            "postgres://u@h/db?unlogged=false&purge_interval=off&acquire_timeout=1500ms",
        )
        .unwrap();
        assert!(!config.is_unlogged());
        assert_eq!(config.get_purge_interval(), None);
        assert_eq!(config.get_acquire_timeout(), Duration::from_millis(1500));
    }
}
