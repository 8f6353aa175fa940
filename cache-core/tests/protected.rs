//! The protected-value layers as a user relies on them: forged, copied, changed and unsigned
//! entries are refused with `Error::Decode` naming the key (never their bytes, never a secret);
//! rotation reads old entries; and over arbitrary stored bytes each layer's framing answers a
//! value or an error, never a panic, while every value round-trips through it.

#![allow(
    clippy::unwrap_used,
    reason = "helpers of tests: a failure is the test failing"
)]

use std::sync::Arc;

use bytes::Bytes;
use cache_core::layers::{Compress, Encrypt, Sign};
use cache_core::raw::Layer;
use cache_core::testing::ReferenceBackend;
use cache_core::{Backend, Cache, Condition, DecodePolicy, Error};
use proptest::prelude::*;

const SECRET: &[u8] = b"correct horse battery staple, 32b";

/// A named way of wrapping a store.
type Stack = (
    &'static str,
    Box<dyn Fn(Arc<dyn Backend>) -> Arc<dyn Backend>>,
);

fn stacks() -> Vec<Stack> {
    vec![
        (
            "sign",
            Box::new(|store| Sign::new(SECRET).salt(b"s").layer(store)),
        ),
        (
            "encrypt",
            Box::new(|store| Encrypt::new([3; 32]).layer(store)),
        ),
        (
            "compress",
            Box::new(|store| Compress::new().threshold(8).layer(store)),
        ),
        (
            "compress+encrypt",
            Box::new(|store| {
                Compress::new()
                    .threshold(8)
                    .layer(Encrypt::new([3; 32]).layer(store))
            }),
        ),
    ]
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
}

#[tokio::test]
async fn forged_copied_and_changed_entries_are_refused_naming_the_key() {
    let layers: [(&str, &dyn Layer); 2] = [
        ("sign", &Sign::new(SECRET)),
        ("encrypt", &Encrypt::new([3; 32])),
    ];
    for (name, layer) in layers {
        refuses_forgeries(name, layer).await;
    }
}

/// Writes a genuine entry, then a forged, a copied and a changed one straight into the store,
/// and checks that the cache over `layer` refuses each, naming it.
async fn refuses_forgeries(name: &str, layer: &dyn Layer) {
    {
        let store: Arc<dyn Backend> = Arc::new(ReferenceBackend::default());
        let seal = layer.layer(Arc::clone(&store));
        let cache: Cache<String> = Cache::builder(Arc::clone(&seal)).prefix("p:").build();
        cache.set("a", &"the real value".to_string()).await.unwrap();
        // Forged: written without the secret.
        store
            .set(
                "p:forged",
                Bytes::from_static(b"\xa1\x61x"),
                None,
                Condition::Always,
            )
            .await
            .unwrap();
        // Copied: a genuine entry moved under another key.
        let genuine = store.get("p:a").await.unwrap().unwrap();
        store
            .set("p:copy", genuine.clone(), None, Condition::Always)
            .await
            .unwrap();
        // Changed: one bit of the genuine entry flipped.
        let mut changed = genuine.to_vec();
        *changed.last_mut().unwrap() ^= 0x01;
        store
            .set("p:changed", changed.into(), None, Condition::Always)
            .await
            .unwrap();
        for key in ["forged", "copy", "changed"] {
            match cache.get(key).await {
                Err(Error::Decode { key: named, source }) => {
                    assert_eq!(named, key, "{name}");
                    let message = source.to_string();
                    assert!(message.starts_with(name), "{name}: {message}");
                    assert!(!message.contains("real value"), "{name}: {message}");
                }
                other => panic!("{name}: {key} answered {other:?}"),
            }
        }
        // A batch fails naming the key; as a miss, the rest is served.
        assert!(matches!(
            cache.get_many(["a", "copy"]).await,
            Err(Error::Decode { key, .. }) if key == "copy"
        ));
        let lenient: Cache<String> = Cache::builder(seal)
            .prefix("p:")
            .decode_policy(DecodePolicy::Miss)
            .build();
        let found = lenient.get_many(["a", "copy", "forged"]).await.unwrap();
        assert_eq!(found.len(), 1, "{name}");
        assert_eq!(
            lenient.get("a").await.unwrap().as_deref(),
            Some("the real value")
        );
        assert!(matches!(
            lenient.incr("n", 1).await,
            Err(Error::Unsupported { .. })
        ));
    }
}

mod planted {
    //! Two bugs signing layers ship, each caught by `refuses_forgeries`.

    use std::sync::Arc;

    use bytes::Bytes;
    use cache_core::raw::{Forward, Layer, layer_fn};
    use cache_core::{Backend, Condition, Error, Result, async_trait};
    use hmac::{Hmac, KeyInit, Mac};
    use sha2::Sha256;

    /// A MAC over the value alone: an entry copied under another key still verifies.
    #[derive(Debug)]
    pub struct ValueOnlyMac(pub Arc<dyn Backend>);

    fn mac(value: &[u8]) -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"k").expect("any length");
        mac.update(value);
        mac.finalize().into_bytes().to_vec()
    }

    #[async_trait]
    impl Forward for ValueOnlyMac {
        fn inner(&self) -> &dyn Backend {
            &*self.0
        }
        async fn get(&self, key: &str) -> Result<Option<Bytes>> {
            let Some(stored) = self.0.get(key).await? else {
                return Ok(None);
            };
            if stored.len() >= 32 && mac(&stored[32..]) == stored[..32] {
                return Ok(Some(stored.slice(32..)));
            }
            Err(Error::Decode {
                key: key.into(),
                source: "sign: the signature did not verify".into(),
            })
        }
        async fn set(
            &self,
            key: &str,
            value: Bytes,
            ttl: Option<std::time::Duration>,
            condition: Condition,
        ) -> Result<bool> {
            let sealed: Bytes = [mac(&value), value.to_vec()].concat().into();
            self.0.set(key, sealed, ttl, condition).await
        }
    }

    /// A reader that falls back to the raw bytes when an entry is not signed ("old entries").
    #[derive(Debug)]
    pub struct AcceptsUnsigned {
        pub signed: Arc<dyn Backend>,
        pub raw: Arc<dyn Backend>,
    }

    #[async_trait]
    impl Forward for AcceptsUnsigned {
        fn inner(&self) -> &dyn Backend {
            &*self.signed
        }
        async fn get(&self, key: &str) -> Result<Option<Bytes>> {
            match self.signed.get(key).await {
                Err(Error::Decode { .. }) => self.raw.get(key).await,
                other => other,
            }
        }
    }

    pub fn value_only_mac() -> impl Layer {
        layer_fn(|inner| Arc::new(ValueOnlyMac(inner)) as Arc<dyn Backend>)
    }

    pub fn accepts_unsigned() -> impl Layer {
        layer_fn(|raw: Arc<dyn Backend>| {
            let signed = super::Sign::new(super::SECRET).layer(Arc::clone(&raw));
            Arc::new(AcceptsUnsigned { signed, raw }) as Arc<dyn Backend>
        })
    }
}

#[tokio::test]
async fn the_forgery_check_catches_planted_signing_bugs() {
    for (bug, layer) in [
        (
            "value-only MAC",
            Box::new(planted::value_only_mac()) as Box<dyn Layer>,
        ),
        (
            "accepts unsigned entries",
            Box::new(planted::accepts_unsigned()),
        ),
    ] {
        let layer: Arc<dyn Layer> = Arc::from(layer);
        let caught = tokio::spawn(async move { refuses_forgeries("sign", &*layer).await }).await;
        assert!(
            caught.is_err_and(|error| error.is_panic()),
            "{bug} went unseen"
        );
    }
}

#[tokio::test]
async fn rotation_reads_entries_of_the_old_secret_and_writes_with_the_new() {
    let store: Arc<dyn Backend> = Arc::new(ReferenceBackend::default());
    let old: Cache<u32> = Cache::builder(Sign::new(b"old").layer(Arc::clone(&store))).build();
    old.set("k", &1).await.unwrap();
    let rotated: Cache<u32> = Cache::builder(
        Sign::new(b"new")
            .also_accept(b"old")
            .layer(Arc::clone(&store)),
    )
    .build();
    assert_eq!(rotated.get("k").await.unwrap(), Some(1));
    rotated.set("k", &2).await.unwrap();
    assert!(
        old.get("k").await.is_err(),
        "the old secret alone no longer verifies"
    );
    let retired: Cache<u32> = Cache::builder(Sign::new(b"new").layer(store)).build();
    assert_eq!(retired.get("k").await.unwrap(), Some(2));
}

#[test]
fn secrets_never_show_in_debug_output() {
    let sign = Sign::new(b"hunter2hunter2").salt(b"pepper-salt");
    let layered = sign.layer(Arc::new(ReferenceBackend::default()));
    for shown in [
        format!("{sign:?}"),
        format!("{layered:?}"),
        format!("{:?}", Encrypt::new([0x41; 32])),
    ] {
        assert!(
            !shown.contains("hunter2") && !shown.contains("pepper"),
            "{shown}"
        );
        assert!(
            !shown.contains("AAAA") && !shown.contains("65, 65"),
            "{shown}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever bytes sit in the store, each stack answers a value or `Error::Decode`: never a
    /// panic, never another error.
    #[test]
    fn arbitrary_stored_bytes_never_panic(
        stored in proptest::collection::vec(any::<u8>(), 0..200),
        mark in prop_oneof![Just(vec![]), Just(vec![0xC5, 0x01]), Just(vec![0xCE, 0x01]), Just(vec![0xC7]), Just(vec![0xC6])],
    ) {
        let bytes: Bytes = [mark, stored].concat().into();
        runtime().block_on(async {
            for (name, stack) in stacks() {
                let store: Arc<dyn Backend> = Arc::new(ReferenceBackend::default());
                let sealed = stack(Arc::clone(&store));
                store.set("k", bytes.clone(), None, Condition::Always).await.unwrap();
                match sealed.get("k").await {
                    Ok(_) | Err(Error::Decode { .. }) => {}
                    Err(other) => panic!("{name}: {other}"),
                }
            }
        });
    }

    /// Every value round-trips through every stack, alone and in batches.
    #[test]
    fn every_value_round_trips(
        value in proptest::collection::vec(any::<u8>(), 0..3000),
        repeat in 1_usize..4,
    ) {
        let value: Bytes = value.repeat(repeat).into();
        runtime().block_on(async {
            for (name, stack) in stacks() {
                let sealed = stack(Arc::new(ReferenceBackend::default()));
                sealed.set("k", value.clone(), None, Condition::Always).await.unwrap();
                assert_eq!(sealed.get("k").await.unwrap().as_ref(), Some(&value), "{name}");
                sealed.set_many(vec![("b".into(), value.clone())], None).await.unwrap();
                let found = sealed.get_many(&["b".to_string(), "k".to_string()]).await.unwrap();
                assert_eq!(found, vec![Some(value.clone()), Some(value.clone())], "{name}");
            }
        });
    }
}
