//! `clear_prefix` removes exactly its own keys.

use std::time::Instant;

use bytes::Bytes;

use super::{LONG_TTL, SHORT_TTL, bytes, sleep_past_expiry};
use crate::conformance::Ctx;
use crate::{Condition, Result};

/// Writes every key of `names` with its own name as the value.
async fn write_all(ctx: &Ctx, names: &[String]) -> Result<()> {
    let entries = names
        .iter()
        .map(|name| (name.clone(), bytes(name)))
        .collect();
    ctx.backend().set_many(entries, None).await
}

/// Clears `prefix` and checks that exactly `doomed` went and every one of `kept` stayed.
async fn clear_exactly(ctx: &Ctx, prefix: &str, doomed: &[String], kept: &[String]) -> Result<()> {
    write_all(ctx, doomed).await?;
    write_all(ctx, kept).await?;
    assert_eq!(
        ctx.backend().clear_prefix(prefix).await?,
        doomed.len() as u64,
        "prefix {prefix:?}"
    );
    for key in doomed {
        assert!(
            !ctx.backend().contains(key).await?,
            "{key:?} survived clearing {prefix:?}"
        );
    }
    for key in kept {
        assert_eq!(
            ctx.backend().get(key).await?,
            Some(bytes(key)),
            "{key:?} was lost clearing {prefix:?}"
        );
    }
    Ok(())
}

/// Clearing a prefix removes all its keys, with or without TTL, and counts them.
pub async fn clear_removes_every_key_of_the_prefix(ctx: Ctx) -> Result<()> {
    let prefix = ctx.key("a:");
    ctx.backend()
        .set(
            &format!("{prefix}ttl"),
            bytes("v"),
            Some(LONG_TTL),
            Condition::Always,
        )
        .await?;
    ctx.backend()
        .set(&prefix, bytes("the bare prefix"), None, Condition::Always)
        .await?;
    let doomed: Vec<String> = (0..10).map(|i| format!("{prefix}{i}")).collect();
    write_all(&ctx, &doomed).await?;
    assert_eq!(ctx.backend().clear_prefix(&prefix).await?, 12);
    assert_eq!(ctx.backend().clear_prefix(&prefix).await?, 0);
    Ok(())
}

/// Clearing `a:` leaves `ab:x`, `a` and `b:a:x` alone.
pub async fn clear_spares_sibling_prefixes(ctx: Ctx) -> Result<()> {
    let doomed = [ctx.key("a:x"), ctx.key("a:"), ctx.key("a:a:x")];
    let kept = [
        ctx.key("ab:x"),
        ctx.key("a"),
        ctx.key("b:a:x"),
        ctx.key("a;x"),
        ctx.key("a;"),
        ctx.key("a9"),
    ];
    clear_exactly(&ctx, &ctx.key("a:"), &doomed, &kept).await
}

/// Glob characters in a prefix match only themselves.
pub async fn clear_spares_prefixes_with_glob_characters(ctx: Ctx) -> Result<()> {
    for glob in ["*", "?", "[ab]", "[!a]", "\\*", "a*"] {
        let prefix = ctx.key(&format!("{glob}:"));
        let doomed = [format!("{prefix}1"), format!("{prefix}*")];
        let kept = [
            ctx.key("a:1"),
            ctx.key("b:1"),
            ctx.key("x:1"),
            ctx.key(&format!("{glob}x:1")),
            ctx.key("\\:1"),
            ctx.key("ab:1"),
        ];
        let kept: Vec<String> = kept
            .into_iter()
            .filter(|key| !key.starts_with(&prefix))
            .collect();
        clear_exactly(&ctx, &prefix, &doomed, &kept).await?;
    }
    Ok(())
}

/// SQL LIKE characters and backslashes in a prefix match only themselves.
pub async fn clear_spares_prefixes_with_sql_like_characters(ctx: Ctx) -> Result<()> {
    for like in ["%", "_", "\\", "%_", "a\\%"] {
        let prefix = ctx.key(&format!("{like}:"));
        let doomed = [format!("{prefix}1"), format!("{prefix}%")];
        let kept = [
            ctx.key("a:1"),
            ctx.key("ab:1"),
            ctx.key("x:1"),
            ctx.key("\\\\:1"),
            ctx.key("aa\\%:1"),
        ];
        let kept: Vec<String> = kept
            .into_iter()
            .filter(|key| !key.starts_with(&prefix))
            .collect();
        clear_exactly(&ctx, &prefix, &doomed, &kept).await?;
    }
    Ok(())
}

/// `a:` and `A:` are different prefixes.
pub async fn clear_is_case_sensitive(ctx: Ctx) -> Result<()> {
    let doomed = [ctx.key("a:x")];
    let kept = [ctx.key("A:x"), ctx.key("A:")];
    clear_exactly(&ctx, &ctx.key("a:"), &doomed, &kept).await
}

/// Clearing a prefix that holds no keys removes nothing and counts zero.
pub async fn clear_of_an_empty_prefix_space_is_zero(ctx: Ctx) -> Result<()> {
    ctx.backend()
        .set(&ctx.key("other"), bytes("v"), None, Condition::Always)
        .await?;
    assert_eq!(
        ctx.backend()
            .clear_prefix(&ctx.key("nothing-here:"))
            .await?,
        0
    );
    assert!(ctx.backend().contains(&ctx.key("other")).await?);
    Ok(())
}

/// Clearing 2,500 keys (many pages of a scan) removes and counts them all.
pub async fn clear_of_2500_keys_counts_them_all(ctx: Ctx) -> Result<()> {
    let entries = (0..2_500)
        .map(|i| (ctx.key(&format!("many:{i}")), Bytes::from(vec![1; 16])))
        .collect();
    ctx.backend().set_many(entries, Some(LONG_TTL)).await?;
    assert_eq!(ctx.backend().clear_prefix(&ctx.key("many:")).await?, 2_500);
    assert_eq!(ctx.backend().get(&ctx.key("many:0")).await?, None);
    Ok(())
}

/// A cache works normally after `clear`, and `clear` touched no other cache.
pub async fn cache_works_again_after_clear(ctx: Ctx) -> Result<()> {
    let users = ctx.builder::<String>().prefix(ctx.key("users:")).build();
    let sessions = ctx
        .builder::<String>()
        .prefix(ctx.key("users:sessions:"))
        .build();
    let user_ids = ctx.builder::<String>().prefix(ctx.key("users_")).build();
    users.set("1", &"ann".into()).await?;
    sessions.set("1", &"s1".into()).await?;
    user_ids.set("1", &"id".into()).await?;
    // `users:sessions:` lies inside `users:`: clearing the outer cache takes it too, by design.
    assert_eq!(users.clear().await?, 2);
    assert_eq!(user_ids.get("1").await?.as_deref(), Some("id"));
    users.set("2", &"bob".into()).await?;
    assert_eq!(users.get("2").await?.as_deref(), Some("bob"));
    assert_eq!(users.get("1").await?, None);
    Ok(())
}

/// `clear_prefix` counts the live keys it removed: expired ones are not counted.
pub async fn clear_counts_live_keys_only(ctx: Ctx) -> Result<()> {
    let prefix = ctx.key("p:");
    for i in 0..3 {
        ctx.backend()
            .set(
                &format!("{prefix}gone{i}"),
                bytes("v"),
                Some(SHORT_TTL),
                Condition::Always,
            )
            .await?;
    }
    let written = Instant::now();
    ctx.backend()
        .set(
            &format!("{prefix}eternal"),
            bytes("v"),
            None,
            Condition::Always,
        )
        .await?;
    ctx.backend()
        .set(
            &format!("{prefix}long"),
            bytes("v"),
            Some(LONG_TTL),
            Condition::Always,
        )
        .await?;
    sleep_past_expiry(written, SHORT_TTL).await;
    assert_eq!(ctx.backend().clear_prefix(&prefix).await?, 2);
    Ok(())
}

/// Keys that hold the whole cleared prefix in the middle, not at the start, stay.
pub async fn clear_spares_keys_that_hold_the_prefix_in_the_middle(ctx: Ctx) -> Result<()> {
    let prefix = ctx.key("p:");
    let doomed = [format!("{prefix}1"), format!("{prefix}{prefix}")];
    let kept = [
        ctx.key(&format!("q:{prefix}")),
        ctx.key(&format!("q:{prefix}1")),
        ctx.key("pp:1"),
        ctx.key("xp:1"),
    ];
    clear_exactly(&ctx, &prefix, &doomed, &kept).await
}

/// A range scan ends past every key of the prefix: keys whose next character is far outside
/// ASCII (up to U+10FFFF) go too, and the first key after the prefix's range stays.
pub async fn clear_takes_keys_whose_next_character_is_far_outside_ascii(ctx: Ctx) -> Result<()> {
    const NEXT: [&str; 10] = [
        "",
        "\u{7f}",
        "\u{80}",
        "\u{ff}",
        "\u{7ff}",
        "\u{ffff}",
        "\u{ffff}z",
        "\u{10000}",
        "\u{10ffff}",
        "\u{10ffff}\u{10ffff}x",
    ];
    for name in ["a:", "\u{fc}:", "\u{9375}", "a\u{7f}", "z\u{10ffff}"] {
        let prefix = ctx.key(name);
        let doomed: Vec<String> = NEXT.iter().map(|next| format!("{prefix}{next}")).collect();
        let mut chars: Vec<char> = name.chars().collect();
        let last = chars.pop().unwrap_or('a');
        let shorter: String = chars.iter().collect();
        let mut kept = vec![ctx.key(&shorter)];
        if let Some(after) = char::from_u32(u32::from(last) + 1) {
            kept.push(ctx.key(&format!("{shorter}{after}")));
            kept.push(ctx.key(&format!("{shorter}{after}x")));
        }
        if let Some(before) = char::from_u32(u32::from(last) - 1) {
            kept.push(ctx.key(&format!("{shorter}{before}\u{10ffff}")));
        }
        clear_exactly(&ctx, &prefix, &doomed, &kept).await?;
        ctx.backend().clear_prefix(ctx.prefix()).await?;
    }
    Ok(())
}

/// Clearing 300 keys among 500 unrelated ones (neighbouring names, some with TTLs) removes
/// exactly the 300, however the store pages through its keys.
pub async fn clear_spares_hundreds_of_unrelated_keys(ctx: Ctx) -> Result<()> {
    let prefix = ctx.key("mine:");
    let doomed: Vec<String> = (0..300).map(|i| format!("{prefix}{i}")).collect();
    let kept: Vec<String> = (0..500)
        .map(|i| match i % 4 {
            0 => ctx.key(&format!("mine{i}")),
            1 => ctx.key(&format!("min:{i}")),
            2 => ctx.key(&format!("other:mine:{i}")),
            _ => ctx.key(&format!("Mine:{i}")),
        })
        .collect();
    let with_ttl = kept
        .iter()
        .step_by(3)
        .map(|key| (key.clone(), bytes(key)))
        .collect();
    write_all(&ctx, &kept).await?;
    ctx.backend().set_many(with_ttl, Some(LONG_TTL)).await?;
    write_all(&ctx, &doomed).await?;
    assert_eq!(ctx.backend().clear_prefix(&prefix).await?, 300);
    let gone = ctx.backend().get_many(&doomed).await?;
    assert!(
        gone.iter().all(Option::is_none),
        "a key of the prefix survived"
    );
    let values = ctx.backend().get_many(&kept).await?;
    for (key, value) in kept.iter().zip(values) {
        assert_eq!(
            value,
            Some(bytes(key)),
            "{key:?} was lost clearing {prefix:?}"
        );
    }
    Ok(())
}

/// A prefix that ends in a space is not trimmed: `a ` spares `a` and `a1`.
pub async fn clear_of_a_prefix_with_a_trailing_space_is_exact(ctx: Ctx) -> Result<()> {
    let prefix = ctx.key("a ");
    let doomed = [format!("{prefix}1"), prefix.clone(), format!("{prefix} ")];
    let kept = [
        ctx.key("a"),
        ctx.key("a1"),
        ctx.key("a\t1"),
        ctx.key("a\u{a0}1"),
    ];
    clear_exactly(&ctx, &prefix, &doomed, &kept).await
}
