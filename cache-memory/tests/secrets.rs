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
