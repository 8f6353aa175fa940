//! Standalone Redis and a three-primary Redis Cluster.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use super::{
    Kind, Lifetime, Missing, Server, find_on_path, free_ports, free_ports_where, port_is_free,
    spawn, with_port_retries,
};
use crate::process;

/// Redis Cluster's slots; the cluster serves every key only when all are assigned.
const SLOTS: u32 = 16384;

pub(super) fn missing_programs() -> Vec<Missing> {
    [
        ("redis-server", "redis-server"),
        ("redis-cli", "redis-tools"),
    ]
    .into_iter()
    .filter(|(program, _)| find_on_path(program).is_none())
    .map(|(program, package)| Missing {
        program: program.into(),
        package,
    })
    .collect()
}

fn program(name: &str, package: &str) -> Result<PathBuf> {
    find_on_path(name)
        .ok_or_else(|| anyhow!("{name} is not installed: install the Debian package `{package}`"))
}

/// The arguments every node gets: loopback only, nothing written to disk.
fn base_args(port: u16, dir: &std::path::Path) -> Vec<String> {
    vec![
        "--port".into(),
        port.to_string(),
        "--bind".into(),
        "127.0.0.1".into(),
        "--save".into(),
        String::new(),
        "--appendonly".into(),
        "no".into(),
        "--dir".into(),
        dir.display().to_string(),
    ]
}

/// Starts `redis-server --port P --bind 127.0.0.1 --save "" --appendonly no --dir TMP`.
pub fn start_standalone(lifetime: Lifetime) -> Result<Server> {
    with_port_retries(Kind::Redis, || {
        let server_bin = program("redis-server", "redis-server")?;
        let [port] = free_ports(1)?[..] else {
            bail!("expected one port");
        };
        let mut server = Server::new(Kind::Redis, format!("redis://127.0.0.1:{port}"), vec![port])?;
        let dir = server.dir().to_path_buf();
        let log = dir.join("redis.log");
        spawn(
            &mut server,
            lifetime,
            Command::new(server_bin).args(base_args(port, &dir)),
            &log,
        )?;
        server.wait_until("answering PING", &log, Duration::from_secs(20), || {
            Ok(check_standalone(port).is_ok())
        })?;
        Ok(server)
    })
}

/// Starts three cluster-enabled nodes, joins them with `redis-cli --cluster create` and waits
/// until every node sees all slots served.
pub fn start_cluster(lifetime: Lifetime) -> Result<Server> {
    with_port_retries(Kind::RedisCluster, || {
        let server_bin = program("redis-server", "redis-server")?;
        let cli = program("redis-cli", "redis-tools")?;
        let (ports, bus_ports) = cluster_ports()?;
        let url = format!(
            "redis+cluster://{}",
            ports
                .iter()
                .map(|port| format!("127.0.0.1:{port}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        let mut server = Server::new(Kind::RedisCluster, url, ports.clone())?;
        let dir = server.dir().to_path_buf();
        let log = dir.join("cluster.log");
        for (index, &port) in ports.iter().enumerate() {
            let node_dir = dir.join(format!("node-{port}"));
            std::fs::create_dir(&node_dir)
                .with_context(|| format!("creating {}", node_dir.display()))?;
            let mut command = Command::new(&server_bin);
            command.args(base_args(port, &node_dir)).args([
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                &node_dir.join("nodes.conf").display().to_string(),
                "--cluster-node-timeout",
                "5000",
            ]);
            if let Some(bus_ports) = &bus_ports {
                command.args(["--cluster-port", &bus_ports[index].to_string()]);
            }
            spawn(&mut server, lifetime, &mut command, &log)?;
        }
        for &port in &ports {
            server.wait_until("answering PING", &log, Duration::from_secs(20), || {
                Ok(check_standalone(port).is_ok())
            })?;
        }
        let mut create = Command::new(&cli);
        create.args(["--cluster", "create"]);
        create.args(ports.iter().map(|port| format!("127.0.0.1:{port}")));
        create.args(["--cluster-replicas", "0", "--cluster-yes"]);
        process::run_checked(&mut create)?;
        server.wait_until(
            "serving all slots on every node",
            &log,
            Duration::from_secs(30),
            || Ok(check_cluster(&ports).is_ok()),
        )?;
        Ok(server)
    })
}

/// Three node ports, and three bus ports when the server takes `--cluster-port` (Redis 7+).
/// Older servers put the bus at port + 10000, so that port must be free too.
fn cluster_ports() -> Result<(Vec<u16>, Option<Vec<u16>>)> {
    if server_major_version()? >= 7 {
        let ports = free_ports(6)?;
        Ok((ports[..3].to_vec(), Some(ports[3..].to_vec())))
    } else {
        let ports = free_ports_where(3, |port| port.checked_add(10000).is_some_and(port_is_free))?;
        Ok((ports, None))
    }
}

fn server_major_version() -> Result<u32> {
    let output = process::run_checked(
        Command::new(program("redis-server", "redis-server")?).arg("--version"),
    )?;
    parse_major_version(&String::from_utf8_lossy(&output.stdout))
}

/// Reads the major version out of `Redis server v=7.0.15 sha=… bits=64 …`.
fn parse_major_version(text: &str) -> Result<u32> {
    text.split_whitespace()
        .find_map(|word| word.strip_prefix("v="))
        .and_then(|version| version.split('.').next())
        .and_then(|major| major.parse().ok())
        .ok_or_else(|| anyhow!("cannot read the version of redis-server from {text:?}"))
}

/// Runs `redis-cli` against a loopback port; Redis reports errors in the reply, not the exit
/// code, so callers look at the text.
fn cli(port: u16, args: &[&str]) -> Result<String> {
    let mut command = Command::new(program("redis-cli", "redis-tools")?);
    command
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args);
    let output = process::output(&mut command)?;
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

/// Fails unless the server on `port` answers PING.
pub fn check_standalone(port: u16) -> Result<()> {
    let reply = cli(port, &["ping"])?;
    if reply.trim() == "PONG" {
        Ok(())
    } else {
        bail!("redis on port {port} answered PING with {:?}", reply.trim())
    }
}

/// Fails unless every node is up, in state ok, knows all nodes and sees all slots served.
pub fn check_cluster(ports: &[u16]) -> Result<()> {
    if ports.is_empty() {
        bail!("a cluster needs nodes");
    }
    for &port in ports {
        let info = cli(port, &["cluster", "info"])?;
        cluster_info_ok(&info, ports.len())
            .with_context(|| format!("cluster node on port {port}"))?;
    }
    Ok(())
}

fn cluster_info_ok(info: &str, nodes: usize) -> Result<()> {
    let field = |name: &str| {
        info.lines()
            .find_map(|line| line.trim().strip_prefix(name)?.strip_prefix(':'))
            .map(str::trim)
    };
    let expect = |name: &str, want: &str| -> Result<()> {
        match field(name) {
            Some(value) if value == want => Ok(()),
            other => bail!("{name} is {other:?}, not {want}"),
        }
    };
    expect("cluster_state", "ok")?;
    expect("cluster_slots_assigned", &SLOTS.to_string())?;
    expect("cluster_slots_ok", &SLOTS.to_string())?;
    expect("cluster_known_nodes", &nodes.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_major_version() {
        let text = "Redis server v=7.0.15 sha=00000000:0 malloc=jemalloc-5.3.0 bits=64 build=ae4d";
        assert_eq!(parse_major_version(text).unwrap(), 7);
        assert!(parse_major_version("redis-server 6").is_err());
    }

    #[test]
    fn a_cluster_is_ready_only_with_every_slot_and_node() {
        let ready = "cluster_state:ok\r\ncluster_slots_assigned:16384\r\n\
                     cluster_slots_ok:16384\r\ncluster_known_nodes:3\r\n";
        cluster_info_ok(ready, 3).unwrap();
        assert!(cluster_info_ok(ready, 4).is_err());
        let joining = ready.replace("cluster_state:ok", "cluster_state:fail");
        assert!(cluster_info_ok(&joining, 3).is_err());
        let partial = ready.replace("cluster_slots_ok:16384", "cluster_slots_ok:10923");
        assert!(cluster_info_ok(&partial, 3).is_err());
        assert!(cluster_info_ok("ERR This instance has cluster support disabled", 3).is_err());
    }
}
