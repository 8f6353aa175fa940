//! TTL arithmetic shared by stores.

use std::time::Duration;

/// The longest TTL a store is asked to keep, in milliseconds: about 285,000 years. Longer TTLs
/// clamp to it, so `now + ttl` never overflows an `i64` of milliseconds.
pub const MAX_TTL_MILLIS: u64 = 1 << 53;

/// `ttl` in whole milliseconds for a store: partial milliseconds round up (so a tiny non-zero TTL
/// never becomes "already expired"), and very long TTLs clamp to [`MAX_TTL_MILLIS`].
///
/// ```
/// use std::time::Duration;
/// use cache_core::raw::ttl_millis;
///
/// assert_eq!(ttl_millis(Duration::from_micros(1)), 1);
/// assert_eq!(ttl_millis(Duration::from_millis(1500)), 1500);
/// assert_eq!(ttl_millis(Duration::ZERO), 0);
/// assert_eq!(ttl_millis(Duration::MAX), cache_core::raw::MAX_TTL_MILLIS);
/// ```
pub fn ttl_millis(ttl: Duration) -> u64 {
    let millis = ttl.as_millis();
    let rounded = if ttl.subsec_nanos().is_multiple_of(1_000_000) {
        millis
    } else {
        millis + 1
    };
    u64::try_from(rounded)
        .unwrap_or(u64::MAX)
        .min(MAX_TTL_MILLIS)
}
