//! The entry header: the few facts a cache with freshness or tags stores before the serializer's
//! bytes.
//!
//! A cache writes it only when it uses one of those features
//! ([`CacheBuilder::fresh_for`](crate::CacheBuilder::fresh_for)); every other cache writes the
//! serializer's bytes alone, so `Json` entries stay plain JSON for other languages' clients.
//! Stored data outlives releases, so the format below is stable: a later release may add a
//! version, never change this one.
//!
//! # Format, version 1
//!
//! All integers are unsigned and big-endian; times are milliseconds since the Unix epoch.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | magic, `0xCA` |
//! | 1 | 1 | format version, `0x01` |
//! | 2 | 1 | flags (below) |
//! | 3 | 8 | written at |
//! | … | 8 | fresh until, if flag `FRESH_UNTIL` |
//! | … | 8 | expires at, if flag `EXPIRES_AT` |
//! | … | 2 | tag count *n* ≥ 1, if flag `TAGS` |
//! | … | *n* × (2 + *len* + 8) | each tag: name length *len*, the name in UTF-8, its version |
//! | … | rest | the serializer's bytes (none for a negative entry) |
//!
//! Flags: bit 0 `NEGATIVE` (the loader found nothing; the payload is empty), bit 1
//! `FRESH_UNTIL`, bit 2 `EXPIRES_AT`, bit 3 `TAGS`. Bits 4 to 7 are reserved and must be zero.
//!
//! Decoding never panics and allocates no more than the input paid for: a tag list is read
//! against the bytes that are there, not the count the header claims. Anything that does not
//! parse (another magic, a newer version, a reserved bit, a cut field, a name that is not UTF-8,
//! a negative entry with a payload) is a [`HeaderError`], which the cache reports as
//! [`Error::Decode`](crate::Error::Decode) naming the key.
//!
//! ```
//! use cache_core::raw::header::{Header, decode, encode};
//!
//! let header = Header {
//!     written_at_ms: 1_700_000_000_000,
//!     fresh_until_ms: Some(1_700_000_060_000),
//!     ..Header::default()
//! };
//! let stored = encode(&header, b"payload").unwrap();
//! assert_eq!(&stored[..3], &[0xCA, 0x01, 0b0000_0010]);
//! let (read, payload) = decode(&stored).unwrap();
//! assert_eq!(read, header);
//! assert_eq!(&payload[..], b"payload");
//! ```

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

/// The first byte of every header.
pub const MAGIC: u8 = 0xCA;
/// The format version this release writes and reads.
pub const VERSION: u8 = 1;

const NEGATIVE: u8 = 1 << 0;
const FRESH_UNTIL: u8 = 1 << 1;
const EXPIRES_AT: u8 = 1 << 2;
const TAGS: u8 = 1 << 3;
const KNOWN_FLAGS: u8 = NEGATIVE | FRESH_UNTIL | EXPIRES_AT | TAGS;

/// The most tags one entry may carry, and the longest tag name in bytes: both fit the format's
/// two-byte fields.
pub const MAX_TAGS: usize = u16::MAX as usize;
/// See [`MAX_TAGS`].
pub const MAX_TAG_LEN: usize = u16::MAX as usize;

/// The facts stored before a value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    /// When the entry was written.
    pub written_at_ms: u64,
    /// When it turns stale; `None`: fresh until it expires.
    pub fresh_until_ms: Option<u64>,
    /// When it expires, as the writer computed it from the TTL; `None`: never.
    pub expires_at_ms: Option<u64>,
    /// The loader found nothing: a negative entry, with no payload.
    pub negative: bool,
    /// Each tag the entry was written under, with the tag's version at that time.
    pub tags: Vec<(String, u64)>,
}

/// Bytes that are not a header this release can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderError(&'static str);

impl fmt::Display for HeaderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a cachette entry header: {}", self.0)
    }
}

impl std::error::Error for HeaderError {}

/// The header's bytes followed by `payload`. Fails only for more than [`MAX_TAGS`] tags or a
/// tag name longer than [`MAX_TAG_LEN`] bytes, which the format cannot hold.
pub fn encode(header: &Header, payload: &[u8]) -> Result<Bytes, HeaderError> {
    if header.tags.len() > MAX_TAGS {
        return Err(HeaderError("more than 65,535 tags"));
    }
    if header.tags.iter().any(|(name, _)| name.len() > MAX_TAG_LEN) {
        return Err(HeaderError("a tag name longer than 65,535 bytes"));
    }
    let mut flags = 0;
    let mut len = 3 + 8 + payload.len();
    if header.negative {
        flags |= NEGATIVE;
    }
    if header.fresh_until_ms.is_some() {
        flags |= FRESH_UNTIL;
        len += 8;
    }
    if header.expires_at_ms.is_some() {
        flags |= EXPIRES_AT;
        len += 8;
    }
    if !header.tags.is_empty() {
        flags |= TAGS;
        len += 2 + header
            .tags
            .iter()
            .map(|(name, _)| 2 + name.len() + 8)
            .sum::<usize>();
    }
    let mut out = BytesMut::with_capacity(len);
    out.put_u8(MAGIC);
    out.put_u8(VERSION);
    out.put_u8(flags);
    out.put_u64(header.written_at_ms);
    if let Some(at) = header.fresh_until_ms {
        out.put_u64(at);
    }
    if let Some(at) = header.expires_at_ms {
        out.put_u64(at);
    }
    if !header.tags.is_empty() {
        out.put_u16(header.tags.len() as u16);
        for (name, version) in &header.tags {
            out.put_u16(name.len() as u16);
            out.put_slice(name.as_bytes());
            out.put_u64(*version);
        }
    }
    out.put_slice(payload);
    Ok(out.freeze())
}

/// The header at the start of `stored` and the payload after it (a view of the same buffer,
/// not a copy).
pub fn decode(stored: &Bytes) -> Result<(Header, Bytes), HeaderError> {
    let mut reader = Reader {
        bytes: stored,
        at: 0,
    };
    if reader.u8("the magic byte")? != MAGIC {
        return Err(HeaderError("the first byte is not 0xCA"));
    }
    match reader.u8("the version")? {
        VERSION => {}
        0 => return Err(HeaderError("version 0 does not exist")),
        _ => return Err(HeaderError("written by a newer release (format version)")),
    }
    let flags = reader.u8("the flags")?;
    if flags & !KNOWN_FLAGS != 0 {
        return Err(HeaderError("a reserved flag is set"));
    }
    let mut header = Header {
        written_at_ms: reader.u64("written at")?,
        negative: flags & NEGATIVE != 0,
        ..Header::default()
    };
    if flags & FRESH_UNTIL != 0 {
        header.fresh_until_ms = Some(reader.u64("fresh until")?);
    }
    if flags & EXPIRES_AT != 0 {
        header.expires_at_ms = Some(reader.u64("expires at")?);
    }
    if flags & TAGS != 0 {
        let count = usize::from(reader.u16("the tag count")?);
        if count == 0 {
            return Err(HeaderError("the tag flag is set with no tags"));
        }
        // Each tag takes at least ten bytes, so what is left bounds what a count can claim.
        let mut tags = Vec::with_capacity(count.min(reader.left() / 10));
        for _ in 0..count {
            let len = usize::from(reader.u16("a tag name's length")?);
            let name = reader.take(len, "a tag name")?;
            let name = std::str::from_utf8(name)
                .map_err(|_| HeaderError("a tag name is not UTF-8"))?
                .to_owned();
            tags.push((name, reader.u64("a tag version")?));
        }
        header.tags = tags;
    }
    let payload = stored.slice(reader.at..);
    if header.negative && !payload.is_empty() {
        return Err(HeaderError("a negative entry carries a value"));
    }
    Ok((header, payload))
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], HeaderError> {
        if self.left() < len {
            return Err(HeaderError(what_is_cut(what)));
        }
        let taken = &self.bytes[self.at..self.at + len];
        self.at += len;
        Ok(taken)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, HeaderError> {
        Ok(self.take(1, what)?[0])
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, HeaderError> {
        let mut field = [0; 2];
        field.copy_from_slice(self.take(2, what)?);
        Ok(u16::from_be_bytes(field))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, HeaderError> {
        let mut field = [0; 8];
        field.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_be_bytes(field))
    }
}

/// The message for a field the bytes end inside of.
fn what_is_cut(what: &'static str) -> &'static str {
    match what {
        "the magic byte" => "the entry is empty",
        "the version" => "the version byte is missing",
        "the flags" => "the flags byte is missing",
        "written at" => "the written-at time is cut short",
        "fresh until" => "the fresh-until time is cut short",
        "expires at" => "the expires-at time is cut short",
        "the tag count" => "the tag count is cut short",
        "a tag name's length" => "a tag name's length is cut short",
        "a tag name" => "a tag name is cut short",
        _ => "a tag version is cut short",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Header {
        Header {
            written_at_ms: 1,
            fresh_until_ms: Some(2),
            expires_at_ms: Some(u64::MAX),
            negative: false,
            tags: vec![("user:7".into(), 9), (String::new(), 0), ("é".into(), 3)],
        }
    }

    #[test]
    fn every_field_round_trips() {
        for header in [Header::default(), full()] {
            let stored = encode(&header, b"{\"a\":1}").expect("encodes");
            let (read, payload) = decode(&stored).expect("decodes");
            assert_eq!(read, header);
            assert_eq!(&payload[..], b"{\"a\":1}");
        }
        let negative = Header {
            negative: true,
            ..full()
        };
        let (read, payload) = decode(&encode(&negative, b"").expect("encodes")).expect("decodes");
        assert_eq!(read, negative);
        assert!(payload.is_empty());
    }

    #[test]
    fn the_layout_is_the_documented_one() {
        let header = Header {
            written_at_ms: 0x0102_0304_0506_0708,
            expires_at_ms: Some(0x1112_1314_1516_1718),
            tags: vec![("t".into(), 5)],
            ..Header::default()
        };
        let stored = encode(&header, b"v").expect("encodes");
        let expected: &[u8] = &[
            0xCA,
            0x01,
            0b0000_1100, // magic, version, EXPIRES_AT | TAGS
            1,
            2,
            3,
            4,
            5,
            6,
            7,
            8, // written at
            0x11,
            0x12,
            0x13,
            0x14,
            0x15,
            0x16,
            0x17,
            0x18, // expires at
            0,
            1, // one tag
            0,
            1,
            b't',
            0,
            0,
            0,
            0,
            0,
            0,
            0,
            5,    // "t", version 5
            b'v', // the payload
        ];
        assert_eq!(&stored[..], expected);
    }

    #[test]
    fn every_cut_of_a_header_is_an_error() {
        let stored = encode(&full(), b"").expect("encodes");
        for cut in 0..stored.len() {
            let error = decode(&stored.slice(..cut)).expect_err("a cut header");
            assert!(
                error.to_string().contains("cut short") || cut < 3,
                "{error}"
            );
        }
    }

    #[test]
    fn what_the_format_cannot_hold_is_refused_when_writing() {
        let long = Header {
            tags: vec![("x".repeat(MAX_TAG_LEN + 1), 1)],
            ..Header::default()
        };
        assert!(encode(&long, b"").is_err());
        let many = Header {
            tags: vec![(String::new(), 1); MAX_TAGS + 1],
            ..Header::default()
        };
        assert!(encode(&many, b"").is_err());
    }

    #[test]
    fn foreign_and_future_bytes_are_refused() {
        let stored = encode(&full(), b"x").expect("encodes").to_vec();
        let with = |at: usize, byte: u8| {
            let mut bytes = stored.clone();
            bytes[at] = byte;
            decode(&Bytes::from(bytes)).expect_err("refused")
        };
        assert!(with(0, b'{').to_string().contains("0xCA"));
        assert!(with(1, 2).to_string().contains("newer release"));
        assert!(with(1, 0).to_string().contains("version 0"));
        assert!(with(2, 0xFF).to_string().contains("reserved"));
        let negative = encode(
            &Header {
                negative: true,
                ..Header::default()
            },
            b"x",
        )
        .expect("encodes");
        assert!(
            decode(&negative)
                .expect_err("refused")
                .to_string()
                .contains("carries a value")
        );
    }
}
