//! Recovery: rebuild the state from the latest valid snapshot and the segments after it,
//! and decide what every bad byte means.
//!
//! - A record that is cut short or fails its checksum at the end of the last segment,
//!   with no valid record after it, is a torn write (the crash came mid-append, before
//!   the fsync that would have acknowledged it): the cut bytes are saved to
//!   `<segment>.torn-<offset>`, the segment is truncated there, and replay goes on.
//! - Anything else — a bad record with valid ones after it, a bad record in an earlier
//!   segment, a valid record out of sequence, a missing range of sequence numbers — is
//!   corruption. Open refuses with the file and offset, unless repair was asked for: then
//!   the bad segment is cut at the bad record (the rest saved to `.corrupt-<offset>`),
//!   later segments are renamed `.dropped`, and the report lists what was set aside.
//!   A damaged snapshot with no segment left to replay is refused the same way; repair
//!   renames it `.dropped` and starts empty.
//! - A record type this version does not know is never cut away: it is data from a newer
//!   gctr, and open refuses whatever the options say.

use super::error::WalError;
use super::frame::{parse_frame, Parsed, FRAME_HEADER_LEN, MAX_RECORD_BYTES};
use super::fs::{write_atomic, FileSystem};
use super::record::{self, Record, RecordError};
use super::segment::{SEGMENT_HEADER_LEN, SEGMENT_MAGIC, SEGMENT_VERSION};
use super::snapshot;
use crate::crdt::State;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Segments larger than this are refused unread (the largest segment setting plus one
/// record, with room to spare).
pub const MAX_SEGMENT_FILE_BYTES: u64 = (1 << 30) + 2 * MAX_RECORD_BYTES as u64;

/// A torn write found and cut at the end of the last segment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TornTail {
    pub file: PathBuf,
    pub offset: u64,
    pub bytes_cut: u64,
    /// Where the cut bytes were saved (none when nothing was left to save).
    pub saved_to: Option<PathBuf>,
    pub reason: String,
}

/// Corruption that repair set aside.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Repair {
    pub file: PathBuf,
    pub offset: u64,
    pub reason: String,
    /// Copy of the bytes cut from `file`, if any were.
    pub saved_to: Option<PathBuf>,
    /// Whole files set aside (renamed with `.dropped`).
    pub dropped: Vec<PathBuf>,
}

/// A segment file found in the directory.
#[derive(Clone, Debug)]
pub struct SegmentFile {
    pub first_seq: u64,
    pub path: PathBuf,
    pub len: u64,
}

/// What replay rebuilt and found.
pub struct Replayed {
    pub state: State,
    pub next_seq: u64,
    /// The snapshot used: its last sequence number and file.
    pub snapshot: Option<(u64, PathBuf)>,
    /// Snapshots that did not check out, each with why.
    pub bad_snapshots: Vec<String>,
    /// Segments kept, in order; the last one is appended to next, unless it is `None`.
    pub segments: Vec<SegmentFile>,
    /// The sequence number after the last record of the last kept segment, if replay
    /// read that segment.
    pub last_segment_next: Option<u64>,
    pub records_replayed: u64,
    pub bytes_replayed: u64,
    pub segments_read: usize,
    pub torn_tail: Option<TornTail>,
    pub repairs: Vec<Repair>,
}

impl Replayed {
    fn empty() -> Replayed {
        Replayed {
            state: State::new(),
            next_seq: 1,
            snapshot: None,
            bad_snapshots: Vec::new(),
            segments: Vec::new(),
            last_segment_next: None,
            records_replayed: 0,
            bytes_replayed: 0,
            segments_read: 0,
            torn_tail: None,
            repairs: Vec::new(),
        }
    }
}

/// Replays `segments` (sorted by first sequence number) over the newest snapshot of
/// `snapshots` (sorted) that checks out.
pub fn replay(
    fs: &dyn FileSystem,
    dir: &Path,
    snapshots: &[(u64, PathBuf)],
    segments: Vec<SegmentFile>,
    repair: bool,
) -> Result<Replayed, WalError> {
    let mut out = Replayed::empty();
    load_snapshot(fs, snapshots, &mut out)?;
    let snap_seq = out.snapshot.as_ref().map_or(0, |(s, _)| *s);
    out.next_seq = snap_seq + 1;
    if segments.is_empty() {
        damaged_snapshots_alone(fs, dir, snapshots, repair, &mut out)?;
    }
    replay_segments(fs, dir, segments, snap_seq, repair, &mut out)?;
    Ok(out)
}

/// With no segment to replay, snapshots newer than the one loaded (every snapshot, when
/// none checked out) failed their checks and held records that exist nowhere else:
/// refuse, naming the newest, or with `repair` set them aside and report it, so the
/// node takes a new incarnation (the lost records' versions may have been gossiped and
/// must not be given out again).
fn damaged_snapshots_alone(
    fs: &dyn FileSystem,
    dir: &Path,
    snapshots: &[(u64, PathBuf)],
    repair: bool,
    out: &mut Replayed,
) -> Result<(), WalError> {
    let loaded = out.snapshot.as_ref().map(|(seq, _)| *seq);
    let newer = |seq: u64| loaded.is_none_or(|l| seq > l);
    let Some((seq, newest)) = snapshots.last().filter(|(seq, _)| newer(*seq)) else {
        return Ok(());
    };
    let first = loaded.map_or(1, |l| l + 1);
    let reason = format!(
        "the snapshot is damaged and no log holds records {first} to {seq}: {}",
        out.bad_snapshots[0]
    );
    if !repair {
        return Err(WalError::Corruption {
            file: newest.clone(),
            offset: 0,
            reason,
        });
    }
    let mut dropped = Vec::new();
    for (_, path) in snapshots.iter().filter(|(seq, _)| newer(*seq)) {
        let to = path.with_extension("snap.dropped");
        fs.rename(path, &to)
            .map_err(|e| WalError::io(format!("set aside {}", path.display()), e))?;
        dropped.push(to);
    }
    fs.sync_dir(dir)
        .map_err(|e| WalError::io(format!("sync {}", dir.display()), e))?;
    match loaded {
        Some(l) => log::warn!(
            "repair: {reason}; set aside {dropped:?} and started from the snapshot at {l}"
        ),
        None => log::warn!("repair: {reason}; set aside {dropped:?} and started empty"),
    }
    out.repairs.push(Repair {
        file: newest.clone(),
        offset: 0,
        reason,
        saved_to: None,
        dropped,
    });
    Ok(())
}

/// Replays each segment after the snapshot in turn: segments wholly covered by it are
/// removed, a torn end of the last one is cut, and a gap or a bad record ends replay
/// there ([`set_aside`]).
fn replay_segments(
    fs: &dyn FileSystem,
    dir: &Path,
    segments: Vec<SegmentFile>,
    snap_seq: u64,
    repair: bool,
    out: &mut Replayed,
) -> Result<(), WalError> {
    let count = segments.len();
    // The sequence number due next, once a segment was replayed.
    let mut expected: Option<u64> = None;
    let mut iter = segments.into_iter().enumerate().peekable();
    while let Some((i, seg)) = iter.next() {
        let next_first = iter.peek().map(|(_, s)| s.first_seq);
        if expected.is_none() && next_first.is_some_and(|n| n - 1 <= snap_seq) {
            // Wholly covered by the snapshot (a crash came before the snapshot deleted it).
            remove_segment(fs, dir, &seg.path)?;
            continue;
        }
        if expected.is_some_and(|e| seg.first_seq < e) && holds_no_record(fs, &seg)? {
            // Left by a rotation whose directory fsync failed: the records went on into
            // the segment before, and this one never got any.
            log::warn!(
                "WAL: removing {}, an empty segment a failed rotation left",
                seg.path.display()
            );
            remove_segment(fs, dir, &seg.path)?;
            continue;
        }
        if let Some(reason) = gap_before(&seg, expected, snap_seq, &out.bad_snapshots) {
            let next = expected.unwrap_or(seg.first_seq);
            let rest: Vec<SegmentFile> = std::iter::once(seg).chain(iter.map(|(_, s)| s)).collect();
            return set_aside(fs, dir, &rest, (0, reason), next, repair, out);
        }
        let mut seq = seg.first_seq;
        out.segments_read += 1;
        let outcome = replay_segment(fs, &seg, snap_seq, &mut seq, out)?;
        expected = Some(seq);
        out.next_seq = out.next_seq.max(seq);
        match outcome {
            Ok(len) => {
                out.segments.push(SegmentFile { len, ..seg });
                out.last_segment_next = Some(seq);
            }
            Err(bad) if i + 1 == count && !bad.valid_crc && !bad.has_valid_after => {
                cut_torn_tail(fs, dir, seg, bad, seq, out)?;
            }
            Err(bad) => {
                let rest: Vec<SegmentFile> =
                    std::iter::once(seg).chain(iter.map(|(_, s)| s)).collect();
                return set_aside(fs, dir, &rest, (bad.offset, bad.reason), seq, repair, out);
            }
        }
    }
    Ok(())
}

/// Why `seg` cannot come next, if it cannot: records are missing between the snapshot
/// (`snap_seq`) and the first segment replayed, or between `expected`, the sequence
/// number due after the segment before, and `seg`'s first.
fn gap_before(
    seg: &SegmentFile,
    expected: Option<u64>,
    snap_seq: u64,
    bad_snapshots: &[String],
) -> Option<String> {
    let reason = match expected {
        None if seg.first_seq > snap_seq + 1 => format!(
            "records {} to {} are missing (the log starts at {})",
            snap_seq + 1,
            seg.first_seq - 1,
            seg.first_seq
        ),
        Some(e) if seg.first_seq != e => format!(
            "segment starts at record {} where {e} was due",
            seg.first_seq
        ),
        _ => return None,
    };
    Some(match bad_snapshots.first() {
        Some(bad) => format!("{reason}; the snapshot that held them is damaged: {bad}"),
        None => reason,
    })
}

/// Whether `seg` is a segment header followed by nothing but the zeros of its
/// preallocation (at most a preallocation step): a segment no record was written to.
fn holds_no_record(fs: &dyn FileSystem, seg: &SegmentFile) -> Result<bool, WalError> {
    let longest = super::segment::SEGMENT_HEADER_LEN + super::PREALLOCATE_STEP;
    let bytes = match fs.read(&seg.path, longest) {
        Ok(bytes) => bytes,
        // Longer than a new segment can be: not one.
        Err(e) if e.kind() == std::io::ErrorKind::InvalidData => return Ok(false),
        Err(e) => return Err(WalError::io(format!("read {}", seg.path.display()), e)),
    };
    let header = super::segment::segment_header();
    Ok(bytes.starts_with(&header) && bytes[header.len()..].iter().all(|&b| b == 0))
}

fn remove_segment(fs: &dyn FileSystem, dir: &Path, path: &Path) -> Result<(), WalError> {
    fs.remove(path)
        .and_then(|()| fs.sync_dir(dir))
        .map_err(|e| WalError::io(format!("remove {}", path.display()), e))
}

fn load_snapshot(
    fs: &dyn FileSystem,
    snapshots: &[(u64, PathBuf)],
    out: &mut Replayed,
) -> Result<(), WalError> {
    for (seq, path) in snapshots.iter().rev() {
        let fault = match fs.read(path, snapshot::MAX_SNAPSHOT_BYTES) {
            Ok(bytes) => match snapshot::decode(&bytes, *seq) {
                Ok(state) => {
                    out.state = state;
                    out.snapshot = Some((*seq, path.clone()));
                    return Ok(());
                }
                Err((offset, reason)) => format!("{} at offset {offset}: {reason}", path.display()),
            },
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                format!("{}: {e}", path.display())
            }
            Err(e) => return Err(WalError::io(format!("read {}", path.display()), e)),
        };
        log::warn!("snapshot not used: {fault}");
        out.bad_snapshots.push(fault);
    }
    Ok(())
}

/// A record replay could not use.
struct BadRecord {
    offset: u64,
    reason: String,
    /// The frame checked out, so the bytes are what was written: never a torn write.
    valid_crc: bool,
    /// A valid frame follows, so the bad bytes are not the end of what was written.
    has_valid_after: bool,
    /// The segment's bytes, for saving what is cut.
    bytes: Vec<u8>,
}

/// Where and why a segment's bytes stop being usable.
struct Damage {
    offset: usize,
    reason: String,
    /// The frame checked out (see [`BadRecord::valid_crc`]).
    valid_crc: bool,
}

/// Replays one segment, advancing `seq` past every record applied. Returns the segment's
/// length, or its first bad record; I/O errors and unknown record types are errors.
fn replay_segment(
    fs: &dyn FileSystem,
    seg: &SegmentFile,
    snap_seq: u64,
    seq: &mut u64,
    out: &mut Replayed,
) -> Result<Result<u64, BadRecord>, WalError> {
    let bytes = read_segment(fs, seg)?;
    let damage = match check_header(&bytes) {
        Err(damage) => damage,
        Ok(()) => match replay_frames(seg, &bytes, snap_seq, seq, out)? {
            Ok(()) => return Ok(Ok(bytes.len() as u64)),
            Err(damage) => damage,
        },
    };
    // Zeros to the end (a preallocated segment's unused space) hold no frame: no scan.
    let zeros = bytes[damage.offset..].iter().all(|b| *b == 0);
    let has_valid_after =
        !damage.valid_crc && !zeros && valid_frame_after(&bytes, damage.offset, *seq);
    Ok(Err(BadRecord {
        offset: damage.offset as u64,
        reason: damage.reason,
        valid_crc: damage.valid_crc,
        has_valid_after,
        bytes,
    }))
}

fn read_segment(fs: &dyn FileSystem, seg: &SegmentFile) -> Result<Vec<u8>, WalError> {
    fs.read(&seg.path, MAX_SEGMENT_FILE_BYTES)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => WalError::Corruption {
                file: seg.path.clone(),
                offset: 0,
                reason: e.to_string(),
            },
            _ => WalError::io(format!("read {}", seg.path.display()), e),
        })
}

/// Checks the magic and format version. A header cut short or all zeros is what a crash
/// while the segment was being made leaves: not a valid frame, so possibly torn.
fn check_header(bytes: &[u8]) -> Result<(), Damage> {
    let header_len = SEGMENT_HEADER_LEN as usize;
    let damage = |offset, reason: &str, valid_crc| {
        Err(Damage {
            offset,
            reason: reason.to_owned(),
            valid_crc,
        })
    };
    if bytes.len() < header_len || bytes[..header_len].iter().all(|b| *b == 0) {
        return damage(0, "segment header is missing or zeroed", false);
    }
    if bytes[..8] != SEGMENT_MAGIC {
        return damage(0, "bad magic: not a gctr segment", true);
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != SEGMENT_VERSION {
        return damage(8, &format!("unsupported segment version {version}"), true);
    }
    Ok(())
}

/// Replays the frames after the header of `seg` (its `bytes`), advancing `seq` past
/// each; records the snapshot already holds are checked but not applied.
fn replay_frames(
    seg: &SegmentFile,
    bytes: &[u8],
    snap_seq: u64,
    seq: &mut u64,
    out: &mut Replayed,
) -> Result<Result<(), Damage>, WalError> {
    let mut offset = SEGMENT_HEADER_LEN as usize;
    while offset < bytes.len() {
        let damage = |reason, valid_crc| {
            Ok(Err(Damage {
                offset,
                reason,
                valid_crc,
            }))
        };
        let (frame_seq, data, next) = match parse_frame(bytes, offset) {
            Parsed::Frame { seq, data, next } => (seq, data, next),
            Parsed::Incomplete => return damage("record is cut short".into(), false),
            Parsed::Bad(reason) => return damage(reason, false),
        };
        if frame_seq != *seq {
            return damage(format!("record {frame_seq} where {} was due", *seq), true);
        }
        if frame_seq > snap_seq {
            if let Err(reason) = apply_record(seg, offset, data, &mut out.state)? {
                return damage(reason, true);
            }
            out.records_replayed += 1;
            out.bytes_replayed += (next - offset) as u64;
        }
        *seq += 1;
        offset = next;
    }
    Ok(Ok(()))
}

/// Merges one record (at `offset` of `seg`) into `state`. A record that checked out but
/// holds nothing a segment may hold is returned as the reason; a record type this
/// version does not know is an error.
fn apply_record(
    seg: &SegmentFile,
    offset: usize,
    data: &[u8],
    state: &mut State,
) -> Result<Result<(), String>, WalError> {
    match record::decode(data) {
        Ok(Record::LocalBatch(delta)) => {
            state.apply_delta(&delta);
        }
        Ok(Record::Learned(deltas)) => {
            for d in &deltas {
                state.apply_delta(d);
            }
        }
        Ok(Record::Retired(retired)) => state.retire_all(&retired),
        // An origin compacted here compacts again; one adopted (its sums in the snapshot
        // taken after it) is not retired here and stays as it is.
        Ok(Record::Compacted(compacted)) => {
            for ov in &compacted {
                state.compact(&ov.origin, ov.version);
            }
        }
        Ok(Record::SnapshotEnd { .. } | Record::CompactedSums(_)) => {
            return Ok(Err("snapshot record in a segment".into()))
        }
        Err(RecordError::UnknownType(t)) => {
            return Err(WalError::UnknownRecordType {
                file: seg.path.clone(),
                offset: offset as u64,
                record_type: t,
            })
        }
        Err(e) => return Ok(Err(e.to_string())),
    }
    Ok(Ok(()))
}

/// Whether some valid frame, numbered at or after `seq`, starts after `offset`. Used to
/// tell a torn end (nothing valid follows) from damage in the middle.
fn valid_frame_after(bytes: &[u8], offset: usize, seq: u64) -> bool {
    let end = bytes.len().saturating_sub(FRAME_HEADER_LEN);
    (offset + 1..=end).any(|pos| {
        let s = u64::from_le_bytes(bytes[pos..pos + 8].try_into().expect("8 bytes"));
        let room = ((bytes.len() - pos) / FRAME_HEADER_LEN) as u64;
        s >= seq && s - seq <= room && matches!(parse_frame(bytes, pos), Parsed::Frame { .. })
    })
}

/// Saves `bytes[offset..]` next to `path` as `<name>.<tag>-<offset>` and cuts the file
/// there. Returns the copy's path, if there was anything to save.
fn save_and_cut(
    fs: &dyn FileSystem,
    dir: &Path,
    path: &Path,
    bytes: &[u8],
    offset: u64,
    tag: &str,
) -> Result<Option<PathBuf>, WalError> {
    let tail = &bytes[offset as usize..];
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .expect("segment names are ASCII");
    // A tail of zeros (a preallocated segment's unused end) holds nothing to keep.
    let saved = if tail.iter().all(|b| *b == 0) {
        None
    } else {
        let copy = format!("{name}.{tag}-{offset}");
        write_atomic(fs, dir, &copy, tail)
            .map_err(|e| WalError::io(format!("save {}", dir.join(&copy).display()), e))?;
        Some(dir.join(copy))
    };
    let cut = |path: &Path| -> std::io::Result<()> {
        let mut file = fs.open_append(path)?;
        file.truncate(offset)?;
        file.sync()
    };
    cut(path).map_err(|e| WalError::io(format!("truncate {}", path.display()), e))?;
    Ok(saved)
}

fn cut_torn_tail(
    fs: &dyn FileSystem,
    dir: &Path,
    mut seg: SegmentFile,
    bad: BadRecord,
    next: u64,
    out: &mut Replayed,
) -> Result<(), WalError> {
    let bytes_cut = bad.bytes.len() as u64 - bad.offset;
    if bad.bytes[bad.offset as usize..].iter().all(|&b| b == 0) {
        // What a crash leaves of a preallocated segment: space never written.
        log::info!(
            "the log of {} ends at offset {}; cutting {bytes_cut} bytes of zeros (space \
             preallocated and never written)",
            seg.path.display(),
            bad.offset
        );
    } else {
        log::warn!(
            "torn write at the end of {} at offset {}: {}; cutting {bytes_cut} bytes",
            seg.path.display(),
            bad.offset,
            bad.reason
        );
    }
    let saved_to = save_and_cut(fs, dir, &seg.path, &bad.bytes, bad.offset, "torn")?;
    if bad.offset < SEGMENT_HEADER_LEN {
        // Not even a header survived: the segment is rewritten from scratch.
        remove_segment(fs, dir, &seg.path)?;
    } else {
        seg.len = bad.offset;
        out.segments.push(seg.clone());
        out.last_segment_next = Some(next);
    }
    out.torn_tail = Some(TornTail {
        file: seg.path,
        offset: bad.offset,
        bytes_cut,
        saved_to,
        reason: bad.reason,
    });
    Ok(())
}

/// Corruption at `offset` of `rest[0]`: refuse, or with `repair` cut `rest[0]` there
/// (dropping it whole when not even its header is usable) and rename the later segments
/// aside. `next` is the sequence number after the last good record before the offset.
fn set_aside(
    fs: &dyn FileSystem,
    dir: &Path,
    rest: &[SegmentFile],
    (offset, reason): (u64, String),
    next: u64,
    repair: bool,
    out: &mut Replayed,
) -> Result<(), WalError> {
    let seg = &rest[0];
    if !repair {
        return Err(WalError::Corruption {
            file: seg.path.clone(),
            offset,
            reason,
        });
    }
    let mut dropped = Vec::new();
    let mut saved_to = None;
    let mut later = rest;
    if offset >= SEGMENT_HEADER_LEN {
        let bytes = fs
            .read(&seg.path, MAX_SEGMENT_FILE_BYTES)
            .map_err(|e| WalError::io(format!("read {}", seg.path.display()), e))?;
        saved_to = save_and_cut(fs, dir, &seg.path, &bytes, offset, "corrupt")?;
        out.segments.push(SegmentFile {
            len: offset,
            ..seg.clone()
        });
        out.last_segment_next = Some(next);
        later = &rest[1..];
    }
    for s in later {
        let to = s.path.with_extension("wal.dropped");
        fs.rename(&s.path, &to)
            .map_err(|e| WalError::io(format!("set aside {}", s.path.display()), e))?;
        dropped.push(to);
    }
    fs.sync_dir(dir)
        .map_err(|e| WalError::io(format!("sync {}", dir.display()), e))?;
    log::warn!(
        "repair: corruption in {} at offset {offset}: {reason}; kept what comes before it, \
         saved the cut bytes to {saved_to:?} and set aside {dropped:?}",
        seg.path.display()
    );
    out.repairs.push(Repair {
        file: seg.path.clone(),
        offset,
        reason,
        saved_to,
        dropped,
    });
    Ok(())
}
