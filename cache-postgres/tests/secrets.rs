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
