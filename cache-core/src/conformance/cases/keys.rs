//! Awkward keys are stored as themselves, or refused with `Error::InvalidKey`; never confused
//! with another key.

use bytes::Bytes;

use super::bytes;
use crate::conformance::Ctx;
use crate::{Condition, Error, Result};

/// Writes `key` beside a plain neighbour and a near miss (`key` plus one character), reads all
/// back, then deletes `key` and checks the others survived. A store may refuse `key` (and the near
/// miss, which holds the same awkward part) only with [`Error::InvalidKey`] naming it; returns
/// whether `key` was accepted.
async fn round_trips_or_is_rejected(ctx: &Ctx, name: &str) -> Result<bool> {
    let key = ctx.key(name);
    let near_miss = ctx.key(&format!("{name}~"));
    let neighbour = ctx.key("plain neighbour");
    ctx.backend()
        .set(&neighbour, bytes("neighbour"), None, Condition::Always)
        .await?;
    let near_miss_held = accepted(ctx, &near_miss, "near miss").await?;
    let key_held = accepted(ctx, &key, "exact").await?;
    if key_held {
        assert_eq!(ctx.backend().get(&key).await?, Some(bytes("exact")));
        assert!(ctx.backend().contains(&key).await?);
    }
    if near_miss_held {
        assert_eq!(
            ctx.backend().get(&near_miss).await?,
            Some(bytes("near miss"))
        );
    }
    if key_held {
        assert!(ctx.backend().delete(&key).await?);
        assert_eq!(ctx.backend().get(&key).await?, None);
    }
    if near_miss_held {
        assert_eq!(
            ctx.backend().get(&near_miss).await?,
            Some(bytes("near miss"))
        );
    }
    assert_eq!(
        ctx.backend().get(&neighbour).await?,
        Some(bytes("neighbour"))
    );
    Ok(key_held)
}

/// Writes `value` under `key`: `Ok(true)` if stored, `Ok(false)` if refused as it may be.
async fn accepted(ctx: &Ctx, key: &str, value: &str) -> Result<bool> {
    match ctx
        .backend()
        .set(key, bytes(value), None, Condition::Always)
        .await
    {
        Ok(written) => {
            assert!(written, "an unconditional set reported no write");
            Ok(true)
        }
        Err(Error::InvalidKey { key: refused, .. }) => {
            assert_eq!(refused, key, "InvalidKey must name the refused key");
            Ok(false)
        }
        Err(other) => Err(other),
    }
}

async fn must_round_trip(ctx: &Ctx, name: &str) -> Result<()> {
    assert!(
        round_trips_or_is_rejected(ctx, name).await?,
        "the store refused key {name:?}, which every store must hold"
    );
    Ok(())
}

/// The empty key (here: the bare prefix) is a key like any other.
pub async fn empty_key_round_trips_or_is_rejected(ctx: Ctx) -> Result<()> {
    round_trips_or_is_rejected(&ctx, "").await.map(drop)
}

/// A key of 64 KiB works or is refused as invalid.
pub async fn key_of_64_kib_round_trips_or_is_rejected(ctx: Ctx) -> Result<()> {
    round_trips_or_is_rejected(&ctx, &"k".repeat(64 * 1024))
        .await
        .map(drop)
}

/// A key holding NUL works or is refused as invalid; it is never cut at the NUL.
pub async fn key_with_nul_round_trips_or_is_rejected(ctx: Ctx) -> Result<()> {
    let cut = ctx.key("nul");
    ctx.backend()
        .set(&cut, bytes("the cut key"), None, Condition::Always)
        .await?;
    round_trips_or_is_rejected(&ctx, "nul\0after").await?;
    assert_eq!(ctx.backend().get(&cut).await?, Some(bytes("the cut key")));
    Ok(())
}

/// Newlines, tabs and carriage returns are ordinary characters.
pub async fn key_with_newline_and_tab_round_trips(ctx: Ctx) -> Result<()> {
    must_round_trip(&ctx, "line\nbreak\ttab\r\n").await
}

/// Glob characters are ordinary characters.
pub async fn key_with_glob_characters_round_trips(ctx: Ctx) -> Result<()> {
    must_round_trip(&ctx, "*?[a-z]{x,y}^!").await
}

/// SQL LIKE characters are ordinary characters.
pub async fn key_with_sql_like_characters_round_trips(ctx: Ctx) -> Result<()> {
    must_round_trip(&ctx, "100%_done_%").await
}

/// Quotes, backslashes and semicolons are ordinary characters.
pub async fn key_with_quotes_and_backslashes_round_trips(ctx: Ctx) -> Result<()> {
    must_round_trip(&ctx, r#"it's "quoted" \ back\\slash; DROP TABLE x; --"#).await
}

/// Non-ASCII keys work byte for byte.
pub async fn non_ascii_key_round_trips(ctx: Ctx) -> Result<()> {
    must_round_trip(&ctx, "ключ-鍵-🔑-e\u{301}").await?;
    // Precomposed and decomposed forms are different keys.
    let composed = ctx.key("\u{e9}");
    let decomposed = ctx.key("e\u{301}");
    ctx.backend()
        .set(&composed, bytes("composed"), None, Condition::Always)
        .await?;
    ctx.backend()
        .set(&decomposed, bytes("decomposed"), None, Condition::Always)
        .await?;
    assert_eq!(ctx.backend().get(&composed).await?, Some(bytes("composed")));
    assert_eq!(
        ctx.backend().get(&decomposed).await?,
        Some(bytes("decomposed"))
    );
    Ok(())
}

/// `Key`, `key` and `KEY` are three keys.
pub async fn keys_differing_in_case_are_distinct(ctx: Ctx) -> Result<()> {
    for name in ["Key", "key", "KEY", "straße", "STRASSE"] {
        ctx.backend()
            .set(&ctx.key(name), bytes(name), None, Condition::Always)
            .await?;
    }
    for name in ["Key", "key", "KEY", "straße", "STRASSE"] {
        assert_eq!(ctx.backend().get(&ctx.key(name)).await?, Some(bytes(name)));
    }
    assert!(ctx.backend().delete(&ctx.key("key")).await?);
    assert_eq!(
        ctx.backend().get(&ctx.key("Key")).await?,
        Some(bytes("Key"))
    );
    Ok(())
}

/// The batch methods handle awkward keys as the single-key methods do.
pub async fn awkward_keys_work_in_batches(ctx: Ctx) -> Result<()> {
    let names = [
        "*", "?", "[x]", "%", "_", "\\", "'", "\"", "\n", "ü", "🔑", "a b", "{tag}",
    ];
    let entries: Vec<(String, Bytes)> = names
        .iter()
        .map(|name| (ctx.key(name), bytes(name)))
        .collect();
    let keys: Vec<String> = entries.iter().map(|(key, _)| key.clone()).collect();
    ctx.backend().set_many(entries, None).await?;
    let values = ctx.backend().get_many(&keys).await?;
    for (name, value) in names.iter().zip(values) {
        assert_eq!(value, Some(bytes(name)), "key {name:?}");
    }
    assert_eq!(ctx.backend().delete_many(&keys).await?, names.len() as u64);
    assert!(
        ctx.backend()
            .get_many(&keys)
            .await?
            .iter()
            .all(Option::is_none)
    );
    Ok(())
}
