//! The WAL's own thread: every write, fsync and snapshot of the node's log happens here,
//! so the event loop keeps gossiping, answering reads and gathering the next batch while
//! the disk works (pipelined group commit).
//!
//! It takes [`Request`]s in the order the event loop sent them, so a batch's record,
//! the state learned before it and a snapshot asked after it reach the log in that order.
//! A local batch's outcome goes back on the completions channel (or to the caller that
//! waits for it); the event loop applies and answers the batch only then. A snapshot is
//! written from a copy of the state on a thread of its own while appends go on: this
//! thread only makes the records durable and starts a new segment first, and deletes the
//! covered segments once the snapshot is on disk. Figures for `GET /status` are published
//! after each request, so reading them never waits for the disk.

use crate::crdt::{Origin, OriginDelta, OriginVersion, State};
use crate::wal::{FsyncPolicy, SnapshotJob, Wal, WalError, WalStatus};
use crossbeam_channel::{never, select, tick, Receiver, Sender};
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Work for the WAL thread.
pub enum Request {
    /// A local batch to append and (under `--fsync always`) fsync. The outcome goes to
    /// `reply`, or on the completions channel when there is none.
    Commit {
        delta: OriginDelta,
        reply: Option<Sender<io::Result<()>>>,
    },
    /// State learned from peers, already applied: appended without an fsync of its own.
    Learned(Vec<OriginDelta>),
    /// Retirements already made: appended without an fsync of their own.
    Retired(Vec<OriginVersion>),
    /// Compactions already made (or adopted, then a snapshot is asked for): appended
    /// without an fsync of their own.
    Compacted {
        compacted: Vec<OriginVersion>,
        snapshot: bool,
    },
    /// The state holding every record sent so far, to snapshot (asked for through
    /// [`Shared::snapshot_wanted`]).
    Snapshot(Box<State>),
    /// Take a new incarnation for this reason.
    Renew {
        reason: String,
        reply: Sender<io::Result<Origin>>,
    },
    /// Finish any snapshot being written, fsync, mark a clean shutdown, and stop.
    Close(Sender<io::Result<()>>),
}

/// What the WAL thread shares with the event loop.
pub struct Shared {
    /// The WAL's figures as of the last request handled.
    pub status: Mutex<WalStatus>,
    /// Set once a snapshot is due; the event loop takes it and sends the state.
    pub snapshot_wanted: AtomicBool,
    /// Appends of learned state that failed so far.
    pub learned_failures: AtomicU64,
}

/// The event loop's ends of a running WAL thread.
pub struct Handle {
    pub requests: Sender<Request>,
    /// Where the outcomes of batches sent without a reply channel come back, in order.
    pub completions: Receiver<io::Result<()>>,
    pub shared: Arc<Shared>,
    pub thread: JoinHandle<()>,
}

/// Starts the thread over `wal`.
pub fn spawn(wal: Wal) -> io::Result<Handle> {
    let (requests_tx, requests) = crossbeam_channel::unbounded();
    let (completions, completions_rx) = crossbeam_channel::unbounded();
    let (written_tx, written) = crossbeam_channel::unbounded();
    let shared = Arc::new(Shared {
        status: Mutex::new(wal.status()),
        snapshot_wanted: AtomicBool::new(false),
        learned_failures: AtomicU64::new(0),
    });
    let thread = WalThread {
        wal,
        requests,
        completions,
        written_tx,
        written,
        shared: shared.clone(),
        asked: false,
        writing: false,
        owed: false,
    };
    let handle = std::thread::Builder::new()
        .name("wal".into())
        .spawn(move || thread.run())?;
    Ok(Handle {
        requests: requests_tx,
        completions: completions_rx,
        shared,
        thread: handle,
    })
}

/// A snapshot written, or why not.
type Written = (SnapshotJob, Result<(), WalError>);

struct WalThread {
    wal: Wal,
    requests: Receiver<Request>,
    completions: Sender<io::Result<()>>,
    /// Where snapshot writers report.
    written_tx: Sender<Written>,
    written: Receiver<Written>,
    shared: Arc<Shared>,
    /// A snapshot was asked for and is not written yet.
    asked: bool,
    /// A snapshot writer is running.
    writing: bool,
    /// A snapshot is owed whatever the records since the last: the state holds what no
    /// record does (an adopted compaction).
    owed: bool,
}

impl WalThread {
    fn run(mut self) {
        let syncs = match self.wal.config().fsync {
            FsyncPolicy::Interval(every) => tick(every),
            FsyncPolicy::Always | FsyncPolicy::Never => never(),
        };
        loop {
            select! {
                recv(self.requests) -> msg => match msg {
                    Ok(Request::Close(reply)) => return self.close(reply),
                    Ok(request) => self.handle(request),
                    // The node is gone without a clean stop: leave the log as a crash would.
                    Err(_) => return,
                },
                recv(self.written) -> msg => if let Ok((job, result)) = msg {
                    self.snapshot_written(job, result);
                },
                recv(syncs) -> _ => if let Err(e) = self.wal.sync_if_due() {
                    log::warn!("WAL: {e}");
                },
            }
            *self.shared.status.lock().expect("status lock") = self.wal.status();
        }
    }

    fn handle(&mut self, request: Request) {
        match request {
            Request::Commit { delta, reply } => {
                let outcome = self.wal.append_local(&delta).map(drop).map_err(to_io);
                let _ = match reply {
                    Some(reply) => reply.send(outcome),
                    None => self.completions.send(outcome),
                };
            }
            Request::Learned(deltas) => {
                if let Err(e) = self.wal.append_learned(&deltas) {
                    log::warn!("WAL: cannot log state learned from peers: {e}");
                    self.shared.learned_failures.fetch_add(1, Ordering::SeqCst);
                }
            }
            Request::Retired(retired) => {
                if let Err(e) = self.wal.append_retired(&retired) {
                    log::warn!("WAL: cannot log retirements: {e}");
                }
            }
            Request::Compacted {
                compacted,
                snapshot,
            } => match self.wal.append_compacted(&compacted) {
                Ok(()) if snapshot => {
                    self.owed = true;
                    self.ask_for_snapshot_if_due();
                }
                Ok(()) => {}
                Err(e) => log::warn!("WAL: cannot log compactions: {e}"),
            },
            Request::Snapshot(state) => self.start_snapshot(state),
            Request::Renew { reason, reply } => {
                let _ = reply.send(self.wal.renew_incarnation(reason).map_err(to_io));
            }
            Request::Close(_) => unreachable!("handled by run"),
        }
        self.ask_for_snapshot_if_due();
    }

    fn ask_for_snapshot_if_due(&mut self) {
        if !self.asked && (self.owed || self.wal.snapshot_due()) {
            self.asked = true;
            self.owed = false;
            self.shared.snapshot_wanted.store(true, Ordering::SeqCst);
        }
    }

    /// Makes the records durable, starts a new segment, and has `state` written on a
    /// thread of its own.
    fn start_snapshot(&mut self, state: Box<State>) {
        let job = match self.wal.begin_snapshot() {
            Ok(Some(job)) => job,
            Ok(None) => return self.asked = false,
            Err(e) => {
                log::warn!("WAL: cannot start a snapshot: {e}");
                return self.asked = false;
            }
        };
        let written = self.written_tx.clone();
        let spawned = std::thread::Builder::new()
            .name("wal-snapshot".into())
            .spawn(move || {
                let result = job.write(&state);
                let _ = written.send((job, result));
            });
        match spawned {
            Ok(_) => self.writing = true,
            Err(e) => {
                log::warn!("WAL: cannot start a snapshot writer: {e}");
                self.asked = false;
            }
        }
    }

    fn snapshot_written(&mut self, job: SnapshotJob, result: Result<(), WalError>) {
        self.writing = false;
        self.asked = false;
        let last = job.last_seq();
        let recorded = match result {
            Ok(()) => self.wal.finish_snapshot(job),
            Err(e) => {
                self.wal.abandon_snapshot(job);
                Err(e)
            }
        };
        match recorded {
            Ok(()) => log::info!("WAL snapshot taken at record {last}"),
            Err(e) => log::warn!("WAL: snapshot at record {last}: {e}"),
        }
        self.ask_for_snapshot_if_due();
    }

    fn close(mut self, reply: Sender<io::Result<()>>) {
        if self.writing {
            if let Ok((job, result)) = self.written.recv() {
                self.snapshot_written(job, result);
            }
        }
        let _ = reply.send(self.wal.close().map_err(to_io));
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
