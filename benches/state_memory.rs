//! Memory per (counter, origin) entry of the replicated state: builds the state one
//! replica holds when three nodes have each written every counter once (its own writes in
//! local batches, the two others' arriving as deltas), counting every byte the allocator
//! hands out, and reads the process's resident set too. Run with `cargo bench --bench
//! state_memory`; `STATE_BENCH_COUNTERS` changes the counter count (default 1,000,000).

#[path = "common/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{live_bytes, Counting};
use gctr::crdt::{CounterEntry, LocalOp, OpKind, Origin, OriginDelta, State};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const BATCH: usize = 64;

fn main() {
    let counters: usize = std::env::var("STATE_BENCH_COUNTERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let names: Vec<String> = (0..counters).map(|i| format!("counter-{i}")).collect();
    let heap_before = live_bytes();
    let rss_before = resident_bytes();

    let mut state = State::new();
    let me = Origin::new("node-1", 1);
    for chunk in names.chunks(BATCH) {
        let ops: Vec<LocalOp> = chunk
            .iter()
            .map(|name| LocalOp {
                counter: name.clone(),
                kind: OpKind::Increment,
                amount: 1,
                key: None,
            })
            .collect();
        let batch = state.prepare_local(&me, &ops);
        state.apply_local(&batch);
    }
    for peer in ["node-2", "node-3"] {
        let origin = Origin::new(peer, 7);
        for (i, chunk) in names.chunks(BATCH).enumerate() {
            let from = (i * BATCH) as u64;
            let entries: Vec<CounterEntry> = chunk
                .iter()
                .enumerate()
                .map(|(j, name)| CounterEntry {
                    counter: name.clone(),
                    p: 3,
                    n: 1,
                    version: from + j as u64 + 1,
                    keyed: None,
                })
                .collect();
            let to = from + entries.len() as u64;
            state.apply_delta(&OriginDelta {
                origin: origin.clone(),
                from,
                to,
                entries,
            });
        }
    }

    let entries = state.entry_count();
    assert_eq!(entries, 3 * counters, "every node wrote every counter");
    assert_eq!(state.value(&names[0]), 5);
    let heap = live_bytes() - heap_before;
    let rss = resident_bytes().saturating_sub(rss_before);
    println!("counters                     {counters}");
    println!("(counter, origin) entries    {entries}");
    println!(
        "heap bytes per entry         {:.1}",
        heap as f64 / entries as f64
    );
    println!(
        "resident bytes per entry     {:.1}",
        rss as f64 / entries as f64
    );
    println!("target bytes per entry       100");
}

/// The process's resident set size, from /proc (0 where there is none).
fn resident_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<usize>().ok())
        .map_or(0, |kb| kb * 1024)
}
