//! `memory://` URLs.

use cache_core::{Error, Result};

use crate::{MemoryBackend, MemoryBackendBuilder};

impl MemoryBackend {
    /// A store from a `memory://` URL: `memory://`, `memory://?capacity=N` (entries) or
    /// `memory://?max_bytes=N`, optionally with `&max_key_bytes=N`.
    ///
    /// ```
    /// let store = cache_memory::MemoryBackend::from_url("memory://?capacity=1000").unwrap();
    /// assert!(cache_memory::MemoryBackend::from_url("memory://?capacity=lots").is_err());
    /// # let _ = store;
    /// ```
    pub fn from_url(url: &str) -> Result<Self> {
        // A mistyped URL may still carry credentials: only its redacted form is ever shown.
        let shown = cache_core::raw::redact_url(url);
        let parsed = url::Url::parse(url)
            .map_err(|error| Error::config_with(format!("invalid memory URL {shown}"), error))?;
        if parsed.scheme() != "memory" {
            return Err(Error::config(format!(
                "a memory URL starts with memory://, not {shown}"
            )));
        }
        let mut builder = MemoryBackendBuilder::default();
        for (name, value) in parsed.query_pairs() {
            let number = || {
                value.parse::<u64>().map_err(|error| {
                    Error::config_with(
                        format!("memory URL option {name}={value} is not a whole number"),
                        error,
                    )
                })
            };
            builder = match name.as_ref() {
                "capacity" => builder.max_entries(number()?),
                "max_bytes" => builder.max_bytes(number()?),
                "max_key_bytes" => {
                    builder.max_key_bytes(usize::try_from(number()?).unwrap_or(usize::MAX))
                }
                other => {
                    return Err(Error::config(format!(
                        "unknown memory URL option {other:?} (known: capacity, max_bytes, max_key_bytes)"
                    )));
                }
            };
        }
        Ok(builder.build())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bounds_and_rejects_unknown_options() {
        assert!(MemoryBackend::from_url("memory://").is_ok());
        assert!(MemoryBackend::from_url("memory://?max_bytes=1048576").is_ok());
        for bad in [
            "memory://?capacity=-1",
            "memory://?size=3",
            "redis://x",
            "memory",
        ] {
            assert!(
                matches!(MemoryBackend::from_url(bad), Err(Error::Config { .. })),
                "{bad}"
            );
        }
    }
}
