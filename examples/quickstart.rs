//! A typed cache of DID documents on an embedded SQLite file, with no server: set, get,
//! get_many, TTL expiry, a single-flight load, a prefix-only clear, and, on a second run, what
//! the first run stored.
//!
//! ```sh
//! cargo run --example quickstart   # run it twice
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cachette::{Cache, SetOptions, Ttl};
use serde::{Deserialize, Serialize};

/// A small DID document: what a resolver would cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DidDoc {
    id: String,
    also_known_as: Vec<String>,
    service_endpoint: String,
}

fn did_doc(handle: &str) -> DidDoc {
    DidDoc {
        id: format!("did:plc:{handle}"),
        also_known_as: vec![format!("at://{handle}.example.com")],
        service_endpoint: "https://pds.example.com".into(),
    }
}

#[tokio::main]
async fn main() -> cachette::Result<()> {
    let path = std::env::temp_dir().join("cachette-quickstart.db");
    let url = format!("sqlite://{}", path.display());
    let store = cachette::open(&url).await?;
    println!("opened {url}");

    // Several caches share one store; each lives under its own prefix.
    let runs: Cache<u64> = Cache::builder(Arc::clone(&store))
        .prefix("quickstart:")
        .build();
    let cache: Cache<DidDoc> = Cache::builder(Arc::clone(&store))
        .prefix("did:")
        .default_ttl(Duration::from_secs(3600))
        .build();

    let run = runs.get("runs").await?.unwrap_or(0) + 1;
    runs.set_with("runs", &run, SetOptions::new().no_ttl())
        .await?;
    match cache.get("alice").await? {
        Some(doc) => println!("run #{run}: found {} stored by an earlier run", doc.id),
        None => println!("run #{run}: nothing stored yet; run me again to see it persist"),
    }

    cache.set("alice", &did_doc("alice")).await?;
    let alice = cache.get("alice").await?;
    println!("get(alice)              -> {:?}", alice.map(|doc| doc.id));
    println!(
        "get(nobody)             -> {:?}",
        cache.get("nobody").await?
    );

    cache
        .set_many([("bob", did_doc("bob")), ("carol", did_doc("carol"))])
        .await?;
    let mut found: Vec<String> = cache
        .get_many(["alice", "bob", "carol", "dave"])
        .await?
        .into_keys()
        .collect();
    found.sort();
    println!("get_many(alice, bob, carol, dave) -> found {found:?}");

    let short = SetOptions::new().ttl(Duration::from_millis(200));
    cache.set_with("eve", &did_doc("eve"), short).await?;
    if let Some(Ttl::Remaining(left)) = cache.ttl("eve").await? {
        println!("ttl(eve)                -> {} ms left", left.as_millis());
    }
    tokio::time::sleep(Duration::from_millis(250)).await;
    println!("after 250 ms, get(eve)  -> {:?}", cache.get("eve").await?);

    cache.delete("frank").await?;
    let loads = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..10)
        .map(|_| {
            let (cache, loads) = (cache.clone(), Arc::clone(&loads));
            tokio::spawn(async move {
                cache
                    .get_or_insert_with("frank", || async move {
                        loads.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await; // a slow resolver
                        Ok::<_, std::io::Error>(did_doc("frank"))
                    })
                    .await
            })
        })
        .collect();
    for caller in callers {
        caller.await.expect("the caller task ran")?;
    }
    println!(
        "10 concurrent get_or_insert_with(frank) -> loader ran {} time(s)",
        loads.load(Ordering::SeqCst)
    );

    let scratch: Cache<String> = Cache::builder(Arc::clone(&store))
        .prefix("scratch:")
        .build();
    scratch
        .set_many([("a", "1".to_string()), ("b", "2".to_string())])
        .await?;
    println!(
        "scratch.clear()         -> removed {} keys; the did: cache still has alice: {}",
        scratch.clear().await?,
        cache.contains("alice").await?
    );
    store.close().await
}
