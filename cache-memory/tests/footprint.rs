//! The byte bound holds in resident memory, not only in the weigher's arithmetic: a store filled
//! far past `max_bytes` with small entries (where per-entry bookkeeping weighs most) grows the
//! process by about its bound. One test in a binary of its own, so that the process's resident
//! memory is this test's alone.

use cache_core::{Backend, Bytes, Condition};
use cache_memory::MemoryBackend;

/// The process's resident memory now, in bytes (Linux's `VmRSS`).
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_else(|error| panic!("cannot read /proc/self/status: {error}"));
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS line in /proc/self/status"));
    kib * 1024
}

#[tokio::test(flavor = "current_thread")]
async fn a_full_store_of_small_entries_holds_about_its_bound_in_resident_memory() {
    const BOUND: u64 = 64 * 1024 * 1024;
    // A DID document's size: the measurement behind the speed issue used 400-byte values.
    const VALUE: usize = 400;
    let before = resident_bytes();
    let store = MemoryBackend::builder().max_bytes(BOUND).build();
    // Ten bounds' worth of writes: the store is full and has evicted nine times over.
    let writes = 10 * BOUND as usize / VALUE;
    for i in 0..writes {
        let key = format!("did:plc:{i:024}");
        let value = Bytes::from(vec![(i % 251) as u8; VALUE]);
        store
            .set(&key, value, None, Condition::Always)
            .await
            .unwrap_or_else(|error| panic!("write {i} failed: {error}"));
    }
    store.run_pending_tasks();
    let grown = resident_bytes().saturating_sub(before);
    let held = store.entry_count();
    println!(
        "{held} entries of {VALUE} bytes held in a {BOUND}-byte bound; resident memory grew by \
         {grown} bytes ({:.0} per entry, {:.2}x the bound)",
        grown as f64 / held as f64,
        grown as f64 / BOUND as f64
    );
    assert!(held > 0, "the store holds nothing");
    // The goal is 1.2 times the bound: freed entries stay with the allocator for reuse and moka
    // sizes its tables in powers of two. With the measured per-entry overhead the growth is
    // 0.98, 1.00 and 1.02 times the bound for 40, 400 and 4,000-byte values after three bounds
    // of writes, and 0.99 for 400-byte values after ten; counting 96 bytes per entry, as the
    // store once did, it was 1.67 times.
    assert!(
        grown <= BOUND + BOUND / 5,
        "a {BOUND}-byte bound grew resident memory by {grown} bytes ({held} entries held)"
    );
}
