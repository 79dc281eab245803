//! A member's record and the one order that decides between two records of one name.
//!
//! A record ([`Update`]) is what travels: who the member is (its [`Member`] identity and
//! addresses), the liveness counter it alone raises to refute suspicion, its state, and
//! who declared that state. Every node applies the same total order ([`Update::key`]),
//! so any two nodes holding the same records hold the same view, whatever order the
//! records came in, and no pair of records can make a node flap between them.

use crate::member::NodeName;
pub use crate::member::{Member, Run};
use std::time::Duration;

/// A member's state. The declaration order is the precedence at equal liveness:
/// `Left` > `Dead` > `Suspect` > `Alive`, as in SWIM.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    Alive,
    Suspect,
    Dead,
    Left,
}

impl State {
    pub const ALL: [State; 4] = [State::Alive, State::Suspect, State::Dead, State::Left];

    pub const fn name(self) -> &'static str {
        match self {
            State::Alive => "alive",
            State::Suspect => "suspect",
            State::Dead => "dead",
            State::Left => "left",
        }
    }

    /// Alive and suspect members are in the cluster: probed, gossiped to.
    pub fn is_live(self) -> bool {
        matches!(self, State::Alive | State::Suspect)
    }

    /// Dead and left members are tombstones until reaped.
    pub fn is_tombstone(self) -> bool {
        !self.is_live()
    }
}

/// A member record as it travels: the unit of piggybacked gossip and of the full
/// exchange.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    pub member: Member,
    /// Raised only by the member itself to refute a suspect or dead claim (and by an
    /// operator's removal, which must win over a concurrent refutation).
    pub liveness: u64,
    pub state: State,
    /// The node that declared this state: the member itself for alive (and for a clean
    /// leave), the suspecting node for suspect — distinct declarers of one suspicion are
    /// the independent confirmations that shorten its timeout — the node whose timer
    /// expired for dead, the operator's node for a removal.
    pub by: NodeName,
}

/// The precedence key of a record: the run first, then liveness, then state.
pub type Key = (Run, u64, State);

impl Update {
    /// The order between two records of one name:
    ///
    /// 1. the later run wins (`started_at`, then `incarnation` to break a tie), whatever
    ///    the liveness or state: a restarted node replaces its old entry at once;
    /// 2. within one run, the higher liveness wins: a refutation beats the claim it
    ///    answers;
    /// 3. at equal liveness, the stronger state wins: left > dead > suspect > alive.
    ///
    /// Records with equal keys are the same news (a suspicion's declarer aside), and the
    /// one held is kept. The order is total and fixed, so views converge and never flap.
    pub fn key(&self) -> Key {
        (self.member.run(), self.liveness, self.state)
    }

    /// Whether this record replaces `other` (a record of the same name).
    pub fn supersedes(&self, other: &Update) -> bool {
        self.key() > other.key()
    }

    /// This record's share of the membership digest: a 64-bit hash of (name, data
    /// incarnation, run start, liveness, state). The digest is the XOR of every held
    /// record's share, so it is kept up to date in O(1) per change and does not depend
    /// on the order records were learned in.
    pub fn digest_share(&self) -> u64 {
        let mut h = Fnv::new();
        h.write(self.member.name.as_str().as_bytes());
        h.write(&[0xff]);
        h.write(&self.member.incarnation.to_be_bytes());
        h.write(&self.member.started_at.to_be_bytes());
        h.write(&self.liveness.to_be_bytes());
        h.write(&[self.state as u8]);
        mix(h.0)
    }
}

/// FNV-1a, 64-bit: a fixed, portable hash, so nodes built by different compilers agree
/// on digests (std's hasher may change between Rust releases).
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= b as u64;
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// The splitmix64 finaliser: spreads FNV's weak high bits so XORed shares stay distinct.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A member as a node sees it, for listings: the record, its state and since when (on
/// this node's clock).
#[derive(Clone, Copy, Debug)]
pub struct MemberView<'a> {
    pub member: &'a Member,
    pub liveness: u64,
    pub state: State,
    /// When this node last saw the member's state or run change.
    pub since: Duration,
    /// Whether this is the node itself.
    pub is_self: bool,
}

/// One change in a node's view, reported once: for logs, the API and the engine's peer
/// set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberChange {
    /// The record after the change (for a forgotten member, its last record).
    pub member: Member,
    /// The state before; `None` when the member was not known.
    pub from: Option<State>,
    /// The state after; `None` when its tombstone was reaped and it is forgotten.
    pub to: Option<State>,
    /// The member restarted: its run (data incarnation or start stamp) changed.
    pub new_run: bool,
    /// Who declared the new state.
    pub by: NodeName,
}
