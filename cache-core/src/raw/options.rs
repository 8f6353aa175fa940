//! The one grammar of every store URL's query options, and the bounds checks that builder
//! methods share with it.

use std::fmt::Display;
use std::ops::RangeInclusive;
use std::str::FromStr;
use std::time::Duration;

use crate::{Error, Result};

use super::{is_secret_option, redact_url};

/// The query options of a store URL, read by name: one grammar for every store.
///
/// - A duration is a whole number with a unit: `250ms`, `5s`, `2m`, `1h`. A bare number is an
///   error (it meant seconds in one store and milliseconds in another), and so is a unit
///   spelled otherwise (`min`, `sec`).
/// - "No background task" is `off`; zero is an error, as are `never`, `none` and `0`.
/// - A boolean is `true` or `false`.
/// - A number is a whole number within the option's bounds.
/// - An option given twice, or one no `Options` method asked for, is an error; the one for an
///   unknown option lists the known ones, and never shows the name or value of what follows a
///   secret option (a raw `&` in a password would make its tail look like an option).
///
/// Names and values are percent-decoded as form fields are (`+` is a space, `%2B` a plus).
/// Every error is an [`Error::Config`] that names the store and the option and shows the URL
/// redacted.
///
/// ```
/// use std::time::Duration;
/// use cache_core::raw::Options;
///
/// let url = "sqlite://cache.db?purge_interval=off&busy_timeout=250ms&readers=4";
/// let mut options = Options::parse("SQLite", url, "purge_interval=off&busy_timeout=250ms&readers=4")?;
/// let max = Duration::from_secs(86_400);
/// assert_eq!(options.interval_or_off("purge_interval", Duration::from_millis(1)..=max)?, Some(None));
/// assert_eq!(options.duration("busy_timeout", Duration::from_millis(1)..=max)?,
///     Some(Duration::from_millis(250)));
/// assert_eq!(options.number::<usize>("readers", 1..=64)?, Some(4));
/// assert_eq!(options.text("table"), None);
/// options.finish()?;
///
/// let mut options = Options::parse("SQLite", "sqlite://x.db?busy_timeout=30", "busy_timeout=30")?;
/// let error = options.duration("busy_timeout", Duration::ZERO..=max).unwrap_err();
/// assert!(error.to_string().contains("30s"), "{error}");
/// # Ok::<(), cache_core::Error>(())
/// ```
#[derive(Debug)]
pub struct Options {
    store: &'static str,
    shown: String,
    /// Decoded pairs in URL order, each with whether an `Options` method asked for it.
    pairs: Vec<(String, String, bool)>,
    known: Vec<&'static str>,
}

/// Percent-decodes a form field: `+` is a space.
fn decode(text: &str) -> Option<String> {
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|text| text.into_owned())
}

impl Options {
    /// The options of `query` (the URL's text after `?`, or empty) of `url`, for `store` (the
    /// name messages use: `SQLite`, `Redis`, …).
    pub fn parse(store: &'static str, url: &str, query: &str) -> Result<Self> {
        let shown = redact_url(url);
        let mut pairs: Vec<(String, String, bool)> = Vec::new();
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let (Some(name), Some(value)) = (decode(name), decode(value)) else {
                return Err(Error::config(format!(
                    "an option of the {store} URL {shown} is not UTF-8 once decoded"
                )));
            };
            if pairs.iter().any(|(known, _, _)| *known == name) {
                return Err(Error::config(format!(
                    "the {store} URL {shown} gives the option {name} twice"
                )));
            }
            pairs.push((name, value, false));
        }
        Ok(Self {
            store,
            shown,
            pairs,
            known: Vec::new(),
        })
    }

    fn take(&mut self, name: &'static str) -> Option<String> {
        if !self.known.contains(&name) {
            self.known.push(name);
        }
        let (_, value, asked) = self.pairs.iter_mut().find(|(known, _, _)| known == name)?;
        *asked = true;
        Some(std::mem::take(value))
    }

    fn error(&self, name: &str, value: &str, what: impl Display) -> Error {
        let value = if is_secret_option(name) { "***" } else { value };
        Error::config(format!(
            "{} URL option {name}={value} {what} (in {})",
            self.store, self.shown
        ))
    }

    /// The text of option `name`, as given.
    pub fn text(&mut self, name: &'static str) -> Option<String> {
        self.take(name)
    }

    /// Option `name` as a duration within `bounds`.
    pub fn duration(
        &mut self,
        name: &'static str,
        bounds: RangeInclusive<Duration>,
    ) -> Result<Option<Duration>> {
        let Some(text) = self.take(name) else {
            return Ok(None);
        };
        let duration = parse_duration(&text).map_err(|hint| self.error(name, &text, hint))?;
        check_range(self.store, name, duration, &bounds, show_duration)
            .map(Some)
            .map_err(|_| {
                self.error(
                    name,
                    &text,
                    format_args!("is outside {}", show_range(&bounds)),
                )
            })
    }

    /// Option `name` as the interval of a background task: a duration within `bounds`, or `off`
    /// for none (`Some(None)`).
    pub fn interval_or_off(
        &mut self,
        name: &'static str,
        bounds: RangeInclusive<Duration>,
    ) -> Result<Option<Option<Duration>>> {
        match self.pairs.iter().find(|(known, _, _)| known == name) {
            Some((_, value, _)) if value == "off" => {
                self.take(name);
                Ok(Some(None))
            }
            Some((_, value, _)) if matches!(value.as_str(), "never" | "none" | "0") => {
                let value = value.clone();
                self.take(name);
                Err(self.error(name, &value, "is not a duration: write off for none"))
            }
            _ => self.duration(name, bounds).map(|every| every.map(Some)),
        }
    }

    /// Option `name` as a whole number within `bounds`.
    pub fn number<T>(&mut self, name: &'static str, bounds: RangeInclusive<T>) -> Result<Option<T>>
    where
        T: FromStr + PartialOrd + Display + Copy,
    {
        let Some(text) = self.take(name) else {
            return Ok(None);
        };
        let number: T = text.parse().map_err(|_| {
            self.error(
                name,
                &text,
                format_args!(
                    "is not a whole number from {} to {}",
                    bounds.start(),
                    bounds.end()
                ),
            )
        })?;
        if !bounds.contains(&number) {
            return Err(self.error(
                name,
                &text,
                format_args!("is outside {} to {}", bounds.start(), bounds.end()),
            ));
        }
        Ok(Some(number))
    }

    /// Option `name` as `true` or `false`.
    pub fn flag(&mut self, name: &'static str) -> Result<Option<bool>> {
        let Some(text) = self.take(name) else {
            return Ok(None);
        };
        match text.as_str() {
            "true" => Ok(Some(true)),
            "false" => Ok(Some(false)),
            _ => Err(self.error(name, &text, "is not a boolean: write true or false")),
        }
    }

    /// The options nothing asked for, in URL order, for a store that hands them on to its
    /// driver (PostgreSQL to sqlx). Call it after asking for every option of the store's own.
    pub fn rest(self) -> Vec<(String, String)> {
        self.pairs
            .into_iter()
            .filter(|(_, _, asked)| !asked)
            .map(|(name, value, _)| (name, value))
            .collect()
    }

    /// Fails if the URL holds an option that no method asked for, naming the known ones.
    pub fn finish(self) -> Result<()> {
        let mut after_secret = false;
        for (name, _, asked) in &self.pairs {
            if !asked {
                let known = self.known.join(", ");
                let (store, shown) = (self.store, &self.shown);
                return Err(Error::config(if after_secret {
                    format!(
                        "the {store} URL {shown} has an unknown option after a password option; \
                         percent-encode `&` in a password as %26 (known options: {known})"
                    )
                } else {
                    // A name may be a password's tail or user info typed in the wrong place.
                    let name = redact_url(name);
                    format!("unknown {store} URL option {name:?} in {shown} (known: {known})")
                }));
            }
            after_secret |= is_secret_option(name);
        }
        Ok(())
    }
}

/// A duration in the options grammar: a whole number and a unit, `ms`, `s`, `m` or `h`. The
/// error says what to write instead.
///
/// ```
/// use std::time::Duration;
/// use cache_core::raw::parse_duration;
///
/// assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
/// assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
/// assert!(parse_duration("5").is_err());
/// assert!(parse_duration("1.5s").is_err());
/// ```
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = match digits.parse() {
        Ok(number) if !unit.starts_with(['.', ',']) => number,
        _ => {
            return Err(
                "is not a duration: write a whole number and a unit, ms, s, m or h \
                        (250ms, 30s, 10m, 1h)"
                    .to_owned(),
            );
        }
    };
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "" => {
            return Err(format!(
                "has no unit: write {number}s for seconds or {number}ms for milliseconds"
            ));
        }
        "min" | "mins" => return Err(format!("has the unit {unit}: write {number}m")),
        "sec" | "secs" => return Err(format!("has the unit {unit}: write {number}s")),
        _ => {
            return Err(format!(
                "has the unknown unit {unit:?}: write ms, s, m or h (250ms, 30s, 10m, 1h)"
            ));
        }
    };
    number
        .checked_mul(millis_per_unit)
        .map(Duration::from_millis)
        .ok_or_else(|| "is too long".to_owned())
}

fn show_duration(duration: &Duration) -> String {
    format!("{duration:?}")
}

fn show_range(bounds: &RangeInclusive<Duration>) -> String {
    format!(
        "{} to {}",
        show_duration(bounds.start()),
        show_duration(bounds.end())
    )
}

fn check_range<T: PartialOrd>(
    store: &'static str,
    name: &str,
    value: T,
    bounds: &RangeInclusive<T>,
    show: fn(&T) -> String,
) -> Result<T> {
    if bounds.contains(&value) {
        return Ok(value);
    }
    Err(Error::config(format!(
        "{store} {name} of {} is outside {} to {}",
        show(&value),
        show(bounds.start()),
        show(bounds.end())
    )))
}

/// The bounds check of a duration setting, for builder methods and URLs alike: `value` if it is
/// within `bounds`, else an [`Error::Config`] naming the store, the setting and the bounds.
///
/// ```
/// use std::time::Duration;
/// use cache_core::raw::check_duration;
///
/// let bounds = Duration::from_millis(1)..=Duration::from_secs(86_400);
/// assert!(check_duration("PostgreSQL", "purge_interval", Duration::from_secs(60), bounds.clone()).is_ok());
/// assert!(check_duration("PostgreSQL", "purge_interval", Duration::MAX, bounds).is_err());
/// ```
pub fn check_duration(
    store: &'static str,
    name: &str,
    value: Duration,
    bounds: RangeInclusive<Duration>,
) -> Result<Duration> {
    check_range(store, name, value, &bounds, show_duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn options(query: &str) -> Options {
        Options::parse("Test", &format!("test://h?{query}"), query).unwrap_or_else(|error| {
            panic!("{query}: {error}");
        })
    }

    fn message(result: Result<impl std::fmt::Debug>) -> String {
        match result {
            Err(error @ Error::Config { .. }) => error.to_string(),
            other => panic!("expected a configuration error, got {other:?}"),
        }
    }

    #[test]
    fn durations_need_a_unit_and_say_what_to_write() {
        for (text, millis) in [
            ("250ms", 250),
            ("5s", 5_000),
            ("2m", 120_000),
            ("1h", 3_600_000),
        ] {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(millis)),
                "{text}"
            );
        }
        for (text, hint) in [
            ("5", "write 5s for seconds or 5ms"),
            ("10min", "write 10m"),
            ("3sec", "write 3s"),
            ("1.5s", "whole number"),
            ("-1s", "whole number"),
            ("", "whole number"),
            ("5d", "unknown unit"),
            ("99999999999999999999h", "whole number"),
            ("9999999999999999h", "too long"),
        ] {
            let error = parse_duration(text).expect_err(text);
            assert!(error.contains(hint), "{text}: {error}");
        }
    }

    #[test]
    fn durations_keep_to_their_bounds() {
        let mut opts = options("a=0s&b=2h&c=1h");
        let bounds = Duration::from_millis(1)..=Duration::from_secs(3_600);
        assert!(message(opts.duration("a", bounds.clone())).contains("outside 1ms to 3600s"));
        assert!(message(opts.duration("b", bounds.clone())).contains("b=2h"));
        assert_eq!(
            opts.duration("c", bounds).unwrap(),
            Some(Duration::from_secs(3_600))
        );
        assert_eq!(opts.duration("d", Duration::ZERO..=DAY).unwrap(), None);
    }

    #[test]
    fn off_is_the_only_word_for_no_background_task() {
        let mut opts = options("a=off&b=10m");
        let bounds = Duration::from_millis(1)..=DAY;
        assert_eq!(
            opts.interval_or_off("a", bounds.clone()).unwrap(),
            Some(None)
        );
        assert_eq!(
            opts.interval_or_off("b", bounds.clone()).unwrap(),
            Some(Some(Duration::from_secs(600)))
        );
        for old in ["never", "none", "0"] {
            let query = format!("p={old}");
            let error = message(options(&query).interval_or_off("p", bounds.clone()));
            assert!(error.contains("write off"), "{old}: {error}");
        }
        let error = message(options("p=0s").interval_or_off("p", bounds));
        assert!(error.contains("outside"), "{error}");
    }

    #[test]
    fn booleans_are_true_or_false() {
        let mut opts = options("a=true&b=false");
        assert_eq!(opts.flag("a").unwrap(), Some(true));
        assert_eq!(opts.flag("b").unwrap(), Some(false));
        for old in ["1", "yes", "on", "TRUE", ""] {
            let query = format!("c={old}");
            assert!(
                message(options(&query).flag("c")).contains("write true or false"),
                "{old}"
            );
        }
    }

    #[test]
    fn numbers_are_whole_and_within_bounds() {
        let mut opts = options("a=4&b=0&c=x&d=-1");
        assert_eq!(opts.number::<u32>("a", 1..=8).unwrap(), Some(4));
        assert!(message(opts.number::<u32>("b", 1..=8)).contains("outside 1 to 8"));
        assert!(message(opts.number::<u32>("c", 1..=8)).contains("whole number from 1 to 8"));
        assert!(message(opts.number::<u64>("d", 0..=u64::MAX)).contains("whole number"));
    }

    #[test]
    fn unknown_and_repeated_options_are_errors_that_list_the_known_ones() {
        let mut opts = options("table=t&tabel=u");
        assert_eq!(opts.text("table").as_deref(), Some("t"));
        let _ = opts.flag("unlogged");
        let error = message(opts.finish());
        assert!(
            error.contains(r#"unknown Test URL option "tabel""#),
            "{error}"
        );
        assert!(error.contains("known: table, unlogged"), "{error}");

        let repeated = Options::parse("Test", "test://h?a=1&a=2", "a=1&a=2");
        assert!(message(repeated).contains("gives the option a twice"));
    }

    #[test]
    fn secrets_stay_hidden_in_every_message() {
        let query = "password=hunter2&x&rest=of-secret";
        let url = format!("test://h?{query}");
        let mut opts = Options::parse("Test", &url, query).unwrap();
        assert_eq!(opts.text("password").as_deref(), Some("hunter2"));
        let error = message(opts.finish());
        assert!(
            !error.contains("hunter2") && !error.contains("of-secret"),
            "{error}"
        );
        assert!(error.contains("%26"), "{error}");

        let mut opts = Options::parse("Test", "test://h?token=abc", "token=abc").unwrap();
        let error = message(opts.flag("token"));
        assert!(!error.contains("abc"), "{error}");
    }

    #[test]
    fn names_and_values_are_decoded_as_form_fields() {
        let mut opts = options("ta%62le=a%2Bb+c&empty=&bare");
        assert_eq!(opts.text("table").as_deref(), Some("a+b c"));
        assert_eq!(opts.text("empty").as_deref(), Some(""));
        assert_eq!(opts.text("bare").as_deref(), Some(""));
        opts.finish().unwrap();
    }

    #[test]
    fn what_a_driver_takes_is_handed_on() {
        let mut opts = options("table=t&sslmode=disable&application_name=app");
        let _ = opts.text("table");
        assert_eq!(
            opts.rest(),
            [
                ("sslmode".to_owned(), "disable".to_owned()),
                ("application_name".to_owned(), "app".to_owned()),
            ]
        );
    }
}
