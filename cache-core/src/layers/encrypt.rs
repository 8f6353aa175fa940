//! Encrypted values: XChaCha20-Poly1305 with a random nonce per write.

use std::fmt;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use chacha20poly1305::aead::{Aead, Generate, Payload};
use chacha20poly1305::{KeyInit, XChaCha20Poly1305, XNonce};

use super::sealed::{Seal, Sealed};
use crate::raw::Layer;
use crate::{Backend, Error, Result};

/// The first bytes of an encrypted entry: a mark and the format's version.
const MAGIC: [u8; 2] = [0xCE, 0x01];
/// An XChaCha20 nonce.
const NONCE: usize = 24;
/// A Poly1305 tag.
const TAG: usize = 16;
/// What the associated data starts with, before the full key.
const CONTEXT: &[u8] = b"cachette-encrypt\x01";

/// Encrypts every value with XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`): a random
/// 24-byte nonce per write, and the full store key as associated data, so that an entry copied
/// under another key does not decrypt. The store sees neither the values nor anything it could
/// change unseen (keyv's and cacheable's encryption; cachette authenticates as well).
///
/// - **Format**: `CE 01`, the nonce, the ciphertext and its 16-byte tag: 42 bytes more than the
///   value.
/// - **Keys** are 32 bytes ([`Encrypt::new`]; [`Encrypt::from_slice`] checks the length).
///   Values are encrypted with the first key; [`Encrypt::also_accept`] adds keys that still
///   decrypt, for rotation.
/// - **Refusals**: an entry that does not decrypt (forged, copied, changed, written without the
///   layer or under a retired key) is [`Error::Decode`](crate::Error::Decode) naming the key.
/// - **Counters**, the store's plain decimal text, cannot be encrypted: `incr` answers
///   [`Error::Unsupported`](crate::Error::Unsupported).
/// - **Keys** never appear in `Debug` output, errors or traces, and are wiped from memory when
///   the layer is dropped.
///
/// Stack a [`Compress`](super::Compress) layer outside it (given after it), so that values are
/// compressed before they are encrypted: ciphertext does not compress.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> cache_core::Result<()> {
/// use std::sync::Arc;
/// use cache_core::{Backend, Cache, layers::Encrypt, testing::ReferenceBackend};
///
/// let store: Arc<dyn Backend> = Arc::new(ReferenceBackend::default());
/// let cache: Cache<String> = Cache::builder(Arc::clone(&store))
///     .layer(Encrypt::new([7; 32]))
///     .build();
/// cache.set("k", &"secret note".to_string()).await?;
/// assert_eq!(cache.get("k").await?.as_deref(), Some("secret note"));
/// let stored = store.get("k").await?.unwrap();
/// assert!(!stored.windows(6).any(|w| w == b"secret"));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Encrypt {
    ciphers: Vec<Arc<XChaCha20Poly1305>>,
}

impl fmt::Debug for Encrypt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Encrypt")
            .field("keys", &self.ciphers.len())
            .finish()
    }
}

impl Encrypt {
    /// Encrypts with `key`.
    pub fn new(key: [u8; 32]) -> Self {
        let mut key = zeroize::Zeroizing::new(key);
        let cipher = XChaCha20Poly1305::new(&(*key).into());
        zeroize::Zeroize::zeroize(&mut *key);
        Self {
            ciphers: vec![Arc::new(cipher)],
        }
    }

    /// Encrypts with `key`, which must be 32 bytes: [`Error::Config`](crate::Error::Config)
    /// otherwise.
    pub fn from_slice(key: &[u8]) -> Result<Self> {
        Ok(Self {
            ciphers: vec![Arc::new(cipher_of(key)?)],
        })
    }

    /// Also decrypts values encrypted with `key` (an earlier one, after a rotation); values
    /// are still encrypted with the first key.
    #[must_use]
    pub fn also_accept(mut self, key: [u8; 32]) -> Self {
        self.ciphers
            .push(Arc::new(XChaCha20Poly1305::new(&key.into())));
        self
    }
}

fn cipher_of(key: &[u8]) -> Result<XChaCha20Poly1305> {
    XChaCha20Poly1305::new_from_slice(key).map_err(|_| {
        Error::config(format!(
            "an encryption key must be 32 bytes, not {}",
            key.len()
        ))
    })
}

impl Layer for Encrypt {
    fn layer(&self, inner: Arc<dyn Backend>) -> Arc<dyn Backend> {
        Arc::new(Sealed {
            inner,
            seal: Arc::new(Ciphers(self.ciphers.clone())),
        })
    }
}

/// The ciphers: the first encrypts, any decrypts.
pub(crate) struct Ciphers(Vec<Arc<XChaCha20Poly1305>>);

fn associated_data(key: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(CONTEXT.len() + key.len());
    aad.extend_from_slice(CONTEXT);
    aad.extend_from_slice(key.as_bytes());
    aad
}

impl Seal for Ciphers {
    const NAME: &'static str = "encrypt";
    const COUNTERS: bool = false;

    fn seal(&self, key: &str, value: Bytes) -> Result<Bytes> {
        let failed = |what: String| Error::Encode {
            key: key.to_owned(),
            source: what.into(),
        };
        let nonce = XNonce::try_generate()
            .map_err(|error| failed(format!("no random nonce from the OS: {error}")))?;
        let aad = associated_data(key);
        let ciphertext = self.0[0]
            .encrypt(
                &nonce,
                Payload {
                    msg: &value,
                    aad: &aad,
                },
            )
            .map_err(|_| failed("the value is too long to encrypt".into()))?;
        let mut sealed = BytesMut::with_capacity(MAGIC.len() + NONCE + ciphertext.len());
        sealed.put_slice(&MAGIC);
        sealed.put_slice(&nonce);
        sealed.put_slice(&ciphertext);
        Ok(sealed.freeze())
    }

    fn open(&self, key: &str, stored: Bytes) -> std::result::Result<Bytes, String> {
        let Some(rest) = stored.strip_prefix(&MAGIC[..]) else {
            return Err("the entry is not encrypted, so it cannot be trusted".into());
        };
        if rest.len() < NONCE + TAG {
            return Err("the entry is cut short and did not decrypt".into());
        }
        let (nonce, ciphertext) = rest.split_at(NONCE);
        let nonce = XNonce::try_from(nonce).map_err(|_| "a malformed nonce".to_owned())?;
        let aad = associated_data(key);
        self.0
            .iter()
            .find_map(|cipher| {
                cipher
                    .decrypt(
                        &nonce,
                        Payload {
                            msg: ciphertext,
                            aad: &aad,
                        },
                    )
                    .ok()
            })
            .map(Bytes::from)
            .ok_or_else(|| "the entry did not decrypt (forged, changed or another key's)".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ciphers(keys: &[[u8; 32]]) -> Ciphers {
        let mut encrypt = Encrypt::new(keys[0]);
        for key in &keys[1..] {
            encrypt = encrypt.also_accept(*key);
        }
        Ciphers(encrypt.ciphers)
    }

    #[test]
    fn a_value_decrypts_under_its_own_key_only() {
        let ciphers = ciphers(&[[1; 32]]);
        let sealed = ciphers.seal("a", Bytes::from_static(b"value")).unwrap();
        assert_eq!(ciphers.open("a", sealed.clone()).unwrap(), "value");
        assert!(
            ciphers.open("b", sealed.clone()).is_err(),
            "copied to another key"
        );
        let again = ciphers.seal("a", Bytes::from_static(b"value")).unwrap();
        assert_ne!(sealed, again, "a fresh nonce per write");
        let mut flipped = sealed.to_vec();
        flipped[30] ^= 1;
        assert!(ciphers.open("a", flipped.into()).is_err());
    }

    #[test]
    fn rotation_encrypts_with_the_first_key_and_accepts_the_rest() {
        let before = ciphers(&[[1; 32]])
            .seal("k", Bytes::from_static(b"v"))
            .unwrap();
        let rotated = ciphers(&[[2; 32], [1; 32]]);
        assert_eq!(rotated.open("k", before).unwrap(), "v");
        let after = rotated.seal("k", Bytes::from_static(b"v")).unwrap();
        assert!(ciphers(&[[1; 32]]).open("k", after).is_err());
    }

    #[test]
    fn keys_of_the_wrong_length_are_a_config_error() {
        assert!(matches!(
            Encrypt::from_slice(&[0; 16]),
            Err(Error::Config { .. })
        ));
        assert!(Encrypt::from_slice(&[0; 32]).is_ok());
        assert_eq!(
            format!("{:?}", Encrypt::new([9; 32])),
            "Encrypt { keys: 1 }"
        );
    }
}
