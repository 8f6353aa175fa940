//! Redis URLs: `redis://`, `rediss://`, `redis+cluster://`, `rediss+cluster://`, `redis+unix://`.

use std::fmt;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use cache_core::raw::{Options, check_duration, redact_url};
use cache_core::{Error, Result};
use percent_encoding::percent_decode_str;

/// How long a connection attempt may take unless the URL says otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a reply may take unless the URL says otherwise.
pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// The longest `connect_timeout` or `response_timeout`. Past an hour a call has hung rather than
/// waited, and one ceiling keeps the store's deadline, a sum of timeouts, far from overflowing.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60 * 60);

const DEFAULT_PORT: u16 = 6379;

/// The timeouts a store accepts, from URLs and builders alike.
const TIMEOUTS: RangeInclusive<Duration> = Duration::from_millis(1)..=MAX_TIMEOUT;

/// Where and how to connect: what a Redis URL says.
///
/// ```
/// use std::time::Duration;
/// use cache_redis::RedisConfig;
///
/// let config = RedisConfig::from_url("redis://app:s3cret@cache:6380/2?response_timeout=500ms")?;
/// assert_eq!(config.response_timeout(), Duration::from_millis(500));
/// // The password is kept, but never shown.
/// assert!(!format!("{config:?}").contains("s3cret"));
/// # Ok::<(), cache_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct RedisConfig {
    pub(crate) target: Target,
    pub(crate) tls: bool,
    /// A PEM file of the certificate authorities to trust instead of the system's.
    pub(crate) tls_ca: Option<PathBuf>,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) db: i64,
    pub(crate) connect_timeout: Duration,
    pub(crate) response_timeout: Duration,
}

/// The server or servers to talk to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Standalone(Address),
    Cluster(Vec<Address>),
    Unix(PathBuf),
}

/// A TCP host and port.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Address {
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut debug = f.debug_struct("RedisConfig");
        match &self.target {
            Target::Standalone(address) => debug.field("standalone", address),
            Target::Cluster(nodes) => debug.field("cluster", nodes),
            Target::Unix(path) => debug.field("unix", path),
        };
        debug
            .field("tls", &self.tls)
            .field("tls_ca", &self.tls_ca)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("db", &self.db)
            .field("connect_timeout", &self.connect_timeout)
            .field("response_timeout", &self.response_timeout)
            .finish()
    }
}

impl RedisConfig {
    /// Reads a Redis URL:
    ///
    /// - `redis://[user[:password]@]host[:port][/db]` — one server (port 6379, db 0 by default);
    /// - `rediss://…` — the same over TLS (needs the `tls` feature);
    /// - `redis+cluster://[user[:password]@]host:port,host:port,…` — a Redis Cluster, reached
    ///   through any of the nodes listed (`rediss+cluster://` over TLS);
    /// - `redis+unix:///path/to/redis.sock[?db=N&user=U&pass=P]` — a Unix socket.
    ///
    /// Query options, in the grammar of every store URL ([`Options`]), for every form:
    /// `connect_timeout` and `response_timeout`, as `250ms` or `2s` (defaults: 2 s each; 1 ms to
    /// [`MAX_TIMEOUT`]); for
    /// TLS, `tls_ca=/path.pem` trusts the certificate authorities in that PEM file instead of
    /// the system's (a Unix socket takes no `tls_ca`: it has no TLS). User names
    /// and passwords are percent-decoded. A wrong URL is an [`Error::Config`] that never shows
    /// the password.
    pub fn from_url(url: &str) -> Result<Self> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid(url, "it has no scheme (expected redis://…)"))?;
        let scheme = scheme.to_ascii_lowercase();
        let (tls, cluster) = match scheme.as_str() {
            "redis" => (false, false),
            "rediss" => (true, false),
            "redis+cluster" => (false, true),
            "rediss+cluster" => (true, true),
            "redis+unix" => return Self::from_unix_url(url, rest),
            other => {
                return Err(invalid(
                    url,
                    &format!(
                        "unknown scheme {other:?} (known: redis, rediss, redis+cluster, \
                         rediss+cluster, redis+unix)"
                    ),
                ));
            }
        };
        let (authority, path, query) = split_url(rest);
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };
        let (username, password) =
            userinfo.map_or(Ok((None, None)), |info| credentials(url, info))?;
        let nodes = hosts
            .split(',')
            .map(|host| address(url, host))
            .collect::<Result<Vec<_>>>()?;
        let db = database(url, path)?;
        let target = if cluster {
            if db != 0 {
                return Err(invalid(url, "Redis Cluster has only database 0"));
            }
            Target::Cluster(nodes)
        } else {
            match <[Address; 1]>::try_from(nodes) {
                Ok([node]) => Target::Standalone(node),
                Err(_) => {
                    return Err(invalid(
                        url,
                        "several hosts need redis+cluster:// (a standalone URL names one server)",
                    ));
                }
            }
        };
        let mut config = Self {
            target,
            tls,
            tls_ca: None,
            username,
            password,
            db,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
        };
        let mut options = Options::parse("Redis", url, query)?;
        config.apply_options(&mut options)?;
        options.finish()?;
        if config.tls_ca.is_some() && !config.tls {
            return Err(invalid(url, "tls_ca applies to rediss:// URLs only"));
        }
        Ok(config)
    }

    fn from_unix_url(url: &str, rest: &str) -> Result<Self> {
        let (authority, path, query) = split_unix_url(rest);
        if !authority.is_empty() {
            return Err(invalid(
                url,
                "a Unix socket URL has no host: redis+unix:///path/to/redis.sock",
            ));
        }
        let path = percent_decode_str(path).decode_utf8_lossy();
        if path.len() <= 1 {
            return Err(invalid(url, "the socket path is missing"));
        }
        if !path.starts_with('/') {
            // `redis+unix://user:pass@` would otherwise be a socket named after a password.
            return Err(invalid(
                url,
                "the socket path must be absolute: redis+unix:///path/to/redis.sock (user and \
                 password go in the `user` and `pass` options)",
            ));
        }
        let mut config = Self {
            target: Target::Unix(PathBuf::from(path.as_ref())),
            tls: false,
            tls_ca: None,
            username: None,
            password: None,
            db: 0,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            response_timeout: DEFAULT_RESPONSE_TIMEOUT,
        };
        let mut options = Options::parse("Redis", url, query)?;
        if let Some(db) = options.number::<u16>("db", 0..=u16::MAX)? {
            config.db = i64::from(db);
        }
        config.username = options.text("user").filter(|user| !user.is_empty());
        config.password = options.text("pass").filter(|pass| !pass.is_empty());
        config.apply_options(&mut options)?;
        options.finish()?;
        // Ignoring it would leave the caller believing the socket's peer is verified.
        if config.tls_ca.is_some() {
            return Err(invalid(
                url,
                "tls_ca applies to rediss:// URLs only; a Unix socket has no TLS",
            ));
        }
        Ok(config)
    }

    /// Applies the query options every form of URL takes.
    fn apply_options(&mut self, options: &mut Options) -> Result<()> {
        if let Some(timeout) = options.duration("connect_timeout", TIMEOUTS)? {
            self.connect_timeout = timeout;
        }
        if let Some(timeout) = options.duration("response_timeout", TIMEOUTS)? {
            self.response_timeout = timeout;
        }
        match options.text("tls_ca") {
            Some(path) if path.is_empty() => {
                return Err(Error::config(
                    "Redis URL option tls_ca needs the path of a PEM file",
                ));
            }
            Some(path) => self.tls_ca = Some(PathBuf::from(path)),
            None => {}
        }
        Ok(())
    }

    /// Opens the store with these settings.
    pub async fn open(self) -> Result<crate::RedisBackend> {
        crate::RedisBackend::with_config(self).await
    }

    /// How long one connection attempt may take.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// How long a reply may take once a request is sent.
    pub fn response_timeout(&self) -> Duration {
        self.response_timeout
    }

    /// Sets how long one connection attempt may take. Zero or more than [`MAX_TIMEOUT`] makes
    /// connecting fail with [`Error::Config`].
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets how long a reply may take once a request is sent. Zero or more than
    /// [`MAX_TIMEOUT`] makes connecting fail with [`Error::Config`].
    #[must_use]
    pub fn with_response_timeout(mut self, timeout: Duration) -> Self {
        self.response_timeout = timeout;
        self
    }

    /// Refuses timeouts the builder methods let through, which URLs cannot carry: zero, or more
    /// than [`MAX_TIMEOUT`].
    pub(crate) fn check(&self) -> Result<()> {
        for (name, timeout) in [
            ("connect_timeout", self.connect_timeout),
            ("response_timeout", self.response_timeout),
        ] {
            check_duration("Redis", name, timeout, TIMEOUTS)?;
        }
        Ok(())
    }

    /// Whether the URL names a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.target, Target::Cluster(_))
    }

    /// Whether connections use TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The database number (always 0 for a cluster).
    pub fn db(&self) -> i64 {
        self.db
    }

    /// Where the store connects, without credentials: `host:port`, the cluster's seed nodes
    /// joined by commas, or the socket path.
    pub fn endpoint(&self) -> String {
        match &self.target {
            Target::Standalone(address) => address.to_string(),
            Target::Cluster(nodes) => nodes
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(","),
            Target::Unix(path) => path.display().to_string(),
        }
    }
}

/// Splits what follows `scheme://` into authority, path and query. The user info ends at the
/// last `@`, wherever it stands: a password may hold a raw `?`, `/` or `@`, and
/// [`redact_url`] hides everything up to that `@` the same way, so no piece of a password is
/// ever read (and shown) as a host, port, path or option. An `@` in an option value must be
/// percent-encoded (`%40`).
fn split_url(rest: &str) -> (&str, &str, &str) {
    let hosts_start = rest.rfind('@').map_or(0, |at| at + 1);
    let after_userinfo = &rest[hosts_start..];
    let (before_query, query) = after_userinfo
        .split_once('?')
        .unwrap_or((after_userinfo, ""));
    let authority_end = hosts_start + before_query.find('/').unwrap_or(before_query.len());
    let path_end = hosts_start + before_query.len();
    (
        &rest[..authority_end],
        &rest[authority_end..path_end],
        query,
    )
}

/// Path and query of a `redis+unix://` URL, which has no user info: its credentials are query
/// options.
fn split_unix_url(rest: &str) -> (&str, &str, &str) {
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = before_query.split_at(before_query.find('/').unwrap_or(0));
    (authority, path, query)
}

fn credentials(url: &str, userinfo: &str) -> Result<(Option<String>, Option<String>)> {
    let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
    if user.contains(['/', '?']) {
        // No user name holds these: the `@` that ended the user info stood later, in a path or
        // an option's value.
        return Err(invalid(
            url,
            "an `@` after the host: percent-encode `@` in passwords and options as %40",
        ));
    }
    let decode = |part: &str| -> Result<Option<String>> {
        if part.is_empty() {
            return Ok(None);
        }
        percent_decode_str(part)
            .decode_utf8()
            .map(|text| Some(text.into_owned()))
            .map_err(|_| invalid(url, "the user name or password is not UTF-8 once decoded"))
    };
    match userinfo.split_once(':') {
        Some((user, password)) => Ok((decode(user)?, decode(password)?)),
        None => Ok((decode(userinfo)?, None)),
    }
}

fn address(url: &str, host_port: &str) -> Result<Address> {
    if host_port.is_empty() {
        return Err(invalid(url, "a host is missing"));
    }
    let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| invalid(url, "an IPv6 address lacks its closing `]`"))?;
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return Err(invalid(url, "unexpected text after an IPv6 address")),
        }
    } else {
        match host_port.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        }
    };
    if host.is_empty() {
        return Err(invalid(url, "a host is missing"));
    }
    if host
        .chars()
        .any(|c| c.is_whitespace() || "/?#@[]\\".contains(c))
    {
        return Err(invalid(
            url,
            "a host name holds characters no host name has",
        ));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|port| *port != 0)
            .ok_or_else(|| invalid(url, &format!("port {port:?} is not a port number")))?,
    };
    Ok(Address {
        host: host.to_owned(),
        port,
    })
}

fn database(url: &str, path: &str) -> Result<i64> {
    match path.trim_start_matches('/') {
        "" => Ok(0),
        number => database_number(url, number),
    }
}

fn database_number(url: &str, text: &str) -> Result<i64> {
    text.parse::<u16>()
        .map(i64::from)
        .map_err(|_| invalid(url, &format!("database {text:?} is not a database number")))
}

fn invalid(url: &str, what: &str) -> Error {
    Error::config(format!("invalid Redis URL {}: {what}", redact_url(url)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(url: &str) -> RedisConfig {
        RedisConfig::from_url(url).unwrap_or_else(|error| panic!("{url}: {error}"))
    }

    fn config_error(url: &str) -> String {
        match RedisConfig::from_url(url) {
            Err(error @ Error::Config { .. }) => error.to_string(),
            other => panic!("{url}: expected a configuration error, got {other:?}"),
        }
    }

    fn standalone(host: &str, port: u16) -> Target {
        Target::Standalone(Address {
            host: host.into(),
            port,
        })
    }

    #[test]
    fn standalone_urls() {
        let config = parse("redis://127.0.0.1:6380/3");
        assert_eq!(config.target, standalone("127.0.0.1", 6380));
        assert_eq!(config.db, 3);
        assert!(!config.tls && !config.is_cluster());
        assert_eq!(config.username, None);
        assert_eq!(config.password, None);
        assert_eq!(config.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(config.response_timeout, DEFAULT_RESPONSE_TIMEOUT);

        let config = parse("redis://localhost");
        assert_eq!(config.target, standalone("localhost", 6379));
        assert_eq!(config.db, 0);
        assert_eq!(parse("redis://localhost/").db, 0);
        assert_eq!(parse("REDIS://h:1/0").target, standalone("h", 1));
        // A password holding an unencoded `/` still leaves host and database intact.
        let config = parse("redis://u:a/b@h:2/5");
        assert_eq!(config.password.as_deref(), Some("a/b"));
        assert_eq!((config.target, config.db), (standalone("h", 2), 5));

        let config = parse("redis://[::1]:7000/1");
        assert_eq!(config.target, standalone("::1", 7000));
        assert_eq!(config.endpoint(), "[::1]:7000");
    }

    #[test]
    fn credentials_are_percent_decoded() {
        let config = parse("redis://app%40corp:p%3Ass%2Fw%40rd@host:6379/0");
        assert_eq!(config.username.as_deref(), Some("app@corp"));
        assert_eq!(config.password.as_deref(), Some("p:ss/w@rd"));

        let config = parse("redis://:only-password@host");
        assert_eq!(config.username, None);
        assert_eq!(config.password.as_deref(), Some("only-password"));

        let config = parse("redis://only-user@host");
        assert_eq!(config.username.as_deref(), Some("only-user"));
        assert_eq!(config.password, None);
    }

    #[test]
    fn tls_urls() {
        let config = parse("rediss://user:pw@cache.example.com:6380/0");
        assert!(config.is_tls());
        assert_eq!(config.target, standalone("cache.example.com", 6380));
        assert_eq!(config.tls_ca, None);
        let config = parse("rediss://h/0?tls_ca=%2Fetc%2Fpki%2Fca%20bundle.pem");
        assert_eq!(config.tls_ca, Some(PathBuf::from("/etc/pki/ca bundle.pem")));
        assert!(config_error("redis://h/0?tls_ca=/ca.pem").contains("rediss:// URLs only"));
        assert!(config_error("rediss://h/0?tls_ca=").contains("path of a PEM file"));
        let cluster = parse("rediss+cluster://a:7000,b:7001");
        assert!(cluster.is_tls() && cluster.is_cluster());
    }

    #[test]
    fn cluster_urls() {
        let config = parse("redis+cluster://:pw@127.0.0.1:30001,127.0.0.1:30002,[::1]:30003");
        let Target::Cluster(nodes) = &config.target else {
            panic!("{config:?}")
        };
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[2].host, "::1");
        assert_eq!(nodes[2].port, 30003);
        assert_eq!(config.password.as_deref(), Some("pw"));
        assert_eq!(
            config.endpoint(),
            "127.0.0.1:30001,127.0.0.1:30002,[::1]:30003"
        );
        assert_eq!(parse("redis+cluster://one-seed:7000").db, 0);
        assert_eq!(parse("redis+cluster://one-seed:7000/0").db, 0);
        assert!(config_error("redis+cluster://a:1,b:2/3").contains("only database 0"));
        assert!(config_error("redis+cluster://a:1,,b:2").contains("host is missing"));
    }

    #[test]
    fn unix_urls() {
        let config = parse("redis+unix:///run/redis/redis.sock?db=2&pass=sock-secret");
        assert_eq!(
            config.target,
            Target::Unix(PathBuf::from("/run/redis/redis.sock"))
        );
        assert_eq!(config.db, 2);
        assert_eq!(config.password.as_deref(), Some("sock-secret"));
        assert!(!format!("{config:?}").contains("sock-secret"));
        assert!(config_error("redis+unix://host/x.sock").contains("no host"));
        // A CA file would be silently useless on a socket without TLS.
        let message = config_error("redis+unix:///s.sock?tls_ca=%2Fca.pem");
        assert!(message.contains("a Unix socket has no TLS"), "{message}");
        assert!(config_error("redis+unix://").contains("path is missing"));
        let message = config_error("redis+unix://app:hunter2@");
        assert!(
            message.contains("must be absolute") && !message.contains("hunter2"),
            "{message}"
        );
    }

    #[test]
    fn timeouts_come_from_the_query() {
        let config = parse("redis://h/0?connect_timeout=250ms&response_timeout=3s");
        assert_eq!(config.connect_timeout(), Duration::from_millis(250));
        assert_eq!(config.response_timeout(), Duration::from_secs(3));
        let config = parse("redis+cluster://h:1,h:2?response_timeout=1500ms");
        assert_eq!(config.response_timeout(), Duration::from_millis(1500));
        let config = parse("redis+unix:///s.sock?connect_timeout=1s");
        assert_eq!(config.connect_timeout(), Duration::from_secs(1));
        for bad in [
            "0",
            "0ms",
            "-1s",
            "soon",
            "1.5s",
            "",
            "99999999999999999999s",
        ] {
            let message = config_error(&format!("redis://h/0?connect_timeout={bad}"));
            assert!(
                message.contains(&format!("connect_timeout={bad} ")),
                "{message}"
            );
        }
    }

    #[test]
    fn timeouts_are_at_most_an_hour() {
        let config = parse("redis://h/0?connect_timeout=3600s&response_timeout=3600000ms");
        assert_eq!(config.connect_timeout(), MAX_TIMEOUT);
        assert_eq!(config.response_timeout(), MAX_TIMEOUT);
        assert!(config.check().is_ok());
        for too_long in [
            "connect_timeout=18446744073709551615s",
            "connect_timeout=3601s",
            "response_timeout=3600001ms",
            "response_timeout=18446744073709551615ms",
            "response_timeout=3600001",
        ] {
            let message = config_error(&format!("redis+unix:///s.sock?{too_long}"));
            assert!(
                [
                    "outside 1ms to 3600s",
                    "write 3600001s",
                    "whole number",
                    "too long"
                ]
                .iter()
                .any(|hint| message.contains(hint)),
                "{message}"
            );
        }

        // What the builder methods let through is refused before connecting.
        let config = parse("redis://h/0");
        for (adjusted, name) in [
            (
                config.clone().with_connect_timeout(Duration::MAX),
                "connect_timeout",
            ),
            (
                config.clone().with_response_timeout(Duration::MAX),
                "response_timeout",
            ),
            (
                config
                    .clone()
                    .with_connect_timeout(MAX_TIMEOUT + Duration::from_nanos(1)),
                "connect_timeout",
            ),
            (
                config.clone().with_response_timeout(Duration::ZERO),
                "response_timeout",
            ),
        ] {
            match adjusted.check() {
                Err(error @ Error::Config { .. }) => {
                    assert!(error.to_string().contains(name), "{error}");
                }
                other => panic!("{adjusted:?}: expected a configuration error, got {other:?}"),
            }
        }
        assert!(config.with_connect_timeout(MAX_TIMEOUT).check().is_ok());
    }

    #[test]
    fn bad_urls_are_config_errors() {
        for (url, expected) in [
            ("127.0.0.1:6379", "no scheme"),
            ("http://h:1", "unknown scheme"),
            ("redis://", "host is missing"),
            ("redis://h:port", "not a port number"),
            ("redis://h:0", "not a port number"),
            ("redis://h:70000", "not a port number"),
            ("redis://h/db", "not a database number"),
            ("redis://h/-1", "not a database number"),
            ("redis://h:1,g:2", "redis+cluster://"),
            ("redis://h?timeout=1", "unknown Redis URL option"),
            ("redis://h?db=1", "unknown Redis URL option \"db\""),
            ("redis://[::1:6379", "closing `]`"),
            ("redis://a b:1", "no host name has"),
        ] {
            let message = config_error(url);
            assert!(message.contains(expected), "{url}: {message}");
        }
    }

    #[test]
    fn passwords_never_appear_in_debug_or_errors() {
        let secret = "hunter2-Secret";
        for url in [
            format!("redis://user:{secret}@host:6379/0"),
            format!("rediss://:{secret}@host"),
            format!("redis+cluster://u:{secret}@a:1,b:2"),
            format!("redis+unix:///tmp/s.sock?pass={secret}"),
        ] {
            let config = parse(&url);
            assert_eq!(config.password.as_deref(), Some(secret));
            let debug = format!("{config:?}");
            assert!(!debug.contains(secret), "{debug}");
            assert!(debug.contains("***"), "{debug}");
        }
        for url in [
            format!("redis://user:{secret}@host:99999/0"),
            format!("redis+cluster://u:{secret}@a:1,b:2/7"),
            format!("redis://user:{secret}@host/0?nope=1"),
            format!("redis+unix:///tmp/s.sock?pass={secret}&db=x"),
            format!("nope://user:{secret}@host"),
            format!("user:{secret}@host"),
        ] {
            let message = config_error(&url);
            assert!(!message.contains(secret), "{message}");
        }
    }
}
