//! A property test for URL parsers: no password, and no piece of one, ever shows.
//!
//! A store's URL parser turns text that may hold credentials into a configuration or an error,
//! and both end up in logs. [`check_passwords_stay_hidden`] feeds a parser many password shapes
//! (raw `?`, `/`, `@`, `#`, `%`, spaces, percent-encodings, non-ASCII) in every template a store
//! gives it, with the password option spelled every way a parser may decode (`pass`, `PASS`,
//! `p%61ss`, `password`, `sslpassword`, …), and fails when any part of a password appears in
//! what the parser's result shows: its `Debug`, and for an error also its `Display` and every
//! source's.
//!
//! ```
//! use cache_core::conformance::secrets::{PASSWORD, check_passwords_stay_hidden, shown};
//!
//! // A parser that shows nothing of what it parses passes.
//! check_passwords_stay_hidden(&[&format!("memory://u:{PASSWORD}@h")], |url| {
//!     shown(&Err::<(), _>(cache_core::Error::config(cache_core::raw::redact_url(url))))
//! });
//! ```

use std::fmt::Debug;

use crate::{Error, Result};

/// Where a template takes the password.
pub const PASSWORD: &str = "{password}";

/// Where a template takes the name of a password option, spelled each way of
/// [`OPTION_SPELLINGS`].
pub const OPTION: &str = "{option}";

/// The spellings a password option may have once a parser decodes it.
pub const OPTION_SPELLINGS: &[&str] = &[
    "pass",
    "PASS",
    "p%61ss",
    "password",
    "Password",
    "pass%77ord",
    "sslpassword",
    "PASSWORD",
];

/// What separates the two halves of a generated password: characters that end a part of a URL
/// where they stand raw, their percent-encodings, and a few that no parser treats specially.
const SEPARATORS: &[&str] = &[
    "", "?", "/", "@", ":", "#", "%", "&", "=", "+", " ", "%3F", "%40", "%2F", "?db=", "@@",
    "\u{e9}", "%", "\\", "[",
];

/// Letters a half of a password is made of: consonants only, so that no half spells a word a
/// message might hold for its own reasons.
const LETTERS: &[u8] = b"BCDFGHJKLMNQRVWXZ";

/// How many passwords each template is tried with.
const PASSWORDS: usize = 200;

/// Everything a parser's result shows: the `Debug` of a value, or an error's `Display`, `Debug`
/// and its whole source chain.
pub fn shown<T: Debug>(outcome: &Result<T>) -> String {
    match outcome {
        Ok(value) => format!("{value:?}"),
        Err(error) => error_chain(error),
    }
}

fn error_chain(error: &Error) -> String {
    let mut chain = format!("{error} {error:?}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        chain.push_str(&format!(" {cause} {cause:?}"));
        source = cause.source();
    }
    chain
}

/// Tries `render` (a parser, turned into what its result shows, e.g. with [`shown`]) on every
/// template with many passwords in place of [`PASSWORD`] (and each of [`OPTION_SPELLINGS`] in
/// place of [`OPTION`]); panics naming the URL and what was shown when a piece of a password
/// appears. The passwords come from a fixed seed, so a failure repeats.
pub fn check_passwords_stay_hidden(templates: &[&str], render: impl Fn(&str) -> String) {
    let mut random = fastrand::Rng::with_seed(0x5ec2e7);
    for round in 0..PASSWORDS {
        let half = |random: &mut fastrand::Rng| -> String {
            let len = random.usize(6..=10);
            (0..len)
                .map(|_| char::from(LETTERS[random.usize(..LETTERS.len())]))
                .collect()
        };
        let (first, second) = (half(&mut random), half(&mut random));
        let separator = SEPARATORS[round % SEPARATORS.len()];
        let password = format!("{first}{separator}{second}");
        for template in templates {
            let spellings: &[&str] = if template.contains(OPTION) {
                OPTION_SPELLINGS
            } else {
                &[""]
            };
            for spelling in spellings {
                let url = template
                    .replace(OPTION, spelling)
                    .replace(PASSWORD, &password);
                let text = render(&url);
                for piece in [&first, &second] {
                    assert!(
                        !text.contains(piece.as_str()),
                        "{piece:?}, a piece of the password {password:?}, shows for {url:?}: {text}"
                    );
                }
            }
        }
    }
}
