//! The whole suite against a memory store that refuses keys over 1 KiB: the suite allows a store
//! to refuse what it cannot hold, as long as it says so with `Error::InvalidKey`.

use std::sync::Arc;

use cache_core::Backend;
use cache_memory::MemoryBackend;

cache_core::conformance_tests!(async {
    Arc::new(MemoryBackend::builder().max_key_bytes(1024).build()) as Arc<dyn Backend>
});
