//! What the memory store promises beyond the conformance suite: bounds, reclamation, key limits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cache_core::{Backend, Bytes, Cache, Condition, Error};
use cache_memory::MemoryBackend;

#[tokio::test]
async fn expired_entries_are_reclaimed_not_just_hidden() {
    let store = MemoryBackend::new();
    let entries = (0..1_000)
        .map(|i| (format!("k{i}"), Bytes::from(vec![7; 100])))
        .collect();
    store
        .set_many(entries, Some(Duration::from_millis(50)))
        .await
        .unwrap();
    store
        .set("eternal", Bytes::from_static(b"v"), None, Condition::Always)
        .await
        .unwrap();
    store.run_pending_tasks();
    assert_eq!(store.entry_count(), 1_001);
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.entry_count() > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        store.run_pending_tasks();
    }
    assert_eq!(
        store.entry_count(),
        1,
        "expired entries still occupy the store"
    );
    assert!(store.weighted_size() < 1_000, "{}", store.weighted_size());
}

#[tokio::test]
async fn an_entry_bound_holds_the_store_to_that_many_entries() {
    let store = MemoryBackend::builder().max_entries(100).build();
    for i in 0..1_000 {
        store
            .set(
                &format!("k{i}"),
                Bytes::from_static(b"v"),
                None,
                Condition::Always,
            )
            .await
            .unwrap();
    }
    store.run_pending_tasks();
    assert!(store.entry_count() <= 100, "{}", store.entry_count());
}

#[tokio::test]
async fn a_byte_bound_counts_keys_and_values() {
    let store = MemoryBackend::builder().max_bytes(1024 * 1024).build();
    for i in 0..100 {
        store
            .set(
                &format!("k{i}"),
                Bytes::from(vec![0; 64 * 1024]),
                None,
                Condition::Always,
            )
            .await
            .unwrap();
    }
    store.run_pending_tasks();
    assert!(
        store.weighted_size() <= 1024 * 1024,
        "{}",
        store.weighted_size()
    );
    assert!(store.entry_count() <= 16, "{}", store.entry_count());
}

#[tokio::test]
async fn keys_over_the_limit_are_invalid_and_batches_stay_whole() {
    let store = MemoryBackend::builder().max_key_bytes(16).build();
    let long = "k".repeat(17);
    match store
        .set(&long, Bytes::from_static(b"v"), None, Condition::Always)
        .await
    {
        Err(Error::InvalidKey { key, .. }) => assert_eq!(key, long),
        other => panic!("expected InvalidKey, got {other:?}"),
    }
    let batch = vec![
        ("short".to_string(), Bytes::from_static(b"1")),
        (long.clone(), Bytes::from_static(b"2")),
    ];
    assert!(matches!(
        store.set_many(batch, None).await,
        Err(Error::InvalidKey { .. })
    ));
    assert_eq!(
        store.get("short").await.unwrap(),
        None,
        "half a batch was written"
    );
}

#[tokio::test]
async fn cached_values_cannot_be_changed_through_the_cache() {
    let cache: Cache<Vec<u8>> = Cache::builder(Arc::new(MemoryBackend::new()))
        .serializer(cache_core::Raw)
        .build();
    let mut value = vec![1, 2, 3];
    cache.set("k", &value).await.unwrap();
    value.push(4);
    let mut read = cache.get("k").await.unwrap().unwrap();
    read.push(5);
    assert_eq!(cache.get("k").await.unwrap(), Some(vec![1, 2, 3]));
}

#[tokio::test]
async fn calls_after_close_fail_with_a_backend_error() {
    let store = MemoryBackend::new();
    store
        .set("k", Bytes::from_static(b"v"), None, Condition::Always)
        .await
        .unwrap();
    store.close().await.unwrap();
    let err = store.get("k").await.unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err}");
    assert!(!err.is_transient(), "a closed store stays closed: {err}");
    assert!(err.to_string().contains("closed"), "{err}");
    let batch = store.set_many(vec![("a".into(), Bytes::new())], None).await;
    assert!(matches!(batch, Err(Error::Backend { .. })), "{batch:?}");
    // Closing twice is harmless.
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_value_heavier_than_the_byte_bound_is_refused_whole() {
    let store = MemoryBackend::builder().max_bytes(1024 * 1024).build();
    store
        .set("k", Bytes::from_static(b"old"), None, Condition::Always)
        .await
        .unwrap();
    let big = Bytes::from(vec![7; 2 * 1024 * 1024]);
    match store.set("k", big.clone(), None, Condition::Always).await {
        Err(Error::ValueTooLarge { key, size, limit }) => {
            assert_eq!((key.as_str(), size), ("k", big.len()));
            assert!(limit < 1024 * 1024, "{limit}");
        }
        other => panic!("expected ValueTooLarge, got {other:?}"),
    }
    let batch = store
        .set_many(vec![("a".into(), Bytes::new()), ("b".into(), big)], None)
        .await;
    assert!(
        matches!(batch, Err(Error::ValueTooLarge { .. })),
        "{batch:?}"
    );
    assert_eq!(
        store.get("k").await.unwrap(),
        Some(Bytes::from_static(b"old"))
    );
    assert_eq!(
        store.get("a").await.unwrap(),
        None,
        "a refused batch wrote a key"
    );
}

/// How many value bytes `store` serves for `keys`.
async fn served_bytes(store: &MemoryBackend, keys: &[String]) -> u64 {
    store
        .get_many(keys)
        .await
        .unwrap_or_else(|error| panic!("get_many failed: {error}"))
        .iter()
        .flatten()
        .map(|value| value.len() as u64)
        .sum()
}

/// Bursts of large values into a byte bound: moka evicts in the background, so without help a
/// burst would stay admitted above the bound until its maintenance ran. After every write the
/// store holds at most its bound.
#[tokio::test]
async fn bursts_of_large_values_stay_within_the_byte_bound() {
    const BOUND: u64 = 10 * 1024 * 1024;
    let store = MemoryBackend::builder().max_bytes(BOUND).build();
    let value = Bytes::from(vec![1; 3 * 1024 * 1024]);
    for i in 0..50 {
        store
            .set(&format!("k{i}"), value.clone(), None, Condition::Always)
            .await
            .unwrap();
        let keys: Vec<String> = (0..=i).map(|n| format!("k{n}")).collect();
        let held = served_bytes(&store, &keys).await;
        assert!(
            held <= BOUND,
            "after {} writes the store serves {held} bytes",
            i + 1
        );
    }
    let batch: Vec<(String, Bytes)> = (0..20).map(|i| (format!("b{i}"), value.clone())).collect();
    store.set_many(batch, None).await.unwrap();
    let keys: Vec<String> = (0..20).map(|n| format!("b{n}")).collect();
    let held = served_bytes(&store, &keys).await;
    assert!(held <= BOUND, "after a batch the store serves {held} bytes");
}
