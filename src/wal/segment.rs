//! Segment files: naming, the header, and the segment being appended to.
//!
//! A segment is named after the sequence number of its first record, as 16 zero-padded
//! hex digits plus `.wal`, so names sort in log order. It starts with a 12-byte header —
//! magic `GCTR-WAL`, format version (u32 little-endian) — followed by frames. A new
//! segment is made whole before it appears: header written to a temporary file, fsynced,
//! renamed, directory fsynced.
//!
//! A segment can be preallocated: the file is kept up to one step (zeros) ahead of its
//! last record, so most appends need not extend the file, and their fdatasync need not
//! write the file's new size too. A finished segment is cut back to its last record, so
//! only the last segment can end in zeros (at most a step of them, after a crash), which
//! recovery cuts as a torn tail.
//!
//! The active segment remembers the end of its last good record. A failed write or fsync
//! cuts the file back to it, so nothing of a failed record can replay; if the cut itself
//! fails, the segment stays failed and the cut is retried before anything else is written.

use super::fs::{FileSystem, WalFile, TMP_SUFFIX};
use std::io;
use std::path::{Path, PathBuf};

pub const SEGMENT_MAGIC: [u8; 8] = *b"GCTR-WAL";
pub const SEGMENT_VERSION: u32 = 1;
pub const SEGMENT_HEADER_LEN: u64 = 12;
const SEGMENT_SUFFIX: &str = ".wal";

pub fn segment_header() -> [u8; SEGMENT_HEADER_LEN as usize] {
    let mut h = [0u8; SEGMENT_HEADER_LEN as usize];
    h[..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..].copy_from_slice(&SEGMENT_VERSION.to_le_bytes());
    h
}

pub fn segment_name(first_seq: u64) -> String {
    format!("{first_seq:016x}{SEGMENT_SUFFIX}")
}

/// The first sequence number a segment file name stands for, if it is a segment name.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    parse_hex_name(name, SEGMENT_SUFFIX)
}

/// Parses `<16 hex digits><suffix>`.
pub fn parse_hex_name(name: &str, suffix: &str) -> Option<u64> {
    let hex = name.strip_suffix(suffix)?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

/// The segment being appended to.
pub struct ActiveSegment {
    pub path: PathBuf,
    pub first_seq: u64,
    file: Box<dyn WalFile>,
    /// End of the last good record: what the file is cut back to after a failure.
    good_len: u64,
    /// A failed cut left bytes after `good_len` that must go before the next write.
    needs_cut: bool,
    /// How far ahead of the last record the file is made long (0: not preallocated).
    step: u64,
    /// How long the file was made.
    allocated: u64,
}

impl ActiveSegment {
    /// Creates a new, empty segment whose first record will be `first_seq`, preallocated
    /// `step` bytes past its header (0: not at all).
    pub fn create(
        fs: &dyn FileSystem,
        dir: &Path,
        first_seq: u64,
        step: u64,
    ) -> io::Result<ActiveSegment> {
        let name = segment_name(first_seq);
        let path = dir.join(&name);
        let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
        let mut file = fs.create(&tmp)?;
        file.append(&segment_header())?;
        let allocated = SEGMENT_HEADER_LEN + step;
        file.preallocate(allocated)?;
        file.sync()?;
        fs.rename(&tmp, &path)?;
        if let Err(e) = fs.sync_dir(dir) {
            // The records go on into the segment before: take this one back if we can
            // (recovery also passes over an empty segment such a failure leaves).
            let _ = fs.remove(&path);
            return Err(e);
        }
        Ok(ActiveSegment {
            path,
            first_seq,
            file,
            good_len: SEGMENT_HEADER_LEN,
            needs_cut: false,
            step,
            allocated,
        })
    }

    /// Opens a recovered segment whose good records end at `len` (the file is that long)
    /// and preallocates `step` bytes past them.
    pub fn open(
        fs: &dyn FileSystem,
        path: PathBuf,
        first_seq: u64,
        len: u64,
        step: u64,
    ) -> io::Result<ActiveSegment> {
        let mut file = fs.open_append(&path)?;
        let allocated = len + step;
        file.preallocate(allocated)?;
        Ok(ActiveSegment {
            path,
            first_seq,
            file,
            good_len: len,
            needs_cut: false,
            step,
            allocated,
        })
    }

    /// Cuts the preallocated space after the last record away and fsyncs: for a segment
    /// that is done (rotated away from, or closed).
    pub fn finish(&mut self) -> io::Result<()> {
        self.ensure_clean()?;
        self.file.truncate(self.good_len)?;
        self.file.sync()
    }

    pub fn len(&self) -> u64 {
        self.good_len
    }

    /// Whether an earlier failure still waits to be cut away.
    pub fn is_failed(&self) -> bool {
        self.needs_cut
    }

    /// Retries the cut back to the last good record if a failure left one pending.
    pub fn ensure_clean(&mut self) -> io::Result<()> {
        if self.needs_cut {
            self.cut_back()?;
        }
        Ok(())
    }

    /// Appends `bytes` (whole frames), and fsyncs if `sync`. On any error the file is cut
    /// back to where it was, so the frames are gone; the error is returned either way.
    pub fn append(&mut self, bytes: &[u8], sync: bool) -> io::Result<()> {
        self.ensure_clean()?;
        let end = self.good_len + bytes.len() as u64;
        if self.step > 0 && end > self.allocated {
            self.allocated = end + self.step;
            self.file.preallocate(self.allocated)?;
        }
        let result = self
            .file
            .append(bytes)
            .and_then(|()| if sync { self.file.sync() } else { Ok(()) });
        match result {
            Ok(()) => {
                self.good_len += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                self.needs_cut = true;
                match self.cut_back() {
                    Ok(()) => Err(e),
                    Err(cut) => {
                        log::error!(
                            "could not cut {} back to {} bytes after a failed write ({cut}); \
                             will retry before the next write",
                            self.path.display(),
                            self.good_len
                        );
                        // The bytes stay until a cut succeeds: a crash before that
                        // replays them, so the write's outcome is not known.
                        Err(io::Error::new(
                            e.kind(),
                            format!(
                                "{e}; and the write could not be cut back ({cut}), so it \
                                 counts if the node restarts before a later write cuts it: \
                                 retry it only with an idempotency key"
                            ),
                        ))
                    }
                }
            }
        }
    }

    /// Makes everything appended so far durable.
    pub fn sync(&mut self) -> io::Result<()> {
        self.ensure_clean()?;
        self.file.sync()
    }

    fn cut_back(&mut self) -> io::Result<()> {
        self.file.truncate(self.good_len)?;
        self.file.preallocate(self.allocated)?;
        self.file.sync()?;
        self.needs_cut = false;
        Ok(())
    }
}
