//! What can go wrong with the WAL. Corruption (bytes on disk that are not what the WAL
//! wrote) is kept apart from I/O errors (the operating system refused an operation), and
//! each append error says what it left behind.

use std::fmt;
use std::io;
use std::path::PathBuf;

#[derive(Debug)]
pub enum WalError {
    /// A file operation failed. From an append: nothing of the record will replay and
    /// the state must not change; later appends retry and succeed once the fault clears.
    Io { context: String, source: io::Error },
    /// A file holds bytes the WAL did not write (or cannot read). Open refuses to start;
    /// `WalConfig::repair` keeps what comes before `offset` and sets the rest aside.
    Corruption {
        file: PathBuf,
        offset: u64,
        reason: String,
    },
    /// A record with a valid checksum has a type this version does not know, so it was
    /// written by a newer gctr. Never repaired away.
    UnknownRecordType {
        file: PathBuf,
        offset: u64,
        record_type: u8,
    },
    /// The data directory belongs to another node name.
    NameMismatch { asked: String, found: String },
    /// A node name was missing (for a new directory) or breaks the naming rules.
    BadName(String),
    /// A record would exceed the size limit; nothing was written.
    RecordTooLarge { len: usize, max: usize },
    /// Another process has the data directory open.
    Locked { dir: PathBuf },
}

impl WalError {
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> WalError {
        WalError::Io {
            context: context.into(),
            source,
        }
    }
}

impl fmt::Display for WalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WalError::Io { context, source } => write!(f, "{context}: {source}"),
            WalError::Corruption {
                file,
                offset,
                reason,
            } => write!(
                f,
                "WAL corruption in {} at offset {offset}: {reason} (start with repair to keep \
                 what comes before it)",
                file.display()
            ),
            WalError::UnknownRecordType {
                file,
                offset,
                record_type,
            } => write!(
                f,
                "unknown WAL record type {record_type} in {} at offset {offset} (written by a \
                 newer gctr?)",
                file.display()
            ),
            WalError::NameMismatch { asked, found } => write!(
                f,
                "the data directory belongs to node {found:?}, not {asked:?}; use another \
                 directory or the name {found:?}"
            ),
            WalError::BadName(reason) => write!(f, "node name: {reason}"),
            WalError::RecordTooLarge { len, max } => {
                write!(f, "WAL record of {len} bytes is over the {max}-byte limit")
            }
            WalError::Locked { dir } => write!(
                f,
                "the data directory {} is in use by another process",
                dir.display()
            ),
        }
    }
}

impl std::error::Error for WalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            WalError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
