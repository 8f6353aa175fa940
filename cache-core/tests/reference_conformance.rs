//! The suite against the reference store: the suite and the contract agree.

use std::sync::Arc;

use cache_core::Backend;
use cache_core::testing::ReferenceBackend;

cache_core::conformance_tests!(async { Arc::new(ReferenceBackend::default()) as Arc<dyn Backend> });
