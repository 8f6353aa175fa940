//! No password, and no piece of one, shows in what the SQLite URL parser answers: a mistyped URL
//! may still carry credentials.

use cache_core::conformance::secrets::{OPTION, PASSWORD, check_passwords_stay_hidden, shown};
use cache_sqlite::SqliteBackendBuilder;

#[test]
fn the_url_parser_never_shows_a_password() {
    let templates = [
        format!("sqlite://x.db?{OPTION}={PASSWORD}"),
        format!("sqlite://x.db?table=t&{OPTION}={PASSWORD}"),
        format!("sqlite://x.db?table=no-dash&{OPTION}={PASSWORD}"),
        format!("sqlite:x.db?{OPTION}={PASSWORD}"),
        format!("sqlitee://app:{PASSWORD}@x.db"),
        format!("sqlite:app:{PASSWORD}@x.db"),
        format!("sqlite://?{OPTION}={PASSWORD}"),
    ];
    let templates: Vec<&str> = templates.iter().map(String::as_str).collect();
    check_passwords_stay_hidden(&templates, |url| {
        shown(&SqliteBackendBuilder::from_url(url).map(drop))
    });
}

/// The schemes the generated URLs start with.
const SCHEMES: &[&str] = &[
    "sqlite://",
    "sqlite:///tmp/",
    "sqlite::memory:",
    "SQLite://",
    "sqlite:",
    "",
];

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

    /// Any text shaped like a URL gets a configuration or a typed error, never a panic, and
    /// what either shows can be formatted.
    #[test]
    fn the_url_parser_never_panics(url in cachette_test_support::urls::url_like(SCHEMES)) {
        let _ = shown(&SqliteBackendBuilder::from_url(&url).map(drop));
    }

    /// A password where a user name's goes never shows, whatever follows it.
    #[test]
    fn a_password_never_shows_whatever_follows_it(
        (url, password) in cachette_test_support::urls::url_with_password(SCHEMES)
    ) {
        let text = shown(&SqliteBackendBuilder::from_url(&url).map(drop));
        proptest::prop_assert!(!text.contains(&password), "{url:?} shows its password: {text}");
    }
}
