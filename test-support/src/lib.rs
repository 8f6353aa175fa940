//! What the store and layer tests share: server URLs from the environment, throwaway Redis,
//! Redis Cluster and PostgreSQL servers on free loopback ports, TCP proxies, and the layer stacks
//! the conformance suite runs through. A private crate (sqlx's `sqlx-test` is the model): tests only, never published.

pub mod layers;
pub mod local;
pub mod ports;
pub mod postgres;
pub mod proxy;
pub mod redis;
pub mod urls;

/// The URL in `var`, or a failure that says how to get one: these tests never skip.
pub fn server_url(var: &str, example: &str) -> String {
    match std::env::var(var) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "{var} is not set. Run `cargo xtask test` (it starts the servers and sets it), or \
             point it at a server yourself, e.g. {var}={example}"
        ),
    }
}
