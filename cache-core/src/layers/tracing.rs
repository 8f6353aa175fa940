//! The `tracing` adapter: a span per store call.

use std::fmt::Write as _;

use tracing::field::Empty;
use tracing::{Level, Span};

use super::observe::{CacheEvent, Call, CallEvent, Observer};

/// How a [`TracingObserver`] shows the key of a single-key call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum KeyDisplay {
    /// Not at all: keys can be personal data (the default).
    #[default]
    Omit,
    /// As a 64-bit FNV-1a hash in hex: the same key gives the same hash in every process and
    /// release, so calls on one key can be followed without showing it. A hash of a guessable
    /// key can be guessed: this hides keys from casual readers, not from an attacker.
    Hash,
    /// As it is (escaped by the subscriber's formatter).
    Plain,
}

/// An [`Observer`] that runs every store call in a `tracing` span named `cachette`, with the
/// fields `store`, `operation`, `keys` (how many), `key` (see [`KeyDisplay`]), and, as the call
/// ends, `outcome` (`hit`, `miss`, `ok` or `error`), `hits` (for `get_many`) and `error` (the
/// [`Error::kind`](crate::Error::kind)). A failed call also logs a `WARN` event with the error
/// inside its span. Values are never recorded.
///
/// Spans and events have the target `cachette`, and spans are at `DEBUG` by default:
/// `RUST_LOG=cachette=debug` shows them. With
/// `tracing_subscriber::fmt().with_span_events(FmtSpan::CLOSE)` each call prints one line as it
/// ends, with its fields and its time (see `examples/observe.rs`).
#[derive(Debug, Clone, Copy)]
pub struct TracingObserver {
    keys: KeyDisplay,
    level: Level,
}

impl Default for TracingObserver {
    fn default() -> Self {
        Self::new()
    }
}

impl TracingObserver {
    /// Spans at `DEBUG`, without keys.
    pub fn new() -> Self {
        Self {
            keys: KeyDisplay::Omit,
            level: Level::DEBUG,
        }
    }

    /// How keys are shown; default [`KeyDisplay::Omit`].
    #[must_use]
    pub fn keys(mut self, keys: KeyDisplay) -> Self {
        self.keys = keys;
        self
    }

    /// The level of the spans; default `DEBUG`.
    #[must_use]
    pub fn level(mut self, level: Level) -> Self {
        self.level = level;
        self
    }
}

/// FNV-1a, 64 bits: tiny, stable across processes and releases.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

macro_rules! call_span {
    ($level:expr, $call:expr) => {
        tracing::span!(
            target: "cachette",
            $level,
            "cachette",
            store = $call.store,
            operation = $call.operation,
            keys = $call.keys,
            key = Empty,
            outcome = Empty,
            hits = Empty,
            error = Empty,
        )
    };
}

impl Observer for TracingObserver {
    fn span(&self, call: &Call<'_>) -> Span {
        // A span's level is part of its static metadata: one call site per level.
        let span = match self.level {
            Level::ERROR => call_span!(Level::ERROR, call),
            Level::WARN => call_span!(Level::WARN, call),
            Level::INFO => call_span!(Level::INFO, call),
            Level::DEBUG => call_span!(Level::DEBUG, call),
            Level::TRACE => call_span!(Level::TRACE, call),
        };
        if let Some(key) = call.key
            && !span.is_disabled()
        {
            match self.keys {
                KeyDisplay::Omit => {}
                KeyDisplay::Hash => {
                    let mut hex = String::with_capacity(16);
                    let _ = write!(hex, "{:016x}", fnv1a(key.as_bytes()));
                    span.record("key", hex.as_str());
                }
                KeyDisplay::Plain => {
                    span.record("key", key);
                }
            }
        }
        span
    }

    fn on_call(&self, event: &CallEvent<'_>) {
        let span = event.span;
        if span.is_disabled() {
            return;
        }
        if let Some(error) = event.error {
            span.record("outcome", "error");
            span.record("error", error.kind());
            tracing::event!(target: "cachette", parent: span, Level::WARN, %error, "cache call failed");
            return;
        }
        match (event.call.operation, event.hits) {
            ("get" | "get_with_ttl", Some(1)) => span.record("outcome", "hit"),
            ("get" | "get_with_ttl", Some(_)) => span.record("outcome", "miss"),
            (_, Some(hits)) => span.record("outcome", "ok").record("hits", hits),
            (_, None) => span.record("outcome", "ok"),
        };
    }

    fn on_cache_event(&self, event: &CacheEvent<'_>) {
        match event {
            CacheEvent::DecodeFailed { error, as_miss, .. } => tracing::warn!(
                target: "cachette",
                %error,
                as_miss,
                "an entry does not decode"
            ),
            CacheEvent::Loaded {
                elapsed,
                error: Some(error),
                ..
            } => tracing::warn!(target: "cachette", %error, ?elapsed, "a load failed"),
            CacheEvent::Loaded { elapsed, .. } => {
                tracing::debug!(target: "cachette", ?elapsed, "loaded");
            }
            CacheEvent::LoadWaited { waited, .. } => {
                tracing::debug!(target: "cachette", ?waited, "waited for another caller's load");
            }
            CacheEvent::StaleServed { .. } => {
                tracing::debug!(target: "cachette", "served a stale value");
            }
            CacheEvent::Refreshed {
                elapsed,
                error: Some(error),
                ..
            } => tracing::warn!(
                target: "cachette",
                %error,
                ?elapsed,
                "a refresh failed; the stale value stays served"
            ),
            CacheEvent::Refreshed { elapsed, found, .. } => {
                tracing::debug!(target: "cachette", ?elapsed, found, "refreshed");
            }
            CacheEvent::LocalHit { .. }
            | CacheEvent::LocalMiss { .. }
            | CacheEvent::LocalFilled { .. } => {
                tracing::trace!(target: "cachette", ?event, "local tier");
            }
            CacheEvent::LocalInvalidated {
                keys,
                prefixes,
                remote,
            } => tracing::debug!(
                target: "cachette",
                keys,
                prefixes,
                remote,
                "local copies invalidated"
            ),
            CacheEvent::ChannelLost { reason } => tracing::warn!(
                target: "cachette",
                reason,
                "invalidation channel lost; the local tier is empty until it is back"
            ),
            CacheEvent::ChannelRestored => {
                tracing::info!(target: "cachette", "invalidation channel subscribed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fnv1a;

    #[test]
    fn key_hashes_are_fnv1a_64() {
        // The published test vectors of FNV-1a 64.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
