//! Replication progress: how far each peer is behind this node's own writes, as the
//! peer's latest digest shows. I/O-free like the engine that drives it: the engine
//! reports each own write and each peer digest (Syn, SynAck), with the current time.
//!
//! Per peer it keeps the version of this node's origin that the peer's last digest
//! held. Versions behind are this node's own version minus that. Time behind is the age
//! of the oldest own write the peer lacked: for that the tracker keeps a history of own
//! writes (version reached, time), pruned of what every tracked peer already holds.
//! When the history outgrows [`MAX_WRITES`] it is coarsened (neighbouring writes merged,
//! the earlier time kept), so a peer behind for a long time under heavy writes is
//! reported a little earlier than exact, never later. A peer lacking writes the history
//! no longer has (one that appeared after every other peer held them) is reported
//! behind at least since the newest write pruned; one lacking writes from before this
//! run, at least since the run started (time zero).

use crate::member::NodeName;
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// Own writes the history keeps before it is coarsened.
pub const MAX_WRITES: usize = 4096;

#[derive(Debug, Default)]
pub struct ReplicationTracker {
    peers: BTreeMap<NodeName, PeerProgress>,
    /// Own writes, oldest first: the origin's version once the write was applied, and
    /// when. Versions and times both ascend.
    writes: VecDeque<(u64, Duration)>,
    /// The newest write pruned from the history (every tracked peer held it then).
    pruned: Option<(u64, Duration)>,
}

#[derive(Clone, Copy, Debug)]
struct PeerProgress {
    /// This node's origin version in the peer's last digest.
    holds: u64,
    digest_at: Duration,
    /// When a digest last showed the peer holding everything this node had written.
    caught_up_at: Option<Duration>,
}

/// One peer's progress as reports show it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerLag {
    pub peer: NodeName,
    /// This node's own version minus the version the peer's last digest held.
    pub versions_behind: u64,
    /// Age of the oldest own write the peer's last digest lacked; zero when it lacked
    /// none.
    pub behind_for: Duration,
    /// Time since the peer's last digest arrived.
    pub digest_age: Duration,
    /// Time since a digest last showed the peer holding every own write; `None` if
    /// none ever did.
    pub caught_up_ago: Option<Duration>,
}

impl ReplicationTracker {
    /// An own write was applied at `now`; the origin is now at `version`.
    pub fn wrote(&mut self, now: Duration, version: u64) {
        self.writes.push_back((version, now));
        if self.writes.len() > MAX_WRITES {
            self.coarsen();
        }
    }

    /// A digest from `peer` arrived at `now`, holding this node's origin up to `holds`;
    /// this node's origin is at `own`.
    pub fn saw_digest(&mut self, now: Duration, peer: &NodeName, holds: u64, own: u64) {
        let progress = self.peers.entry(peer.clone()).or_insert(PeerProgress {
            holds,
            digest_at: now,
            caught_up_at: None,
        });
        progress.holds = holds;
        progress.digest_at = now;
        if holds >= own {
            progress.caught_up_at = Some(now);
        }
        self.prune();
    }

    /// Stops tracking `peer` (it left the peer set).
    pub fn forget(&mut self, peer: &NodeName) {
        self.peers.remove(peer);
        self.prune();
    }

    /// Keeps only the peers `keep` says to keep.
    pub fn retain(&mut self, mut keep: impl FnMut(&NodeName) -> bool) {
        self.peers.retain(|p, _| keep(p));
        self.prune();
    }

    /// Every tracked peer's progress at `now`, by name; this node's origin is at `own`.
    pub fn lags(&self, now: Duration, own: u64) -> Vec<PeerLag> {
        self.peers
            .iter()
            .map(|(peer, p)| PeerLag {
                peer: peer.clone(),
                versions_behind: own.saturating_sub(p.holds),
                behind_for: if p.holds >= own {
                    Duration::ZERO
                } else {
                    now.saturating_sub(self.first_write_after(p.holds))
                },
                digest_age: now.saturating_sub(p.digest_at),
                caught_up_ago: p.caught_up_at.map(|t| now.saturating_sub(t)),
            })
            .collect()
    }

    /// When the first write above `version` was applied, as far as the history knows.
    fn first_write_after(&self, version: u64) -> Duration {
        match self.pruned {
            // That write was pruned: it is no newer than the newest pruned one.
            Some((pruned_version, pruned_at)) if version < pruned_version => pruned_at,
            _ => {
                let at = self.writes.partition_point(|(v, _)| *v <= version);
                // Not in the history at all: written before this run started (the
                // state was recovered with it), so behind at least since the start.
                self.writes.get(at).map_or(Duration::ZERO, |(_, t)| *t)
            }
        }
    }

    /// Drops the writes every tracked peer holds.
    fn prune(&mut self) {
        let Some(min) = self.peers.values().map(|p| p.holds).min() else {
            return;
        };
        while let Some(&(version, at)) = self.writes.front() {
            if version > min {
                break;
            }
            self.pruned = Some((version, at));
            self.writes.pop_front();
        }
    }

    /// Halves the history: each pair of neighbouring writes becomes one with the later
    /// version and the earlier time, so a lookup can only err towards "behind longer".
    fn coarsen(&mut self) {
        let writes: Vec<(u64, Duration)> = self.writes.drain(..).collect();
        self.writes = writes
            .chunks(2)
            .map(|pair| (pair[pair.len() - 1].0, pair[0].1))
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn name(s: &str) -> NodeName {
        NodeName::new(s).unwrap()
    }

    fn lag_of(t: &ReplicationTracker, now: Duration, own: u64, peer: &str) -> PeerLag {
        t.lags(now, own)
            .into_iter()
            .find(|l| l.peer.as_str() == peer)
            .expect("tracked")
    }

    #[test]
    fn a_peer_behind_is_behind_since_the_oldest_write_it_lacks() {
        let mut t = ReplicationTracker::default();
        t.wrote(ms(100), 1);
        t.wrote(ms(200), 3);
        t.wrote(ms(300), 4);
        t.saw_digest(ms(310), &name("b"), 1, 4);
        let lag = lag_of(&t, ms(400), 4, "b");
        assert_eq!(lag.versions_behind, 3);
        assert_eq!(
            lag.behind_for,
            ms(200),
            "lacks version 2, written at 200 ms"
        );
        assert_eq!(lag.digest_age, ms(90));
        assert_eq!(lag.caught_up_ago, None);

        t.saw_digest(ms(450), &name("b"), 4, 4);
        let lag = lag_of(&t, ms(500), 4, "b");
        assert_eq!(
            (lag.versions_behind, lag.behind_for, lag.caught_up_ago),
            (0, Duration::ZERO, Some(ms(50)))
        );
    }

    #[test]
    fn history_is_pruned_to_what_some_peer_lacks() {
        let mut t = ReplicationTracker::default();
        for v in 1..=10 {
            t.wrote(ms(v * 10), v);
        }
        t.saw_digest(ms(200), &name("c"), 6, 10);
        t.saw_digest(ms(200), &name("b"), 10, 10);
        assert_eq!(t.writes.front(), Some(&(7, ms(70))));
        assert_eq!(lag_of(&t, ms(300), 10, "c").behind_for, ms(230));
        t.forget(&name("c"));
        assert!(t.writes.is_empty());
        // A peer that appears lacking pruned writes is behind at least since the newest
        // pruned one.
        t.saw_digest(ms(400), &name("d"), 2, 10);
        assert_eq!(lag_of(&t, ms(500), 10, "d").behind_for, ms(400));
    }

    #[test]
    fn a_long_history_is_coarsened_towards_behind_longer() {
        let mut t = ReplicationTracker::default();
        t.saw_digest(ms(0), &name("b"), 0, 0);
        for v in 1..=(MAX_WRITES as u64 * 3) {
            t.wrote(ms(v), v);
        }
        assert!(t.writes.len() <= MAX_WRITES);
        let own = MAX_WRITES as u64 * 3;
        // Exactly behind since version 1 (written at 1 ms).
        assert_eq!(lag_of(&t, ms(own + 1), own, "b").behind_for, ms(own));
        // Lacking version 5001 onwards: reported at most a few writes early, never late.
        t.saw_digest(ms(own), &name("b"), 5000, own);
        let behind = lag_of(&t, ms(own + 1), own, "b").behind_for;
        let exact = ms(own + 1) - ms(5001);
        assert!(
            behind >= exact && behind <= exact + ms(8),
            "{behind:?} vs {exact:?}"
        );
    }
}
