//! Per-call write options.

use std::time::Duration;

use crate::Condition;

/// Options for [`Cache::set_with`](crate::Cache::set_with) and
/// [`Cache::set_many_with`](crate::Cache::set_many_with).
///
/// ```
/// use std::time::Duration;
/// use cache_core::SetOptions;
///
/// let once_for_a_minute = SetOptions::new().ttl(Duration::from_secs(60)).if_not_exists();
/// let forever = SetOptions::new().no_ttl();
/// # let _ = (once_for_a_minute, forever);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct SetOptions {
    pub(crate) ttl: TtlChoice,
    pub(crate) condition: Condition,
    pub(crate) tags: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum TtlChoice {
    #[default]
    CacheDefault,
    Eternal,
    After(Duration),
}

impl SetOptions {
    /// The cache's default TTL, written unconditionally.
    pub fn new() -> Self {
        Self::default()
    }

    /// Expire after `ttl` instead of the cache's default. `Duration::ZERO` means already expired:
    /// the key is removed.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = TtlChoice::After(ttl);
        self
    }

    /// Never expire, whatever the cache's default TTL.
    pub fn no_ttl(mut self) -> Self {
        self.ttl = TtlChoice::Eternal;
        self
    }

    /// Write only if the key is absent (or expired). Atomic in every store.
    pub fn if_not_exists(mut self) -> Self {
        self.condition = Condition::IfNotExists;
        self
    }

    /// Writes the entry under `tags`: [`Cache::invalidate_tags`](crate::Cache::invalidate_tags)
    /// of any of them makes it absent. Needs a cache built with
    /// [`CacheBuilder::tagged`](crate::CacheBuilder::tagged); others answer
    /// [`Error::Unsupported`](crate::Error::Unsupported). Duplicates count once.
    pub fn tags<I, T>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<String>,
    {
        self.tags.extend(tags.into_iter().map(Into::into));
        self
    }

    pub(crate) fn resolve_ttl(&self, default: Option<Duration>) -> Option<Duration> {
        match self.ttl {
            TtlChoice::CacheDefault => default,
            TtlChoice::Eternal => None,
            TtlChoice::After(ttl) => Some(ttl),
        }
    }
}
