//! Every facade case with a local tier in front of the memory store.

use std::sync::Arc;

use cache_core::Backend;
use cache_memory::MemoryBackend;
use cachette_test_support::local::facade_cases_with_a_local_tier;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facade_cases_pass_with_a_local_tier() {
    facade_cases_with_a_local_tier(Arc::new(MemoryBackend::new()) as Arc<dyn Backend>).await;
}
