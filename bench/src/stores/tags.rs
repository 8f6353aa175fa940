//! Tagged reads and writes against untagged ones over the same store, in one run: the facade of
//! a cache built with `.tagged()` whose entries carry one or five tags (a read is the entry and
//! one batched read of its tags' versions; a write reads the versions first), against the plain
//! facade. Beside the table: what `invalidate_tags` of a tag with 10,000 entries costs, next to
//! a `delete_many` of the same keys.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::{Backend, Cache, SetOptions};

use super::{Cleanup, Facade, StoreBench, run_prefix};
use crate::BenchResult;
use crate::measure::{Contender, Target, Timed};
use crate::workload::{DidDoc, KEYS, SharedWorkload, TTL};

/// Invalidations timed for the note; the median is reported.
const INVALIDATIONS: usize = 7;

/// `Cache<DidDoc>` built with `.tagged()`, every write under the same `tags`.
#[derive(Clone)]
struct Tagged<const LOCAL: bool> {
    cache: Cache<DidDoc>,
    tags: Arc<Vec<String>>,
    workload: SharedWorkload,
}

impl<const LOCAL: bool> Tagged<LOCAL> {
    fn options(&self) -> SetOptions {
        SetOptions::new().tags(self.tags.iter().cloned())
    }
}

impl<const LOCAL: bool> Target for Tagged<LOCAL> {
    const IN_PROCESS: bool = LOCAL;

    async fn get(&self, key: usize) -> BenchResult<bool> {
        Ok(self.cache.get(&self.workload.keys[key]).await?.is_some())
    }

    async fn set(&self, key: usize) -> BenchResult<()> {
        let workload = &self.workload;
        self.cache
            .set_with(&workload.keys[key], &workload.docs[key], self.options())
            .await?;
        Ok(())
    }

    async fn get_many(&self, keys: &[usize]) -> BenchResult<usize> {
        let names = keys.iter().map(|&key| self.workload.keys[key].as_str());
        Ok(self.cache.get_many(names).await?.len())
    }

    async fn set_many(&self, keys: &[usize]) -> BenchResult<()> {
        let workload = &self.workload;
        let items = keys
            .iter()
            .map(|&key| (workload.keys[key].as_str(), &workload.docs[key]));
        Ok(self.cache.set_many_with(items, self.options()).await?)
    }
}

/// The tagged and the plain facade over `backend`, preloaded, with the invalidation note.
pub async fn setup(
    backend: Arc<dyn Backend>,
    local: bool,
    tag_count: usize,
    cleanup: Cleanup,
    workload: &SharedWorkload,
) -> BenchResult<StoreBench> {
    let prefix = run_prefix();
    let cache = Cache::builder(Arc::clone(&backend))
        .prefix(format!("{prefix}tagged:"))
        .default_ttl(TTL)
        .tagged()
        .build();
    let tags = Arc::new((0..tag_count).map(|n| format!("tag{n}")).collect());
    let plain_prefix = format!("{prefix}plain:");
    let (facade, raw): (Box<dyn Contender>, Box<dyn Contender>) = if local {
        let target = Tagged::<true> {
            cache,
            tags,
            workload: Arc::clone(workload),
        };
        (
            Box::new(Timed::new(target, Arc::clone(workload))),
            Facade::<true>::contender(Arc::clone(&backend), &plain_prefix, workload),
        )
    } else {
        let target = Tagged::<false> {
            cache,
            tags,
            workload: Arc::clone(workload),
        };
        (
            Box::new(Timed::new(target, Arc::clone(workload))),
            Facade::<false>::contender(Arc::clone(&backend), &plain_prefix, workload),
        )
    };
    let note = invalidation_note(&backend, &format!("{prefix}invalidate:"), workload).await?;
    let bench = StoreBench {
        facade,
        raw,
        raw_name: "the plain facade over the same store, no tags",
        peer: None,
        cleanup,
        server: None,
        note: Some(note),
    };
    bench.facade.preload().await?;
    bench.raw.preload().await?;
    Ok(bench)
}

/// Times `invalidate_tags` of one tag carried by 10,000 entries, and a `delete_many` of the same
/// keys, each the median of a few runs.
async fn invalidation_note(
    backend: &Arc<dyn Backend>,
    prefix: &str,
    workload: &SharedWorkload,
) -> BenchResult<String> {
    let cache: Cache<DidDoc> = Cache::builder(Arc::clone(backend))
        .prefix(prefix)
        .default_ttl(TTL)
        .tagged()
        .build();
    let write = || {
        let items = workload
            .keys
            .iter()
            .zip(workload.docs.iter())
            .map(|(key, doc)| (key.as_str(), doc));
        cache.set_many_with(items, SetOptions::new().tags(["bulk"]))
    };
    let mut invalidations = Vec::with_capacity(INVALIDATIONS);
    let mut deletions = Vec::with_capacity(INVALIDATIONS);
    for _ in 0..INVALIDATIONS {
        write().await?;
        let began = Instant::now();
        cache.invalidate_tags(["bulk"]).await?;
        invalidations.push(began.elapsed());
        assert_none_left(&cache, workload).await?;
        write().await?;
        let began = Instant::now();
        cache.delete_many(&workload.keys).await?;
        deletions.push(began.elapsed());
    }
    cache.clear().await?;
    Ok(format!(
        "invalidate_tags of a tag on {KEYS} entries: {} (one store call); delete_many of the \
         same keys: {}",
        median(&mut invalidations),
        median(&mut deletions)
    ))
}

async fn assert_none_left(cache: &Cache<DidDoc>, workload: &SharedWorkload) -> BenchResult<()> {
    let left = cache.get_many(workload.keys.iter().take(100)).await?.len();
    if left > 0 {
        return Err(format!("{left} entries survived invalidate_tags").into());
    }
    Ok(())
}

fn median(times: &mut [Duration]) -> String {
    times.sort_unstable();
    let middle = times[times.len() / 2];
    if middle < Duration::from_millis(1) {
        format!("{} µs", middle.as_micros())
    } else {
        format!("{:.1} ms", middle.as_secs_f64() * 1e3)
    }
}
