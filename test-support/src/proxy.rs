//! TCP proxies in front of a server: one that counts the connections it accepts and can make one
//! go silent (once the client sends bytes holding a marker, that connection forwards nothing more
//! either way, yet stays open, as a server that hangs or a network that drops packets would), and
//! one that counts round trips.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// A running proxy; it stops accepting when dropped.
pub struct SilencingProxy {
    address: SocketAddr,
    accepted: Arc<AtomicUsize>,
    listener: JoinHandle<()>,
}

impl SilencingProxy {
    /// Proxies to the server of `url`, silencing any connection whose client sends `marker`.
    pub async fn start(url: &str, marker: &'static [u8]) -> Self {
        let parsed = url::Url::parse(url).unwrap_or_else(|error| panic!("bad URL: {error}"));
        let upstream = format!(
            "{}:{}",
            parsed.host_str().unwrap_or("127.0.0.1"),
            parsed.port().unwrap_or(5432)
        );
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|error| panic!("cannot listen for the proxy: {error}"));
        let address = listener
            .local_addr()
            .unwrap_or_else(|error| panic!("cannot read the proxy's port: {error}"));
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&accepted);
        let listener = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    if let Ok(server) = TcpStream::connect(&upstream).await {
                        relay(client, server, marker).await;
                    }
                });
            }
        });
        Self {
            address,
            accepted,
            listener,
        }
    }

    /// `url` pointed at the proxy instead of the server.
    pub fn url(&self, url: &str) -> String {
        let mut parsed = url::Url::parse(url).unwrap_or_else(|error| panic!("bad URL: {error}"));
        parsed
            .set_host(Some(&self.address.ip().to_string()))
            .unwrap_or_else(|error| panic!("cannot set the proxy's host: {error}"));
        parsed
            .set_port(Some(self.address.port()))
            .unwrap_or_else(|()| panic!("cannot set the proxy's port"));
        parsed.to_string()
    }

    /// How many connections clients have opened through the proxy.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for SilencingProxy {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// Forwards both ways until either side closes; after the marker, reads on and forwards nothing.
async fn relay(client: TcpStream, server: TcpStream, marker: &'static [u8]) {
    let silent = Arc::new(AtomicBool::new(false));
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let to_server = {
        let silent = Arc::clone(&silent);
        async move {
            let mut buffer = vec![0; 64 * 1024];
            loop {
                let read = match client_read.read(&mut buffer).await {
                    Ok(0) | Err(_) => return,
                    Ok(read) => read,
                };
                let chunk = &buffer[..read];
                if chunk.windows(marker.len()).any(|window| window == marker) {
                    silent.store(true, Ordering::SeqCst);
                }
                if !silent.load(Ordering::SeqCst) && server_write.write_all(chunk).await.is_err() {
                    return;
                }
            }
        }
    };
    let to_client = async move {
        let mut buffer = vec![0; 64 * 1024];
        loop {
            let read = match server_read.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(read) => read,
            };
            if !silent.load(Ordering::SeqCst)
                && client_write.write_all(&buffer[..read]).await.is_err()
            {
                return;
            }
        }
    };
    // The client closing ends the relay, and dropping both halves closes the server's side.
    tokio::select! {
        () = to_server => {}
        () = to_client => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Counting round trips.

/// A proxy on a free loopback port that forwards to one server and counts turns of the
/// conversation: the client sends (in one or many TCP segments), then the server answers. A
/// pipeline of 1,000 commands is one turn, 1,000 awaited commands are 1,000.
pub struct CountingProxy {
    address: SocketAddr,
    turns: Arc<AtomicU64>,
    accept: tokio::task::JoinHandle<()>,
}

impl CountingProxy {
    /// Listens on 127.0.0.1 and forwards every connection to `upstream`.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
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
                        count_turns(client, server, counter).await;
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
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn count_turns(client: TcpStream, server: TcpStream, turns: Arc<AtomicU64>) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that answers every request line with one reply line.
    async fn line_server() -> SocketAddr {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        let address = listener
            .local_addr()
            .unwrap_or_else(|error| panic!("{error}"));
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
        socket
            .write_all(request.as_bytes())
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        let mut answered = 0;
        let mut buffer = [0_u8; 4096];
        while answered < lines {
            let read = socket
                .read(&mut buffer)
                .await
                .unwrap_or_else(|error| panic!("{error}"));
            answered += buffer[..read].iter().filter(|b| **b == b'\n').count();
        }
    }

    #[tokio::test]
    async fn a_pipeline_is_one_turn_and_awaited_requests_are_one_each() {
        let proxy = CountingProxy::start(line_server().await)
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        let mut socket = TcpStream::connect(proxy.address())
            .await
            .unwrap_or_else(|error| panic!("{error}"));
        ask(&mut socket, "a\nb\nc\n", 3).await;
        assert_eq!(proxy.turns(), 1);
        proxy.reset();
        for _ in 0..5 {
            ask(&mut socket, "a\n", 1).await;
        }
        assert_eq!(proxy.turns(), 5);
    }
}
