//! Opening a data directory: from a path to a WAL ready for appends and the state it
//! recovered, one named step at a time — lock the directory, read (or create) the
//! node's identity, replay the log, take a new incarnation if the log may have lost
//! records the node had gossiped, mark the run, and pick the segment to append to.

use super::identity::{self, CLEAN_SHUTDOWN_FILE, WEAK_FSYNC_FILE};
use super::recovery::{self, Replayed, SegmentFile};
use super::segment::{self, ActiveSegment};
use super::{
    fs, snapshot, DirLock, FileSystem, FsyncPolicy, NewIncarnation, RealFs, Recovered,
    RecoveryReport, Wal, WalConfig, WalError, MAX_SEGMENT_BYTES, MAX_SEQ,
};
use crate::crdt::{validate_node_name, Origin};
use crate::status::histogram::{Histogram, DURATION_BUCKETS};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

const LOCK_FILE: &str = "LOCK";

impl Wal {
    /// Opens (or creates) the data directory `dir` on the real file system and recovers
    /// its state.
    pub fn open(dir: &Path, config: WalConfig) -> Result<(Wal, Recovered), WalError> {
        Wal::open_with(Arc::new(RealFs), dir, config)
    }

    /// [`Wal::open`] over any file layer (tests inject failures through it).
    pub fn open_with(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        config: WalConfig,
    ) -> Result<(Wal, Recovered), WalError> {
        let config = checked(config)?;
        let f = fs.as_ref();
        let lock = lock(f, dir)?;
        let files = Files::list(f, dir)?;
        let mut report = RecoveryReport::default();
        let mut origin = read_or_create_identity(f, dir, &config, &files, &mut report)?;
        report.clean_shutdown = identity::marker_exists(f, dir, CLEAN_SHUTDOWN_FILE)?;
        let weak_before = identity::marker_exists(f, dir, WEAK_FSYNC_FILE)?;
        let mut replayed =
            recovery::replay(f, dir, &files.snapshots, files.segments, config.repair)?;
        if let Some(reason) = new_incarnation_reason(&report, weak_before, &replayed) {
            let change = take_new_incarnation(f, dir, &mut origin, reason)?;
            report.new_incarnation = Some(change);
        }
        mark_running(f, dir, config.fsync)?;
        let active = active_segment(f, dir, &mut replayed, config.preallocation())?;
        report_replay(&mut report, &replayed);
        log::info!(
            "WAL {}: origin {origin}, {} records replayed from {} segments{}",
            dir.display(),
            report.records_replayed,
            report.segments_read,
            report
                .snapshot_seq
                .map_or(String::new(), |s| format!(" after snapshot {s}"))
        );
        let wal = Wal {
            fs,
            dir: dir.to_owned(),
            origin: origin.clone(),
            active,
            closed: replayed.segments,
            next_seq: replayed.next_seq,
            last_snapshot_seq: report.snapshot_seq,
            snapshots_taken: 0,
            records_since_snapshot: replayed.records_replayed,
            bytes_since_snapshot: replayed.bytes_replayed,
            unsynced: false,
            last_sync: Instant::now(),
            fsyncs: 0,
            last_fsync: None,
            fsync_durations: Histogram::new(DURATION_BUCKETS),
            last_snapshot_time: report
                .snapshot_seq
                .and_then(|seq| snapshot_written_at(dir, seq)),
            scratch: Vec::new(),
            frames: Vec::new(),
            config,
            _lock: lock,
        };
        let recovered = Recovered {
            origin,
            state: replayed.state,
            report,
        };
        Ok((wal, recovered))
    }
}

/// When the snapshot covering `seq` was written, from its file's modification time: a
/// figure for reports only, so it is read from the real file system (an error only
/// leaves it unknown).
fn snapshot_written_at(dir: &Path, seq: u64) -> Option<SystemTime> {
    std::fs::metadata(dir.join(snapshot::snapshot_name(seq)))
        .and_then(|m| m.modified())
        .ok()
}

/// The configuration with its name checked and its segment size clamped.
fn checked(config: WalConfig) -> Result<WalConfig, WalError> {
    if let Some(name) = &config.node_name {
        validate_node_name(name).map_err(|e| WalError::BadName(e.0))?;
    }
    Ok(WalConfig {
        segment_bytes: config.segment_bytes.clamp(1, MAX_SEGMENT_BYTES),
        ..config
    })
}

/// Creates `dir` if needed and takes its lock: one process at a time holds it.
fn lock(f: &dyn FileSystem, dir: &Path) -> Result<Box<dyn DirLock>, WalError> {
    f.create_dir_all(dir)
        .map_err(|e| WalError::io(format!("create {}", dir.display()), e))?;
    let path = dir.join(LOCK_FILE);
    f.lock(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock => WalError::Locked {
            dir: dir.to_owned(),
        },
        _ => WalError::io(format!("lock {}", path.display()), e),
    })
}

/// The directory's origin. A directory without an identity is new — unless it holds a
/// log, which is corruption. An existing identity must carry the name asked for.
fn read_or_create_identity(
    f: &dyn FileSystem,
    dir: &Path,
    config: &WalConfig,
    files: &Files,
    report: &mut RecoveryReport,
) -> Result<Origin, WalError> {
    if let Some(found) = identity::read(f, dir)? {
        if let Some(asked) = config.node_name.as_ref().filter(|n| **n != found.node) {
            return Err(WalError::NameMismatch {
                asked: asked.clone(),
                found: found.node,
            });
        }
        return Ok(found);
    }
    let log_file = files.segments.first().map(|s| &s.path);
    if let Some(file) = log_file.or(files.snapshots.first().map(|s| &s.1)) {
        return Err(WalError::Corruption {
            file: dir.join(identity::IDENTITY_FILE),
            offset: 0,
            reason: format!(
                "the identity file is missing but the log is not ({})",
                file.display()
            ),
        });
    }
    let name = config
        .node_name
        .clone()
        .ok_or_else(|| WalError::BadName("a new data directory needs a node name".into()))?;
    let origin = Origin::new(name, identity::new_incarnation());
    identity::write(f, dir, &origin)?;
    report.created = true;
    Ok(origin)
}

/// Why the node must not reuse its origin, if it must not: the log may lack records
/// it acknowledged and gossiped (an unclean stop under a weaker fsync policy, or a
/// repair that dropped records), whose versions must never be given out again.
fn new_incarnation_reason(
    report: &RecoveryReport,
    weak_before: bool,
    replayed: &Replayed,
) -> Option<String> {
    if !report.clean_shutdown && weak_before && !report.created {
        Some("the last run used a weaker fsync policy and did not close cleanly".to_owned())
    } else if !replayed.repairs.is_empty() {
        Some("repair dropped part of the log".to_owned())
    } else {
        None
    }
}

/// Gives `origin` a new random incarnation and records it in the identity file.
pub(super) fn take_new_incarnation(
    f: &dyn FileSystem,
    dir: &Path,
    origin: &mut Origin,
    reason: String,
) -> Result<NewIncarnation, WalError> {
    let previous = origin.incarnation;
    origin.incarnation = loop {
        let fresh = identity::new_incarnation();
        if fresh != previous {
            break fresh;
        }
    };
    identity::write(f, dir, origin)?;
    log::warn!("{reason}: starting under the new incarnation {origin} (was {previous:016x})");
    Ok(NewIncarnation { previous, reason })
}

/// Marks the directory as open: not cleanly closed, and under a weaker policy or not.
fn mark_running(f: &dyn FileSystem, dir: &Path, fsync: FsyncPolicy) -> Result<(), WalError> {
    if fsync.is_weaker() {
        identity::set_marker(f, dir, WEAK_FSYNC_FILE)?;
    } else {
        identity::clear_marker(f, dir, WEAK_FSYNC_FILE)?;
    }
    identity::clear_marker(f, dir, CLEAN_SHUTDOWN_FILE)
}

/// The segment the next record goes to: the last one replayed if its records end right
/// before the next sequence number (a snapshot newer than a torn tail, for one, moves
/// the next number past them), else a new one. The segments before it stay closed.
fn active_segment(
    f: &dyn FileSystem,
    dir: &Path,
    replayed: &mut Replayed,
    preallocate: u64,
) -> Result<ActiveSegment, WalError> {
    let next_seq = replayed.next_seq;
    let reuse_last = replayed.last_segment_next == Some(next_seq);
    match replayed.segments.pop() {
        Some(last) if reuse_last => {
            ActiveSegment::open(f, last.path.clone(), last.first_seq, last.len, preallocate)
                .map_err(|e| WalError::io(format!("open {}", last.path.display()), e))
        }
        other => {
            replayed.segments.extend(other);
            ActiveSegment::create(f, dir, next_seq, preallocate)
                .map_err(|e| WalError::io(format!("create a segment in {}", dir.display()), e))
        }
    }
}

/// What replay found, into the report.
fn report_replay(report: &mut RecoveryReport, replayed: &Replayed) {
    report.snapshot_seq = replayed.snapshot.as_ref().map(|(s, _)| *s);
    report.snapshot_file = replayed.snapshot.as_ref().map(|(_, p)| p.clone());
    report.bad_snapshots = replayed.bad_snapshots.clone();
    report.records_replayed = replayed.records_replayed;
    report.segments_read = replayed.segments_read;
    report.last_seq = replayed.next_seq - 1;
    report.torn_tail = replayed.torn_tail.clone();
    report.repairs = replayed.repairs.clone();
}

/// The WAL files in a directory, sorted by sequence number; leftover temporary files
/// from a crash are removed on the way.
pub(super) struct Files {
    segments: Vec<SegmentFile>,
    pub(super) snapshots: Vec<(u64, PathBuf)>,
}

impl Files {
    pub(super) fn list(fs: &dyn FileSystem, dir: &Path) -> Result<Files, WalError> {
        let names = fs
            .list(dir)
            .map_err(|e| WalError::io(format!("list {}", dir.display()), e))?;
        let mut files = Files {
            segments: Vec::new(),
            snapshots: Vec::new(),
        };
        for name in names {
            let path = dir.join(&name);
            if name.ends_with(fs::TMP_SUFFIX) {
                fs.remove(&path)
                    .map_err(|e| WalError::io(format!("remove {}", path.display()), e))?;
            } else if let Some(first_seq) = segment::parse_segment_name(&name) {
                check_seq_in_name(&path, first_seq)?;
                files.segments.push(SegmentFile {
                    first_seq,
                    path,
                    len: 0,
                });
            } else if let Some(seq) = snapshot::parse_snapshot_name(&name) {
                check_seq_in_name(&path, seq)?;
                files.snapshots.push((seq, path));
            }
        }
        files.segments.sort_by_key(|s| s.first_seq);
        files.snapshots.sort_by_key(|s| s.0);
        Ok(files)
    }
}

/// A log numbers its records from 1 and cannot reach [`MAX_SEQ`] (at a billion records
/// a second, it would take 146 years): a file named past it was not written by the WAL,
/// and its number would overflow the arithmetic on sequence numbers.
fn check_seq_in_name(path: &Path, seq: u64) -> Result<(), WalError> {
    if seq <= MAX_SEQ {
        return Ok(());
    }
    Err(WalError::Corruption {
        file: path.to_owned(),
        offset: 0,
        reason: format!("its name numbers record {seq}, past the {MAX_SEQ} a log can reach"),
    })
}
