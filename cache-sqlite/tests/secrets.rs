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
