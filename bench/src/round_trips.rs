//! Counting server round trips with a loopback TCP proxy.
//!
//! A client is pointed at the proxy instead of the server. Every connection through it is a
//! conversation; a round trip is one turn of it: the client sends (in one or many TCP segments),
//! then the server answers. Counting turns rather than commands or packets is what matters for
//! latency: a pipeline of 1,000 commands is one turn, 1,000 awaited commands are 1,000. Only the
//! contender under test goes through the proxy, so other clients of a shared server do not count.

use std::future::Future;
use std::net::SocketAddr;

use crate::BenchResult;

pub use cachette_test_support::proxy::CountingProxy;

/// Counting the round trips of one call through a [`CountingProxy`].
pub trait CountTrips {
    /// Counts the turns of `call`: those before it returned, and those its client made
    /// afterwards in the background (sqlx, for one, pings a connection as it goes back to the
    /// pool).
    async fn count<T>(&self, call: impl Future<Output = BenchResult<T>>) -> BenchResult<Trips>;
}

impl CountTrips for CountingProxy {
    async fn count<T>(&self, call: impl Future<Output = BenchResult<T>>) -> BenchResult<Trips> {
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
