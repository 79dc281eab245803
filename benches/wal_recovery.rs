//! How fast `Wal::open` replays: writes 1,000,000 local batches (one counter each, over
//! 1,000 counters) with fsync off for setup speed, then times recovery without a
//! snapshot, and after a snapshot of all of it. Run with `cargo bench --bench
//! wal_recovery`; set `WAL_BENCH_RECORDS` to change the count and `WAL_BENCH_COUNTERS`
//! the number of counters they spread over. The files are in the page
//! cache by then, so this measures the CPU cost of replay, not the disk.

use gctr::crdt::{LocalOp, OpKind};
use gctr::wal::{FsyncPolicy, Wal, WalConfig};
use std::time::Instant;

fn main() {
    let records: u64 = std::env::var("WAL_BENCH_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let counters: u64 = std::env::var("WAL_BENCH_COUNTERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&c| c > 0)
        .unwrap_or(1_000);
    let dir = tempfile::tempdir().expect("temp dir");
    let options = WalConfig {
        node_name: Some("bench".into()),
        fsync: FsyncPolicy::Never,
        snapshot_records: 0,
        snapshot_bytes: 0,
        ..WalConfig::default()
    };

    let started = Instant::now();
    let (mut wal, recovered) = Wal::open(dir.path(), options.clone()).expect("open");
    let mut state = recovered.state;
    for i in 0..records {
        let op = LocalOp {
            counter: format!("c{}", i % counters),
            kind: OpKind::Increment,
            amount: 1,
            key: None,
        };
        let batch = state.prepare_local(wal.origin(), &[op]);
        wal.append_local(&batch.delta).expect("append");
        state.apply_local(&batch);
    }
    let expected = state.to_deltas();
    let status = wal.status();
    wal.close().expect("close");
    println!(
        "setup: {records} records over {counters} counters, {} segments, {:.1} MiB, written in {:.2?}",
        status.segments,
        status.bytes as f64 / (1 << 20) as f64,
        started.elapsed()
    );

    let started = Instant::now();
    let (mut wal, recovered) = Wal::open(dir.path(), options.clone()).expect("reopen");
    let took = started.elapsed();
    assert_eq!(recovered.report.records_replayed, records);
    assert_eq!(recovered.state.to_deltas(), expected);
    println!(
        "replay without a snapshot: {records} records in {took:.2?} = {:.0} records/s",
        records as f64 / took.as_secs_f64()
    );

    let started = Instant::now();
    wal.snapshot(&recovered.state).expect("snapshot");
    let snap_took = started.elapsed();
    wal.close().expect("close");
    let started = Instant::now();
    let (_wal, recovered) = Wal::open(dir.path(), options).expect("reopen");
    let took = started.elapsed();
    assert_eq!(recovered.report.records_replayed, 0);
    assert_eq!(recovered.state.to_deltas(), expected);
    println!(
        "snapshot of the same state written in {snap_took:.2?}; open from it in {took:.2?} \
         ({records} records covered = {:.0} records/s)",
        records as f64 / took.as_secs_f64()
    );
}
