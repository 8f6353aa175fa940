//! The local tier: decoded values held in process in front of any store (see
//! [`CacheBuilder::local`](crate::CacheBuilder::local)).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::Ttl;
use crate::cache::Stored;
use crate::layers::{CacheEvent, Observer};
use crate::planted::FacadeBug;
use crate::raw::header::Header;
use crate::raw::invalidation::{Invalidation, InvalidationBus, Link, Listener};

/// How long a local copy lives at most, by default, when the store's TTL is longer.
pub const DEFAULT_LOCAL_HOLD: Duration = Duration::from_secs(60);

/// The settings of a local tier: how much it holds and for how long. See
/// [`CacheBuilder::local`](crate::CacheBuilder::local).
#[derive(Clone)]
#[must_use]
pub struct LocalTier {
    pub(crate) capacity: u64,
    /// Whether `capacity` is bytes (each copy weighing its key and stored bytes) or entries.
    pub(crate) weighed: bool,
    pub(crate) hold: Duration,
}

impl fmt::Debug for LocalTier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalTier")
            .field("capacity", &self.capacity)
            .field("weighed", &self.weighed)
            .field("hold", &self.hold)
            .finish()
    }
}

impl LocalTier {
    /// A tier of at most `entries` values, each held at most [`DEFAULT_LOCAL_HOLD`].
    pub fn new(entries: u64) -> Self {
        Self {
            capacity: entries.max(1),
            weighed: false,
            hold: DEFAULT_LOCAL_HOLD,
        }
    }

    /// A tier bounded by weight instead of entries: at most `max_bytes` in all, each entry
    /// weighing its full key and its stored bytes (the encoded value, a measure of its size in
    /// memory that costs nothing to take).
    pub fn weighed(max_bytes: u64) -> Self {
        Self {
            capacity: max_bytes.max(1),
            weighed: true,
            hold: DEFAULT_LOCAL_HOLD,
        }
    }

    /// How long a copy lives at most (never past the entry's TTL in the store). Over a store
    /// without an invalidation channel, or for writes that bypass every announcing cache, it is
    /// also how long a copy may be stale. Default: [`DEFAULT_LOCAL_HOLD`].
    pub fn hold(mut self, hold: Duration) -> Self {
        self.hold = hold;
        self
    }
}

/// One local copy.
pub(crate) struct Copy<V> {
    /// The value; `None` in a negative entry.
    pub(crate) value: Option<Arc<V>>,
    pub(crate) header: Option<Header>,
    until: Instant,
    weight: u64,
}

impl<V> Copy<V> {
    /// The copy as a stored entry, its value cloned with `clone`.
    pub(crate) fn stored(&self, clone: fn(&V) -> V) -> Stored<V> {
        Stored {
            value: self.value.as_deref().map(clone),
            header: self.header.clone(),
        }
    }
}

#[derive(Clone)]
struct Weigh;

impl<V> quick_cache::Weighter<String, Arc<Copy<V>>> for Weigh {
    fn weight(&self, _key: &String, copy: &Arc<Copy<V>>) -> u64 {
        copy.weight
    }
}

/// A stored tag version, held like a value.
#[derive(Clone)]
struct Version {
    bytes: Option<Bytes>,
    until: Instant,
}

/// How many recently invalidated keys and prefixes the tier remembers, at most, to check fills
/// against: a fill whose read began before the oldest announcement remembered is dropped.
const RECENT: usize = 65_536;

/// What a fill remembers from before its store read.
#[derive(Clone, Copy)]
pub(crate) struct Ticket {
    seen: u64,
    epoch: u64,
    /// When the read began: a copy lives from here, so the store's entry never ends before it.
    at: Instant,
}

/// The announcements of the last moments, numbered: a fill checks those made during its read.
#[derive(Default)]
struct Recent {
    /// Each with its number; numbers grow by one.
    entries: std::collections::VecDeque<(u64, Arc<Invalidation>)>,
    /// How many keys and prefixes `entries` name.
    named: usize,
}

/// A cache's local tier.
pub(crate) struct Tier<V> {
    copies: quick_cache::sync::Cache<String, Arc<Copy<V>>, Weigh>,
    versions: quick_cache::sync::Cache<String, Version>,
    weighed: bool,
    hold: Duration,
    pub(crate) clone: fn(&V) -> V,
    pub(crate) bus: Arc<InvalidationBus>,
    /// The number of the last invalidation logged in `recent`.
    seq: AtomicU64,
    recent: Mutex<Recent>,
    /// Bumped when the tier empties itself: every fill in flight is dropped.
    epoch: AtomicU64,
    observer: Option<Arc<dyn Observer>>,
    planted: Option<FacadeBug>,
}

/// What a copy costs beyond its key and bytes, counted by a weighed tier: the map's slot, the
/// copy and its `Arc`.
const COPY_OVERHEAD: usize = 96;

/// Tag versions held at most, beside the values.
const VERSIONS_HELD: usize = 10_000;

impl<V: Send + Sync + 'static> Tier<V> {
    pub(crate) fn new(
        settings: &LocalTier,
        clone: fn(&V) -> V,
        bus: Arc<InvalidationBus>,
        observer: Option<Arc<dyn Observer>>,
        planted: Option<FacadeBug>,
    ) -> Arc<Self> {
        let estimated = if settings.weighed {
            usize::try_from(settings.capacity / 512).unwrap_or(usize::MAX)
        } else {
            usize::try_from(settings.capacity).unwrap_or(usize::MAX)
        };
        let tier = Arc::new(Self {
            copies: quick_cache::sync::Cache::with_weighter(
                estimated.clamp(16, 1 << 24),
                settings.capacity,
                Weigh,
            ),
            versions: quick_cache::sync::Cache::new(VERSIONS_HELD),
            weighed: settings.weighed,
            hold: settings.hold,
            clone,
            bus: Arc::clone(&bus),
            seq: AtomicU64::new(0),
            recent: Mutex::default(),
            epoch: AtomicU64::new(0),
            observer,
            planted,
        });
        let listener: Weak<dyn Listener> =
            Arc::downgrade(&(Arc::clone(&tier) as Arc<dyn Listener>));
        bus.listen(listener);
        tier
    }
}

impl<V> Tier<V> {
    /// Whether copies may be served and filled now.
    fn serving(&self) -> bool {
        match self.bus.link() {
            Link::InProcess | Link::Live => true,
            // A cache built outside a runtime starts its bus on first use.
            Link::Connecting => {
                self.bus.start();
                false
            }
            Link::Down => false,
        }
    }

    /// The live copy under `full_key`, if any; reports the hit or miss.
    pub(crate) fn lookup(&self, full_key: &str, key: &str) -> Option<Arc<Copy<V>>> {
        if !self.serving() {
            return None;
        }
        let found = self.copies.get(full_key).and_then(|copy| {
            if copy.until > Instant::now() {
                Some(copy)
            } else {
                self.copies.remove(full_key);
                None
            }
        });
        if let Some(observer) = &self.observer {
            observer.on_cache_event(&match found {
                Some(_) => CacheEvent::LocalHit { key },
                None => CacheEvent::LocalMiss { key },
            });
        }
        found
    }

    /// Taken before the store read whose answer [`Tier::fill`] may keep.
    pub(crate) fn ticket(&self) -> Ticket {
        Ticket {
            seen: self.seq.load(Ordering::SeqCst),
            epoch: self.epoch.load(Ordering::SeqCst),
            at: Instant::now(),
        }
    }

    /// Whether no invalidation of `full_key` (nor an emptying) happened since `ticket`.
    fn still(&self, ticket: Ticket, full_key: &str) -> bool {
        if self.planted == Some(FacadeBug::LocalFillIgnoresRaces) {
            return true;
        }
        if self.epoch.load(Ordering::SeqCst) != ticket.epoch {
            return false;
        }
        if self.seq.load(Ordering::SeqCst) == ticket.seen {
            return true;
        }
        let recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        match recent.entries.front() {
            // Announcements after the ticket were forgotten already: assume the worst.
            Some((first, _)) if *first > ticket.seen + 1 => false,
            _ => !recent.entries.iter().any(|(seq, what)| {
                *seq > ticket.seen
                    && (what.keys.iter().any(|key| key == full_key)
                        || what
                            .prefixes
                            .iter()
                            .any(|prefix| full_key.starts_with(prefix.as_str())))
            }),
        }
    }

    /// Logs `what` for the fills in flight to check, before any copy is dropped.
    fn log(&self, what: &Arc<Invalidation>) {
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = self.seq.load(Ordering::SeqCst) + 1;
        recent.named += what.keys.len() + what.prefixes.len();
        recent.entries.push_back((seq, Arc::clone(what)));
        while recent.named > RECENT && recent.entries.len() > 1 {
            if let Some((_, gone)) = recent.entries.pop_front() {
                recent.named -= gone.keys.len() + gone.prefixes.len();
            }
        }
        self.seq.store(seq, Ordering::SeqCst);
    }

    /// A copy of what the store answered under `full_key` to the read of `ticket`: `stored`,
    /// decoded from `bytes`, with `ttl` left in the store (`None`: unknown, so the copy is never
    /// held). The TTL counts from the read's start, not its answer: the copy ends no later than
    /// the entry, however long the answer took.
    pub(crate) fn copy(
        &self,
        ticket: Ticket,
        stored: Stored<V>,
        full_key: &str,
        bytes: &[u8],
        ttl: Option<Ttl>,
    ) -> Arc<Copy<V>> {
        let hold = match ttl {
            None => Duration::ZERO,
            Some(Ttl::Eternal) => self.hold,
            Some(Ttl::Remaining(_))
                if self.planted == Some(FacadeBug::LocalTierIgnoresStoreTtl) =>
            {
                self.hold
            }
            Some(Ttl::Remaining(left)) => left.min(self.hold),
        };
        let weight = if self.weighed {
            // The key, the stored bytes (a measure of the value's size that costs nothing to
            // take) and the map's own entry.
            (full_key.len() + bytes.len() + COPY_OVERHEAD) as u64
        } else {
            1
        };
        Arc::new(Copy {
            value: stored.value.map(Arc::new),
            header: stored.header,
            until: ticket.at + hold,
            weight,
        })
    }

    /// Keeps `copy` under `full_key`, unless an invalidation of the key came in since `ticket`
    /// was taken (before the store read): then the answer may predate a write, and is not kept.
    pub(crate) fn fill(&self, ticket: Ticket, full_key: &str, key: &str, copy: &Arc<Copy<V>>) {
        if copy.until <= Instant::now() || !self.serving() {
            return;
        }
        self.copies.insert(full_key.to_owned(), Arc::clone(copy));
        // An invalidation logs itself before it drops copies: logged before this check, it is
        // seen here and the copy goes; logged after, its drop comes after the insert.
        if !self.still(ticket, full_key) || !self.serving() {
            self.copies.remove(full_key);
            return;
        }
        if let Some(observer) = &self.observer {
            observer.on_cache_event(&CacheEvent::LocalFilled { key });
        }
    }

    /// The held version bytes of the tag under `full_key` (`Some(None)`: held as absent).
    pub(crate) fn version(&self, full_key: &str) -> Option<Option<Bytes>> {
        if !self.serving() {
            return None;
        }
        let version = self.versions.get(full_key)?;
        if version.until > Instant::now() {
            Some(version.bytes)
        } else {
            self.versions.remove(full_key);
            None
        }
    }

    /// Keeps a tag version read from the store, as [`Tier::fill`] keeps values.
    pub(crate) fn fill_version(&self, ticket: Ticket, full_key: &str, bytes: Option<Bytes>) {
        if !self.serving() {
            return;
        }
        self.versions.insert(
            full_key.to_owned(),
            Version {
                bytes,
                until: Instant::now() + self.hold,
            },
        );
        if !self.still(ticket, full_key) || !self.serving() {
            self.versions.remove(full_key);
        }
    }

    /// Drops every copy.
    fn empty(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.copies.clear();
        self.versions.clear();
    }
}

impl<V: Send + Sync> Listener for Tier<V> {
    fn invalidate(&self, what: &Arc<Invalidation>, remote: bool) {
        self.log(what);
        for key in &what.keys {
            self.copies.remove(key.as_str());
            self.versions.remove(key.as_str());
        }
        if !what.prefixes.is_empty() {
            let outside = |key: &String| !what.prefixes.iter().any(|p| key.starts_with(p.as_str()));
            self.copies.retain(|key, _| outside(key));
            self.versions.retain(|key, _| outside(key));
        }
        if let Some(observer) = &self.observer {
            observer.on_cache_event(&CacheEvent::LocalInvalidated {
                keys: what.keys.len(),
                prefixes: what.prefixes.len(),
                remote,
            });
        }
    }

    fn link_changed(&self, link: Link, reason: Option<&str>) {
        let was = self.bus.link();
        self.empty();
        if was == link {
            return;
        }
        if let Some(observer) = &self.observer {
            match link {
                Link::Down => observer.on_cache_event(&CacheEvent::ChannelLost {
                    reason: reason.unwrap_or("unknown"),
                }),
                Link::Live => observer.on_cache_event(&CacheEvent::ChannelRestored),
                Link::InProcess | Link::Connecting => {}
            }
        }
    }
}
