//! A store written before the capabilities (it implements only the base methods) still runs
//! the suite: every case that needs a capability it lacks is reported as not applicable, by
//! name and with the operation it lacks, never as passed; every other case passes.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cache_core::conformance::{RunOptions, Verdict, run_conformance};
use cache_core::testing::ReferenceBackend;
use cache_core::{Backend, Condition, Result, Ttl};

/// The base methods only, each handed to the reference store.
#[derive(Debug, Default)]
struct BaseOnly(ReferenceBackend);

#[async_trait]
impl Backend for BaseOnly {
    fn name(&self) -> &'static str {
        "base-only"
    }
    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.0.get(key).await
    }
    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        self.0.get_many(keys).await
    }
    async fn set(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        condition: Condition,
    ) -> Result<bool> {
        self.0.set(key, value, ttl, condition).await
    }
    async fn set_many(&self, entries: Vec<(String, Bytes)>, ttl: Option<Duration>) -> Result<()> {
        self.0.set_many(entries, ttl).await
    }
    async fn delete(&self, key: &str) -> Result<bool> {
        self.0.delete(key).await
    }
    async fn delete_many(&self, keys: &[String]) -> Result<u64> {
        self.0.delete_many(keys).await
    }
    async fn contains(&self, key: &str) -> Result<bool> {
        self.0.contains(key).await
    }
    async fn expire_in(&self, key: &str, ttl: Option<Duration>) -> Result<bool> {
        self.0.expire_in(key, ttl).await
    }
    async fn ttl(&self, key: &str) -> Result<Option<Ttl>> {
        self.0.ttl(key).await
    }
    async fn clear_prefix(&self, prefix: &str) -> Result<u64> {
        self.0.clear_prefix(prefix).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cases_needing_a_missing_capability_are_not_applicable_by_name() {
    let reports =
        run_conformance(RunOptions::new(Arc::new(BaseOnly::default())).exclusive(true)).await;
    let capability_groups = [
        "take::",
        "walk::",
        "counters::",
        "leases::",
        "locks::fleet_",
        "typed_capabilities::",
        "local::",
    ];
    for report in &reports {
        let needs_capability = capability_groups
            .iter()
            .any(|group| report.case.starts_with(group));
        match &report.verdict {
            Verdict::NotApplicable(why) => {
                assert!(
                    needs_capability,
                    "{} was not applicable: {why}",
                    report.case
                );
                assert!(
                    why.contains("the base-only store does not support"),
                    "{}: {why}",
                    report.case
                );
            }
            Verdict::Passed => assert!(
                !needs_capability,
                "{} passed without its capability",
                report.case
            ),
            other => panic!("{}: {other:?}", report.case),
        }
    }
    let lacking = reports
        .iter()
        .filter(|report| matches!(report.verdict, Verdict::NotApplicable(_)))
        .count();
    assert_eq!(lacking, 40, "every capability case is not applicable");
}
