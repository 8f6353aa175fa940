//! Keys next to their near misses: a store that trims, folds, normalises, sanitises, cuts or
//! string-joins keys confuses one with another here, on the single-key and the batch paths.

use bytes::Bytes;

use super::bytes;
use crate::conformance::Ctx;
use crate::{Condition, Error, Result};

/// Names that differ from each other in one small way each: trimmed, case, spaces turned into
/// underscores or dashes, a suffix, a tab, a no-break space, a control character, composed and
/// decomposed accents, a ligature.
const NEAR_MISSES: &[&str] = &[
    "my key",
    "my key ",
    " my key",
    "my  key",
    "my_key",
    "my-key",
    "mykey",
    "My Key",
    "MY KEY",
    "my key~",
    "my key\t",
    "my\u{a0}key",
    "my key\u{1}",
    "caf\u{e9}",
    "cafe\u{301}",
    "\u{fb01}le",
    "file",
];

/// Near-miss keys written one by one are distinct for `get`, `get_many`, `contains` and
/// `delete_many`.
pub async fn near_miss_keys_are_distinct(ctx: Ctx) -> Result<()> {
    let keys: Vec<String> = NEAR_MISSES.iter().map(|name| ctx.key(name)).collect();
    for (i, key) in keys.iter().enumerate() {
        ctx.backend()
            .set(key, Bytes::from(i.to_string()), None, Condition::Always)
            .await?;
    }
    check_all_distinct(&ctx, &keys).await
}

/// Near-miss keys written in one `set_many` are distinct for every read, and `delete` of one
/// spares the others.
pub async fn near_miss_keys_are_distinct_in_batches(ctx: Ctx) -> Result<()> {
    let keys: Vec<String> = NEAR_MISSES.iter().map(|name| ctx.key(name)).collect();
    ctx.backend().set_many(numbered(&keys), None).await?;
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(
            ctx.backend().get(key).await?,
            Some(Bytes::from(i.to_string())),
            "{key:?}"
        );
    }
    assert!(ctx.backend().delete(&keys[0]).await?);
    let values = ctx.backend().get_many(&keys).await?;
    assert_eq!(values[0], None);
    for (i, value) in values.iter().enumerate().skip(1) {
        assert_eq!(*value, Some(Bytes::from(i.to_string())), "{:?}", keys[i]);
    }
    Ok(())
}

/// Each key with its position as its value.
fn numbered(keys: &[String]) -> Vec<(String, Bytes)> {
    keys.iter()
        .enumerate()
        .map(|(i, key)| (key.clone(), Bytes::from(i.to_string())))
        .collect()
}

async fn check_all_distinct(ctx: &Ctx, keys: &[String]) -> Result<()> {
    let values = ctx.backend().get_many(keys).await?;
    for (i, (key, value)) in keys.iter().zip(&values).enumerate() {
        let expected = Some(Bytes::from(i.to_string()));
        assert_eq!(*value, expected, "get_many of {key:?}");
        assert_eq!(ctx.backend().get(key).await?, expected, "get of {key:?}");
        assert!(ctx.backend().contains(key).await?, "contains of {key:?}");
    }
    let every_other: Vec<String> = keys.iter().step_by(2).cloned().collect();
    assert_eq!(
        ctx.backend().delete_many(&every_other).await?,
        every_other.len() as u64
    );
    let values = ctx.backend().get_many(keys).await?;
    for (i, (key, value)) in keys.iter().zip(values).enumerate() {
        let expected = (i % 2 == 1).then(|| Bytes::from(i.to_string()));
        assert_eq!(value, expected, "{key:?} after deleting every other key");
    }
    Ok(())
}

/// Every control character, and the separators a store might join batch keys with, inside
/// batch keys: each key is itself, next to the same key without the character.
pub async fn control_characters_in_batch_keys(ctx: Ctx) -> Result<()> {
    let mut names: Vec<String> = (1..0x20_u8)
        .chain([0x7f])
        .map(|byte| format!("c{}x", char::from(byte)))
        .collect();
    names.extend(
        [
            "cx",
            "c",
            "x",
            "c x",
            "a,b",
            "a",
            "b",
            "a;b",
            "a b",
            "c\u{85}x",
            "c\u{2028}x",
        ]
        .map(String::from),
    );
    let keys: Vec<String> = names.iter().map(|name| ctx.key(name)).collect();
    ctx.backend().set_many(numbered(&keys), None).await?;
    check_all_distinct(&ctx, &keys).await
}

/// A key the store cannot hold fails the whole `set_many` with `Error::InvalidKey` naming it,
/// and nothing of the batch is written; a store that holds it writes the whole batch.
pub async fn invalid_key_fails_the_whole_batch(ctx: Ctx) -> Result<()> {
    for awkward in ["k".repeat(64 * 1024), "nul\0key".to_owned()] {
        let awkward = ctx.key(&awkward);
        let (before, after) = (ctx.key("before"), ctx.key("after"));
        ctx.backend()
            .set(&before, bytes("old"), None, Condition::Always)
            .await?;
        let entries = vec![
            (before.clone(), bytes("new")),
            (awkward.clone(), bytes("awkward")),
            (after.clone(), bytes("new")),
        ];
        match ctx.backend().set_many(entries, None).await {
            Ok(()) => {
                let values = ctx
                    .backend()
                    .get_many(&[before.clone(), awkward.clone(), after.clone()])
                    .await?;
                assert_eq!(
                    values,
                    vec![
                        Some(bytes("new")),
                        Some(bytes("awkward")),
                        Some(bytes("new"))
                    ]
                );
            }
            Err(Error::InvalidKey { key, .. }) => {
                assert!(
                    key == awkward,
                    "InvalidKey named {key:?}, not the refused key"
                );
                assert_eq!(
                    ctx.backend().get(&before).await?,
                    Some(bytes("old")),
                    "a refused batch changed a key"
                );
                assert_eq!(
                    ctx.backend().get(&after).await?,
                    None,
                    "a refused batch wrote a key"
                );
            }
            Err(other) => return Err(other),
        }
        ctx.backend()
            .delete_many(&[before, after])
            .await
            .map(drop)?;
    }
    Ok(())
}
