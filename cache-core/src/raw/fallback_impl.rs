//! The per-key loops behind [`super::fallback`].

use std::collections::HashSet;

use bytes::Bytes;

use crate::{Backend, Result};

/// [`Backend::get_many`] as one [`Backend::get`] per key, in order: one round trip per key.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> cache_core::Result<()> {
/// use cache_core::{Backend, Condition, raw::fallback, testing::ReferenceBackend};
///
/// let store = ReferenceBackend::default();
/// store.set("a", "1".into(), None, Condition::Always).await?;
/// let keys = ["a".to_string(), "b".to_string(), "a".to_string()];
/// let values = fallback::get_many_each(&store, &keys).await?;
/// assert_eq!(values, [Some("1".into()), None, Some("1".into())]);
/// # Ok(()) }
/// ```
pub async fn get_many_each<B: Backend + ?Sized>(
    store: &B,
    keys: &[String],
) -> Result<Vec<Option<Bytes>>> {
    let mut values = Vec::with_capacity(keys.len());
    for key in keys {
        values.push(store.get(key).await?);
    }
    Ok(values)
}

/// [`Backend::delete_many`] as one [`Backend::delete`] per distinct key: one round trip per key.
/// Counts each distinct key that was present once, as `delete_many` must.
pub async fn delete_many_each<B: Backend + ?Sized>(store: &B, keys: &[String]) -> Result<u64> {
    let mut seen = HashSet::with_capacity(keys.len());
    let mut removed = 0;
    for key in keys {
        if seen.insert(key.as_str()) && store.delete(key).await? {
            removed += 1;
        }
    }
    Ok(removed)
}
