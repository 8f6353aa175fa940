//! No password, and no piece of one, shows in what the Redis URL parser answers, for every URL
//! form, password shape and option spelling.

use cache_core::conformance::secrets::{OPTION, PASSWORD, check_passwords_stay_hidden, shown};
use cache_redis::RedisConfig;

#[test]
fn the_url_parser_never_shows_a_password() {
    let templates = [
        format!("redis://app:{PASSWORD}@cache:6379/0"),
        format!("redis://:{PASSWORD}@cache/0"),
        format!("redis://app:{PASSWORD}@cache:notaport/0"),
        format!("redis://app:{PASSWORD}@cache:6379/x"),
        format!("redis://app:{PASSWORD}@cache/0?response_timeout=soon"),
        format!("redis://app:{PASSWORD}@cache/0?bogus=1"),
        format!("redis://cache/0?{OPTION}={PASSWORD}"),
        format!("rediss+cluster://app:{PASSWORD}@a:1,b:2"),
        format!("redis+cluster://app:{PASSWORD}@a:1,b:2/3"),
        format!("redis+unix:///run/r.sock?db=1&{OPTION}={PASSWORD}"),
        format!("redis+unix:///run/r.sock?{OPTION}={PASSWORD}&db=x"),
        format!("redis+unix://host/run/r.sock?{OPTION}={PASSWORD}"),
        format!("redsi://app:{PASSWORD}@cache/0"),
    ];
    let templates: Vec<&str> = templates.iter().map(String::as_str).collect();
    check_passwords_stay_hidden(&templates, |url| shown(&RedisConfig::from_url(url)));
}

/// The schemes the generated URLs start with.
const SCHEMES: &[&str] = &[
    "redis://",
    "rediss://",
    "redis+cluster://",
    "rediss+cluster://",
    "redis+unix://",
    "REDIS://",
    "redis:",
];

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

    /// Any text shaped like a URL gets a configuration or a typed error, never a panic, and
    /// what either shows can be formatted.
    #[test]
    fn the_url_parser_never_panics(url in cachette_test_support::urls::url_like(SCHEMES)) {
        let _ = shown(&RedisConfig::from_url(&url));
    }

    /// A password where a user name's goes never shows, whatever follows it.
    #[test]
    fn a_password_never_shows_whatever_follows_it(
        (url, password) in cachette_test_support::urls::url_with_password(SCHEMES)
    ) {
        let text = shown(&RedisConfig::from_url(&url));
        proptest::prop_assert!(!text.contains(&password), "{url:?} shows its password: {text}");
    }
}
