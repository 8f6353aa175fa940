//! `redact_url` hides every password shape in every URL form, parsed or not.

use cache_core::conformance::secrets::{OPTION, PASSWORD, check_passwords_stay_hidden};
use cache_core::raw::redact_url;

#[test]
fn redaction_hides_every_piece_of_every_password() {
    let templates = [
        format!("redis://app:{PASSWORD}@cache:6379/0"),
        format!("rediss+cluster://app:{PASSWORD}@a:1,b:2"),
        format!("redis+unix:///run/r.sock?db=1&{OPTION}={PASSWORD}"),
        format!("redis+unix:///run/r.sock?{OPTION}={PASSWORD}&db=1"),
        format!("postgres://app:{PASSWORD}@db/app?table=t"),
        format!("postgres://app@db/app?{OPTION}={PASSWORD}"),
        format!("postgres://app:{PASSWORD}@[bad"),
        format!("memory://app:{PASSWORD}@x?capacity=1"),
        format!("app:{PASSWORD}@host"),
    ];
    let templates: Vec<&str> = templates.iter().map(String::as_str).collect();
    check_passwords_stay_hidden(&templates, redact_url);
}

/// Every scheme a store answers to, and text that is no URL at all.
const SCHEMES: &[&str] = &[
    "memory://",
    "sqlite://",
    "redis://",
    "rediss+cluster://",
    "redis+unix://",
    "postgres://",
    "postgresql://",
    "",
    "x",
];

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(5000))]

    /// Whatever follows a password, parsed as a URL or not, redaction hides it, and never panics.
    #[test]
    fn redaction_hides_a_password_whatever_follows_it(
        (url, password) in cachette_test_support::urls::url_with_password(SCHEMES)
    ) {
        let redacted = redact_url(&url);
        proptest::prop_assert!(!redacted.contains(&password), "{url:?} became {redacted:?}");
    }

    /// Any text shaped like a URL redacts without a panic.
    #[test]
    fn redaction_never_panics(url in cachette_test_support::urls::url_like(SCHEMES)) {
        let _ = redact_url(&url);
    }
}
