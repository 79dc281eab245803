//! The process's own figures — resident memory, threads, open file descriptors — read
//! from `/proc/self` when a status is built. Where `/proc` is missing (not Linux) or
//! unreadable, the figures are absent rather than made up.

use serde::Serialize;
use std::fs;

/// One reading of the process's resources.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProcessStatus {
    /// Resident set size (VmRSS).
    pub resident_memory_bytes: Option<u64>,
    pub threads: Option<u64>,
    pub open_fds: Option<u64>,
}

impl ProcessStatus {
    /// Reads `/proc/self`: a couple of small reads and one directory listing.
    pub fn read() -> ProcessStatus {
        let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
        ProcessStatus {
            resident_memory_bytes: status_field(&status, "VmRSS:").map(|kib| kib * 1024),
            threads: status_field(&status, "Threads:"),
            open_fds: fs::read_dir("/proc/self/fd")
                .ok()
                .map(|entries| entries.count() as u64),
        }
    }
}

/// The first number on the line of `/proc/self/status` that starts with `key`.
fn status_field(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_from_proc_status_lines() {
        let text = "Name:\tgctr\nVmRSS:\t   2048 kB\nThreads:\t7\n";
        assert_eq!(status_field(text, "VmRSS:"), Some(2048));
        assert_eq!(status_field(text, "Threads:"), Some(7));
        assert_eq!(status_field(text, "VmSwap:"), None);
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn this_process_has_memory_threads_and_descriptors() {
        let p = ProcessStatus::read();
        assert!(
            p.resident_memory_bytes.is_some_and(|b| b > 1024 * 1024),
            "{p:?}"
        );
        assert!(p.threads.is_some_and(|t| t >= 1), "{p:?}");
        assert!(p.open_fds.is_some_and(|n| n >= 3), "{p:?}");
    }
}
