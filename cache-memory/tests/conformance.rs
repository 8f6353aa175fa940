//! The whole conformance suite against the memory store.

use std::sync::Arc;

use cache_core::Backend;
use cache_memory::MemoryBackend;

cache_core::conformance_tests!(async { Arc::new(MemoryBackend::new()) as Arc<dyn Backend> });
