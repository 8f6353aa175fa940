//! A TCP proxy in front of the test server that counts the connections it accepts and can make
//! one go silent: once the client sends bytes holding a marker, that connection forwards nothing
//! more either way, yet stays open, as a server that hangs or a network that drops packets would.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

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
