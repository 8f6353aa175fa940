//! Counting server round trips with a loopback TCP proxy.
//!
//! A client is pointed at the proxy instead of the server. Every connection through it is a
//! conversation; a round trip is one turn of it: the client sends (in one or many TCP segments),
//! then the server answers. Counting turns rather than commands or packets is what matters for
//! latency: a pipeline of 1,000 commands is one turn, 1,000 awaited commands are 1,000. Only the
//! contender under test goes through the proxy, so other clients of a shared server do not count.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

use crate::BenchResult;

/// A proxy on a free loopback port that forwards to one server and counts turns.
pub struct CountingProxy {
    address: SocketAddr,
    turns: Arc<AtomicU64>,
    accept: tokio::task::JoinHandle<()>,
}

impl CountingProxy {
    /// Listens on 127.0.0.1 and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> BenchResult<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let address = listener.local_addr()?;
        let turns = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&turns);
        let accept = tokio::spawn(async move {
            // Dropping the set (when the proxy is dropped and this task aborted) aborts every
            // connection's forwarding tasks with it.
            let mut connections = JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let counter = Arc::clone(&counter);
                connections.spawn(async move {
                    if let Ok(server) = TcpStream::connect(upstream).await {
                        forward(client, server, counter).await;
                    }
                });
            }
        });
        Ok(Self {
            address,
            turns,
            accept,
        })
    }

    /// Where clients connect.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Starts counting from zero.
    pub fn reset(&self) {
        self.turns.store(0, Ordering::SeqCst);
    }

    /// Turns since the last [`CountingProxy::reset`], over every connection.
    pub fn turns(&self) -> u64 {
        self.turns.load(Ordering::SeqCst)
    }

    /// Counts the turns of `call`: those before it returned, and those its client made
    /// afterwards in the background (sqlx, for one, pings a connection as it goes back to the
    /// pool).
    pub async fn count<T>(&self, call: impl Future<Output = BenchResult<T>>) -> BenchResult<Trips> {
        // Background traffic of earlier calls must not land in this count.
        tokio::time::sleep(SETTLE).await;
        self.reset();
        call.await?;
        let during = self.turns();
        tokio::time::sleep(SETTLE).await;
        Ok(Trips {
            during,
            after: self.turns() - during,
        })
    }
}

/// `read`, failing unless it found all `expected` keys: a count of round trips means nothing if
/// the keys were not there.
pub async fn expect_all(
    read: impl Future<Output = BenchResult<usize>>,
    expected: usize,
) -> BenchResult<usize> {
    let found = read.await?;
    if found == expected {
        Ok(found)
    } else {
        Err(format!("get_many of {expected} keys found {found}").into())
    }
}

/// How long background traffic of a call gets to show up.
const SETTLE: std::time::Duration = std::time::Duration::from_millis(200);

/// Round trips of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trips {
    /// Before the call returned: what the caller waited for.
    pub during: u64,
    /// After it returned, in the background.
    pub after: u64,
}

impl std::fmt::Display for Trips {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.during)?;
        if self.after > 0 {
            write!(f, " (+{} after the call)", self.after)?;
        }
        Ok(())
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn forward(client: TcpStream, server: TcpStream, turns: Arc<AtomicU64>) {
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    // True while the client is talking: its next bytes continue the same turn.
    let client_talking = Arc::new(AtomicBool::new(false));
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let talking = Arc::clone(&client_talking);
    let upstream = async move {
        let mut buffer = vec![0_u8; 64 * 1024];
        loop {
            let read = match client_read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => read,
            };
            if !talking.swap(true, Ordering::SeqCst) {
                turns.fetch_add(1, Ordering::SeqCst);
            }
            if server_write.write_all(&buffer[..read]).await.is_err() {
                break;
            }
        }
        let _ = server_write.shutdown().await;
    };
    let downstream = async move {
        let mut buffer = vec![0_u8; 64 * 1024];
        loop {
            let read = match server_read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => read,
            };
            client_talking.store(false, Ordering::SeqCst);
            if client_write.write_all(&buffer[..read]).await.is_err() {
                break;
            }
        }
        let _ = client_write.shutdown().await;
    };
    tokio::join!(upstream, downstream);
}

/// The host and port of a server URL, and the same URL pointed at `proxy` instead.
pub async fn through_proxy(url: &str, default_port: u16) -> BenchResult<(SocketAddr, ProxiedUrl)> {
    let parsed = url::Url::parse(url)?;
    let host = parsed.host_str().ok_or("the URL names no host")?;
    let port = parsed.port().unwrap_or(default_port);
    let upstream = tokio::net::lookup_host((host, port))
        .await?
        .find(|address| address.ip().is_loopback())
        .ok_or_else(|| {
            format!("round trips are only counted for servers on loopback, not {host}:{port}")
        })?;
    Ok((upstream, ProxiedUrl(parsed)))
}

/// A server URL to be pointed at a proxy.
pub struct ProxiedUrl(url::Url);

impl ProxiedUrl {
    /// The URL with the proxy's host and port.
    pub fn at(&self, proxy: &CountingProxy) -> BenchResult<String> {
        let mut url = self.0.clone();
        url.set_ip_host(proxy.address().ip())
            .map_err(|()| "the URL cannot take an IP host")?;
        url.set_port(Some(proxy.address().port()))
            .map_err(|()| "the URL cannot take a port")?;
        Ok(url.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that answers every request line with one reply line.
    async fn line_server() -> SocketAddr {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buffer = [0_u8; 4096];
                    loop {
                        match socket.read(&mut buffer).await {
                            Ok(0) | Err(_) => break,
                            Ok(read) => {
                                let lines = buffer[..read].iter().filter(|b| **b == b'\n').count();
                                let reply = "ok\n".repeat(lines);
                                if socket.write_all(reply.as_bytes()).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
            }
        });
        address
    }

    async fn ask(socket: &mut TcpStream, request: &str, lines: usize) {
        socket.write_all(request.as_bytes()).await.unwrap();
        let mut answered = 0;
        let mut buffer = [0_u8; 4096];
        while answered < lines {
            let read = socket.read(&mut buffer).await.unwrap();
            answered += buffer[..read].iter().filter(|b| **b == b'\n').count();
        }
    }

    #[tokio::test]
    async fn a_pipeline_is_one_turn_and_awaited_requests_are_one_each() {
        let proxy = CountingProxy::start(line_server().await).await.unwrap();
        let mut socket = TcpStream::connect(proxy.address()).await.unwrap();
        ask(&mut socket, "a\nb\nc\n", 3).await;
        assert_eq!(proxy.turns(), 1);
        proxy.reset();
        for _ in 0..5 {
            ask(&mut socket, "a\n", 1).await;
        }
        assert_eq!(proxy.turns(), 5);
    }

    #[tokio::test]
    async fn urls_are_pointed_at_the_proxy_and_only_loopback_is_allowed() {
        let (upstream, url) = through_proxy("redis://127.0.0.1:6379/0", 6379)
            .await
            .unwrap();
        assert_eq!(upstream, "127.0.0.1:6379".parse().unwrap());
        let proxy = CountingProxy::start(upstream).await.unwrap();
        let port = proxy.address().port();
        assert_eq!(
            url.at(&proxy).unwrap(),
            format!("redis://127.0.0.1:{port}/0")
        );
        let (upstream, url) = through_proxy("postgres://postgres@127.0.0.1/test?table=t", 5432)
            .await
            .unwrap();
        assert_eq!(upstream.port(), 5432);
        assert_eq!(
            url.at(&proxy).unwrap(),
            format!("postgres://postgres@127.0.0.1:{port}/test?table=t")
        );
        assert!(through_proxy("redis://192.0.2.1:6379", 6379).await.is_err());
    }
}
