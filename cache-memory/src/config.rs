//! `memory://` URLs.

use cache_core::raw::Options;
use cache_core::{Error, Result};

use crate::{MemoryBackend, MemoryBackendBuilder};

impl MemoryBackend {
    /// Opens the store a `memory://` URL describes; see [`MemoryBackendBuilder::from_url`].
    /// Nothing here waits: it is `async` to read like every other store's `open`.
    pub async fn open(url: &str) -> Result<Self> {
        MemoryBackendBuilder::from_url(url).map(MemoryBackendBuilder::build)
    }
}

impl MemoryBackendBuilder {
    /// Settings from a `memory://` URL: `memory://`, `memory://?capacity=N` (entries) or
    /// `memory://?max_bytes=N`, optionally with `&max_key_bytes=N`. The options follow the
    /// grammar of every store URL ([`Options`]).
    ///
    /// ```
    /// use cache_memory::MemoryBackendBuilder;
    ///
    /// let store = MemoryBackendBuilder::from_url("memory://?capacity=1000").unwrap().build();
    /// assert!(MemoryBackendBuilder::from_url("memory://?capacity=lots").is_err());
    /// # let _ = store;
    /// ```
    pub fn from_url(url: &str) -> Result<Self> {
        let rest = url
            .get(..9)
            .filter(|scheme| scheme.eq_ignore_ascii_case("memory://"))
            .map(|_| &url[9..])
            .ok_or_else(|| {
                let shown = cache_core::raw::redact_url(url);
                Error::config(format!("a memory URL starts with memory://, not {shown}"))
            })?;
        let (place, query) = rest.split_once('?').unwrap_or((rest, ""));
        if !matches!(place, "" | "/") {
            let shown = cache_core::raw::redact_url(url);
            return Err(Error::config(format!(
                "a memory URL names no host or path: write memory:// or memory://?capacity=N, \
                 not {shown}"
            )));
        }
        let mut options = Options::parse("memory", url, query)?;
        let entries = options.number("capacity", 1..=u64::MAX)?;
        let bytes = options.number("max_bytes", 1..=u64::MAX)?;
        let key_bytes = options.number("max_key_bytes", 1..=usize::MAX)?;
        options.finish()?;
        let mut builder = MemoryBackendBuilder::default();
        match (entries, bytes) {
            (Some(_), Some(_)) => {
                let shown = cache_core::raw::redact_url(url);
                return Err(Error::config(format!(
                    "the memory URL {shown} gives two bounds: capacity (entries) or max_bytes, \
                     not both"
                )));
            }
            (Some(entries), None) => builder = builder.max_entries(entries),
            (None, Some(bytes)) => builder = builder.max_bytes(bytes),
            (None, None) => {}
        }
        if let Some(key_bytes) = key_bytes {
            builder = builder.max_key_bytes(key_bytes);
        }
        Ok(builder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bounds_and_rejects_unknown_options() {
        assert!(MemoryBackendBuilder::from_url("memory://").is_ok());
        assert!(MemoryBackendBuilder::from_url("memory://?max_bytes=1048576").is_ok());
        assert!(MemoryBackendBuilder::from_url("MEMORY://?capacity=10&max_key_bytes=100").is_ok());
        for bad in [
            "memory://?capacity=-1",
            "memory://?capacity=0",
            "memory://?size=3",
            "memory://?capacity=1&max_bytes=1",
            "memory://?capacity=1&capacity=2",
            "memory://somewhere",
            "redis://x",
            "memory",
        ] {
            assert!(
                matches!(
                    MemoryBackendBuilder::from_url(bad),
                    Err(Error::Config { .. })
                ),
                "{bad}"
            );
        }
    }
}
