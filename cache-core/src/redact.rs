//! Secrets out of URLs, for messages.

/// The URL with its secrets replaced by `***`, for messages: the password of the user info and
/// the value of a `pass` or `password` query option (`redis+unix:///s.sock?pass=…`). It errs on
/// the side of hiding: with an `@` anywhere, everything between the scheme and the last `@` but
/// a plain user name is hidden, so that an unencoded `/`, `?` or `@` in a password cannot let
/// part of it through; and it works on the text alone, so that a URL no parser accepts is
/// redacted too.
///
/// Every store and the facade use it for the URLs they put into errors and `Debug` output.
///
/// ```
/// assert_eq!(
///     cache_core::redact_url("redis://app:hunter2@cache.internal:6379/0"),
///     "redis://app:***@cache.internal:6379/0"
/// );
/// assert_eq!(
///     cache_core::redact_url("redis+unix:///run/redis.sock?db=1&pass=hunter2"),
///     "redis+unix:///run/redis.sock?db=1&pass=***"
/// );
/// ```
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(end) => url.split_at(end + "://".len()),
        None => ("", url),
    };
    let (userinfo, after_userinfo) = match rest.rsplit_once('@') {
        Some((userinfo, after)) => {
            let user_end = userinfo.find([':', '/', '?']).unwrap_or(userinfo.len());
            let shown = if user_end == userinfo.len() {
                format!("{userinfo}@")
            } else {
                format!("{}:***@", &userinfo[..user_end])
            };
            (shown, after)
        }
        None => (String::new(), rest),
    };
    let shown_rest = match after_userinfo.split_once('?') {
        Some((before, query)) => {
            let options: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _))
                        if name.eq_ignore_ascii_case("pass")
                            || name.eq_ignore_ascii_case("password") =>
                    {
                        format!("{name}=***")
                    }
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{before}?{}", options.join("&"))
        }
        None => after_userinfo.to_owned(),
    };
    format!("{scheme}{userinfo}{shown_rest}")
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
                "postgres://app@h/db?password=***&table=t",
            ),
            ("redis://h?PASS=secret", "redis://h?PASS=***"),
            // Unencoded `/`, `?` or `@` in a password must not let it through either.
            ("redis://u:pa/ss@h:1/0", "redis://u:***@h:1/0"),
            ("redis://u:pa?ss@h:1/0", "redis://u:***@h:1/0"),
            ("redis://:p@ss@h/0", "redis://:***@h/0"),
            ("user:secret@host", "user:***@host"),
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
