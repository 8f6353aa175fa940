//! Free loopback ports.

use std::net::TcpListener;

/// A free port whose cluster bus port (+10000) exists and is free too.
pub fn free_cluster_port() -> u16 {
    for _ in 0..1_000 {
        let port = free_port();
        if port <= 55_535 && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port with a free cluster bus port")
}

/// A loopback port nothing listens on now (another process may take it before you bind it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free loopback port")
}
