//! The fixed workload: DID-document values under `did:plc:` keys.
//!
//! Everything here is deterministic (a seeded generator), so two runs, months apart, store the
//! same keys and the same bytes and their numbers stay comparable.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::BenchResult;

/// How many distinct keys every contender preloads and then reads and writes.
pub const KEYS: usize = 10_000;
/// Keys per `get_many` / `set_many` call.
pub const BATCH: usize = 100;
/// Keys per call when counting round trips.
pub const ROUND_TRIP_BATCH: usize = 1_000;
/// Tasks of the concurrent `get`.
pub const TASKS: usize = 64;
/// The TTL of every write.
pub const TTL: Duration = Duration::from_secs(300);

const SEED: u64 = 0x00ca_c4e7_7e00_0006;
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// A DID document as a resolver would cache it, with the field names of the DID JSON format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DidDoc {
    /// The DID itself.
    pub id: String,
    /// Handles, as `at://` URIs.
    pub also_known_as: Vec<String>,
    /// Signing keys.
    pub verification_methods: Vec<VerificationMethod>,
    /// Where the account's data lives.
    pub services: Vec<Service>,
}

/// One key of a [`DidDoc`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationMethod {
    /// `did#fragment`.
    pub id: String,
    /// The key type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The DID that controls the key.
    pub controller: String,
    /// The public key, multibase-encoded.
    pub public_key_multibase: String,
}

/// One service of a [`DidDoc`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// `#fragment`.
    pub id: String,
    /// The service type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The service URL.
    pub endpoint: String,
}

/// The keys and documents every contender works on, plus the order they are visited in.
#[derive(Debug)]
pub struct Workload {
    /// `did:plc:` + 24 base32 characters, all distinct.
    pub keys: Vec<String>,
    /// `docs[i]` is the document of `keys[i]`.
    pub docs: Vec<DidDoc>,
    /// A random permutation of `0..KEYS`: reads and writes walk it so that they hit keys in
    /// random order, not in insertion order.
    pub order: Vec<usize>,
}

/// Shared by every contender and every task.
pub type SharedWorkload = Arc<Workload>;

impl Workload {
    /// The workload; the same on every run.
    pub fn new() -> Self {
        let mut rng = fastrand::Rng::with_seed(SEED);
        let mut keys = Vec::with_capacity(KEYS);
        let mut seen = std::collections::HashSet::with_capacity(KEYS);
        while keys.len() < KEYS {
            let key = did(&mut rng);
            if seen.insert(key.clone()) {
                keys.push(key);
            }
        }
        let docs = keys
            .iter()
            .enumerate()
            .map(|(index, key)| document(key, index, &mut rng))
            .collect();
        let mut order: Vec<usize> = (0..KEYS).collect();
        rng.shuffle(&mut order);
        Self { keys, docs, order }
    }

    /// The `count` key indices that follow position `start` of the random order, wrapping.
    pub fn run_of(&self, start: usize, count: usize) -> Vec<usize> {
        (0..count)
            .map(|offset| self.order[(start + offset) % self.order.len()])
            .collect()
    }

    /// The CBOR size of the first document: what one value weighs in every store.
    pub fn value_bytes(&self) -> BenchResult<usize> {
        Ok(encode(&self.docs[0])?.len())
    }
}

fn did(rng: &mut fastrand::Rng) -> String {
    let mut did = String::with_capacity(32);
    did.push_str("did:plc:");
    for _ in 0..24 {
        did.push(char::from(BASE32[rng.usize(..BASE32.len())]));
    }
    did
}

fn base58(rng: &mut fastrand::Rng, len: usize) -> String {
    const ALPHABET: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    (0..len)
        .map(|_| char::from(ALPHABET[rng.usize(..ALPHABET.len())]))
        .collect()
}

fn document(did: &str, index: usize, rng: &mut fastrand::Rng) -> DidDoc {
    let handle = format!("u{index:05}");
    DidDoc {
        id: did.to_owned(),
        also_known_as: vec![
            format!("at://{handle}.bsky.social"),
            format!("at://{handle}.me"),
        ],
        verification_methods: vec![
            VerificationMethod {
                id: "#atproto".to_owned(),
                kind: "Multikey".to_owned(),
                controller: did.to_owned(),
                public_key_multibase: format!("zQ3sh{}", base58(rng, 16)),
            },
            VerificationMethod {
                id: "#label".to_owned(),
                kind: "Multikey".to_owned(),
                controller: did.to_owned(),
                public_key_multibase: format!("zDn{}", base58(rng, 10)),
            },
        ],
        services: vec![Service {
            id: "#pds".to_owned(),
            kind: "AtprotoPds".to_owned(),
            endpoint: format!("https://pds{:02}.example", index % 64),
        }],
    }
}

/// CBOR through ciborium into a buffer sized for the document: the encoding every raw driver
/// contender uses, byte for byte what `cache_core::Cbor` writes.
pub fn encode(doc: &DidDoc) -> BenchResult<Vec<u8>> {
    let mut buffer = Vec::with_capacity(512);
    ciborium::into_writer(doc, &mut buffer)?;
    Ok(buffer)
}

/// [`encode`] into [`Bytes`].
pub fn encode_bytes(doc: &DidDoc) -> BenchResult<Bytes> {
    encode(doc).map(Bytes::from)
}

/// Decodes what [`encode`] wrote.
pub fn decode(bytes: &[u8]) -> BenchResult<DidDoc> {
    Ok(ciborium::from_reader(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_distinct_plc_dids_and_values_weigh_300_to_400_cbor_bytes() {
        let workload = Workload::new();
        assert_eq!(workload.keys.len(), KEYS);
        for key in &workload.keys {
            let suffix = key.strip_prefix("did:plc:").unwrap();
            assert_eq!(suffix.len(), 24);
            assert!(suffix.bytes().all(|byte| BASE32.contains(&byte)));
        }
        for doc in workload.docs.iter().take(100) {
            let bytes = encode(doc).unwrap();
            assert!((300..=400).contains(&bytes.len()), "{} bytes", bytes.len());
            assert_eq!(&decode(&bytes).unwrap(), doc);
        }
        let mut order = workload.order.clone();
        order.sort_unstable();
        assert_eq!(order, (0..KEYS).collect::<Vec<_>>());
    }

    #[test]
    fn the_workload_is_the_same_on_every_run() {
        let (first, second) = (Workload::new(), Workload::new());
        assert_eq!(first.keys, second.keys);
        assert_eq!(first.docs, second.docs);
        assert_eq!(first.order, second.order);
    }
}
