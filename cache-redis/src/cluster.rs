//! Redis Cluster: which primary serves which hash slot, and how a batch of keys is split so that
//! it travels as one pipeline per node, with one command (or one transaction) per slot inside.

use std::collections::{BTreeMap, HashMap};

use redis::{ErrorKind, RedisError, RedisResult, Value};

const SLOTS: usize = 16_384;

/// A primary and the slots it serves, as `CLUSTER SLOTS` reported them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    /// `host:port`, for messages.
    pub(crate) address: String,
    /// The node's id, to check that a request routed by slot reached this very node.
    pub(crate) id: String,
    /// One slot it serves: routing a request to this slot's primary reaches the node.
    pub(crate) any_slot: u16,
}

/// The slot map of a cluster.
#[derive(Debug)]
pub(crate) struct Topology {
    nodes: Vec<Node>,
    /// Index into `nodes` per slot; `None` for a slot no primary serves.
    owners: Vec<Option<u16>>,
}

/// The keys of a batch that live on one node, by slot. `route_slot` reaches the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeBatch {
    pub(crate) route_slot: Option<u16>,
    /// Per slot, the positions (into the caller's list) of its keys, in the caller's order.
    pub(crate) slots: Vec<Vec<usize>>,
}

impl Topology {
    /// Reads a `CLUSTER SLOTS` reply: `[[start, end, [host, port, id, …], replica…], …]`.
    pub(crate) fn from_cluster_slots(reply: Value) -> RedisResult<Self> {
        let ranges: Vec<Vec<Value>> = redis::from_redis_value(reply)?;
        let mut nodes: Vec<Node> = Vec::new();
        let mut owners = vec![None; SLOTS];
        for range in ranges {
            let [start, end, primary, ..] = range.as_slice() else {
                return Err(malformed("a slot range has fewer than three fields"));
            };
            let start: u16 = redis::from_redis_value_ref(start)?;
            let end: u16 = redis::from_redis_value_ref(end)?;
            let primary: Vec<Value> = redis::from_redis_value_ref(primary)?;
            let [host, port, id, ..] = primary.as_slice() else {
                return Err(malformed("a primary lacks its host, port or id"));
            };
            let host: String = redis::from_redis_value_ref(host)?;
            let port: u16 = redis::from_redis_value_ref(port)?;
            let id: String = redis::from_redis_value_ref(id)?;
            if start > end || usize::from(end) >= SLOTS {
                return Err(malformed("a slot range is out of bounds"));
            }
            let index = match nodes.iter().position(|node| node.id == id) {
                Some(index) => index,
                None => {
                    nodes.push(Node {
                        address: format!("{host}:{port}"),
                        id,
                        any_slot: start,
                    });
                    nodes.len() - 1
                }
            };
            let index = u16::try_from(index).map_err(|_| malformed("too many nodes"))?;
            for owner in &mut owners[usize::from(start)..=usize::from(end)] {
                *owner = Some(index);
            }
        }
        if nodes.is_empty() {
            return Err(malformed("no primary serves any slot"));
        }
        Ok(Self { nodes, owners })
    }

    /// Every primary that serves at least one slot.
    pub(crate) fn primaries(&self) -> &[Node] {
        &self.nodes
    }

    /// Splits `keys` into one batch per node. Keys whose slot no known primary serves go in a
    /// batch of their own, routed by that slot, so that the cluster's answer (a redirection, or
    /// "cluster down") reaches the caller.
    pub(crate) fn group<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) -> Vec<NodeBatch> {
        let mut by_slot: BTreeMap<u16, Vec<usize>> = BTreeMap::new();
        for (position, key) in keys.into_iter().enumerate() {
            by_slot.entry(slot_of(key)).or_default().push(position);
        }
        let mut by_node: HashMap<Result<u16, u16>, NodeBatch> = HashMap::new();
        for (slot, positions) in by_slot {
            let (node, route_slot) = match self.owners[usize::from(slot)] {
                Some(node) => (Ok(node), self.nodes[usize::from(node)].any_slot),
                None => (Err(slot), slot),
            };
            by_node
                .entry(node)
                .or_insert_with(|| NodeBatch {
                    route_slot: Some(route_slot),
                    slots: Vec::new(),
                })
                .slots
                .push(positions);
        }
        by_node.into_values().collect()
    }
}

/// The hash slot of a key, honouring `{hash tags}`: CRC16 (XMODEM) of the key, or of the text
/// between the first `{` and the next `}` when that is not empty, modulo 16,384.
pub(crate) fn slot_of(key: &[u8]) -> u16 {
    let hashed = hash_tag(key).unwrap_or(key);
    let mut crc: u16 = 0;
    for &byte in hashed {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 == 0 {
                crc << 1
            } else {
                (crc << 1) ^ 0x1021
            };
        }
    }
    crc % SLOTS as u16
}

/// A key that lives in `slot`: `{N}` for the first number N that hashes there. Each slot has one
/// within a few tens of thousands of tries.
pub(crate) fn key_in_slot(slot: u16) -> String {
    (0_u32..)
        .map(|n| format!("{{{n}}}"))
        .find(|key| slot_of(key.as_bytes()) == slot % SLOTS as u16)
        .unwrap_or_default()
}

fn hash_tag(key: &[u8]) -> Option<&[u8]> {
    let open = key.iter().position(|&byte| byte == b'{')?;
    let after_open = &key[open + 1..];
    let close = after_open.iter().position(|&byte| byte == b'}')?;
    (close > 0).then(|| &after_open[..close])
}

/// The keys of `batch`, one batch per distinct key, routed by that key's own slot: what a node
/// batch that met a slot in migration is sent as again. A key named more than once keeps all its
/// positions, in order, in its one batch, so that its last value is still the one written.
pub(crate) fn one_batch_per_key(keys: &[&[u8]], batch: &NodeBatch) -> Vec<NodeBatch> {
    let mut index: HashMap<&[u8], usize> = HashMap::new();
    let mut batches: Vec<NodeBatch> = Vec::new();
    for &position in batch.slots.iter().flatten() {
        let key = keys[position];
        match index.get(key) {
            Some(&at) => batches[at].slots[0].push(position),
            None => {
                index.insert(key, batches.len());
                batches.push(NodeBatch {
                    route_slot: Some(slot_of(key)),
                    slots: vec![vec![position]],
                });
            }
        }
    }
    batches
}

/// The whole batch on one connection: what a standalone server gets.
pub(crate) fn single_batch(len: usize) -> Vec<NodeBatch> {
    vec![NodeBatch {
        route_slot: None,
        slots: vec![(0..len).collect()],
    }]
}

fn malformed(what: &'static str) -> RedisError {
    RedisError::from((
        ErrorKind::UnexpectedReturnType,
        "malformed CLUSTER SLOTS reply",
        what.to_owned(),
    ))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use redis::cluster_routing::{Route, SlotAddr};

    use super::*;

    #[test]
    fn slots_match_the_cluster_specification_and_redis_rs() {
        // The specification's check value for CRC16-XMODEM, below 16,384 already.
        assert_eq!(slot_of(b"123456789"), 0x31C3);
        assert_eq!(slot_of(b"foo"), 12_182);
        assert_eq!(slot_of(b"{user1000}.following"), slot_of(b"user1000"));
        assert_eq!(slot_of(b"a:{atomic}:1"), slot_of(b"b:{atomic}:2"));
        for key in [
            "", "k", "{", "}", "{}", "{a}{b}", "é{ü}", "\0*?[x]", "{tag}", "{}x", "x{}{y}",
        ] {
            assert_eq!(
                Route::new(slot_of(key.as_bytes()), SlotAddr::Master),
                Route::with_key(key, SlotAddr::Master),
                "{key:?}"
            );
        }
    }

    #[test]
    fn every_slot_has_a_key() {
        for slot in [0, 1, 5_460, 12_182, 16_383] {
            assert_eq!(slot_of(key_in_slot(slot).as_bytes()), slot);
        }
        // `key_in_slot` ends for every slot: keys `{0}`, `{1}`, … reach them all.
        let mut unreached: HashSet<u16> = (0..SLOTS as u16).collect();
        for n in 0..1_000_000 {
            unreached.remove(&slot_of(format!("{{{n}}}").as_bytes()));
            if unreached.is_empty() {
                return;
            }
        }
        panic!(
            "{} slots have no key {{N}} below 1,000,000",
            unreached.len()
        );
    }

    fn node(host: &str, port: i64, id: &str) -> Value {
        Value::Array(vec![
            Value::BulkString(host.as_bytes().to_vec()),
            Value::Int(port),
            Value::BulkString(id.as_bytes().to_vec()),
        ])
    }

    fn slots_reply() -> Value {
        Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node("127.0.0.1", 30001, "a"),
            ]),
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(10922),
                node("127.0.0.1", 30002, "b"),
                node("127.0.0.1", 30005, "b-replica"),
            ]),
            Value::Array(vec![
                Value::Int(10923),
                Value::Int(12000),
                node("127.0.0.1", 30003, "c"),
            ]),
            Value::Array(vec![
                Value::Int(12001),
                Value::Int(16383),
                node("127.0.0.1", 30001, "a"),
            ]),
        ])
    }

    #[test]
    fn cluster_slots_replies_become_a_slot_map() {
        let topology = Topology::from_cluster_slots(slots_reply()).unwrap();
        let ids: Vec<&str> = topology.primaries().iter().map(|n| n.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        assert_eq!(topology.primaries()[0].address, "127.0.0.1:30001");
        assert_eq!(topology.primaries()[2].any_slot, 10923);
        assert!(Topology::from_cluster_slots(Value::Array(vec![])).is_err());
        assert!(
            Topology::from_cluster_slots(Value::Array(vec![Value::Array(vec![
                Value::Int(0),
                Value::Int(20_000),
                node("h", 1, "x"),
            ])]))
            .is_err()
        );
    }

    #[test]
    fn batches_go_one_per_node_with_one_group_per_slot() {
        let topology = Topology::from_cluster_slots(slots_reply()).unwrap();
        let keys: Vec<String> = (0..1_000)
            .map(|i| format!("k{i}"))
            .chain(["{t}1".into(), "{t}2".into(), "k7".into()])
            .collect();
        let batches = topology.group(keys.iter().map(|k| k.as_bytes()));
        assert_eq!(batches.len(), 3, "one batch per primary");
        let mut seen = vec![0; keys.len()];
        for batch in &batches {
            let route = usize::from(batch.route_slot.unwrap());
            let node = topology.owners[route];
            for positions in &batch.slots {
                let slot = slot_of(keys[positions[0]].as_bytes());
                assert_eq!(topology.owners[usize::from(slot)], node);
                assert!(
                    positions.windows(2).all(|w| w[0] < w[1]),
                    "caller's order kept"
                );
                for &position in positions {
                    assert_eq!(slot_of(keys[position].as_bytes()), slot);
                    seen[position] += 1;
                }
            }
        }
        assert!(seen.iter().all(|&n| n == 1), "every key exactly once");
    }

    #[test]
    fn a_batch_splits_into_one_batch_per_distinct_key() {
        let keys: Vec<&[u8]> = vec![b"{t}a", b"{t}b", b"x", b"{t}a", b"y", b"{t}a"];
        let batch = NodeBatch {
            route_slot: Some(0),
            slots: vec![vec![0, 1, 3, 5], vec![2], vec![4]],
        };
        let split = one_batch_per_key(&keys, &batch);
        let expected = |key: &[u8], positions: Vec<usize>| NodeBatch {
            route_slot: Some(slot_of(key)),
            slots: vec![positions],
        };
        assert_eq!(
            split,
            vec![
                expected(b"{t}a", vec![0, 3, 5]),
                expected(b"{t}b", vec![1]),
                expected(b"x", vec![2]),
                expected(b"y", vec![4]),
            ]
        );
    }

    #[test]
    fn keys_of_unserved_slots_are_routed_by_their_own_slot() {
        let reply = Value::Array(vec![Value::Array(vec![
            Value::Int(0),
            Value::Int(100),
            node("h", 1, "x"),
        ])]);
        let topology = Topology::from_cluster_slots(reply).unwrap();
        let batches = topology.group([b"foo".as_slice()]);
        assert_eq!(
            batches,
            vec![NodeBatch {
                route_slot: Some(12_182),
                slots: vec![vec![0]]
            }]
        );
    }
}
