//! Scenario tests for damage across segments: a segment missing from the middle or the
//! start of the log, a last segment zero-filled header and all or torn inside its header,
//! and appends (one of them failing) after a repair cut the last segment short.

use super::faulty_fs::Op;
use super::frame::{encode_frame, FRAME_HEADER_LEN};
use super::tests::{
    files_ending, first_seq, frame_offsets, image, open_faulty, options, refused, segments, tiny,
    Node,
};
use super::*;
use std::fs as stdfs;
use std::path::Path;

/// The bytes of every segment in `dir`, as the file system reports them.
fn bytes_on_disk(dir: &Path) -> u64 {
    segments(dir)
        .iter()
        .map(|p| stdfs::metadata(p).unwrap().len())
        .sum()
}

fn repairing(config: WalConfig) -> WalConfig {
    WalConfig {
        repair: true,
        ..config
    }
}

/// A directory whose log holds `records` records, with the origin that wrote them and
/// the state after each.
fn written(
    config: WalConfig,
    records: usize,
) -> (tempfile::TempDir, Origin, Vec<Vec<OriginDelta>>) {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, _) = Node::open(dir.path(), config);
    node.write(records);
    (dir, node.wal.origin().clone(), node.history)
}

#[test]
fn wal_a_missing_middle_segment_is_refused_and_repair_sets_the_segments_after_it_aside() {
    let (dir, origin, history) = written(tiny(1), 20);
    let segs = segments(dir.path());
    assert_eq!(segs.len(), 20, "one record per segment");
    stdfs::remove_file(&segs[10]).unwrap();
    let mut left = segs.clone();
    left.remove(10);

    let (file, offset, reason) = refused(dir.path(), tiny(1));
    assert_eq!((&file, offset), (&segs[11], 0));
    assert!(reason.contains("where 11 was due"), "{reason}");
    assert_eq!(segments(dir.path()), left, "a refusal changes nothing");

    let (mut node, report) = Node::open(dir.path(), repairing(tiny(1)));
    assert_eq!(
        image(&node.state),
        history[10],
        "records 1 to 10, none after the gap"
    );
    assert_eq!(report.records_replayed, 10);
    assert_eq!(report.repairs.len(), 1);
    let fix = &report.repairs[0];
    assert_eq!(
        (&fix.file, fix.offset, &fix.saved_to),
        (&segs[11], 0, &None)
    );
    let dropped: Vec<PathBuf> = segs[11..]
        .iter()
        .map(|p| p.with_extension("wal.dropped"))
        .collect();
    assert_eq!(fix.dropped, dropped);
    assert_eq!(files_ending(dir.path(), ".wal.dropped"), dropped);
    assert_eq!(segments(dir.path()), segs[..10].to_vec());
    assert_ne!(node.wal.origin(), &origin, "repair takes a new incarnation");

    assert_eq!(node.local("after", 1).unwrap(), 11);
    let expected = image(&node.state);
    node.wal.close().unwrap();
    let (node, report) = Node::open(dir.path(), tiny(1));
    assert_eq!(image(&node.state), expected);
    assert_eq!(report.records_replayed, 11);
    assert!(report.repairs.is_empty() && report.torn_tail.is_none());
}

#[test]
fn wal_a_missing_first_segment_is_refused() {
    let (dir, _, _) = written(tiny(1), 3);
    let segs = segments(dir.path());
    stdfs::remove_file(&segs[0]).unwrap();
    let (file, offset, reason) = refused(dir.path(), tiny(1));
    assert_eq!((&file, offset), (&segs[1], 0));
    assert!(reason.contains("records 1 to 1 are missing"), "{reason}");
}

/// After a torn tail was cut: the next record gets the next number, and the log then
/// reopens to the same state with nothing left to cut.
fn appends_then_reopens_with_nothing_to_cut(dir: &Path, mut node: Node, kept: usize) {
    assert_eq!(node.local("after", 1).unwrap(), kept as u64 + 1);
    let expected = image(&node.state);
    drop(node);
    let (node, report) = Node::open(dir, tiny(200));
    assert_eq!(image(&node.state), expected);
    assert!(report.torn_tail.is_none());
}

#[test]
fn wal_a_wholly_zeroed_last_segment_is_cut_as_a_torn_write_keeping_every_earlier_record() {
    let (dir, origin, history) = written(tiny(200), 20);
    let segs = segments(dir.path());
    assert!(segs.len() >= 3, "earlier segments to keep");
    let last = segs.last().unwrap();
    let kept = first_seq(last) - 1;
    // What a file system can leave after a power loss while allocating: zeros throughout.
    let zeros = vec![0u8; 4096];
    stdfs::write(last, &zeros).unwrap();

    let (node, report) = Node::open(dir.path(), tiny(200));
    assert_eq!(node.wal.origin(), &origin, "a torn write keeps the origin");
    assert_eq!(image(&node.state), history[kept]);
    assert_eq!(report.records_replayed, kept as u64);
    assert!(report.repairs.is_empty());
    let torn = report.torn_tail.expect("a torn tail");
    assert_eq!((&torn.file, torn.offset, torn.bytes_cut), (last, 0, 4096));
    assert_eq!(torn.saved_to, None, "zeros hold nothing worth a copy");

    appends_then_reopens_with_nothing_to_cut(dir.path(), node, kept);
}

#[test]
fn wal_a_last_segment_torn_inside_its_header_is_cut_keeping_every_earlier_record() {
    let (dir, origin, history) = written(tiny(200), 20);
    let segs = segments(dir.path());
    let last = segs.last().unwrap();
    let kept = first_seq(last) - 1;
    // A crash while a new segment's header was being written: its first bytes only.
    let header = stdfs::read(last).unwrap();
    stdfs::write(last, &header[..5]).unwrap();

    let (node, report) = Node::open(dir.path(), tiny(200));
    assert_eq!(node.wal.origin(), &origin, "a torn write keeps the origin");
    assert_eq!(image(&node.state), history[kept]);
    assert_eq!(report.records_replayed, kept as u64);
    let torn = report.torn_tail.expect("a torn tail");
    assert_eq!((&torn.file, torn.offset, torn.bytes_cut), (last, 0, 5));
    appends_then_reopens_with_nothing_to_cut(dir.path(), node, kept);
}

#[test]
fn wal_after_repair_cuts_the_last_segment_its_bytes_match_the_disk_and_appends_replay() {
    let (dir, _, history) = written(tiny(400), 20);
    let last = segments(dir.path()).pop().unwrap();
    let mut bytes = stdfs::read(&last).unwrap();
    let offsets = frame_offsets(&bytes);
    assert!(offsets.len() >= 3, "a middle record to damage");
    bytes[offsets[1] + 20] ^= 0x04;
    stdfs::write(&last, &bytes).unwrap();

    let (mut node, fs, report) = open_faulty(dir.path(), repairing(tiny(400)));
    assert_eq!(report.repairs[0].offset, offsets[1] as u64);
    assert_eq!(image(&node.state), history[first_seq(&last)]);
    assert_eq!(stdfs::metadata(&last).unwrap().len(), offsets[1] as u64);
    assert_eq!(node.wal.status().bytes, bytes_on_disk(dir.path()));

    node.local("after", 1).unwrap();
    assert_eq!(node.wal.status().bytes, bytes_on_disk(dir.path()));
    fs.fail_nth(Op::Write, 1, false);
    assert!(node.local("after", 100).is_err());
    assert_eq!(fs.injected(), 1);
    assert_eq!(
        node.wal.status().bytes,
        bytes_on_disk(dir.path()),
        "the failed append was cut back to the last good record"
    );
    node.local("after", 2).unwrap();
    assert_eq!(node.wal.status().bytes, bytes_on_disk(dir.path()));
    let expected = image(&node.state);
    node.wal.close().unwrap();

    let (node, report) = Node::open(dir.path(), tiny(400));
    assert_eq!(image(&node.state), expected);
    assert_eq!(node.state.value("after"), 3);
    assert!(report.torn_tail.is_none() && report.repairs.is_empty());
}

/// Flips a byte in the middle of the only snapshot in `dir` and returns its path.
fn damage_the_snapshot(dir: &Path) -> PathBuf {
    let snap = files_ending(dir, ".snap").remove(0);
    let mut bytes = stdfs::read(&snap).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x10;
    stdfs::write(&snap, &bytes).unwrap();
    snap
}

/// A directory with a snapshot of 6 records and no segment, as after a snapshot and the
/// loss of the empty segment started after it; with the origin and the snapshot's state.
fn snapshot_and_no_segment() -> (tempfile::TempDir, Origin, Vec<OriginDelta>) {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, _) = Node::open(dir.path(), options());
    node.write(6);
    node.wal.snapshot(&node.state).unwrap();
    let origin = node.wal.origin().clone();
    let state = image(&node.state);
    drop(node);
    for seg in segments(dir.path()) {
        stdfs::remove_file(seg).unwrap();
    }
    (dir, origin, state)
}

#[test]
fn wal_a_snapshot_with_no_segment_after_it_opens_with_its_state() {
    let (dir, origin, expected) = snapshot_and_no_segment();
    let (mut node, report) = Node::open(dir.path(), options());
    assert_eq!(image(&node.state), expected);
    assert_eq!((report.snapshot_seq, report.records_replayed), (Some(6), 0));
    assert_eq!(node.wal.origin(), &origin);
    assert_eq!(node.local("after", 1).unwrap(), 7);
}

#[test]
fn wal_segments_a_snapshot_covers_are_deleted_at_open_or_replayed_if_the_snapshot_is_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let (mut node, _) = Node::open(dir.path(), tiny(1));
    node.write(6);
    let covered: Vec<(PathBuf, Vec<u8>)> = segments(dir.path())
        .into_iter()
        .map(|p| (p.clone(), stdfs::read(p).unwrap()))
        .collect();
    node.wal.snapshot(&node.state).unwrap();
    let expected = image(&node.state);
    drop(node);
    let after_snapshot = segments(dir.path());
    assert_eq!(
        after_snapshot,
        vec![dir.path().join(segment::segment_name(7))]
    );
    // A crash after the snapshot was written, before the segments it covers were deleted.
    let restore = || {
        for (path, bytes) in &covered {
            stdfs::write(path, bytes).unwrap();
        }
    };
    restore();
    let (node, report) = Node::open(dir.path(), tiny(1));
    assert_eq!(image(&node.state), expected);
    assert_eq!((report.snapshot_seq, report.records_replayed), (Some(6), 0));
    assert_eq!(
        segments(dir.path()),
        after_snapshot,
        "covered segments deleted"
    );
    drop(node);

    restore();
    damage_the_snapshot(dir.path());
    let (node, report) = Node::open(dir.path(), tiny(1));
    assert_eq!(image(&node.state), expected);
    assert_eq!((report.snapshot_seq, report.records_replayed), (None, 6));
    assert_eq!(report.bad_snapshots.len(), 1);
}

#[test]
fn wal_repair_of_a_damaged_snapshot_with_no_log_reports_it_and_takes_a_new_incarnation() {
    let (dir, origin, _) = snapshot_and_no_segment();
    let snap = damage_the_snapshot(dir.path());
    assert_eq!(refused(dir.path(), options()).0, snap);

    let (mut node, report) = Node::open(dir.path(), repairing(options()));
    assert_eq!(
        image(&node.state),
        image(&State::new()),
        "nothing could be kept"
    );
    assert_eq!(report.repairs.len(), 1, "{report:?}");
    let fix = &report.repairs[0];
    assert_eq!((&fix.file, fix.offset), (&snap, 0));
    assert_eq!(fix.dropped, vec![snap.with_extension("snap.dropped")]);
    assert_eq!(files_ending(dir.path(), ".snap"), Vec::<PathBuf>::new());
    assert_ne!(
        node.wal.origin(),
        &origin,
        "records 1 to 6 are gone: their versions must not be given out again"
    );
    node.local("after", 1).unwrap();
    let expected = image(&node.state);
    node.wal.close().unwrap();
    let (node, report) = Node::open(dir.path(), options());
    assert_eq!(image(&node.state), expected);
    assert!(report.repairs.is_empty() && report.bad_snapshots.is_empty());
}

#[test]
fn wal_a_snapshot_that_cannot_be_read_is_an_error_not_passed_over() {
    let (dir, _, _) = written(options(), 3);
    // A directory under a snapshot's name: opening it works, reading it fails.
    let snap = dir.path().join(snapshot::snapshot_name(2));
    stdfs::create_dir(&snap).unwrap();
    match Wal::open(dir.path(), repairing(options())) {
        Err(WalError::Io { context, .. }) => {
            assert_eq!(context, format!("read {}", snap.display()))
        }
        other => panic!(
            "expected an I/O error, got {:?}",
            other.map(|(_, r)| r.report)
        ),
    }
}

#[test]
fn wal_a_segment_over_the_size_bound_is_refused_unread_naming_it() {
    let (dir, _, _) = written(options(), 3);
    let huge = dir.path().join(segment::segment_name(4));
    // Sparse: the test writes nothing, and open must not read it either.
    let file = stdfs::File::create(&huge).unwrap();
    file.set_len(recovery::MAX_SEGMENT_FILE_BYTES + 1).unwrap();
    drop(file);
    let (file, offset, reason) = refused(dir.path(), options());
    assert_eq!((file, offset), (huge, 0));
    assert!(reason.contains("over the"), "{reason}");
}

#[test]
fn wal_a_file_named_past_the_last_possible_record_is_refused_naming_it() {
    for name in [
        snapshot::snapshot_name(u64::MAX),
        snapshot::snapshot_name(MAX_SEQ + 1),
        segment::segment_name(u64::MAX),
    ] {
        let (dir, _, _) = written(options(), 3);
        let path = dir.path().join(&name);
        let bytes = if name.ends_with(".snap") {
            snapshot::encode(&State::new(), u64::MAX)
        } else {
            segment::segment_header().to_vec()
        };
        stdfs::write(&path, bytes).unwrap();
        for config in [options(), repairing(options())] {
            let (file, offset, reason) = refused(dir.path(), config);
            assert_eq!((&file, offset), (&path, 0));
            assert!(reason.contains("past the"), "{reason}");
        }
    }
}

#[test]
fn wal_a_snapshot_end_record_counting_every_chunk_there_could_be_is_refused() {
    let mut bytes = snapshot::encode(&State::new(), 5);
    // The empty state's snapshot is its header and the end record (chunk count 0).
    let end_at = bytes.len() - FRAME_HEADER_LEN - 2;
    bytes.truncate(end_at);
    let mut data = Vec::new();
    record::encode_snapshot_end(u64::MAX, &mut data);
    encode_frame(1, &data, &mut bytes);
    let (_, reason) = snapshot::decode(&bytes, 5).expect_err("refused");
    assert!(reason.contains("end record counts"), "{reason}");
}

#[test]
fn wal_a_snapshot_over_the_size_bound_is_passed_over_unread() {
    let (dir, _, history) = written(options(), 3);
    let huge = dir.path().join(snapshot::snapshot_name(2));
    let file = stdfs::File::create(&huge).unwrap();
    file.set_len(snapshot::MAX_SNAPSHOT_BYTES + 1).unwrap();
    drop(file);
    let (node, report) = Node::open(dir.path(), options());
    assert_eq!(image(&node.state), history[3], "the log holds every record");
    assert_eq!(report.snapshot_seq, None);
    assert_eq!(report.bad_snapshots.len(), 1);
    assert!(report.bad_snapshots[0].contains("over the"), "{report:?}");
}

#[test]
fn wal_records_a_snapshot_holds_are_not_replayed_again_from_a_segment_that_goes_on() {
    let (dir, _, _) = written(options(), 3);
    let seg = segments(dir.path()).remove(0);
    let len = stdfs::metadata(&seg).unwrap().len();
    let (mut node, report) = Node::open(dir.path(), options());
    assert_eq!(report.records_replayed, 3);
    assert_eq!(
        node.wal.status().bytes_since_snapshot,
        len - SEGMENT_HEADER_LEN,
        "every replayed record's bytes count towards the next snapshot"
    );
    // A crash after the snapshot was written, before the segment was rotated and deleted.
    let kept = stdfs::read(&seg).unwrap();
    node.wal.snapshot(&node.state).unwrap();
    drop(node);
    for later in segments(dir.path()) {
        stdfs::remove_file(later).unwrap();
    }
    stdfs::write(&seg, kept).unwrap();

    let (mut node, report) = Node::open(dir.path(), options());
    assert_eq!((report.snapshot_seq, report.records_replayed), (Some(3), 0));
    assert_eq!(node.wal.status().bytes_since_snapshot, 0);
    node.write(2);
    let expected = image(&node.state);
    drop(node);
    let (node, report) = Node::open(dir.path(), options());
    assert_eq!(image(&node.state), expected);
    assert_eq!((report.snapshot_seq, report.records_replayed), (Some(3), 2));
}

#[test]
fn wal_a_valid_frame_numbered_too_far_ahead_after_a_torn_record_is_not_a_continuation() {
    let (dir, origin, history) = written(options(), 3);
    let seg = segments(dir.path()).remove(0);
    let mut bytes = stdfs::read(&seg).unwrap();
    let torn_at = bytes.len();
    let mut record_4 = Vec::new();
    encode_frame(4, &[1, 2, 3, 4, 5, 6, 7, 8], &mut record_4);
    bytes.extend_from_slice(&record_4[..record_4.len() / 2]);
    // A whole frame after it, numbered one past the most frames the bytes from it to the
    // end could hold: leftovers of something else, not records written after record 4.
    let mut stray = Vec::new();
    encode_frame(0, &[9; 40], &mut stray);
    let room = (stray.len() / FRAME_HEADER_LEN) as u64;
    stray.clear();
    encode_frame(4 + room + 1, &[9; 40], &mut stray);
    bytes.extend_from_slice(&stray);
    stdfs::write(&seg, &bytes).unwrap();

    let (node, report) = Node::open(dir.path(), options());
    assert_eq!(node.wal.origin(), &origin, "a torn write keeps the origin");
    assert_eq!(image(&node.state), history[3]);
    let torn = report.torn_tail.expect("a torn tail");
    assert_eq!(torn.offset, torn_at as u64);
}
