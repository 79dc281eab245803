//! Where a node's changes become durable: the `Storage` trait the node core calls, and
//! the in-memory storage used without `--wal`.
//!
//! The core keeps the durability invariant through this trait: a local batch is handed to
//! [`Storage::commit_local`] and applied only once that returns `Ok`, so nothing is
//! gossiped, read or acknowledged before it is durable. One call covers every operation
//! gathered into one batch (group commit).

use crate::crdt::{Origin, OriginDelta, State};
use crate::status::StorageStatus;
use std::io;

/// Durable storage for one node, driven by the thread that owns the node core.
pub trait Storage: Send {
    /// Makes one local batch durable (written and synced) before it is applied. On an
    /// error nothing of the batch is applied and every operation in it is refused.
    fn commit_local(&mut self, delta: &OriginDelta) -> io::Result<()>;

    /// Records deltas learned from peers (already applied), so a restart need not fetch
    /// them again. An error is logged; peers can always resend what is lost.
    fn log_learned(&mut self, deltas: &[OriginDelta]) -> io::Result<()>;

    /// Called after every input that changed the state and at every gossip tick, with
    /// that state, so the storage can sync or snapshot when it sees fit.
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
