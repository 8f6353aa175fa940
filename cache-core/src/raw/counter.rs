//! The stored form of a counter: the decimal ASCII of an `i64`, as Redis keeps it.

use bytes::Bytes;

use crate::{Error, Result};

/// The counter stored as `bytes`, or [`Error::NotACounter`] naming `key` when they are not the
/// decimal ASCII of an `i64`: an optional `-`, then digits, nothing else (no `+`, no spaces, no
/// leading zeros beyond a lone `0`, as Redis reads them).
///
/// ```
/// use cache_core::raw::parse_counter;
///
/// assert_eq!(parse_counter("k", b"-42").unwrap(), -42);
/// assert!(parse_counter("k", b"4 2").is_err());
/// assert!(parse_counter("k", b"\xa1ax").is_err());
/// ```
pub fn parse_counter(key: &str, bytes: &[u8]) -> Result<i64> {
    let digits = bytes.strip_prefix(b"-").unwrap_or(bytes);
    let canonical = !digits.is_empty()
        && digits.iter().all(u8::is_ascii_digit)
        && (digits.len() == 1 || digits[0] != b'0')
        && bytes != b"-0";
    let parsed = if canonical {
        std::str::from_utf8(bytes)
            .ok()
            .and_then(|text| text.parse().ok())
    } else {
        None
    };
    parsed.ok_or_else(|| {
        Error::not_a_counter(
            key,
            format!(
                "it holds {} bytes that are not the decimal ASCII of a 64-bit integer",
                bytes.len()
            ),
        )
    })
}

/// `current + delta`, or [`Error::NotACounter`] naming `key` when the sum leaves `i64`.
pub fn add_to_counter(key: &str, current: i64, delta: i64) -> Result<i64> {
    current.checked_add(delta).ok_or_else(|| {
        Error::not_a_counter(
            key,
            format!("adding {delta} to {current} overflows a 64-bit integer"),
        )
    })
}

/// The stored form of `value`.
pub fn counter_bytes(value: i64) -> Bytes {
    Bytes::from(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_read_as_redis_reads_them() {
        for (bytes, value) in [
            (&b"0"[..], 0),
            (b"7", 7),
            (b"-7", -7),
            (b"9223372036854775807", i64::MAX),
            (b"-9223372036854775808", i64::MIN),
        ] {
            assert_eq!(parse_counter("k", bytes).unwrap(), value);
            assert_eq!(counter_bytes(value), bytes);
        }
        for bytes in [
            &b""[..],
            b"-",
            b"+1",
            b" 1",
            b"1 ",
            b"01",
            b"-0",
            b"1.5",
            b"9223372036854775808",
            b"\xff",
        ] {
            let error = parse_counter("k", bytes).unwrap_err();
            assert!(matches!(error, Error::NotACounter { .. }), "{bytes:?}");
        }
        assert!(add_to_counter("k", i64::MAX, 1).is_err());
        assert_eq!(add_to_counter("k", i64::MAX, -1).unwrap(), i64::MAX - 1);
    }
}
