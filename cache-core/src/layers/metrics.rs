//! The `metrics` facade adapter: counters and a latency histogram per store and operation.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use metrics::{Counter, Histogram, counter, describe_counter, describe_histogram, histogram};

use super::observe::{CacheEvent, CallEvent, Observer};

/// An [`Observer`] that records to the [`metrics`](https://docs.rs/metrics) facade, so any of
/// its exporters (Prometheus, StatsD, …) shows them. Install the exporter's recorder before the
/// first cache call: the handles are taken once per store and operation.
///
/// | metric | kind | labels | what |
/// |---|---|---|---|
/// | `cachette_calls_total` | counter | `store`, `operation` | store calls |
/// | `cachette_hits_total` | counter | `store`, `operation` | keys found by `get`, `get_many` and their `_with_ttl` forms |
/// | `cachette_misses_total` | counter | `store`, `operation` | keys not found by those reads |
/// | `cachette_errors_total` | counter | `store`, `operation`, `kind` | failed calls, by [`Error::kind`](crate::Error::kind) |
/// | `cachette_call_duration_seconds` | histogram | `store`, `operation` | time per call |
/// | `cachette_decode_errors_total` | counter | `as_miss` | entries that did not decode |
/// | `cachette_loads_total` | counter | `outcome` (`ok`, `error`) | loader runs |
/// | `cachette_load_duration_seconds` | histogram | | time per load |
/// | `cachette_load_waits_total` | counter | | callers that waited for another's load |
/// | `cachette_stale_served_total` | counter | | stale values served by a loading verb |
/// | `cachette_refreshes_total` | counter | `outcome` (`ok`, `not_found`, `error`) | refreshes of present keys |
/// | `cachette_refresh_duration_seconds` | histogram | | time per refresh |
///
/// Keys never become labels.
#[derive(Debug, Default)]
pub struct MetricsObserver {
    handles: RwLock<HashMap<(&'static str, &'static str), Handles>>,
}

#[derive(Debug)]
struct Handles {
    calls: Counter,
    /// Hits and misses, for the reads that have them.
    found: Option<(Counter, Counter)>,
    duration: Histogram,
}

impl MetricsObserver {
    /// Records to the recorder installed now, and describes the metrics to it.
    pub fn new() -> Self {
        describe_counter!("cachette_calls_total", "Cache store calls.");
        describe_counter!("cachette_hits_total", "Keys found by get and get_many.");
        describe_counter!(
            "cachette_misses_total",
            "Keys not found by get and get_many."
        );
        describe_counter!(
            "cachette_errors_total",
            "Failed cache store calls, by kind."
        );
        describe_histogram!(
            "cachette_call_duration_seconds",
            metrics::Unit::Seconds,
            "Time per cache store call."
        );
        describe_counter!(
            "cachette_decode_errors_total",
            "Entries that did not decode."
        );
        describe_counter!("cachette_loads_total", "Loader runs, by outcome.");
        describe_histogram!(
            "cachette_load_duration_seconds",
            metrics::Unit::Seconds,
            "Time per load."
        );
        describe_counter!(
            "cachette_load_waits_total",
            "Callers that waited for another caller's load."
        );
        describe_counter!(
            "cachette_stale_served_total",
            "Stale values served by a loading verb."
        );
        describe_counter!(
            "cachette_refreshes_total",
            "Refreshes of present keys, by outcome."
        );
        describe_histogram!(
            "cachette_refresh_duration_seconds",
            metrics::Unit::Seconds,
            "Time per refresh."
        );
        Self::default()
    }

    /// Runs `record` with the handles of `store` and `operation`, taken once and kept: the
    /// common path is a read lock and a lookup, with no clone and no allocation.
    fn with_handles(
        &self,
        store: &'static str,
        operation: &'static str,
        record: impl Fn(&Handles),
    ) {
        if let Some(handles) = self
            .handles
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(store, operation))
        {
            return record(handles);
        }
        let handles = Handles {
            calls: counter!("cachette_calls_total", "store" => store, "operation" => operation),
            found: matches!(
                operation,
                "get" | "get_many" | "get_with_ttl" | "get_many_with_ttl"
            )
            .then(|| {
                (
                    counter!("cachette_hits_total", "store" => store, "operation" => operation),
                    counter!("cachette_misses_total", "store" => store, "operation" => operation),
                )
            }),
            duration: histogram!(
                "cachette_call_duration_seconds",
                "store" => store,
                "operation" => operation
            ),
        };
        let mut all = self.handles.write().unwrap_or_else(PoisonError::into_inner);
        record(all.entry((store, operation)).or_insert(handles));
    }
}

impl Observer for MetricsObserver {
    fn on_call(&self, event: &CallEvent<'_>) {
        let call = &event.call;
        self.with_handles(call.store, call.operation, |handles| {
            handles.calls.increment(1);
            handles.duration.record(event.elapsed.as_secs_f64());
            if let (Some(hits), Some((hit, miss))) = (event.hits, &handles.found) {
                let hits = hits as u64;
                hit.increment(hits);
                miss.increment((call.keys as u64).saturating_sub(hits));
            }
        });
        if let Some(error) = event.error {
            counter!(
                "cachette_errors_total",
                "store" => call.store,
                "operation" => call.operation,
                "kind" => error.kind()
            )
            .increment(1);
        }
    }

    fn on_cache_event(&self, event: &CacheEvent<'_>) {
        match event {
            CacheEvent::DecodeFailed { as_miss, .. } => {
                let as_miss = if *as_miss { "true" } else { "false" };
                counter!("cachette_decode_errors_total", "as_miss" => as_miss).increment(1);
            }
            CacheEvent::Loaded { elapsed, error, .. } => {
                let outcome = if error.is_some() { "error" } else { "ok" };
                counter!("cachette_loads_total", "outcome" => outcome).increment(1);
                histogram!("cachette_load_duration_seconds").record(elapsed.as_secs_f64());
            }
            CacheEvent::LoadWaited { .. } => counter!("cachette_load_waits_total").increment(1),
            CacheEvent::StaleServed { .. } => counter!("cachette_stale_served_total").increment(1),
            CacheEvent::Refreshed {
                elapsed,
                error,
                found,
                ..
            } => {
                let outcome = match (error, found) {
                    (Some(_), _) => "error",
                    (None, true) => "ok",
                    (None, false) => "not_found",
                };
                counter!("cachette_refreshes_total", "outcome" => outcome).increment(1);
                histogram!("cachette_refresh_duration_seconds").record(elapsed.as_secs_f64());
            }
            CacheEvent::LocalHit { .. } => {
                counter!("cachette_local_total", "outcome" => "hit").increment(1);
            }
            CacheEvent::LocalMiss { .. } => {
                counter!("cachette_local_total", "outcome" => "miss").increment(1);
            }
            CacheEvent::LocalFilled { .. } => {
                counter!("cachette_local_fills_total").increment(1);
            }
            CacheEvent::LocalInvalidated { remote, .. } => {
                let from = if *remote { "remote" } else { "local" };
                counter!("cachette_local_invalidations_total", "from" => from).increment(1);
            }
            CacheEvent::ChannelLost { .. } => {
                counter!("cachette_channel_losses_total").increment(1);
            }
            CacheEvent::ChannelRestored => {
                counter!("cachette_channel_subscriptions_total").increment(1);
            }
        }
    }
}
