//! The segmented write-ahead log: where an increment becomes durable before it is
//! applied, acknowledged or gossiped, and where a restarted node gets its state back.
//!
//! # On-disk format
//!
//! A data directory holds:
//! - `identity`: JSON `{"format":1,"node":NAME,"incarnation":U64}`, the node's origin,
//!   made (atomically: temp file, fsync, rename, directory fsync) when the directory is
//!   created and replaced only when the node must take a new incarnation.
//! - `<16 hex digits>.wal`: segments, named after their first record's sequence number.
//!   A 12-byte header (magic `GCTR-WAL`, format version u32) and then frames.
//! - `<16 hex digits>.snap`: snapshots, named after the last sequence number they cover.
//! - `clean-shutdown` (written by [`Wal::close`], removed at open), `weak-fsync` (present
//!   while a run under a policy weaker than `Always` has the directory open), `LOCK`
//!   (held by the running process), and side files recovery leaves for an operator:
//!   `*.torn-<offset>`, `*.corrupt-<offset>`, `*.wal.dropped`, `*.snap.dropped`.
//!
//! A frame is: sequence number (u64), data length (u32, at most 32 MiB), CRC32 of the
//! sequence number, length and data (u32), then the data; little-endian. Sequence numbers
//! start at 1 and rise by one per record across segments. The data is a record: a type
//! byte (1 local batch, 2 learned state; others reserved) and absolute CRDT entries (see
//! `record.rs`), so replay is a merge with `State::apply_delta` in log order.
//!
//! Recovery reads the newest snapshot that checks out, then every record after it. A
//! record cut short or failing its CRC at the very end of the last segment is a torn
//! write: it is saved aside, cut, and logged. Any other bad byte is corruption: open
//! fails naming the file and offset, unless [`WalConfig::repair`] is set, in which case
//! the log is cut at the bad record, later segments are set aside, the report says what
//! was dropped, and the node takes a new incarnation (its own lost records may have been
//! gossiped, and their versions must not be reused).
//!
//! # Durability contract
//!
//! [`Wal::append_local`] returns only once the batch is written and (under the default
//! [`FsyncPolicy::Always`]) fsynced; only then may the caller apply it. A failed append
//! leaves nothing that a replay would apply, so the caller answers 503 and applies
//! nothing. Learned state is written without its own fsync; the next fsync covers it.

mod error;
mod frame;
mod fs;
mod identity;
mod open;
mod record;
mod recovery;
mod segment;
mod snapshot;

#[cfg(test)]
mod damage_tests;
#[cfg(test)]
pub(crate) mod faulty_fs;
#[cfg(test)]
mod tests;

pub use error::WalError;
pub use fs::{DirLock, FileSystem, RealFs, WalFile};
pub use identity::IDENTITY_FILE;
pub use recovery::{Repair, TornTail};

use crate::crdt::{Origin, OriginDelta, OriginVersion, State};
use crate::status::histogram::{Histogram, HistogramSnapshot};
use frame::{encode_frame, MAX_RECORD_BYTES};
use identity::CLEAN_SHUTDOWN_FILE;
use recovery::SegmentFile;
use segment::{ActiveSegment, SEGMENT_HEADER_LEN};
use serde::Serialize;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// When appends reach the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Every local batch is fsynced before `append_local` returns. The default; the only
    /// policy under which no acknowledged write can be lost.
    #[default]
    Always,
    /// Weaker: fsync when a local batch comes at least this long after the last fsync, or
    /// when [`Wal::sync_if_due`] finds it due. A crash can lose writes acknowledged within
    /// the interval; the node then restarts under a new incarnation.
    Interval(Duration),
    /// Weakest: fsync only on snapshot and close. A crash can lose any acknowledged
    /// write since; the node then restarts under a new incarnation.
    Never,
}

impl FsyncPolicy {
    /// Whether an acknowledged write can be lost in a crash under this policy.
    pub fn is_weaker(self) -> bool {
        self != FsyncPolicy::Always
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsyncPolicy::Always => f.write_str("always"),
            FsyncPolicy::Interval(d) => write!(f, "every {}", humantime::format_duration(*d)),
            FsyncPolicy::Never => f.write_str("never"),
        }
    }
}

/// How [`Wal::open`] keeps the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalConfig {
    /// The node's name: required for a new directory, checked against an existing one.
    pub node_name: Option<String>,
    /// Default `Always`.
    pub fsync: FsyncPolicy,
    /// A segment is closed and a new one started once it would pass this size. Default
    /// 64 MiB; clamped to at most 1 GiB. A segment always takes at least one record.
    pub segment_bytes: u64,
    /// `maybe_snapshot` takes a snapshot after this many records since the last one
    /// (0: never by count). Default 1,000,000.
    pub snapshot_records: u64,
    /// ... or after this many bytes of records since the last one (0: never by size).
    /// Default 64 MiB.
    pub snapshot_bytes: u64,
    /// Keep what can be kept from a corrupt log instead of refusing to open. Default off.
    pub repair: bool,
    /// Keep the active segment's file up to [`PREALLOCATE_STEP`] (or `segment_bytes`, if
    /// smaller) of zeros ahead of its last record, cut back when the segment is done, so
    /// most fsyncs do not have to extend the file. Default on; tests that read segment
    /// files byte by byte turn it off.
    pub preallocate: bool,
}

pub const DEFAULT_SEGMENT_BYTES: u64 = 64 << 20;
pub const MAX_SEGMENT_BYTES: u64 = 1 << 30;
pub const DEFAULT_SNAPSHOT_RECORDS: u64 = 1_000_000;
pub const DEFAULT_SNAPSHOT_BYTES: u64 = 64 << 20;
/// How much a segment's file is extended at a time when preallocating: one fsync in
/// every this many bytes of records pays for extending the file, and a crash leaves at
/// most this many zeros for recovery to read and cut.
pub const PREALLOCATE_STEP: u64 = 1 << 20;
/// The highest sequence number a file's name may carry (see `open::check_seq_in_name`).
pub const MAX_SEQ: u64 = 1 << 62;

impl WalConfig {
    /// How far ahead of its last record a segment's file is made long: 0 without
    /// preallocation.
    pub fn preallocation(&self) -> u64 {
        if self.preallocate {
            self.segment_bytes.min(PREALLOCATE_STEP)
        } else {
            0
        }
    }
}

impl Default for WalConfig {
    fn default() -> WalConfig {
        WalConfig {
            node_name: None,
            fsync: FsyncPolicy::Always,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            snapshot_records: DEFAULT_SNAPSHOT_RECORDS,
            snapshot_bytes: DEFAULT_SNAPSHOT_BYTES,
            repair: false,
            preallocate: true,
        }
    }
}

/// Why the node runs under a different incarnation than the directory had.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct NewIncarnation {
    pub previous: u64,
    pub reason: String,
}

/// What [`Wal::open`] found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RecoveryReport {
    /// The directory was new (or had no identity and no log).
    pub created: bool,
    /// The previous run closed the WAL cleanly.
    pub clean_shutdown: bool,
    pub new_incarnation: Option<NewIncarnation>,
    /// The snapshot replay started from: its last sequence number and file.
    pub snapshot_seq: Option<u64>,
    pub snapshot_file: Option<PathBuf>,
    /// Snapshots that did not check out and were passed over, each with why.
    pub bad_snapshots: Vec<String>,
    pub records_replayed: u64,
    pub segments_read: usize,
    /// The sequence number of the last record kept (0 if none ever).
    pub last_seq: u64,
    pub torn_tail: Option<TornTail>,
    pub repairs: Vec<Repair>,
}

/// The result of opening a data directory.
#[derive(Debug)]
pub struct Recovered {
    /// The origin this node writes under (a new incarnation if the report says so).
    pub origin: Origin,
    /// Every record's entries merged: the state to start the engine from.
    pub state: State,
    pub report: RecoveryReport,
}

/// WAL figures for `GET /status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct WalStatus {
    pub dir: PathBuf,
    pub fsync_policy: String,
    pub segments: usize,
    /// Bytes in segments.
    pub bytes: u64,
    pub last_seq: u64,
    pub records_since_snapshot: u64,
    pub bytes_since_snapshot: u64,
    pub last_snapshot_seq: Option<u64>,
    pub snapshots_taken: u64,
    pub fsyncs: u64,
    pub last_fsync_micros: Option<u64>,
    /// How long each fsync took.
    pub fsync_duration_seconds: HistogramSnapshot,
    /// Time since the newest snapshot was written (by this run, or before it as its
    /// file's modification time says); absent without a snapshot.
    pub snapshot_age_ms: Option<u64>,
    /// A failed write could not be cut away yet; appends retry the cut first.
    pub failed: bool,
}

/// A snapshot begun by [`Wal::begin_snapshot`], written by [`SnapshotJob::write`] and
/// recorded by [`Wal::finish_snapshot`] (or [`Wal::abandon_snapshot`] when it failed).
pub struct SnapshotJob {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    last: u64,
    /// Records and bytes since the previous snapshot, given back if this one fails.
    records: u64,
    bytes: u64,
}

impl SnapshotJob {
    /// The last record the snapshot covers.
    pub fn last_seq(&self) -> u64 {
        self.last
    }

    /// Writes `state`, which must hold every record up to [`SnapshotJob::last_seq`]
    /// (holding later ones too does no harm: replay is a merge): temporary file, fsync,
    /// rename, directory fsync.
    pub fn write(&self, state: &State) -> Result<(), WalError> {
        snapshot::write(self.fs.as_ref(), &self.dir, state, self.last)
            .map(drop)
            .map_err(|e| {
                WalError::io(
                    format!("write snapshot {}", snapshot::snapshot_name(self.last)),
                    e,
                )
            })
    }
}

/// An open WAL. One process at a time holds a directory.
pub struct Wal {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    config: WalConfig,
    origin: Origin,
    active: ActiveSegment,
    /// Earlier segments still on disk: first sequence number, path, bytes.
    closed: Vec<SegmentFile>,
    next_seq: u64,
    last_snapshot_seq: Option<u64>,
    snapshots_taken: u64,
    records_since_snapshot: u64,
    bytes_since_snapshot: u64,
    /// Records written since the last fsync.
    unsynced: bool,
    last_sync: Instant,
    fsyncs: u64,
    last_fsync: Option<Duration>,
    fsync_durations: Histogram,
    /// When the newest snapshot was written, if known.
    last_snapshot_time: Option<SystemTime>,
    scratch: Vec<u8>,
    frames: Vec<u8>,
    _lock: Box<dyn DirLock>,
}

impl Wal {
    /// The origin this node writes its own changes under.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    pub fn config(&self) -> &WalConfig {
        &self.config
    }

    /// Writes from now on under a new incarnation (another process holds this node's
    /// origin ahead of this log): the identity file names it before anything is written
    /// under it. The old origin's records stay and replay as any other origin's.
    pub fn renew_incarnation(&mut self, reason: String) -> Result<Origin, WalError> {
        let mut origin = self.origin.clone();
        open::take_new_incarnation(self.fs.as_ref(), &self.dir, &mut origin, reason)?;
        self.origin = origin.clone();
        Ok(origin)
    }

    /// Logs a local batch (one delta of this node's origin) and, under `Always`, fsyncs
    /// it with everything written before. Returns the record's sequence number. On error
    /// nothing of the batch will replay: the caller must not apply it.
    pub fn append_local(&mut self, delta: &OriginDelta) -> Result<u64, WalError> {
        self.scratch.clear();
        record::encode_local(delta, &mut self.scratch);
        check_record_len(self.scratch.len())?;
        self.frames.clear();
        encode_frame(self.next_seq, &self.scratch, &mut self.frames);
        let sync = match self.config.fsync {
            FsyncPolicy::Always => true,
            FsyncPolicy::Interval(every) => self.last_sync.elapsed() >= every,
            FsyncPolicy::Never => false,
        };
        self.write_frames(1, sync)?;
        Ok(self.next_seq - 1)
    }

    /// Logs state learned from peers, without an fsync of its own: the next fsync covers
    /// it, and peers still hold it if a crash comes first. A list too large for one
    /// record is split across several. On error nothing of it will replay.
    pub fn append_learned(&mut self, deltas: &[OriginDelta]) -> Result<(), WalError> {
        if deltas.is_empty() {
            return Ok(());
        }
        self.append_unsynced(deltas, record::delta_len, record::encode_learned)
    }

    /// Logs retirements (see `crdt::retire`), without an fsync of its own: one lost to a
    /// crash is made again later. A list too large for one record is split.
    pub fn append_retired(&mut self, retired: &[OriginVersion]) -> Result<(), WalError> {
        self.append_unsynced(retired, record::retired_len, record::encode_retired)
    }

    /// Logs compactions (see `crdt::compact`) like retirements: replay compacts again
    /// each origin retired at that version. An adopted compaction's sums are in no
    /// record: the caller has a snapshot taken.
    pub fn append_compacted(&mut self, compacted: &[OriginVersion]) -> Result<(), WalError> {
        self.append_unsynced(compacted, record::retired_len, record::encode_compacted)
    }

    /// Appends `items` as records of at most [`MAX_RECORD_BYTES`], each encoded by
    /// `encode` from the items `len` says fit, without an fsync of their own.
    fn append_unsynced<T>(
        &mut self,
        items: &[T],
        len: impl Fn(&T) -> usize,
        encode: impl Fn(&[T], &mut Vec<u8>),
    ) -> Result<(), WalError> {
        self.frames.clear();
        let budget = MAX_RECORD_BYTES - 16;
        let mut records = 0u64;
        for part in split_by_len(items, budget, len) {
            self.scratch.clear();
            encode(part, &mut self.scratch);
            check_record_len(self.scratch.len())?;
            encode_frame(self.next_seq + records, &self.scratch, &mut self.frames);
            records += 1;
        }
        self.write_frames(records, false)
    }

    /// Writes `self.frames` (`records` frames numbered from `next_seq`) to the active
    /// segment, starting a new segment first if this one would pass its size.
    fn write_frames(&mut self, records: u64, sync: bool) -> Result<(), WalError> {
        let len = self.frames.len() as u64;
        self.active
            .ensure_clean()
            .map_err(|e| self.io_error("cut back a failed write in", e))?;
        if self.active.len() > SEGMENT_HEADER_LEN
            && self.active.len() + len > self.config.segment_bytes
        {
            self.rotate()?;
        }
        let started = Instant::now();
        self.active
            .append(&self.frames, sync)
            .map_err(|e| self.io_error("append to", e))?;
        if sync {
            self.note_sync(started.elapsed());
        } else {
            self.unsynced = true;
        }
        self.next_seq += records;
        self.records_since_snapshot += records;
        self.bytes_since_snapshot += len;
        Ok(())
    }

    /// Closes the active segment (cut to its last record and fsynced, so only the last
    /// segment can have a torn or zero tail) and starts the next one.
    fn rotate(&mut self) -> Result<(), WalError> {
        self.sync()?;
        self.active
            .finish()
            .map_err(|e| self.io_error("finish", e))?;
        let next = ActiveSegment::create(
            self.fs.as_ref(),
            &self.dir,
            self.next_seq,
            self.config.preallocation(),
        )
        .map_err(|e| WalError::io(format!("start a segment in {}", self.dir.display()), e))?;
        let old = std::mem::replace(&mut self.active, next);
        self.closed.push(SegmentFile {
            first_seq: old.first_seq,
            len: old.len(),
            path: old.path.clone(),
        });
        Ok(())
    }

    /// Fsyncs everything written so far.
    pub fn sync(&mut self) -> Result<(), WalError> {
        if !self.unsynced && !self.active.is_failed() {
            return Ok(());
        }
        let started = Instant::now();
        self.active.sync().map_err(|e| self.io_error("fsync", e))?;
        self.note_sync(started.elapsed());
        Ok(())
    }

    /// Under `Interval`, fsyncs if writes are waiting and the interval has passed; call
    /// it after every event-loop turn. Under the other policies it does nothing.
    pub fn sync_if_due(&mut self) -> Result<(), WalError> {
        match self.config.fsync {
            FsyncPolicy::Interval(every) if self.last_sync.elapsed() >= every => self.sync(),
            _ => Ok(()),
        }
    }

    fn note_sync(&mut self, took: Duration) {
        self.unsynced = false;
        self.last_sync = Instant::now();
        self.fsyncs += 1;
        self.last_fsync = Some(took);
        self.fsync_durations.observe_duration(took);
    }

    fn io_error(&self, what: &str, e: std::io::Error) -> WalError {
        WalError::io(format!("{what} {}", self.active.path.display()), e)
    }

    /// Whether the records or bytes since the last snapshot reached a threshold.
    pub fn snapshot_due(&self) -> bool {
        let by_records = self.config.snapshot_records > 0
            && self.records_since_snapshot >= self.config.snapshot_records;
        let by_bytes = self.config.snapshot_bytes > 0
            && self.bytes_since_snapshot >= self.config.snapshot_bytes;
        by_records || by_bytes
    }

    /// Takes a snapshot if [`Wal::snapshot_due`]. `state` must hold every record
    /// appended so far (call it after applying them). Returns whether one was taken.
    pub fn maybe_snapshot(&mut self, state: &State) -> Result<bool, WalError> {
        if !self.snapshot_due() {
            return Ok(false);
        }
        self.snapshot(state)?;
        Ok(true)
    }

    /// Writes a snapshot of `state` covering every record so far, then deletes the
    /// segments and older snapshots it makes redundant. `state` must hold every record
    /// appended so far. On error the log is unchanged and still complete.
    pub fn snapshot(&mut self, state: &State) -> Result<(), WalError> {
        let Some(job) = self.begin_snapshot()? else {
            return Ok(());
        };
        match job.write(state) {
            Ok(()) => self.finish_snapshot(job),
            Err(e) => {
                self.abandon_snapshot(job);
                Err(e)
            }
        }
    }

    /// Starts a snapshot of every record so far, to be written by [`SnapshotJob::write`]
    /// (on any thread, from a state holding at least those records) while appends go on.
    /// The records are made durable first, so a snapshot never stands for records a
    /// crash could still tear away, and a new segment is started at the next record, so
    /// the segments before it can go once the snapshot is written. `None` when the
    /// newest snapshot already covers every record.
    pub fn begin_snapshot(&mut self) -> Result<Option<SnapshotJob>, WalError> {
        let last = self.next_seq - 1;
        if self.last_snapshot_seq == Some(last) {
            return Ok(None);
        }
        self.sync()?;
        if self.active.len() > SEGMENT_HEADER_LEN {
            self.rotate()?;
        }
        let job = SnapshotJob {
            fs: self.fs.clone(),
            dir: self.dir.clone(),
            last,
            records: self.records_since_snapshot,
            bytes: self.bytes_since_snapshot,
        };
        self.records_since_snapshot = 0;
        self.bytes_since_snapshot = 0;
        Ok(Some(job))
    }

    /// Records the snapshot `job` wrote and deletes the segments and older snapshots it
    /// makes redundant.
    pub fn finish_snapshot(&mut self, job: SnapshotJob) -> Result<(), WalError> {
        self.last_snapshot_seq = Some(job.last);
        self.last_snapshot_time = Some(SystemTime::now());
        self.snapshots_taken += 1;
        self.delete_covered(job.last)
    }

    /// Forgets a snapshot that could not be written: its records count towards the next.
    pub fn abandon_snapshot(&mut self, job: SnapshotJob) {
        self.records_since_snapshot += job.records;
        self.bytes_since_snapshot += job.bytes;
    }

    /// Deletes closed segments and snapshots older than the snapshot at `last`.
    fn delete_covered(&mut self, last: u64) -> Result<(), WalError> {
        let fs = self.fs.as_ref();
        let files = open::Files::list(fs, &self.dir)?;
        let mut doomed: Vec<PathBuf> = files
            .snapshots
            .into_iter()
            .filter(|(seq, _)| *seq < last)
            .map(|(_, p)| p)
            .collect();
        // `begin_snapshot` started a segment at `last + 1`: every one before it is covered.
        let (covered, kept) = std::mem::take(&mut self.closed)
            .into_iter()
            .partition(|s| s.first_seq <= last);
        self.closed = kept;
        doomed.extend(covered.into_iter().map(|s: SegmentFile| s.path));
        for path in &doomed {
            fs.remove(path)
                .map_err(|e| WalError::io(format!("remove {}", path.display()), e))?;
        }
        fs.sync_dir(&self.dir)
            .map_err(|e| WalError::io(format!("sync {}", self.dir.display()), e))
    }

    /// Fsyncs and marks the directory as cleanly closed, so the next open keeps the
    /// incarnation even under a weaker policy.
    pub fn close(mut self) -> Result<(), WalError> {
        self.active
            .finish()
            .map_err(|e| self.io_error("finish", e))?;
        identity::set_marker(self.fs.as_ref(), &self.dir, CLEAN_SHUTDOWN_FILE)
    }

    /// Figures for `GET /status`.
    pub fn status(&self) -> WalStatus {
        WalStatus {
            dir: self.dir.clone(),
            fsync_policy: self.config.fsync.to_string(),
            segments: self.closed.len() + 1,
            bytes: self.closed.iter().map(|s| s.len).sum::<u64>() + self.active.len(),
            last_seq: self.next_seq - 1,
            records_since_snapshot: self.records_since_snapshot,
            bytes_since_snapshot: self.bytes_since_snapshot,
            last_snapshot_seq: self.last_snapshot_seq,
            snapshots_taken: self.snapshots_taken,
            fsyncs: self.fsyncs,
            last_fsync_micros: self.last_fsync.map(|d| d.as_micros() as u64),
            fsync_duration_seconds: self.fsync_durations.snapshot(),
            snapshot_age_ms: self
                .last_snapshot_time
                .map(|t| crate::status::millis(t.elapsed().unwrap_or(Duration::ZERO))),
            failed: self.active.is_failed(),
        }
    }
}

/// `items` cut into runs in order, each as long as fits `budget` bytes by `len` (a
/// single item over it makes a run of its own).
fn split_by_len<T>(items: &[T], budget: usize, len: impl Fn(&T) -> usize) -> Vec<&[T]> {
    let mut parts = Vec::new();
    let mut start = 0;
    while start < items.len() {
        let mut end = start;
        let mut used = 0;
        while end < items.len() {
            let l = len(&items[end]);
            if end > start && used + l > budget {
                break;
            }
            used += l;
            end += 1;
        }
        parts.push(&items[start..end]);
        start = end;
    }
    parts
}

fn check_record_len(len: usize) -> Result<(), WalError> {
    if len > MAX_RECORD_BYTES {
        return Err(WalError::RecordTooLarge {
            len,
            max: MAX_RECORD_BYTES,
        });
    }
    Ok(())
}
