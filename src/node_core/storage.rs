//! Where a node's changes become durable: the `Storage` trait the node core calls, and
//! the in-memory storage used without `--wal`.
//!
//! The core keeps the durability invariant through this trait: a local batch is handed to
//! [`Storage::start_commit`] and applied only once the storage says it is durable, so
//! nothing is gossiped, read or acknowledged before it is. One call covers every
//! operation gathered into one batch (group commit).
//!
//! A storage either makes the batch durable in the call (the default, through
//! [`Storage::commit_local`]: the in-memory storage, the simulator's) or in the
//! background (the TCP node's WAL thread): then the call returns
//! [`CommitStarted::Pending`], the outcome comes later on [`Storage::completions`], and
//! the runtime hands it to [`crate::node_core::NodeCore::commit_finished`]. At most one
//! batch is pending at a time; the next one gathers meanwhile (pipelined group commit).

use crate::crdt::{Origin, OriginDelta, OriginVersion, State};
use crate::status::StorageStatus;
use crossbeam_channel::Receiver;
use std::io;

/// What became of a batch handed to [`Storage::start_commit`].
#[derive(Debug)]
pub enum CommitStarted {
    /// Made durable (or failed) in the call.
    Done(io::Result<()>),
    /// Being made durable in the background; the outcome comes on
    /// [`Storage::completions`].
    Pending,
}

/// Durable storage for one node, driven by the thread that owns the node core.
pub trait Storage: Send {
    /// Makes one local batch durable (written and synced) before it is applied. On an
    /// error nothing of the batch is applied and every operation in it is refused.
    fn commit_local(&mut self, delta: &OriginDelta) -> io::Result<()>;

    /// Starts making one local batch durable; see the module comment. Never called while
    /// an earlier batch is pending.
    fn start_commit(&mut self, delta: &OriginDelta) -> CommitStarted {
        CommitStarted::Done(self.commit_local(delta))
    }

    /// Where the outcomes of pending batches arrive, in order; `None` for a storage that
    /// never answers [`CommitStarted::Pending`].
    fn completions(&self) -> Option<Receiver<io::Result<()>>> {
        None
    }

    /// Records deltas learned from peers (already applied), so a restart need not fetch
    /// them again. An error is logged; peers can always resend what is lost.
    fn log_learned(&mut self, deltas: &[OriginDelta]) -> io::Result<()>;

    /// Records retirements of origins (see `crdt::retire`), already made, so a restart
    /// need not wait out the retire-after time again. An error is logged; the node
    /// retires them again later. A storage that keeps no state keeps none of them.
    fn log_retired(&mut self, _retired: &[OriginVersion]) -> io::Result<()> {
        Ok(())
    }

    /// Records compactions of retired origins (see `crdt::compact`), made here or adopted
    /// from a peer: made ones replay from the log; an adopted one (`snapshot`) holds
    /// sums no record carries, so the storage takes a snapshot soon. An error is
    /// logged; a restart before the record or snapshot lands holds the origins
    /// uncompacted, and compacts or adopts them again.
    fn log_compacted(&mut self, _compacted: &[OriginVersion], _snapshot: bool) -> io::Result<()> {
        Ok(())
    }

    /// Called after every input that changed the state and at every gossip tick, with
    /// that state, so the storage can sync or snapshot when it sees fit. Never called
    /// while a batch is pending: `state` holds every record the storage was given.
    fn after_turn(&mut self, state: &State) -> io::Result<()>;

    /// Records that this node now writes under a new incarnation of `current` (for
    /// `reason`) and returns it; nothing is written under it before this returns `Ok`.
    fn renew_incarnation(&mut self, current: &Origin, reason: String) -> io::Result<Origin>;

    /// Figures for the node's status.
    fn status(&self) -> StorageStatus;

    /// Flushes and closes; called once on a clean stop.
    fn close(&mut self) -> io::Result<()>;
}

/// Keeps nothing: the node's state lives in memory only and is lost when it stops, which
/// is why a node without a WAL starts under a new incarnation every time.
#[derive(Debug, Default)]
pub struct MemoryStorage;

impl Storage for MemoryStorage {
    fn commit_local(&mut self, _delta: &OriginDelta) -> io::Result<()> {
        Ok(())
    }

    fn log_learned(&mut self, _deltas: &[OriginDelta]) -> io::Result<()> {
        Ok(())
    }

    fn after_turn(&mut self, _state: &State) -> io::Result<()> {
        Ok(())
    }

    fn renew_incarnation(&mut self, current: &Origin, reason: String) -> io::Result<Origin> {
        log::warn!("{reason}: writing under a new incarnation");
        Ok(fresh_incarnation(current))
    }

    fn status(&self) -> StorageStatus {
        StorageStatus::MEMORY
    }

    fn close(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `current` under a random incarnation other than its own.
pub fn fresh_incarnation(current: &Origin) -> Origin {
    loop {
        let incarnation = fastrand::u64(1..);
        if incarnation != current.incarnation {
            return Origin::new(current.node.clone(), incarnation);
        }
    }
}
