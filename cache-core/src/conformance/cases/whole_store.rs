//! Cases that look at keys outside their own prefix, so they need the store to themselves
//! (see "Cases that need the store to themselves" in the [suite's docs](crate::conformance)).

use std::time::Duration;

use super::{SHORT_TTL, bytes, sleep_past_expiry};
use crate::conformance::Ctx;
use crate::{Condition, Result, Ttl};

/// `clear_prefix("")` removes every key of the store, whatever prefix it has, and counts the
/// live ones only.
pub async fn clear_of_the_empty_prefix_empties_the_store(ctx: Ctx) -> Result<()> {
    ctx.backend().clear_prefix("").await?;
    let outside = ["cachette-conformance-elsewhere:x", "other", "Ω"];
    for key in outside {
        ctx.backend()
            .set(key, bytes("v"), None, Condition::Always)
            .await?;
    }
    for i in 0..4 {
        ctx.backend()
            .set(
                &ctx.key(&format!("k{i}")),
                bytes("v"),
                None,
                Condition::Always,
            )
            .await?;
    }
    for i in 0..2 {
        ctx.backend()
            .set(
                &ctx.key(&format!("gone{i}")),
                bytes("v"),
                Some(SHORT_TTL),
                Condition::Always,
            )
            .await?;
    }
    sleep_past_expiry(std::time::Instant::now(), SHORT_TTL).await;
    assert_eq!(ctx.backend().clear_prefix("").await?, 7);
    for key in outside {
        assert!(!ctx.backend().contains(key).await?, "{key:?} survived");
    }
    assert!(!ctx.backend().contains(&ctx.key("k0")).await?);
    assert_eq!(ctx.backend().clear_prefix("").await?, 0);
    Ok(())
}

/// The raw empty key `""` is a key like any other, on every path, and distinct from `" "`.
pub async fn raw_empty_key_is_a_key(ctx: Ctx) -> Result<()> {
    let (empty, space) = (String::new(), " ".to_owned());
    ctx.backend()
        .delete_many(&[empty.clone(), space.clone()])
        .await?;
    assert!(
        ctx.backend()
            .set("", bytes("empty"), None, Condition::Always)
            .await?
    );
    assert_eq!(ctx.backend().get("").await?, Some(bytes("empty")));
    assert!(ctx.backend().contains("").await?);
    assert_eq!(ctx.backend().ttl("").await?, Some(Ttl::Eternal));
    assert_eq!(
        ctx.backend()
            .get_many(&[empty.clone(), space.clone()])
            .await?,
        vec![Some(bytes("empty")), None]
    );
    ctx.backend()
        .set_many(
            vec![(empty.clone(), bytes("E")), (space.clone(), bytes("S"))],
            None,
        )
        .await?;
    assert_eq!(ctx.backend().get("").await?, Some(bytes("E")));
    assert!(
        ctx.backend()
            .expire_in("", Some(Duration::from_secs(60)))
            .await?
    );
    assert!(
        !ctx.backend()
            .set("", bytes("x"), None, Condition::IfNotExists)
            .await?
    );
    assert!(ctx.backend().delete("").await?);
    assert_eq!(ctx.backend().get("").await?, None);
    assert_eq!(ctx.backend().get(" ").await?, Some(bytes("S")));
    assert_eq!(ctx.backend().delete_many(&[empty, space]).await?, 1);
    Ok(())
}
