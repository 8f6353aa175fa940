//! The store that seals every value on its way in and opens it on its way out: what the
//! signing, encrypting and compressing layers share.

use std::fmt::{self, Debug};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::raw::Forward;
use crate::{Backend, Condition, Error, Result, ScanCursor, ScanOptions, ScanPage, Ttl};

/// Values sealed or opened between two yields to the runtime: a batch of 100,000 then never
/// holds a worker thread for long (an HMAC or a cipher pass over each value is CPU work).
const CHUNK: usize = 256;

/// One way of sealing values: a signature, a cipher, a compression.
pub(crate) trait Seal: Send + Sync + 'static {
    /// The layer's name in errors.
    const NAME: &'static str;
    /// Whether counters pass through: their stored form is the store's to add to, so only a
    /// seal that leaves such short values as they are can let them through.
    const COUNTERS: bool;

    /// The bytes to store for `value` under the full key `key`.
    fn seal(&self, key: &str, value: Bytes) -> Result<Bytes>;

    /// The value `stored` under `key` holds, or why it cannot be trusted or read (the reason
    /// only: never the bytes, never a secret).
    fn open(&self, key: &str, stored: Bytes) -> std::result::Result<Bytes, String>;
}

/// A store whose values go through `seal` on the way in and `open` on the way out.
pub(crate) struct Sealed<S> {
    pub(crate) inner: Arc<dyn Backend>,
    pub(crate) seal: Arc<S>,
}

impl<S: Seal> Debug for Sealed<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(S::NAME)
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S: Seal> Sealed<S> {
    fn open(&self, key: &str, stored: Bytes) -> Result<Bytes> {
        self.seal.open(key, stored).map_err(|reason| Error::Decode {
            key: key.to_owned(),
            source: format!("{}: {reason}", S::NAME).into(),
        })
    }

    /// Opens each value, yielding to the runtime between chunks.
    async fn open_each(
        &self,
        keys: &[String],
        values: Vec<Option<Bytes>>,
    ) -> Result<Vec<Option<Bytes>>> {
        let mut opened = Vec::with_capacity(values.len());
        for (i, (key, value)) in keys.iter().zip(values).enumerate() {
            if i > 0 && i % CHUNK == 0 {
                tokio::task::yield_now().await;
            }
            opened.push(value.map(|value| self.open(key, value)).transpose()?);
        }
        Ok(opened)
    }
}

#[async_trait]
impl<S: Seal> Forward for Sealed<S> {
    fn inner(&self) -> &dyn Backend {
        &*self.inner
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        let stored = self.inner.get(key).await?;
        stored.map(|stored| self.open(key, stored)).transpose()
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        let stored = self.inner.get_many(keys).await?;
        self.open_each(keys, stored).await
    }

    async fn set(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        condition: Condition,
    ) -> Result<bool> {
        let sealed = self.seal.seal(key, value)?;
        self.inner.set(key, sealed, ttl, condition).await
    }

    async fn set_many(&self, entries: Vec<(String, Bytes)>, ttl: Option<Duration>) -> Result<()> {
        let mut sealed = Vec::with_capacity(entries.len());
        for (i, (key, value)) in entries.into_iter().enumerate() {
            if i > 0 && i % CHUNK == 0 {
                tokio::task::yield_now().await;
            }
            let value = self.seal.seal(&key, value)?;
            sealed.push((key, value));
        }
        self.inner.set_many(sealed, ttl).await
    }

    async fn take(&self, key: &str) -> Result<Option<Bytes>> {
        let stored = self.inner.take(key).await?;
        stored.map(|stored| self.open(key, stored)).transpose()
    }

    async fn take_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        let stored = self.inner.take_many(keys).await?;
        self.open_each(keys, stored).await
    }

    async fn get_with_ttl(&self, key: &str) -> Result<Option<(Bytes, Ttl)>> {
        match self.inner.get_with_ttl(key).await? {
            Some((stored, ttl)) => Ok(Some((self.open(key, stored)?, ttl))),
            None => Ok(None),
        }
    }

    async fn get_many_with_ttl(&self, keys: &[String]) -> Result<Vec<Option<(Bytes, Ttl)>>> {
        let stored = self.inner.get_many_with_ttl(keys).await?;
        let mut opened = Vec::with_capacity(stored.len());
        for (i, (key, found)) in keys.iter().zip(stored).enumerate() {
            if i > 0 && i % CHUNK == 0 {
                tokio::task::yield_now().await;
            }
            opened.push(match found {
                Some((stored, ttl)) => Some((self.open(key, stored)?, ttl)),
                None => None,
            });
        }
        Ok(opened)
    }

    async fn scan(
        &self,
        prefix: &str,
        cursor: ScanCursor,
        options: ScanOptions,
    ) -> Result<ScanPage> {
        let mut page = self.inner.scan(prefix, cursor, options).await?;
        for (key, value) in &mut page.entries {
            if let Some(stored) = value.take() {
                *value = Some(self.open(key, stored)?);
            }
        }
        Ok(page)
    }

    // A lease holds a random token, not a cached value: nothing to seal. A forged lease can
    // only make loads wait until it expires, never make a reader trust a value.
    async fn acquire_lease(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        self.inner.acquire_lease(key, token, ttl).await
    }

    async fn renew_lease(&self, key: &str, token: &str, ttl: Duration) -> Result<bool> {
        self.inner.renew_lease(key, token, ttl).await
    }

    async fn release_lease(&self, key: &str, token: &str) -> Result<bool> {
        self.inner.release_lease(key, token).await
    }

    async fn incr(&self, key: &str, delta: i64, ttl: Option<Duration>) -> Result<i64> {
        if !S::COUNTERS {
            // The store adds to the plain decimal text; a sealed counter could not be added to,
            // and a plain one could not be trusted.
            return Err(Error::unsupported(S::NAME, "incr"));
        }
        self.inner.incr(key, delta, ttl).await
    }
}
