//! aiohttp-client-cache's storage rebuilt on cachette: its `BaseCache` surface (`read`,
//! `write`, `contains`, `delete`, `bulk_delete`, `keys`, `values`, `size`, `pop`, `clear`,
//! `close`) and its `CacheBackend` (responses and redirects, `delete_expired_responses`),
//! async and sync, over the embedded SQLite store, every response signed with a `secret_key`
//! and a `salt` as the original signs them (itsdangerous there, HMAC-SHA256 here): a response
//! another writer of the store forged or changed is refused.
//!
//! aiohttp-client-cache's `pop` is a `read` then a `delete`: two tasks that pop one key at once
//! can both get the response (a one-time token handed out twice). And since its `read` answers
//! `None` for a missing key rather than raising `KeyError`, `pop(key, default)` never returns
//! `default`. Its `delete_expired_responses` reads every response back to check its expiry.
//! Here `pop` is one atomic `take` (of concurrent poppers exactly one gets the response), a
//! missing key gives the default, `keys` and `values` stream in pages, `size` is one count, and
//! expired responses go in one `purge_expired`.
//!
//! ```sh
//! cargo run --example aiohttp_client_cache --features sign,blocking
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cachette::layers::Sign;
use cachette::{Backend, Cache, Condition, Error};
use futures_util::{Stream, TryStreamExt};
use serde::{Deserialize, Serialize};

/// What aiohttp-client-cache stores per request: a `CachedResponse`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct CachedResponse {
    method: String,
    url: String,
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

fn response(url: &str, status: u16, body: &str) -> CachedResponse {
    CachedResponse {
        method: "GET".into(),
        url: url.into(),
        status,
        headers: HashMap::from([("content-type".into(), "application/json".into())]),
        body: body.as_bytes().to_vec(),
    }
}

/// `BaseCache`: one namespace of a storage, by key.
#[derive(Clone)]
struct BaseCache<T> {
    cache: Cache<T>,
}

impl<T> BaseCache<T>
where
    T: Clone + Serialize + for<'de> Deserialize<'de> + Send + Sync + 'static,
{
    /// `cache_name` and `namespace` make the prefix, as the original's table or hash name does;
    /// with a `secret_key`, every item is signed with it and the `salt`.
    fn new(
        store: Arc<dyn Backend>,
        cache_name: &str,
        namespace: &str,
        secret_key: Option<&[u8]>,
        salt: &[u8],
    ) -> Self {
        let mut builder = Cache::builder(store).prefix(format!("{cache_name}:{namespace}:"));
        if let Some(secret_key) = secret_key {
            builder = builder.layer(Sign::new(secret_key).salt(salt));
        }
        Self {
            cache: builder.build(),
        }
    }

    async fn read(&self, key: &str) -> cachette::Result<Option<T>> {
        self.cache.get(key).await
    }

    /// `write(key, item)`, with the expiry aiohttp-client-cache computes per response.
    async fn write(
        &self,
        key: &str,
        item: &T,
        expire_after: Option<Duration>,
    ) -> cachette::Result<()> {
        let options = cachette::SetOptions::new();
        let options = match expire_after {
            Some(ttl) => options.ttl(ttl),
            None => options.no_ttl(),
        };
        self.cache.set_with(key, item, options).await.map(drop)
    }

    async fn contains(&self, key: &str) -> cachette::Result<bool> {
        self.cache.contains(key).await
    }

    async fn delete(&self, key: &str) -> cachette::Result<()> {
        self.cache.delete(key).await.map(drop)
    }

    async fn bulk_delete(&self, keys: &[&str]) -> cachette::Result<u64> {
        self.cache.delete_many(keys).await
    }

    fn keys(&self) -> impl Stream<Item = cachette::Result<String>> + Send + '_ {
        self.cache.keys()
    }

    fn values(&self) -> impl Stream<Item = cachette::Result<T>> + Send + '_ {
        self.cache.entries().map_ok(|(_, value)| value)
    }

    async fn size(&self) -> cachette::Result<u64> {
        self.cache.len().await
    }

    /// Removes the item and returns it, or `default` when there is none: atomically, so of
    /// concurrent poppers exactly one gets it.
    async fn pop(&self, key: &str, default: Option<T>) -> cachette::Result<Option<T>> {
        Ok(self.cache.take(key).await?.or(default))
    }

    async fn clear(&self) -> cachette::Result<u64> {
        self.cache.clear().await
    }
}

/// `CacheBackend`: the responses and the redirects of one cache name.
#[derive(Clone)]
struct CacheBackend {
    responses: BaseCache<CachedResponse>,
    redirects: BaseCache<String>,
    store: Arc<dyn Backend>,
}

/// The original's default salt.
const SALT: &[u8] = b"aiohttp-client-cache";

impl CacheBackend {
    fn new(store: Arc<dyn Backend>, cache_name: &str, secret_key: Option<&[u8]>) -> Self {
        Self {
            responses: BaseCache::new(
                Arc::clone(&store),
                cache_name,
                "responses",
                secret_key,
                SALT,
            ),
            redirects: BaseCache::new(
                Arc::clone(&store),
                cache_name,
                "redirects",
                secret_key,
                SALT,
            ),
            store,
        }
    }

    /// The response cached for `key`, following a redirect alias if there is one.
    async fn get_response(&self, key: &str) -> cachette::Result<Option<CachedResponse>> {
        if let Some(response) = self.responses.read(key).await? {
            return Ok(Some(response));
        }
        match self.redirects.read(key).await? {
            Some(target) => self.responses.read(&target).await,
            None => Ok(None),
        }
    }

    /// Every expired response and redirect, in one store call.
    async fn delete_expired_responses(&self) -> cachette::Result<u64> {
        self.responses.cache.purge_expired().await
    }

    async fn clear(&self) -> cachette::Result<()> {
        self.responses.clear().await?;
        self.redirects.clear().await?;
        Ok(())
    }

    async fn close(&self) -> cachette::Result<()> {
        self.store.close().await
    }
}

/// The same storage for code without an async runtime (a sync requests-style client), through
/// `cachette::blocking`.
struct SyncCacheBackend {
    responses: cachette::blocking::Cache<CachedResponse>,
    redirects: cachette::blocking::Cache<String>,
}

impl SyncCacheBackend {
    fn open(url: &str, cache_name: &str) -> cachette::Result<Self> {
        let store = cachette::blocking::open(url)?;
        let sign = || Sign::new(SECRET_KEY).salt(SALT);
        Ok(Self {
            responses: store.cache_with(|builder| {
                builder
                    .prefix(format!("{cache_name}:responses:"))
                    .layer(sign())
            }),
            redirects: store.cache_with(|builder| {
                builder
                    .prefix(format!("{cache_name}:redirects:"))
                    .layer(sign())
            }),
        })
    }

    fn write(&self, key: &str, item: &CachedResponse) -> cachette::Result<()> {
        self.responses.set(key, item)
    }

    fn read(&self, key: &str) -> cachette::Result<Option<CachedResponse>> {
        if let Some(response) = self.responses.get(key)? {
            return Ok(Some(response));
        }
        match self.redirects.get(key)? {
            Some(target) => self.responses.get(&target),
            None => Ok(None),
        }
    }

    fn pop(&self, key: &str) -> cachette::Result<Option<CachedResponse>> {
        self.responses.take(key)
    }

    fn size(&self) -> cachette::Result<u64> {
        self.responses.len()
    }
}

/// The application's secret (from its configuration in real life).
const SECRET_KEY: &[u8] = b"the application's secret key, 32+ bytes";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join("cachette-aiohttp-client-cache.db");
    let url = format!("sqlite://{}", path.display());
    let store = cachette::open(&url).await?;
    let backend = CacheBackend::new(Arc::clone(&store), "aiohttp-cache", Some(SECRET_KEY));
    backend.clear().await?;
    let responses = &backend.responses;

    // write, read, contains; a redirect alias reads its target.
    let users = response("https://api.example/users", 200, r#"[{"id":1}]"#);
    let health = response("https://api.example/health", 200, "ok");
    let token = response("https://api.example/token", 201, r#"{"token":"once"}"#);
    responses
        .write("users", &users, Some(Duration::from_secs(300)))
        .await?;
    responses
        .write("health", &health, Some(Duration::from_millis(200)))
        .await?;
    responses.write("token", &token, None).await?;
    backend
        .redirects
        .write("users-v1", &"users".to_string(), None)
        .await?;
    assert_eq!(responses.read("users").await?, Some(users.clone()));
    assert_eq!(backend.get_response("users-v1").await?, Some(users.clone()));
    assert!(responses.contains("health").await? && !responses.contains("nope").await?);

    // keys, values and size: streamed in pages, counted in one call.
    let mut keys: Vec<String> = responses.keys().try_collect().await?;
    keys.sort();
    let values: Vec<CachedResponse> = responses.values().try_collect().await?;
    println!(
        "keys {keys:?}, {} values, size {}",
        values.len(),
        responses.size().await?
    );
    assert_eq!(keys, ["health", "token", "users"]);
    assert_eq!(values.len(), 3);
    assert_eq!(responses.size().await?, 3);

    // pop: eight tasks pop the one-time token at once; exactly one gets it.
    let poppers: Vec<_> = (0..8)
        .map(|_| {
            let responses = responses.clone();
            tokio::spawn(async move { responses.pop("token", None).await })
        })
        .collect();
    let mut winners = 0;
    for popper in poppers {
        winners += usize::from(popper.await??.is_some());
    }
    println!("8 concurrent pops of one token -> {winners} got it");
    assert_eq!(winners, 1);
    let fallback = response("https://api.example/token", 404, "");
    assert_eq!(
        responses.pop("token", Some(fallback.clone())).await?,
        Some(fallback)
    );

    // delete_expired_responses: the health check expired, the rest stays.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let purged = backend.delete_expired_responses().await?;
    println!("delete_expired_responses -> {purged} removed");
    assert_eq!(purged, 1);
    assert_eq!(responses.size().await?, 1);

    // Signed responses: another writer of the shared store changes a cached response, or
    // plants one, without the secret; both are refused, naming the key, never served.
    responses.write("account", &users, None).await?;
    let full_key = "aiohttp-cache:responses:account";
    let mut tampered = store
        .get(full_key)
        .await?
        .ok_or("the response is stored")?
        .to_vec();
    let last = tampered.len() - 1;
    tampered[last] ^= 0x20;
    store
        .set(full_key, tampered.into(), None, Condition::Always)
        .await?;
    store
        .set(
            "aiohttp-cache:responses:planted",
            "{}".into(),
            None,
            Condition::Always,
        )
        .await?;
    for key in ["account", "planted"] {
        match responses.read(key).await {
            Err(Error::Decode { key: named, source }) => {
                println!("read({key}) of a tampered entry -> refused: {source}");
                assert_eq!(named, key);
            }
            other => return Err(format!("read({key}) answered {other:?}").into()),
        }
    }
    responses.bulk_delete(&["account", "planted"]).await?;

    // delete, bulk_delete.
    responses.write("a", &health, None).await?;
    responses.write("b", &health, None).await?;
    responses.delete("users").await?;
    assert_eq!(responses.bulk_delete(&["a", "b", "missing"]).await?, 2);
    assert_eq!(responses.size().await?, 0);

    // The sync flavour over the same file.
    let sync = tokio::task::spawn_blocking(move || -> Result<(), String> {
        let sync = SyncCacheBackend::open(&url, "aiohttp-cache").map_err(|e| e.to_string())?;
        sync.write("sync", &users).map_err(|e| e.to_string())?;
        assert_eq!(
            sync.read("sync").map_err(|e| e.to_string())?,
            Some(users.clone())
        );
        assert_eq!(sync.size().map_err(|e| e.to_string())?, 1);
        assert!(sync.pop("sync").map_err(|e| e.to_string())?.is_some());
        assert_eq!(sync.pop("sync").map_err(|e| e.to_string())?, None);
        Ok(())
    })
    .await?;
    sync?;
    println!("sync flavour: write, read, size, pop -> ok");

    backend.clear().await?;
    backend.close().await?;
    Ok(())
}
