//! Every serializer's decode over hostile bytes: never a panic, and never an allocation that the
//! input did not pay for (a header claiming 2^60 elements, a million-deep nesting). One test in a
//! binary of its own, so that the process's peak memory is this test's alone.

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

use bytes::Bytes;
use cache_core::{Cbor, Json, Raw, Serializer};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
#[allow(dead_code)]
struct Doc {
    id: String,
    also_known_as: Vec<String>,
    services: HashMap<String, Vec<u64>>,
}

/// The process's peak resident memory so far, in bytes (Linux's `VmHWM`).
fn peak_resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status
        .lines()
        .find(|line| line.starts_with("VmHWM:"))
        .expect("a VmHWM line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|kib| kib.parse().ok())
        .expect("VmHWM in kB");
    kib * 1024
}

/// CBOR and JSON that claim far more than they hold, or nest far deeper than any value.
fn hostile_inputs() -> Vec<Vec<u8>> {
    let mut inputs = Vec::new();
    // CBOR byte string, text, array and map heads with 8-byte lengths near u64::MAX, and 4-byte
    // ones, each followed by a few bytes only.
    for major in [0x40_u8, 0x60, 0x80, 0xa0] {
        for length in [u64::MAX, 1 << 60, u64::from(u32::MAX)] {
            let mut head = vec![major | 27];
            head.extend_from_slice(&length.to_be_bytes());
            head.extend_from_slice(b"abc");
            inputs.push(head);
        }
        inputs.push(vec![major | 26, 0xff, 0xff, 0xff, 0xff, 1, 2, 3]);
    }
    // A million-deep nesting of one-element arrays, of indefinite arrays, of maps; and of JSON.
    inputs.push([vec![0x81; 1_000_000], vec![0x00]].concat());
    inputs.push(vec![0x9f; 1_000_000]);
    inputs.push([[0xa1, 0x61, b'k'].repeat(300_000), vec![0x00]].concat());
    inputs.push(vec![b'['; 1_000_000]);
    inputs.push(b"{\"a\":".repeat(200_000));
    // MessagePack str, bin, array and map heads with 4-byte lengths near u32::MAX, and a
    // million-deep nesting of one-element arrays and maps.
    for marker in [0xdb_u8, 0xc6, 0xdd, 0xdf] {
        inputs.push(vec![marker, 0xff, 0xff, 0xff, 0xf0, 1, 2, 3]);
    }
    inputs.push([vec![0x91; 1_000_000], vec![0x00]].concat());
    inputs.push([[0x81, 0xa1, b'k'].repeat(300_000), vec![0x00]].concat());
    // Seeded random bytes, some after a valid-looking CBOR or JSON start.
    let mut random = fastrand::Rng::with_seed(0xdec0de);
    for n in 0..20_000 {
        let len = random.usize(0..256);
        let mut bytes: Vec<u8> = (0..len).map(|_| random.u8(..)).collect();
        match n % 4 {
            0 => bytes.insert(0, 0xa3),
            1 => bytes
                .splice(0..0, b"{\"id\":\"".iter().copied())
                .for_each(drop),
            _ => {}
        }
        inputs.push(bytes);
    }
    inputs
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
    each!(
        Doc,
        String,
        Vec<u8>,
        Vec<String>,
        HashMap<String, Vec<u64>>,
        serde_json::Value,
        Option<Vec<Vec<u64>>>
    );
    let _ = Serializer::<String>::decode(&Raw, input.clone());
    let _ = Serializer::<Bytes>::decode(&Raw, input.clone());
}

#[test]
fn hostile_bytes_decode_to_errors_without_panics_or_unpaid_allocations() {
    let inputs = hostile_inputs();
    let largest_input = inputs.iter().map(Vec::len).max().unwrap_or(0) as u64;
    let before = peak_resident_bytes();
    for input in inputs {
        let input = Bytes::from(input);
        let decoded = catch_unwind(AssertUnwindSafe(|| decode_every_way(&input)));
        assert!(
            decoded.is_ok(),
            "a decode panicked on {} bytes starting {:02x?}",
            input.len(),
            &input[..input.len().min(16)]
        );
    }
    // The inputs themselves are a few MiB; a decoder that believed a claimed length, or kept a
    // frame per level of nesting, would take hundreds.
    let grown = peak_resident_bytes().saturating_sub(before);
    assert!(
        grown < 64 * 1024 * 1024 + 8 * largest_input,
        "decoding hostile inputs of at most {largest_input} bytes raised peak memory by {grown} bytes"
    );
}
