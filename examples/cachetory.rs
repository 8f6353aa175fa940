//! cachetory's `Cache` rebuilt on cachette: a serializer and a backend each picked by a URL, a
//! key prefix, `get(key, default)`, `get_many`, `set(key, value, time_to_live, if_not_exists)`,
//! `set_many`, `delete`, `delete_many`, `expire_in`, `clear` and the `cached` decorator with its
//! `purge`, in an async and a sync flavour, over the embedded SQLite store.
//!
//! Where cachetory goes wrong, and what this does instead:
//! - Its `get_many` asks the backend for the caller's keys without the prefix (and answers them
//!   with the prefix added): a prefixed cache never finds its own entries that way, and returns
//!   whatever another program stored under the bare names. Here `get_many` reads the prefixed
//!   entries and answers the caller's keys.
//! - Its `clear` is the backend's `FLUSHDB` (or a whole dict): it wipes every program's keys in
//!   the database. Here `clear` removes this prefix's entries only.
//! - Its `cached` decorator takes a cached `None` for a miss and calls the function again, and
//!   every concurrent caller of a missing key calls it. Here a cached `None` is a hit, and one
//!   call loads for every concurrent caller.
//! - Its `set` is documented to "return if the value has been changed" and returns nothing. Here
//!   it says whether it wrote.
//!
//! ```sh
//! cargo run --example cachetory --features blocking,compress,msgpack
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use cachette::layers::Compress;
use cachette::{Backend, BoxError, Bytes, Cache, CacheBuilder, SetOptions};
use serde::{Serialize, de::DeserializeOwned};

/// The codec of cachetory's `serializers.from_url`, with cachette's formats: `cbor://`,
/// `json://` or `msgpack://`, and `+lz4` (`json+lz4://`) to compress values past 256 bytes.
#[derive(Debug, Clone, Copy)]
enum Codec {
    Cbor,
    Json,
    MessagePack,
}

/// A serializer URL, read.
#[derive(Debug, Clone, Copy)]
struct SerializerUrl {
    codec: Codec,
    compressed: bool,
}

impl SerializerUrl {
    fn parse(url: &str) -> cachette::Result<Self> {
        let scheme = url.split_once("://").map_or(url, |(scheme, _)| scheme);
        let (format, compressed) = match scheme.split_once('+') {
            Some((format, "lz4")) => (format, true),
            Some(_) => return Err(unknown_serializer(url)),
            None => (scheme, false),
        };
        let codec = match format {
            "cbor" => Codec::Cbor,
            "json" => Codec::Json,
            "msgpack" => Codec::MessagePack,
            _ => return Err(unknown_serializer(url)),
        };
        Ok(Self { codec, compressed })
    }

    /// Applies the codec and the compression to a cache under construction.
    fn apply<V>(self, builder: CacheBuilder<V>) -> CacheBuilder<V, Codec>
    where
        V: Serialize + DeserializeOwned + Send + Sync + 'static,
    {
        let builder = if self.compressed {
            builder.layer(Compress::new().threshold(256))
        } else {
            builder
        };
        builder.serializer(self.codec)
    }
}

fn unknown_serializer(url: &str) -> cachette::Error {
    cachette::Error::config(format!(
        "unknown serializer {url:?}: expected cbor://, json:// or msgpack://, optionally +lz4"
    ))
}

impl<V> cachette::Serializer<V> for Codec
where
    V: Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn encode(&self, value: &V) -> Result<Bytes, BoxError> {
        match self {
            Codec::Cbor => cachette::Serializer::encode(&cachette::Cbor, value),
            Codec::Json => cachette::Serializer::encode(&cachette::Json, value),
            Codec::MessagePack => cachette::Serializer::encode(&cachette::MessagePack, value),
        }
    }

    fn decode(&self, bytes: Bytes) -> Result<V, BoxError> {
        match self {
            Codec::Cbor => cachette::Serializer::decode(&cachette::Cbor, bytes),
            Codec::Json => cachette::Serializer::decode(&cachette::Json, bytes),
            Codec::MessagePack => cachette::Serializer::decode(&cachette::MessagePack, bytes),
        }
    }
}

/// The `SetOptions` of cachetory's `set`: `time_to_live=None` is eternal.
fn set_options(time_to_live: Option<Duration>, if_not_exists: bool) -> SetOptions {
    let options = match time_to_live {
        Some(ttl) => SetOptions::new().ttl(ttl),
        None => SetOptions::new().no_ttl(),
    };
    if if_not_exists {
        options.if_not_exists()
    } else {
        options
    }
}

/// cachetory's `caches.async_.Cache`.
#[derive(Clone)]
struct AsyncCache<V> {
    inner: Cache<V>,
}

impl<V> AsyncCache<V>
where
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    /// `Cache(serializer=serializers.from_url(..), backend=backends.from_url(..), prefix=..)`.
    async fn from_urls(serializer: &str, backend: &str, prefix: &str) -> cachette::Result<Self> {
        let store = cachette::open(backend).await?;
        Self::over(store, serializer, prefix)
    }

    fn over(store: Arc<dyn Backend>, serializer: &str, prefix: &str) -> cachette::Result<Self> {
        let serializer = SerializerUrl::parse(serializer)?;
        let builder = Cache::builder(store).prefix(prefix);
        Ok(Self {
            inner: serializer.apply(builder).build(),
        })
    }

    async fn get(&self, key: &str, default: V) -> cachette::Result<V> {
        Ok(self.inner.get(key).await?.unwrap_or(default))
    }

    /// The values found, by the caller's keys; missing keys are left out.
    async fn get_many(&self, keys: &[&str]) -> cachette::Result<HashMap<String, V>> {
        self.inner.get_many(keys).await
    }

    /// Whether the value was written (`if_not_exists` and a present key: not written).
    async fn set(
        &self,
        key: &str,
        value: &V,
        time_to_live: Option<Duration>,
        if_not_exists: bool,
    ) -> cachette::Result<bool> {
        let options = set_options(time_to_live, if_not_exists);
        self.inner.set_with(key, value, options).await
    }

    async fn set_many(&self, items: &[(&str, V)]) -> cachette::Result<()> {
        let items = items.iter().map(|(key, value)| (*key, value));
        let options = set_options(None, false);
        self.inner.set_many_with(items, options).await
    }

    async fn delete(&self, key: &str) -> cachette::Result<bool> {
        self.inner.delete(key).await
    }

    async fn delete_many(&self, keys: &[&str]) -> cachette::Result<u64> {
        self.inner.delete_many(keys).await
    }

    /// A new time to live, or `None` to make the entry eternal.
    async fn expire_in(&self, key: &str, time_to_live: Option<Duration>) -> cachette::Result<bool> {
        self.inner.expire_in(key, time_to_live).await
    }

    /// Removes this cache's entries, and no other program's.
    async fn clear(&self) -> cachette::Result<u64> {
        self.inner.clear().await
    }
}

/// cachetory's `decorators.async_.cached`: memoizes `function` by a key made of its argument.
struct Cached<A, V, F> {
    cache: AsyncCache<V>,
    make_key: fn(&A) -> String,
    function: F,
}

impl<A, V, F, Fut> Cached<A, V, F>
where
    A: Clone + Send + 'static,
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
    F: Fn(A) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<V, BoxError>> + Send + 'static,
{
    async fn call(&self, argument: A) -> cachette::Result<V> {
        let function = self.function.clone();
        let key = (self.make_key)(&argument);
        self.cache
            .inner
            .get_or_insert_with(&key, move || function(argument))
            .await
    }

    /// Deletes the value cached for `argument`; whether one existed.
    async fn purge(&self, argument: &A) -> cachette::Result<bool> {
        self.cache.delete(&(self.make_key)(argument)).await
    }
}

/// cachetory's `caches.sync.Cache`, on `cachette::blocking`.
struct SyncCache<V> {
    inner: cachette::blocking::Cache<V>,
}

/// `__getitem__` and `__delitem__` raise `KeyError` for a missing key.
#[derive(Debug)]
enum ItemError {
    KeyError(String),
    Cache(cachette::Error),
}

impl std::fmt::Display for ItemError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::KeyError(key) => write!(f, "KeyError: {key:?}"),
            Self::Cache(error) => error.fmt(f),
        }
    }
}

impl std::error::Error for ItemError {}

impl From<cachette::Error> for ItemError {
    fn from(error: cachette::Error) -> Self {
        Self::Cache(error)
    }
}

impl<V> SyncCache<V>
where
    V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static,
{
    fn from_urls(serializer: &str, backend: &str, prefix: &str) -> cachette::Result<Self> {
        let serializer = SerializerUrl::parse(serializer)?;
        let store = cachette::blocking::open(backend)?;
        Ok(Self {
            inner: store.cache_with(|builder| serializer.apply(builder.prefix(prefix))),
        })
    }

    fn get(&self, key: &str, default: V) -> cachette::Result<V> {
        Ok(self.inner.get(key)?.unwrap_or(default))
    }

    /// `cache[key]`.
    fn get_item(&self, key: &str) -> Result<V, ItemError> {
        self.inner
            .get(key)?
            .ok_or_else(|| ItemError::KeyError(key.into()))
    }

    /// `cache[key] = value`: eternal.
    fn set_item(&self, key: &str, value: &V) -> cachette::Result<()> {
        self.inner.set_with(key, value, set_options(None, false))?;
        Ok(())
    }

    fn get_many(&self, keys: &[&str]) -> cachette::Result<HashMap<String, V>> {
        self.inner.get_many(keys)
    }

    fn set_many(&self, items: &[(&str, V)]) -> cachette::Result<()> {
        let items: Vec<(&str, &V)> = items.iter().map(|(key, value)| (*key, value)).collect();
        self.inner.set_many_with(items, set_options(None, false))
    }

    fn expire_in(&self, key: &str, time_to_live: Option<Duration>) -> cachette::Result<bool> {
        self.inner.expire_in(key, time_to_live)
    }

    /// `del cache[key]`.
    fn del_item(&self, key: &str) -> Result<(), ItemError> {
        if self.inner.delete(key)? {
            Ok(())
        } else {
            Err(ItemError::KeyError(key.into()))
        }
    }

    fn clear(&self) -> cachette::Result<u64> {
        self.inner.clear()
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join("cachette-cachetory.db");
    let url = format!("sqlite://{}", path.display());
    let store = cachette::open(&url).await?;

    // Another program shares the database: its entries sit under the bare names this cache's
    // callers use, and under a prefix of its own.
    let neighbour: Cache<i64> = Cache::builder(Arc::clone(&store)).build();
    neighbour.set("foo", &-1).await?;
    neighbour.set("other-app:session", &7).await?;

    let cache = AsyncCache::<i64>::over(Arc::clone(&store), "json://", "app:")?;
    cache.clear().await?;
    assert!(cache.set("foo", &42, None, false).await?);
    assert_eq!(cache.get("foo", 0).await?, 42);
    assert_eq!(cache.get("missing", 0).await?, 0);
    assert!(!cache.set("foo", &43, None, true).await?, "if_not_exists");
    cache.set_many(&[("bar", 100_500), ("baz", 3)]).await?;
    println!("set foo, bar, baz; set(foo, if_not_exists) -> not written");

    // get_many reads this cache's entries, by the caller's keys; the neighbour's bare "foo"
    // is never answered.
    let many = cache.get_many(&["foo", "bar", "nope"]).await?;
    println!("get_many(foo, bar, nope) -> {many:?}");
    assert_eq!(
        many,
        HashMap::from([("foo".into(), 42), ("bar".into(), 100_500)])
    );

    // TTLs to the millisecond; None makes an entry eternal again.
    cache
        .set("short", &1, Some(Duration::from_millis(50)), false)
        .await?;
    cache
        .expire_in("bar", Some(Duration::from_millis(50)))
        .await?;
    cache.expire_in("bar", None).await?;
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert_eq!(cache.get("short", 0).await?, 0);
    assert_eq!(cache.get("bar", 0).await?, 100_500);
    println!("set(short, ttl=50ms) gone after 120 ms; expire_in(bar, None) kept bar");

    assert!(cache.delete("baz").await?);
    assert!(!cache.delete("baz").await?);
    assert_eq!(cache.delete_many(&["foo", "nope"]).await?, 1);

    // clear removes this cache's entries; the neighbour's are still there.
    let cleared = cache.clear().await?;
    assert_eq!(neighbour.get("foo").await?, Some(-1));
    assert_eq!(neighbour.get("other-app:session").await?, Some(7));
    println!("clear() removed {cleared} entries of app:, the other program's 2 stay");

    // The decorator: a function whose answer may be None. Its cached None is a hit, and 16
    // concurrent callers of a missing key make one call.
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&calls);
    let lookups = Cached {
        cache: AsyncCache::<Option<String>>::over(Arc::clone(&store), "msgpack+lz4://", "user:")?,
        make_key: |id: &u32| format!("nickname:{id}"),
        function: move |id: u32| {
            let counted = Arc::clone(&counted);
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok::<_, BoxError>((id == 1).then(|| "alice".to_string()))
            }
        },
    };
    lookups.cache.clear().await?;
    let lookups = Arc::new(lookups);
    let callers: Vec<_> = (0..16)
        .map(|_| {
            let lookups = Arc::clone(&lookups);
            tokio::spawn(async move { lookups.call(2).await })
        })
        .collect();
    for caller in callers {
        assert_eq!(caller.await??, None);
    }
    assert_eq!(lookups.call(2).await?, None);
    assert_eq!(lookups.call(1).await?, Some("alice".into()));
    assert_eq!(lookups.call(1).await?, Some("alice".into()));
    println!(
        "cached(nickname): 16 concurrent callers and one more of id 2 (None), id 1 twice -> {} calls",
        calls.load(Ordering::SeqCst)
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert!(lookups.purge(&1).await?);
    lookups.call(1).await?;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        3,
        "purge drops the cached answer"
    );
    lookups.cache.clear().await?;

    // A serializer URL cachette does not know is a typed error, not a guess.
    let unknown = AsyncCache::<i64>::over(Arc::clone(&store), "pickle+zstd://", "app:");
    assert!(matches!(unknown, Err(cachette::Error::Config { .. })));

    // The sync flavour, from a thread without a runtime, on the same file and prefix: it reads
    // what the async side wrote, with a CBOR codec of its own in a prefix of its own.
    cache.set("shared", &5, None, false).await?;
    let sync_url = url.clone();
    tokio::task::spawn_blocking(move || -> Result<(), String> {
        let sync = SyncCache::<i64>::from_urls("json://", &sync_url, "app:").map_err(text)?;
        assert_eq!(sync.get("shared", 0).map_err(text)?, 5);
        sync.set_item("item", &9).map_err(text)?;
        assert_eq!(sync.get_item("item").map_err(text)?, 9);
        assert!(matches!(sync.get_item("nope"), Err(ItemError::KeyError(_))));
        sync.set_many(&[("a", 1), ("b", 2)]).map_err(text)?;
        let many = sync.get_many(&["a", "b", "c"]).map_err(text)?;
        assert_eq!(many.len(), 2);
        sync.expire_in("a", Some(Duration::ZERO)).map_err(text)?;
        assert_eq!(sync.get("a", 0).map_err(text)?, 0);
        sync.del_item("b").map_err(text)?;
        assert!(matches!(sync.del_item("b"), Err(ItemError::KeyError(_))));

        let other =
            SyncCache::<Vec<u8>>::from_urls("cbor://", &sync_url, "blobs:").map_err(text)?;
        other.set_item("blob", &vec![7; 1024]).map_err(text)?;
        assert_eq!(other.get_item("blob").map_err(text)?.len(), 1024);
        other.clear().map_err(text)?;
        sync.clear().map_err(text)?;
        Ok(())
    })
    .await??;
    assert_eq!(
        cache.get("shared", 0).await?,
        0,
        "the sync side cleared app:"
    );
    assert_eq!(neighbour.get("foo").await?, Some(-1));
    println!("sync flavour: get, cache[k], cache[k] = v, get_many, expire_in, del cache[k], clear");

    let from_urls = AsyncCache::<String>::from_urls("cbor://", "memory://", "m:").await?;
    from_urls
        .set("k", &"v".into(), Some(Duration::from_secs(60)), false)
        .await?;
    assert_eq!(from_urls.get("k", String::new()).await?, "v");

    neighbour.delete_many(["foo", "other-app:session"]).await?;
    Ok(())
}

fn text(error: impl std::fmt::Display) -> String {
    error.to_string()
}
