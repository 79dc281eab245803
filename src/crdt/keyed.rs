//! Idempotency keys: operations that count once however often, and on however many
//! nodes, a client retries them.
//!
//! A keyed operation is not added to its acceptor's totals. It is an element of its own,
//! an *acceptance* in the acceptor's stream at a version of its own (never superseded):
//! key, counter, direction, amount and the acceptor's wall clock. Retries on any node
//! that holds an acceptance of the key change nothing; concurrent acceptances of one key
//! on several nodes (a retry that crossed a partition) are all kept. A counter's value
//! counts each key once: the key's *winner*, its acceptance by the smallest origin, unless
//! that acceptance is resolved.
//!
//! Each (counter, origin) totals entry carries a [`Folded`] ledger: how much of its `p`
//! and `n` came from folded keys, and `through`, the version up to which the origin's
//! acceptances of that counter are resolved. An acceptor resolves its acceptances in
//! version order once they are stable (see `node_core::stability`): the winner folds the
//! amount into its totals, a loser just passes over it. The fold and the resolution are
//! one totals entry, so a replica that sees the amount in the totals also sees the
//! acceptance resolved: no replica counts a key twice or not at all. A replica merges a
//! ledger only when it holds every acceptance the ledger resolves (see
//! [`super::State::apply_delta`]), so "resolved" is always decided against acceptances it
//! holds.
//!
//! Resolved acceptances stay as tombstones, so retries are still recognised, until the
//! retention window has passed for every acceptance of the key; then the key is dropped
//! on each replica on its own (a retry after that counts again: the documented limit).

use super::table::{CounterId, OriginId};
use super::{OpKind, OriginRecord};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

/// Longest idempotency key, in bytes.
pub const MAX_KEY_BYTES: usize = 128;

/// The part of a (counter, origin) totals entry that came from folded keys, and how far
/// the origin's acceptances of that counter are resolved. Every field only grows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Folded {
    /// Increments folded into the entry's `p`.
    pub p: u64,
    /// Decrements folded into the entry's `n`.
    pub n: u64,
    /// Every acceptance of this counter by this origin at a version up to `through` is
    /// resolved: folded (the origin won the key) or passed over (it lost).
    pub through: u64,
}

impl Folded {
    /// The per-field maximum.
    fn merge(&mut self, other: Folded) {
        self.p = self.p.max(other.p);
        self.n = self.n.max(other.n);
        self.through = self.through.max(other.through);
    }
}

/// One acceptance of an idempotency key, as deltas carry it (its counter and version are
/// the entry's).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyAccept {
    pub key: String,
    pub kind: OpKind,
    pub amount: u64,
    /// The acceptor's wall clock when it accepted, in milliseconds since the Unix epoch:
    /// where the retention window starts.
    pub at_ms: u64,
}

/// What an entry carries besides plain totals.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Keyed {
    /// A totals entry with its fold ledger.
    Folded(Folded),
    /// An acceptance: an element, not totals (the entry's `p` and `n` are 0).
    Accept(KeyAccept),
}

/// A key's index in the store.
pub(super) type KeyId = u32;

/// One acceptance as the store keeps it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Acceptance {
    pub(super) origin: OriginId,
    pub(super) counter: CounterId,
    pub(super) version: u64,
    pub(super) kind: OpKind,
    pub(super) amount: u64,
    pub(super) at_ms: u64,
}

/// A key and every acceptance of it this replica holds.
#[derive(Clone, Debug)]
pub(super) struct KeyRecord {
    pub(super) key: Arc<str>,
    pub(super) acceptances: Vec<Acceptance>,
    /// How many of them their acceptor has not resolved yet.
    unresolved: u32,
}

impl KeyRecord {
    /// When the key's last acceptance was made: its window ends a window after.
    fn newest_at(&self) -> u64 {
        self.acceptances.iter().map(|a| a.at_ms).max().unwrap_or(0)
    }
}

/// One origin's acceptances of one counter and its ledger for it.
#[derive(Clone, Debug, Default)]
struct Ledger {
    folded: Folded,
    /// Version → key, the acceptances held that are not yet resolved (above `through`).
    pending: BTreeMap<u64, KeyId>,
}

/// What a key adds to a counter's value: its winner's counter and signed amount.
type Contribution = Option<(CounterId, i128)>;

/// Every key a replica holds, and the sums they add to counters.
#[derive(Clone, Debug, Default)]
pub(super) struct KeyStore {
    records: Vec<Option<KeyRecord>>,
    free: Vec<KeyId>,
    index: HashMap<Arc<str>, KeyId>,
    ledgers: HashMap<(CounterId, OriginId), Ledger>,
    /// Per counter, the increments and decrements of the keys counted by acceptance (not
    /// yet folded): what the value adds to the totals.
    live: HashMap<CounterId, (u128, u128)>,
    /// Acceptances not yet resolved by their acceptor.
    unresolved: usize,
    /// The (origin, counter) pairs with acceptances the origin has not resolved.
    unresolved_ledgers: BTreeSet<(OriginId, CounterId)>,
    /// The keys whose acceptances are all resolved, by when the newest was made: the
    /// order they may be forgotten in.
    resolved_keys: BTreeSet<(u64, KeyId)>,
}

impl KeyStore {
    pub(super) fn id(&self, key: &str) -> Option<KeyId> {
        self.index.get(key).copied()
    }

    pub(super) fn record(&self, id: KeyId) -> &KeyRecord {
        self.records[id as usize]
            .as_ref()
            .expect("a key id in use has a record")
    }

    /// Keys held (tombstones included).
    pub(super) fn len(&self) -> usize {
        self.index.len()
    }

    /// Acceptances not yet resolved by their acceptor.
    pub(super) fn unresolved(&self) -> usize {
        self.unresolved
    }

    /// Increments and decrements of the keys a counter counts by acceptance.
    pub(super) fn live(&self, counter: CounterId) -> (u128, u128) {
        self.live.get(&counter).copied().unwrap_or_default()
    }

    /// The ledger of `origin` for `counter`, if it has one.
    pub(super) fn folded(&self, counter: CounterId, origin: OriginId) -> Option<Folded> {
        self.ledgers.get(&(counter, origin)).map(|l| l.folded)
    }

    /// Takes the ledger of `origin` for `counter` out of the store, when it resolves
    /// every acceptance it has (nothing pending): for retiring the origin.
    pub(super) fn take_ledger(&mut self, counter: CounterId, origin: OriginId) -> Option<Folded> {
        let ledger = self.ledgers.get(&(counter, origin))?;
        if !ledger.pending.is_empty() {
            return None;
        }
        self.ledgers.remove(&(counter, origin)).map(|l| l.folded)
    }

    /// Puts back a ledger [`KeyStore::take_ledger`] took.
    pub(super) fn restore_ledger(&mut self, counter: CounterId, origin: OriginId, folded: Folded) {
        self.ledgers.entry((counter, origin)).or_default().folded = folded;
    }

    /// Takes key `id` off the list of keys that may be forgotten, if it is on it.
    fn unlist(&mut self, id: KeyId) {
        let record = self.record(id);
        if record.unresolved == 0 && !record.acceptances.is_empty() {
            let entry = (record.newest_at(), id);
            self.resolved_keys.remove(&entry);
        }
    }

    /// Puts key `id` on the list of keys that may be forgotten once every acceptance of
    /// it is resolved.
    fn list(&mut self, id: KeyId) {
        let record = self.record(id);
        if record.unresolved == 0 {
            let entry = (record.newest_at(), id);
            self.resolved_keys.insert(entry);
        }
    }

    /// Whether `a` is resolved by its acceptor's ledger.
    pub(super) fn is_resolved(&self, a: &Acceptance) -> bool {
        self.ledgers
            .get(&(a.counter, a.origin))
            .is_some_and(|l| l.folded.through >= a.version)
    }

    /// The acceptance that decides a key: the one by the smallest origin.
    pub(super) fn winner<'a>(
        &self,
        record: &'a KeyRecord,
        origins: &[OriginRecord],
    ) -> &'a Acceptance {
        record
            .acceptances
            .iter()
            .min_by(|a, b| {
                origins[a.origin as usize]
                    .origin
                    .cmp(&origins[b.origin as usize].origin)
            })
            .expect("a key record holds an acceptance")
    }

    fn contribution(&self, id: KeyId, origins: &[OriginRecord]) -> Contribution {
        let winner = self.winner(self.record(id), origins);
        if self.is_resolved(winner) {
            return None;
        }
        let amount = winner.amount as i128;
        Some((
            winner.counter,
            match winner.kind {
                OpKind::Increment => amount,
                OpKind::Decrement => -amount,
            },
        ))
    }

    fn count(&mut self, c: Contribution, sign: i128) {
        let Some((counter, amount)) = c else { return };
        let live = self.live.entry(counter).or_default();
        let (p, n) = if amount > 0 {
            (&mut live.0, amount as u128)
        } else {
            (&mut live.1, amount.unsigned_abs())
        };
        if sign > 0 {
            *p += n;
        } else {
            *p -= n;
        }
        if *live == (0, 0) {
            self.live.remove(&counter);
        }
    }

    /// Makes room for `origin`'s acceptance of `key` at `version` when the store holds an
    /// earlier acceptance of the key by the same origin: an origin accepts a key again
    /// only once the key's window ended there, every acceptance of it resolved. When
    /// they are all resolved here too, the old key is dropped as its expiry would drop
    /// it, and its acceptances' (origin, version) returned for the version index: the
    /// new acceptance then starts the key afresh instead of being taken for a retry
    /// (which would lose it here, and on every replica this one teaches). While one is
    /// not resolved here the old key stays, and the new acceptance is ignored here until
    /// its acceptor resolves it (its fold brings the amount).
    pub(super) fn end_generation(
        &mut self,
        key: &str,
        origin: OriginId,
        version: u64,
    ) -> Vec<(OriginId, u64)> {
        let Some(&id) = self.index.get(key) else {
            return Vec::new();
        };
        let record = self.record(id);
        let earlier = record
            .acceptances
            .iter()
            .any(|a| a.origin == origin && a.version < version);
        if !earlier || record.unresolved > 0 {
            return Vec::new();
        }
        self.unlist(id);
        let record = self.records[id as usize]
            .take()
            .expect("a key id in use has a record");
        self.index.remove(&record.key);
        self.free.push(id);
        record
            .acceptances
            .iter()
            .map(|a| (a.origin, a.version))
            .collect()
    }

    /// Records an acceptance; returns whether it is new. A second acceptance of one key
    /// by one origin that [`KeyStore::end_generation`] did not make room for (a faulty
    /// peer's, or one above a key not yet resolved here) is ignored.
    pub(super) fn accept(
        &mut self,
        key: &str,
        acceptance: Acceptance,
        origins: &[OriginRecord],
    ) -> bool {
        let id = match self.index.get(key) {
            Some(&id) => id,
            None => self.insert_key(key),
        };
        if self
            .record(id)
            .acceptances
            .iter()
            .any(|a| a.origin == acceptance.origin)
        {
            return false;
        }
        let before = self.contribution_if_any(id, origins);
        let ledger = self
            .ledgers
            .entry((acceptance.counter, acceptance.origin))
            .or_default();
        let resolved = ledger.folded.through >= acceptance.version;
        if !resolved {
            ledger.pending.insert(acceptance.version, id);
        }
        self.unlist(id);
        let record = self.records[id as usize]
            .as_mut()
            .expect("a key id in use has a record");
        record.acceptances.push(acceptance);
        if !resolved {
            record.unresolved += 1;
            self.unresolved += 1;
            self.unresolved_ledgers
                .insert((acceptance.origin, acceptance.counter));
        }
        self.list(id);
        let after = self.contribution(id, origins);
        self.count(before, -1);
        self.count(after, 1);
        true
    }

    fn contribution_if_any(&self, id: KeyId, origins: &[OriginRecord]) -> Contribution {
        if self.record(id).acceptances.is_empty() {
            None
        } else {
            self.contribution(id, origins)
        }
    }

    fn insert_key(&mut self, key: &str) -> KeyId {
        let key: Arc<str> = key.into();
        let record = KeyRecord {
            key: key.clone(),
            // Most keys are accepted once: room for one, not the four a push would reserve.
            acceptances: Vec::with_capacity(1),
            unresolved: 0,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.records[id as usize] = Some(record);
                id
            }
            None => {
                self.records.push(Some(record));
                (self.records.len() - 1) as KeyId
            }
        };
        self.index.insert(key, id);
        id
    }

    /// Merges `origin`'s ledger for `counter`; the keys it resolves stop counting by
    /// acceptance (a winner's amount is in the totals merged with it).
    pub(super) fn merge_folded(
        &mut self,
        counter: CounterId,
        origin: OriginId,
        incoming: Folded,
        origins: &[OriginRecord],
    ) {
        let ledger = self.ledgers.entry((counter, origin)).or_default();
        let before = ledger.folded.through;
        if incoming.through <= before {
            ledger.folded.merge(incoming);
            return;
        }
        let still_pending = ledger.pending.split_off(&(incoming.through + 1));
        let newly: Vec<KeyId> = std::mem::replace(&mut ledger.pending, still_pending)
            .into_values()
            .collect();
        let contributions: Vec<Contribution> = newly
            .iter()
            .map(|&id| self.contribution(id, origins))
            .collect();
        let ledger = self.ledgers.get_mut(&(counter, origin)).expect("just made");
        ledger.folded.merge(incoming);
        if ledger.pending.is_empty() {
            self.unresolved_ledgers.remove(&(origin, counter));
        }
        self.unresolved -= newly.len();
        for &id in &newly {
            let record = self.records[id as usize]
                .as_mut()
                .expect("a key id in use has a record");
            record.unresolved -= 1;
            self.list(id);
        }
        for (&id, before) in newly.iter().zip(contributions) {
            let after = self.contribution(id, origins);
            self.count(before, -1);
            self.count(after, 1);
        }
    }

    /// The acceptances of `origin` for `counter` above its ledger's `through`, in
    /// version order: what it has yet to resolve.
    pub(super) fn unresolved_of(
        &self,
        counter: CounterId,
        origin: OriginId,
    ) -> impl Iterator<Item = (u64, KeyId)> + '_ {
        self.ledgers
            .get(&(counter, origin))
            .into_iter()
            .flat_map(|l| &l.pending)
            .map(|(&v, &id)| (v, id))
    }

    /// The counters `origin` has acceptances of that it has not resolved.
    pub(super) fn counters_unresolved_by(&self, origin: OriginId) -> Vec<CounterId> {
        self.unresolved_ledgers
            .range((origin, 0)..=(origin, CounterId::MAX))
            .map(|&(_, c)| c)
            .collect()
    }

    /// Whether `origin` has acceptances it has not resolved.
    pub(super) fn has_unresolved_by(&self, origin: OriginId) -> bool {
        let mut of = self
            .unresolved_ledgers
            .range((origin, 0)..=(origin, CounterId::MAX));
        of.next().is_some()
    }

    /// Every key held, with its record.
    pub(super) fn records(&self) -> impl Iterator<Item = (KeyId, &KeyRecord)> {
        self.records
            .iter()
            .enumerate()
            .filter_map(|(id, r)| Some((id as KeyId, r.as_ref()?)))
    }

    /// Drops every key whose acceptances are all resolved and were all accepted at least
    /// `window_ms` before `now_ms`; returns the (origin, version) of each acceptance
    /// dropped, for the version index.
    pub(super) fn expire(&mut self, now_ms: u64, window_ms: u64) -> Vec<(OriginId, u64)> {
        let mut dropped = Vec::new();
        while let Some(&(newest, id)) = self.resolved_keys.first() {
            if newest.saturating_add(window_ms) > now_ms {
                break;
            }
            self.resolved_keys.pop_first();
            let record = self.records[id as usize]
                .take()
                .expect("a key id in use has a record");
            self.index.remove(&record.key);
            dropped.extend(record.acceptances.iter().map(|a| (a.origin, a.version)));
            self.free.push(id);
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use crate::crdt::{LocalOp, OpError, OpKind, Origin, Resolution, State};

    fn keyed(key: &str, amount: u64) -> LocalOp {
        LocalOp {
            counter: "c".into(),
            kind: OpKind::Increment,
            amount,
            key: Some(key.into()),
        }
    }

    /// Origin a's replica after it accepted key "k" for `amount` on "c" (version 1), then
    /// folded it (version 2).
    fn accepted_then_folded(amount: u64) -> (Origin, State) {
        let me = Origin::new("a", 1);
        let mut state = State::new();
        commit(&mut state, &me, &[keyed("k", amount)], 0, false);
        commit(&mut state, &me, &[], 1, true);
        (me, state)
    }

    fn commit(state: &mut State, me: &Origin, ops: &[LocalOp], at_ms: u64, fold: bool) {
        let folds = if fold {
            state.plan_folds(me, |_| Resolution::Fold)
        } else {
            Vec::new()
        };
        let batch = state.prepare_batch(me, ops, at_ms, &folds);
        state.apply_local(&batch);
    }

    #[test]
    fn a_key_is_forgotten_only_once_resolved_and_past_its_window_then_counts_again() {
        let me = Origin::new("a", 1);
        let mut state = State::new();
        commit(&mut state, &me, &[keyed("k1", 2)], 1_000, false);
        commit(&mut state, &me, &[keyed("k2", 3)], 5_000, false);
        assert_eq!(state.expire_keys(100_000, 10), 0, "unresolved keys stay");
        commit(&mut state, &me, &[], 6_000, true);
        assert_eq!((state.value("c"), state.unresolved_acceptances()), (5, 0));
        assert_eq!(
            state.expire_keys(10_999, 10_000),
            0,
            "k1 is kept until 11 000"
        );
        assert_eq!(state.expire_keys(11_000, 10_000), 1);
        assert_eq!((state.value("c"), state.key_count()), (5, 1));
        commit(&mut state, &me, &[keyed("k2", 3)], 12_000, false);
        assert_eq!(state.value("c"), 5, "k2 is still within its window");
        commit(&mut state, &me, &[keyed("k1", 2)], 12_000, false);
        assert_eq!(state.value("c"), 7, "past its window, k1 counts again");
    }

    #[test]
    fn a_retry_answers_the_value_and_another_operation_under_the_key_is_refused() {
        let me = Origin::new("a", 1);
        let mut state = State::new();
        let batch = state.prepare_batch(&me, &[keyed("k", 4), keyed("k", 4)], 0, &[]);
        assert_eq!(batch.results, vec![Ok(4), Ok(4)]);
        assert_eq!((batch.retries, batch.delta.entries.len()), (1, 1));
        state.apply_local(&batch);
        let mismatch = |state: &State, op: LocalOp| state.prepare_batch(&me, &[op], 0, &[]).results;
        let refused = Err(OpError::KeyMismatch { key: "k".into() });
        assert_eq!(mismatch(&state, keyed("k", 5)), vec![refused.clone()]);
        let mut other_counter = keyed("k", 4);
        other_counter.counter = "d".into();
        assert_eq!(mismatch(&state, other_counter), vec![refused.clone()]);
        let mut decrement = keyed("k", 4);
        decrement.kind = OpKind::Decrement;
        assert_eq!(mismatch(&state, decrement), vec![refused]);
        state.set_key_limit(1);
        assert_eq!(
            mismatch(&state, keyed("new", 1)),
            vec![Err(OpError::TooManyKeys { limit: 1 })]
        );
        assert_eq!(
            mismatch(&state, keyed("k", 4)),
            vec![Ok(4)],
            "a retry needs no room"
        );
    }

    #[test]
    fn a_keyed_decrement_counts_while_live_and_after_its_fold() {
        let me = Origin::new("a", 1);
        let mut state = State::new();
        let mut dec = keyed("k", 3);
        dec.kind = OpKind::Decrement;
        commit(&mut state, &me, &[keyed("j", 5), dec], 0, false);
        assert_eq!((state.value("c"), state.unresolved_acceptances()), (2, 2));
        commit(&mut state, &me, &[], 1, true);
        assert_eq!((state.value("c"), state.unresolved_acceptances()), (2, 0));
    }

    /// A replica holds a totals entry only if its fold ledger is held too: equal totals
    /// with a ledger that resolves more are news.
    #[test]
    fn holding_a_folded_entry_takes_its_ledger_as_well_as_its_totals() {
        let (me, state) = accepted_then_folded(2);
        let entries = state.entries_after(&me, 0);
        let folded = entries
            .iter()
            .find(|e| e.folded().is_some())
            .expect("the fold's totals entry carries its ledger");
        let ledger = folded.folded().unwrap();
        assert_eq!((ledger.p, ledger.n, folded.p), (2, 0, 2));
        assert!(state.holds_entry(&me, folded));
        let mut more = folded.clone();
        more.keyed = Some(Box::new(crate::crdt::Keyed::Folded(crate::crdt::Folded {
            through: ledger.through + 1,
            ..ledger
        })));
        assert!(
            !state.holds_entry(&me, &more),
            "a ledger resolving more is news"
        );
        let plain = crate::crdt::CounterEntry::plain("c", 2, 0, folded.version);
        assert_eq!(plain.folded(), None);
    }

    /// Two origins accepted the same key at the same version: each acceptance goes out
    /// as its own acceptor made it.
    #[test]
    fn each_acceptance_of_a_key_goes_out_as_its_acceptor_made_it() {
        let (a, b) = (Origin::new("a", 1), Origin::new("b", 1));
        let mut replica = State::new();
        for (origin, at_ms) in [(&a, 100), (&b, 200)] {
            let mut acceptor = State::new();
            commit(&mut acceptor, origin, &[keyed("k", 5)], at_ms, false);
            for delta in acceptor.to_deltas() {
                replica.apply_delta(&delta);
            }
        }
        let accepted_at = |origin: &Origin| -> Vec<(u64, u64)> {
            replica
                .entries_after(origin, 0)
                .iter()
                .filter_map(|e| e.acceptance().map(|k| (e.version, k.at_ms)))
                .collect()
        };
        assert_eq!(
            (accepted_at(&a), accepted_at(&b)),
            (vec![(1, 100)], vec![(1, 200)])
        );
        assert!(replica.has_key("k") && !replica.has_key("j"));
        assert_eq!(replica.value("c"), 5, "one key counts once");
    }

    /// Origin a accepted "k" at v1 and folded it at v2; once the key's window ended on a
    /// it accepted "k" again, a new operation, at v3 (at 100 ms, window 10 ms). Returns
    /// a's three batches.
    fn reaccepted_after_the_window() -> (Origin, State, Vec<crate::crdt::OriginDelta>) {
        let a = Origin::new("a", 1);
        let mut own = State::new();
        let mut batches = Vec::new();
        for (ops, at_ms, fold) in [
            (vec![keyed("k", 5)], 0, false),
            (vec![], 1, true),
            (vec![keyed("k", 5)], 100, false),
        ] {
            if at_ms == 100 {
                assert_eq!(own.expire_keys(100, 10), 1);
            }
            let before = own.known(&a);
            commit(&mut own, &a, &ops, at_ms, fold);
            batches.push(crate::crdt::OriginDelta {
                origin: a.clone(),
                from: before,
                to: own.known(&a),
                entries: own.entries_after(&a, before),
            });
        }
        assert_eq!((own.value("c"), own.unresolved_acceptances()), (10, 1));
        (a, own, batches)
    }

    /// Replaying an origin's batches (its WAL, or a peer that never ran the key's
    /// expiry) meets its second acceptance of "k" while the first is still held: it is a
    /// new operation, not a retry, and counts.
    #[test]
    fn an_acceptance_of_a_key_again_after_its_window_counts_where_the_old_one_is_held() {
        let (a, own, batches) = reaccepted_after_the_window();
        let mut replayed = State::new();
        for batch in &batches {
            replayed.apply_delta(batch);
        }
        assert_eq!(replayed.value("c"), 10);
        assert_eq!(replayed.unresolved_acceptances(), 1);
        // What it holds it passes on: a replica taught by it counts the new one too.
        let mut taught = State::new();
        for delta in replayed.to_deltas() {
            taught.apply_delta(&delta);
        }
        assert_eq!(taught.value("c"), 10);
        assert_eq!(
            replayed.entries_after(&a, 2),
            own.entries_after(&a, 2),
            "the acceptance at v3 is held, as on a"
        );
    }

    /// While an acceptance of the old key is unresolved here, the old key stays and the
    /// new acceptance is ignored here; the origin's fold of it brings its amount.
    #[test]
    fn an_acceptance_again_above_an_old_key_unresolved_here_counts_once_folded() {
        let (a, mut own, batches) = reaccepted_after_the_window();
        let mut gapped = State::new();
        gapped.apply_delta(&batches[0]);
        gapped.apply_delta(&batches[2]);
        gapped.apply_delta(&batches[1]);
        assert_eq!(gapped.known(&a), 3);
        assert_eq!(
            gapped.value("c"),
            5,
            "the new acceptance waits for its fold"
        );
        commit(&mut own, &a, &[], 101, true);
        gapped.apply_delta(&crate::crdt::OriginDelta {
            origin: a.clone(),
            from: 3,
            to: 4,
            entries: own.entries_after(&a, 3),
        });
        assert_eq!(gapped.value("c"), 10);
    }

    /// The new acceptance arriving before the old one leaves the old one ignored (a
    /// second acceptance by the same origin): values are right, and the ignored version,
    /// which carries nothing, does not keep the origin from retiring once all is
    /// resolved and expired.
    #[test]
    fn an_old_acceptance_arriving_after_the_new_one_does_not_block_retirement() {
        let (a, mut own, mut batches) = reaccepted_after_the_window();
        let before = own.known(&a);
        commit(&mut own, &a, &[], 101, true);
        batches.push(crate::crdt::OriginDelta {
            origin: a.clone(),
            from: before,
            to: own.known(&a),
            entries: own.entries_after(&a, before),
        });
        let mut late = State::new();
        for i in [2, 0, 1, 3] {
            late.apply_delta(&batches[i]);
        }
        own.expire_keys(10_000, 10);
        late.expire_keys(10_000, 10);
        assert_eq!((own.value("c"), late.value("c")), (10, 10));
        assert_eq!(late.key_count(), 0);
        assert_eq!(late.retirable_at(&a), Some(4));
        assert!(late.retire(&a, 4));
        assert_eq!(late.value("c"), 10);
    }

    /// Only the same origin's later acceptance ends a key: another origin's acceptance
    /// at a higher version of its own can be a late one of the same operation (made
    /// within the window, concurrently) and must join the key, or it would count twice.
    #[test]
    fn another_origins_late_acceptance_joins_a_key_resolved_here() {
        let (p, q) = (Origin::new("p", 1), Origin::new("q", 1));
        let (mut ps, mut qs) = (State::new(), State::new());
        let plain = LocalOp {
            key: None,
            ..keyed("", 1)
        };
        commit(&mut qs, &q, &[plain], 0, false);
        commit(&mut ps, &p, &[keyed("k", 5)], 0, false);
        commit(&mut qs, &q, &[keyed("k", 5)], 0, false);
        for d in qs.to_deltas() {
            ps.apply_delta(&d);
        }
        commit(&mut ps, &p, &[], 1, true);
        // A replica holds p's acceptance and fold, then q's late acceptance (version 2).
        let mut late = State::new();
        for d in ps.to_deltas().into_iter().filter(|d| d.origin == p) {
            late.apply_delta(&d);
        }
        assert_eq!(late.value("c"), 5);
        for d in qs.to_deltas() {
            late.apply_delta(&d);
        }
        assert_eq!(
            late.value("c"),
            6,
            "k counts once, plus q's plain increment"
        );
    }

    /// What keys count by acceptance shows apart from the origins' totals until it is
    /// resolved into them; the value is the same before and after.
    #[test]
    fn accepted_totals_hold_what_keys_count_until_resolved() {
        let me = Origin::new("a", 1);
        let mut state = State::new();
        commit(&mut state, &me, &[keyed("k", 5)], 0, false);
        let own = |s: &State| s.counter_totals("c").iter().map(|(_, t)| t.p).sum::<u64>();
        assert_eq!((state.accepted_totals("c"), own(&state)), ((5, 0), 0));
        assert_eq!(state.value("c"), 5);
        commit(&mut state, &me, &[], 1, true);
        assert_eq!((state.accepted_totals("c"), own(&state)), ((0, 0), 5));
        assert_eq!(state.value("c"), 5);
        assert_eq!(state.accepted_totals("never"), (0, 0));
    }

    /// A fold held past a gap may be the only entry of its counter, having replaced the
    /// change in range: a snapshot or a transfer of that replica (the range with what is
    /// held past it) must bring it, or the copy knows the range without its value.
    #[test]
    fn a_fold_held_past_a_gap_survives_a_snapshot_and_a_transfer() {
        use crate::crdt::OriginDelta;
        let b = Origin::new("b", 2);
        let plain = |counter: &str, amount| LocalOp {
            counter: counter.into(),
            kind: OpKind::Increment,
            amount,
            key: None,
        };
        let mut own = State::new();
        let mut sent = Vec::new();
        // v1 accepts k (+5 on c), v2 adds 2 to c, v3 adds 1 to z, v4 folds k.
        for (ops, fold) in [
            (vec![keyed("k", 5)], false),
            (vec![plain("c", 2)], false),
            (vec![plain("z", 1)], false),
            (vec![], true),
        ] {
            let before = own.known(&b);
            commit(&mut own, &b, &ops, 0, fold);
            sent.push(OriginDelta {
                origin: b.clone(),
                from: before,
                to: own.known(&b),
                entries: own.entries_after(&b, before),
            });
        }
        // A replica that lost v3 holds c's fold at v4 past its gap.
        let mut gapped = State::new();
        for i in [0, 1, 3] {
            gapped.apply_delta(&sent[i]);
        }
        assert_eq!((gapped.value("c"), gapped.known(&b)), (7, 2));
        gapped.expire_keys(u64::MAX, 0);

        let mut restored = State::new();
        for delta in gapped.to_deltas() {
            restored.apply_delta(&delta);
        }
        let mut taught = State::new();
        taught.apply_delta(&OriginDelta {
            origin: b.clone(),
            from: 0,
            to: gapped.known(&b),
            entries: gapped.entries_after(&b, 0),
        });
        for copy in [&restored, &taught] {
            assert_eq!((copy.value("c"), copy.known(&b)), (7, 2));
        }
        // Once v3 comes, the copy knows all of b, and reads what b reads.
        taught.apply_delta(&sent[2]);
        assert_eq!(
            (taught.value("c"), taught.value("z"), taught.known(&b)),
            (7, 1, 4)
        );
    }

    /// An acceptance that expired here and comes again late (from a peer whose window
    /// has not ended) stays forgotten: its key must not come back, or a later acceptance
    /// of the same key, made after the window, would be ignored as a retry here while
    /// its origin counted it.
    #[test]
    fn a_late_copy_of_an_expired_acceptance_does_not_bring_its_key_back() {
        use crate::crdt::OriginDelta;
        let (a, mut own) = accepted_then_folded(5);
        let first = OriginDelta {
            origin: a.clone(),
            from: 0,
            to: 1,
            entries: own.entries_after(&a, 0)[..1].to_vec(),
        };
        let mut replica = State::new();
        for delta in own.to_deltas() {
            replica.apply_delta(&delta);
        }
        own.expire_keys(100, 10);
        replica.expire_keys(100, 10);
        let again = LocalOp {
            counter: "y".into(),
            ..keyed("k", 8)
        };
        commit(&mut own, &a, &[again], 200, false);
        assert_eq!(own.value("y"), 8, "after its window a key counts again");

        assert!(!replica.apply_delta(&first).changed, "held already");
        assert!(!replica.has_key("k"));
        replica.apply_delta(&OriginDelta {
            origin: a.clone(),
            from: 2,
            to: 3,
            entries: own.entries_after(&a, 2),
        });
        assert_eq!((replica.value("c"), replica.value("y")), (5, 8));
    }

    /// A fold's totals entry merges only where every acceptance its ledger resolves is
    /// held: in a delta that continues what the replica knows, or once the gap before it
    /// is filled; before that it is left out, as if lost.
    #[test]
    fn a_fold_merges_only_where_the_acceptances_it_resolves_are_held() {
        use crate::crdt::OriginDelta;
        let (a, mut acceptor) = accepted_then_folded(5);
        let whole = acceptor.to_deltas();
        let after = |state: &State, from: u64, to: u64| OriginDelta {
            origin: a.clone(),
            from,
            to,
            entries: state.entries_after(&a, from),
        };
        let fold_only = after(&acceptor, 1, 2);
        let fold = fold_only.entries[0].clone();
        assert!(fold.folded().is_some(), "version 2 is the fold");

        let mut in_order = State::new();
        for delta in &whole {
            in_order.apply_delta(delta);
        }
        assert_eq!(
            (in_order.value("c"), in_order.unresolved_acceptances()),
            (5, 0)
        );
        assert!(in_order.holds_entry(&a, &fold));

        let mut gapped = State::new();
        assert!(!gapped.apply_delta(&fold_only).changed);
        assert_eq!((gapped.value("c"), gapped.known(&a)), (0, 0));
        assert!(
            !gapped.holds_entry(&a, &fold),
            "the fold came before its acceptance"
        );
        for delta in &whole {
            gapped.apply_delta(delta);
        }
        assert_eq!((gapped.value("c"), gapped.unresolved_acceptances()), (5, 0));
        assert!(
            !gapped.apply_delta(&fold_only).changed,
            "nothing new the second time"
        );

        let plain = LocalOp {
            key: None,
            ..keyed("", 1)
        };
        commit(&mut acceptor, &a, &[plain], 2, false);
        let grown = after(&acceptor, 2, 3);
        assert!(
            grown.entries[0].folded().is_some(),
            "the totals keep their ledger"
        );
        assert!(
            in_order.apply_delta(&grown).changed,
            "totals grown under the same ledger"
        );
        assert_eq!(in_order.value("c"), 6);
    }

    /// A forged acceptance at version 0 would be resolved on arrival (every ledger's
    /// `through` is at least 0) and, from a smaller origin, win the key resolved: the key
    /// would count nowhere. No origin accepts at version 0: the decoder refuses one and a
    /// replica ignores one.
    #[test]
    fn an_acceptance_at_version_0_does_not_silence_a_key() {
        use crate::crdt::{CounterEntry, KeyAccept, Keyed, OriginDelta};
        let b = Origin::new("b", 1);
        let mut replica = State::new();
        commit(&mut replica, &b, &[keyed("k", 5)], 0, false);
        assert_eq!(replica.value("c"), 5);
        let mut forged = CounterEntry::plain("c", 0, 0, 0);
        forged.keyed = Some(Box::new(Keyed::Accept(KeyAccept {
            key: "k".into(),
            kind: OpKind::Increment,
            amount: 5,
            at_ms: 0,
        })));
        let delta = OriginDelta {
            origin: Origin::new("a", 1),
            from: 0,
            to: 0,
            entries: vec![forged],
        };
        let mut bytes = Vec::new();
        crate::codec::encode_delta(&delta, &mut bytes);
        let refused = crate::codec::Decoder::new(&bytes).delta().is_err();
        replica.apply_delta(&delta);
        assert_eq!(
            (refused, replica.value("c")),
            (true, 5),
            "an acceptance at version 0 silences k"
        );
    }
}
