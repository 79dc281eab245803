//! Retiring an origin: moving the totals of an origin that will write no more out of
//! every counter's per-origin entries and into the counter's retired sum.
//!
//! Every node that starts without its data writes under a new origin, so a cluster of
//! ephemeral nodes gathers origins without end, and every counter one of them wrote keeps
//! an entry for it. Retiring changes how a replica *holds* an origin, never what it
//! counts: the origin's totals join the counter's retired sum, which the value adds, so
//! each replica retires on its own, when it chooses (the node core decides when an origin
//! is gone for good, see `node_core::retirement`), with no agreement to reach and no
//! successor to pick: two replicas that retired different origins still read the same
//! values, and so does one that retires none.
//!
//! A retired origin keeps its place in digests, known up to the version it retired at,
//! `V`, and a tombstone: its entries as they were then, so a peer that lacks some of them
//! still gets them, and a snapshot still holds them. A delta of the origin with nothing
//! past `V` is dropped (this replica holds all of it). One past `V` means the origin was
//! not gone for good (a long partition, a node taken for dead): the retirement is undone,
//! the origin's entries return from its tombstone and its sums leave the retired sum,
//! and the delta applies as to any live origin. Nothing is counted twice or lost, at any
//! time, on any replica.

use super::table::{CounterId, OriginId};
use super::{CounterEntry, Folded, Item, Keyed, Origin, OriginDelta, State, Totals};
use std::collections::BTreeMap;

/// What a retired origin leaves: its totals in each counter it wrote and its fold
/// ledgers, as they were when it retired, by counter id (as compact as the slots were).
#[derive(Clone, Debug)]
pub(super) struct Tombstone {
    pub(super) totals: Box<[(CounterId, Totals)]>,
    /// Sorted by counter id.
    pub(super) ledgers: Box<[(CounterId, Folded)]>,
    /// The entries are gone, their totals in the compacted sums (see `compact`).
    pub(super) compacted: bool,
}

impl Tombstone {
    /// What a compacted origin keeps: nothing but the fact.
    pub(super) fn compacted() -> Tombstone {
        Tombstone {
            totals: Box::default(),
            ledgers: Box::default(),
            compacted: true,
        }
    }
}

/// Retirements done and undone by one replica.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetireStats {
    pub done: u64,
    /// Retired origins that wrote again (or had changes past their retirement
    /// somewhere), and came back.
    pub undone: u64,
    /// Origins retired now.
    pub retired: usize,
    /// (counter, origin) entries their tombstones keep.
    pub tombstone_entries: usize,
    /// Retired origins compacted here (see `compact`), by this replica or adopted.
    pub compacted: usize,
    /// Origins compacted by adopting a peer's compaction.
    pub adopted: u64,
    /// Changes refused: past the version a compacted origin was compacted at.
    pub refused: u64,
}

impl State {
    /// The version `origin` could retire at here: what this replica knows it up to,
    /// when it holds nothing past that (no gap to fill), no acceptance of an idempotency
    /// key by it (a key must be resolved and expired before its acceptor retires; an
    /// ignored one, a second acceptance of a key it held, carries nothing and does not
    /// count), and every entry it holds of it indexed by version (none merged without
    /// one). `None` if it cannot retire, or is retired already.
    pub fn retirable_at(&self, origin: &Origin) -> Option<u64> {
        let &id = self.origins.get(origin)?;
        let record = &self.origin_records[id as usize];
        let mut totals = 0usize;
        let mut only_totals = true;
        for item in record.by_version.values() {
            match item {
                Item::Totals(_) => totals += 1,
                Item::Ignored => {}
                Item::Accept(_) => only_totals = false,
            }
        }
        let ready = record.retired.is_none()
            && record.known > 0
            && record.top() == record.known
            && only_totals
            && totals == record.slots as usize;
        ready.then_some(record.known)
    }

    /// Retires `origin` if it can retire at `version` (see [`State::retirable_at`]);
    /// returns whether it did. Values do not change.
    pub fn retire(&mut self, origin: &Origin, version: u64) -> bool {
        if self.retirable_at(origin) != Some(version) {
            return false;
        }
        self.generation += 1;
        let id = self.origins[origin];
        let items = std::mem::take(&mut self.origin_records[id as usize].by_version);
        let mut totals = Vec::with_capacity(items.len());
        let mut ledgers = Vec::new();
        for (_, item) in items {
            let counter = match item {
                Item::Totals(counter) => counter,
                // Carries nothing; a later copy of it is at or below the known version.
                Item::Ignored => continue,
                Item::Accept(_) => unreachable!("retirable_at allows no acceptance"),
            };
            if let Some(folded) = self.keys.take_ledger(counter, id) {
                ledgers.push((counter, folded));
            }
            let held = self
                .counters
                .remove(counter, id)
                .expect("an indexed entry has a slot");
            let base = self.base_mut(counter);
            base.0 += u128::from(held.p);
            base.1 += u128::from(held.n);
            totals.push((counter, held));
        }
        self.logged_retirements.remove(origin);
        let record = &mut self.origin_records[id as usize];
        record.slots = 0;
        let totals_len = totals.len();
        record.retired = Some(Box::new(Tombstone {
            totals: totals.into_boxed_slice(),
            ledgers: {
                ledgers.sort_unstable_by_key(|&(counter, _)| counter);
                ledgers.into_boxed_slice()
            },
            compacted: false,
        }));
        self.retirements.done += 1;
        self.retirements.retired += 1;
        self.retirements.tombstone_entries += totals_len;
        true
    }

    /// Retires each origin at its version where it can retire there (see
    /// [`State::retire`]); recovery replays logged retirements with it. One it cannot
    /// retire yet, though still at that version (its acceptances of keys, expired
    /// before, came back with the records that made them), is remembered: see
    /// [`State::logged_retirement`].
    pub fn retire_all(&mut self, retired: &[super::OriginVersion]) {
        for ov in retired {
            if !self.retire(&ov.origin, ov.version) && self.known(&ov.origin) == ov.version {
                self.logged_retirements
                    .insert(ov.origin.clone(), ov.version);
            }
        }
    }

    /// The version a logged retirement of `origin` that recovery could not make was
    /// at (the caller checks it against what is known now), until it is made.
    pub fn logged_retirement(&self, origin: &Origin) -> Option<u64> {
        self.logged_retirements.get(origin).copied()
    }

    /// Every retired origin with the version it retired at, in origin order.
    pub fn retired_origins(&self) -> Vec<super::OriginVersion> {
        self.origins
            .iter()
            .filter_map(|(origin, &id)| {
                let record = &self.origin_records[id as usize];
                record.retired.as_ref().map(|_| super::OriginVersion {
                    origin: origin.clone(),
                    version: record.known,
                })
            })
            .collect()
    }

    /// Before a delta of origin `id` applies: whether it may (the origin is live, or the
    /// delta holds something past the retirement, which then is undone).
    pub(super) fn unretire_for(&mut self, id: OriginId, delta: &OriginDelta) -> bool {
        let record = &self.origin_records[id as usize];
        let Some(tombstone) = &record.retired else {
            return true;
        };
        let past =
            delta.to > record.known || delta.entries.iter().any(|e| e.version > record.known);
        if past && tombstone.compacted {
            // Its entries are gone: nothing to bring back and merge with.
            self.retirements.refused += 1;
            return false;
        }
        if past {
            self.unretire(id);
        }
        past
    }

    /// Before totals merged without a version apply to origin `id`: whether they may
    /// (the origin is live, or they pass its tombstone's, and the retirement is undone).
    pub(super) fn unretire_for_totals(
        &mut self,
        id: OriginId,
        counter: &str,
        p: u64,
        n: u64,
    ) -> bool {
        let Some(tombstone) = &self.origin_records[id as usize].retired else {
            return true;
        };
        if tombstone.compacted {
            // Nothing left to tell whether they pass what it held.
            self.retirements.refused += 1;
            return false;
        }
        let counter = self.counters.id(counter);
        let held = tombstone
            .totals
            .iter()
            .find(|(c, _)| Some(*c) == counter)
            .map_or((0, 0), |(_, t)| (t.p, t.n));
        let past = p > held.0 || n > held.1;
        if past {
            self.unretire(id);
        }
        past
    }

    /// Undoes the retirement of origin `id`: its entries back from the tombstone, their
    /// sums out of the retired sums.
    fn unretire(&mut self, id: OriginId) {
        let Some(tombstone) = self.origin_records[id as usize].retired.take() else {
            return;
        };
        let mut by_version = BTreeMap::new();
        for &(counter, totals) in tombstone.totals.iter() {
            let base = self.base_mut(counter);
            base.0 -= u128::from(totals.p);
            base.1 -= u128::from(totals.n);
            self.counters.set(counter, id, totals);
            by_version.insert(totals.version, Item::Totals(counter));
        }
        for &(counter, folded) in tombstone.ledgers.iter() {
            self.keys.restore_ledger(counter, id, folded);
        }
        let record = &mut self.origin_records[id as usize];
        record.slots = tombstone.totals.len() as u32;
        record.by_version = by_version;
        self.retirements.undone += 1;
        self.retirements.retired -= 1;
        self.retirements.tombstone_entries -= tombstone.totals.len();
    }

    /// A tombstone's entries above `after`, in version order, as deltas carry them.
    pub(super) fn tombstone_entries(&self, tombstone: &Tombstone, after: u64) -> Vec<CounterEntry> {
        let mut entries: Vec<CounterEntry> = tombstone
            .totals
            .iter()
            .filter(|(_, t)| t.version > after)
            .map(|&(counter, t)| {
                let mut entry =
                    CounterEntry::plain(self.counters.name(counter), t.p, t.n, t.version);
                entry.keyed = tombstone
                    .ledgers
                    .binary_search_by_key(&counter, |&(c, _)| c)
                    .ok()
                    .map(|at| Box::new(Keyed::Folded(tombstone.ledgers[at].1)));
                entry
            })
            .collect();
        entries.sort_by_key(|e| e.version);
        entries
    }

    pub(super) fn base_mut(&mut self, counter: CounterId) -> &mut (u128, u128) {
        let at = counter as usize;
        if self.base.len() <= at {
            self.base.resize(at + 1, (0, 0));
        }
        &mut self.base[at]
    }

    /// A counter's retired sums by id.
    pub(super) fn retired_sums(&self, counter: CounterId) -> (u128, u128) {
        self.base.get(counter as usize).copied().unwrap_or_default()
    }

    /// The increments and decrements of `counter` made by retired origins.
    pub fn retired_totals(&self, counter: &str) -> (u128, u128) {
        self.counters
            .id(counter)
            .map_or((0, 0), |id| self.retired_sums(id))
    }

    /// Whether `origin` is retired here.
    pub fn is_retired(&self, origin: &Origin) -> bool {
        self.retired_at(origin).is_some()
    }

    /// The version `origin` retired at here, if it is retired.
    pub fn retired_at(&self, origin: &Origin) -> Option<u64> {
        self.record(origin)
            .filter(|r| r.retired.is_some())
            .map(|r| r.known)
    }

    /// Retirements done and undone, and origins retired now.
    pub fn retire_stats(&self) -> RetireStats {
        self.retirements
    }

    /// Origins heard of and not retired.
    pub fn live_origin_count(&self) -> usize {
        self.origins.len() - self.retirements.retired
    }

    /// Every live origin with the version this replica knows it up to, in origin order.
    pub fn live_origins(&self) -> impl Iterator<Item = (&Origin, u64)> {
        self.origins.iter().filter_map(|(origin, &id)| {
            let record = &self.origin_records[id as usize];
            record.retired.is_none().then_some((origin, record.known))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{inc, values, writer};
    use super::super::{CounterEntry, Keyed, LocalOp, Resolution};
    use super::*;

    #[test]
    fn retiring_keeps_every_value_the_digest_and_what_peers_are_sent() {
        let gone = Origin::new("gone", 1);
        let live = Origin::new("live", 2);
        let (mut state, _) = writer(&gone, &[inc("x", 3), inc("y", 4), inc("x", 5)]);
        for d in writer(&live, &[inc("x", 10)]).1 {
            state.apply_delta(&d);
        }
        let before = (values(&state), state.digest(), state.to_deltas());
        let sent: Vec<Vec<CounterEntry>> = (0..=3).map(|v| state.entries_after(&gone, v)).collect();
        let buckets = state.bucket_hashes(crate::summary::Span::ALL, 2);
        assert_eq!(state.retirable_at(&gone), Some(3));
        assert!(!state.retire(&gone, 2), "only at the version known");
        let generation = state.generation();
        assert!(state.retire(&gone, 3));
        assert!(
            state.generation() > generation,
            "caches of derived figures see it"
        );
        assert!(!state.retire(&gone, 3), "once");
        assert_eq!((values(&state), state.digest(), state.to_deltas()), before);
        let after: Vec<Vec<CounterEntry>> =
            (0..=3).map(|v| state.entries_after(&gone, v)).collect();
        assert_eq!(after, sent, "from the tombstone, above each version");
        assert_eq!(state.bucket_hashes(crate::summary::Span::ALL, 2), buckets);
        assert_eq!(state.counter_totals("x").len(), 1, "only live's entry");
        assert_eq!(state.retired_totals("x"), (8, 0));
        assert_eq!((state.live_origin_count(), state.origin_count()), (1, 2));
        let listed: Vec<(&Origin, u64)> = state.live_origins().collect();
        assert_eq!(listed, [(&live, 1)]);
        assert_eq!(state.entry_count(), 1);
        assert!(state.is_retired(&gone));
        let stats = state.retire_stats();
        assert_eq!((stats.done, stats.undone, stats.retired), (1, 0, 1));
        assert_eq!(stats.tombstone_entries, 2, "gone's entries in x and y");
    }

    #[test]
    fn a_late_delta_within_the_retirement_is_dropped_and_one_past_it_brings_the_origin_back() {
        let gone = Origin::new("gone", 1);
        let (full, deltas) = writer(&gone, &[inc("x", 3), inc("y", 4), inc("x", 5), inc("z", 1)]);
        let mut state = State::new();
        for d in &deltas[..3] {
            state.apply_delta(d);
        }
        assert!(state.retire(&gone, 3));
        let generation = state.generation();
        for d in deltas[..3].iter().rev() {
            assert_eq!(state.apply_delta(d), Default::default(), "held already");
        }
        state.merge_entry(
            &gone,
            "x",
            crate::crdt::Totals {
                p: 8,
                n: 0,
                version: 3,
            },
        );
        assert!(state.is_retired(&gone) && state.generation() > generation);

        state.apply_delta(&deltas[3]);
        assert!(
            !state.is_retired(&gone),
            "a change past the retirement: undone"
        );
        assert_eq!(values(&state), values(&full));
        assert_eq!(state.retired_totals("x"), (0, 0));
        assert_eq!(state.to_deltas(), full.to_deltas());
        assert_eq!(state.retirable_at(&gone), Some(4));
        let stats = state.retire_stats();
        assert_eq!((stats.done, stats.undone, stats.retired), (1, 1, 0));
        assert_eq!(stats.tombstone_entries, 0, "back in the counters");

        assert!(state.retire(&gone, 4));
        assert_eq!(state.retire_stats().tombstone_entries, 3, "x, y and z");
        // A range past the retirement with no entry (its changes were acceptances of
        // keys, expired since) still brings the origin back, so digests agree again.
        state.apply_delta(&OriginDelta {
            origin: gone.clone(),
            from: 4,
            to: 5,
            entries: Vec::new(),
        });
        assert!(!state.is_retired(&gone));
        assert_eq!(state.known(&gone), 5);
        assert_eq!(values(&state), values(&full));
        assert!(state.retire(&gone, 5));
        let past = crate::crdt::Totals {
            p: 9,
            n: 0,
            version: 0,
        };
        state.merge_entry(&gone, "x", past);
        assert!(
            !state.is_retired(&gone),
            "unversioned totals past the tombstone undo too"
        );
        assert_eq!(state.value("x"), 9);
        assert!(state.retire(&gone, 5));
        let fewer = crate::crdt::Totals {
            p: 9,
            n: 0,
            version: 0,
        };
        state.merge_entry(&gone, "x", fewer);
        assert!(
            state.is_retired(&gone),
            "totals the tombstone holds are dropped"
        );
        let decremented = crate::crdt::Totals {
            p: 9,
            n: 2,
            version: 0,
        };
        state.merge_entry(&gone, "x", decremented);
        assert!(
            !state.is_retired(&gone),
            "decrements past the tombstone undo too"
        );
        assert_eq!(state.value("x"), 7);
    }

    #[test]
    fn an_origin_with_a_gap_an_acceptance_or_unversioned_entries_cannot_retire() {
        let gone = Origin::new("gone", 1);
        let (_, deltas) = writer(&gone, &[inc("x", 1), inc("y", 1)]);
        let mut gap = State::new();
        gap.apply_delta(&deltas[1]);
        assert_eq!(gap.retirable_at(&gone), None, "known 0, holds 2");
        assert_eq!(State::new().retirable_at(&gone), None, "never heard of");
        let mut nothing = State::new();
        nothing.apply_delta(&OriginDelta {
            origin: gone.clone(),
            from: 5,
            to: 5,
            entries: Vec::new(),
        });
        assert_eq!(nothing.retirable_at(&gone), None, "heard of, nothing held");

        let mut unversioned = State::new();
        unversioned.apply_delta(&deltas[0]);
        unversioned.merge_entry(
            &gone,
            "w",
            crate::crdt::Totals {
                p: 2,
                n: 0,
                version: 0,
            },
        );
        assert_eq!(unversioned.retirable_at(&gone), None);

        let mut keyed = State::new();
        let op = LocalOp {
            key: Some("k".into()),
            ..inc("x", 5)
        };
        let batch = keyed.prepare_batch(&gone, &[op], 0, &[]);
        keyed.apply_local(&batch);
        assert_eq!(keyed.retirable_at(&gone), None, "an unresolved acceptance");
        let folds = keyed.plan_folds(&gone, |_| Resolution::Fold);
        let batch = keyed.prepare_batch(&gone, &[], 1, &folds);
        keyed.apply_local(&batch);
        assert_eq!(
            keyed.retirable_at(&gone),
            None,
            "a resolved one, not yet expired"
        );
        keyed.expire_keys(u64::MAX, 0);
        assert_eq!(keyed.retirable_at(&gone), Some(2));
    }

    /// Recovery replays an origin's acceptances (expired before) with the records that
    /// made them, so its logged retirement cannot be made yet: it is remembered, and
    /// made once the keys expire again.
    #[test]
    fn a_logged_retirement_that_cannot_be_made_at_recovery_waits_for_the_keys_to_expire() {
        let gone = Origin::new("gone", 1);
        let mut live = State::new();
        let op = LocalOp {
            key: Some("k".into()),
            ..inc("x", 5)
        };
        let accepted = live.prepare_batch(&gone, &[op], 0, &[]);
        live.apply_local(&accepted);
        let folds = live.plan_folds(&gone, |_| Resolution::Fold);
        let folded = live.prepare_batch(&gone, &[], 1, &folds);
        live.apply_local(&folded);
        live.expire_keys(u64::MAX, 0);
        assert!(live.retire(&gone, 2));
        let logged = live.retired_origins();

        let mut recovered = State::new();
        recovered.apply_delta(&accepted.delta);
        recovered.apply_delta(&folded.delta);
        recovered.retire_all(&logged);
        assert!(!recovered.is_retired(&gone), "its acceptance is back");
        assert_eq!(recovered.logged_retirement(&gone), Some(2));
        recovered.expire_keys(u64::MAX, 0);
        assert!(recovered.retire(&gone, 2));
        assert_eq!(recovered.logged_retirement(&gone), None);
        assert_eq!(recovered.value("x"), live.value("x"));
    }

    #[test]
    fn a_retired_origin_keeps_its_fold_ledgers_in_the_tombstone_and_gets_them_back() {
        let gone = Origin::new("gone", 1);
        let mut state = State::new();
        let op = LocalOp {
            key: Some("k".into()),
            ..inc("x", 5)
        };
        let batch = state.prepare_batch(&gone, &[op], 0, &[]);
        state.apply_local(&batch);
        let folds = state.plan_folds(&gone, |_| Resolution::Fold);
        state.apply_local(&state.prepare_batch(&gone, &[], 1, &folds));
        state.expire_keys(u64::MAX, 0);
        let before = state.to_deltas();
        assert!(state.retire(&gone, 2));
        assert_eq!(state.to_deltas(), before);
        let ledger = |s: &State| s.entries_after(&gone, 0)[0].folded();
        assert_eq!(ledger(&state).map(|f| (f.p, f.through)), Some((5, 1)));

        let mut later = CounterEntry::plain("x", 6, 0, 3);
        later.keyed = before[0].entries[0].keyed.clone();
        state.apply_delta(&OriginDelta {
            origin: gone.clone(),
            from: 2,
            to: 3,
            entries: vec![later],
        });
        assert_eq!(state.value("x"), 6);
        assert!(matches!(
            state.entries_after(&gone, 2)[0].keyed.as_deref(),
            Some(Keyed::Folded(f)) if f.p == 5
        ));
    }
}
