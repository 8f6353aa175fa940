//! proptest strategies for the URL parsers: text shaped like the stores' URLs, made of the
//! pieces a parser splits on, the option names it knows, numbers at and past their bounds and a
//! little arbitrary Unicode, and URLs with a password where a user name's password goes.
//!
//! Each store's `tests/secrets.rs` runs its parser over them: it never panics, and a password
//! never shows in what the parser answers (see `cache_core::conformance::secrets::shown`).

use proptest::prelude::*;
use proptest::sample::select;

/// What a URL parser splits on or looks for, and values at and past the options' bounds.
const PIECES: &[&str] = &[
    "://",
    "//",
    "/",
    "@",
    ":",
    "?",
    "&",
    "=",
    "#",
    ",",
    "%",
    "%2",
    "%zz",
    "%00",
    "%ff",
    "%3F",
    "%40",
    "%2F",
    "[",
    "]",
    "[::1]",
    "::",
    "127.0.0.1",
    "localhost",
    "h",
    "6379",
    "0",
    "1",
    "65535",
    "65536",
    "4294967296",
    "99999999999999999999999",
    "-1",
    "+1",
    "1.5",
    " ",
    "\u{e9}",
    "\u{0}",
    "\n",
    "\\",
    "1ms",
    "0ms",
    "0",
    "24h",
    "25h",
    "5m",
    "1h",
    "10000000000000s",
    "off",
    "true",
    "false",
    "yes",
    "600",
    "0640",
    "777",
    "8",
    ":memory:",
    "db",
    "user",
    "pass",
    "p%61ss",
    "password",
    "sslpassword",
    "table",
    "schema.table",
    "capacity",
    "max_bytes",
    "max_key_bytes",
    "purge_interval",
    "busy_timeout",
    "readers",
    "mode",
    "connect_timeout",
    "response_timeout",
    "tls_ca",
    "unlogged",
    "pool_max",
    "acquire_timeout",
    "statement_timeout",
    "sslmode",
    "options[x]",
    "application_name",
];

fn piece() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => select(PIECES).prop_map(str::to_owned),
        2 => "[a-zA-Z0-9_.-]{0,8}",
        1 => any::<String>().prop_map(|text| text.chars().take(6).collect()),
    ]
}

/// A URL-like text: one of `schemes`, then up to 24 pieces.
pub fn url_like(schemes: &'static [&'static str]) -> impl Strategy<Value = String> {
    (select(schemes), proptest::collection::vec(piece(), 0..24))
        .prop_map(|(scheme, pieces)| format!("{scheme}{}", pieces.concat()))
}

/// A URL with a password where a user name's password goes (`scheme` `app:PASSWORD@` and up to
/// 12 pieces), and the password: 8 to 12 consonants, so no message holds it by chance.
pub fn url_with_password(
    schemes: &'static [&'static str],
) -> impl Strategy<Value = (String, String)> {
    (
        select(schemes),
        "[BCDFGHJKLMNQRVWXZ]{8,12}",
        proptest::collection::vec(piece(), 0..12),
    )
        .prop_map(|(scheme, password, rest)| {
            (
                format!("{scheme}app:{password}@{}", rest.concat()),
                password,
            )
        })
}
