//! The queue of membership changes waiting to be piggybacked, with bounded retransmits.
//!
//! Each change is sent a bounded number of times (about λ·log n, from the config), then
//! dropped: infection-style spread reaches everyone with high probability in that many
//! rounds, and the full exchange repairs the rest. One entry per member: a newer change
//! about a member replaces the queued one, so stale news is never sent. Picking order:
//! least-sent first, then newest first, so fresh news overtakes news already spread.

use super::member::Update;
use super::wire;
use crate::member::NodeName;
use std::cmp::Reverse;
use std::collections::BTreeMap;

/// Records that did not fit the budget, after which a pick stops looking: records are
/// of similar sizes, so scanning a long queue for a small one would cost more than the
/// few bytes it could save.
const MAX_MISFITS: usize = 8;

/// Picking order: fewer sends first, then the most recently queued.
type Rank = (u32, Reverse<u64>);

#[derive(Debug, Default)]
pub struct Broadcasts {
    queue: BTreeMap<Rank, Update>,
    rank_of: BTreeMap<NodeName, Rank>,
    next_id: u64,
}

impl Broadcasts {
    /// Queues `update` with no sends yet, replacing whatever was queued about its member.
    pub fn push(&mut self, update: Update) {
        self.remove(&update.member.name);
        self.next_id += 1;
        let rank = (0, Reverse(self.next_id));
        self.rank_of.insert(update.member.name.clone(), rank);
        self.queue.insert(rank, update);
    }

    /// Drops whatever is queued about `name`.
    pub fn remove(&mut self, name: &NodeName) {
        if let Some(rank) = self.rank_of.remove(name) {
            self.queue.remove(&rank);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn contains(&self, name: &NodeName) -> bool {
        self.rank_of.contains_key(name)
    }

    /// Takes the updates to send in one message: in picking order, each whose encoding
    /// fits what is left of `budget` bytes (until [`MAX_MISFITS`] have not). Each taken update counts one send and is
    /// dropped once it has been sent `limit` times.
    pub fn take(&mut self, budget: usize, limit: u32) -> Vec<Update> {
        let mut left = budget;
        let mut picked = Vec::new();
        let mut misfits = 0;
        for (rank, update) in &self.queue {
            if left < wire::MIN_UPDATE_LEN || misfits == MAX_MISFITS {
                break;
            }
            let len = wire::update_len(update);
            if len <= left {
                left -= len;
                picked.push(*rank);
            } else {
                misfits += 1;
            }
        }
        let mut out = Vec::with_capacity(picked.len());
        for rank in picked {
            let update = self.queue.remove(&rank).expect("picked from the queue");
            let sends = rank.0 + 1;
            if sends < limit {
                let next = (sends, rank.1);
                self.rank_of.insert(update.member.name.clone(), next);
                self.queue.insert(next, update.clone());
            } else {
                self.rank_of.remove(&update.member.name);
            }
            out.push(update);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::membership::member::{Member, State};

    fn update(name: &str, liveness: u64) -> Update {
        let name = NodeName::new(name).expect("a valid name");
        Update {
            member: Member {
                name: name.clone(),
                incarnation: 7,
                started_at: 1,
                gossip_addr: "10.0.0.1:7000".into(),
                http_addr: "10.0.0.1:8000".into(),
            },
            liveness,
            state: State::Alive,
            by: name,
        }
    }

    fn names(v: &[Update]) -> Vec<&str> {
        v.iter().map(|u| u.member.name.as_str()).collect()
    }

    #[test]
    fn least_sent_then_newest_first_and_dropped_after_the_limit() {
        let mut q = Broadcasts::default();
        q.push(update("a", 0));
        q.push(update("b", 0));
        assert_eq!(names(&q.take(10_000, 2)), ["b", "a"], "newest first");
        q.push(update("c", 0));
        assert_eq!(
            names(&q.take(10_000, 2)),
            ["c", "b", "a"],
            "least sent first"
        );
        assert_eq!(
            names(&q.take(10_000, 2)),
            ["c"],
            "a and b reached the limit"
        );
        assert!(q.is_empty());
    }

    #[test]
    fn a_newer_change_replaces_the_queued_one_and_the_budget_is_kept() {
        let mut q = Broadcasts::default();
        q.push(update("a", 0));
        q.push(update("a", 1));
        assert_eq!(q.len(), 1);
        let one = wire::update_len(&update("a", 1));
        q.push(update("b", 0));
        let got = q.take(one + one / 2, 5);
        assert_eq!(got.len(), 1, "only one update fits the budget");
        assert_eq!(got[0].member.name, "b");
        let got = q.take(one, 5);
        assert_eq!(got, [update("a", 1)], "the queued change is the newer one");
        assert!(q.take(wire::MIN_UPDATE_LEN - 1, 5).is_empty());
    }
}
