//! atproto's DID cache rebuilt on cachette: `DidBaseCache` and `DidInMemoryCache` (`get` →
//! `CachedDidResult`, `set`, `delete`, `clear`, `refresh` with a callback; stale after
//! `stale_ttl`, one hour by default, gone after `max_ttl`, one day) over the embedded SQLite store,
//! and a resolver that asks a small PLC directory it starts itself on loopback.
//!
//! It shows a miss and a hit, a stale document served at once while one background refresh
//! fetches the new one, a "not found" remembered, fail-safe while the directory is down, and
//! expired documents gone. Where atproto's in-memory cache differs, cachette fixes it: its stale
//! reads each start a refresh of their own (here: one per DID however many readers), its
//! expired entries stay in memory until the process ends (here: the store drops them), and a
//! failing directory is asked again on every stale read (here: once per `refresh_retry_after`).
//!
//! atproto's synchronous `DidInMemoryCache` has its twin too, `SyncDidCache`, on
//! `cachette::blocking`: the same cache for code without an async runtime.
//!
//! ```sh
//! cargo run --example atproto_did_cache --features blocking
//! ```
//!
//! The demo shortens `stale_ttl` and `max_ttl` to fractions of a second so that it ends quickly.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use cachette::{Backend, Cache, Loaded, LocalTier};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The parts of a DID document a resolver reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DidDocument {
    id: String,
    also_known_as: Vec<String>,
    service: Vec<Service>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Service {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    service_endpoint: String,
}

fn document(did: &str, handle: &str) -> DidDocument {
    DidDocument {
        id: did.to_owned(),
        also_known_as: vec![format!("at://{handle}")],
        service: vec![Service {
            id: "#atproto_pds".into(),
            kind: "AtprotoPersonalDataServer".into(),
            service_endpoint: "https://pds.example.com".into(),
        }],
    }
}

/// atproto's `CachedDidResult`.
#[derive(Debug)]
struct CachedDidResult {
    did: String,
    document: DidDocument,
    updated_at: Option<SystemTime>,
    stale: bool,
    /// Always false: an expired document is gone from the store, so `get` returns `None`.
    expired: bool,
}

/// atproto's `DidBaseCache` with `DidInMemoryCache`'s limits, over any cachette store.
#[derive(Clone)]
struct DidCache {
    cache: Cache<DidDocument>,
}

impl DidCache {
    const STALE_TTL: Duration = Duration::from_secs(3600);
    const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

    fn new(store: Arc<dyn Backend>, stale_ttl: Duration, max_ttl: Duration) -> Self {
        let cache = Cache::builder(store)
            .prefix("did:")
            .default_ttl(max_ttl)
            .fresh_for(stale_ttl)
            // A DID the directory does not know is asked again after a minute at most.
            .negative_ttl(max_ttl.min(Duration::from_secs(60)))
            .refresh_retry_after(stale_ttl)
            // Hot DIDs answer from process memory, decoded, as atproto's in-memory cache does,
            // and stay right when another process writes the same file.
            .local(LocalTier::new(10_000))
            .build();
        Self { cache }
    }

    async fn set(&self, did: &str, document: &DidDocument) -> cachette::Result<()> {
        self.cache.set(did, document).await
    }

    async fn get(&self, did: &str) -> cachette::Result<Option<CachedDidResult>> {
        let Some(entry) = self.cache.get_entry(did).await? else {
            return Ok(None);
        };
        let stale = !entry.is_fresh();
        Ok(entry.value.map(|document| CachedDidResult {
            did: did.to_owned(),
            document,
            updated_at: entry.written_at,
            stale,
            expired: false,
        }))
    }

    /// Reloads `did` with `get_doc_callback`; a callback that finds nothing keeps the old
    /// document, as atproto's does.
    async fn refresh<F, Fut>(&self, did: &str, get_doc_callback: F) -> cachette::Result<()>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = io::Result<Option<DidDocument>>>,
    {
        self.cache
            .refresh(did, || async move {
                Ok::<_, io::Error>(
                    get_doc_callback()
                        .await?
                        .map_or_else(Loaded::not_found, Loaded::value),
                )
            })
            .await
            .map(drop)
    }

    async fn delete(&self, did: &str) -> cachette::Result<()> {
        self.cache.delete(did).await.map(drop)
    }

    async fn clear(&self) -> cachette::Result<()> {
        self.cache.clear().await.map(drop)
    }
}

/// The DID the demo resolves.
const ALICE: &str = "did:plc:ewvi7nxzyoun6zhxrhs64oiz";

/// atproto's synchronous `DidInMemoryCache`: the same cache through `cachette::blocking`, for
/// code without an async runtime; the callback of `refresh` is a plain closure.
struct SyncDidCache {
    cache: cachette::blocking::Cache<DidDocument>,
}

impl SyncDidCache {
    fn new(store: &cachette::blocking::Store, stale_ttl: Duration, max_ttl: Duration) -> Self {
        let cache = store.cache_with(|builder| {
            builder
                .prefix("did-sync:")
                .default_ttl(max_ttl)
                .fresh_for(stale_ttl)
                .negative_ttl(max_ttl.min(Duration::from_secs(60)))
                .refresh_retry_after(stale_ttl)
        });
        Self { cache }
    }

    fn set(&self, did: &str, document: &DidDocument) -> cachette::Result<()> {
        self.cache.set(did, document)
    }

    fn get(&self, did: &str) -> cachette::Result<Option<CachedDidResult>> {
        let Some(entry) = self.cache.get_entry(did)? else {
            return Ok(None);
        };
        let stale = !entry.is_fresh();
        Ok(entry.value.map(|document| CachedDidResult {
            did: did.to_owned(),
            document,
            updated_at: entry.written_at,
            stale,
            expired: false,
        }))
    }

    fn refresh<F>(&self, did: &str, get_doc_callback: F) -> cachette::Result<()>
    where
        F: FnOnce() -> io::Result<Option<DidDocument>> + Send + 'static,
    {
        self.cache
            .refresh(did, move || {
                Ok::<_, io::Error>(
                    get_doc_callback()?.map_or_else(Loaded::not_found, Loaded::value),
                )
            })
            .map(drop)
    }

    fn delete(&self, did: &str) -> cachette::Result<()> {
        self.cache.delete(did).map(drop)
    }

    fn clear(&self) -> cachette::Result<()> {
        self.cache.clear().map(drop)
    }
}

/// The sync flavour over the same SQLite file, from a thread without a runtime.
fn sync_flavour(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    let store = cachette::blocking::open(url)?;
    let cache = SyncDidCache::new(&store, Duration::from_millis(100), Duration::from_secs(60));
    cache.clear()?;
    let alice = document(ALICE, "alice.example.com");
    cache.set(ALICE, &alice)?;
    let hit = cache.get(ALICE)?.ok_or("alice is cached")?;
    assert!(!hit.stale && hit.document == alice && hit.did == ALICE);
    std::thread::sleep(Duration::from_millis(150));
    assert!(cache.get(ALICE)?.ok_or("alice is cached")?.stale);
    let renamed = document(ALICE, "alice.renamed.example");
    let fetched = renamed.clone();
    cache.refresh(ALICE, move || Ok(Some(fetched)))?;
    let refreshed = cache.get(ALICE)?.ok_or("alice is cached")?;
    assert!(!refreshed.stale && refreshed.document == renamed);
    cache.delete(ALICE)?;
    assert!(cache.get(ALICE)?.is_none());
    println!("sync DidInMemoryCache -> get, stale, refresh, delete: ok");
    Ok(())
}

/// A resolver in front of the cache: fresh documents from the cache, stale ones at once with a
/// background refresh, missing ones fetched from the PLC directory (one fetch per DID however
/// many callers ask).
struct DidResolver {
    cache: DidCache,
    plc: SocketAddr,
}

impl DidResolver {
    async fn resolve(&self, did: &str) -> cachette::Result<Option<DidDocument>> {
        let (plc, owned) = (self.plc, did.to_owned());
        self.cache
            .cache
            .get_or_refresh(did, move || fetch(plc, owned))
            .await
    }
}

/// `GET /{did}` from the directory: 200 is a document, 404 "not found", anything else an error.
async fn fetch(plc: SocketAddr, did: String) -> io::Result<Loaded<DidDocument>> {
    let mut stream = TcpStream::connect(plc).await?;
    let request = format!("GET /{did} HTTP/1.1\r\nHost: plc\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await?;
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::other("a response without a header"))?;
    match head.split(' ').nth(1) {
        Some("200") => Ok(Loaded::value(serde_json::from_str(body)?)),
        Some("404") => Ok(Loaded::not_found()),
        status => Err(io::Error::other(format!(
            "the directory answered {status:?}"
        ))),
    }
}

/// A PLC directory on loopback: documents by DID, a switch to take it down (503), a delay per
/// answer, and a count of the requests it answered.
#[derive(Default)]
struct Directory {
    documents: Mutex<HashMap<String, DidDocument>>,
    down: AtomicBool,
    delay_ms: AtomicU64,
    requests: AtomicUsize,
}

impl Directory {
    async fn start(self: &Arc<Self>) -> io::Result<SocketAddr> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let directory = Arc::clone(self);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let directory = Arc::clone(&directory);
                tokio::spawn(async move { directory.answer(stream).await });
            }
        });
        Ok(address)
    }

    async fn answer(&self, mut stream: TcpStream) -> io::Result<()> {
        let mut request = vec![0; 1024];
        let read = stream.read(&mut request).await?;
        let request = String::from_utf8_lossy(&request[..read]);
        let did = request
            .split(' ')
            .nth(1)
            .unwrap_or_default()
            .trim_start_matches('/');
        self.requests.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(self.delay_ms.load(Ordering::SeqCst))).await;
        let document = self
            .documents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(did)
            .cloned();
        let (status, body) = match document {
            _ if self.down.load(Ordering::SeqCst) => ("503 Service Unavailable", String::new()),
            Some(document) => ("200 OK", serde_json::to_string(&document)?),
            None => ("404 Not Found", String::new()),
        };
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).await
    }

    fn publish(&self, document: DidDocument) {
        self.documents
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(document.id.clone(), document);
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    const STALE_TTL: Duration = Duration::from_millis(300);
    const MAX_TTL: Duration = Duration::from_millis(2500);
    const NOBODY: &str = "did:plc:nobodyhomexxxxxxxxxxxxxxx";

    let directory = Arc::new(Directory::default());
    directory.publish(document(ALICE, "alice.example.com"));
    let plc = directory.start().await?;

    let path = std::env::temp_dir().join("cachette-atproto-did-cache.db");
    let sync_url = format!("sqlite://{}", path.display());
    let store = cachette::open(&sync_url).await?;
    let cache = DidCache::new(store, STALE_TTL, MAX_TTL);
    cache.clear().await?;
    let resolver = DidResolver {
        cache: cache.clone(),
        plc,
    };
    println!(
        "PLC directory on {plc}; stale_ttl {STALE_TTL:?}, max_ttl {MAX_TTL:?} (defaults: {:?}, {:?})",
        DidCache::STALE_TTL,
        DidCache::MAX_TTL
    );

    // A miss fetches; a hit does not.
    let doc = resolver
        .resolve(ALICE)
        .await?
        .expect("alice is in the directory");
    resolver.resolve(ALICE).await?;
    println!(
        "resolve twice         -> {:?}; directory asked {} time(s)",
        doc.also_known_as,
        directory.requests()
    );
    assert_eq!(directory.requests(), 1);
    let cached = cache.get(ALICE).await?.expect("cached");
    println!(
        "get                   -> {} stale={} expired={} updated_at={:?}",
        cached.did, cached.stale, cached.expired, cached.updated_at
    );

    // Alice changes her handle; once stale, 20 readers at once get the cached document at once,
    // and one background refresh fetches the new one (from a directory slow enough that every
    // reader comes while it runs).
    directory.publish(document(ALICE, "alice.bsky.social"));
    directory.delay_ms.store(200, Ordering::SeqCst);
    tokio::time::sleep(STALE_TTL + Duration::from_millis(50)).await;
    assert!(cache.get(ALICE).await?.expect("cached").stale);
    let readers: Vec<_> = (0..20)
        .map(|_| {
            let resolver = DidResolver {
                cache: cache.clone(),
                plc,
            };
            tokio::spawn(async move { resolver.resolve(ALICE).await })
        })
        .collect();
    for reader in readers {
        let served = reader.await??.expect("served");
        assert_eq!(
            served.also_known_as,
            vec!["at://alice.example.com".to_owned()]
        );
    }
    while cache.get(ALICE).await?.expect("cached").stale {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let refreshed = cache.get(ALICE).await?.expect("cached");
    println!(
        "20 stale readers      -> all served the old handle at once; one refresh: {:?}, directory asked {} time(s)",
        refreshed.document.also_known_as,
        directory.requests()
    );
    assert_eq!(directory.requests(), 2);
    directory.delay_ms.store(0, Ordering::SeqCst);

    // A DID the directory does not know is remembered as such.
    assert_eq!(resolver.resolve(NOBODY).await?, None);
    assert_eq!(resolver.resolve(NOBODY).await?, None);
    println!("unknown DID twice     -> None, None; directory asked once for it");
    assert_eq!(directory.requests(), 3);

    // The directory goes down: stale documents keep being served, and the directory is asked
    // once per retry interval, not on every read.
    directory.down.store(true, Ordering::SeqCst);
    tokio::time::sleep(STALE_TTL + Duration::from_millis(50)).await;
    let down_since = Instant::now();
    for _ in 0..10 {
        let served = resolver.resolve(ALICE).await?.expect("the stale document");
        assert_eq!(
            served.also_known_as,
            vec!["at://alice.bsky.social".to_owned()]
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let asked = directory.requests() - 3;
    println!(
        "directory down        -> 10 reads in {:?} served the stale document; directory asked {asked} time(s)",
        down_since.elapsed()
    );
    // Once, and once more per retry interval (the stale_ttl here) a slow machine took.
    let intervals = down_since.elapsed().as_millis() / STALE_TTL.as_millis();
    assert!(
        asked >= 1 && asked as u128 <= 1 + intervals,
        "asked {asked} times"
    );

    // atproto's refresh with a callback that finds nothing keeps the document.
    cache.refresh(ALICE, || async { Ok(None) }).await?;
    assert!(cache.get(ALICE).await?.is_some());
    println!("refresh finding none  -> the cached document stays");

    // Past max_ttl the document is gone, not kept and flagged.
    tokio::time::sleep(MAX_TTL).await;
    assert!(cache.get(ALICE).await?.is_none());
    println!("after max_ttl         -> get(alice) = None: expired documents leave the store");

    // The directory is back: the next resolve fetches.
    directory.down.store(false, Ordering::SeqCst);
    let back = resolver.resolve(ALICE).await?.expect("alice");
    println!("directory back        -> {:?}", back.also_known_as);
    cache.delete(ALICE).await?;
    cache.set(ALICE, &back).await?;
    cache.clear().await?;

    let url = sync_url.clone();
    tokio::task::spawn_blocking(move || sync_flavour(&url).map_err(|error| error.to_string()))
        .await??;
    Ok(())
}
