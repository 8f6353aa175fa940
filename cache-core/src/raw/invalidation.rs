//! Invalidation channels: how a [local tier](crate::LocalTier) hears that a key changed.
//!
//! Each store handle owns one [`InvalidationBus`] ([`Backend::invalidation_bus`]). Writes
//! through a cache with a local tier, or through the [`PublishWrites`] layer, *announce* the
//! keys and prefixes they change on that bus: every tier of this process over the same handle
//! drops its copies before the write returns, and, when the store has a [`Transport`] (Redis
//! pub/sub, PostgreSQL `LISTEN/NOTIFY`, a table in a shared SQLite file), a background task
//! sends them, batched, to every other handle and process. Messages name full keys or prefixes
//! and never carry values.
//!
//! A tier serves local copies only while its bus is *live*: always for an in-process bus, and
//! for a transport only while its subscription stands. When the subscription drops, every tier
//! of the bus empties itself and stops serving until the bus has subscribed again, so no copy
//! outlives a lost channel and no write made meanwhile is missed.
//!
//! [`Backend::invalidation_bus`]: crate::Backend::invalidation_bus

use std::collections::HashSet;
use std::fmt::{self, Debug};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use crate::raw::Forward;
use crate::{Backend, Condition, Layer, Result, Ttl};

/// What a [`Subscription`] delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A message another handle published with [`Transport::publish`].
    Message(Bytes),
    /// The channel dropped or fell behind: messages may have been lost. The bus empties every
    /// tier; the subscription ends after this, and the bus subscribes again.
    Lost(String),
}

/// The messages of a store's channel, from the moment [`Transport::subscribe`] returned. It ends
/// (or yields [`Notice::Lost`]) when the connection carrying it drops.
pub struct Subscription(Pin<Box<dyn Stream<Item = Notice> + Send>>);

impl Subscription {
    /// A subscription over `stream`.
    pub fn new(stream: impl Stream<Item = Notice> + Send + 'static) -> Self {
        Self(Box::pin(stream))
    }

    /// The next notice; `None` when the subscription is over.
    pub async fn next(&mut self) -> Option<Notice> {
        self.0.next().await
    }
}

impl Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Subscription(..)")
    }
}

/// A store's channel to the other handles and processes that share its data.
#[async_trait]
pub trait Transport: Debug + Send + Sync + 'static {
    /// Sends `message` to every subscriber (this handle's own included; the bus skips what it
    /// sent itself).
    async fn publish(&self, message: Bytes) -> Result<()>;

    /// Subscribes, returning once every message published from now on will arrive.
    async fn subscribe(&self) -> Result<Subscription>;

    /// The largest message the channel carries, in bytes; the bus splits batches to fit.
    fn max_message(&self) -> usize {
        7_000
    }
}

/// Keys and prefixes that changed, in full store keys.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invalidation {
    /// Keys whose values changed or went.
    #[serde(rename = "k", default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// Prefixes under which every key may have changed (a `clear`).
    #[serde(rename = "p", default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<String>,
}

impl Invalidation {
    /// One key.
    pub fn key(key: impl Into<String>) -> Self {
        Self {
            keys: vec![key.into()],
            prefixes: Vec::new(),
        }
    }

    /// One prefix.
    pub fn prefix(prefix: impl Into<String>) -> Self {
        Self {
            keys: Vec::new(),
            prefixes: vec![prefix.into()],
        }
    }

    fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.prefixes.is_empty()
    }
}

/// A message on the wire: the sender's bus and what changed, as JSON (any UTF-8 key fits, and
/// PostgreSQL's text payloads take it).
#[derive(Serialize, Deserialize)]
struct Wire {
    #[serde(rename = "o")]
    origin: u64,
    #[serde(flatten)]
    what: Invalidation,
}

/// Whether a bus's tiers may serve local copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// No transport: every writer of the data is in this process and announces on this bus.
    InProcess,
    /// The subscription has not been made yet (or is being made again).
    Connecting,
    /// Subscribed: every announcement from elsewhere arrives.
    Live,
    /// The subscription dropped; the bus is subscribing again.
    Down,
}

impl Link {
    fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::InProcess,
            1 => Self::Connecting,
            2 => Self::Live,
            _ => Self::Down,
        }
    }

    fn as_u8(self) -> u8 {
        match self {
            Self::InProcess => 0,
            Self::Connecting => 1,
            Self::Live => 2,
            Self::Down => 3,
        }
    }
}

/// What a bus tells a listener (a local tier).
pub(crate) trait Listener: Send + Sync {
    /// Drop the copies of these keys and prefixes; `remote`: announced by another handle.
    fn invalidate(&self, what: &Arc<Invalidation>, remote: bool);
    /// Drop every copy: the link changed to `link` (for `reason`).
    fn link_changed(&self, link: Link, reason: Option<&str>);
}

/// One store handle's invalidation bus: see the [module docs](self).
pub struct InvalidationBus {
    shared: Arc<Shared>,
}

struct Shared {
    origin: u64,
    transport: Option<Arc<dyn Transport>>,
    listeners: RwLock<Vec<Weak<dyn Listener>>>,
    link: AtomicU8,
    started: AtomicBool,
    outbox: Mutex<Option<mpsc::UnboundedSender<Arc<Invalidation>>>>,
    /// Dropped with the bus: its tasks end.
    stop: watch::Sender<()>,
}

impl Debug for InvalidationBus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InvalidationBus")
            .field("transport", &self.shared.transport)
            .field("link", &self.link())
            .finish()
    }
}

impl InvalidationBus {
    /// A bus for a store whose every writer is in this process (an in-process store).
    pub fn in_process() -> Arc<Self> {
        Self::make(None)
    }

    /// A bus that reaches other handles and processes over `transport`.
    pub fn with_transport(transport: Arc<dyn Transport>) -> Arc<Self> {
        Self::make(Some(transport))
    }

    fn make(transport: Option<Arc<dyn Transport>>) -> Arc<Self> {
        let link = if transport.is_some() {
            Link::Connecting
        } else {
            Link::InProcess
        };
        Arc::new(Self {
            shared: Arc::new(Shared {
                origin: fastrand::u64(..),
                transport,
                listeners: RwLock::default(),
                link: AtomicU8::new(link.as_u8()),
                started: AtomicBool::new(false),
                outbox: Mutex::default(),
                stop: watch::channel(()).0,
            }),
        })
    }

    /// Whether its tiers may serve local copies now.
    pub fn link(&self) -> Link {
        self.shared.link()
    }

    /// Whether announcements reach other handles (the bus has a transport).
    pub fn reaches_other_processes(&self) -> bool {
        self.shared.transport.is_some()
    }

    /// Tells every tier of this process on this bus, at once, that `what` changed, and queues it
    /// for the other handles and processes.
    pub fn announce(&self, what: Invalidation) {
        if what.is_empty() {
            return;
        }
        let what = Arc::new(what);
        self.shared.deliver(&what, false);
        if self.shared.transport.is_some() {
            self.start();
            let outbox = self
                .shared
                .outbox
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(outbox) = outbox.as_ref() {
                let _ = outbox.send(what);
            }
        }
    }

    /// Adds `listener`; starts the bus's tasks on first use (needs a Tokio runtime).
    pub(crate) fn listen(&self, listener: Weak<dyn Listener>) {
        let mut listeners = self
            .shared
            .listeners
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        listeners.retain(|listener| listener.strong_count() > 0);
        listeners.push(listener);
        drop(listeners);
        self.start();
    }

    /// Starts the publishing and subscribing tasks, once, when there is a transport and a
    /// runtime to run them on. A tier starts its bus on first use; call this to subscribe
    /// sooner (the tier serves nothing before the subscription stands).
    pub fn start(&self) {
        let Some(transport) = &self.shared.transport else {
            return;
        };
        if self.shared.started.load(Ordering::Acquire) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.shared.started.swap(true, Ordering::AcqRel) {
            return;
        }
        let (outbox, inbox) = mpsc::unbounded_channel();
        *self
            .shared
            .outbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(outbox);
        runtime.spawn(publish_loop(
            Arc::clone(transport),
            self.shared.origin,
            inbox,
            self.shared.stop.subscribe(),
        ));
        runtime.spawn(subscribe_loop(
            Arc::clone(transport),
            Arc::downgrade(&self.shared),
            self.shared.stop.subscribe(),
        ));
    }
}

impl Shared {
    fn link(&self) -> Link {
        Link::from_u8(self.link.load(Ordering::Acquire))
    }

    fn listeners(&self) -> Vec<Arc<dyn Listener>> {
        self.listeners
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(Weak::upgrade)
            .collect()
    }

    /// Hands `what` to every listener, under the read lock (listeners never call back into the
    /// bus), with no list built per write.
    fn deliver(&self, what: &Arc<Invalidation>, remote: bool) {
        let listeners = self
            .listeners
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        for listener in listeners.iter().filter_map(Weak::upgrade) {
            listener.invalidate(what, remote);
        }
    }

    fn set_link(&self, link: Link, reason: Option<&str>) {
        // Listeners empty themselves before and after the change: a copy filled while the
        // state moved is dropped either way.
        for listener in self.listeners() {
            listener.link_changed(link, reason);
        }
        self.link.store(link.as_u8(), Ordering::Release);
        for listener in self.listeners() {
            listener.link_changed(link, reason);
        }
    }
}

/// How long the subscriber waits before subscribing again, at first and at most.
const RESUBSCRIBE_FIRST: Duration = Duration::from_millis(50);
const RESUBSCRIBE_MAX: Duration = Duration::from_secs(2);

async fn subscribe_loop(
    transport: Arc<dyn Transport>,
    bus: Weak<Shared>,
    mut stop: watch::Receiver<()>,
) {
    let mut pause = RESUBSCRIBE_FIRST;
    loop {
        let subscribed = tokio::select! {
            _ = stop.changed() => return,
            subscribed = transport.subscribe() => subscribed,
        };
        let Some(shared) = bus.upgrade() else { return };
        match subscribed {
            Ok(mut subscription) => {
                pause = RESUBSCRIBE_FIRST;
                shared.set_link(Link::Live, None);
                drop(shared);
                let reason = loop {
                    let notice = tokio::select! {
                        _ = stop.changed() => return,
                        notice = subscription.next() => notice,
                    };
                    let Some(shared) = bus.upgrade() else { return };
                    match notice {
                        Some(Notice::Message(bytes)) => {
                            match serde_json::from_slice::<Wire>(&bytes) {
                                Ok(wire) if wire.origin == shared.origin => {}
                                Ok(wire) => shared.deliver(&Arc::new(wire.what), true),
                                Err(error) => {
                                    break format!(
                                        "a message that is not an invalidation: {error}"
                                    );
                                }
                            }
                        }
                        Some(Notice::Lost(reason)) => break reason,
                        None => break "the subscription ended".to_owned(),
                    }
                };
                if let Some(shared) = bus.upgrade() {
                    tracing::warn!(target: "cachette", %reason, "invalidation channel lost; local tiers emptied");
                    shared.set_link(Link::Down, Some(&reason));
                }
            }
            Err(error) => {
                if shared.link() != Link::Down {
                    let reason = error.to_string();
                    shared.set_link(Link::Down, Some(&reason));
                }
                drop(shared);
                tokio::select! {
                    _ = stop.changed() => return,
                    () = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(RESUBSCRIBE_MAX);
            }
        }
    }
}

/// A publisher that sent less than `BUSY` ago waits `LINGER` to gather more announcements.
const BUSY: Duration = Duration::from_millis(5);
const LINGER: Duration = Duration::from_millis(1);

/// How often a batch that failed to publish is tried again.
const PUBLISH_ATTEMPTS: usize = 3;

async fn publish_loop(
    transport: Arc<dyn Transport>,
    origin: u64,
    mut inbox: mpsc::UnboundedReceiver<Arc<Invalidation>>,
    mut stop: watch::Receiver<()>,
) {
    let mut batch = Vec::new();
    let mut last_sent: Option<Instant> = None;
    loop {
        batch.clear();
        let received = tokio::select! {
            _ = stop.changed() => return,
            received = inbox.recv_many(&mut batch, 4_096) => received,
        };
        if received == 0 {
            return;
        }
        // Under a stream of writes, wait a moment for more, so that one message carries many
        // (a single task writing back to back would otherwise publish once per write); an
        // occasional write goes at once.
        if last_sent.is_some_and(|sent| sent.elapsed() < BUSY) {
            tokio::time::sleep(LINGER).await;
            while let Ok(more) = inbox.try_recv() {
                batch.push(more);
            }
        }
        last_sent = Some(Instant::now());
        for message in encode(origin, &batch, transport.max_message()) {
            for attempt in 1..=PUBLISH_ATTEMPTS {
                match transport.publish(message.clone()).await {
                    Ok(()) => break,
                    Err(error) if attempt == PUBLISH_ATTEMPTS => {
                        tracing::warn!(target: "cachette", %error, "invalidations not published; other processes' local copies stay until their hold ends");
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        }
    }
}

/// `batch` as messages of at most `max` bytes each, keys and prefixes named once. A key too
/// long for a message alone goes as a prefix of it that fits (it invalidates more, never less).
pub(crate) fn encode(origin: u64, batch: &[Arc<Invalidation>], max: usize) -> Vec<Bytes> {
    let mut seen = HashSet::new();
    let mut items: Vec<(bool, String)> = Vec::new();
    for what in batch {
        for prefix in &what.prefixes {
            if seen.insert((true, prefix.as_str())) {
                items.push((true, prefix.clone()));
            }
        }
        for key in &what.keys {
            if seen.insert((false, key.as_str())) {
                items.push((false, key.clone()));
            }
        }
    }
    let budget = max.saturating_sub(64).max(64);
    let mut messages = Vec::new();
    let mut current = Invalidation::default();
    let mut size = 0;
    for (is_prefix, mut text) in items {
        let mut cost = json_len(&text) + 1;
        let mut is_prefix = is_prefix;
        while cost > budget {
            // Shorten to a prefix that fits, on a character boundary.
            let mut cut = text.len() / 2;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            is_prefix = true;
            cost = json_len(&text) + 1;
        }
        if size + cost > budget && !current.is_empty() {
            messages.push(wire(origin, std::mem::take(&mut current)));
            size = 0;
        }
        size += cost;
        if is_prefix {
            current.prefixes.push(text);
        } else {
            current.keys.push(text);
        }
    }
    if !current.is_empty() {
        messages.push(wire(origin, current));
    }
    messages
}

fn json_len(text: &str) -> usize {
    serde_json::to_string(text).map_or(text.len() * 6 + 2, |json| json.len())
}

fn wire(origin: u64, what: Invalidation) -> Bytes {
    Bytes::from(serde_json::to_vec(&Wire { origin, what }).unwrap_or_default())
}

/// Announces on `bus`, when dropped, what a write changed: after the write, or when the caller
/// is cancelled mid-write (its write may have landed all the same).
struct Announce<'a> {
    bus: &'a InvalidationBus,
    what: Option<Invalidation>,
}

impl Drop for Announce<'_> {
    fn drop(&mut self) {
        if let Some(what) = self.what.take() {
            self.bus.announce(what);
        }
    }
}

/// A layer that announces every write on the store's [`InvalidationBus`], so that the local
/// tiers of this process (at once) and of other processes (over the store's channel) drop their
/// copies. A cache with a [local tier](crate::CacheBuilder::local) does this by itself; give
/// this layer to the caches and programs that write the same keys without a tier.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> cache_core::Result<()> {
/// use std::sync::Arc;
/// use cache_core::{Backend, Cache, LocalTier, testing::ReferenceBackend};
/// use cache_core::raw::invalidation::PublishWrites;
///
/// let store: Arc<dyn Backend> = Arc::new(ReferenceBackend::default());
/// let reader: Cache<String> = Cache::builder(Arc::clone(&store)).local(LocalTier::new(1_000)).build();
/// let writer: Cache<String> = Cache::builder(store).layer(PublishWrites).build();
/// writer.set("k", &"one".to_string()).await?;
/// assert_eq!(reader.get("k").await?.as_deref(), Some("one")); // now held locally
/// writer.set("k", &"two".to_string()).await?;
/// assert_eq!(reader.get("k").await?.as_deref(), Some("two"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct PublishWrites;

impl Layer for PublishWrites {
    fn layer(&self, inner: Arc<dyn Backend>) -> Arc<dyn Backend> {
        let bus = inner
            .invalidation_bus()
            .unwrap_or_else(InvalidationBus::in_process);
        Arc::new(Announcing { inner, bus })
    }
}

/// A store whose writes announce what they change on `bus`.
#[derive(Debug)]
pub(crate) struct Announcing {
    pub(crate) inner: Arc<dyn Backend>,
    pub(crate) bus: Arc<InvalidationBus>,
}

impl Announcing {
    fn keys(&self, keys: impl IntoIterator<Item = String>) -> Announce<'_> {
        Announce {
            bus: &self.bus,
            what: Some(Invalidation {
                keys: keys.into_iter().collect(),
                prefixes: Vec::new(),
            }),
        }
    }

    fn key(&self, key: &str) -> Announce<'_> {
        self.keys([key.to_owned()])
    }
}

#[async_trait]
impl Forward for Announcing {
    fn inner(&self) -> &dyn Backend {
        &*self.inner
    }

    fn invalidation_bus(&self) -> Option<Arc<InvalidationBus>> {
        Some(Arc::clone(&self.bus))
    }

    async fn set(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        condition: Condition,
    ) -> Result<bool> {
        let _announce = self.key(key);
        self.inner.set(key, value, ttl, condition).await
    }

    async fn set_many(&self, entries: Vec<(String, Bytes)>, ttl: Option<Duration>) -> Result<()> {
        let _announce = self.keys(entries.iter().map(|(key, _)| key.clone()));
        self.inner.set_many(entries, ttl).await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        let _announce = self.key(key);
        self.inner.delete(key).await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<u64> {
        let _announce = self.keys(keys.iter().cloned());
        self.inner.delete_many(keys).await
    }

    async fn expire_in(&self, key: &str, ttl: Option<Duration>) -> Result<bool> {
        let _announce = self.key(key);
        self.inner.expire_in(key, ttl).await
    }

    async fn clear_prefix(&self, prefix: &str) -> Result<u64> {
        let _announce = Announce {
            bus: &self.bus,
            what: Some(Invalidation::prefix(prefix)),
        };
        self.inner.clear_prefix(prefix).await
    }

    async fn take(&self, key: &str) -> Result<Option<Bytes>> {
        let _announce = self.key(key);
        self.inner.take(key).await
    }

    async fn take_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        let _announce = self.keys(keys.iter().cloned());
        self.inner.take_many(keys).await
    }

    async fn incr(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        let _announce = self.key(key);
        self.inner.incr(key, delta, ttl).await
    }

    async fn get_with_ttl(&self, key: &str) -> Result<Option<(Bytes, Ttl)>> {
        self.inner.get_with_ttl(key).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(message: &[u8]) -> Wire {
        serde_json::from_slice(message).expect("a wire message")
    }

    #[test]
    fn batches_split_to_fit_and_name_each_key_once() {
        let batch: Vec<Arc<Invalidation>> = (0..500)
            .map(|i| Invalidation::key(format!("key:{}", i % 300)))
            .chain([Invalidation::prefix("p:")])
            .map(Arc::new)
            .collect();
        let messages = encode(7, &batch, 1_000);
        assert!(messages.len() > 1);
        let mut keys = Vec::new();
        let mut prefixes = Vec::new();
        for message in &messages {
            assert!(message.len() <= 1_000, "{} bytes", message.len());
            let wire = decode(message);
            assert_eq!(wire.origin, 7);
            keys.extend(wire.what.keys);
            prefixes.extend(wire.what.prefixes);
        }
        keys.sort();
        let mut expected: Vec<String> = (0..300).map(|i| format!("key:{i}")).collect();
        expected.sort();
        assert_eq!(keys, expected);
        assert_eq!(prefixes, ["p:"]);
    }

    #[test]
    fn a_key_too_long_for_a_message_goes_as_a_prefix_of_itself() {
        let long = format!("k:{}", "\u{0}é".repeat(2_000));
        let messages = encode(1, &[Arc::new(Invalidation::key(long.clone()))], 1_000);
        assert_eq!(messages.len(), 1);
        assert!(messages[0].len() <= 1_000);
        let wire = decode(&messages[0]);
        assert!(wire.what.keys.is_empty());
        assert!(long.starts_with(&wire.what.prefixes[0]));
        assert!(wire.what.prefixes[0].starts_with("k:"));
    }
}
