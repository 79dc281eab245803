//! The typed status model: every figure a node reports, in one place.
//!
//! The node core, the engine, the transport and the storage each keep their own figures
//! (the engine's [`Stats`], the core's [`RequestStats`], the listener's inbound counters,
//! the WAL's [`WalStatus`]); a runtime gathers them into one [`NodeStatus`], which the
//! HTTP layer serializes as `GET /status` and renders as Prometheus text. Nothing here
//! is assembled by hand as JSON.

use crate::engine::Stats;
use crate::wal::{RecoveryReport, WalStatus};
use serde::Serialize;
use std::time::Duration;

/// `GET /status`: one node's whole report.
#[derive(Clone, Debug, Serialize)]
pub struct NodeStatus {
    pub name: String,
    /// `node/incarnation`, the origin this run writes under.
    pub origin: String,
    pub gossip_addr: String,
    pub http_addr: String,
    pub uptime_ms: u64,
    /// Members other than this node: how many are known, and how many alive.
    pub peers: PeerCounts,
    /// Members by state, this node included.
    pub members: MemberCounts,
    pub state: StateStats,
    pub gossip: GossipStatus,
    pub transport: TransportStatus,
    pub requests: RequestStats,
    pub storage: StorageStatus,
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct PeerCounts {
    pub known: usize,
    pub reachable: usize,
}

/// Members by state in this node's view, itself included.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct MemberCounts {
    pub alive: usize,
    pub suspect: usize,
    pub dead: usize,
    pub left: usize,
}

impl MemberCounts {
    pub fn total(&self) -> usize {
        self.alive + self.suspect + self.dead + self.left
    }
}

/// The size of the replicated state.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct StateStats {
    pub counters: usize,
    /// (counter, origin) entries.
    pub entries: usize,
    pub origins: usize,
}

/// The engine's figures as a report.
#[derive(Clone, Debug, Serialize)]
pub struct GossipStatus {
    #[serde(flatten)]
    pub stats: Stats,
    /// Milliseconds since a frame from a peer last changed the state; absent if never.
    pub last_learned_ms_ago: Option<u64>,
}

impl GossipStatus {
    pub fn new(stats: &Stats, now: Duration) -> GossipStatus {
        GossipStatus {
            last_learned_ms_ago: stats.last_learned.map(|t| millis(now.saturating_sub(t))),
            stats: stats.clone(),
        }
    }
}

/// Connections and queues.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TransportStatus {
    /// Frames dropped from full peer queues (the oldest go first).
    pub queue_drops: u64,
    /// Frames for a peer that had no link any more.
    pub unroutable_frames: u64,
    pub inbound: InboundStats,
}

/// Inbound gossip connections.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct InboundStats {
    pub accepted: u64,
    /// Closed at once because the most inbound connections were already open.
    pub rejected: u64,
    /// Closed because of a malformed frame (or a first frame that was not a Hello).
    pub malformed_frames: u64,
    /// Closed because no Hello came in time.
    pub hello_timeouts: u64,
    pub open: usize,
}

/// Client operations as the node core counted them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RequestStats {
    /// Group commits (one prepared batch each).
    pub batches: u64,
    pub ops: u64,
    /// Operations refused on their own (bad input, overflow).
    pub refused: u64,
    /// Batches the storage could not make durable (every operation in them failed).
    pub storage_failures: u64,
    /// Learned state the storage could not log (peers resend it).
    pub learned_log_failures: u64,
}

/// Where the node's changes go.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StorageStatus {
    /// No WAL: nothing survives a stop.
    Memory(MemoryStorageStatus),
    Wal(Box<WalStorageStatus>),
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct MemoryStorageStatus {
    /// Always false.
    pub durable: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct WalStorageStatus {
    /// Whether an acknowledged write survives a crash (the fsync policy is `always`).
    pub durable: bool,
    /// Absent once the WAL is closed.
    pub wal: Option<WalStatus>,
    /// What start-up recovery found and did.
    pub recovery: RecoveryReport,
}

impl StorageStatus {
    pub const MEMORY: StorageStatus = StorageStatus::Memory(MemoryStorageStatus { durable: false });
}

/// Whole milliseconds of a duration, as reports show them.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
