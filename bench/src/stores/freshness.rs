//! The loading verbs of a cache with freshness against the plain facade over the same store, in
//! one run: `get_or_refresh` (and `get_many_or_refresh`) on fresh hits, and on stale hits that
//! each start a background refresh, against plain `get` (and `get_many`) of a cache without the
//! entry header. Writes are `set` and `set_many` with the header against without it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use cache_core::Cache;

use super::{Facade, StoreBench, open_local, run_prefix};
use crate::BenchResult;
use crate::measure::{Target, Timed};
use crate::workload::{DidDoc, SharedWorkload, TTL};

/// Which hits the loading verbs meet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hits {
    /// Entries fresh for the whole run.
    Fresh,
    /// Entries stale a millisecond after each write, so that every read serves a stale value
    /// and starts a refresh (unless one of the key runs already): the worst case.
    Stale,
}

/// The facade over a `Cache<DidDoc>` with `fresh_for`, read through its loading verbs (the
/// loader answers from the workload, as a source would) and written as the facade writes.
#[derive(Clone)]
struct Refreshing<const LOCAL: bool> {
    facade: Facade<LOCAL>,
    /// Each key's place in the workload, for the batch loader.
    places: Arc<HashMap<String, usize>>,
}

impl<const LOCAL: bool> Target for Refreshing<LOCAL> {
    const IN_PROCESS: bool = LOCAL;

    async fn get(&self, key: usize) -> BenchResult<bool> {
        let workload = Arc::clone(&self.facade.workload);
        let found = self
            .facade
            .cache
            .get_or_refresh(&self.facade.workload.keys[key], move || async move {
                Ok::<_, Infallible>(workload.docs[key].clone())
            })
            .await?;
        Ok(found.is_some())
    }

    async fn set(&self, key: usize) -> BenchResult<()> {
        self.facade.set(key).await
    }

    async fn get_many(&self, keys: &[usize]) -> BenchResult<usize> {
        let workload = &self.facade.workload;
        let names = keys.iter().map(|&key| workload.keys[key].as_str());
        let (workload, places) = (Arc::clone(workload), Arc::clone(&self.places));
        let loader = move |asked: Vec<String>| {
            let (workload, places) = (Arc::clone(&workload), Arc::clone(&places));
            async move {
                let answers: HashMap<String, DidDoc> = asked
                    .into_iter()
                    .filter_map(|key| {
                        let at = *places.get(&key)?;
                        Some((key, workload.docs[at].clone()))
                    })
                    .collect();
                Ok::<_, Infallible>(answers)
            }
        };
        Ok(self
            .facade
            .cache
            .get_many_or_refresh(names, loader)
            .await?
            .len())
    }

    async fn set_many(&self, keys: &[usize]) -> BenchResult<()> {
        self.facade.set_many(keys).await
    }
}

/// Both caches over one `store` (`memory` or `sqlite`), preloaded: the freshness cache as the
/// "facade", the plain one in the raw driver's place.
pub async fn setup(store: &str, hits: Hits, workload: &SharedWorkload) -> BenchResult<StoreBench> {
    let (backend, cleanup) = open_local(store, "cachette-bench-fresh").await?;
    let fresh_for = match hits {
        Hits::Fresh => TTL,
        Hits::Stale => Duration::from_millis(1),
    };
    let prefix = run_prefix();
    let cache = Cache::builder(Arc::clone(&backend))
        .prefix(format!("{prefix}fresh:"))
        .default_ttl(TTL)
        .fresh_for(fresh_for)
        .build();
    let places: Arc<HashMap<String, usize>> = Arc::new(
        workload
            .keys
            .iter()
            .enumerate()
            .map(|(at, key)| (key.clone(), at))
            .collect(),
    );
    let plain_prefix = format!("{prefix}plain:");
    let (facade, plain): (Box<dyn crate::measure::Contender>, _) = if store == "memory" {
        let target = Refreshing::<true> {
            facade: Facade {
                cache,
                workload: Arc::clone(workload),
            },
            places,
        };
        (
            Box::new(Timed::new(target, Arc::clone(workload))),
            Facade::<true>::contender(backend, &plain_prefix, workload),
        )
    } else {
        let target = Refreshing::<false> {
            facade: Facade {
                cache,
                workload: Arc::clone(workload),
            },
            places,
        };
        (
            Box::new(Timed::new(target, Arc::clone(workload))),
            Facade::<false>::contender(backend, &plain_prefix, workload),
        )
    };
    let bench = StoreBench {
        facade,
        raw: plain,
        raw_name: "the plain facade over the same store: `get`, no entry header",
        peer: None,
        cleanup,
        server: None,
        note: None,
    };
    bench.facade.preload().await?;
    bench.raw.preload().await?;
    Ok(bench)
}
