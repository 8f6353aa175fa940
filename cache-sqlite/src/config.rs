//! Settings of the SQLite store, and `sqlite:` URLs.

use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use cache_core::raw::{Options, check_duration};
use cache_core::{Error, Result};

use crate::SqliteBackend;

/// The table a store uses unless told otherwise.
pub const DEFAULT_TABLE: &str = "cachette";

/// How often a store deletes expired rows unless told otherwise: every five minutes.
///
/// Expired rows are invisible the moment they expire; the purge only gives their pages back to
/// SQLite for reuse, so that a cache whose keys keep changing does not grow its file forever.
pub const DEFAULT_PURGE_INTERVAL: Duration = Duration::from_secs(5 * 60);

/// The longest purge interval a store accepts: one day. A longer one is surely a mistake (a
/// purge that finds nothing to delete costs one index probe), and a bound keeps the writer
/// thread's clock arithmetic far from overflow.
pub const MAX_PURGE_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

/// The purge intervals a store accepts, from URLs and builders alike.
const PURGE_INTERVALS: RangeInclusive<Duration> = Duration::from_millis(1)..=MAX_PURGE_INTERVAL;

/// The longest busy timeout a store accepts: one hour.
pub const MAX_BUSY_TIMEOUT: Duration = Duration::from_secs(60 * 60);

/// The busy timeouts a store accepts, from URLs and builders alike.
const BUSY_TIMEOUTS: RangeInclusive<Duration> = Duration::from_millis(1)..=MAX_BUSY_TIMEOUT;

/// How long a write waits for another connection or process that holds the write lock before
/// the call fails, unless told otherwise.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The permissions a new database file is created with: the owner's alone, since a cache may
/// hold tokens and documents other local users must not read. SQLite gives its `-wal` and
/// `-shm` files the database file's permissions.
pub const DEFAULT_MODE: u32 = 0o600;

/// SQLite reserves names starting with `sqlite_`; longer names than this are surely mistakes.
const MAX_TABLE_NAME_CHARS: usize = 64;

/// More reader threads than this only add memory: reads are CPU bound.
const MAX_READERS: usize = 64;

/// Where the database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Location {
    /// A file, created if missing.
    File(PathBuf),
    /// An in-memory database private to one store handle (shared by its connections).
    Memory,
}

/// Builds a [`SqliteBackend`]: start with [`SqliteBackend::file`], [`SqliteBackend::memory`]
/// or [`SqliteBackendBuilder::from_url`], then [`open`](SqliteBackendBuilder::open) it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> cache_core::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("cache.db");
/// use std::time::Duration;
/// use cache_core::Backend;
/// use cache_sqlite::SqliteBackend;
///
/// let store = SqliteBackend::file(&path)
///     .table("sessions")
///     .purge_interval(Some(Duration::from_secs(60)))
///     .open()
///     .await?;
/// # store.close().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct SqliteBackendBuilder {
    pub(crate) location: Location,
    pub(crate) table: String,
    pub(crate) purge_interval: Option<Duration>,
    pub(crate) busy_timeout: Duration,
    pub(crate) readers: Option<usize>,
    pub(crate) mode: u32,
    pub(crate) inline_reads: bool,
}

impl SqliteBackendBuilder {
    fn new(location: Location) -> Self {
        Self {
            location,
            table: DEFAULT_TABLE.to_owned(),
            purge_interval: Some(DEFAULT_PURGE_INTERVAL),
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            readers: None,
            mode: DEFAULT_MODE,
            inline_reads: true,
        }
    }

    /// Settings from a `sqlite:` URL:
    ///
    /// - `sqlite://relative/path.db` (relative to the working directory),
    /// - `sqlite:///absolute/path.db`,
    /// - `sqlite::memory:` (a fresh in-memory database for this handle),
    ///
    /// with optional query options `table=NAME`, `purge_interval=DURATION|off`,
    /// `busy_timeout=DURATION`, `readers=N`, `inline_reads=true|false` (see
    /// [`inline_reads`](Self::inline_reads)) and `mode=OCTAL` (see [`mode`](Self::mode)), in
    /// the grammar of every store URL ([`Options`]): a duration is a whole number and a unit,
    /// `ms`, `s`, `m` or `h`. `purge_interval` is at most [`MAX_PURGE_INTERVAL`] (`24h`), and
    /// `off` turns the background purge off; `busy_timeout` is at most [`MAX_BUSY_TIMEOUT`]
    /// (`1h`). Percent-encode `?`, `%` and `#` in a path.
    ///
    /// ```
    /// use cache_sqlite::SqliteBackendBuilder;
    ///
    /// assert!(SqliteBackendBuilder::from_url("sqlite://cache.db?table=docs&purge_interval=10m").is_ok());
    /// assert!(SqliteBackendBuilder::from_url("sqlite::memory:").is_ok());
    /// assert!(SqliteBackendBuilder::from_url("sqlite://cache.db?table=no-dashes").is_err());
    /// ```
    pub fn from_url(url: &str) -> Result<Self> {
        // A mistyped URL may still carry credentials: only its redacted form is ever shown.
        let shown = cache_core::raw::redact_url(url);
        let rest = url
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case("sqlite:"))
            .map(|_| &url[7..])
            .ok_or_else(|| {
                Error::config(format!("a SQLite URL starts with sqlite:, not {shown}"))
            })?;
        let (target, query) = match rest.split_once('?') {
            Some((target, query)) => (target, Some(query)),
            None => (rest, None),
        };
        let location = match target {
            ":memory:" | "//:memory:" => Location::Memory,
            _ => match target.strip_prefix("//") {
                Some("") | Some("/") => {
                    return Err(Error::config(format!(
                        "the SQLite URL {shown} names no file"
                    )));
                }
                Some(encoded) => Location::File(PathBuf::from(decode_path(url, encoded)?)),
                None => {
                    return Err(Error::config(format!(
                        "cannot read the SQLite URL {shown}: use sqlite://relative/path.db, \
                         sqlite:///absolute/path.db or sqlite::memory:"
                    )));
                }
            },
        };
        let mut options = Options::parse("SQLite", url, query.unwrap_or(""))?;
        let mut builder = Self::new(location);
        if let Some(table) = options.text("table") {
            builder = builder.table(table);
        }
        if let Some(every) = options.interval_or_off("purge_interval", PURGE_INTERVALS)? {
            builder = builder.purge_interval(every);
        }
        if let Some(timeout) = options.duration("busy_timeout", BUSY_TIMEOUTS)? {
            builder = builder.busy_timeout(timeout);
        }
        if let Some(readers) = options.number("readers", 1..=MAX_READERS)? {
            builder = builder.readers(readers);
        }
        if let Some(inline) = options.flag("inline_reads")? {
            builder = builder.inline_reads(inline);
        }
        if let Some(mode) = options.text("mode") {
            builder = builder.mode(parse_mode(&mode)?);
        }
        options.finish()?;
        builder.validate()?;
        Ok(builder)
    }

    /// The table that holds the entries, created on first use; default [`DEFAULT_TABLE`].
    /// Letters, digits and `_`, not starting with a digit or `sqlite_`, at most 64 characters:
    /// anything else makes [`open`](Self::open) fail with [`Error::Config`].
    ///
    /// Several tables in one file are independent caches. SQLite compares table names without
    /// regard to ASCII case, so `Docs` and `docs` name the same table, and so the same cache.
    pub fn table(mut self, name: impl Into<String>) -> Self {
        self.table = name.into();
        self
    }

    /// How often a background pass deletes expired rows (`None`: never; call
    /// [`SqliteBackend::purge_expired`] yourself). Default [`DEFAULT_PURGE_INTERVAL`]. An
    /// interval of zero or longer than [`MAX_PURGE_INTERVAL`] makes [`open`](Self::open) fail
    /// with [`Error::Config`].
    pub fn purge_interval(mut self, every: Option<Duration>) -> Self {
        self.purge_interval = every;
        self
    }

    /// How long a call waits for a lock that another connection or process holds before it
    /// fails with [`Error::Backend`]; default [`DEFAULT_BUSY_TIMEOUT`]. Must be more than zero.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// How many threads serve reads, each with its own connection; default: one per CPU, at
    /// most four. Writes always go through one writer thread.
    pub fn readers(mut self, threads: usize) -> Self {
        self.readers = Some(threads);
        self
    }

    /// Whether point reads (`get`, `get_with_ttl`) run on the calling task when they can;
    /// default `true`.
    ///
    /// Handing a point read to a reader thread and back costs two thread wake-ups, several
    /// times the read itself. An inline read is bounded so that it never holds the executor for
    /// long: it uses one of a few connections of its own (one per two reader threads) only when
    /// one is free; it never waits for a lock (another process's, or a memory database's writer);
    /// it copies out a value of at most 16 KiB, and leaves a larger one to a reader thread; and
    /// it descends the key's B-tree, a few pages, that a warm database serves from memory. A
    /// database file whose pages are not in the operating system's cache pays one disk read
    /// per page not there, as any file read would. Turn it off for a file on a slow or network
    /// file system, where every read then goes to a reader thread. After an inline read the
    /// task gives the scheduler a turn when its budget is spent, like any Tokio resource, so a
    /// loop of cache hits cannot starve other tasks.
    pub fn inline_reads(mut self, on: bool) -> Self {
        self.inline_reads = on;
        self
    }

    /// The Unix permissions a database file this store creates gets (its `-wal` and `-shm`
    /// files follow them), before the process's umask; default [`DEFAULT_MODE`], `0o600`. A file
    /// that exists already keeps its own. The owner must be able to read and write, and only
    /// permission bits (at most `0o777`) are allowed; anything else makes [`open`](Self::open)
    /// fail with [`Error::Config`]. Has no effect on other platforms.
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    pub(crate) fn validate(&self) -> Result<()> {
        validate_table_name(&self.table)?;
        if self.mode > 0o777 || self.mode & 0o600 != 0o600 {
            return Err(Error::config(format!(
                "a SQLite file mode of {:o} is not permission bits that let the owner read and \
                 write, such as 600 or 640",
                self.mode
            )));
        }
        // A zero busy timeout would fail calls at once on a locked database.
        check_duration("SQLite", "busy_timeout", self.busy_timeout, BUSY_TIMEOUTS)?;
        if let Some(every) = self.purge_interval {
            // Zero would purge without pause; `None` turns the background purge off.
            check_duration("SQLite", "purge_interval", every, PURGE_INTERVALS)?;
        }
        if let Some(readers) = self.readers
            && !(1..=MAX_READERS).contains(&readers)
        {
            return Err(Error::config(format!(
                "a SQLite store needs between 1 and {MAX_READERS} reader threads, not {readers}"
            )));
        }
        Ok(())
    }
}

/// `mode=600`, `mode=0640`: three or four octal digits.
fn parse_mode(value: &str) -> Result<u32> {
    let digits = value.strip_prefix("0o").unwrap_or(value);
    if !(3..=4).contains(&digits.len()) {
        return Err(Error::config(format!(
            "SQLite URL option mode={value} is not an octal file mode such as 600 or 0640"
        )));
    }
    u32::from_str_radix(digits, 8).map_err(|error| {
        Error::config_with(
            format!("SQLite URL option mode={value} is not an octal file mode such as 600 or 0640"),
            error,
        )
    })
}

impl SqliteBackend {
    /// Opens the store a `sqlite:` URL names; see [`SqliteBackendBuilder::from_url`] for the
    /// forms and options.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> cache_core::Result<()> {
    /// use cache_core::Backend;
    ///
    /// let store = cache_sqlite::SqliteBackend::open("sqlite::memory:?table=scratch").await?;
    /// store.close().await?;
    /// # Ok(()) }
    /// ```
    pub async fn open(url: &str) -> Result<Self> {
        SqliteBackendBuilder::from_url(url)?.open().await
    }

    /// Starts building a store over the database file at `path`, created if missing. Its
    /// directory must exist.
    pub fn file(path: impl Into<PathBuf>) -> SqliteBackendBuilder {
        SqliteBackendBuilder::new(Location::File(path.into()))
    }

    /// Starts building a store over an in-memory database: private to the store handle,
    /// shared by its connections, gone when the handle is dropped or closed.
    pub fn memory() -> SqliteBackendBuilder {
        SqliteBackendBuilder::new(Location::Memory)
    }
}

fn validate_table_name(name: &str) -> Result<()> {
    let mut chars = name.chars();
    let well_formed = chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= MAX_TABLE_NAME_CHARS;
    let reserved = name
        .get(..7)
        .is_some_and(|head| head.eq_ignore_ascii_case("sqlite_"));
    if well_formed && !reserved {
        Ok(())
    } else {
        Err(Error::config(format!(
            "{name:?} cannot name a SQLite cache table: use letters, digits and _, start with a \
             letter or _, not with sqlite_, at most {MAX_TABLE_NAME_CHARS} characters"
        )))
    }
}

/// Percent-decodes the path of a URL (`+` stays `+`: this is a path, not a form).
fn decode_path(url: &str, encoded: &str) -> Result<String> {
    let bad = |why: &str| {
        let shown = cache_core::raw::redact_url(url);
        Error::config(format!("the path in the SQLite URL {shown} {why}"))
    };
    let mut bytes = Vec::with_capacity(encoded.len());
    let mut rest = encoded.as_bytes();
    while let Some((&byte, tail)) = rest.split_first() {
        if byte == b'%' {
            let hex = tail
                .get(..2)
                .filter(|hex| hex.iter().all(u8::is_ascii_hexdigit))
                .and_then(|hex| std::str::from_utf8(hex).ok())
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .ok_or_else(|| bad("has a % not followed by two hex digits"))?;
            bytes.push(hex);
            rest = &tail[2..];
        } else {
            bytes.push(byte);
            rest = tail;
        }
    }
    String::from_utf8(bytes).map_err(|_| bad("is not UTF-8 once decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn location(url: &str) -> Location {
        SqliteBackendBuilder::from_url(url).unwrap().location
    }

    #[test]
    fn url_forms_name_relative_absolute_and_memory_databases() {
        assert_eq!(
            location("sqlite://relative/path.db"),
            Location::File(PathBuf::from("relative/path.db"))
        );
        assert_eq!(
            location("sqlite:///absolute/path.db"),
            Location::File(PathBuf::from("/absolute/path.db"))
        );
        assert_eq!(
            location("SQLite://cache.db"),
            Location::File(PathBuf::from("cache.db"))
        );
        assert_eq!(
            location("sqlite:///tmp/with%20space%3F.db"),
            Location::File(PathBuf::from("/tmp/with space?.db"))
        );
        assert_eq!(
            location("sqlite:///tmp/a+b.db"),
            Location::File(PathBuf::from("/tmp/a+b.db"))
        );
        assert_eq!(location("sqlite::memory:"), Location::Memory);
        assert_eq!(location("sqlite://:memory:"), Location::Memory);
        assert_eq!(location("sqlite::memory:?table=t"), Location::Memory);
    }

    #[test]
    fn defaults_apply_without_options() {
        let builder = SqliteBackendBuilder::from_url("sqlite://cache.db").unwrap();
        assert_eq!(builder.table, DEFAULT_TABLE);
        assert_eq!(builder.purge_interval, Some(DEFAULT_PURGE_INTERVAL));
        assert_eq!(builder.busy_timeout, DEFAULT_BUSY_TIMEOUT);
        assert_eq!(builder.readers, None);
    }

    #[test]
    fn query_options_set_table_purge_interval_busy_timeout_and_readers() {
        let builder = SqliteBackendBuilder::from_url(
            "sqlite:///var/cache/app.db?table=did_docs&purge_interval=90s&busy_timeout=250ms&readers=3",
        )
        .unwrap();
        assert_eq!(builder.table, "did_docs");
        assert_eq!(builder.purge_interval, Some(Duration::from_secs(90)));
        assert_eq!(builder.busy_timeout, Duration::from_millis(250));
        assert_eq!(builder.readers, Some(3));
        assert!(builder.inline_reads, "inline reads are on by default");
        for (text, expected) in [("true", true), ("false", false)] {
            let url = format!("sqlite://a.db?inline_reads={text}");
            let builder = SqliteBackendBuilder::from_url(&url).unwrap();
            assert_eq!(builder.inline_reads, expected, "{url}");
        }
        for (text, expected) in [
            ("15s", Some(Duration::from_secs(15))),
            ("10m", Some(Duration::from_secs(600))),
            ("2h", Some(Duration::from_secs(7200))),
            ("24h", Some(MAX_PURGE_INTERVAL)),
            ("86400s", Some(MAX_PURGE_INTERVAL)),
            ("off", None),
        ] {
            let url = format!("sqlite://a.db?purge_interval={text}");
            let builder = SqliteBackendBuilder::from_url(&url).unwrap();
            assert_eq!(builder.purge_interval, expected, "{url}");
        }
    }

    #[test]
    fn bad_urls_and_options_are_config_errors() {
        for bad in [
            "sqlite:",
            "sqlite://",
            "sqlite:///",
            "sqlite:relative.db",
            "sqlite:/absolute.db",
            "postgres://x/y",
            "sqlite",
            "sqlite://a.db?table=",
            "sqlite://a.db?table=1abc",
            "sqlite://a.db?table=has-dash",
            "sqlite://a.db?table=has%20space",
            "sqlite://a.db?table=a;DROP",
            "sqlite://a.db?table=sqlite_master",
            "sqlite://a.db?table=SQLITE_x",
            "sqlite://a.db?purge_interval=soon",
            "sqlite://a.db?purge_interval=5d",
            "sqlite://a.db?purge_interval=-5",
            "sqlite://a.db?purge_interval=25h",
            "sqlite://a.db?purge_interval=86401s",
            // Spellings of other days, each refused with what to write instead.
            "sqlite://a.db?purge_interval=15",
            "sqlite://a.db?purge_interval=never",
            "sqlite://a.db?purge_interval=0",
            "sqlite://a.db?purge_interval=0s",
            "sqlite://a.db?busy_timeout=30",
            "sqlite://a.db?busy_timeout=2h",
            "sqlite://a.db?table=a&table=b",
            "sqlite://a.db?tabel=a",
            "sqlite://a.db?purge_interval=18446744073709551615",
            "sqlite://a.db?purge_interval=18446744073709551615ms",
            "sqlite://a.db?busy_timeout=0",
            "sqlite://a.db?readers=0",
            "sqlite://a.db?readers=1000",
            "sqlite://a.db?readers=two",
            "sqlite://a.db?inline_reads=1",
            "sqlite://a.db?inline_reads=off",
            "sqlite://a.db?mode=ro",
            "sqlite://%FF.db",
            "sqlite://50%.db",
            "sqlite://a%2.db",
            "sqlite://a%+1.db",
        ] {
            assert!(
                matches!(
                    SqliteBackendBuilder::from_url(bad),
                    Err(Error::Config { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn table_names_are_validated() {
        for good in ["cachette", "_private", "Docs_2", &"t".repeat(64)] {
            assert!(validate_table_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "2docs",
            "dash-ed",
            "dotted.name",
            "quo\"te",
            "ünï",
            "sqlite_stat1",
            &"t".repeat(65),
        ] {
            let err = validate_table_name(bad).unwrap_err();
            assert!(matches!(err, Error::Config { .. }), "{bad}");
        }
    }

    #[test]
    fn builder_settings_are_validated() {
        let zero_purge = SqliteBackend::memory().purge_interval(Some(Duration::ZERO));
        assert!(matches!(zero_purge.validate(), Err(Error::Config { .. })));
        for huge in [
            MAX_PURGE_INTERVAL + Duration::from_millis(1),
            Duration::from_secs(u64::MAX),
            Duration::MAX,
        ] {
            let huge_purge = SqliteBackend::memory().purge_interval(Some(huge));
            assert!(
                matches!(huge_purge.validate(), Err(Error::Config { .. })),
                "{huge:?}"
            );
        }
        let longest = SqliteBackend::memory().purge_interval(Some(MAX_PURGE_INTERVAL));
        assert!(longest.validate().is_ok());
        let zero_busy = SqliteBackend::memory().busy_timeout(Duration::ZERO);
        assert!(matches!(zero_busy.validate(), Err(Error::Config { .. })));
        assert!(SqliteBackend::file("x.db").readers(2).validate().is_ok());
    }
}
