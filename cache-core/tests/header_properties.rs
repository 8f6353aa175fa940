//! The entry header's decode over arbitrary bytes and over valid headers damaged: an error or a
//! header, never a panic; and what decodes is exactly what encodes back (one spelling per
//! header, so a reader and a writer can never disagree about what was stored).

use bytes::Bytes;
use cache_core::raw::header::{Header, decode, encode};
use proptest::prelude::*;

fn header() -> impl Strategy<Value = Header> {
    (
        any::<u64>(),
        any::<Option<u64>>(),
        any::<Option<u64>>(),
        any::<bool>(),
        proptest::collection::vec((".{0,12}", any::<u64>()), 0..6),
    )
        .prop_map(
            |(written_at_ms, fresh_until_ms, expires_at_ms, negative, tags)| Header {
                written_at_ms,
                fresh_until_ms,
                expires_at_ms,
                negative,
                tags,
            },
        )
}

fn payload_for(header: &Header, payload: Vec<u8>) -> Vec<u8> {
    if header.negative { Vec::new() } else { payload }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4_000))]

    #[test]
    fn arbitrary_bytes_never_panic_and_decode_only_what_encodes_back(
        bytes in proptest::collection::vec(any::<u8>(), 0..96),
    ) {
        let stored = Bytes::from(bytes);
        if let Ok((header, payload)) = decode(&stored) {
            let again = encode(&header, &payload).expect("a decoded header encodes");
            prop_assert_eq!(again, stored);
        }
    }

    #[test]
    fn bytes_after_a_valid_start_never_panic(
        version in 0u8..3,
        flags in any::<u8>(),
        rest in proptest::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut bytes = vec![0xCA, version, flags];
        bytes.extend(rest);
        let stored = Bytes::from(bytes);
        if let Ok((header, payload)) = decode(&stored) {
            prop_assert_eq!(encode(&header, &payload).expect("encodes"), stored);
        }
    }

    #[test]
    fn every_header_round_trips(header in header(), payload in proptest::collection::vec(any::<u8>(), 0..32)) {
        let payload = payload_for(&header, payload);
        let stored = encode(&header, &payload).expect("encodes");
        let (read, read_payload) = decode(&stored).expect("decodes");
        prop_assert_eq!(read, header);
        prop_assert_eq!(&read_payload[..], &payload[..]);
    }

    #[test]
    fn damaged_headers_never_panic(
        header in header(),
        payload in proptest::collection::vec(any::<u8>(), 0..16),
        at in any::<usize>(),
        byte in any::<u8>(),
        cut in any::<usize>(),
    ) {
        let payload = payload_for(&header, payload);
        let mut bytes = encode(&header, &payload).expect("encodes").to_vec();
        let at = at % bytes.len();
        bytes[at] = byte;
        bytes.truncate(cut % (bytes.len() + 1));
        let _ = decode(&Bytes::from(bytes));
    }
}

/// A header claiming 65,535 tags over a few bytes reserves room for what the bytes can hold,
/// not for the claim: the decode fails at once for the missing tags.
#[test]
fn a_tag_count_the_bytes_cannot_hold_fails_without_reserving_for_it() {
    let mut bytes = vec![0xCA, 1, 0b1000, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF];
    bytes.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    let error = decode(&Bytes::from(bytes)).expect_err("65,534 tags are missing");
    assert!(error.to_string().contains("cut short"), "{error}");
}
