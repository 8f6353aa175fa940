//! Compressed values: LZ4 above a size threshold.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use super::sealed::{Seal, Sealed};
use crate::raw::Layer;
use crate::{Backend, Result};

/// The first byte of a compressed entry.
const COMPRESSED: u8 = 0xC7;
/// The first byte of an entry kept as it is whose own first byte is one of these two marks.
const ESCAPED: u8 = 0xC6;

/// Compresses values of `threshold` bytes or more with LZ4 (`lz4_flex`, pure Rust), when that
/// makes them smaller; smaller values, and those LZ4 cannot shrink, are stored as they are.
///
/// LZ4 rather than zstd: it compresses at several hundred MB/s and decompresses at GB/s on one
/// core, in pure Rust with no C toolchain, so that it costs little next to a store round trip;
/// zstd compresses JSON and CBOR documents better but several times slower.
///
/// - **Format**: a compressed entry is `C7` then LZ4's block with its length prepended (u32,
///   little-endian). Any other entry is the value itself, except that a value whose first byte
///   is `C6` or `C7` gets a `C6` in front. So entries written before the layer was added read
///   as they are, unless they begin with one of those two bytes (neither CBOR nor JSON values
///   of cachette's serializers usually do: they are CBOR tags 6 and 7).
/// - **Refusals**: a compressed entry that does not decompress, or that says it holds more
///   than [`Compress::max_value_bytes`], is [`Error::Decode`](crate::Error::Decode) naming the
///   key: nothing is allocated for a forged length.
/// - **Counters** pass through: their decimal text never starts with a mark.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> cache_core::Result<()> {
/// use std::sync::Arc;
/// use cache_core::{Backend, Cache, Json, layers::Compress, testing::ReferenceBackend};
///
/// let store: Arc<dyn Backend> = Arc::new(ReferenceBackend::default());
/// let cache: Cache<String> = Cache::builder(Arc::clone(&store))
///     .serializer(Json)
///     .layer(Compress::new().threshold(256))
///     .build();
/// let page = "<p>cachette</p>".repeat(100);
/// cache.set("page", &page).await?;
/// assert!(store.get("page").await?.unwrap().len() < page.len() / 4);
/// assert_eq!(cache.get("page").await?, Some(page));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Compress {
    threshold: usize,
    max_value_bytes: usize,
}

impl Default for Compress {
    fn default() -> Self {
        Self::new()
    }
}

impl Compress {
    /// Compresses values of 1 KiB or more, and reads back at most 512 MiB per value.
    pub fn new() -> Self {
        Self {
            threshold: 1024,
            max_value_bytes: 512 * 1024 * 1024,
        }
    }

    /// Compresses values of `bytes` bytes or more.
    #[must_use]
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// The largest value a compressed entry may unpack to; a larger claimed length is refused
    /// before anything is allocated.
    #[must_use]
    pub fn max_value_bytes(mut self, bytes: usize) -> Self {
        self.max_value_bytes = bytes;
        self
    }
}

impl Layer for Compress {
    fn layer(&self, inner: Arc<dyn Backend>) -> Arc<dyn Backend> {
        Arc::new(Sealed {
            inner,
            seal: Arc::new(*self),
        })
    }
}

impl Seal for Compress {
    const NAME: &'static str = "compress";
    const COUNTERS: bool = true;

    fn seal(&self, _key: &str, value: Bytes) -> Result<Bytes> {
        if value.len() >= self.threshold && value.len() <= u32::MAX as usize {
            let packed = lz4_flex::compress_prepend_size(&value);
            if packed.len() + 1 < value.len() {
                let mut sealed = BytesMut::with_capacity(1 + packed.len());
                sealed.put_u8(COMPRESSED);
                sealed.put_slice(&packed);
                return Ok(sealed.freeze());
            }
        }
        match value.first() {
            Some(&COMPRESSED | &ESCAPED) => {
                let mut sealed = BytesMut::with_capacity(1 + value.len());
                sealed.put_u8(ESCAPED);
                sealed.put_slice(&value);
                Ok(sealed.freeze())
            }
            _ => Ok(value),
        }
    }

    fn open(&self, _key: &str, stored: Bytes) -> std::result::Result<Bytes, String> {
        match stored.first() {
            Some(&ESCAPED) => Ok(stored.slice(1..)),
            Some(&COMPRESSED) => {
                let packed = &stored[1..];
                let Some(length) = packed.first_chunk::<4>() else {
                    return Err("the compressed entry is cut short".into());
                };
                let length = u32::from_le_bytes(*length) as usize;
                if length > self.max_value_bytes {
                    return Err(format!(
                        "the compressed entry claims {length} bytes, more than the {} allowed",
                        self.max_value_bytes
                    ));
                }
                lz4_flex::decompress_size_prepended(packed)
                    .map(Bytes::from)
                    .map_err(|error| format!("the compressed entry does not decompress: {error}"))
            }
            _ => Ok(stored),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_incompressible_values_stay_as_they_are() {
        let compress = Compress::new().threshold(16);
        let small = Bytes::from_static(b"tiny");
        assert_eq!(compress.seal("k", small.clone()).unwrap(), small);
        let noise: Bytes = (0..4096_u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let sealed = compress.seal("k", noise.clone()).unwrap();
        assert_eq!(compress.open("k", sealed).unwrap(), noise);
        let repeated = Bytes::from(vec![b'a'; 4096]);
        let sealed = compress.seal("k", repeated.clone()).unwrap();
        assert!(sealed.len() < 100 && sealed[0] == COMPRESSED);
        assert_eq!(compress.open("k", sealed).unwrap(), repeated);
    }

    #[test]
    fn values_that_start_with_a_mark_are_escaped_and_old_entries_read_as_they_are() {
        let compress = Compress::new();
        for value in [&[COMPRESSED, 1, 2][..], &[ESCAPED][..], &[][..]] {
            let value = Bytes::copy_from_slice(value);
            let sealed = compress.seal("k", value.clone()).unwrap();
            assert_eq!(compress.open("k", sealed).unwrap(), value);
        }
        let old = Bytes::from_static(b"{\"written\":\"before the layer\"}");
        assert_eq!(compress.open("k", old.clone()).unwrap(), old);
    }

    #[test]
    fn a_forged_length_is_refused_before_allocating() {
        let compress = Compress::new().max_value_bytes(1024);
        let forged = Bytes::from(vec![COMPRESSED, 0xff, 0xff, 0xff, 0x7f, 0, 0]);
        let error = compress.open("k", forged).unwrap_err();
        assert!(error.contains("more than the 1024 allowed"), "{error}");
        assert!(
            compress
                .open("k", Bytes::from_static(&[COMPRESSED, 1]))
                .is_err()
        );
    }
}
