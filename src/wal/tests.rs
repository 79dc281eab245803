//! Scenario tests for the WAL: crashes (a dropped `Wal` without `close`), torn and
//! zeroed tails, flipped bits, tiny segments, snapshots, fsync policies, and I/O
//! failures injected through the file layer.

use super::faulty_fs::{FaultyFs, Op};
use super::frame::{encode_frame, parse_frame, Parsed};
use super::*;
use crate::crdt::{CounterEntry, LocalOp, OpKind};
use std::fs as stdfs;
use std::path::Path;

/// Without preallocation: these tests read and cut segment files byte by byte.
pub(super) fn options() -> WalConfig {
    WalConfig {
        node_name: Some("n1".into()),
        preallocate: false,
        ..WalConfig::default()
    }
}

pub(super) fn tiny(segment_bytes: u64) -> WalConfig {
    WalConfig {
        segment_bytes,
        ..options()
    }
}

/// What a test compares states by: every origin's entries and known version.
pub(super) fn image(state: &State) -> Vec<OriginDelta> {
    state.to_deltas()
}

/// A node's view in a test: its WAL, its state, and the state after each record.
pub(super) struct Node {
    pub(super) wal: Wal,
    pub(super) state: State,
    pub(super) history: Vec<Vec<OriginDelta>>,
}

impl Node {
    pub(super) fn open(dir: &Path, options: WalConfig) -> (Node, RecoveryReport) {
        let (wal, rec) = Wal::open(dir, options).expect("open");
        assert_eq!(&rec.origin, wal.origin());
        let node = Node {
            wal,
            history: vec![image(&rec.state)],
            state: rec.state,
        };
        (node, rec.report)
    }

    pub(super) fn local(&mut self, counter: &str, amount: u64) -> Result<u64, WalError> {
        let op = LocalOp {
            counter: counter.into(),
            kind: OpKind::Increment,
            amount,
            key: None,
        };
        let batch = self.state.prepare_local(self.wal.origin(), &[op]);
        let seq = self.wal.append_local(&batch.delta)?;
        self.state.apply_local(&batch);
        self.history.push(image(&self.state));
        Ok(seq)
    }

    fn learned(&mut self, peer: &str, counter: &str, p: u64) {
        let origin = Origin::new(peer, 7);
        let delta = OriginDelta {
            from: self.state.known(&origin),
            to: self.state.known(&origin) + 1,
            entries: vec![CounterEntry {
                counter: counter.into(),
                p,
                n: 0,
                version: self.state.known(&origin) + 1,
                keyed: None,
            }],
            origin,
        };
        self.wal
            .append_learned(std::slice::from_ref(&delta))
            .expect("learned");
        self.state.apply_delta(&delta);
        self.history.push(image(&self.state));
    }

    pub(super) fn write(&mut self, records: usize) {
        for i in 0..records {
            if i % 4 == 3 {
                self.learned("peer", "x", i as u64 + 1);
            } else {
                self.local(&format!("c{}", i % 3), 1).expect("append");
            }
        }
    }
}

pub(super) fn segments(dir: &Path) -> Vec<PathBuf> {
    files_ending(dir, ".wal")
}

pub(super) fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = stdfs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_str().unwrap().ends_with(suffix))
        .collect();
    v.sort();
    v
}

/// Start offsets of the frames of a segment file.
pub(super) fn frame_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = SEGMENT_HEADER_LEN as usize;
    while let Parsed::Frame { next, .. } = parse_frame(bytes, at) {
        offsets.push(at);
        at = next;
    }
    assert_eq!(at, bytes.len(), "test segment parses whole");
    offsets
}

/// The sequence number of a segment's first record, from its file name.
pub(super) fn first_seq(segment: &Path) -> usize {
    let name = segment.file_name().unwrap().to_str().unwrap();
    segment::parse_segment_name(name).unwrap() as usize
}

/// Opens `dir` expecting corruption, and returns the file, offset and reason.
pub(super) fn refused(dir: &Path, config: WalConfig) -> (PathBuf, u64, String) {
    match Wal::open(dir, config) {
        Err(WalError::Corruption {
            file,
            offset,
            reason,
        }) => (file, offset, reason),
        other => panic!(
            "expected corruption, got {:?}",
            other.map(|(_, r)| r.report)
        ),
    }
}

#[test]
fn wal_can_move_to_another_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<Wal>();
}

#[test]
fn wal_a_new_directory_gets_an_identity_and_a_reopen_recovers_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, report) = Node::open(dir.path(), options());
    assert!(report.created);
    let origin = node.wal.origin().clone();
    node.write(12);
    let before = image(&node.state);
    node.wal.close().unwrap();

    let (wal, rec) = Wal::open(dir.path(), options()).unwrap();
    assert_eq!(rec.origin, origin);
    assert!(rec.report.clean_shutdown && !rec.report.created);
    assert_eq!(rec.report.records_replayed, 12);
    assert_eq!(rec.report.last_seq, 12);
    assert_eq!(image(&rec.state), before);
    assert_eq!(rec.state.value("c0"), 3);
    assert_eq!(wal.status().last_seq, 12);
}

#[test]
fn wal_the_last_record_cut_at_every_byte_keeps_every_complete_record() {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, _) = Node::open(dir.path(), options());
    node.write(5);
    let origin = node.wal.origin().clone();
    let history = node.history.clone();
    drop(node);
    let seg = segments(dir.path()).remove(0);
    let full = stdfs::read(&seg).unwrap();
    let last = *frame_offsets(&full).last().unwrap();

    for cut in last..full.len() {
        stdfs::write(&seg, &full[..cut]).unwrap();
        let (mut node, report) = Node::open(dir.path(), options());
        assert_eq!(
            node.wal.origin(),
            &origin,
            "cut {cut}: a torn tail keeps the origin"
        );
        assert_eq!(image(&node.state), history[4], "cut {cut}");
        assert_eq!(report.records_replayed, 4, "cut {cut}");
        let torn = report.torn_tail.clone();
        assert_eq!(torn.is_some(), cut > last, "cut {cut}: {torn:?}");
        if let Some(torn) = torn {
            assert_eq!(
                (torn.offset, torn.bytes_cut),
                (last as u64, (cut - last) as u64)
            );
            let saved = stdfs::read(torn.saved_to.unwrap()).unwrap();
            assert_eq!(saved, &full[last..cut]);
        }
        node.local("after", 2).unwrap();
        let expected = image(&node.state);
        node.wal.close().unwrap();
        let (node, report) = Node::open(dir.path(), options());
        assert_eq!(
            image(&node.state),
            expected,
            "cut {cut}: reopened after an append"
        );
        assert!(report.torn_tail.is_none());
        drop(node);
        for side in files_ending(dir.path(), &format!(".torn-{last}")) {
            stdfs::remove_file(side).unwrap();
        }
    }
}

#[test]
fn wal_a_zeroed_tail_is_cut_as_a_torn_write() {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, _) = Node::open(dir.path(), options());
    node.write(3);
    let history = node.history.clone();
    drop(node);
    let seg = segments(dir.path()).remove(0);
    let mut bytes = stdfs::read(&seg).unwrap();
    let offsets = frame_offsets(&bytes);

    // Zeroed space after the last record, as a file extended but never written leaves.
    let end = bytes.len();
    bytes.extend_from_slice(&[0u8; 4096]);
    stdfs::write(&seg, &bytes).unwrap();
    let (node, report) = Node::open(dir.path(), options());
    assert_eq!(image(&node.state), history[3]);
    assert_eq!(report.torn_tail.unwrap().offset, end as u64);
    drop(node);

    // The last record itself zeroed.
    let mut bytes = stdfs::read(&seg).unwrap();
    bytes[offsets[2]..].fill(0);
    stdfs::write(&seg, &bytes).unwrap();
    let (node, report) = Node::open(dir.path(), options());
    assert_eq!(image(&node.state), history[2]);
    assert_eq!(report.torn_tail.unwrap().offset, offsets[2] as u64);
}

#[test]
fn wal_an_empty_or_header_only_last_segment_opens() {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, _) = Node::open(dir.path(), options());
    node.write(3);
    let history = node.history.clone();
    drop(node);

    // Header only: a segment just started.
    let header_only = dir.path().join(segment::segment_name(4));
    stdfs::write(&header_only, segment::segment_header()).unwrap();
    let (mut node, report) = Node::open(dir.path(), options());
    assert_eq!(image(&node.state), history[3]);
    assert!(report.torn_tail.is_none());
    assert_eq!(node.local("y", 1).unwrap(), 4);
    let expected = image(&node.state);
    drop(node);
    let (node, _) = Node::open(dir.path(), options());
    assert_eq!(image(&node.state), expected);
    drop(node);

    // Empty: the segment was cut before even its header survived.
    let empty = dir.path().join(segment::segment_name(5));
    stdfs::write(&empty, b"").unwrap();
    let (mut node, report) = Node::open(dir.path(), options());
    assert_eq!(image(&node.state), expected);
    assert_eq!(report.torn_tail.unwrap().offset, 0);
    assert_eq!(node.local("y", 1).unwrap(), 5);
    let expected = image(&node.state);
    drop(node);
    let (node, _) = Node::open(dir.path(), options());
    assert_eq!(image(&node.state), expected);
}

#[test]
fn wal_tiny_segments_rotate_and_all_replay() {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, _) = Node::open(dir.path(), tiny(1));
    node.write(20);
    let status = node.wal.status();
    assert_eq!(status.segments, 20, "one record per segment");
    assert_eq!(segments(dir.path()).len(), 20);
    let on_disk: u64 = segments(dir.path())
        .iter()
        .map(|p| stdfs::metadata(p).unwrap().len())
        .sum();
    assert_eq!(status.bytes, on_disk);
    let before = image(&node.state);
    drop(node);
    let (node, report) = Node::open(dir.path(), tiny(1));
    assert_eq!(image(&node.state), before);
    assert_eq!((report.segments_read, report.records_replayed), (20, 20));

    // Larger segments hold several records each.
    let dir = tempfile::tempdir().unwrap();
    let (mut node, _) = Node::open(dir.path(), tiny(200));
    node.write(20);
    let count = segments(dir.path()).len();
    assert!((3..20).contains(&count), "{count} segments");
    for seg in segments(dir.path()) {
        assert!(stdfs::metadata(seg).unwrap().len() <= 200);
    }
}

#[test]
fn wal_a_flipped_bit_in_an_earlier_segment_is_refused_and_repair_keeps_what_it_can() {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, _) = Node::open(dir.path(), tiny(200));
    node.write(20);
    let origin = node.wal.origin().clone();
    let history = node.history.clone();
    drop(node);
    let segs = segments(dir.path());
    assert!(segs.len() >= 3);
    let victim = &segs[1];
    let mut bytes = stdfs::read(victim).unwrap();
    let offsets = frame_offsets(&bytes);
    assert!(offsets.len() >= 3, "a middle record to damage");
    let first_seq = first_seq(victim);
    let bad_offset = offsets[1];
    bytes[bad_offset + 20] ^= 0x04;
    stdfs::write(victim, &bytes).unwrap();

    let (file, offset, _) = refused(dir.path(), tiny(200));
    assert_eq!((&file, offset), (victim, bad_offset as u64));
    assert_eq!(segments(dir.path()), segs, "a refusal changes nothing");

    let repair = WalConfig {
        repair: true,
        ..tiny(200)
    };
    let (mut node, report) = Node::open(dir.path(), repair);
    // Records before the damaged one: those of the first segment and one of the victim.
    let kept = first_seq; // records 1..first_seq-1, plus the victim's first
    assert_eq!(image(&node.state), history[kept]);
    assert_eq!(report.repairs.len(), 1);
    let fix = &report.repairs[0];
    assert_eq!((&fix.file, fix.offset), (victim, bad_offset as u64));
    assert_eq!(fix.dropped.len(), segs.len() - 2);
    assert!(fix.saved_to.as_ref().unwrap().exists());
    let fresh = report
        .new_incarnation
        .expect("repair takes a new incarnation");
    assert_eq!(fresh.previous, origin.incarnation);
    assert_ne!(node.wal.origin(), &origin);
    node.local("after", 1).unwrap();
    let expected = image(&node.state);
    node.wal.close().unwrap();
    let (node, report) = Node::open(dir.path(), tiny(200));
    assert_eq!(image(&node.state), expected);
    assert!(report.repairs.is_empty() && report.new_incarnation.is_none());
}

#[test]
fn wal_a_bad_record_followed_by_good_ones_in_the_last_segment_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, _) = Node::open(dir.path(), options());
    node.write(4);
    drop(node);
    let seg = segments(dir.path()).remove(0);
    let mut bytes = stdfs::read(&seg).unwrap();
    let offsets = frame_offsets(&bytes);
    bytes[offsets[1] + 18] ^= 0x01;
    stdfs::write(&seg, &bytes).unwrap();
    let (file, offset, _) = refused(dir.path(), options());
    assert_eq!((file, offset), (seg, offsets[1] as u64));
}

#[test]
fn wal_snapshot_delete_and_recover_equals_the_state_before() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalConfig {
        snapshot_records: 5,
        ..tiny(120)
    };
    let (mut node, _) = Node::open(dir.path(), opts.clone());
    let mut taken = 0;
    for i in 0..23 {
        node.write(1);
        if i % 2 == 0 {
            node.learned("other", &format!("o{i}"), i);
        }
        if node.wal.maybe_snapshot(&node.state).unwrap() {
            taken += 1;
        }
    }
    assert!(taken >= 4, "{taken} snapshots");
    let status = node.wal.status();
    let snap_seq = status.last_snapshot_seq.unwrap();
    assert_eq!(
        files_ending(dir.path(), ".snap").len(),
        1,
        "older snapshots deleted"
    );
    for seg in segments(dir.path()) {
        let first = segment::parse_segment_name(seg.file_name().unwrap().to_str().unwrap());
        assert!(first.unwrap() > snap_seq, "covered segment {seg:?} deleted");
    }
    let before = image(&node.state);
    drop(node);
    let (node, report) = Node::open(dir.path(), opts);
    assert_eq!(image(&node.state), before);
    assert_eq!(report.snapshot_seq, Some(snap_seq));
    assert_eq!(report.records_replayed, status.last_seq - snap_seq);
}

/// Retirements through records and a snapshot: recovery holds the retired origins
/// retired again (tombstones in the chunks, the list after them), and a delta logged
/// after a retirement that undid it replays as an undo.
#[test]
fn wal_retirements_survive_records_a_snapshot_and_an_undo() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalConfig {
        snapshot_records: 1_000_000,
        ..tiny(4096)
    };
    let (mut node, _) = Node::open(dir.path(), opts.clone());
    node.write(3);
    for peer in ["gone-a", "gone-b", "back"] {
        node.learned(peer, "x", 5);
        node.learned(peer, "y", 2);
    }
    let retired: Vec<OriginVersion> = ["gone-a", "gone-b", "back"]
        .iter()
        .map(|p| OriginVersion {
            origin: Origin::new(*p, 7),
            version: 2,
        })
        .collect();
    node.state.retire_all(&retired);
    node.wal.append_retired(&retired).unwrap();
    node.learned("back", "x", 9);
    let values: Vec<(String, i64)> = node.state.values().map(|(c, v)| (c.into(), v)).collect();
    let held = (image(&node.state), node.state.retired_origins());
    assert_eq!(held.1.len(), 2, "back came back");
    drop(node);

    let reopen = |dir: &Path| {
        let (node, _) = Node::open(dir, opts.clone());
        let values: Vec<(String, i64)> = node.state.values().map(|(c, v)| (c.into(), v)).collect();
        (values, image(&node.state), node.state.retired_origins())
    };
    assert_eq!(
        reopen(dir.path()),
        (values.clone(), held.0.clone(), held.1.clone())
    );

    let (mut node, _) = Node::open(dir.path(), opts.clone());
    node.wal.snapshot(&node.state).unwrap();
    drop(node);
    let segments_left = segments(dir.path()).len();
    assert_eq!(reopen(dir.path()), (values, held.0, held.1));
    assert!(segments_left <= 1, "the snapshot covers the log");
}

/// Keyed operations, a fold and a pass, through records and a snapshot: recovery
/// restores every acceptance, ledger and tombstone, so retries stay recognised.
#[test]
fn wal_keys_their_folds_and_tombstones_survive_a_snapshot_and_a_restart() {
    use crate::crdt::{Fold, Resolution};
    let dir = tempfile::tempdir().unwrap();
    let opts = WalConfig {
        snapshot_records: 3,
        ..options()
    };
    let (mut node, _) = Node::open(dir.path(), opts.clone());
    let keyed = |key: &str, amount: u64| LocalOp {
        counter: "orders".into(),
        kind: OpKind::Increment,
        amount,
        key: Some(key.into()),
    };
    let commit = |node: &mut Node, ops: &[LocalOp], folds: &[Fold]| {
        let batch = node
            .state
            .prepare_batch(node.wal.origin(), ops, 1_000, folds);
        node.wal.append_local(&batch.delta).unwrap();
        node.state.apply_local(&batch);
        node.wal.maybe_snapshot(&node.state).unwrap();
    };
    for k in 0..4 {
        commit(&mut node, &[keyed(&format!("k{k}"), k + 1)], &[]);
    }
    let me = node.wal.origin().clone();
    let folds = node.state.plan_folds(&me, |p| {
        if p.key == "k3" {
            Resolution::Wait
        } else {
            Resolution::Fold
        }
    });
    commit(&mut node, &[], &folds);
    assert_eq!(
        (
            node.state.value("orders"),
            node.state.unresolved_acceptances()
        ),
        (10, 1)
    );
    let before = image(&node.state);
    drop(node);
    let (mut node, report) = Node::open(dir.path(), opts);
    assert!(report.snapshot_seq.is_some(), "a snapshot was taken");
    assert_eq!(image(&node.state), before);
    assert_eq!(
        (node.state.key_count(), node.state.unresolved_acceptances()),
        (4, 1)
    );
    let retry = node
        .state
        .prepare_batch(&me, &[keyed("k0", 1), keyed("k3", 4)], 2_000, &[]);
    assert_eq!(retry.results, vec![Ok(10), Ok(10)]);
    assert!(retry.is_empty(), "retries of recovered keys change nothing");
    commit(&mut node, &[keyed("k0", 2)], &[]);
    assert_eq!(node.state.value("orders"), 10, "a mismatch changes nothing");
}

#[test]
fn wal_a_damaged_snapshot_whose_log_is_gone_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, _) = Node::open(dir.path(), options());
    node.write(6);
    node.wal.snapshot(&node.state).unwrap();
    node.write(2);
    drop(node);
    let snap = files_ending(dir.path(), ".snap").remove(0);
    let mut bytes = stdfs::read(&snap).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    stdfs::write(&snap, &bytes).unwrap();
    let err = Wal::open(dir.path(), options()).map(|_| ()).unwrap_err();
    assert!(
        matches!(&err, WalError::Corruption { reason, .. } if reason.contains("snapshot")),
        "records 1..6 exist only in the snapshot: {err}"
    );

    // With the log after it gone too, the snapshot itself is named.
    for seg in segments(dir.path()) {
        stdfs::remove_file(seg).unwrap();
    }
    assert_eq!(refused(dir.path(), options()).0, snap);
}

#[test]
fn wal_a_weaker_policy_unclean_stop_gives_a_new_incarnation_and_a_clean_close_keeps_it() {
    let weak = WalConfig {
        fsync: FsyncPolicy::Never,
        ..options()
    };
    let dir = tempfile::tempdir().unwrap();
    let (mut node, _) = Node::open(dir.path(), weak.clone());
    let first = node.wal.origin().clone();
    node.write(3);
    node.wal.close().unwrap();
    let (mut node, report) = Node::open(dir.path(), weak.clone());
    assert!(report.clean_shutdown && report.new_incarnation.is_none());
    assert_eq!(node.wal.origin(), &first);
    node.write(3);
    let before = image(&node.state);
    drop(node); // crash

    let (node, report) = Node::open(dir.path(), options());
    assert!(!report.clean_shutdown);
    assert_eq!(report.new_incarnation.unwrap().previous, first.incarnation);
    let second = node.wal.origin().clone();
    assert_eq!(second.node, first.node);
    assert_ne!(second, first);
    assert_eq!(image(&node.state), before, "the old origin's entries stay");
    assert_eq!(node.state.known(&second), 0);
    drop(node); // crash under Always: no new incarnation needed

    let (node, report) = Node::open(dir.path(), options());
    assert!(report.new_incarnation.is_none());
    assert_eq!(node.wal.origin(), &second);
}

#[test]
fn wal_names_and_locks_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let no_name = WalConfig::default();
    assert!(matches!(
        Wal::open(dir.path(), no_name.clone()),
        Err(WalError::BadName(_))
    ));
    let (wal, _) = Wal::open(dir.path(), options()).unwrap();
    assert!(matches!(
        Wal::open(dir.path(), options()),
        Err(WalError::Locked { .. })
    ));
    drop(wal);
    let other = WalConfig {
        node_name: Some("n2".into()),
        ..options()
    };
    match Wal::open(dir.path(), other) {
        Err(WalError::NameMismatch { asked, found }) => {
            assert_eq!((asked, found), ("n2".into(), "n1".into()))
        }
        other => panic!(
            "expected a name mismatch, got {:?}",
            other.map(|(_, r)| r.report)
        ),
    }
    let (wal, rec) = Wal::open(dir.path(), no_name).unwrap();
    assert_eq!(
        rec.origin.node, "n1",
        "no name asked: the directory's is used"
    );
    drop(wal);
}

#[test]
fn wal_an_unknown_record_type_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, _) = Node::open(dir.path(), options());
    node.write(2);
    drop(node);
    let seg = segments(dir.path()).remove(0);
    let mut bytes = stdfs::read(&seg).unwrap();
    let at = bytes.len() as u64;
    encode_frame(3, &[42, 1, 2, 3], &mut bytes);
    stdfs::write(&seg, &bytes).unwrap();
    let repair = WalConfig {
        repair: true,
        ..options()
    };
    for opts in [options(), repair] {
        match Wal::open(dir.path(), opts) {
            Err(WalError::UnknownRecordType {
                file,
                offset,
                record_type,
            }) => assert_eq!((file, offset, record_type), (seg.clone(), at, 42)),
            other => panic!(
                "expected an unknown type, got {:?}",
                other.map(|(_, r)| r.report)
            ),
        }
    }
}

/// Opens `dir` through a fault-injecting file layer.
pub(super) fn open_faulty(dir: &Path, config: WalConfig) -> (Node, FaultyFs, RecoveryReport) {
    let fs = FaultyFs::new();
    let (wal, rec) = Wal::open_with(Arc::new(fs.clone()), dir, config).unwrap();
    let node = Node {
        wal,
        history: vec![image(&rec.state)],
        state: rec.state,
    };
    (node, fs, rec.report)
}

#[test]
fn wal_a_failed_write_or_fsync_leaves_nothing_and_later_appends_succeed() {
    for op in [Op::Write, Op::Sync] {
        let dir = tempfile::tempdir().unwrap();
        let (mut node, fs, _) = open_faulty(dir.path(), options());
        node.write(3);
        let before = image(&node.state);
        fs.fail_nth(op, 1, false);
        let err = node.local("c0", 100).unwrap_err();
        assert!(matches!(err, WalError::Io { .. }), "{op:?}: {err}");
        assert!(!err.to_string().contains("cut back"), "{op:?}: {err}");
        assert_eq!(fs.injected(), 1);
        assert!(!node.wal.status().failed, "{op:?}: the cut back worked");
        assert_eq!(image(&node.state), before, "the caller applied nothing");
        drop(node);

        let (mut node, report) = Node::open(dir.path(), options());
        assert_eq!(
            image(&node.state),
            before,
            "{op:?}: nothing of the failed batch replays"
        );
        assert!(report.torn_tail.is_none(), "{op:?}: {:?}", report.torn_tail);
        // The next batch reuses the failed batch's versions, with a smaller total.
        node.local("c0", 1).unwrap();
        let after = image(&node.state);
        drop(node);
        let (node, _) = Node::open(dir.path(), options());
        assert_eq!(image(&node.state), after);
        assert_eq!(node.state.value("c0"), 2);
    }
}

#[test]
fn wal_a_failed_rollback_keeps_failing_until_the_fault_clears_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, fs, _) = open_faulty(dir.path(), options());
    node.write(3);
    let before = image(&node.state);
    fs.fail_nth(Op::Sync, 1, true);
    fs.fail_nth(Op::Truncate, 1, true);
    // The bytes stay until a cut succeeds, so a crash now would replay them: the error
    // says the outcome is not known.
    let err = node.local("c0", 100).unwrap_err().to_string();
    assert!(
        err.contains("could not be cut back") && err.contains("idempotency key"),
        "{err}"
    );
    assert!(node.wal.status().failed);
    assert!(
        node.local("c0", 100).is_err(),
        "appends refuse while the cut fails"
    );
    assert!(node.wal.status().failed);
    assert_eq!(image(&node.state), before);

    fs.heal();
    node.local("c0", 1).unwrap();
    assert!(!node.wal.status().failed);
    let after = image(&node.state);
    drop(node);
    let (node, report) = Node::open(dir.path(), options());
    assert_eq!(
        image(&node.state),
        after,
        "only the batch that succeeded replays"
    );
    assert_eq!(node.state.value("c0"), 2);
    assert!(report.torn_tail.is_none());
}

#[test]
fn wal_group_commit_fsyncs_local_batches_and_lets_learned_state_ride_along() {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, _) = Node::open(dir.path(), options());
    node.learned("peer", "x", 1);
    node.learned("peer", "x", 2);
    assert_eq!(
        node.wal.status().fsyncs,
        0,
        "learned state waits for the next fsync"
    );
    node.local("a", 1).unwrap();
    node.local("a", 1).unwrap();
    let status = node.wal.status();
    assert_eq!(status.fsyncs, 2, "one fsync per local batch");
    assert!(status.last_fsync_micros.is_some());
    drop(node);

    let lazy = WalConfig {
        fsync: FsyncPolicy::Interval(Duration::from_secs(3600)),
        ..options()
    };
    let (mut node, _) = Node::open(dir.path(), lazy);
    node.local("a", 1).unwrap();
    node.wal.sync_if_due().unwrap();
    assert_eq!(node.wal.status().fsyncs, 0, "not due within the interval");
    node.wal.sync().unwrap();
    assert_eq!(node.wal.status().fsyncs, 1);
    drop(node);

    let eager = WalConfig {
        fsync: FsyncPolicy::Interval(Duration::ZERO),
        ..options()
    };
    let (mut node, _) = Node::open(dir.path(), eager);
    node.learned("peer", "x", 3);
    node.wal.sync_if_due().unwrap();
    assert_eq!(node.wal.status().fsyncs, 1, "due at once");
}

#[test]
fn wal_preallocated_segments_end_on_their_records_once_done_and_a_crash_keeps_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let opts = WalConfig {
        preallocate: true,
        ..tiny(400)
    };
    let (mut node, _) = Node::open(dir.path(), opts.clone());
    node.write(12);
    let history = node.history.clone();
    let segs = segments(dir.path());
    assert!(segs.len() > 1, "the test needs a rotation: {segs:?}");
    for done in &segs[..segs.len() - 1] {
        frame_offsets(&stdfs::read(done).unwrap());
    }
    let active = segs.last().unwrap();
    let len = |path: &Path| stdfs::metadata(path).unwrap().len();
    assert_eq!(len(active), SEGMENT_HEADER_LEN + 400, "preallocated");
    drop(node);

    // A crash leaves the active segment's zeros: cut as a torn tail, nothing saved.
    let (mut node, report) = Node::open(dir.path(), opts.clone());
    assert_eq!(image(&node.state), history[12]);
    let torn = report.torn_tail.expect("the zero tail is cut");
    assert_eq!(torn.saved_to, None);
    assert!(files_ending(dir.path(), &format!(".torn-{}", torn.offset)).is_empty());
    assert_eq!(len(active), torn.offset + 400, "preallocated again");
    node.local("after", 1).unwrap();
    let expected = image(&node.state);

    // A clean close cuts the zeros itself.
    node.wal.close().unwrap();
    frame_offsets(&stdfs::read(active).unwrap());
    let (node, report) = Node::open(dir.path(), opts);
    assert_eq!(image(&node.state), expected);
    assert!(report.torn_tail.is_none());
}

/// A rotation whose directory fsync fails after the new segment was renamed into place
/// fails, and records go on into the segment before: the new file is taken back, and
/// a restart reads every acknowledged record.
#[test]
fn a_rotation_whose_directory_fsync_fails_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, fs, _) = open_faulty(dir.path(), tiny(300));
    let big = "b".repeat(128);
    let start = node.wal.active.len();
    node.local("c", 1).unwrap();
    let small = node.wal.active.len() - start;
    while node.wal.active.len() + 2 * small <= 300 {
        node.local("c", 1).unwrap();
    }
    // rotate(): the finished segment's fsync, the new one's, then the directory's.
    fs.fail_nth(Op::Sync, 3, false);
    node.local(&big, 1).expect_err("the rotation failed");
    assert_eq!(
        segments(dir.path()).len(),
        1,
        "the new segment was taken back"
    );
    node.local("c", 1).expect("a small record still fits");
    for _ in 0..20 {
        node.local("c", 1).unwrap();
    }
    node.local(&big, 1).unwrap();
    let acknowledged = image(&node.state);
    drop(node);
    let (node, _) = Node::open(dir.path(), options());
    assert_eq!(image(&node.state), acknowledged);
}

/// An empty segment (a header and zeros) whose name falls inside the records of the one
/// before — what such a rotation leaves when the new file cannot be taken back, or a
/// crash keeps it — is removed on open, not taken for a gap.
#[test]
fn an_empty_segment_a_failed_rotation_left_is_removed_on_open() {
    let step = PREALLOCATE_STEP as usize;
    // A header and as many zeros as a segment's preallocation: removed. Anything else
    // whose name falls inside the records before it is refused, and kept.
    for (zeros, garbage, removed) in [
        (64, false, true),
        (step, false, true),
        (step + 1, false, false),
        (64, true, false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let opts = tiny(300);
        let (mut node, _) = Node::open(dir.path(), opts.clone());
        node.write(12);
        let acknowledged = image(&node.state);
        drop(node);
        let segs = segments(dir.path());
        assert!(segs.len() > 1, "the test needs a rotation: {segs:?}");
        let inside = first_seq(&segs[1]) as u64 - 1;
        let leftover = dir.path().join(segment::segment_name(inside));
        let mut bytes = segment::segment_header().to_vec();
        bytes.extend(vec![0u8; zeros]);
        if garbage {
            bytes[SEGMENT_HEADER_LEN as usize + 5] = 7;
        }
        stdfs::write(&leftover, bytes).unwrap();

        if removed {
            let (node, _) = Node::open(dir.path(), opts);
            assert_eq!(image(&node.state), acknowledged);
            assert!(!leftover.exists(), "the empty segment is gone");
        } else {
            let (file, _, reason) = refused(dir.path(), opts);
            assert_eq!(file, leftover, "{zeros} zeros, garbage {garbage}: {reason}");
            assert!(leftover.exists(), "a refused segment is kept");
        }
    }
}

/// A damaged newest snapshot with an older one intact (a crash came before the newer
/// one's writer deleted it) and no log after either: the records only the newer one
/// held exist nowhere else, so opening refuses, naming it; repair sets it aside, starts
/// from the older one and takes a new incarnation.
#[test]
fn a_damaged_newer_snapshot_over_an_intact_older_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, _) = Node::open(dir.path(), options());
    node.write(6);
    node.wal.snapshot(&node.state).unwrap();
    let older = image(&node.state);
    let older_file = files_ending(dir.path(), ".snap").remove(0);
    let older_bytes = stdfs::read(&older_file).unwrap();
    node.write(4);
    node.wal.snapshot(&node.state).unwrap();
    let first = node.wal.origin().clone();
    drop(node);
    stdfs::write(&older_file, older_bytes).unwrap();
    let snaps = files_ending(dir.path(), ".snap");
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    for seg in segments(dir.path()) {
        stdfs::remove_file(seg).unwrap();
    }
    let newest = snaps.last().unwrap().clone();
    let mut bytes = stdfs::read(&newest).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    stdfs::write(&newest, &bytes).unwrap();

    let (file, _, reason) = refused(dir.path(), options());
    assert_eq!(file, newest);
    assert!(reason.contains("records 7 to 10"), "{reason}");
    let repair = WalConfig {
        repair: true,
        ..options()
    };
    let (node, report) = Node::open(dir.path(), repair);
    assert_eq!(image(&node.state), older);
    assert_eq!(report.repairs.len(), 1);
    assert_ne!(node.wal.origin(), &first, "a new incarnation");
    assert!(!newest.exists());
}
