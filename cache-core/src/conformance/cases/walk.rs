//! Walks of the keys under a prefix (`scan`), their count, and the purge of expired entries.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{LONG_TTL, SHORT_TTL, bytes, sleep_past_expiry};
use crate::conformance::Ctx;
use crate::{Backend, Condition, Result, ScanCursor, ScanOptions, Ttl};

/// Every entry a walk of `prefix` returns, page by page, in the order they came (duplicates
/// kept, so that a case can see them). Fails past a million pages: a walk that never ends.
pub async fn walk(
    backend: &dyn Backend,
    prefix: &str,
    page: usize,
    values: bool,
) -> Result<Vec<(String, Option<Bytes>)>> {
    let mut cursor = ScanCursor::start();
    let mut seen = Vec::new();
    for _ in 0..1_000_000 {
        let found = backend
            .scan(prefix, cursor, ScanOptions { page, values })
            .await?;
        seen.extend(found.entries);
        match found.next {
            Some(next) => cursor = next,
            None => return Ok(seen),
        }
    }
    panic!("a walk of {prefix:?} did not end after a million pages");
}

/// How often each key came in a walk.
fn counted(entries: &[(String, Option<Bytes>)]) -> HashMap<&str, usize> {
    let mut counts = HashMap::new();
    for (key, _) in entries {
        *counts.entry(key.as_str()).or_default() += 1;
    }
    counts
}

/// A walk over 25,000 live keys, with expired keys among them and unrelated keys of sibling
/// prefixes around, returns each live key exactly once and nothing else.
pub async fn scan_walks_25000_live_keys_once_among_neighbours(ctx: Ctx) -> Result<()> {
    let inside = ctx.key("in:");
    let live: Vec<String> = (0..25_000).map(|i| format!("{inside}{i:05}")).collect();
    ctx.backend()
        .set_many(
            live.iter().map(|key| (key.clone(), bytes("v"))).collect(),
            Some(LONG_TTL),
        )
        .await?;
    let neighbours: Vec<(String, Bytes)> = ["in", "in;", "in:", "iN:", "in\u{0}", "i"]
        .iter()
        .enumerate()
        .flat_map(|(n, sibling)| {
            (0..300).map(move |i| (format!("{sibling}{i}-{n}"), bytes("neighbour")))
        })
        .filter(|(name, _)| !name.starts_with("in:"))
        .map(|(name, value)| (ctx.key(&name), value))
        .collect();
    ctx.backend().set_many(neighbours, None).await?;
    let expired: Vec<(String, Bytes)> = (0..500)
        .map(|i| (format!("{inside}x{i}"), bytes("gone")))
        .collect();
    ctx.backend().set_many(expired, Some(SHORT_TTL)).await?;
    sleep_past_expiry(Instant::now(), SHORT_TTL).await;

    let seen = walk(&**ctx.backend(), &inside, 1_000, false).await?;
    let counts = counted(&seen);
    let repeated = counts.values().filter(|count| **count > 1).count();
    assert_eq!(repeated, 0, "{repeated} keys came more than once");
    let strangers: Vec<&&str> = counts
        .keys()
        .filter(|key| !live.iter().any(|live| live == **key))
        .take(5)
        .collect();
    assert!(
        strangers.is_empty(),
        "the walk returned keys it should not: {strangers:?}"
    );
    assert_eq!(counts.len(), live.len(), "the walk missed live keys");
    assert!(
        seen.iter().all(|(_, value)| value.is_none()),
        "values came unasked"
    );
    Ok(())
}

/// A walk with values returns each key with its own value, empty and large values included,
/// whatever the page size.
pub async fn scan_with_values_returns_each_value(ctx: Ctx) -> Result<()> {
    let mut written: HashMap<String, Bytes> = (0..1_500)
        .map(|i| (ctx.key(&format!("k{i}")), Bytes::from(format!("value {i}"))))
        .collect();
    written.insert(ctx.key("empty"), Bytes::new());
    written.insert(ctx.key("large"), super::patterned(300_000, 251));
    ctx.backend()
        .set_many(written.clone().into_iter().collect(), None)
        .await?;
    for page in [1, 7, 1_000, 5_000] {
        let seen = walk(&**ctx.peer(), ctx.prefix(), page, true).await?;
        assert_eq!(seen.len(), written.len(), "page size {page}");
        for (key, value) in seen {
            assert_eq!(value.as_ref(), written.get(&key), "page size {page}: {key}");
        }
    }
    Ok(())
}

/// Keys written and removed during a walk do not disturb it: each key present for the whole
/// walk comes exactly once, and nothing outside the prefix comes.
pub async fn scan_during_writes_returns_every_steady_key_once(ctx: Ctx) -> Result<()> {
    // The churned keys sort before the steady ones, so a walk that counts by offset loses
    // steady keys when churned ones go, and meets some twice when they come back.
    let steady: HashSet<String> = (0..3_000).map(|i| ctx.key(&format!("s{i:04}"))).collect();
    let churned: Vec<String> = (0..3_000).map(|i| ctx.key(&format!("a{i:04}"))).collect();
    let write = |keys: &[String]| -> Vec<(String, Bytes)> {
        keys.iter().map(|key| (key.clone(), bytes("v"))).collect()
    };
    let steady_list: Vec<String> = steady.iter().cloned().collect();
    ctx.backend().set_many(write(&steady_list), None).await?;
    ctx.backend().set_many(write(&churned), None).await?;
    let chunks: Vec<&[String]> = churned.chunks(100).collect();
    let mut cursor = ScanCursor::start();
    let mut seen = Vec::new();
    let options = ScanOptions {
        page: 50,
        values: false,
    };
    for page in 0.. {
        assert!(page < 1_000_000, "the walk did not end");
        let found = ctx.backend().scan(ctx.prefix(), cursor, options).await?;
        seen.extend(found.entries);
        let Some(next) = found.next else { break };
        cursor = next;
        // Between pages, another handle removes a hundred churned keys and brings back the
        // hundred it removed before.
        ctx.peer().delete_many(chunks[page % chunks.len()]).await?;
        if page > 0 {
            let back = chunks[(page - 1) % chunks.len()];
            ctx.peer().set_many(write(back), None).await?;
        }
    }
    let counts = counted(&seen);
    let repeated: Vec<_> = counts
        .iter()
        .filter(|(_, count)| **count > 1)
        .take(5)
        .collect();
    assert!(
        repeated.is_empty(),
        "keys came more than once: {repeated:?}"
    );
    let missed = steady
        .iter()
        .filter(|key| !counts.contains_key(key.as_str()))
        .count();
    assert_eq!(missed, 0, "{missed} steady keys were missed");
    assert!(counts.keys().all(|key| key.starts_with(ctx.prefix())));
    Ok(())
}

/// A walk of a prefix full of glob and SQL pattern characters returns exactly its keys.
pub async fn scan_of_a_prefix_with_pattern_characters_is_exact(ctx: Ctx) -> Result<()> {
    let prefix = ctx.key(r"a%_*?[]\");
    let inside: Vec<String> = ["x", "", "%", "ÿ", "\u{10ffff}"]
        .iter()
        .map(|tail| format!("{prefix}{tail}"))
        .collect();
    let outside: Vec<String> = [
        r"ab%_*?[]\",
        r"a%x*?[]\",
        r"a%_xy[]\",
        r"a%_*?[]",
        r"A%_*?[]\",
    ]
    .iter()
    .map(|name| ctx.key(name))
    .collect();
    let entries = inside
        .iter()
        .chain(&outside)
        .map(|key| (key.clone(), bytes("v")))
        .collect();
    ctx.backend().set_many(entries, None).await?;
    let seen = walk(&**ctx.backend(), &prefix, 2, false).await?;
    let mut keys: Vec<String> = seen.into_iter().map(|(key, _)| key).collect();
    keys.sort();
    let mut expected = inside.clone();
    expected.sort();
    assert_eq!(keys, expected);
    Ok(())
}

/// `count_prefix` counts the live keys under the prefix: not expired ones, not neighbours.
pub async fn count_prefix_counts_live_keys_only(ctx: Ctx) -> Result<()> {
    let inside = ctx.key("in:");
    assert_eq!(ctx.backend().count_prefix(&inside).await?, 0);
    let live = (0..300)
        .map(|i| (format!("{inside}{i}"), bytes("v")))
        .collect();
    ctx.backend().set_many(live, Some(LONG_TTL)).await?;
    let expired = (0..50)
        .map(|i| (format!("{inside}x{i}"), bytes("v")))
        .collect();
    ctx.backend().set_many(expired, Some(SHORT_TTL)).await?;
    let written = Instant::now();
    let neighbours = (0..40)
        .map(|i| (ctx.key(&format!("in;{i}")), bytes("v")))
        .collect();
    ctx.backend().set_many(neighbours, None).await?;
    sleep_past_expiry(written, SHORT_TTL).await;
    assert_eq!(ctx.peer().count_prefix(&inside).await?, 300);
    assert_eq!(ctx.backend().count_prefix(ctx.prefix()).await?, 340);
    ctx.backend().delete(&format!("{inside}7")).await?;
    assert_eq!(ctx.backend().count_prefix(&inside).await?, 299);
    Ok(())
}

/// `purge_expired` removes expired entries only: live keys keep their values and TTLs.
pub async fn purge_expired_spares_live_keys(ctx: Ctx) -> Result<()> {
    let expired = (0..100)
        .map(|i| (ctx.key(&format!("x{i}")), bytes("gone")))
        .collect();
    ctx.backend().set_many(expired, Some(SHORT_TTL)).await?;
    let written = Instant::now();
    let timed: Vec<(String, Bytes)> = (0..100)
        .map(|i| (ctx.key(&format!("t{i}")), bytes("timed")))
        .collect();
    ctx.backend()
        .set_many(timed.clone(), Some(LONG_TTL))
        .await?;
    let eternal: Vec<(String, Bytes)> = (0..100)
        .map(|i| (ctx.key(&format!("e{i}")), bytes("eternal")))
        .collect();
    ctx.backend().set_many(eternal.clone(), None).await?;
    sleep_past_expiry(written, SHORT_TTL).await;
    ctx.backend().purge_expired().await?;
    assert_eq!(ctx.backend().count_prefix(ctx.prefix()).await?, 200);
    for (key, value) in &timed {
        assert_eq!(ctx.peer().get(key).await?.as_ref(), Some(value));
        assert!(
            matches!(ctx.peer().ttl(key).await?, Some(Ttl::Remaining(left)) if left > Duration::from_secs(60))
        );
    }
    for (key, value) in &eternal {
        assert_eq!(ctx.peer().get(key).await?.as_ref(), Some(value));
        assert_eq!(ctx.peer().ttl(key).await?, Some(Ttl::Eternal));
    }
    assert!(
        ctx.backend()
            .set(&ctx.key("x0"), bytes("again"), None, Condition::IfNotExists)
            .await?
    );
    Ok(())
}
