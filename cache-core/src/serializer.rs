//! Value ↔ bytes.

use std::cell::RefCell;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::BoxError;

/// Turns values of type `V` into bytes and back.
///
/// Implement it for a format of your own; [`Cbor`] (the default), [`Json`] and [`Raw`] come with
/// cachette. A failed decode returns an error, never panics: [`Cache`](crate::Cache) reports it as
/// [`Error::Decode`](crate::Error::Decode) with the key.
pub trait Serializer<V>: Send + Sync + 'static {
    /// Encodes `value`.
    fn encode(&self, value: &V) -> Result<Bytes, BoxError>;
    /// Decodes bytes written by [`Serializer::encode`] (or by another program using the format).
    fn decode(&self, bytes: Bytes) -> Result<V, BoxError>;
}

/// CBOR through ciborium: compact, self-describing, the default.
///
/// ```
/// use cache_core::{Cbor, Serializer};
///
/// let bytes = Serializer::<Vec<u32>>::encode(&Cbor, &vec![1, 2, 3]).unwrap();
/// assert_eq!(Serializer::<Vec<u32>>::decode(&Cbor, bytes).unwrap(), vec![1, 2, 3]);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Cbor;

/// A buffer grown past this by an unusually large value is released after that value, so that one
/// outlier does not stay pinned to a thread.
const SCRATCH_KEEP_BYTES: usize = 64 * 1024;

thread_local! {
    /// Each thread encodes into one reused buffer and copies the result out at its exact size.
    /// Growing a fresh `Vec` per value instead costs a reallocation and a copy for every value
    /// past its initial capacity (a third of the encode of a 400-byte document), and the stored
    /// `Bytes` would keep the spare capacity for as long as the value lives in a memory store.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Runs `write` into this thread's scratch buffer and returns what it wrote as exact-size
/// [`Bytes`]. A `write` that encodes another value on the same thread (a `Serialize` impl that
/// calls a serializer) gets a buffer of its own.
fn encode_exact(
    write: impl FnOnce(&mut Vec<u8>) -> Result<(), BoxError>,
) -> Result<Bytes, BoxError> {
    let mut write = Some(write);
    let reused = SCRATCH.try_with(|scratch| {
        let mut buffer = scratch.try_borrow_mut().ok()?;
        let write = write.take()?;
        buffer.clear();
        let encoded = write(&mut buffer).map(|()| Bytes::copy_from_slice(&buffer));
        if buffer.capacity() > SCRATCH_KEEP_BYTES {
            *buffer = Vec::new();
        }
        Some(encoded)
    });
    match (reused, write) {
        (Ok(Some(encoded)), _) => encoded,
        (_, Some(write)) => {
            let mut buffer = Vec::new();
            write(&mut buffer)?;
            Ok(Bytes::from(buffer))
        }
        (_, None) => Err("the encoder ran but produced no result".into()),
    }
}

impl<V: Serialize + DeserializeOwned + Send + Sync + 'static> Serializer<V> for Cbor {
    fn encode(&self, value: &V) -> Result<Bytes, BoxError> {
        encode_exact(|buffer| Ok(ciborium::into_writer(value, buffer)?))
    }

    fn decode(&self, bytes: Bytes) -> Result<V, BoxError> {
        // `ciborium::from_reader` zeroes a 4 KiB scratch array on every call, a sixth of the
        // instructions of a memory-store hit; a per-thread buffer is zeroed once. A decode nested
        // inside another on the same thread (a `Deserialize` impl that decodes) uses a stack one.
        let mut input = Some(&bytes[..]);
        let reused = DECODE_SCRATCH.try_with(|scratch| {
            let mut scratch = scratch.try_borrow_mut().ok()?;
            let input = input.take()?;
            Some(ciborium::de::from_reader_with_buffer(
                input,
                &mut scratch[..],
            ))
        });
        match (reused, input) {
            (Ok(Some(decoded)), _) => Ok(decoded?),
            (_, Some(input)) => Ok(ciborium::from_reader(input)?),
            (_, None) => Err("the decoder ran but produced no result".into()),
        }
    }
}

/// The size of ciborium's own scratch array: text and byte strings up to it are decoded without
/// an allocation of their own.
const DECODE_SCRATCH_BYTES: usize = 4096;

thread_local! {
    /// Each thread's CBOR decode scratch, allocated and zeroed once.
    static DECODE_SCRATCH: RefCell<Box<[u8]>> =
        RefCell::new(vec![0; DECODE_SCRATCH_BYTES].into_boxed_slice());
}

/// Plain JSON text through serde_json: the stored bytes are exactly what other languages' JSON
/// cache clients read and write.
///
/// ```
/// use cache_core::{Json, Serializer};
///
/// let bytes = Serializer::<(u8, String)>::encode(&Json, &(1, "a".into())).unwrap();
/// assert_eq!(&bytes[..], br#"[1,"a"]"#);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl<V: Serialize + DeserializeOwned + Send + Sync + 'static> Serializer<V> for Json {
    fn encode(&self, value: &V) -> Result<Bytes, BoxError> {
        encode_exact(|buffer| Ok(serde_json::to_writer(buffer, value)?))
    }

    fn decode(&self, bytes: Bytes) -> Result<V, BoxError> {
        Ok(serde_json::from_slice(&bytes)?)
    }
}

/// MessagePack through rmp-serde, with struct fields stored by name (feature `msgpack`).
///
/// Decodes a DID document about three times faster than [`Cbor`] and stores it a little smaller;
/// like CBOR and JSON, a struct that gains an optional field still reads its old entries. Names
/// are kept (`rmp_serde::encode::write_named`) so that reordering fields never misreads an entry.
///
/// ```
/// use cache_core::{MessagePack, Serializer};
///
/// let bytes = Serializer::<Vec<u32>>::encode(&MessagePack, &vec![1, 2, 3]).unwrap();
/// assert_eq!(&bytes[..], &[0x93, 1, 2, 3]);
/// assert_eq!(Serializer::<Vec<u32>>::decode(&MessagePack, bytes).unwrap(), vec![1, 2, 3]);
/// ```
#[cfg(feature = "msgpack")]
#[derive(Debug, Clone, Copy, Default)]
pub struct MessagePack;

/// How deeply a MessagePack value may nest before its decode is refused, as serde_json's limit.
#[cfg(feature = "msgpack")]
const MESSAGEPACK_MAX_DEPTH: usize = 128;

#[cfg(feature = "msgpack")]
impl<V: Serialize + DeserializeOwned + Send + Sync + 'static> Serializer<V> for MessagePack {
    fn encode(&self, value: &V) -> Result<Bytes, BoxError> {
        encode_exact(|buffer| Ok(rmp_serde::encode::write_named(buffer, value)?))
    }

    fn decode(&self, bytes: Bytes) -> Result<V, BoxError> {
        let mut decoder = rmp_serde::Deserializer::from_read_ref(&bytes[..]);
        // rmp-serde allows 1,024 levels, past what a debug build's stack holds for a deep
        // `serde_json::Value`; serde_json stops at 128, ciborium at 256.
        decoder.set_max_depth(MESSAGEPACK_MAX_DEPTH);
        Ok(V::deserialize(&mut decoder)?)
    }
}

/// Bytes pass through untouched: for `Vec<u8>`, [`Bytes`] and `String` (which must be UTF-8 to
/// decode).
///
/// ```
/// use bytes::Bytes;
/// use cache_core::{Raw, Serializer};
///
/// let bytes = Serializer::<Vec<u8>>::encode(&Raw, &vec![0, 255]).unwrap();
/// assert_eq!(&bytes[..], &[0, 255]);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Raw;

impl Serializer<Vec<u8>> for Raw {
    fn encode(&self, value: &Vec<u8>) -> Result<Bytes, BoxError> {
        Ok(Bytes::copy_from_slice(value))
    }

    fn decode(&self, bytes: Bytes) -> Result<Vec<u8>, BoxError> {
        Ok(Vec::from(bytes))
    }
}

impl Serializer<Bytes> for Raw {
    fn encode(&self, value: &Bytes) -> Result<Bytes, BoxError> {
        Ok(value.clone())
    }

    fn decode(&self, bytes: Bytes) -> Result<Bytes, BoxError> {
        Ok(bytes)
    }
}

impl Serializer<String> for Raw {
    fn encode(&self, value: &String) -> Result<Bytes, BoxError> {
        Ok(Bytes::copy_from_slice(value.as_bytes()))
    }

    fn decode(&self, bytes: Bytes) -> Result<String, BoxError> {
        Ok(String::from_utf8(Vec::from(bytes))?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Doc {
        id: String,
        keys: Vec<String>,
    }

    #[test]
    fn corrupt_bytes_are_errors_not_panics() {
        for garbage in [&b""[..], b"\xff\xff\xff", b"{\"id\":", b"\x9f\x9f\x9f"] {
            let garbage = Bytes::from_static(garbage);
            assert!(Serializer::<Doc>::decode(&Cbor, garbage.clone()).is_err());
            assert!(Serializer::<Doc>::decode(&Json, garbage).is_err());
        }
        assert!(Serializer::<String>::decode(&Raw, Bytes::from_static(b"\xff")).is_err());
    }

    #[test]
    fn encodings_are_the_formats_bytes_whatever_was_encoded_before_on_the_thread() {
        let big = Doc {
            id: "x".repeat(200_000),
            keys: vec!["k".into(); 3],
        };
        let small = Doc {
            id: "did:plc:abc".into(),
            keys: vec!["a".into()],
        };
        for doc in [&small, &big, &small, &small] {
            let mut expected = Vec::new();
            ciborium::into_writer(doc, &mut expected).unwrap();
            assert_eq!(&Cbor.encode(doc).unwrap()[..], &expected[..]);
            assert_eq!(Json.encode(doc).unwrap(), serde_json::to_vec(doc).unwrap());
            let back: Doc = Cbor.decode(Cbor.encode(doc).unwrap()).unwrap();
            assert_eq!(&back, doc);
        }
    }

    #[test]
    fn an_encoding_that_encodes_another_value_on_its_thread_gets_both_right() {
        let mut inner = None;
        let outer = encode_exact(|buffer| {
            buffer.extend_from_slice(b"outer:");
            inner = Some(Serializer::<Vec<u8>>::encode(&Json, &vec![1, 2]));
            buffer.extend_from_slice(b"done");
            Ok(())
        })
        .unwrap();
        assert_eq!(&outer[..], b"outer:done");
        assert_eq!(&inner.unwrap().unwrap()[..], b"[1,2]");
    }

    /// Holds a CBOR encoding of its numbers, decoded from inside its own `Deserialize`, as a
    /// wrapper type might: the inner decode runs while the outer one holds the thread's buffer.
    #[derive(Debug, PartialEq)]
    struct Nested(Vec<u32>);

    impl serde::Serialize for Nested {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let inner = Serializer::<Vec<u32>>::encode(&Cbor, &self.0)
                .map_err(serde::ser::Error::custom)?;
            serde::Serialize::serialize(&inner.to_vec(), s)
        }
    }

    impl<'de> serde::Deserialize<'de> for Nested {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let inner: serde_json::Value = serde::Deserialize::deserialize(d)?;
            let bytes: Vec<u8> = match inner {
                serde_json::Value::Array(items) => items
                    .iter()
                    .map(|v| v.as_u64().and_then(|b| u8::try_from(b).ok()))
                    .collect::<Option<_>>()
                    .ok_or_else(|| serde::de::Error::custom("not bytes"))?,
                _ => return Err(serde::de::Error::custom("not bytes")),
            };
            Serializer::<Vec<u32>>::decode(&Cbor, Bytes::from(bytes))
                .map(Nested)
                .map_err(serde::de::Error::custom)
        }
    }

    #[test]
    fn a_decode_nested_in_a_decode_on_one_thread_gets_both_right() {
        let inner = Serializer::<Vec<u32>>::encode(&Cbor, &vec![7, 8]).unwrap();
        let outer = Serializer::<Vec<u8>>::encode(&Cbor, &inner.to_vec()).unwrap();
        let back: Nested = Cbor.decode(outer).unwrap();
        assert_eq!(back, Nested(vec![7, 8]));
    }

    #[test]
    fn json_is_plain_json_text() {
        let doc = Doc {
            id: "did:x".into(),
            keys: vec!["a".into()],
        };
        let bytes = Json.encode(&doc).unwrap();
        assert_eq!(&bytes[..], br#"{"id":"did:x","keys":["a"]}"#);
        let back: Doc = Json
            .decode(Bytes::from_static(br#"{ "keys": ["a"], "id": "did:x" }"#))
            .unwrap();
        assert_eq!(back, doc);
    }
}
