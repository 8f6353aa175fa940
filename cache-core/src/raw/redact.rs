//! Secrets out of URLs, for messages.

/// The URL with its secrets replaced by `***`, for messages: the password of the user info and
/// the value of every query option that [`is_secret_option`] names (`pass`, `password`,
/// `sslpassword`, …), whatever its case or percent-encoding (`p%61ss` is `pass`), together with
/// everything after it (a raw `&` or `#` in a secret would let its tail through otherwise). It errs on
/// the side of hiding: with an `@` anywhere, everything between the scheme and the last `@` but
/// a plain user name is hidden, so that an unencoded `/`, `?` or `@` in a password cannot let
/// part of it through; and it works on the text alone, so that a URL no parser accepts is
/// redacted too.
///
/// Every store and the facade use it for the URLs they put into errors and `Debug` output.
///
/// ```
/// assert_eq!(
///     cache_core::raw::redact_url("redis://app:hunter2@cache.internal:6379/0"),
///     "redis://app:***@cache.internal:6379/0"
/// );
/// assert_eq!(
///     cache_core::raw::redact_url("redis+unix:///run/redis.sock?db=1&pass=hunter2"),
///     "redis+unix:///run/redis.sock?db=1&pass=***"
/// );
/// ```
pub fn redact_url(url: &str) -> String {
    // What precedes `://` is a scheme only if it is spelled like one (`app:pw@://` is user info
    // followed by garbage, not a scheme): otherwise the whole text may hold user info.
    let rest_start = url
        .find("://")
        .filter(|&end| {
            let scheme = &url[..end];
            scheme.starts_with(|c: char| c.is_ascii_alphabetic())
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        })
        .map_or(0, |end| end + "://".len());
    let rest = &url[rest_start..];
    // Text alone cannot say whether a raw `@` ends the user info or sits in an option's value,
    // nor whether a raw `?` starts the query or sits in a password: hide what either reading
    // calls secret. Ranges are byte offsets into `url`, each with what replaces it.
    let mut hidden: Vec<(usize, usize, &str)> = Vec::new();
    if let Some(last_at) = rest.rfind('@') {
        let userinfo = &rest[..last_at];
        if let Some(user_end) = userinfo.find([':', '/', '?']) {
            hidden.push((rest_start + user_end, rest_start + last_at, ":***"));
        }
    }
    if let Some(query_start) = rest.find('?') {
        let mut offset = rest_start + query_start + 1;
        for pair in rest[query_start + 1..].split('&') {
            if let Some((name, _)) = pair.split_once('=')
                && is_secret_option(&decode_option_name(name))
            {
                // To the end of the URL: a raw `&` or `#` in the secret would otherwise let its
                // tail show as the name of another option or as a fragment.
                hidden.push((offset + name.len() + 1, url.len(), "***"));
                break;
            }
            offset += pair.len() + 1;
        }
    }
    // A URL no parser accepts may carry a secret option outside any query
    // (`garbage password=x`): any `name=` whose name is secret hides the rest.
    for (equals, _) in url.match_indices('=') {
        let name_start = url[..equals]
            .rfind(['?', '&', ';', ' ', '\t', '/'])
            .map_or(0, |at| at + 1);
        if is_secret_option(&decode_option_name(&url[name_start..equals])) {
            hidden.push((equals + 1, url.len(), "***"));
            break;
        }
    }
    hidden.sort_unstable();
    let mut shown = String::with_capacity(url.len());
    let mut at = 0;
    let mut ranges = hidden.into_iter().peekable();
    while let Some((start, mut end, replacement)) = ranges.next() {
        // Overlapping ranges (the two readings disagree) become one hidden run.
        while let Some(&(next_start, next_end, _)) = ranges.peek() {
            if next_start > end {
                break;
            }
            end = end.max(next_end);
            ranges.next();
        }
        let start = start.max(at);
        shown.push_str(&url[at..start]);
        if end > start || replacement == ":***" {
            shown.push_str(replacement);
        }
        at = end.max(start);
    }
    shown.push_str(&url[at..]);
    shown
}

/// Whether a URL query option of this (decoded) name carries a secret, so that its value must
/// never be shown: `pass`, `passwd`, `password`, `sslpassword`, and any name holding `password`,
/// `secret` or `token`, in any case. Store authors use it for options their parser knows and for
/// options it refuses alike.
///
/// ```
/// assert!(cache_core::raw::is_secret_option("PASS"));
/// assert!(cache_core::raw::is_secret_option("sslpassword"));
/// assert!(!cache_core::raw::is_secret_option("passive"));
/// ```
pub fn is_secret_option(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(name.as_str(), "pass" | "passwd")
        || ["password", "secret", "token"]
            .iter()
            .any(|word| name.contains(word))
}

/// A query option's name as a URL parser reads it: `+` is a space and `%XX` a byte.
fn decode_option_name(name: &str) -> String {
    let spaced = name.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_hides_every_password() {
        for (url, shown) in [
            (
                "redis://u:secret@h:1/2?response_timeout=1s",
                "redis://u:***@h:1/2?response_timeout=1s",
            ),
            (
                "redis+unix:///s.sock?db=1&pass=secret",
                "redis+unix:///s.sock?db=1&pass=***",
            ),
            (
                "postgres://app@h/db?password=secret&table=t",
                "postgres://app@h/db?password=***",
            ),
            ("redis://h?PASS=secret", "redis://h?PASS=***"),
            // Option names count as a parser decodes them.
            (
                "redis+unix:///s.sock?p%61ss=secret",
                "redis+unix:///s.sock?p%61ss=***",
            ),
            (
                "postgres://h/db?sslpassword=secret",
                "postgres://h/db?sslpassword=***",
            ),
            ("redis://h?api+token=secret", "redis://h?api+token=***"),
            // A raw `@` in an option's value does not end a user info there.
            ("redis+unix:///s.sock?pass=sec@ret", "redis+unix://:***"),
            ("redis://u:pa?pass=x@h/0", "redis://u:***"),
            ("redis://h?pass=se&cret#x", "redis://h?pass=***"),
            // Unencoded `/`, `?` or `@` in a password must not let it through either.
            ("redis://u:pa/ss@h:1/0", "redis://u:***@h:1/0"),
            ("redis://u:pa?ss@h:1/0", "redis://u:***@h:1/0"),
            ("redis://:p@ss@h/0", "redis://:***@h/0"),
            ("user:secret@host", "user:***@host"),
            // What stands before `://` is no scheme when it holds user info.
            ("app:secret@://", "app:***@://"),
            ("a@b:secret@x://y", "a@b:***@x://y"),
            // Nothing secret: nothing changes.
            ("redis://user@h:1/0", "redis://user@h:1/0"),
            ("memory://?capacity=10", "memory://?capacity=10"),
            ("sqlite::memory:", "sqlite::memory:"),
            ("redis://h?passive=1", "redis://h?passive=1"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }
}
