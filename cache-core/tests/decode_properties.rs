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
            )*
        };
    }
    each!(Doc, String, Vec<u8>, Vec<String>, HashMap<String, Vec<u64>>, serde_json::Value, Option<u64>);
    let _ = Serializer::<String>::decode(&Raw, input.clone());
    let _ = Serializer::<Bytes>::decode(&Raw, input.clone());
}

/// A valid encoding of [`doc`] in CBOR or JSON, cut at `cut` and with the byte at `at` set to
/// `byte`.
fn damaged(json: bool, cut: usize, at: usize, byte: u8) -> Bytes {
    let mut bytes = if json {
        Serializer::<Doc>::encode(&Json, &doc())
    } else {
        Serializer::<Doc>::encode(&Cbor, &doc())
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
        json in any::<bool>(),
        cut in 0_usize..400,
        at in any::<usize>(),
        byte in any::<u8>(),
    ) {
        decode_every_way(&damaged(json, cut, at, byte));
    }
}
