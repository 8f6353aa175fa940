//! The suite is only worth something if it fails for broken stores. Each test here plants one
//! classic cache bug in the reference store and checks that the case meant to catch it fails,
//! while the same case passes on the correct store.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use cache_core::conformance::{Case, cases, run_case};
use cache_core::testing::ReferenceBackend;
use cache_core::{Backend, Condition, Result, Ttl};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Bug {
    ClearMatchesLikeWildcards,
    ClearMatchesGlobs,
    IgnoresTtl,
    RoundsTtlToSeconds,
    ZeroTtlMeansEternal,
    RacyIfNotExists,
    CaseInsensitiveKeys,
    CutsKeysAtNul,
    CountsDuplicateDeletes,
    NonAtomicSetMany,
    PlainSetKeepsOldTtl,
    DeleteIgnoresExpiry,
}

#[derive(Debug)]
struct Buggy {
    inner: ReferenceBackend,
    bug: Bug,
}

impl Buggy {
    fn key(&self, key: &str) -> String {
        match self.bug {
            Bug::CaseInsensitiveKeys => key.to_lowercase(),
            Bug::CutsKeysAtNul => key.split('\0').next().unwrap_or_default().to_owned(),
            _ => key.to_owned(),
        }
    }

    fn ttl_of(&self, ttl: Option<Duration>) -> Option<Duration> {
        match (self.bug, ttl) {
            (Bug::IgnoresTtl, _) => None,
            (Bug::ZeroTtlMeansEternal, Some(Duration::ZERO)) => None,
            (Bug::RoundsTtlToSeconds, Some(ttl)) => Some(Duration::from_secs(
                ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0),
            )),
            _ => ttl,
        }
    }

    /// Does `key` "match" `prefix` the way the planted bug does?
    fn buggy_match(&self, key: &str, prefix: &str) -> bool {
        let wildcard: &[char] = match self.bug {
            Bug::ClearMatchesLikeWildcards => &['_', '%'],
            Bug::ClearMatchesGlobs => &['?', '*'],
            _ => return key.starts_with(prefix),
        };
        // Each wildcard matches any one character: enough to show the bug.
        key.chars().count() >= prefix.chars().count()
            && prefix
                .chars()
                .zip(key.chars())
                .all(|(p, k)| p == k || wildcard.contains(&p))
    }
}

#[async_trait]
impl Backend for Buggy {
    fn name(&self) -> &'static str {
        "buggy"
    }

    async fn get(&self, key: &str) -> Result<Option<Bytes>> {
        self.inner.get(&self.key(key)).await
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Bytes>>> {
        let keys: Vec<String> = keys.iter().map(|key| self.key(key)).collect();
        self.inner.get_many(&keys).await
    }

    async fn set(
        &self,
        key: &str,
        value: Bytes,
        ttl: Option<Duration>,
        condition: Condition,
    ) -> Result<bool> {
        let key = self.key(key);
        let ttl = self.ttl_of(ttl);
        if self.bug == Bug::RacyIfNotExists && condition == Condition::IfNotExists {
            if self.inner.contains(&key).await? {
                return Ok(false);
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
            return self.inner.set(&key, value, ttl, Condition::Always).await;
        }
        if self.bug == Bug::PlainSetKeepsOldTtl
            && ttl.is_none()
            && let Some(Ttl::Remaining(left)) = self.inner.ttl(&key).await?
        {
            return self.inner.set(&key, value, Some(left), condition).await;
        }
        self.inner.set(&key, value, ttl, condition).await
    }

    async fn set_many(&self, entries: Vec<(String, Bytes)>, ttl: Option<Duration>) -> Result<()> {
        let entries: Vec<(String, Bytes)> = entries
            .into_iter()
            .map(|(k, v)| (self.key(&k), v))
            .collect();
        if self.bug == Bug::NonAtomicSetMany {
            for (key, value) in entries {
                self.inner.set(&key, value, ttl, Condition::Always).await?;
                tokio::task::yield_now().await;
            }
            return Ok(());
        }
        self.inner.set_many(entries, self.ttl_of(ttl)).await
    }

    async fn delete(&self, key: &str) -> Result<bool> {
        let key = self.key(key);
        if self.bug == Bug::DeleteIgnoresExpiry {
            // Reports what is stored, expired or not, like a store that never checks deadlines.
            let stored = self.inner.stored_keys().contains(&key);
            self.inner.delete(&key).await?;
            return Ok(stored);
        }
        self.inner.delete(&key).await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<u64> {
        if self.bug == Bug::CountsDuplicateDeletes {
            let present = self.inner.get_many(keys).await?;
            self.inner.delete_many(keys).await?;
            return Ok(present.iter().filter(|v| v.is_some()).count() as u64);
        }
        let keys: Vec<String> = keys.iter().map(|key| self.key(key)).collect();
        self.inner.delete_many(&keys).await
    }

    async fn contains(&self, key: &str) -> Result<bool> {
        self.inner.contains(&self.key(key)).await
    }

    async fn expire_in(&self, key: &str, ttl: Option<Duration>) -> Result<bool> {
        self.inner.expire_in(&self.key(key), self.ttl_of(ttl)).await
    }

    async fn ttl(&self, key: &str) -> Result<Option<Ttl>> {
        self.inner.ttl(&self.key(key)).await
    }

    async fn clear_prefix(&self, prefix: &str) -> Result<u64> {
        let doomed: Vec<String> = self
            .inner
            .keys()
            .into_iter()
            .filter(|key| self.buggy_match(key, prefix))
            .collect();
        self.inner.delete_many(&doomed).await
    }
}

fn case(name: &str) -> Case {
    cases()
        .into_iter()
        .find(|case| case.name == name)
        .unwrap_or_else(|| panic!("no case {name}"))
}

/// Runs `case_name` against the correct store (must pass) and against one with `bug` (must fail).
async fn caught(bug: Bug, case_name: &str) {
    let case = case(case_name);
    let correct: Arc<dyn Backend> = Arc::new(ReferenceBackend::default());
    let passed = tokio::spawn(run_case(case.run, correct)).await;
    assert!(passed.is_ok(), "{case_name} fails on the correct store");
    let buggy: Arc<dyn Backend> = Arc::new(Buggy {
        inner: ReferenceBackend::default(),
        bug,
    });
    let outcome = tokio::spawn(run_case(case.run, buggy)).await;
    assert!(
        outcome.is_err_and(|error| error.is_panic()),
        "{case_name} did not catch {bug:?}"
    );
}

macro_rules! bug_tests {
    ($($test:ident: $bug:ident => $case:ident;)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                caught(Bug::$bug, stringify!($case)).await;
            }
        )*
    };
}

bug_tests! {
    like_wildcards_in_clear: ClearMatchesLikeWildcards => clear_spares_prefixes_with_sql_like_characters;
    globs_in_clear: ClearMatchesGlobs => clear_spares_prefixes_with_glob_characters;
    ignored_ttl: IgnoresTtl => expired_key_is_absent_for_get;
    ttl_in_whole_seconds: RoundsTtlToSeconds => ttl_is_honoured_to_the_millisecond;
    zero_ttl_as_eternal: ZeroTtlMeansEternal => zero_ttl_removes_the_key;
    check_then_set_race: RacyIfNotExists => if_not_exists_race_of_64_tasks_has_one_winner;
    case_folded_keys: CaseInsensitiveKeys => keys_differing_in_case_are_distinct;
    keys_cut_at_nul: CutsKeysAtNul => key_with_nul_round_trips_or_is_rejected;
    duplicate_deletes_counted: CountsDuplicateDeletes => delete_many_counts_exactly;
    torn_batches: NonAtomicSetMany => set_many_is_atomic_for_readers;
    plain_set_keeps_ttl: PlainSetKeepsOldTtl => plain_set_clears_an_old_ttl;
    expired_deletes_counted: DeleteIgnoresExpiry => expired_key_is_absent_for_delete;
}
