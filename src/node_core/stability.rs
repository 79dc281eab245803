//! When this node may resolve one of its acceptances of an idempotency key (see
//! `crdt::keyed`): fold it into its totals if it won the key, pass over it if it lost.
//!
//! A key is *stable* here when no acceptance of it this node lacks can still exist: every
//! member's last digest shows it holding every acceptance this node holds, and this node
//! holds that member's own writes up to that digest. A member that knew the key would
//! not accept it again, and any acceptance it made before knowing it is among the writes
//! this node holds, so every acceptance is here. Members count whatever their state
//! (alive, suspect, dead or left): a partitioned member could have accepted the key on
//! its side, so a dead one holds folding back until membership reaps it. A member gone
//! for good therefore delays folds by the reap time, never forever; keys stay counted,
//! by acceptance, meanwhile.
//!
//! Then the acceptance by the smallest origin wins and is folded by its acceptor; a
//! loser passes over its own once the winner's is resolved (or at once when the winner
//! is gone for good: its node reaped, or writing under a new incarnation since), so the
//! first acceptance of a key ever resolved is always its winner's: an acceptance made
//! late by a node that had not caught up loses to it. A winner gone for good never
//! folds; its key stays counted by acceptance.

use crate::crdt::{Origin, PendingKey, Resolution, State};
use crate::engine::Engine;
use crate::member::NodeName;
use std::collections::HashMap;

/// A member as the view sees it: its name, the incarnation it writes under (when
/// known) and its last digest (`None` if none came yet).
struct MemberDigest<'a> {
    name: &'a NodeName,
    incarnation: Option<u64>,
    digest: Option<&'a HashMap<Origin, u64>>,
}

/// What this node knows of the cluster, for one round of decisions.
pub struct StabilityView<'a> {
    me: &'a Origin,
    state: &'a State,
    /// Every member but this node.
    members: Vec<MemberDigest<'a>>,
}

impl<'a> StabilityView<'a> {
    /// The view from `engine` (this node's state and its peers' digests) over
    /// `members`, each with the incarnation it writes under if known.
    pub fn new(engine: &'a Engine, members: Vec<(&'a NodeName, Option<u64>)>) -> Self {
        StabilityView {
            me: engine.origin(),
            state: engine.state(),
            members: members
                .into_iter()
                .filter(|(name, _)| name.as_str() != engine.origin().node)
                .map(|(name, incarnation)| MemberDigest {
                    name,
                    incarnation,
                    digest: engine.peer_digest(name),
                })
                .collect(),
        }
    }

    /// How this node may resolve its acceptance of `key`.
    pub fn decide(&self, key: &PendingKey) -> Resolution {
        if key.resolved_elsewhere {
            return Resolution::Pass;
        }
        if !self.is_stable(&key.acceptances) {
            return Resolution::Wait;
        }
        if key.winner == self.me {
            Resolution::Fold
        } else if self.is_gone(key.winner) {
            Resolution::Pass
        } else {
            Resolution::Wait
        }
    }

    fn is_stable(&self, acceptances: &[(&Origin, u64)]) -> bool {
        self.members.iter().all(|m| {
            let Some(digest) = m.digest else {
                return false;
            };
            let holds_key = acceptances
                .iter()
                .all(|(origin, version)| digest.get(*origin).is_some_and(|v| v >= version));
            // Every write of the member up to its digest is here (any incarnation of it).
            let holds_its_writes = digest
                .iter()
                .filter(|(origin, _)| origin.node == m.name.as_str())
                .all(|(origin, &version)| self.state.known(origin) >= version);
            holds_key && holds_its_writes
        })
    }

    /// Whether `origin` will never write again: its node is no member (reaped, or
    /// never known), or writes under another incarnation now.
    fn is_gone(&self, origin: &Origin) -> bool {
        !self.members.iter().any(|m| {
            m.name.as_str() == origin.node && m.incarnation.is_none_or(|i| i == origin.incarnation)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Frame;
    use crate::crdt::OriginVersion;
    use crate::crdt::{CounterEntry, KeyAccept, Keyed, OpKind, OriginDelta};
    use crate::engine::Config;
    use std::time::Duration;

    fn accepted(origin: &Origin, key: &str) -> OriginDelta {
        let mut entry = CounterEntry::plain("c", 0, 0, 1);
        entry.keyed = Some(Box::new(Keyed::Accept(KeyAccept {
            key: key.into(),
            kind: OpKind::Increment,
            amount: 5,
            at_ms: 0,
        })));
        OriginDelta {
            origin: origin.clone(),
            from: 0,
            to: 1,
            entries: vec![entry],
        }
    }

    fn digest(pairs: &[(&Origin, u64)]) -> Frame {
        Frame::Syn {
            digest: pairs
                .iter()
                .map(|(o, v)| OriginVersion {
                    origin: (*o).clone(),
                    version: *v,
                })
                .collect(),
        }
    }

    fn name(n: &str) -> NodeName {
        NodeName::new(n).unwrap()
    }

    #[test]
    fn a_key_is_stable_once_every_member_showed_it_and_its_writes_are_here() {
        let a = Origin::new("a", 1);
        let b = Origin::new("b", 1);
        let mut state = State::new();
        state.apply_delta(&accepted(&a, "k"));
        let mut engine = Engine::new(a.clone(), Config::default(), state, 1, Duration::ZERO);
        engine.set_peers([name("b")]);
        let b_name = name("b");
        let decide = |engine: &Engine| {
            let view = StabilityView::new(engine, vec![(&b_name, Some(1))]);
            let mut out = Vec::new();
            engine.state().plan_folds(&a, |k| {
                let r = view.decide(k);
                out.push(r);
                r
            });
            out
        };
        assert_eq!(
            decide(&engine),
            vec![Resolution::Wait],
            "no digest from b yet"
        );
        engine.handle_frame(Duration::ZERO, &b_name, digest(&[(&a, 0)]));
        assert_eq!(
            decide(&engine),
            vec![Resolution::Wait],
            "b does not hold the key"
        );
        engine.handle_frame(Duration::ZERO, &b_name, digest(&[(&a, 1), (&b, 3)]));
        assert_eq!(
            decide(&engine),
            vec![Resolution::Wait],
            "b wrote up to 3, which this node lacks: b may have accepted the key too"
        );
        engine.handle_frame(Duration::ZERO, &b_name, digest(&[(&a, 1), (&b, 0)]));
        assert_eq!(decide(&engine), vec![Resolution::Fold]);
    }

    #[test]
    fn a_loser_passes_when_the_winner_writes_under_a_new_incarnation_since() {
        let old_b = Origin::new("b", 1);
        let c = Origin::new("c", 1);
        let mut state = State::new();
        state.apply_delta(&accepted(&old_b, "k"));
        state.apply_delta(&accepted(&c, "k"));
        let mut engine = Engine::new(c.clone(), Config::default(), state, 1, Duration::ZERO);
        let b_name = name("b");
        engine.set_peers([name("b")]);
        engine.handle_frame(Duration::ZERO, &b_name, digest(&[(&old_b, 1), (&c, 1)]));
        let decisions = |incarnation: u64| {
            let view = StabilityView::new(&engine, vec![(&b_name, Some(incarnation))]);
            let key = engine.state().plan_folds(&c, |k| {
                assert_eq!(k.winner, &old_b);
                view.decide(k)
            });
            key.len()
        };
        assert_eq!(decisions(1), 0, "the winner b/1 may still fold: wait");
        assert_eq!(
            decisions(2),
            1,
            "b writes as b/2 now: b/1 never folds, so pass"
        );
    }
}
