//! Signed values: an HMAC-SHA256 over the full key and the value.

use std::fmt;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::sealed::{Seal, Sealed};
use crate::raw::Layer;
use crate::{Backend, Result};

type HmacSha256 = Hmac<Sha256>;

/// The first bytes of a signed entry: a mark and the format's version.
const MAGIC: [u8; 2] = [0xC5, 0x01];
/// An HMAC-SHA256 tag.
const TAG: usize = 32;

/// Signs every value with an HMAC-SHA256 over the full store key and the value, and refuses any
/// entry whose signature does not verify, so that a process that can write to a shared store
/// cannot make the application trust a value it forged, nor one copied from another key
/// (aiohttp-client-cache's `secret_key` and `salt`; itsdangerous is its model).
///
/// - **Format**: `C5 01`, the 32-byte tag, then the value. The tag is the HMAC-SHA256, under
///   a key derived from the secret and the salt, of the key's length (u32, big-endian), the key
///   and the value.
/// - **Rotation**: values are signed with the first secret; [`Sign::also_accept`] adds secrets
///   whose signatures still verify, so that entries written before a rotation stay readable
///   until they expire.
/// - **Refusals**: an entry without a valid signature (forged, copied, written without the
///   layer, signed with a retired secret) is [`Error::Decode`](crate::Error::Decode) naming the
///   key and saying the signature did not verify; its bytes are never returned. A batch fails
///   with the first such key (the cache's [`DecodePolicy::Miss`](crate::DecodePolicy) asks
///   again without it).
/// - **Counters** are the store's plain decimal text, which cannot carry a signature: `incr`
///   answers [`Error::Unsupported`](crate::Error::Unsupported). Keep counters in a cache without
///   this layer.
/// - **Secrets** never appear in `Debug` output, errors or traces, and are wiped from memory
///   when the layer is dropped.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> cache_core::Result<()> {
/// use std::sync::Arc;
/// use cache_core::{Backend, Cache, Condition, Error, layers::Sign, testing::ReferenceBackend};
///
/// let store: Arc<dyn Backend> = Arc::new(ReferenceBackend::default());
/// let cache: Cache<String> = Cache::builder(Arc::clone(&store))
///     .layer(Sign::new(b"a secret of 32 bytes or more....").salt(b"responses"))
///     .build();
/// cache.set("k", &"trusted".to_string()).await?;
/// assert_eq!(cache.get("k").await?.as_deref(), Some("trusted"));
///
/// // Another writer of the store plants a value without the secret: it is refused.
/// store.set("k", "forged".into(), None, Condition::Always).await?;
/// assert!(matches!(cache.get("k").await, Err(Error::Decode { .. })));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Sign {
    secrets: Vec<Arc<Zeroizing<Vec<u8>>>>,
    salt: Arc<Zeroizing<Vec<u8>>>,
}

impl fmt::Debug for Sign {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sign")
            .field("secrets", &self.secrets.len())
            .field("salt", &"<redacted>")
            .finish()
    }
}

impl Sign {
    /// Signs with `secret` (any length; 32 random bytes or more is what it should be) and the
    /// default salt, `cachette`.
    pub fn new(secret: impl AsRef<[u8]>) -> Self {
        Self {
            secrets: vec![Arc::new(Zeroizing::new(secret.as_ref().to_vec()))],
            salt: Arc::new(Zeroizing::new(b"cachette".to_vec())),
        }
    }

    /// Derives the signing keys with `salt` too: caches that share a secret but not a salt
    /// cannot read each other's entries.
    #[must_use]
    pub fn salt(mut self, salt: impl AsRef<[u8]>) -> Self {
        self.salt = Arc::new(Zeroizing::new(salt.as_ref().to_vec()));
        self
    }

    /// Also accepts values signed with `secret` (an earlier one, after a rotation); values are
    /// still signed with the first.
    #[must_use]
    pub fn also_accept(mut self, secret: impl AsRef<[u8]>) -> Self {
        self.secrets
            .push(Arc::new(Zeroizing::new(secret.as_ref().to_vec())));
        self
    }

    fn keys(&self) -> Signer {
        let keys = self
            .secrets
            .iter()
            .map(|secret| {
                let mut derive = <HmacSha256 as KeyInit>::new_from_slice(secret)
                    .expect("HMAC takes keys of any length");
                derive.update(b"cachette-sign\x01");
                derive.update(&self.salt);
                let derived = Zeroizing::new(derive.finalize().into_bytes().to_vec());
                // Keyed once: each value then costs a clone of the keyed state, not the key's
                // two extra compressions.
                <HmacSha256 as KeyInit>::new_from_slice(&derived)
                    .expect("HMAC takes keys of any length")
            })
            .collect();
        Signer { keys }
    }
}

impl Layer for Sign {
    fn layer(&self, inner: Arc<dyn Backend>) -> Arc<dyn Backend> {
        Arc::new(Sealed {
            inner,
            seal: Arc::new(self.keys()),
        })
    }
}

/// The HMACs keyed with the derived keys: the first signs, any verifies.
pub(crate) struct Signer {
    keys: Vec<HmacSha256>,
}

impl Signer {
    fn mac(keyed: &HmacSha256, store_key: &str, value: &[u8]) -> HmacSha256 {
        let mut mac = keyed.clone();
        let length = u32::try_from(store_key.len()).unwrap_or(u32::MAX);
        mac.update(&length.to_be_bytes());
        mac.update(store_key.as_bytes());
        mac.update(value);
        mac
    }
}

impl Seal for Signer {
    const NAME: &'static str = "sign";
    const COUNTERS: bool = false;

    fn seal(&self, key: &str, value: Bytes) -> Result<Bytes> {
        let tag = Self::mac(&self.keys[0], key, &value)
            .finalize()
            .into_bytes();
        let mut sealed = BytesMut::with_capacity(MAGIC.len() + TAG + value.len());
        sealed.put_slice(&MAGIC);
        sealed.put_slice(&tag);
        sealed.put_slice(&value);
        Ok(sealed.freeze())
    }

    fn open(&self, key: &str, stored: Bytes) -> std::result::Result<Bytes, String> {
        let Some(rest) = stored.strip_prefix(&MAGIC[..]) else {
            return Err("the entry is not signed, so the signature did not verify".into());
        };
        if rest.len() < TAG {
            return Err("the entry is cut short, so the signature did not verify".into());
        }
        let (tag, value) = rest.split_at(TAG);
        // Constant-time comparisons, one per accepted key.
        let verified = self
            .keys
            .iter()
            .any(|secret| Self::mac(secret, key, value).verify_slice(tag).is_ok());
        if !verified {
            return Err("the signature did not verify".into());
        }
        Ok(stored.slice(MAGIC.len() + TAG..))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(secret: &[u8]) -> Signer {
        Sign::new(secret).keys()
    }

    #[test]
    fn a_value_opens_under_its_own_key_only() {
        let signer = signer(b"secret");
        let sealed = signer.seal("a", Bytes::from_static(b"value")).unwrap();
        assert_eq!(signer.open("a", sealed.clone()).unwrap(), "value");
        assert!(
            signer.open("b", sealed.clone()).is_err(),
            "copied to another key"
        );
        let mut flipped = sealed.to_vec();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(signer.open("a", flipped.into()).is_err(), "a changed value");
        assert!(
            signer.open("a", Bytes::from_static(b"value")).is_err(),
            "unsigned"
        );
    }

    #[test]
    fn rotation_signs_with_the_first_secret_and_accepts_the_rest() {
        let old = signer(b"old");
        let rotated = Sign::new(b"new").also_accept(b"old").keys();
        let written_before = old.seal("k", Bytes::from_static(b"v")).unwrap();
        assert_eq!(rotated.open("k", written_before).unwrap(), "v");
        let written_after = rotated.seal("k", Bytes::from_static(b"v")).unwrap();
        assert!(old.open("k", written_after.clone()).is_err());
        assert_eq!(signer(b"new").open("k", written_after).unwrap(), "v");
    }

    #[test]
    fn the_salt_separates_caches_that_share_a_secret() {
        let one = Sign::new(b"s").salt(b"one").keys();
        let two = Sign::new(b"s").salt(b"two").keys();
        let sealed = one.seal("k", Bytes::from_static(b"v")).unwrap();
        assert!(two.open("k", sealed).is_err());
    }

    #[test]
    fn debug_shows_no_secret() {
        let shown = format!("{:?}", Sign::new(b"hunter2-hunter2").salt(b"pepper"));
        assert!(
            !shown.contains("hunter2") && !shown.contains("pepper"),
            "{shown}"
        );
    }
}
