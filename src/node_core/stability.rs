//! When this node may resolve one of its acceptances of an idempotency key (see
//! `crdt::keyed`): fold it into its totals if it won the key, pass over it if it lost.
//!
//! A key is *stable* here when no acceptance of it this node lacks can still exist: every
//! member's last digest shows it holding every acceptance this node holds, and this node
//! holds everything that digest shows. A member that knew the key would not accept it
//! again, and any acceptance it made before knowing it, or held from a node this one
//! does not know of, is among what this node holds, so every acceptance is here. A node
//! resolves nothing until it knows every member: a member's full membership reached it
//! (or it runs alone). Members count whatever their state
//! (alive, suspect, dead or left): a partitioned member could have accepted the key on
//! its side, so a dead one holds folding back until membership reaps it. A member gone
//! for good therefore delays folds by the reap time, never forever; keys stay counted,
//! by acceptance, meanwhile.
//!
//! Then the acceptance by the smallest origin wins and is folded by its acceptor; a
//! loser passes over its own only once some acceptance of the key is resolved, so the
//! first acceptance of a key ever resolved is always a fold, by its winner: an acceptance
//! made late loses to it. A winner gone for good before folding never folds: its key
//! stays counted by acceptance, and its losers wait.

use crate::crdt::{Origin, PendingKey, Resolution, State};
use crate::engine::Engine;
use crate::member::NodeName;
use std::collections::HashMap;

/// What this node knows of the cluster, for one round of decisions.
pub struct StabilityView<'a> {
    me: &'a Origin,
    state: &'a State,
    /// Every member but this node, with its last digest (`None` if none came yet).
    members: Vec<Option<&'a HashMap<Origin, u64>>>,
}

impl<'a> StabilityView<'a> {
    /// The view from `engine` (this node's state and its peers' digests) over `members`.
    pub fn new(engine: &'a Engine, members: Vec<&'a NodeName>) -> Self {
        StabilityView {
            me: engine.origin(),
            state: engine.state(),
            members: members
                .into_iter()
                .filter(|name| name.as_str() != engine.origin().node)
                .map(|name| engine.peer_digest(name))
                .collect(),
        }
    }

    /// How this node may resolve its acceptance of `key`.
    pub fn decide(&self, key: &PendingKey) -> Resolution {
        if key.resolved_elsewhere {
            return Resolution::Pass;
        }
        if key.winner == self.me && self.is_stable(&key.acceptances) {
            Resolution::Fold
        } else {
            Resolution::Wait
        }
    }

    fn is_stable(&self, acceptances: &[(&Origin, u64)]) -> bool {
        self.members.iter().all(|digest| {
            let Some(digest) = digest else {
                return false;
            };
            let holds_key = acceptances
                .iter()
                .all(|(origin, version)| digest.get(*origin).is_some_and(|v| v >= version));
            holds_key
                && digest
                    .iter()
                    .all(|(origin, &version)| self.state.known(origin) >= version)
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

    /// What `engine`'s node decides for each of its unresolved acceptances, over
    /// `members`, in the order it meets them (stopping at the first wait).
    fn decisions(engine: &Engine, members: &[&NodeName]) -> Vec<Resolution> {
        let view = StabilityView::new(engine, members.to_vec());
        let mut out = Vec::new();
        engine.state().plan_folds(engine.origin(), |k| {
            let r = view.decide(k);
            out.push(r);
            r
        });
        out
    }

    /// A state holding an acceptance of key "k" (5 on counter "c") by each of `origins`.
    fn holding(origins: &[&Origin]) -> State {
        let mut state = State::new();
        for origin in origins {
            state.apply_delta(&accepted(origin, "k"));
        }
        state
    }

    /// The engine of `me` over `state`.
    fn engine(me: &Origin, state: State) -> Engine {
        Engine::new(me.clone(), Config::default(), state, 1, Duration::ZERO)
    }

    fn name(n: &str) -> NodeName {
        NodeName::new(n).unwrap()
    }

    #[test]
    fn a_key_is_stable_once_every_member_showed_it_and_its_writes_are_here() {
        let a = Origin::new("a", 1);
        let b = Origin::new("b", 1);
        let mut engine = engine(&a, holding(&[&a]));
        engine.set_peers([name("b")]);
        let b_name = name("b");
        let decide = |engine: &Engine| decisions(engine, &[&b_name]);
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
    fn a_loser_waits_until_the_winner_resolved_the_key_then_passes() {
        let a = Origin::new("a", 1);
        let c = Origin::new("c", 1);
        let mut engine = engine(&c, holding(&[&a, &c]));
        let a_name = name("a");
        engine.set_peers([name("a")]);
        engine.handle_frame(Duration::ZERO, &a_name, digest(&[(&a, 1), (&c, 1)]));
        let decide = |engine: &Engine| decisions(engine, &[&a_name]);
        assert_eq!(
            decide(&engine),
            vec![Resolution::Wait],
            "stable, but a has not folded"
        );
        let mut fold = CounterEntry::plain("c", 5, 0, 2);
        fold.keyed = Some(Box::new(Keyed::Folded(crate::crdt::Folded {
            p: 5,
            n: 0,
            through: 1,
        })));
        engine.handle_frame(
            Duration::ZERO,
            &a_name,
            Frame::Delta {
                delta: vec![OriginDelta {
                    origin: a.clone(),
                    from: 1,
                    to: 2,
                    entries: vec![fold],
                }],
            },
        );
        assert_eq!(decide(&engine), vec![Resolution::Pass]);
        assert_eq!(engine.state().value("c"), 5);
    }

    /// The winner `a` and the loser `b` both accepted `k`; `a` went down before folding
    /// and membership reaped it. `b` must not pass over its own acceptance then: were `a`
    /// to come back (on its WAL) and see a resolved acceptance of `k`, it would take it
    /// for the winner's fold and pass too, and `k` would count nowhere. So `b` waits;
    /// `a` back folds; then `b` passes, and `k` counts once throughout.
    #[test]
    fn a_loser_waits_for_a_winner_gone_from_its_members_and_passes_once_it_folds() {
        let a = Origin::new("a", 1);
        let b = Origin::new("b", 1);
        let a_name = name("a");
        let b_name = name("b");
        let both = holding(&[&a, &b]);
        let mut b_engine = engine(&b, both.clone());
        assert!(resolve(&mut b_engine, vec![]).is_empty(), "b waits for a");
        assert_eq!(b_engine.state().value("c"), 5, "a's acceptance counts k");

        let mut a_engine = engine(&a, both);
        a_engine.set_peers([b_name.clone()]);
        a_engine.handle_frame(Duration::ZERO, &b_name, digest(&[(&a, 1), (&b, 1)]));
        let folds = resolve(&mut a_engine, vec![&b_name]);
        assert_eq!((folds.len(), folds[0].folded), (1, 1), "a folds");
        let delta = a_engine.state().to_deltas();
        b_engine.handle_frame(Duration::ZERO, &a_name, Frame::Delta { delta });
        let folds = resolve(&mut b_engine, vec![&a_name]);
        assert_eq!((folds.len(), folds[0].folded), (1, 0), "b passes");
        let mut merged = b_engine.state().clone();
        for d in a_engine.state().to_deltas() {
            merged.apply_delta(&d);
        }
        assert_eq!((a_engine.state().value("c"), merged.value("c")), (5, 5));
        assert_eq!(merged.unresolved_acceptances(), 0);
    }

    /// Runs one round of decisions for `me` in `engine` over `members` and applies the
    /// batch; returns the folds made.
    fn resolve(engine: &mut Engine, members: Vec<&NodeName>) -> Vec<crate::crdt::Fold> {
        let me = engine.origin().clone();
        let folds = {
            let view = StabilityView::new(engine, members);
            engine.state().plan_folds(&me, |k| view.decide(k))
        };
        let batch = engine.prepare_local(&[], 0, &folds);
        engine.apply_local(Duration::ZERO, &batch);
        folds
    }

    /// `a` joined through another node; its acceptance of `k` reached `b` by gossip
    /// before SWIM told `b` about `a`. `b`, the loser, must not pass (`a` is not gone,
    /// only not yet a member here), or `a` would take that pass for a fold and pass too.
    #[test]
    fn a_winner_not_yet_in_the_losers_member_list_still_folds_and_counts_once() {
        let a = Origin::new("a", 1);
        let b = Origin::new("b", 1);
        let c = Origin::new("c", 1);
        let b_name = name("b");
        let c_name = name("c");
        let both = holding(&[&a, &b]);
        let mut b_engine = engine(&b, both.clone());
        b_engine.set_peers([c_name.clone()]);
        b_engine.handle_frame(
            Duration::ZERO,
            &c_name,
            digest(&[(&a, 1), (&b, 1), (&c, 0)]),
        );
        // b's membership knows c only.
        resolve(&mut b_engine, vec![&c_name]);
        assert_eq!(b_engine.state().value("c"), 5);

        let mut a_state = both;
        for d in b_engine.state().to_deltas() {
            a_state.apply_delta(&d);
        }
        let mut a_engine = engine(&a, a_state);
        a_engine.set_peers([b_name.clone(), c_name.clone()]);
        a_engine.handle_frame(
            Duration::ZERO,
            &b_name,
            digest(&[(&a, 1), (&b, 2), (&c, 0)]),
        );
        a_engine.handle_frame(
            Duration::ZERO,
            &c_name,
            digest(&[(&a, 1), (&b, 2), (&c, 0)]),
        );
        resolve(&mut a_engine, vec![&b_name, &c_name]);
        let mut merged = b_engine.state().clone();
        for d in a_engine.state().to_deltas() {
            merged.apply_delta(&d);
        }
        assert_eq!(
            (a_engine.state().value("c"), merged.value("c")),
            (5, 5),
            "k counts once"
        );
    }
}
