//! Every serializer's decode over arbitrary bytes, and over valid encodings cut short or with a
//! byte changed: an error or a value, never a panic. (`decode_bounds.rs` bounds the memory that
//! hostile inputs may take, in a binary of its own.)

use std::collections::HashMap;

use bytes::Bytes;
use cache_core::{Cbor, Json, Raw, Serializer};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Doc {
    id: String,
    also_known_as: Vec<String>,
    services: HashMap<String, Vec<u64>>,
    rotated: Option<u64>,
}

fn doc() -> Doc {
    Doc {
        id: "did:plc:ewvi7nxzyoun6zhxrhs64oiz".into(),
        also_known_as: vec!["at://atproto.com".into(), "at://\u{e9}t\u{e9}".into()],
        services: HashMap::from([("pds".into(), vec![1, 2, u64::MAX])]),
        rotated: Some(7),
    }
}

fn decode_every_way(input: &Bytes) {
    macro_rules! each {
        ($($ty:ty),*) => {
            $(
                let _ = Serializer::<$ty>::decode(&Cbor, input.clone());
                let _ = Serializer::<$ty>::decode(&Json, input.clone());
                #[cfg(feature = "msgpack")]
                let _ = Serializer::<$ty>::decode(&cache_core::MessagePack, input.clone());
            )*
        };
    }
    each!(Doc, String, Vec<u8>, Vec<String>, HashMap<String, Vec<u64>>, serde_json::Value, Option<u64>);
    let _ = Serializer::<String>::decode(&Raw, input.clone());
    let _ = Serializer::<Bytes>::decode(&Raw, input.clone());
}

/// A valid encoding of [`doc`] in CBOR, JSON or (with the `msgpack` feature) MessagePack, cut at
/// `cut` and with the byte at `at` set to `byte`.
fn damaged(format: u8, cut: usize, at: usize, byte: u8) -> Bytes {
    let mut bytes = match format {
        0 => Serializer::<Doc>::encode(&Json, &doc()),
        #[cfg(feature = "msgpack")]
        1 => Serializer::<Doc>::encode(&cache_core::MessagePack, &doc()),
        _ => Serializer::<Doc>::encode(&Cbor, &doc()),
    }
    .unwrap_or_else(|error| panic!("the document encodes: {error}"))
    .to_vec();
    if !bytes.is_empty() {
        let at = at % bytes.len();
        bytes[at] = byte;
    }
    bytes.truncate(cut);
    Bytes::from(bytes)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        decode_every_way(&Bytes::from(bytes));
    }

    #[test]
    fn damaged_encodings_never_panic(
        format in 0_u8..3,
        cut in 0_usize..400,
        at in any::<usize>(),
        byte in any::<u8>(),
    ) {
        decode_every_way(&damaged(format, cut, at, byte));
    }

    #[test]
    fn every_format_round_trips_arbitrary_documents(
        id in ".{0,40}",
        also_known_as in proptest::collection::vec(".{0,12}", 0..4),
        numbers in proptest::collection::vec(any::<u64>(), 0..4),
        rotated in any::<Option<u64>>(),
    ) {
        let doc = Doc { id, also_known_as, services: HashMap::from([("s".into(), numbers)]), rotated };
        let back: Doc = Cbor.decode(Cbor.encode(&doc).expect("encodes")).expect("decodes");
        prop_assert_eq!(&back, &doc);
        let back: Doc = Json.decode(Json.encode(&doc).expect("encodes")).expect("decodes");
        prop_assert_eq!(&back, &doc);
        #[cfg(feature = "msgpack")]
        {
            let format = cache_core::MessagePack;
            let back: Doc = format.decode(format.encode(&doc).expect("encodes")).expect("decodes");
            prop_assert_eq!(&back, &doc);
        }
    }
}
