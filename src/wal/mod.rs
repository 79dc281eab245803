//! The segmented write-ahead log: records, segments, snapshots and recovery.
