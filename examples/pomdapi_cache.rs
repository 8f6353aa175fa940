//! pomdapi's request cache rebuilt on cachette: responses cached by endpoint and request,
//! tagged, and dropped by `invalidate_tags` (`get_by_request`, `get_by_tags`, `set` with tags,
//! `invalidate_tags`, async and sync), over the embedded SQLite store, in front of a small issue
//! tracker API.
//!
//! pomdapi keeps one key per tag that each tagged write overwrites with its request key, and its
//! `invalidate_tags` deletes only what the first tag's key names: so only the last response of
//! a tag is ever invalidated, and invalidating by any other tag of the list drops nothing but the
//! tag keys. (Its `get_by_tags` also returns that request key instead of the response.) Here
//! every response of a tag is gone after one invalidation, whichever of its tags is named, in
//! one store call however many responses carry it.
//!
//! ```sh
//! cargo run --example pomdapi_cache --features blocking
//! ```

use std::collections::HashMap;
use std::fmt::Display;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cachette::{Backend, Cache, SetOptions};
use serde::{Deserialize, Serialize};

/// pomdapi's `Cache`: responses by `"{endpoint}/{request}"`, tags shared by every endpoint (a
/// mutation endpoint invalidates the tags of query endpoints).
#[derive(Clone)]
struct RequestCache<R> {
    responses: Cache<R>,
    /// The request key of the latest response of an endpoint under a tag, for `get_by_tags`;
    /// written under the same tag, so that invalidating the tag drops it too.
    latest: Cache<String>,
}

impl<R> RequestCache<R>
where
    R: Clone + Serialize + for<'de> Deserialize<'de> + Send + Sync + 'static,
{
    fn new(store: Arc<dyn Backend>) -> Self {
        // Both caches share one prefix, and so one set of tag versions.
        let responses = Cache::builder(Arc::clone(&store))
            .prefix("pomdapi:")
            .tagged()
            .build();
        let latest = Cache::builder(store).prefix("pomdapi:").tagged().build();
        Self { responses, latest }
    }

    fn key_from_req(endpoint: &str, request: &impl Display) -> String {
        format!("{endpoint}/{request}")
    }

    fn key_from_tag(endpoint: &str, tag: &str) -> String {
        format!("latest/{endpoint}/{tag}")
    }

    async fn get_by_request(
        &self,
        endpoint: &str,
        request: &impl Display,
    ) -> cachette::Result<Option<R>> {
        self.responses
            .get(&Self::key_from_req(endpoint, request))
            .await
    }

    /// The latest response of `endpoint` cached under any of `tags`.
    async fn get_by_tags(&self, endpoint: &str, tags: &[&str]) -> cachette::Result<Option<R>> {
        let keys: Vec<String> = tags
            .iter()
            .map(|tag| Self::key_from_tag(endpoint, tag))
            .collect();
        let latest = self.latest.get_many(&keys).await?;
        for key in &keys {
            if let Some(request_key) = latest.get(key)
                && let Some(response) = self.responses.get(request_key).await?
            {
                return Ok(Some(response));
            }
        }
        Ok(None)
    }

    async fn set(
        &self,
        endpoint: &str,
        request: &impl Display,
        tags: &[&str],
        response: &R,
        ttl: Option<Duration>,
    ) -> cachette::Result<()> {
        let request_key = Self::key_from_req(endpoint, request);
        let options = match ttl {
            Some(ttl) => SetOptions::new().ttl(ttl),
            None => SetOptions::new(),
        };
        self.responses
            .set_with(
                &request_key,
                response,
                options.clone().tags(tags.iter().copied()),
            )
            .await?;
        for tag in tags {
            let options = options.clone().tags([*tag]);
            self.latest
                .set_with(&Self::key_from_tag(endpoint, tag), &request_key, options)
                .await?;
        }
        Ok(())
    }

    /// Drops every response cached under any of `tags`, of every endpoint: one store call.
    async fn invalidate_tags(&self, _endpoint: &str, tags: &[&str]) -> cachette::Result<()> {
        self.responses.invalidate_tags(tags.iter().copied()).await
    }
}

/// pomdapi's sync methods (`get_by_request`, `get_by_tags`, `set`, `invalidate_tags` without
/// the `a`): the same caches through `cachette::blocking`, for code without an async runtime.
struct SyncRequestCache<R> {
    responses: cachette::blocking::Cache<R>,
    latest: cachette::blocking::Cache<String>,
}

impl<R> SyncRequestCache<R>
where
    R: Clone + Serialize + for<'de> Deserialize<'de> + Send + Sync + 'static,
{
    fn new(store: &cachette::blocking::Store) -> Self {
        Self {
            responses: store.cache_with(|builder| builder.prefix("pomdapi:").tagged()),
            latest: store.cache_with(|builder| builder.prefix("pomdapi:").tagged()),
        }
    }

    fn get_by_request(
        &self,
        endpoint: &str,
        request: &impl Display,
    ) -> cachette::Result<Option<R>> {
        self.responses
            .get(&RequestCache::<R>::key_from_req(endpoint, request))
    }

    fn get_by_tags(&self, endpoint: &str, tags: &[&str]) -> cachette::Result<Option<R>> {
        let keys: Vec<String> = tags
            .iter()
            .map(|tag| RequestCache::<R>::key_from_tag(endpoint, tag))
            .collect();
        let latest = self.latest.get_many(&keys)?;
        for key in &keys {
            if let Some(request_key) = latest.get(key)
                && let Some(response) = self.responses.get(request_key)?
            {
                return Ok(Some(response));
            }
        }
        Ok(None)
    }

    fn set(
        &self,
        endpoint: &str,
        request: &impl Display,
        tags: &[&str],
        response: &R,
        ttl: Option<Duration>,
    ) -> cachette::Result<()> {
        let request_key = RequestCache::<R>::key_from_req(endpoint, request);
        let options = match ttl {
            Some(ttl) => SetOptions::new().ttl(ttl),
            None => SetOptions::new(),
        };
        self.responses.set_with(
            &request_key,
            response,
            options.clone().tags(tags.iter().copied()),
        )?;
        for tag in tags {
            let options = options.clone().tags([*tag]);
            self.latest.set_with(
                &RequestCache::<R>::key_from_tag(endpoint, tag),
                &request_key,
                options,
            )?;
        }
        Ok(())
    }

    fn invalidate_tags(&self, _endpoint: &str, tags: &[&str]) -> cachette::Result<()> {
        self.responses.invalidate_tags(tags.iter().copied())
    }
}

/// An issue tracker's API, counting the requests that reach it.
#[derive(Default)]
struct IssueApi {
    issues: Mutex<HashMap<u32, Issue>>,
    requests: AtomicUsize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Issue {
    id: u32,
    title: String,
    open: bool,
}

impl IssueApi {
    fn issues(&self) -> std::sync::MutexGuard<'_, HashMap<u32, Issue>> {
        self.issues.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn get_issue(&self, id: u32) -> Option<Issue> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        self.issues().get(&id).cloned()
    }

    fn list_open(&self) -> Vec<Issue> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let mut open: Vec<Issue> = self.issues().values().filter(|i| i.open).cloned().collect();
        open.sort_by_key(|issue| issue.id);
        open
    }

    fn close(&self, id: u32) {
        self.requests.fetch_add(1, Ordering::SeqCst);
        if let Some(issue) = self.issues().get_mut(&id) {
            issue.open = false;
        }
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

/// The client: queries read through the cache, mutations invalidate the tags they change, as
/// pomdapi's `providesTags` and `invalidatesTags` do.
struct Client {
    api: Arc<IssueApi>,
    issues: RequestCache<Option<Issue>>,
    lists: RequestCache<Vec<Issue>>,
}

impl Client {
    async fn get_issue(&self, id: u32) -> cachette::Result<Option<Issue>> {
        if let Some(cached) = self.issues.get_by_request("get_issue", &id).await? {
            return Ok(cached);
        }
        let issue = self.api.get_issue(id);
        let tag = format!("Issue:{id}");
        self.issues
            .set("get_issue", &id, &[&tag], &issue, None)
            .await?;
        Ok(issue)
    }

    async fn list_open(&self, page: u32) -> cachette::Result<Vec<Issue>> {
        if let Some(cached) = self.lists.get_by_request("list_open", &page).await? {
            return Ok(cached);
        }
        let open = self.api.list_open();
        let mut tags: Vec<String> = open
            .iter()
            .map(|issue| format!("Issue:{}", issue.id))
            .collect();
        tags.push("Issue:LIST".into());
        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
        self.lists
            .set("list_open", &page, &tags, &open, None)
            .await?;
        Ok(open)
    }

    async fn close_issue(&self, id: u32) -> cachette::Result<()> {
        self.api.close(id);
        let tag = format!("Issue:{id}");
        self.issues.invalidate_tags("close_issue", &[&tag]).await
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join("cachette-pomdapi.db");
    let store = cachette::open(&format!("sqlite://{}", path.display())).await?;
    let api = Arc::new(IssueApi::default());
    for (id, title) in [(1, "crash on start"), (2, "slow list"), (3, "typo in docs")] {
        api.issues().insert(
            id,
            Issue {
                id,
                title: title.into(),
                open: true,
            },
        );
    }
    let client = Client {
        api: Arc::clone(&api),
        issues: RequestCache::new(Arc::clone(&store)),
        lists: RequestCache::new(Arc::clone(&store)),
    };
    client.issues.responses.clear().await?;

    // Reads go to the API once, then come from the cache.
    let first = client.get_issue(1).await?;
    client.get_issue(1).await?;
    client.list_open(1).await?;
    client.list_open(2).await?;
    let open = client.list_open(1).await?;
    println!(
        "get_issue(1) twice, list_open pages 1, 2, 1 -> {} open; the API saw {} requests",
        open.len(),
        api.requests()
    );
    assert_eq!(api.requests(), 3);
    let by_tag = client.issues.get_by_tags("get_issue", &["Issue:1"]).await?;
    println!(
        "get_by_tags(Issue:1)   -> {:?}",
        by_tag.flatten().map(|issue| issue.title)
    );
    assert_eq!(
        client.issues.get_by_tags("get_issue", &["Issue:1"]).await?,
        Some(first)
    );

    // Closing issue 1 invalidates its tag: the issue and both list pages (which carry every
    // listed issue's tag) are gone, not only the last response written under the tag.
    client.close_issue(1).await?;
    assert_eq!(client.issues.get_by_request("get_issue", &1).await?, None);
    for page in [1, 2] {
        assert_eq!(
            client.lists.get_by_request("list_open", &page).await?,
            None,
            "page {page}"
        );
    }
    assert_eq!(
        client.issues.get_by_tags("get_issue", &["Issue:1"]).await?,
        None
    );
    let open = client.list_open(1).await?;
    println!(
        "close_issue(1)         -> list_open(1) reloads: {} open; the API saw {} requests",
        open.len(),
        api.requests()
    );
    assert_eq!(open.len(), 2);

    // Issue 2's own entry and the list page share the tag Issue:2; invalidating the second tag
    // of the page's list (not its first) drops it as well.
    client.get_issue(2).await?;
    client
        .lists
        .invalidate_tags("list_open", &["Issue:LIST"])
        .await?;
    assert_eq!(client.lists.get_by_request("list_open", &1).await?, None);
    assert!(
        client
            .issues
            .get_by_request("get_issue", &2)
            .await?
            .is_some()
    );
    println!("invalidate Issue:LIST  -> the list pages are gone; issue 2 stays cached");

    // One invalidation drops a thousand tagged responses in one store call.
    for n in 0..1000 {
        client
            .issues
            .set(
                "search",
                &n,
                &["Search"],
                &None,
                Some(Duration::from_secs(60)),
            )
            .await?;
    }
    client.issues.invalidate_tags("search", &["Search"]).await?;
    let left = client
        .issues
        .responses
        .get_many((0..1000).map(|n| format!("search/{n}")))
        .await?;
    println!(
        "1,000 responses tagged Search, one invalidate_tags -> {} left",
        left.len()
    );
    assert!(left.is_empty());

    // The sync flavour, from a thread without a runtime, on the same store: it sees what the
    // async side wrote, and its invalidation reaches the async side.
    let sync_url = format!("sqlite://{}", path.display());
    let from_sync = tokio::task::spawn_blocking(move || -> cachette::Result<bool> {
        let store = cachette::blocking::open(&sync_url)?;
        let sync = SyncRequestCache::<Option<Issue>>::new(&store);
        let cached = sync.get_by_request("get_issue", &2)?;
        sync.set("get_issue", &9, &["Issue:9"], &None, None)?;
        let tagged = sync.get_by_tags("get_issue", &["Issue:9"])?;
        sync.invalidate_tags("close_issue", &["Issue:2"])?;
        Ok(cached.is_some() && tagged == Some(None))
    })
    .await??;
    assert!(from_sync, "the sync side reads what the async side wrote");
    assert_eq!(client.issues.get_by_request("get_issue", &2).await?, None);
    assert_eq!(
        client.issues.get_by_request("get_issue", &9).await?,
        Some(None)
    );
    println!(
        "sync flavour           -> read issue 2, cached issue 9, invalidated Issue:2 for both sides"
    );
    client.issues.responses.clear().await?;
    Ok(())
}
