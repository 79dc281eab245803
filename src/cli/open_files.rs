//! The process's limit on open files, raised to the most the system allows before a
//! server starts (as the Go runtime does for its programs): each HTTP connection holds
//! two descriptors, each Redis client one, each gossip link one or two, and the WAL one
//! per file it has open, so the soft limit many systems start processes with (1,024)
//! runs out before the connection caps are reached, and then the WAL cannot start a
//! segment.

/// Raises the soft limit on open files to the hard one; logs what it is.
pub fn raise_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => log::debug!("open file limit: {limit}"),
        Err(e) => log::warn!("cannot raise the open file limit: {e}"),
    }
}
