//! A key prefix as a range of keys, for stores that keep keys sorted.

/// The smallest string above every string that starts with `prefix`, in the byte order of UTF-8
/// (which is code point order), or `None` when no string is (the empty prefix, or one made of
/// U+10FFFF only): the exclusive upper end of the prefix's range `[prefix, upper)`. For stores
/// that compare keys as text.
///
/// ```
/// use cache_core::raw::prefix_upper_bound;
///
/// assert_eq!(prefix_upper_bound("a:").as_deref(), Some("a;"));
/// assert_eq!(prefix_upper_bound("a\u{10FFFF}").as_deref(), Some("b"));
/// assert_eq!(prefix_upper_bound("\u{D7FF}").as_deref(), Some("\u{E000}"));
/// assert_eq!(prefix_upper_bound(""), None);
/// ```
pub fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let mut next = u32::from(last) + 1;
        // Surrogates are not chars; the next char after them is U+E000.
        if (0xD800..=0xDFFF).contains(&next) {
            next = 0xE000;
        }
        if let Some(next) = char::from_u32(next) {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// The least byte string greater than every byte string starting with `prefix`: the prefix with
/// its trailing `0xFF` bytes dropped and its last byte stepped up; `None` means no upper end. For
/// stores that compare keys as bytes.
///
/// ```
/// use cache_core::raw::prefix_upper_bound_bytes;
///
/// assert_eq!(prefix_upper_bound_bytes(b"a:").as_deref(), Some(&b"a;"[..]));
/// assert_eq!(prefix_upper_bound_bytes(b"a\xFF").as_deref(), Some(&b"b"[..]));
/// assert_eq!(prefix_upper_bound_bytes(b""), None);
/// ```
pub fn prefix_upper_bound_bytes(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut upper = prefix.to_vec();
    while let Some(last) = upper.pop() {
        if last < u8::MAX {
            upper.push(last + 1);
            return Some(upper);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLES: &[&str] = &[
        "",
        "a",
        "a:",
        "a:\u{7F}",
        "a\u{80}",
        "é",
        "\u{D7FF}",
        "\u{E000}",
        "\u{FFFF}",
        "\u{10000}",
        "\u{10FFFF}",
        "a\u{10FFFF}",
        "\u{10FFFF}\u{10FFFF}",
        "\0",
        "%_*",
    ];

    #[test]
    fn every_string_with_the_prefix_sorts_inside_the_text_range() {
        for prefix in SAMPLES {
            let upper = prefix_upper_bound(prefix);
            for key in SAMPLES
                .iter()
                .flat_map(|k| [k.to_string(), format!("{prefix}{k}")])
            {
                let in_range = key.as_str() >= *prefix
                    && upper.as_deref().is_none_or(|upper| key.as_str() < upper);
                assert_eq!(in_range, key.starts_with(prefix), "{prefix:?} / {key:?}");
            }
        }
    }

    #[test]
    fn every_string_with_the_prefix_sorts_inside_the_byte_range() {
        for prefix in SAMPLES {
            let upper = prefix_upper_bound_bytes(prefix.as_bytes());
            for key in SAMPLES
                .iter()
                .flat_map(|k| [k.to_string(), format!("{prefix}{k}")])
            {
                let key = key.as_bytes();
                let in_range =
                    key >= prefix.as_bytes() && upper.as_deref().is_none_or(|upper| key < upper);
                assert_eq!(
                    in_range,
                    key.starts_with(prefix.as_bytes()),
                    "{prefix:?} / {key:?}"
                );
            }
        }
    }
}
