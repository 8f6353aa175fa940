//! No password, and no piece of one, shows in what the PostgreSQL URL parser answers, for every
//! URL form, password shape and option spelling.

use cache_core::conformance::secrets::{OPTION, PASSWORD, check_passwords_stay_hidden, shown};
use cache_postgres::PostgresConfig;

#[test]
fn the_url_parser_never_shows_a_password() {
    let templates = [
        format!("postgres://app:{PASSWORD}@db/app"),
        format!("postgres://app:{PASSWORD}@db:99999/app"),
        format!("postgres://app:{PASSWORD}@[bad/app"),
        format!("postgres://app:{PASSWORD}@db/app?bogus=1"),
        format!("postgres://app:{PASSWORD}@db/app?pool_max=many"),
        format!("postgres://app@db/app?{OPTION}={PASSWORD}"),
        format!("postgres://app@db/app?{OPTION}={PASSWORD}&statement_timeout=5"),
        format!("postgresql://app@[bad/app?{OPTION}={PASSWORD}"),
        format!("postgers://app:{PASSWORD}@db/app"),
    ];
    let templates: Vec<&str> = templates.iter().map(String::as_str).collect();
    check_passwords_stay_hidden(&templates, |url| shown(&PostgresConfig::from_url(url)));
}

/// The schemes the generated URLs start with.
const SCHEMES: &[&str] = &[
    "postgres://",
    "postgresql://",
    "POSTGRES://",
    "postgres:",
    "postgres://app@db/app?",
];

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

    /// Any text shaped like a URL gets a configuration or a typed error, never a panic, and
    /// what either shows can be formatted.
    #[test]
    fn the_url_parser_never_panics(url in cachette_test_support::urls::url_like(SCHEMES)) {
        let _ = shown(&PostgresConfig::from_url(&url));
    }

    /// A password where a user name's goes never shows, whatever follows it.
    #[test]
    fn a_password_never_shows_whatever_follows_it(
        (url, password) in cachette_test_support::urls::url_with_password(SCHEMES)
    ) {
        let text = shown(&PostgresConfig::from_url(&url));
        proptest::prop_assert!(!text.contains(&password), "{url:?} shows its password: {text}");
    }
}
