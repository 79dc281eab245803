//! The durable storage: the node's [`Storage`] over the write-ahead log, kept by the
//! WAL's own thread (`wal_thread`).
//!
//! The event loop already gathers every pending request into one batch, so one batch is
//! one WAL record and (under `--fsync always`) one fsync: group commit. The batch is
//! handed to the WAL thread and left pending ([`CommitStarted::Pending`]); the event loop
//! goes on gossiping and answering reads while the disk works, and applies and answers
//! the batch when its outcome comes back — after the fsync, never before. A failed
//! append is an `Err` outcome, which fails the whole batch with 503 and nothing applied;
//! the WAL cuts the failed write away on its next append, so later writes succeed once
//! the fault clears. Snapshots are written from a copy of the state in the background.

use super::wal_thread::{self, Request, Shared};
use crate::crdt::{Origin, OriginDelta, OriginVersion, State};
use crate::node_core::{CommitStarted, Storage};
use crate::status::{StorageStatus, WalStorageStatus};
use crate::wal::{RecoveryReport, Wal};
use crossbeam_channel::{Receiver, Sender};
use std::io;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;

pub struct WalStorage {
    requests: Sender<Request>,
    completions: Receiver<io::Result<()>>,
    shared: Arc<Shared>,
    /// The WAL thread; `None` once closed.
    thread: Option<JoinHandle<()>>,
    /// Whether every acknowledged write is fsynced (`--fsync always`).
    durable: bool,
    /// What start-up recovery found, shown in `GET /status`.
    recovery: RecoveryReport,
    /// The WAL thread's failed appends of learned state already reported.
    learned_failures_seen: u64,
}

impl WalStorage {
    /// Starts the WAL thread over `wal`.
    pub fn new(wal: Wal, recovery: RecoveryReport) -> io::Result<WalStorage> {
        let durable = !wal.config().fsync.is_weaker();
        let handle = wal_thread::spawn(wal)?;
        Ok(WalStorage {
            requests: handle.requests,
            completions: handle.completions,
            shared: handle.shared,
            thread: Some(handle.thread),
            durable,
            recovery,
            learned_failures_seen: 0,
        })
    }

    fn send(&self, request: Request) -> io::Result<()> {
        self.requests.send(request).map_err(|_| closed())
    }

    /// Sends a request that carries a reply channel and waits for the answer.
    fn ask<T>(&self, make: impl FnOnce(Sender<io::Result<T>>) -> Request) -> io::Result<T> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.send(make(tx))?;
        rx.recv().map_err(|_| closed())?
    }
}

impl Storage for WalStorage {
    fn commit_local(&mut self, delta: &OriginDelta) -> io::Result<()> {
        let delta = delta.clone();
        self.ask(|tx| Request::Commit {
            delta,
            reply: Some(tx),
        })
    }

    fn start_commit(&mut self, delta: &OriginDelta) -> CommitStarted {
        let request = Request::Commit {
            delta: delta.clone(),
            reply: None,
        };
        match self.send(request) {
            Ok(()) => CommitStarted::Pending,
            Err(e) => CommitStarted::Done(Err(e)),
        }
    }

    fn completions(&self) -> Option<Receiver<io::Result<()>>> {
        Some(self.completions.clone())
    }

    /// Hands the deltas to the WAL thread. An append that failed there is reported by
    /// the next call, so the core still counts it.
    fn log_learned(&mut self, deltas: &[OriginDelta]) -> io::Result<()> {
        self.send(Request::Learned(deltas.to_vec()))?;
        let failed = self.shared.learned_failures.load(Ordering::SeqCst);
        if failed > self.learned_failures_seen {
            self.learned_failures_seen = failed;
            return Err(io::Error::other(
                "an earlier append of learned state failed (see the WAL's log line)",
            ));
        }
        Ok(())
    }

    fn log_retired(&mut self, retired: &[OriginVersion]) -> io::Result<()> {
        self.send(Request::Retired(retired.to_vec()))
    }

    fn log_compacted(&mut self, compacted: &[OriginVersion], snapshot: bool) -> io::Result<()> {
        self.send(Request::Compacted {
            compacted: compacted.to_vec(),
            snapshot,
        })
    }

    fn after_turn(&mut self, state: &State) -> io::Result<()> {
        if self.shared.snapshot_wanted.swap(false, Ordering::SeqCst) {
            self.send(Request::Snapshot(Box::new(state.clone())))?;
        }
        Ok(())
    }

    /// Waits for the WAL thread: for the pending batch's fsync, if any, then for the
    /// identity file's. Rare (another process wrote under this node's origin).
    fn renew_incarnation(&mut self, _current: &Origin, reason: String) -> io::Result<Origin> {
        self.ask(|reply| Request::Renew { reason, reply })
    }

    fn status(&self) -> StorageStatus {
        let wal = self
            .thread
            .as_ref()
            .map(|_| self.shared.status.lock().expect("status lock").clone());
        StorageStatus::Wal(Box::new(WalStorageStatus {
            durable: self.durable,
            wal,
            recovery: self.recovery.clone(),
        }))
    }

    fn close(&mut self) -> io::Result<()> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        let closed = self.ask(Request::Close);
        if thread.join().is_err() {
            return Err(io::Error::other("the WAL thread panicked"));
        }
        closed
    }
}

fn closed() -> io::Error {
    io::Error::other("the WAL is closed")
}

/// One or two lines for the start-up log: where the state came from and anything
/// recovery had to do.
pub fn describe_recovery(origin: &str, report: &RecoveryReport) -> Vec<String> {
    let source = if report.created {
        "new data directory".to_owned()
    } else {
        let snapshot = report.snapshot_seq.map_or("no snapshot".to_owned(), |s| {
            format!("snapshot at record {s}")
        });
        format!(
            "{snapshot}, {} records replayed from {} segment(s), last record {}, {} shutdown",
            report.records_replayed,
            report.segments_read,
            report.last_seq,
            if report.clean_shutdown {
                "clean"
            } else {
                "unclean"
            }
        )
    };
    let mut lines = vec![format!("recovered {origin}: {source}")];
    let mut notes = Vec::new();
    if let Some(t) = &report.torn_tail {
        let saved = t
            .saved_to
            .as_ref()
            .map_or(String::new(), |p| format!(", saved to {}", p.display()));
        notes.push(format!(
            "torn tail cut: {} bytes at offset {} of {} ({}){saved}",
            t.bytes_cut,
            t.offset,
            t.file.display(),
            t.reason
        ));
    }
    for r in &report.repairs {
        notes.push(format!(
            "repaired corruption at offset {} of {} ({}), {} file(s) set aside",
            r.offset,
            r.file.display(),
            r.reason,
            r.dropped.len()
        ));
    }
    for bad in &report.bad_snapshots {
        notes.push(format!("passed over snapshot: {bad}"));
    }
    if let Some(n) = &report.new_incarnation {
        notes.push(format!(
            "new incarnation (was {:016x}): {}",
            n.previous, n.reason
        ));
    }
    if !notes.is_empty() {
        lines.push(notes.join("; "));
    }
    lines
}

#[cfg(test)]
mod tests {
    //! A node started in-process over a WAL whose file layer fails on demand: a failed
    //! write or fsync answers 503 and applies nothing (not even after a restart from the
    //! directory), reads keep working, and writes succeed again once the fault clears.
    //! And over a disk whose fsync does not return until the test lets it: reads and
    //! gossip go on meanwhile, and the write is applied and answered only after it.

    use super::*;
    use crate::node::{fresh_origin, Node, NodeConfig};
    use crate::node_core::MemoryStorage;
    use crate::wal::faulty_fs::{FaultyFs, Op};
    use crate::wal::WalConfig;
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    /// Longest any one condition is waited for.
    const DEADLINE: Duration = Duration::from_secs(20);

    fn local_config() -> NodeConfig {
        NodeConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        )
    }

    /// A node named n1 over a WAL in `dir` on `fs`.
    fn start_on(fs: &FaultyFs, dir: &std::path::Path, config: NodeConfig) -> Node {
        let (wal, recovered) = Wal::open_with(Arc::new(fs.clone()), dir, options()).unwrap();
        let storage = Box::new(WalStorage::new(wal, recovered.report).unwrap());
        Node::start(config, storage, recovered.origin, recovered.state).unwrap()
    }

    /// Polls `check` until it holds, failing the test at the deadline.
    fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !check() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn get_json(http: &str, path: &str) -> serde_json::Value {
        ureq::get(&format!("http://{http}{path}"))
            .timeout(DEADLINE)
            .call()
            .unwrap()
            .into_json()
            .unwrap()
    }

    /// How long ago `viewer` last heard from the member `name`, as it says.
    fn heard_ago(viewer: &str, name: &str) -> Option<u64> {
        let members = get_json(viewer, "/members");
        members["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .and_then(|m| m["last_heard_ms_ago"].as_u64())
    }

    fn snapshots_taken(http: &str) -> u64 {
        get_json(http, "/status")["storage"]["wal"]["snapshots_taken"]
            .as_u64()
            .unwrap()
    }

    #[test]
    fn snapshots_are_taken_while_writes_go_on_and_recovery_counts_each_write_once() {
        let dir = tempfile::tempdir().unwrap();
        let few = WalConfig {
            snapshot_records: 20,
            ..options()
        };
        let (wal, recovered) = Wal::open(dir.path(), few.clone()).unwrap();
        let storage = Box::new(WalStorage::new(wal, recovered.report).unwrap());
        let node = Node::start(local_config(), storage, recovered.origin, recovered.state).unwrap();
        let http = node.http_addr().to_string();
        // Eight writers keep going until two snapshots were taken (and 40 writes each).
        let writers: Vec<_> = (0..8)
            .map(|_| {
                let http = http.clone();
                std::thread::spawn(move || {
                    let deadline = Instant::now() + DEADLINE;
                    let mut acked = 0;
                    while acked < 40 || snapshots_taken(&http) < 2 {
                        assert!(Instant::now() < deadline, "no snapshot under writes");
                        assert_eq!(post(&http, "/counters/c/increment").0, 200);
                        acked += 1;
                    }
                    acked
                })
            })
            .collect();
        let acked: i64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
        assert_eq!(value(&http, "c"), acked);
        node.stop();
        let (_, again) = Wal::open(dir.path(), few).unwrap();
        assert_eq!(again.state.value("c"), acked);
        assert!(again.report.snapshot_seq.is_some(), "{:?}", again.report);
    }

    struct ReleaseOnDrop(FaultyFs);

    impl Drop for ReleaseOnDrop {
        fn drop(&mut self) {
            self.0.release_syncs();
        }
    }

    #[test]
    fn reads_and_gossip_go_on_while_an_fsync_is_stuck_and_the_write_waits_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultyFs::new();
        let slow = start_on(&fs, dir.path(), local_config());
        let slow_http = slow.http_addr().to_string();
        let mut config = local_config();
        config.seeds = vec![slow.gossip_addr().to_string()];
        let peer = Node::start(
            config,
            Box::new(MemoryStorage),
            fresh_origin("n2"),
            Default::default(),
        )
        .unwrap();
        let peer_http = peer.http_addr().to_string();
        wait_for("the two nodes to hear from each other", || {
            heard_ago(&slow_http, "n2").is_some() && heard_ago(&peer_http, "n1").is_some()
        });

        // Every fsync from now on waits: a disk slower than any timeout below. Released
        // on the way out even if the test fails, so stopping the nodes cannot hang.
        fs.hold_syncs();
        let _release = ReleaseOnDrop(fs.clone());
        let write = {
            let http = slow_http.clone();
            std::thread::spawn(move || post(&http, "/counters/c/increment?by=2"))
        };
        wait_for("the write's fsync to start", || fs.syncs_held() == 1);
        let stuck_since = Instant::now();

        // A read is answered during the fsync, without the write: not durable, not applied.
        assert_eq!(value(&slow_http, "c"), 0);
        // Gossip both ways: the slow node learns the peer's write, and the peer hears
        // from the slow node after its fsync got stuck.
        assert_eq!(post(&peer_http, "/counters/g/increment?by=7").0, 200);
        wait_for("the slow node to learn the peer's write", || {
            value(&slow_http, "g") == 7
        });
        wait_for("the peer to hear from the slow node", || {
            let stuck_for = stuck_since.elapsed().as_millis() as u64;
            heard_ago(&peer_http, "n1").is_some_and(|ago| ago + 1 < stuck_for)
        });
        assert_eq!(fs.syncs_held(), 1, "the same fsync is still stuck");
        assert!(!write.is_finished(), "answered before its fsync returned");
        assert_eq!(value(&peer_http, "c"), 0, "gossiped before it was durable");

        fs.release_syncs();
        assert_eq!(
            write.join().unwrap(),
            (200, r#"{"name":"c","value":2}"#.to_owned())
        );
        assert_eq!(value(&slow_http, "c"), 2);
        wait_for("the peer to learn the write", || {
            value(&peer_http, "c") == 2
        });
        peer.stop();
        slow.stop();
        let (_, again) = Wal::open(dir.path(), options()).unwrap();
        assert_eq!(again.state.value("c"), 2);
        assert_eq!(again.state.value("g"), 7);
    }

    fn options() -> WalConfig {
        WalConfig {
            node_name: Some("n1".into()),
            ..WalConfig::default()
        }
    }

    fn post(http: &str, path: &str) -> (u16, String) {
        match ureq::post(&format!("http://{http}{path}")).call() {
            Ok(r) => (r.status(), r.into_string().unwrap()),
            Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap()),
            Err(e) => panic!("POST {path}: {e}"),
        }
    }

    fn value(http: &str, counter: &str) -> i64 {
        get_json(http, &format!("/counters/{counter}"))["value"]
            .as_i64()
            .unwrap()
    }

    #[test]
    fn a_failed_write_or_fsync_answers_503_applies_nothing_and_later_writes_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultyFs::new();
        let node = start_on(&fs, dir.path(), local_config());
        let http = node.http_addr().to_string();

        assert_eq!(post(&http, "/counters/c/increment?by=2").0, 200);
        for (op, stuck) in [(Op::Sync, false), (Op::Write, false), (Op::Sync, true)] {
            fs.fail_nth(op, 1, stuck);
            let (status, body) = post(&http, "/counters/c/increment?by=5");
            assert_eq!(status, 503, "{op:?}: {body}");
            assert!(body.contains("injected"), "{body}");
            assert_eq!(value(&http, "c"), 2, "{op:?} applied a failed batch");
        }
        // Stuck: every write keeps failing, reads keep working.
        assert_eq!(post(&http, "/counters/c/decrement").0, 503);
        assert_eq!(value(&http, "c"), 2);
        assert!(fs.injected() >= 4, "{} failures injected", fs.injected());

        fs.heal();
        let (status, body) = post(&http, "/counters/c/increment?by=1");
        assert_eq!((status, body.as_str()), (200, r#"{"name":"c","value":3}"#));
        node.stop();

        let (_, again) = Wal::open(dir.path(), options()).unwrap();
        assert_eq!(again.state.value("c"), 3);
        assert_eq!(again.report.records_replayed, 2);
    }
}
