//! Compacting retired origins: a tombstone kept for good costs what the origin's live
//! entries did, so after a while (the node core decides when) a retired origin keeps only
//! its name and the version `V` it retired at, and its totals move into each counter's
//! *compacted sum*. Values never change.
//!
//! A compacted origin's entries are gone, so a replica that lacks some of them (a node
//! that joins later, one away for long) cannot be sent them: it *adopts* a peer's
//! compaction instead — the peer's compacted origins with their versions and its
//! compacted sums, taken whole. Adopting is exact only when it cannot count an origin
//! twice or miss one: every origin this replica compacted the peer compacted too, at the
//! same version (then the peer's sums are this replica's plus the totals of the origins
//! it adds), and of each origin it adds this replica holds nothing past `V` and no
//! acceptance of a key (keys of an origin are resolved and expired before it retires, so
//! one held here is a stale copy). It then drops what it held of those origins and takes
//! the peer's sums. Otherwise it refuses, changing nothing, and says why.
//!
//! A change of a compacted origin at or below `V` is held already and dropped; one past
//! `V` cannot be merged (the entries it would join are gone) and is refused and counted:
//! the origin was taken for gone for longer than compaction waits.

use super::table::CounterId;
use super::{Item, Origin, OriginVersion, State};
use std::collections::BTreeMap;
use std::fmt;

/// A replica's compacted origins and sums, as a peer adopts them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Compaction {
    /// In origin order.
    pub origins: Vec<OriginVersion>,
    /// In counter-name order; counters whose sums are zero are left out.
    pub sums: Vec<CompactedSum>,
}

/// One counter's compacted sum: the increments and decrements of the compacted origins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompactedSum {
    pub counter: String,
    pub p: u128,
    pub n: u128,
}

/// Why a replica did not adopt a peer's compaction; nothing changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AdoptRefusal {
    /// This replica compacted `origin` at `here`, the peer did not (or at another version).
    NotCompactedThere {
        origin: Origin,
        here: u64,
        there: Option<u64>,
    },
    /// This replica holds changes of `origin` past the version the peer compacted it at.
    HeldPast {
        origin: Origin,
        held: u64,
        version: u64,
    },
    /// This replica holds an acceptance of a key by `origin`, not resolved into its totals.
    HoldsAcceptance { origin: Origin },
    /// This replica holds totals of `origin` merged without a version (a Maelstrom
    /// runtime's, or such a state's snapshot): it cannot tell what they cover.
    HoldsUnversioned { origin: Origin },
    /// The peer's sum of `counter` is below this replica's: the two cannot both be right.
    SumBelow { counter: String },
    /// The peer listed an origin or a counter twice, or out of order, or a sum larger
    /// than its origins could have made.
    Malformed,
}

impl fmt::Display for AdoptRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdoptRefusal::NotCompactedThere {
                origin,
                here,
                there: Some(there),
            } => write!(
                f,
                "origin {origin} is compacted here at version {here} and there at {there}"
            ),
            AdoptRefusal::NotCompactedThere { origin, here, .. } => write!(
                f,
                "origin {origin} is compacted here (at version {here}) and not there yet"
            ),
            AdoptRefusal::HeldPast {
                origin,
                held,
                version,
            } => write!(
                f,
                "this replica holds origin {origin} up to version {held}, past the {version} \
                 it was compacted at: it wrote after it was taken for gone"
            ),
            AdoptRefusal::HoldsAcceptance { origin } => write!(
                f,
                "this replica holds an unresolved acceptance of a key by origin {origin}"
            ),
            AdoptRefusal::HoldsUnversioned { origin } => write!(
                f,
                "this replica holds totals of origin {origin} merged without a version"
            ),
            AdoptRefusal::SumBelow { counter } => write!(
                f,
                "the compacted sum of counter {counter:?} there is below the one here"
            ),
            AdoptRefusal::Malformed => f.write_str(
                "origins or counters listed twice or out of order, or a sum more than \
                     its origins could make",
            ),
        }
    }
}

impl State {
    /// The version `origin` could be compacted at: the one it retired at, if it is
    /// retired and not compacted yet.
    pub fn compactable_at(&self, origin: &Origin) -> Option<u64> {
        let record = self.record(origin)?;
        let tombstone = record.retired.as_ref()?;
        (!tombstone.compacted).then_some(record.known)
    }

    /// Whether `origin` is compacted here.
    pub fn is_compacted(&self, origin: &Origin) -> bool {
        self.record(origin).is_some_and(|r| r.is_compacted())
    }

    /// Compacts `origin` if it is retired at `version` and not compacted yet; returns
    /// whether it did. Values do not change.
    pub fn compact(&mut self, origin: &Origin, version: u64) -> bool {
        if self.compactable_at(origin) != Some(version) {
            return false;
        }
        self.generation += 1;
        let id = self.origins[origin];
        let tombstone = self.origin_records[id as usize]
            .retired
            .as_mut()
            .expect("compactable means retired");
        let totals = std::mem::take(&mut tombstone.totals);
        tombstone.ledgers = Box::default();
        tombstone.compacted = true;
        for &(counter, t) in totals.iter() {
            let sum = self.compacted_mut(counter);
            sum.0 += u128::from(t.p);
            sum.1 += u128::from(t.n);
        }
        self.retirements.tombstone_entries -= totals.len();
        self.retirements.compacted += 1;
        true
    }

    /// This replica's compacted origins and sums.
    pub fn compaction(&self) -> Compaction {
        let origins = self
            .origins
            .iter()
            .filter(|(_, &id)| self.origin_records[id as usize].is_compacted())
            .map(|(origin, &id)| OriginVersion {
                origin: origin.clone(),
                version: self.origin_records[id as usize].known,
            })
            .collect();
        let mut sums: Vec<CompactedSum> = self
            .compacted
            .iter()
            .enumerate()
            .filter(|(_, &(p, n))| p > 0 || n > 0)
            .map(|(id, &(p, n))| CompactedSum {
                counter: self.counters.name(id as CounterId).to_owned(),
                p,
                n,
            })
            .collect();
        sums.sort_by(|a, b| a.counter.cmp(&b.counter));
        Compaction { origins, sums }
    }

    /// Adopts a peer's compaction (see the module comment); returns how many origins it
    /// compacted here that were not before. On a refusal nothing changes.
    pub fn adopt(&mut self, theirs: &Compaction) -> Result<usize, AdoptRefusal> {
        let (added, disjoint) = self.check_adoption(theirs)?;
        if added.is_empty() {
            return Ok(0);
        }
        self.generation += 1;
        for ov in &added {
            self.drop_for_compaction(ov);
        }
        let mut new_sums = vec![(0u128, 0u128); self.compacted.len()];
        for sum in &theirs.sums {
            let Some(id) = self.counters.id_or_insert(&sum.counter) else {
                continue;
            };
            let at = id as usize;
            if new_sums.len() <= at {
                new_sums.resize(at + 1, (0, 0));
            }
            new_sums[at] = (sum.p, sum.n);
        }
        if disjoint {
            // The peer's origins and this replica's: their totals add up.
            for (at, sum) in self.compacted.iter().enumerate() {
                new_sums[at].0 += sum.0;
                new_sums[at].1 += sum.1;
            }
        }
        for (at, &(p, n)) in new_sums.iter().enumerate() {
            let (old_p, old_n) = self.compacted.get(at).copied().unwrap_or_default();
            let base = self.base_mut(at as CounterId);
            base.0 = base.0 - old_p + p;
            base.1 = base.1 - old_n + n;
        }
        self.compacted = new_sums;
        self.retirements.compacted += added.len();
        self.retirements.adopted += added.len() as u64;
        Ok(added.len())
    }

    /// The origins `theirs` compacts that this replica does not, if it may adopt it, and
    /// whether the two compacted no origin in common (then the sums add up; otherwise
    /// every origin compacted here must be compacted there, and the peer's sums are
    /// taken as they are).
    fn check_adoption(
        &self,
        theirs: &Compaction,
    ) -> Result<(Vec<OriginVersion>, bool), AdoptRefusal> {
        let ordered = theirs.origins.windows(2).all(|w| w[0].origin < w[1].origin)
            && theirs.sums.windows(2).all(|w| w[0].counter < w[1].counter);
        // Each compacted origin adds at most MAX_TOTAL to a counter's sum: a sum past
        // that is not one, and keeps the arithmetic on sums far from overflowing.
        let most = theirs.origins.len() as u128 * u128::from(super::MAX_TOTAL);
        let bounded = theirs.sums.iter().all(|s| s.p <= most && s.n <= most);
        if !ordered || !bounded {
            return Err(AdoptRefusal::Malformed);
        }
        let there: BTreeMap<&Origin, u64> = theirs
            .origins
            .iter()
            .map(|ov| (&ov.origin, ov.version))
            .collect();
        let mine = self.compaction();
        let disjoint = mine
            .origins
            .iter()
            .all(|ov| !there.contains_key(&ov.origin));
        for ov in mine.origins.iter().filter(|_| !disjoint) {
            let version = there.get(&ov.origin).copied();
            if version != Some(ov.version) {
                return Err(AdoptRefusal::NotCompactedThere {
                    origin: ov.origin.clone(),
                    here: ov.version,
                    there: version,
                });
            }
        }
        let mut added = Vec::new();
        for ov in &theirs.origins {
            let Some(record) = self.record(&ov.origin) else {
                added.push(ov.clone());
                continue;
            };
            if record.is_compacted() {
                continue;
            }
            if record.top() > ov.version {
                return Err(AdoptRefusal::HeldPast {
                    origin: ov.origin.clone(),
                    held: record.top(),
                    version: ov.version,
                });
            }
            if record
                .by_version
                .values()
                .any(|i| matches!(i, Item::Accept(_)))
            {
                return Err(AdoptRefusal::HoldsAcceptance {
                    origin: ov.origin.clone(),
                });
            }
            let indexed = record
                .by_version
                .values()
                .filter(|i| matches!(i, Item::Totals(_)))
                .count();
            if indexed != record.slots as usize {
                return Err(AdoptRefusal::HoldsUnversioned {
                    origin: ov.origin.clone(),
                });
            }
            added.push(ov.clone());
        }
        let their_sums: BTreeMap<&str, (u128, u128)> = theirs
            .sums
            .iter()
            .map(|s| (s.counter.as_str(), (s.p, s.n)))
            .collect();
        for sum in mine.sums.iter().filter(|_| !disjoint) {
            let (p, n) = their_sums
                .get(sum.counter.as_str())
                .copied()
                .unwrap_or_default();
            if p < sum.p || n < sum.n {
                return Err(AdoptRefusal::SumBelow {
                    counter: sum.counter.clone(),
                });
            }
        }
        Ok((added, disjoint))
    }

    /// Drops what this replica holds of `ov.origin` (its live entries and fold ledgers,
    /// or its tombstone and the tombstone's part of the retired sums) and marks it
    /// compacted at `ov.version`; the adopted sums then count it.
    fn drop_for_compaction(&mut self, ov: &OriginVersion) {
        let id = self.origin_id(&ov.origin);
        let record = &mut self.origin_records[id as usize];
        let items = std::mem::take(&mut record.by_version);
        let tombstone = record.retired.take();
        let was_retired = tombstone.is_some();
        if let Some(tombstone) = tombstone {
            for &(counter, t) in tombstone.totals.iter() {
                let base = self.base_mut(counter);
                base.0 -= u128::from(t.p);
                base.1 -= u128::from(t.n);
            }
            self.retirements.tombstone_entries -= tombstone.totals.len();
        }
        for item in items.into_values() {
            if let Item::Totals(counter) = item {
                self.keys.take_ledger(counter, id);
                self.counters.remove(counter, id);
            }
        }
        self.logged_retirements.remove(&ov.origin);
        let record = &mut self.origin_records[id as usize];
        record.slots = 0;
        record.known = ov.version;
        record.retired = Some(Box::new(super::retire::Tombstone::compacted()));
        if !was_retired {
            self.retirements.retired += 1;
        }
    }

    /// A counter's compacted sums by id, grown as needed.
    fn compacted_mut(&mut self, counter: CounterId) -> &mut (u128, u128) {
        let at = counter as usize;
        if self.compacted.len() <= at {
            self.compacted.resize(at + 1, (0, 0));
        }
        &mut self.compacted[at]
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{dec, inc, values, writer};
    use super::super::{LocalOp, OriginDelta};
    use super::*;

    /// What a replica shows: values, digest and what it would send.
    fn view(state: &State) -> (Vec<(String, i64)>, Vec<OriginVersion>, Compaction) {
        (values(state), state.digest(), state.compaction())
    }

    /// A replica holding every delta of `gone` (retired and compacted at its last
    /// version) and of `live`, and those deltas.
    fn compacted_replica(
        gone: &Origin,
        live: &Origin,
    ) -> (State, Vec<OriginDelta>, Vec<OriginDelta>) {
        let (_, gone_deltas) = writer(gone, &[inc("x", 3), inc("y", 4), dec("x", 1), inc("x", 5)]);
        let (_, live_deltas) = writer(live, &[inc("x", 10), inc("z", 2)]);
        let mut state = State::new();
        for d in gone_deltas.iter().chain(&live_deltas) {
            state.apply_delta(d);
        }
        let v = state.retirable_at(gone).expect("retirable");
        assert!(state.retire(gone, v));
        assert_eq!(state.compactable_at(gone), Some(v));
        assert!(state.compact(gone, v));
        (state, gone_deltas, live_deltas)
    }

    #[test]
    fn compacting_keeps_values_and_digest_and_drops_the_tombstone_entries() {
        let (gone, live) = (Origin::new("gone", 1), Origin::new("live", 2));
        let (_, gone_deltas) = writer(&gone, &[inc("x", 3), inc("y", 4), dec("x", 1), inc("x", 5)]);
        let mut state = State::new();
        for d in &gone_deltas {
            state.apply_delta(d);
        }
        for d in writer(&live, &[inc("x", 10)]).1 {
            state.apply_delta(&d);
        }
        assert_eq!(state.compactable_at(&gone), None, "not retired yet");
        assert!(!state.compact(&gone, 4));
        assert!(state.retire(&gone, 4));
        let (values_before, digest_before) = (values(&state), state.digest());
        assert_eq!(state.retire_stats().tombstone_entries, 2);
        assert!(
            !state.compact(&gone, 3),
            "only at the version it retired at"
        );
        let generation = state.generation();
        assert!(state.compact(&gone, 4));
        assert!(
            state.generation() > generation,
            "what caches the state sees it changed"
        );
        assert!(!state.compact(&gone, 4), "once");
        assert!(state.is_compacted(&gone) && state.is_retired(&gone));
        assert_eq!(
            (values(&state), state.digest()),
            (values_before, digest_before)
        );
        let stats = state.retire_stats();
        assert_eq!(
            (stats.tombstone_entries, stats.compacted, stats.retired),
            (0, 1, 1)
        );
        assert!(
            state.entries_after(&gone, 0).is_empty(),
            "its entries are gone"
        );
        assert!(
            state.to_deltas().iter().all(|d| d.origin != gone),
            "no range a receiver would take as holding them"
        );
        assert_eq!(
            state.compaction(),
            Compaction {
                origins: vec![OriginVersion {
                    origin: gone.clone(),
                    version: 4
                }],
                sums: vec![
                    CompactedSum {
                        counter: "x".into(),
                        p: 8,
                        n: 1
                    },
                    CompactedSum {
                        counter: "y".into(),
                        p: 4,
                        n: 0
                    },
                ],
            }
        );
    }

    #[test]
    fn a_refusal_says_which_origin_or_counter_and_why() {
        let origin = Origin::new("gone", 3);
        let name = origin.to_string();
        for (refusal, says) in [
            (
                AdoptRefusal::NotCompactedThere {
                    origin: origin.clone(),
                    here: 7,
                    there: Some(5),
                },
                vec![name.as_str(), "7", "5"],
            ),
            (
                AdoptRefusal::NotCompactedThere {
                    origin: origin.clone(),
                    here: 7,
                    there: None,
                },
                vec![name.as_str(), "7", "not there"],
            ),
            (
                AdoptRefusal::HeldPast {
                    origin: origin.clone(),
                    held: 9,
                    version: 7,
                },
                vec![name.as_str(), "9", "7"],
            ),
            (
                AdoptRefusal::HoldsAcceptance {
                    origin: origin.clone(),
                },
                vec![name.as_str(), "acceptance"],
            ),
            (
                AdoptRefusal::HoldsUnversioned {
                    origin: origin.clone(),
                },
                vec![name.as_str(), "without a version"],
            ),
            (
                AdoptRefusal::SumBelow {
                    counter: "hits".into(),
                },
                vec!["\"hits\"", "below"],
            ),
            (AdoptRefusal::Malformed, vec!["twice", "out of order"]),
        ] {
            let text = refusal.to_string();
            for word in says {
                assert!(text.contains(word), "{refusal:?} says {text:?}");
            }
        }
    }

    #[test]
    fn a_compacted_origins_late_change_is_dropped_and_one_past_it_refused() {
        let (gone, live) = (Origin::new("gone", 1), Origin::new("live", 2));
        let (mut state, gone_deltas, _) = compacted_replica(&gone, &live);
        let before = view(&state);
        for d in gone_deltas.iter().rev() {
            assert_eq!(state.apply_delta(d), Default::default(), "held already");
        }
        assert_eq!(state.retire_stats().refused, 0);
        assert!(!state.merge_entry(
            &gone,
            "x",
            crate::crdt::Totals {
                p: 1,
                n: 0,
                version: 0
            }
        ));
        assert_eq!(
            state.retire_stats().refused,
            1,
            "whole totals cannot be checked"
        );
        let past = OriginDelta {
            origin: gone.clone(),
            from: 4,
            to: 5,
            entries: vec![crate::crdt::CounterEntry::plain("x", 9, 1, 5)],
        };
        assert_eq!(state.apply_delta(&past), Default::default());
        assert_eq!(state.retire_stats().refused, 2);
        assert!(state.is_compacted(&gone));
        assert_eq!(view(&state), before, "nothing changed");
    }

    #[test]
    fn a_newcomer_adopts_a_compaction_and_reads_what_the_peer_reads() {
        let (gone, live) = (Origin::new("gone", 1), Origin::new("live", 2));
        let (peer, gone_deltas, live_deltas) = compacted_replica(&gone, &live);
        // Newcomers holding none, some, or all of gone's entries (live or retired).
        for held in 0..=gone_deltas.len() {
            for retired in [false, true] {
                let mut newcomer = State::new();
                for d in live_deltas.iter().chain(&gone_deltas[..held]) {
                    newcomer.apply_delta(d);
                }
                if retired {
                    let Some(v) = newcomer.retirable_at(&gone) else {
                        continue;
                    };
                    assert!(newcomer.retire(&gone, v));
                }
                let generation = newcomer.generation();
                let stats = newcomer.retire_stats();
                assert_eq!(newcomer.adopt(&peer.compaction()), Ok(1), "held {held}");
                assert!(newcomer.generation() > generation, "held {held}");
                let after = newcomer.retire_stats();
                assert_eq!(
                    (after.compacted, after.adopted, after.retired),
                    (
                        stats.compacted + 1,
                        stats.adopted + 1,
                        stats.retired + usize::from(!retired)
                    ),
                    "held {held}, retired {retired}: one origin compacted, by adoption, retired"
                );
                assert_eq!(
                    view(&newcomer),
                    view(&peer),
                    "held {held}, retired {retired}"
                );
                assert_eq!(newcomer.entry_count(), peer.entry_count());
                assert_eq!(newcomer.retire_stats().tombstone_entries, 0);
                for d in &gone_deltas {
                    newcomer.apply_delta(d);
                }
                assert_eq!(view(&newcomer), view(&peer), "late copies dropped");
                assert_eq!(newcomer.adopt(&peer.compaction()), Ok(0), "adopted already");
                assert_eq!(view(&newcomer), view(&peer));
            }
        }
    }

    #[test]
    fn an_adoption_that_could_count_wrongly_is_refused_and_changes_nothing() {
        let (gone, live) = (Origin::new("gone", 1), Origin::new("live", 2));
        let (peer, gone_deltas, live_deltas) = compacted_replica(&gone, &live);
        let theirs = peer.compaction();
        let refused = |state: &mut State, theirs: &Compaction| {
            let before = view(state);
            let refusal = state.adopt(theirs).expect_err("refused");
            assert_eq!(view(state), before, "{refusal}");
            refusal
        };

        // It holds gone past the version compacted there.
        let mut ahead = State::new();
        for d in &gone_deltas {
            ahead.apply_delta(d);
        }
        let (_, more) = writer(&gone, &vec![inc("x", 1); 5]);
        ahead.apply_delta(&more[4]);
        assert!(matches!(
            refused(&mut ahead, &theirs),
            AdoptRefusal::HeldPast {
                held: 5,
                version: 4,
                ..
            }
        ));

        // It compacted an origin the peer has not, and one both did (so the sums
        // cannot be told apart).
        let (other, both) = (Origin::new("other", 3), Origin::new("both", 4));
        let mut own = State::new();
        for o in [&other, &both] {
            for d in writer(o, &[inc("x", 7)]).1 {
                own.apply_delta(&d);
            }
            assert!(own.retire(o, 1) && own.compact(o, 1));
        }
        let mut with_both = theirs.clone();
        with_both.origins.insert(
            0,
            OriginVersion {
                origin: both.clone(),
                version: 1,
            },
        );
        with_both.sums[0].p += 7;
        assert!(matches!(
            refused(&mut own, &with_both),
            AdoptRefusal::NotCompactedThere { there: None, .. }
        ));
        let mut at_another = with_both.clone();
        at_another.origins.push(OriginVersion {
            origin: other.clone(),
            version: 2,
        });
        assert!(matches!(
            refused(&mut own, &at_another),
            AdoptRefusal::NotCompactedThere { there: Some(2), .. }
        ));

        // Sums below its own, and lists out of order.
        let mut short = at_another.clone();
        short.origins[2].version = 1;
        short.sums.retain(|s| s.counter != "x");
        assert!(matches!(
            refused(&mut own, &short),
            AdoptRefusal::SumBelow { .. }
        ));
        let mut unordered = theirs.clone();
        unordered.sums.reverse();
        assert_eq!(
            refused(&mut State::new(), &unordered),
            AdoptRefusal::Malformed
        );

        // It holds an acceptance of a key by gone.
        let (_, keyed) = writer(
            &gone,
            &[LocalOp {
                key: Some("k".into()),
                ..inc("x", 2)
            }],
        );
        let mut accepting = State::new();
        for d in live_deltas.iter().chain(&keyed) {
            accepting.apply_delta(d);
        }
        assert!(matches!(
            refused(&mut accepting, &theirs),
            AdoptRefusal::HoldsAcceptance { .. }
        ));
    }

    /// Two replicas that compacted no origin in common (each lacked part of the other's:
    /// both sides of a long partition) adopt each other's: the sums add up, exactly.
    #[test]
    fn compactions_with_no_origin_in_common_add_up() {
        let (o1, o2) = (Origin::new("o1", 1), Origin::new("o2", 2));
        let (_, d1) = writer(&o1, &[inc("x", 3), inc("x", 4)]);
        let (_, d2) = writer(&o2, &[inc("x", 10), dec("y", 20)]);
        let (mut a, mut b) = (State::new(), State::new());
        for d in d1.iter().chain(&d2[..1]) {
            a.apply_delta(d);
        }
        for d in d2.iter().chain(&d1[..1]) {
            b.apply_delta(d);
        }
        assert!(a.retire(&o1, 2) && a.compact(&o1, 2));
        assert!(b.retire(&o2, 2) && b.compact(&o2, 2));
        let (from_a, from_b) = (a.compaction(), b.compaction());
        assert_eq!(a.adopt(&from_b), Ok(1));
        assert_eq!(b.adopt(&from_a), Ok(1));
        let want = vec![("x".to_owned(), 17), ("y".to_owned(), -20)];
        assert_eq!(values(&a), want);
        assert_eq!(view(&a), view(&b));
        assert_eq!(a.adopt(&b.compaction()), Ok(0), "nothing more");
    }

    /// Totals merged without a version (a Maelstrom runtime's) cannot be told covered
    /// by a compaction: refused, as such an origin cannot retire either.
    #[test]
    fn an_origin_held_without_versions_is_not_adopted() {
        let (gone, live) = (Origin::new("gone", 1), Origin::new("live", 2));
        let (peer, _, _) = compacted_replica(&gone, &live);
        let mut state = State::new();
        state.merge_entry(
            &gone,
            "x",
            crate::crdt::Totals {
                p: 8,
                n: 1,
                version: 0,
            },
        );
        let before = view(&state);
        assert!(matches!(
            state.adopt(&peer.compaction()),
            Err(AdoptRefusal::HoldsUnversioned { .. })
        ));
        assert_eq!(view(&state), before);
    }

    /// A sum more than its origins could have made is refused before any arithmetic.
    #[test]
    fn a_sum_past_what_its_origins_could_make_is_refused() {
        let gone = Origin::new("gone", 1);
        let mut state = State::new();
        for d in writer(&Origin::new("r", 2), &[inc("x", 3)]).1 {
            state.apply_delta(&d);
        }
        assert!(state.retire(&Origin::new("r", 2), 1));
        let before = view(&state);
        for p in [u128::from(crate::crdt::MAX_TOTAL) + 1, u128::MAX] {
            let theirs = Compaction {
                origins: vec![OriginVersion {
                    origin: gone.clone(),
                    version: 1,
                }],
                sums: vec![CompactedSum {
                    counter: "x".into(),
                    p,
                    n: 0,
                }],
            };
            assert_eq!(state.adopt(&theirs), Err(AdoptRefusal::Malformed));
            assert_eq!(view(&state), before);
        }
    }

    /// An origin or a counter listed twice, or out of order, is refused as it stands.
    #[test]
    fn a_compaction_listing_an_origin_or_a_counter_twice_or_out_of_order_is_refused() {
        let state = State::new();
        let ov = |name: &str| OriginVersion {
            origin: Origin::new(name, 1),
            version: 1,
        };
        let sum = |counter: &str| CompactedSum {
            counter: counter.into(),
            p: 1,
            n: 0,
        };
        for (origins, sums) in [
            (vec![ov("a"), ov("a")], vec![sum("x")]),
            (vec![ov("b"), ov("a")], vec![sum("x")]),
            (vec![ov("a"), ov("b")], vec![sum("x"), sum("x")]),
            (vec![ov("a"), ov("b")], vec![sum("y"), sum("x")]),
        ] {
            let theirs = Compaction { origins, sums };
            let mut copy = state.clone();
            assert_eq!(
                copy.adopt(&theirs),
                Err(AdoptRefusal::Malformed),
                "{theirs:?}"
            );
            assert_eq!(view(&copy), view(&state));
        }
    }

    #[test]
    fn replicas_that_compact_or_adopt_at_random_read_what_one_that_never_does_reads() {
        for seed in 0..200 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let origins: Vec<Origin> = (0..4)
                .map(|i| Origin::new(format!("o{i}"), i + 1))
                .collect();
            let counters = ["a", "b", "c"];
            let deltas: Vec<Vec<OriginDelta>> = origins
                .iter()
                .map(|o| {
                    let ops: Vec<LocalOp> = (0..rng.usize(1..6))
                        .map(|_| {
                            let counter = counters[rng.usize(..counters.len())];
                            if rng.bool() {
                                inc(counter, rng.u64(1..10))
                            } else {
                                dec(counter, rng.u64(1..10))
                            }
                        })
                        .collect();
                    writer(o, &ops).1
                })
                .collect();
            let mut reference = State::new();
            for d in deltas.iter().flatten() {
                reference.apply_delta(d);
            }
            // The peer holds everything and compacts the first origins.
            let mut peer = reference.clone();
            let compacted = rng.usize(1..=origins.len());
            for o in &origins[..compacted] {
                let v = peer.retirable_at(o).expect("whole");
                assert!(peer.retire(o, v) && peer.compact(o, v));
            }
            assert_eq!(values(&peer), values(&reference), "seed {seed}");
            // A laggard holds a random part of each origin's deltas, in any order.
            let mut laggard = State::new();
            let mut sent: Vec<&OriginDelta> =
                deltas.iter().flatten().filter(|_| rng.bool()).collect();
            rng.shuffle(&mut sent);
            for d in sent {
                laggard.apply_delta(d);
            }
            // It retired what it held whole, and compacted some of those the peer did.
            let mut own = 0;
            for (i, o) in origins.iter().enumerate() {
                let Some(v) = laggard.retirable_at(o).filter(|&v| v == reference.known(o)) else {
                    continue;
                };
                assert!(laggard.retire(o, v));
                if i < compacted && rng.bool() {
                    assert!(laggard.compact(o, v));
                    own += 1;
                }
            }
            assert_eq!(
                laggard.adopt(&peer.compaction()),
                Ok(compacted - own),
                "seed {seed}"
            );
            // Then everything, as anti-entropy would send it.
            for d in deltas.iter().flatten() {
                laggard.apply_delta(d);
            }
            assert_eq!(values(&laggard), values(&reference), "seed {seed}");
            assert_eq!(laggard.digest(), peer.digest(), "seed {seed}");
        }
    }
}
