//! The typed status model: every figure a node reports, in one place.
//!
//! The node core, the engine, the transport and the storage each keep their own figures
//! (the engine's [`Stats`], the core's [`RequestStats`], the listener's inbound counters,
//! the WAL's [`WalStatus`]); a runtime gathers them into one [`NodeStatus`], which the
//! HTTP layer serializes as `GET /status` and `GET /dashboard.json` and renders as
//! Prometheus metrics (`crate::metrics`). Discovery's own figures are a
//! [`DiscoveryStatus`]. Nothing here is assembled by hand as JSON.
//!
//! - `histogram`: the shared histograms recorded where things happen;
//! - `process`: the process's own figures from `/proc`.

pub mod histogram;
pub mod process;

use crate::crdt::OpKind;
use crate::engine::Stats;
use crate::keyring::shared::{Mode, RejectionCount};
use crate::membership::{MemberView, State};
use crate::node_core::GuardStatus;
use crate::replication::PeerLag;
use crate::wal::{RecoveryReport, WalStatus};
use histogram::HistogramSnapshot;
use process::ProcessStatus;
use serde::Serialize;
use std::time::Duration;

/// `GET /status`: one node's whole report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct NodeStatus {
    pub name: String,
    /// `node/incarnation`, the origin this run writes under.
    pub origin: String,
    pub gossip_addr: String,
    pub http_addr: String,
    pub uptime_ms: u64,
    /// Members other than this node: how many are known, and how many alive.
    pub peers: PeerCounts,
    pub state: StateStats,
    pub gossip: GossipStatus,
    pub transport: TransportStatus,
    pub requests: RequestStats,
    /// Idempotency keys held and what this node did with them.
    pub keys: KeyStats,
    pub storage: StorageStatus,
    /// Whether writes are accepted, and why not (see the README's Security section).
    pub writes: GuardStatus,
    /// Every member this node knows of, itself included, with its state.
    pub members: Vec<MemberStatus>,
    /// The peers this node gossips with now, by name.
    pub gossip_peers: Vec<String>,
    /// Per peer, how far its latest digest is behind this node's own writes.
    pub replication: Vec<PeerReplication>,
    pub latency: LatencyStatus,
    /// API tokens: required or not, and the requests (HTTP and RESP) refused.
    pub access: AccessStatus,
    pub process: ProcessStatus,
    /// The gossip keyring, when the node has one (`--keyring`).
    pub keyring: Option<KeyringStatus>,
}

/// The gossip keyring as `/status` shows it: never a key, only key ids.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyringStatus {
    pub mode: Mode,
    pub enforced: bool,
    /// The record's version counter (0: the file as written, no command yet).
    pub version: u64,
    /// Installed key ids, the primary first.
    pub keys: Vec<String>,
    /// Connections, frames and datagrams refused, per lane and reason.
    pub rejections: Vec<RejectionCount>,
}

/// How this node sees one member of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemberStatus {
    pub name: String,
    pub gossip_addr: String,
    /// Absent until the member announced it.
    pub http_addr: Option<String>,
    /// One of [`MEMBER_STATES`].
    pub state: &'static str,
    /// The answering node itself.
    #[serde(rename = "self")]
    pub is_self: bool,
    /// Milliseconds since a frame from the member last arrived; absent if never (and
    /// for the node itself).
    pub last_heard_ms_ago: Option<u64>,
}

/// Every state a member can be in, as reports name them.
pub const MEMBER_STATES: [&str; 4] = [
    State::ALL[0].name(),
    State::ALL[1].name(),
    State::ALL[2].name(),
    State::ALL[3].name(),
];

impl MemberStatus {
    /// A member as membership holds it; `last_heard_ms_ago` is how long ago a frame from
    /// it arrived, if one did.
    pub fn new(view: &MemberView, last_heard_ms_ago: Option<u64>) -> MemberStatus {
        MemberStatus {
            name: view.member.name.to_string(),
            gossip_addr: view.member.gossip_addr.clone(),
            http_addr: Some(view.member.http_addr.clone()).filter(|a| !a.is_empty()),
            state: view.state.name(),
            is_self: view.is_self,
            last_heard_ms_ago,
        }
    }
}

/// One peer's replication progress, as [`NodeStatus`] reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PeerReplication {
    pub peer: String,
    /// Versions of this node's own origin the peer's latest digest lacked.
    pub versions_behind: u64,
    /// Age of the oldest own write the peer's latest digest lacked (0 when none).
    pub behind_ms: u64,
    /// Time since the peer's latest digest arrived.
    pub digest_age_ms: u64,
    /// Time since a digest last showed the peer holding every own write; absent if
    /// none ever did.
    pub caught_up_ms_ago: Option<u64>,
}

impl From<&PeerLag> for PeerReplication {
    fn from(lag: &PeerLag) -> PeerReplication {
        PeerReplication {
            peer: lag.peer.to_string(),
            versions_behind: lag.versions_behind,
            behind_ms: millis(lag.behind_for),
            digest_age_ms: millis(lag.digest_age),
            caught_up_ms_ago: lag.caught_up_ago.map(millis),
        }
    }
}

/// Histograms of the write path (the WAL's fsyncs are in its own figures).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct LatencyStatus {
    /// Seconds from an operation's HTTP request received to its answer sent.
    pub op_duration_seconds: HistogramSnapshot,
    /// Operations per group commit.
    pub group_commit_ops: HistogramSnapshot,
}

#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct PeerCounts {
    pub known: usize,
    pub reachable: usize,
}

/// The size of the replicated state.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct StateStats {
    pub counters: usize,
    /// (counter, origin) entries.
    pub entries: usize,
    /// Origins heard of: live and retired.
    pub origins: usize,
    /// Origins whose member still writes or may (not retired).
    pub origins_live: usize,
    /// Origins retired here (see `crdt::retire`), held as a tombstone each.
    pub origins_retired: usize,
    /// (counter, origin) entries those tombstones keep (not in `entries`).
    pub tombstone_entries: usize,
    /// Retired origins compacted here (their tombstones' entries gone; see
    /// `crdt::compact`), and changes of compacted origins refused (past the version
    /// they were compacted at).
    pub origins_compacted: usize,
    pub compacted_changes_refused: u64,
    /// Retirements done here, and of those the ones undone (the origin wrote again).
    pub retirements: u64,
    pub retirements_undone: u64,
}

/// The engine's figures as a report.
#[derive(Clone, Debug, Default, Serialize)]
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
    /// Frames for a peer that had no link any more, or no room for one.
    pub unroutable_frames: u64,
    /// Outbound links (one writer thread each) open now.
    pub links: usize,
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
    /// Increments by outcome.
    pub increment: OpOutcomes,
    /// Decrements by outcome.
    pub decrement: OpOutcomes,
    /// Group commits (one prepared batch each).
    pub batches: u64,
    pub ops: u64,
    /// Operations refused on their own (bad input, overflow).
    pub refused: u64,
    /// Batches the storage could not make durable (every operation in them failed).
    pub storage_failures: u64,
    /// Learned state the storage could not log (peers resend it).
    pub learned_log_failures: u64,
    /// Operations refused because writes were held (a starting node's fence, another
    /// process running under this node's name).
    pub unavailable: u64,
}

impl RequestStats {
    /// The outcome counts of operations of `kind`.
    pub fn outcomes_mut(&mut self, kind: OpKind) -> &mut OpOutcomes {
        match kind {
            OpKind::Increment => &mut self.increment,
            OpKind::Decrement => &mut self.decrement,
        }
    }
}

/// Idempotency keys: what this node holds and what it did with them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KeyStats {
    /// Whether this node accepts keyed operations: it holds what its peers hold of keys
    /// (it recovered its state, a peer answered its pull, or it has no peer).
    pub ready: bool,
    /// Keys held, resolved ones (tombstones) included.
    pub held: u64,
    /// Acceptances held that their acceptor has not resolved yet (live keys).
    pub live: u64,
    /// Keyed operations this node accepted (first acceptances here).
    pub accepted: u64,
    /// Keyed operations recognised as retries of an accepted one (nothing applied).
    pub retries: u64,
    /// Keyed operations refused for reusing a key with other parameters (422).
    pub mismatches: u64,
    /// This node's acceptances resolved: folded into its totals or passed over.
    pub resolved: u64,
    /// Of those, the ones folded (this node won the key).
    pub folded: u64,
    /// Keys forgotten at the end of their retention window.
    pub expired: u64,
    /// Keyed operations refused while this node had not caught up with a peer.
    pub not_ready: u64,
}

/// What became of operations of one kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct OpOutcomes {
    /// Applied, durable and acknowledged.
    pub ok: u64,
    /// Refused on their own (bad input, overflow); nothing applied.
    pub refused: u64,
    /// Their batch could not be made durable; nothing applied.
    pub failed: u64,
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

#[derive(Clone, Debug, Default, Serialize)]
pub struct WalStorageStatus {
    /// Whether an acknowledged write survives a crash (the fsync policy is `always`).
    pub durable: bool,
    /// Absent once the WAL is closed.
    pub wal: Option<WalStatus>,
    /// What start-up recovery found and did.
    pub recovery: RecoveryReport,
}

impl Default for StorageStatus {
    fn default() -> StorageStatus {
        StorageStatus::MEMORY
    }
}

impl StorageStatus {
    pub const MEMORY: StorageStatus = StorageStatus::Memory(MemoryStorageStatus { durable: false });
}

/// `GET /status` and `GET /metrics` of the discovery server.
#[derive(Clone, Debug, Serialize)]
pub struct DiscoveryStatus {
    pub addr: String,
    pub uptime_ms: u64,
    /// Members in the table now.
    pub members: usize,
    pub max_members: usize,
    pub ttl_ms: u64,
    pub events: RegistryEvents,
    /// API tokens: required or not, and the requests refused.
    pub access: AccessStatus,
    pub process: ProcessStatus,
}

/// Whether a server requires API tokens, and what it refused since it started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AccessStatus {
    pub tokens_required: bool,
    /// Refused with 401 (RESP: `-NOAUTH`, `-WRONGPASS`): no token or an unknown one.
    pub unauthenticated: u64,
    /// Refused with 403 (RESP: `-NOPERM`): a read-only token asked for a change.
    pub forbidden: u64,
}

/// What happened to the discovery table since the server started.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RegistryEvents {
    /// New names registered (by register or heartbeat).
    pub joined: u64,
    /// Known names that came back with other addresses.
    pub moved: u64,
    /// Heartbeats (or registrations) of members already known at the same addresses.
    pub refreshed: u64,
    pub deregistered: u64,
    /// Members dropped for missing heartbeats for the TTL.
    pub expired: u64,
    /// New names refused because the table was full.
    pub refused: u64,
}

/// Whole milliseconds of a duration, as reports show them.
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::member::{Member, NodeName};
    use crate::membership::State;

    #[test]
    fn a_member_is_reported_with_its_state_and_when_it_was_last_heard() {
        let member = Member {
            name: NodeName::new("a").unwrap(),
            incarnation: 1,
            started_at: 2,
            gossip_addr: "a:1".into(),
            http_addr: "a:2".into(),
        };
        for state in State::ALL {
            let view = MemberView {
                member: &member,
                liveness: 0,
                state,
                since: Duration::ZERO,
                is_self: false,
            };
            let m = MemberStatus::new(&view, Some(7));
            assert_eq!(m.state, state.name());
            assert!(MEMBER_STATES.contains(&m.state));
            assert_eq!(
                (m.http_addr.as_deref(), m.last_heard_ms_ago),
                (Some("a:2"), Some(7))
            );
        }
    }
}
