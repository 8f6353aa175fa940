//! Throwaway `redis-server` processes and Redis Clusters, for tests that kill servers or count
//! their commands, and the `INFO commandstats` counts they read.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::ports::{free_cluster_port, free_port};

/// A `redis-server` of our own on a free loopback port, with no persistence, in a temporary
/// directory. Dropping it kills the process, also when a test panics.
pub struct ThrowawayRedis {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    extra_args: Vec<String>,
}

impl ThrowawayRedis {
    /// Starts a server; `extra_args` go to `redis-server` as they are (e.g. `--requirepass x`).
    pub async fn start(extra_args: &[&str]) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("cachette-redis-test-")
            .tempdir()
            .expect("a temporary directory");
        let mut server = Self {
            child: None,
            port: 0,
            dir,
            extra_args: extra_args.iter().map(|arg| (*arg).to_owned()).collect(),
        };
        // A cluster node also listens on its port + 10000 (the cluster bus).
        let cluster = extra_args.contains(&"--cluster-enabled");
        // Another process may take the port between our probe and the server's bind: try again.
        for _ in 0..5 {
            server.port = if cluster {
                free_cluster_port()
            } else {
                free_port()
            };
            if server.spawn_and_wait().await {
                return server;
            }
        }
        panic!(
            "could not start a throwaway redis-server; its log: {}",
            server.log()
        );
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT/0`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Its working directory (log, cluster config).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the server is running").id()
    }

    /// Kills the server at once (SIGKILL): no goodbye to clients, like a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (with an empty data set).
    pub async fn restart(&mut self) {
        self.kill();
        assert!(
            self.spawn_and_wait().await,
            "redis-server did not come back on port {}; its log: {}",
            self.port,
            self.log()
        );
    }

    /// Sends a signal (`STOP`, `CONT`) to the server process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// A plain connection of the test's own, beside the store's.
    pub async fn raw(&self) -> redis::aio::MultiplexedConnection {
        self.raw_with_password(None).await
    }

    /// A plain connection of the test's own, with a password.
    pub async fn raw_with_password(
        &self,
        password: Option<&str>,
    ) -> redis::aio::MultiplexedConnection {
        let url = match password {
            Some(password) => format!("redis://:{password}@127.0.0.1:{}/0", self.port),
            None => self.url(),
        };
        redis::Client::open(url)
            .expect("a valid URL")
            .get_multiplexed_async_connection()
            .await
            .expect("the throwaway server answers")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("redis.log")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_else(|_| "(no log)".into())
    }

    async fn spawn_and_wait(&mut self) -> bool {
        let binary = redis_server_binary();
        let child = Command::new(&binary)
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .arg("--logfile")
            .arg(self.log_path())
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| {
                panic!(
                    "cannot run {}: {error}. Install Redis (Debian/Ubuntu: apt-get install \
                     redis-server)",
                    binary.display()
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                self.child = None;
                return false;
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill();
        false
    }
}

impl Drop for ThrowawayRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn redis_server_binary() -> PathBuf {
    let installed = PathBuf::from("/usr/bin/redis-server");
    if installed.exists() {
        installed
    } else {
        PathBuf::from("redis-server")
    }
}

/// `INFO commandstats` as command name → calls.
pub async fn command_calls(
    connection: &mut redis::aio::MultiplexedConnection,
) -> HashMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(connection)
        .await
        .expect("INFO commandstats");
    info.lines()
        .filter_map(|line| line.strip_prefix("cmdstat_"))
        .filter_map(|line| {
            let (name, stats) = line.split_once(':')?;
            let calls = stats
                .split(',')
                .find_map(|field| field.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_owned(), calls))
        })
        .collect()
}

/// The commands run between two snapshots, with their counts; the test's own `INFO` left out.
pub fn delta(before: &HashMap<String, u64>, after: &HashMap<String, u64>) -> Vec<(String, u64)> {
    let mut changed: Vec<(String, u64)> = after
        .iter()
        .filter(|(name, _)| name.as_str() != "info")
        .filter_map(|(name, &calls)| {
            let more = calls - before.get(name).copied().unwrap_or(0);
            (more > 0).then(|| (name.clone(), more))
        })
        .collect();
    changed.sort();
    changed
}

/// A three-primary Redis Cluster of throwaway servers, slots split evenly, joined with
/// `CLUSTER MEET`. Dropping it kills the three servers.
pub struct ThrowawayCluster {
    /// The nodes, the three first primaries first.
    pub nodes: Vec<ThrowawayRedis>,
}

impl ThrowawayCluster {
    /// Starts three nodes and forms the cluster.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Starts three nodes with `extra_args` for each `redis-server` (e.g. an append-only file,
    /// so that a node killed and restarted comes back with its data) and forms the cluster.
    pub async fn start_with(extra_args: &[&str]) -> Self {
        let mut args = vec![
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
        ];
        args.extend_from_slice(extra_args);
        let mut nodes = Vec::new();
        for _ in 0..3 {
            nodes.push(ThrowawayRedis::start(&args).await);
        }
        let ranges = [(0_u16, 5460_u16), (5461, 10922), (10923, 16383)];
        for (node, (first, last)) in nodes.iter().zip(ranges) {
            let mut connection = node.raw().await;
            let _: () = redis::cmd("CLUSTER")
                .arg("ADDSLOTS")
                .arg((first..=last).collect::<Vec<u16>>())
                .query_async(&mut connection)
                .await
                .expect("CLUSTER ADDSLOTS");
        }
        let mut first = nodes[0].raw().await;
        for other in &nodes[1..] {
            let _: () = redis::cmd("CLUSTER")
                .arg("MEET")
                .arg("127.0.0.1")
                .arg(other.port())
                .query_async(&mut first)
                .await
                .expect("CLUSTER MEET");
        }
        let cluster = Self { nodes };
        cluster.wait_until_ready().await;
        cluster
    }

    /// Until every node reports the cluster healthy and knows all three primaries.
    async fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &self.nodes {
            let mut connection = node.raw().await;
            loop {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut connection)
                    .await
                    .expect("CLUSTER INFO");
                let slots: Vec<redis::Value> = redis::cmd("CLUSTER")
                    .arg("SLOTS")
                    .query_async(&mut connection)
                    .await
                    .expect("CLUSTER SLOTS");
                if info.contains("cluster_state:ok") && slots.len() == 3 {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the throwaway cluster did not form: {info}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// Starts a fourth (fifth, …) node that joins the cluster as a primary without slots, and
    /// waits until every node knows every other and the new one reports the cluster healthy
    /// (a fresh primary waits a moment before it does): only then may a slot be given to it.
    pub async fn add_primary(&mut self) {
        let node = ThrowawayRedis::start(&[
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
        ])
        .await;
        let mut first = self.nodes[0].raw().await;
        let _: () = redis::cmd("CLUSTER")
            .arg("MEET")
            .arg("127.0.0.1")
            .arg(node.port())
            .query_async(&mut first)
            .await
            .expect("CLUSTER MEET");
        self.nodes.push(node);
        let deadline = Instant::now() + Duration::from_secs(20);
        for node in &self.nodes {
            let mut connection = node.raw().await;
            loop {
                let nodes: String = redis::cmd("CLUSTER")
                    .arg("NODES")
                    .query_async(&mut connection)
                    .await
                    .expect("CLUSTER NODES");
                let known = nodes
                    .lines()
                    .filter(|line| !line.contains("handshake") && !line.contains("noaddr"))
                    .count();
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(&mut connection)
                    .await
                    .expect("CLUSTER INFO");
                if known == self.nodes.len() && info.contains("cluster_state:ok") {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the new node did not join the throwaway cluster: {nodes}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// `redis+cluster://…` naming every node.
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|node| format!("127.0.0.1:{}", node.port()))
            .collect();
        format!("redis+cluster://{}", nodes.join(","))
    }

    /// A plain connection to each node, for [`cluster_command_calls`].
    pub async fn raw_connections(&self) -> Vec<redis::aio::MultiplexedConnection> {
        let mut connections = Vec::new();
        for node in &self.nodes {
            connections.push(node.raw().await);
        }
        connections
    }
}

/// `INFO commandstats` of every node of a cluster, per node.
pub async fn cluster_command_calls(
    connections: &mut [redis::aio::MultiplexedConnection],
) -> Vec<HashMap<String, u64>> {
    let mut per_node = Vec::new();
    for connection in connections {
        per_node.push(command_calls(connection).await);
    }
    per_node
}
