//! No password, and no piece of one, shows in what the memory URL parser answers: a mistyped URL
//! may still carry credentials.

use cache_core::conformance::secrets::{OPTION, PASSWORD, check_passwords_stay_hidden, shown};
use cache_memory::MemoryBackendBuilder;

#[test]
fn the_url_parser_never_shows_a_password() {
    let templates = [
        format!("memory://app:{PASSWORD}@x?capacity=lots"),
        format!("memory://app:{PASSWORD}@x?bogus=1"),
        format!("memory://?{OPTION}={PASSWORD}"),
        format!("memory://?capacity=1&{OPTION}={PASSWORD}"),
        format!("memroy://app:{PASSWORD}@x"),
        format!("app:{PASSWORD}@memory"),
    ];
    let templates: Vec<&str> = templates.iter().map(String::as_str).collect();
    // A store holds no URL, so only errors can show one.
    check_passwords_stay_hidden(&templates, |url| {
        shown(&MemoryBackendBuilder::from_url(url).map(drop))
    });
}

/// The schemes the generated URLs start with.
const SCHEMES: &[&str] = &["memory://", "MEMORY://", "memory:", "memory:///", ""];

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]

    /// Any text shaped like a URL gets a configuration or a typed error, never a panic, and
    /// what either shows can be formatted.
    #[test]
    fn the_url_parser_never_panics(url in cachette_test_support::urls::url_like(SCHEMES)) {
        let _ = shown(&MemoryBackendBuilder::from_url(&url).map(drop));
    }

    /// A password where a user name's goes never shows, whatever follows it.
    #[test]
    fn a_password_never_shows_whatever_follows_it(
        (url, password) in cachette_test_support::urls::url_with_password(SCHEMES)
    ) {
        let text = shown(&MemoryBackendBuilder::from_url(&url).map(drop));
        proptest::prop_assert!(!text.contains(&password), "{url:?} shows its password: {text}");
    }
}
