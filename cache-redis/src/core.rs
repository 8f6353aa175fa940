//! The connection to Redis: how it is made, the deadline every call runs under, and the one
//! place where driver errors become [`cache_core::Error`].

use std::future::Future;
use std::io;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use cache_core::{Error, Result};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
use redis::{
    Arg, Cmd, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisConnectionInfo,
    RedisError, RedisFuture, RedisResult, Value,
};

use crate::cluster::Topology;
use crate::config::{Address, RedisConfig, Target};

/// The store's name in errors.
pub(crate) const STORE: &str = "redis";

/// Reconnection attempts a call may wait for before it fails: few, so that a call made while the
/// server is away fails within its deadline instead of sitting through a long back-off. The next
/// call starts a fresh attempt, so the store recovers as soon as the server is back.
const RECONNECT_RETRIES: usize = 1;
const RECONNECT_MIN_DELAY: Duration = Duration::from_millis(50);
const RECONNECT_MAX_DELAY: Duration = Duration::from_millis(500);

/// The same trade-off for a cluster: redis-rs retries redirections and lost nodes itself.
const CLUSTER_RETRIES: u32 = 2;
const CLUSTER_MIN_RETRY_WAIT_MS: u64 = 20;
const CLUSTER_MAX_RETRY_WAIT_MS: u64 = 500;

/// A multiplexed connection that reconnects by itself: to one server, or to a cluster.
#[derive(Clone)]
pub(crate) enum Connection {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Connection::Standalone(manager) => manager.req_packed_command(cmd),
            Connection::Cluster(cluster) => cluster.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Connection::Standalone(manager) => manager.req_packed_commands(pipeline, offset, count),
            Connection::Cluster(cluster) => cluster.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Connection::Standalone(manager) => manager.get_db(),
            Connection::Cluster(cluster) => cluster.get_db(),
        }
    }
}

impl Connection {
    /// Sends `pipeline` (not a `MULTI` pipeline: transactions are spelled out in it) and returns
    /// one reply per command. On a cluster, `route_slot` picks the node: the primary that serves
    /// that slot; every key in the pipeline must live on that node.
    pub(crate) async fn send_pipeline(
        &mut self,
        pipeline: Pipeline,
        route_slot: Option<u16>,
    ) -> RedisResult<Vec<Value>> {
        let count = pipeline.len();
        let replies = match (self, route_slot) {
            (Connection::Cluster(cluster), Some(slot)) => {
                let route = SingleNodeRoutingInfo::SpecificNode(Route::new(slot, SlotAddr::Master));
                cluster.route_pipeline(pipeline, 0, count, route).await?
            }
            (connection, _) => connection.req_packed_commands(&pipeline, 0, count).await?,
        };
        replies.into_iter().map(Value::extract_error).collect()
    }

    /// Sends `commands` to the cluster node at `address` (`host:port`, as an `ASK` names it)
    /// behind an `ASKING`, and returns the replies to `commands`. redis-rs sends its own `ASKING`
    /// as a request of its own, which another request on the shared connection can reach the
    /// node ahead of and use up; in one pipeline nothing comes between the two.
    pub(crate) async fn send_asking(
        &mut self,
        commands: &Pipeline,
        address: &str,
    ) -> RedisResult<Vec<Value>> {
        let Connection::Cluster(cluster) = self else {
            return Err(RedisError::from((
                redis::ErrorKind::Client,
                "ASKING outside a cluster",
            )));
        };
        let (host, port) = address
            .rsplit_once(':')
            .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
            .ok_or_else(|| {
                RedisError::from((
                    redis::ErrorKind::Client,
                    "an ASK redirection names no host:port",
                    address.to_owned(),
                ))
            })?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        // `ASKING` lets the one command after it in: a pipeline of several plain commands (a
        // `get_many`'s `MGET` and `EXISTS`) needs one before each. A transaction takes one before
        // its `MULTI`, as it always did.
        let transaction = commands
            .cmd_iter()
            .any(|command| matches!(command.args_iter().next(), Some(Arg::Simple(name)) if name.eq_ignore_ascii_case(b"MULTI")));
        let mut pipeline = Pipeline::with_capacity(commands.len() * 2);
        let mut asking = Vec::with_capacity(commands.len() * 2);
        for (at, command) in commands.cmd_iter().enumerate() {
            if at == 0 || !transaction {
                pipeline.cmd("ASKING");
                asking.push(true);
            }
            pipeline.add_command(command.clone());
            asking.push(false);
        }
        let count = pipeline.len();
        let route = SingleNodeRoutingInfo::ByAddress { host, port };
        let replies = cluster.route_pipeline(pipeline, 0, count, route).await?;
        if replies.len() != asking.len() {
            return Err(RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "a reply per command and ASKING",
            )));
        }
        let mut answers = Vec::with_capacity(commands.len());
        for (reply, asking) in replies.into_iter().zip(asking) {
            let reply = reply.extract_error()?;
            if !asking {
                answers.push(reply);
            }
        }
        Ok(answers)
    }
}

/// The connection (gone after `close`), the deadline and, for a cluster, its slot map.
pub(crate) struct Core {
    connection: RwLock<Option<Connection>>,
    pub(crate) config: RedisConfig,
    deadline: Duration,
    topology: RwLock<Option<Arc<Topology>>>,
    /// The server's `proto-max-bulk-len`, read at connect: a longer value makes the server drop
    /// the connection, and with it every call multiplexed beside it.
    pub(crate) max_value_bytes: usize,
}

/// Redis's own default `proto-max-bulk-len` (512 MB), assumed where `CONFIG GET` is refused or
/// renamed (managed services often do).
pub(crate) const DEFAULT_MAX_VALUE_BYTES: usize = 512 * 1024 * 1024;

impl Core {
    pub(crate) async fn connect(config: RedisConfig) -> Result<Self> {
        config.check()?;
        if config.tls && !cfg!(feature = "tls") {
            return Err(Error::config(format!(
                "TLS to {} needs the `tls` feature of cache-redis (`redis-tls` of cachette)",
                config.endpoint()
            )));
        }
        #[cfg(feature = "tls")]
        if config.tls {
            // rustls needs one process-wide crypto provider. When the application compiled in
            // more than one (aws-lc-rs and ring), none is chosen by itself: pick ring, which
            // this crate brings, unless the application installed one already.
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        // One reconnection plus one reply must fit: past this a call has hung, not merely waited.
        // `check` bounds the timeouts; saturating keeps the sum safe should that bound grow.
        let deadline = config
            .connect_timeout
            .saturating_mul(2)
            .saturating_add(RECONNECT_MAX_DELAY)
            .saturating_add(config.response_timeout);
        let core = Self {
            connection: RwLock::new(None),
            deadline,
            topology: RwLock::new(None),
            config,
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
        };
        let trusted = core.trusted_authorities().await?;
        let connecting = async {
            match &core.config.target {
                Target::Cluster(nodes) => core.connect_cluster(nodes, trusted).await,
                Target::Standalone(address) => {
                    core.connect_standalone(core.tcp(address), trusted).await
                }
                Target::Unix(path) => {
                    core.connect_standalone(ConnectionAddr::Unix(path.clone()), None)
                        .await
                }
            }
        };
        let connection = core.within("connect", None, connecting).await?;
        *core
            .connection
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(connection);
        let mut core = core;
        core.max_value_bytes = core.read_max_value_bytes().await;
        Ok(core)
    }

    /// The server's `proto-max-bulk-len`, or Redis's default when the server will not say.
    async fn read_max_value_bytes(&self) -> usize {
        let reply: Result<Vec<String>> = self
            .query(
                "connect",
                None,
                redis::cmd("CONFIG").arg("GET").arg("proto-max-bulk-len"),
            )
            .await;
        reply
            .ok()
            .and_then(|pair| pair.get(1).and_then(|limit| limit.parse().ok()))
            .unwrap_or(DEFAULT_MAX_VALUE_BYTES)
    }

    /// Refuses a value the server would drop the connection for, before anything is sent.
    pub(crate) fn check_value(&self, key: &str, value: &[u8]) -> Result<()> {
        if value.len() > self.max_value_bytes {
            return Err(Error::value_too_large(
                key,
                value.len(),
                self.max_value_bytes,
            ));
        }
        Ok(())
    }

    fn tcp(&self, address: &Address) -> ConnectionAddr {
        if !self.config.tls {
            return ConnectionAddr::Tcp(address.host.clone(), address.port);
        }
        // `connect` refused TLS without the feature already.
        ConnectionAddr::TcpTls {
            host: address.host.clone(),
            port: address.port,
            insecure: false,
            tls_params: None,
        }
    }

    /// The PEM bytes of `tls_ca`, if the URL names one.
    async fn trusted_authorities(&self) -> Result<Option<Vec<u8>>> {
        let Some(path) = &self.config.tls_ca else {
            return Ok(None);
        };
        tokio::fs::read(path).await.map(Some).map_err(|error| {
            Error::config_with(
                format!("cannot read the TLS CA file {}", path.display()),
                error,
            )
        })
    }

    fn connection_info(&self, address: ConnectionAddr) -> RedisResult<ConnectionInfo> {
        let mut settings = RedisConnectionInfo::default().set_db(self.config.db);
        if let Some(username) = &self.config.username {
            settings = settings.set_username(username);
        }
        if let Some(password) = &self.config.password {
            settings = settings.set_password(password);
        }
        Ok(address.into_connection_info()?.set_redis_settings(settings))
    }

    async fn connect_standalone(
        &self,
        address: ConnectionAddr,
        trusted: Option<Vec<u8>>,
    ) -> RedisResult<Connection> {
        let client = self.client(address, trusted)?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.config.connect_timeout))
            .set_response_timeout(Some(self.config.response_timeout))
            .set_number_of_retries(RECONNECT_RETRIES)
            .set_min_delay(RECONNECT_MIN_DELAY)
            .set_max_delay(RECONNECT_MAX_DELAY);
        let manager = ConnectionManager::new_with_config(client, manager_config).await?;
        Ok(Connection::Standalone(manager))
    }

    async fn connect_cluster(
        &self,
        nodes: &[Address],
        trusted: Option<Vec<u8>>,
    ) -> RedisResult<Connection> {
        let nodes = nodes
            .iter()
            .map(|node| self.connection_info(self.tcp(node)))
            .collect::<RedisResult<Vec<_>>>()?;
        let builder = ClusterClientBuilder::new(nodes);
        #[cfg(feature = "tls")]
        let builder = match trusted {
            Some(root_cert) => builder.certs(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(root_cert),
            }),
            None => builder,
        };
        #[cfg(not(feature = "tls"))]
        drop(trusted);
        let client = builder
            .connection_timeout(self.config.connect_timeout)
            .response_timeout(self.config.response_timeout)
            .overall_response_timeout(Some(self.deadline))
            .retries(CLUSTER_RETRIES)
            .min_retry_wait(CLUSTER_MIN_RETRY_WAIT_MS)
            .max_retry_wait(CLUSTER_MAX_RETRY_WAIT_MS)
            .build()?;
        Ok(Connection::Cluster(client.get_async_connection().await?))
    }

    /// A pub/sub connection of its own: to the server, or to the first node of a cluster that
    /// answers.
    pub(crate) async fn pubsub(&self, operation: &'static str) -> Result<redis::aio::PubSub> {
        self.connection(operation, None)?;
        let addresses: Vec<ConnectionAddr> = match &self.config.target {
            Target::Cluster(nodes) => nodes.iter().map(|node| self.tcp(node)).collect(),
            Target::Standalone(address) => vec![self.tcp(address)],
            Target::Unix(path) => vec![ConnectionAddr::Unix(path.clone())],
        };
        let trusted = self.trusted_authorities().await?;
        let mut last = None;
        for address in addresses {
            let client = self.client(address, trusted.clone());
            let connecting = async { client?.get_async_pubsub().await };
            match self.within(operation, None, connecting).await {
                Ok(pubsub) => return Ok(pubsub),
                Err(error) => last = Some(error),
            }
        }
        Err(last.unwrap_or_else(|| {
            Error::backend(
                STORE,
                operation,
                None,
                io::Error::new(io::ErrorKind::NotConnected, "no node to subscribe on"),
            )
        }))
    }

    /// A client for `address`, trusting `trusted` for TLS.
    fn client(
        &self,
        address: ConnectionAddr,
        trusted: Option<Vec<u8>>,
    ) -> RedisResult<redis::Client> {
        let info = self.connection_info(address)?;
        #[cfg(feature = "tls")]
        let client = match trusted {
            Some(root_cert) => redis::Client::build_with_tls(
                info,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(root_cert),
                },
            )?,
            None => redis::Client::open(info)?,
        };
        #[cfg(not(feature = "tls"))]
        let client = {
            // Without TLS there is no CA file: `connect` refused `rediss://` already.
            drop(trusted);
            redis::Client::open(info)?
        };
        Ok(client)
    }

    /// A handle on the connection for one call (a cheap clone), or an error after `close`.
    pub(crate) fn connection(
        &self,
        operation: &'static str,
        key: Option<&str>,
    ) -> Result<Connection> {
        self.connection
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| {
                Error::backend(
                    STORE,
                    operation,
                    key,
                    io::Error::new(io::ErrorKind::NotConnected, "the Redis store was closed"),
                )
            })
    }

    /// Drops the connection; its background tasks end when the last call in flight finishes.
    pub(crate) fn close(&self) {
        self.connection
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    pub(crate) fn is_cluster(&self) -> bool {
        self.config.is_cluster()
    }

    /// Runs one request under the store's deadline and maps its failure.
    pub(crate) async fn within<T>(
        &self,
        operation: &'static str,
        key: Option<&str>,
        request: impl Future<Output = RedisResult<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.deadline, request).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(self.map_redis_error(operation, key, error)),
            Err(_) => Err(self.timed_out(operation, key)),
        }
    }

    pub(crate) fn timed_out(&self, operation: &'static str, key: Option<&str>) -> Error {
        // A node that stopped answering may have been replaced: look at the slot map again.
        if self.is_cluster() {
            self.forget_topology();
        }
        Error::backend(
            STORE,
            operation,
            key,
            io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "no answer from {} within {:?}",
                    self.config.endpoint(),
                    self.deadline
                ),
            ),
        )
        .with_transient(true)
    }

    /// Runs one command under the deadline.
    pub(crate) async fn query<T: redis::FromRedisValue>(
        &self,
        operation: &'static str,
        key: Option<&str>,
        command: &Cmd,
    ) -> Result<T> {
        let mut connection = self.connection(operation, key)?;
        self.within(operation, key, command.query_async(&mut connection))
            .await
    }

    /// The one conversion of driver errors. Redis never echoes a password back, but the message
    /// is checked anyway so that no future driver message can leak one.
    pub(crate) fn map_redis_error(
        &self,
        operation: &'static str,
        key: Option<&str>,
        error: RedisError,
    ) -> Error {
        if self.is_cluster() && (error.is_cluster_error() || error.is_io_error()) {
            self.forget_topology();
        }
        if let (Some(key), Some("WRONGTYPE")) = (key, error.code()) {
            return foreign_type(key);
        }
        if let Some(password) = self.config.password.as_deref().filter(|p| !p.is_empty()) {
            let message = error.to_string();
            if message.contains(password) {
                let scrubbed = io::Error::other(message.replace(password, "***"));
                return Error::backend(STORE, operation, key, scrubbed)
                    .with_transient(is_transient(&error));
            }
        }
        let transient = is_transient(&error);
        Error::backend(STORE, operation, key, error).with_transient(transient)
    }

    /// The cluster's slot map, asked of the cluster once and kept until a call meets a
    /// redirection or a lost node.
    pub(crate) async fn topology(&self, operation: &'static str) -> Result<Arc<Topology>> {
        if let Some(topology) = self
            .topology
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            return Ok(topology);
        }
        self.refresh_topology(operation).await
    }

    /// The cluster's slot map as the cluster reports it now, kept for the calls that follow.
    pub(crate) async fn refresh_topology(&self, operation: &'static str) -> Result<Arc<Topology>> {
        let reply: Value = self
            .query(operation, None, redis::cmd("CLUSTER").arg("SLOTS"))
            .await?;
        let topology = Arc::new(
            Topology::from_cluster_slots(reply)
                .map_err(|error| self.map_redis_error(operation, None, error))?,
        );
        *self
            .topology
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&topology));
        Ok(topology)
    }

    pub(crate) fn forget_topology(&self) {
        self.topology
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }

    pub(crate) fn deadline(&self) -> Duration {
        self.deadline
    }
}

/// Whether a call that failed with `error` may well succeed if made again: the driver's own
/// judgement (a lost or refused connection, a timeout, a server that is loading, a cluster slot
/// that moved or a cluster that is down), except that a refused password stays refused.
/// What a read of a key that holds a list, a hash or any other type but a string answers: the
/// key is present (`contains` says so, an if-not-exists write is refused, `delete` removes it),
/// but it holds no value this store wrote, so reading it is a decode error naming the key,
/// as for any other bytes the cache cannot read.
pub(crate) fn foreign_type(key: &str) -> Error {
    Error::Decode {
        key: key.to_owned(),
        source: "the key holds a Redis type other than a string, so no cache value".into(),
    }
}

fn is_transient(error: &RedisError) -> bool {
    match error.retry_method() {
        redis::RetryMethod::NoRetry => false,
        _ => error.kind() != redis::ErrorKind::AuthenticationFailed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_messages_never_carry_the_password_out() {
        let core = Core {
            connection: RwLock::new(None),
            config: RedisConfig::from_url("redis://app:pw-Secret-1@cache:6379/0").unwrap(),
            deadline: Duration::from_secs(1),
            topology: RwLock::new(None),
            max_value_bytes: DEFAULT_MAX_VALUE_BYTES,
        };
        let leaky = RedisError::from((
            redis::ErrorKind::InvalidClientConfig,
            "bad",
            "could not use pw-Secret-1 for app".to_owned(),
        ));
        let error = core.map_redis_error("connect", None, leaky);
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains("pw-Secret-1"), "{shown}");
        assert!(shown.contains("could not use *** for app"), "{shown}");
        assert!(matches!(error, Error::Backend { .. }));

        // After `close`, calls fail as a backend error naming the operation.
        let closed = core.connection("get", Some("k")).map(drop).unwrap_err();
        assert!(closed.to_string().contains("closed"), "{closed}");
    }

    #[tokio::test]
    async fn huge_timeouts_are_refused_before_connecting() {
        // Nothing listens on a socket path that does not exist, so only the check can answer.
        let config = RedisConfig::from_url("redis+unix:///nonexistent/cachette-test.sock").unwrap();
        for config in [
            config.clone().with_connect_timeout(Duration::MAX),
            config.clone().with_response_timeout(Duration::MAX),
            config
                .clone()
                .with_connect_timeout(Duration::from_secs(u64::MAX / 2))
                .with_response_timeout(Duration::from_secs(u64::MAX / 2)),
        ] {
            match Core::connect(config).await.map(drop) {
                Err(error @ Error::Config { .. }) => {
                    assert!(
                        error.to_string().contains("outside 1ms to 3600s"),
                        "{error}"
                    );
                }
                other => panic!("expected a configuration error, got {other:?}"),
            }
        }
        // The longest timeouts allowed make a deadline without overflowing.
        let longest = config
            .with_connect_timeout(crate::config::MAX_TIMEOUT)
            .with_response_timeout(crate::config::MAX_TIMEOUT);
        match Core::connect(longest).await.map(drop) {
            Err(Error::Backend { .. }) => {}
            other => panic!("expected a connection failure, got {other:?}"),
        }
    }
}
