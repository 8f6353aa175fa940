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
