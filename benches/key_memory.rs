//! Bytes per retained idempotency key: builds the state of a replica whose own node
//! accepted `KEY_BENCH_KEYS` keys (default 1,000,000), 64 to a local batch, spread over
//! 64 counters, and measures, for keys of 16 bytes and of 36 (a UUID):
//!
//! - the heap the keys hold while live (accepted, not yet resolved), and again once the
//!   node has folded them all (tombstones, kept until the retention window ends),
//!   counting every byte the allocator hands out;
//! - the WAL bytes their acceptances take: each local batch is one WAL record, its delta
//!   in the codec's encoding behind a record type byte and a frame header.
//!
//! Run with `cargo bench --bench key_memory`. Ends with one `RESULT` line for
//! `scripts/bench.sh`.

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{live_bytes, Counting};
use gctr::codec::delta_len;
use gctr::crdt::{LocalOp, OpKind, Origin, Resolution, State};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const BATCH: usize = 64;
const COUNTERS: usize = 64;
/// What the WAL adds to a local batch's delta: the frame header (sequence number, length
/// and CRC: 8 + 4 + 4 bytes, src/wal/frame.rs) and the record type byte
/// (src/wal/record.rs). Those modules are private to the crate, hence the copy here.
const RECORD_OVERHEAD: usize = 16 + 1;
/// When every key is accepted, in milliseconds since the Unix epoch.
const AT_MS: u64 = 1_764_633_600_000;

/// What one run measured, per key.
struct Figures {
    live_heap: f64,
    tombstone_heap: f64,
    wal: f64,
    fold_wal: f64,
}

fn main() {
    let keys: usize = std::env::var("KEY_BENCH_KEYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    println!("keys accepted, in batches of {BATCH} over {COUNTERS} counters: {keys}");
    let mut result = String::from("RESULT");
    for (len, key) in [(16, key16 as fn(usize) -> String), (36, uuid)] {
        let f = measure(keys, key);
        let line = |what: &str, v: String| println!("{len}-byte keys: {what:<32} {v}");
        line("heap bytes per live key", format!("{:.1}", f.live_heap));
        line(
            "heap bytes per tombstone",
            format!("{:.1}", f.tombstone_heap),
        );
        line("WAL bytes per key (acceptances)", format!("{:.1}", f.wal));
        line(
            "WAL bytes per key (their folds)",
            format!("{:.3}", f.fold_wal),
        );
        result += &format!(
            " live_heap_{len}={:.1} tombstone_heap_{len}={:.1} wal_{len}={:.1}",
            f.live_heap, f.tombstone_heap, f.wal
        );
    }
    println!("{result}");
}

/// Key `i`, 16 bytes.
fn key16(i: usize) -> String {
    format!("{i:016x}")
}

/// Key `i`, 36 bytes in the form of a UUID.
fn uuid(i: usize) -> String {
    format!("5f0c2e8a-91d4-4b7e-a3c1-{i:012x}")
}

fn measure(keys: usize, key: fn(usize) -> String) -> Figures {
    let me = Origin::new("node-1", 1);
    let mut state = State::new();
    let counter = |i: usize| format!("counter-{}", i % COUNTERS);
    // The counters exist before the keys, so the heap measured is the keys' alone.
    let plain: Vec<LocalOp> = (0..COUNTERS).map(|i| op(counter(i), None)).collect();
    state.apply_local(&state.prepare_batch(&me, &plain, AT_MS, &[]));
    let heap_before = live_bytes();

    let mut wal = 0;
    for first in (0..keys).step_by(BATCH) {
        let ops: Vec<LocalOp> = (first..keys.min(first + BATCH))
            .map(|i| op(counter(i), Some(key(i))))
            .collect();
        let batch = state.prepare_batch(&me, &ops, AT_MS, &[]);
        assert!(batch.results.iter().all(Result::is_ok), "every key is new");
        wal += RECORD_OVERHEAD + delta_len(&batch.delta);
        state.apply_local(&batch);
    }
    assert_eq!(
        (state.key_count(), state.unresolved_acceptances()),
        (keys, keys)
    );
    let live_heap = live_bytes() - heap_before;

    // One node alone: every key is stable at once, and it wins each.
    let folds = state.plan_folds(&me, |_| Resolution::Fold);
    let batch = state.prepare_batch(&me, &[], AT_MS, &folds);
    let fold_wal = RECORD_OVERHEAD + delta_len(&batch.delta);
    state.apply_local(&batch);
    drop(folds);
    assert_eq!(
        (state.key_count(), state.unresolved_acceptances()),
        (keys, 0)
    );
    assert_eq!(
        state.value(&counter(0)) as usize,
        1 + keys.div_ceil(COUNTERS)
    );
    let tombstone_heap = live_bytes() - heap_before;

    let per_key = |bytes: usize| bytes as f64 / keys as f64;
    Figures {
        live_heap: per_key(live_heap),
        tombstone_heap: per_key(tombstone_heap),
        wal: per_key(wal),
        fold_wal: per_key(fold_wal),
    }
}

fn op(counter: String, key: Option<String>) -> LocalOp {
    LocalOp {
        counter,
        kind: OpKind::Increment,
        amount: 1,
        key,
    }
}
