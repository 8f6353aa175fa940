//! Tags: `invalidate_tags` makes every entry of a tag absent in one store call, by version stamps
//! (see [`CacheBuilder::tagged`](crate::CacheBuilder::tagged)).

use std::collections::HashMap;

use bytes::Bytes;

use crate::cache::Stored;
use crate::planted::FacadeBug;
use crate::raw::header::Header;
use crate::{Cache, Condition, Error, Result};

/// The first character of the store keys that hold a tagged cache's tag versions, after its
/// prefix: U+FFFF, a Unicode noncharacter, which user keys of a tagged cache may not start with.
pub(crate) const TAG_MARK: char = '\u{FFFF}';

/// How often a write tries to give a tag its first version while other writers race it.
const STAMP_ATTEMPTS: usize = 3;

impl<V: Send + Sync + 'static> Cache<V> {
    /// Makes every entry written under any of `tags` absent, for every read of every handle and
    /// process sharing the store: one store call (a `set_many` of the tags' new versions),
    /// however many entries carry them. The entries themselves stay in the store until their
    /// TTL. Needs a cache built with [`CacheBuilder::tagged`](crate::CacheBuilder::tagged);
    /// others answer [`Error::Unsupported`].
    pub async fn invalidate_tags<T: AsRef<str>>(
        &self,
        tags: impl IntoIterator<Item = T>,
    ) -> Result<()> {
        self.require_tags("invalidate_tags")?;
        let mut keys: Vec<String> = tags
            .into_iter()
            .map(|tag| self.tag_key(tag.as_ref()))
            .collect();
        keys.sort_unstable();
        keys.dedup();
        if keys.is_empty() {
            return Ok(());
        }
        if self.planted(FacadeBug::MissingTagIsVersionZero) {
            return self.inner.backend.delete_many(&keys).await.map(drop);
        }
        let versions = keys
            .into_iter()
            .map(|key| (key, version_bytes(new_version())))
            .collect();
        self.inner.backend.set_many(versions, None).await
    }

    /// The store key of `tag`'s version.
    pub(crate) fn tag_key(&self, tag: &str) -> String {
        if self.planted(FacadeBug::TagKeysOutsidePrefix) {
            return format!("tag/{tag}");
        }
        let prefix = &self.inner.prefix;
        let mut key = String::with_capacity(prefix.len() + 3 + tag.len());
        key.push_str(prefix);
        key.push(TAG_MARK);
        key.push_str(tag);
        key
    }

    fn require_tags(&self, operation: &'static str) -> Result<()> {
        if self.inner.tagged {
            Ok(())
        } else {
            Err(Error::Unsupported {
                store: "cache without tags (build it with .tagged())",
                operation,
            })
        }
    }

    /// The current versions of `tags` (duplicates once), giving a tag that has none its first
    /// one: what a write records in its entry header. Nothing to read for no tags.
    pub(crate) async fn stamp(&self, tags: &[String]) -> Result<Vec<(String, u64)>> {
        if tags.is_empty() {
            return Ok(Vec::new());
        }
        self.require_tags("set with tags")?;
        let mut names: Vec<&str> = tags.iter().map(String::as_str).collect();
        names.sort_unstable();
        names.dedup();
        let keys: Vec<String> = names.iter().map(|tag| self.tag_key(tag)).collect();
        let found = self.read_versions(&keys).await?;
        let mut stamped = Vec::with_capacity(names.len());
        for ((tag, key), found) in names.into_iter().zip(&keys).zip(found) {
            let version = match found.as_deref().and_then(version_of) {
                Some(version) => version,
                None if self.planted(FacadeBug::MissingTagIsVersionZero) => 0,
                None => self.first_version(key, found.is_some()).await?,
            };
            stamped.push((tag.to_owned(), version));
        }
        Ok(stamped)
    }

    /// Gives the tag under `key` a version: its first (unless another writer's lands first,
    /// then that one), or a new one over bytes that are no version (`occupied`).
    async fn first_version(&self, key: &str, occupied: bool) -> Result<u64> {
        let backend = &self.inner.backend;
        if occupied {
            let version = new_version();
            backend
                .set(key, version_bytes(version), None, Condition::Always)
                .await?;
            return Ok(version);
        }
        for _ in 0..STAMP_ATTEMPTS {
            let version = new_version();
            if backend
                .set(key, version_bytes(version), None, Condition::IfNotExists)
                .await?
            {
                return Ok(version);
            }
            // Another writer gave it one first: use theirs.
            if let Some(version) = backend.get(key).await?.as_deref().and_then(version_of) {
                return Ok(version);
            }
        }
        Err(Error::backend(
            backend.name(),
            "set with tags",
            Some(key),
            "a tag's version kept vanishing while it was written",
        ))
    }

    /// The stored versions under the tag version keys `keys`, positionally: from the local
    /// tier where it holds them, the rest in one store read (kept there for the next reads).
    async fn read_versions(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        let Some(tier) = &self.inner.local else {
            return self.inner.backend.get_many(keys).await;
        };
        let ticket = tier.ticket();
        let mut found = Vec::with_capacity(keys.len());
        let mut missing = Vec::new();
        for (at, key) in keys.iter().enumerate() {
            match tier.version(key) {
                Some(held) => found.push(held),
                None => {
                    found.push(None);
                    missing.push(at);
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let asked: Vec<String> = missing.iter().map(|at| keys[*at].clone()).collect();
        let answers = self.inner.backend.get_many(&asked).await?;
        for (at, answer) in missing.into_iter().zip(answers) {
            tier.fill_version(ticket, &keys[at], answer.clone());
            found[at] = answer;
        }
        Ok(found)
    }

    /// Whether each entry's tag versions are still current, with one batched read of the
    /// versions of every tag they carry (none when no entry has tags).
    pub(crate) async fn tags_current(&self, entries: &[&Stored<V>]) -> Result<Vec<bool>> {
        let headers: Vec<Option<&Header>> = entries
            .iter()
            .map(|stored| stored.header.as_ref())
            .collect();
        self.headers_current(&headers).await
    }

    /// [`Cache::tags_current`] of entries given by their headers.
    pub(crate) async fn headers_current(&self, entries: &[Option<&Header>]) -> Result<Vec<bool>> {
        fn tags_of<'h>(header: &Option<&'h Header>) -> &'h [(String, u64)] {
            header
                .map(|header| header.tags.as_slice())
                .unwrap_or_default()
        }
        let mut names: Vec<&str> = entries
            .iter()
            .flat_map(|stored| tags_of(stored).iter().map(|(tag, _)| tag.as_str()))
            .collect();
        if names.is_empty() || self.planted(FacadeBug::TagsNotChecked) {
            return Ok(vec![true; entries.len()]);
        }
        names.sort_unstable();
        names.dedup();
        let keys: Vec<String> = names.iter().map(|tag| self.tag_key(tag)).collect();
        let found = self.read_versions(&keys).await?;
        let zero_if_missing = self.planted(FacadeBug::MissingTagIsVersionZero);
        let current: HashMap<&str, Option<u64>> = names
            .into_iter()
            .zip(found)
            .map(|(tag, found)| {
                let version = match found.as_deref() {
                    None if zero_if_missing => Some(0),
                    found => found.and_then(version_of),
                };
                (tag, version)
            })
            .collect();
        Ok(entries
            .iter()
            .map(|stored| {
                tags_of(stored)
                    .iter()
                    .all(|(tag, version)| current.get(tag.as_str()) == Some(&Some(*version)))
            })
            .collect())
    }
}

/// A tag version as stored: eight bytes, big-endian.
fn version_of(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

fn version_bytes(version: u64) -> Bytes {
    Bytes::copy_from_slice(&version.to_be_bytes())
}

fn new_version() -> u64 {
    fastrand::u64(..)
}
