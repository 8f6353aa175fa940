//! Free loopback ports, for xtask's servers and the tests' throwaway ones alike.

use std::collections::HashSet;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::{Mutex, PoisonError};

/// Ports handed out by this process, so two servers started back to back never get the same
/// one even if the OS offers it twice.
static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);

/// `count` distinct free loopback ports, chosen by the OS. They stay free only until someone
/// else binds them, so starters retry when a server reports the address in use.
pub fn free_ports(count: usize) -> io::Result<Vec<u16>> {
    free_ports_where(count, |_| true)
}

/// Like [`free_ports`], keeping only ports for which `accept` holds.
pub fn free_ports_where(count: usize, accept: impl Fn(u16) -> bool) -> io::Result<Vec<u16>> {
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(PoisonError::into_inner);
    let handed_out = handed_out.get_or_insert_with(HashSet::new);
    // Holding every listener until all are chosen keeps the ports of one call distinct.
    let mut listeners = Vec::new();
    let mut ports = Vec::new();
    for _ in 0..1000 {
        if ports.len() == count {
            break;
        }
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        let port = listener.local_addr()?.port();
        if !handed_out.contains(&port) && accept(port) {
            handed_out.insert(port);
            ports.push(port);
        }
        listeners.push(listener);
    }
    if ports.len() < count {
        return Err(io::Error::other(format!(
            "found only {} of {count} free loopback ports",
            ports.len()
        )));
    }
    Ok(ports)
}

/// Whether a loopback port can be bound right now.
pub fn port_is_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// One free loopback port; a test that cannot get one fails.
pub fn free_port() -> u16 {
    match free_ports(1).as_deref() {
        Ok([port]) => *port,
        other => panic!("no free loopback port: {other:?}"),
    }
}

/// A free port whose cluster bus port (+10000) exists and is free too.
pub fn free_cluster_port() -> u16 {
    let bus_free = |port: u16| port.checked_add(10_000).is_some_and(port_is_free);
    match free_ports_where(1, bus_free).as_deref() {
        Ok([port]) => *port,
        other => panic!("no free loopback port with a free cluster bus port: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_bindable() {
        let ports = free_ports(6).unwrap_or_else(|error| panic!("{error}"));
        let distinct: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), 6);
        assert!(ports.iter().all(|&port| port_is_free(port)));
        // The same process never hands a port out twice.
        let more = free_ports(6).unwrap_or_else(|error| panic!("{error}"));
        assert!(more.iter().all(|port| !ports.contains(port)));
    }

    #[test]
    fn free_ports_honour_the_filter() {
        // Linux hands out odd ports to bind(0), so filter on something else.
        let ports =
            free_ports_where(3, |port| port % 4 == 3).unwrap_or_else(|error| panic!("{error}"));
        assert!(ports.iter().all(|port| port % 4 == 3));
    }

    #[test]
    fn cluster_ports_have_a_free_bus_port() {
        let port = free_cluster_port();
        assert!(port_is_free(port + 10_000));
    }
}
