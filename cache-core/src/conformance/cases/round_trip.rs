//! Values go in and come out unchanged.

use bytes::Bytes;

use super::bytes;
use crate::conformance::Ctx;
use crate::{Condition, Error, Result};

/// A key never written reads as `None`.
pub async fn missing_key_reads_as_none(ctx: Ctx) -> Result<()> {
    assert_eq!(ctx.backend().get(&ctx.key("never-written")).await?, None);
    Ok(())
}

/// `set` then `get` returns the same bytes.
pub async fn set_then_get_returns_the_bytes(ctx: Ctx) -> Result<()> {
    let key = ctx.key("k");
    assert!(
        ctx.backend()
            .set(&key, bytes("value"), None, Condition::Always)
            .await?
    );
    assert_eq!(ctx.backend().get(&key).await?, Some(bytes("value")));
    Ok(())
}

/// An empty value is present, not absent.
pub async fn empty_value_round_trips(ctx: Ctx) -> Result<()> {
    let key = ctx.key("empty");
    ctx.backend()
        .set(&key, Bytes::new(), None, Condition::Always)
        .await?;
    assert_eq!(ctx.backend().get(&key).await?, Some(Bytes::new()));
    assert!(ctx.backend().contains(&key).await?);
    Ok(())
}

/// Every byte value, including NUL and invalid UTF-8, survives.
pub async fn every_byte_value_round_trips(ctx: Ctx) -> Result<()> {
    let key = ctx.key("binary");
    let value: Bytes = (0..=255u8).chain((0..=255u8).rev()).collect();
    ctx.backend()
        .set(&key, value.clone(), None, Condition::Always)
        .await?;
    assert_eq!(ctx.backend().get(&key).await?, Some(value));
    Ok(())
}

/// A 4 MiB value survives whole.
pub async fn four_mib_value_round_trips(ctx: Ctx) -> Result<()> {
    let key = ctx.key("big");
    let value: Bytes = (0..4 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    ctx.backend()
        .set(&key, value.clone(), None, Condition::Always)
        .await?;
    let read = ctx
        .backend()
        .get(&key)
        .await?
        .expect("the 4 MiB value is present");
    assert_eq!(read.len(), value.len());
    assert!(read == value, "the 4 MiB value came back different");
    Ok(())
}

/// A second `set` replaces the first value.
pub async fn overwrite_replaces_the_value(ctx: Ctx) -> Result<()> {
    let key = ctx.key("k");
    ctx.backend()
        .set(&key, bytes("first"), None, Condition::Always)
        .await?;
    ctx.backend()
        .set(&key, bytes("second"), None, Condition::Always)
        .await?;
    assert_eq!(ctx.backend().get(&key).await?, Some(bytes("second")));
    Ok(())
}

/// What a caller does with bytes it wrote or read never changes what is stored.
pub async fn values_are_copies_not_shared_state(ctx: Ctx) -> Result<()> {
    let key = ctx.key("k");
    let mut buffer = b"original".to_vec();
    ctx.backend()
        .set(
            &key,
            Bytes::copy_from_slice(&buffer),
            None,
            Condition::Always,
        )
        .await?;
    buffer.copy_from_slice(b"mutated!");
    let read = ctx.backend().get(&key).await?.expect("present");
    let mut read = Vec::from(read);
    read[0] = b'X';
    assert_eq!(ctx.backend().get(&key).await?, Some(bytes("original")));
    Ok(())
}

/// A 64 MiB value survives whole, or the store refuses it with `Error::ValueTooLarge` naming the
/// key and leaves the old value in place: never a truncated value.
pub async fn value_of_64_mib_round_trips_or_is_too_large(ctx: Ctx) -> Result<()> {
    let key = ctx.key("huge");
    ctx.backend()
        .set(&key, bytes("old"), None, Condition::Always)
        .await?;
    let value = super::patterned(64 * 1024 * 1024, 253);
    match ctx
        .backend()
        .set(&key, value.clone(), None, Condition::Always)
        .await
    {
        Ok(written) => {
            assert!(written);
            let read = ctx
                .backend()
                .get(&key)
                .await?
                .expect("the 64 MiB value is present");
            assert_eq!(read.len(), value.len(), "the 64 MiB value came back cut");
            assert!(read == value, "the 64 MiB value came back different");
        }
        Err(Error::ValueTooLarge { key: refused, .. }) => {
            assert_eq!(refused, key, "ValueTooLarge must name the key");
            assert_eq!(
                ctx.backend().get(&key).await?,
                Some(bytes("old")),
                "a refused value changed what was stored"
            );
        }
        Err(other) => return Err(other),
    }
    ctx.backend().delete(&key).await.map(drop)
}

/// A batch carrying a 4 MiB value beside tiny and empty ones writes each whole.
pub async fn large_values_round_trip_in_batches(ctx: Ctx) -> Result<()> {
    let big = super::patterned(4 * 1024 * 1024, 249);
    let entries = vec![
        (ctx.key("big"), big.clone()),
        (ctx.key("tiny"), bytes("t")),
        (ctx.key("empty"), Bytes::new()),
    ];
    ctx.backend().set_many(entries.clone(), None).await?;
    let keys: Vec<String> = entries.iter().map(|(key, _)| key.clone()).collect();
    let values = ctx.backend().get_many(&keys).await?;
    for ((key, expected), value) in entries.into_iter().zip(values) {
        let value = value.unwrap_or_else(|| panic!("{key:?} is missing"));
        assert_eq!(value.len(), expected.len(), "{key:?} came back cut");
        assert!(value == expected, "{key:?} came back different");
    }
    Ok(())
}
