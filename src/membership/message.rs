//! What members say to each other, and which lane each message takes.
//!
//! Probe-lane messages (everything but `Full` and `Announce`) are small, loss-tolerant
//! and time-critical: the runtime sends them as single UDP datagrams, each at most
//! [`MAX_PROBE_BYTES`] encoded (the piggyback budget keeps them there). `Full` (a whole
//! membership) and `Announce` (a leave or removal, which must not be lost) take the
//! reliable lane (TCP). Every probe-lane message piggybacks membership changes.

use super::member::Update;
use crate::member::NodeName;

/// The largest encoded probe-lane message: with the runtime's frame header and an AEAD
/// tag it still fits one 1500-byte-MTU UDP datagram (1472 bytes of payload).
pub const MAX_PROBE_BYTES: usize = 1400;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A probe. `target` is the name the sender expects at this address: a different
    /// node answering from a reused address must not keep an old member alive.
    Ping {
        seq: u64,
        from: NodeName,
        target: NodeName,
        updates: Vec<Update>,
    },
    /// The answer to a ping, or an indirect prober passing on the target's answer.
    Ack {
        seq: u64,
        from: NodeName,
        updates: Vec<Update>,
    },
    /// Asks the receiver to probe `target` at `target_addr` and pass the ack on.
    PingReq {
        seq: u64,
        from: NodeName,
        target: NodeName,
        target_addr: String,
        updates: Vec<Update>,
    },
    /// From an indirect prober (Lifeguard): the target did not answer me in time, but
    /// I got your request. A missing nack hints that the requester itself is the problem.
    Nack {
        seq: u64,
        from: NodeName,
        updates: Vec<Update>,
    },
    /// Changes to spread, sent when a node has news and nothing else to carry them.
    Gossip {
        from: NodeName,
        updates: Vec<Update>,
    },
    /// The sender's membership digest; a receiver holding a different one starts a full
    /// exchange. Also how a node contacts seeds and dead members.
    Sync {
        from: NodeName,
        digest: u64,
        updates: Vec<Update>,
    },
    /// Changes that must arrive (a leave, a removal), on the reliable lane.
    Announce {
        from: NodeName,
        updates: Vec<Update>,
    },
    /// A whole membership, on the reliable lane: a join (from a new node, `want_reply`
    /// set) or either half of a full exchange.
    Full {
        from: NodeName,
        want_reply: bool,
        members: Vec<Update>,
    },
}

impl Message {
    /// Whether the message takes the probe lane (UDP); otherwise the reliable lane.
    pub fn is_probe(&self) -> bool {
        !matches!(self, Message::Full { .. } | Message::Announce { .. })
    }

    /// The sender's name.
    pub fn from(&self) -> &NodeName {
        match self {
            Message::Ping { from, .. }
            | Message::Ack { from, .. }
            | Message::PingReq { from, .. }
            | Message::Nack { from, .. }
            | Message::Gossip { from, .. }
            | Message::Sync { from, .. }
            | Message::Announce { from, .. }
            | Message::Full { from, .. } => from,
        }
    }

    /// The records the message carries: piggybacked changes, or a whole membership.
    pub fn updates(&self) -> &[Update] {
        match self {
            Message::Ping { updates, .. }
            | Message::Ack { updates, .. }
            | Message::PingReq { updates, .. }
            | Message::Nack { updates, .. }
            | Message::Gossip { updates, .. }
            | Message::Sync { updates, .. }
            | Message::Announce { updates, .. } => updates,
            Message::Full { members, .. } => members,
        }
    }

    pub(crate) fn updates_mut(&mut self) -> &mut Vec<Update> {
        match self {
            Message::Ping { updates, .. }
            | Message::Ack { updates, .. }
            | Message::PingReq { updates, .. }
            | Message::Nack { updates, .. }
            | Message::Gossip { updates, .. }
            | Message::Sync { updates, .. }
            | Message::Announce { updates, .. } => updates,
            Message::Full { members, .. } => members,
        }
    }

    /// A short name for logs and per-kind figures.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Ping { .. } => "ping",
            Message::Ack { .. } => "ack",
            Message::PingReq { .. } => "ping_req",
            Message::Nack { .. } => "nack",
            Message::Gossip { .. } => "gossip",
            Message::Sync { .. } => "sync",
            Message::Announce { .. } => "announce",
            Message::Full { .. } => "full",
        }
    }
}
