//! The durable storage: the node's [`Storage`] over the write-ahead log.
//!
//! The event loop already gathers every pending request into one batch, so one
//! `commit_local` is one WAL record and (under `--fsync always`) one fsync: group commit.
//! A failed append is an `Err` here, which the event loop turns into 503 for the whole
//! batch with nothing applied; the WAL cuts the failed write away on its next append, so
//! later writes succeed once the fault clears.

use crate::crdt::{Origin, OriginDelta, State};
use crate::node_core::Storage;
use crate::status::{StorageStatus, WalStorageStatus};
use crate::wal::{RecoveryReport, Wal, WalError};
use std::io;

pub struct WalStorage {
    /// `None` once closed.
    wal: Option<Wal>,
    /// What start-up recovery found, shown in `GET /status`.
    recovery: RecoveryReport,
}

impl WalStorage {
    pub fn new(wal: Wal, recovery: RecoveryReport) -> WalStorage {
        WalStorage {
            wal: Some(wal),
            recovery,
        }
    }

    fn wal(&mut self) -> io::Result<&mut Wal> {
        self.wal
            .as_mut()
            .ok_or_else(|| io::Error::other("the WAL is closed"))
    }
}

impl Storage for WalStorage {
    fn commit_local(&mut self, delta: &OriginDelta) -> io::Result<()> {
        self.wal()?.append_local(delta).map(drop).map_err(to_io)
    }

    fn log_learned(&mut self, deltas: &[OriginDelta]) -> io::Result<()> {
        self.wal()?.append_learned(deltas).map_err(to_io)
    }

    fn after_turn(&mut self, state: &State) -> io::Result<()> {
        let wal = self.wal()?;
        wal.sync_if_due().map_err(to_io)?;
        if wal.maybe_snapshot(state).map_err(to_io)? {
            log::info!("WAL snapshot taken at record {}", wal.status().last_seq);
        }
        Ok(())
    }

    fn renew_incarnation(&mut self, _current: &Origin, reason: String) -> io::Result<Origin> {
        self.wal()?.renew_incarnation(reason).map_err(to_io)
    }

    fn status(&self) -> StorageStatus {
        StorageStatus::Wal(Box::new(WalStorageStatus {
            durable: self
                .wal
                .as_ref()
                .is_some_and(|w| !w.config().fsync.is_weaker()),
            wal: self.wal.as_ref().map(Wal::status),
            recovery: self.recovery.clone(),
        }))
    }

    fn close(&mut self) -> io::Result<()> {
        match self.wal.take() {
            Some(wal) => wal.close().map_err(to_io),
            None => Ok(()),
        }
    }
}

fn to_io(e: WalError) -> io::Error {
    match e {
        WalError::Io { context, source } => {
            io::Error::new(source.kind(), format!("{context}: {source}"))
        }
        other => io::Error::other(other.to_string()),
    }
}

/// One or two lines for the start-up log: where the state came from and anything
/// recovery had to do.
pub fn describe_recovery(origin: &str, report: &RecoveryReport) -> Vec<String> {
    let source = if report.created {
        "new data directory".to_owned()
    } else {
        let snapshot = report.snapshot_seq.map_or("no snapshot".to_owned(), |s| {
            format!("snapshot at record {s}")
        });
        format!(
            "{snapshot}, {} records replayed from {} segment(s), last record {}, {} shutdown",
            report.records_replayed,
            report.segments_read,
            report.last_seq,
            if report.clean_shutdown {
                "clean"
            } else {
                "unclean"
            }
        )
    };
    let mut lines = vec![format!("recovered {origin}: {source}")];
    let mut notes = Vec::new();
    if let Some(t) = &report.torn_tail {
        let saved = t
            .saved_to
            .as_ref()
            .map_or(String::new(), |p| format!(", saved to {}", p.display()));
        notes.push(format!(
            "torn tail cut: {} bytes at offset {} of {} ({}){saved}",
            t.bytes_cut,
            t.offset,
            t.file.display(),
            t.reason
        ));
    }
    for r in &report.repairs {
        notes.push(format!(
            "repaired corruption at offset {} of {} ({}), {} file(s) set aside",
            r.offset,
            r.file.display(),
            r.reason,
            r.dropped.len()
        ));
    }
    for bad in &report.bad_snapshots {
        notes.push(format!("passed over snapshot: {bad}"));
    }
    if let Some(n) = &report.new_incarnation {
        notes.push(format!(
            "new incarnation (was {:016x}): {}",
            n.previous, n.reason
        ));
    }
    if !notes.is_empty() {
        lines.push(notes.join("; "));
    }
    lines
}

#[cfg(test)]
mod tests {
    //! A node started in-process over a WAL whose file layer fails on demand: a failed
    //! write or fsync answers 503 and applies nothing (not even after a restart from the
    //! directory), reads keep working, and writes succeed again once the fault clears.

    use super::*;
    use crate::node::{Node, NodeConfig};
    use crate::wal::faulty_fs::{FaultyFs, Op};
    use crate::wal::WalConfig;
    use std::sync::Arc;

    fn options() -> WalConfig {
        WalConfig {
            node_name: Some("n1".into()),
            ..WalConfig::default()
        }
    }

    fn post(http: &str, path: &str) -> (u16, String) {
        match ureq::post(&format!("http://{http}{path}")).call() {
            Ok(r) => (r.status(), r.into_string().unwrap()),
            Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap()),
            Err(e) => panic!("POST {path}: {e}"),
        }
    }

    fn value(http: &str, counter: &str) -> i64 {
        let v: serde_json::Value = ureq::get(&format!("http://{http}/counters/{counter}"))
            .call()
            .unwrap()
            .into_json()
            .unwrap();
        v["value"].as_i64().unwrap()
    }

    #[test]
    fn a_failed_write_or_fsync_answers_503_applies_nothing_and_later_writes_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultyFs::new();
        let (wal, recovered) = Wal::open_with(Arc::new(fs.clone()), dir.path(), options()).unwrap();
        let config = NodeConfig::new(
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
        );
        let storage = Box::new(WalStorage::new(wal, recovered.report));
        let node = Node::start(config, storage, recovered.origin, recovered.state).unwrap();
        let http = node.http_addr().to_string();

        assert_eq!(post(&http, "/counters/c/increment?by=2").0, 200);
        for (op, stuck) in [(Op::Sync, false), (Op::Write, false), (Op::Sync, true)] {
            fs.fail_nth(op, 1, stuck);
            let (status, body) = post(&http, "/counters/c/increment?by=5");
            assert_eq!(status, 503, "{op:?}: {body}");
            assert!(body.contains("injected"), "{body}");
            assert_eq!(value(&http, "c"), 2, "{op:?} applied a failed batch");
        }
        // Stuck: every write keeps failing, reads keep working.
        assert_eq!(post(&http, "/counters/c/decrement").0, 503);
        assert_eq!(value(&http, "c"), 2);
        assert!(fs.injected() >= 4, "{} failures injected", fs.injected());

        fs.heal();
        let (status, body) = post(&http, "/counters/c/increment?by=1");
        assert_eq!((status, body.as_str()), (200, r#"{"name":"c","value":3}"#));
        node.stop();

        let (_, again) = Wal::open(dir.path(), options()).unwrap();
        assert_eq!(again.state.value("c"), 3);
        assert_eq!(again.report.records_replayed, 2);
    }
}
