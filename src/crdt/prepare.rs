//! Local batches: turning a node's own operations (and its folds of resolved keys) into
//! the absolute entries that make them durable, without changing the state; and finding
//! which of its acceptances the node may resolve.
//!
//! Each operation is checked on its own against the totals the earlier operations of
//! the batch produce, and a refused one changes nothing. A keyed operation whose key is
//! already held, or already accepted earlier in the batch, is a retry: it changes
//! nothing and answers the counter's value, unless its counter, direction or amount
//! differ, which refuses it.

use super::keyed::Acceptance;
use super::{
    saturate, CounterEntry, Fold, Folded, KeyAccept, Keyed, LocalOp, OpError, OpKind, Origin,
    OriginDelta, PendingKey, PreparedBatch, Resolution, State, Totals, MAX_VERSION,
};
use super::{validate_counter_name, validate_key};
use std::collections::{BTreeMap, HashMap};

/// A counter touched by the batch: this origin's totals and ledger after it, the
/// counter's sums after it, and when the batch first touched it.
#[derive(Clone, Copy, Debug)]
struct Touched {
    own: Totals,
    folded: Option<Folded>,
    sum_p: u128,
    sum_n: u128,
    first_touch: usize,
    /// The counter does not exist yet.
    new: bool,
    /// This origin's totals or ledger change: the batch carries a totals entry for it
    /// (a keyed operation alone changes neither).
    changed: bool,
}

/// A key accepted by the batch.
#[derive(Debug)]
struct Accepted<'a> {
    counter: &'a str,
    accept: KeyAccept,
    first_touch: usize,
}

/// The batch as it is built.
#[derive(Default)]
struct Draft<'a> {
    touched: BTreeMap<&'a str, Touched>,
    accepted: Vec<Accepted<'a>>,
    /// Key → index in `accepted`.
    keys: HashMap<&'a str, usize>,
    touches: usize,
    new_counters: usize,
    retries: u64,
}

impl Draft<'_> {
    fn next_touch(&mut self) -> usize {
        self.touches += 1;
        self.touches
    }
}

impl State {
    /// Turns operations by `me` into absolute entries with fresh versions, without
    /// changing the state; see [`State::prepare_batch`].
    pub fn prepare_local(&self, me: &Origin, ops: &[LocalOp]) -> PreparedBatch {
        self.prepare_batch(me, ops, 0, &[])
    }

    /// Turns operations by `me` (keyed ones accepted at `at_ms`, wall-clock milliseconds)
    /// and its `folds` into absolute entries with fresh versions, without changing the
    /// state: one totals entry per counter touched, in the order first touched, and one
    /// acceptance per new keyed operation.
    pub fn prepare_batch(
        &self,
        me: &Origin,
        ops: &[LocalOp],
        at_ms: u64,
        folds: &[Fold],
    ) -> PreparedBatch {
        let from = self.known(me);
        let mut draft = Draft::default();
        for fold in folds {
            self.draft_fold(me, fold, &mut draft);
        }
        let mut results: Vec<Result<i64, OpError>> = ops
            .iter()
            .map(|op| self.prepare_one(me, op, at_ms, &mut draft))
            .collect();
        let items = draft.touched.len() + draft.accepted.len();
        if from
            .checked_add(items as u64)
            .filter(|v| *v <= MAX_VERSION)
            .is_none()
        {
            for result in &mut results {
                if result.is_ok() {
                    *result = Err(OpError::VersionsExhausted);
                }
            }
            return PreparedBatch {
                delta: OriginDelta {
                    origin: me.clone(),
                    from,
                    to: from,
                    entries: Vec::new(),
                },
                results,
                retries: 0,
            };
        }
        let entries = self.draft_entries(me, &mut draft, from);
        PreparedBatch {
            delta: OriginDelta {
                origin: me.clone(),
                from,
                to: from + entries.len() as u64,
                entries,
            },
            results,
            retries: draft.retries,
        }
    }

    /// The draft's entries in the order first touched, numbered from `from + 1`.
    fn draft_entries(&self, me: &Origin, draft: &mut Draft, from: u64) -> Vec<CounterEntry> {
        let mut items: Vec<(usize, CounterEntry)> = Vec::new();
        for (counter, t) in draft.touched.iter().filter(|(_, t)| t.changed) {
            let folded = t.folded.or_else(|| {
                let counter = self.counters.id(counter)?;
                self.keys.folded(counter, *self.origins.get(me)?)
            });
            let mut entry = CounterEntry::plain(*counter, t.own.p, t.own.n, 0);
            entry.keyed = folded.map(|f| Box::new(Keyed::Folded(f)));
            items.push((t.first_touch, entry));
        }
        for a in draft.accepted.drain(..) {
            let mut entry = CounterEntry::plain(a.counter, 0, 0, 0);
            entry.keyed = Some(Box::new(Keyed::Accept(a.accept)));
            items.push((a.first_touch, entry));
        }
        items.sort_by_key(|(touch, _)| *touch);
        items
            .into_iter()
            .zip(from + 1..)
            .map(|((_, mut entry), version)| {
                entry.version = version;
                entry
            })
            .collect()
    }

    /// The counter as the batch left it so far (or as the state holds it).
    fn touched<'a>(
        &self,
        me: &Origin,
        counter: &'a str,
        draft: &mut Draft<'a>,
    ) -> Result<Touched, OpError> {
        if let Some(t) = draft.touched.get(counter) {
            return Ok(*t);
        }
        let id = self.counters.id(counter);
        if id.is_none() && self.counters.len() + draft.new_counters >= self.counter_limit {
            return Err(OpError::TooManyCounters {
                limit: self.counter_limit,
            });
        }
        let (sum_p, sum_n) = id.map_or((0, 0), |id| self.sums(id));
        Ok(Touched {
            own: self.totals_of(me, counter).unwrap_or_default(),
            folded: None,
            sum_p,
            sum_n,
            first_touch: draft.next_touch(),
            new: id.is_none(),
            changed: false,
        })
    }

    fn set_touched<'a>(&self, counter: &'a str, t: Touched, draft: &mut Draft<'a>) {
        if draft.touched.insert(counter, t).is_none() && t.new {
            draft.new_counters += 1;
        }
    }

    fn draft_fold<'a>(&self, me: &Origin, fold: &'a Fold, draft: &mut Draft<'a>) {
        let Ok(mut t) = self.touched(me, &fold.counter, draft) else {
            return;
        };
        let current = self
            .counters
            .id(&fold.counter)
            .zip(self.origins.get(me))
            .and_then(|(c, &o)| self.keys.folded(c, o))
            .unwrap_or_default();
        let mut folded = t.folded.unwrap_or(current);
        folded.p += fold.p;
        folded.n += fold.n;
        folded.through = folded.through.max(fold.through);
        t.own.p += fold.p;
        t.own.n += fold.n;
        t.folded = Some(folded);
        t.changed = true;
        self.set_touched(&fold.counter, t, draft);
    }

    fn prepare_one<'a>(
        &self,
        me: &Origin,
        op: &'a LocalOp,
        at_ms: u64,
        draft: &mut Draft<'a>,
    ) -> Result<i64, OpError> {
        validate_counter_name(&op.counter).map_err(OpError::BadName)?;
        if op.amount == 0 || op.amount > i64::MAX as u64 {
            return Err(OpError::BadAmount(op.amount));
        }
        if let Some(key) = &op.key {
            validate_key(key).map_err(OpError::BadKey)?;
            if let Some(same) = self.accepted_before(op, key, draft) {
                same?;
                draft.retries += 1;
                return Ok(match draft.touched.get(op.counter.as_str()) {
                    Some(t) => saturate(t.sum_p as i128 - t.sum_n as i128),
                    None => self.value(&op.counter),
                });
            }
        }
        if op.key.is_some() && self.keys.len() + draft.accepted.len() >= self.key_limit {
            return Err(OpError::TooManyKeys {
                limit: self.key_limit,
            });
        }
        let slot = self.touched(me, &op.counter, draft)?;
        let limit = i64::MAX as u128;
        let amount = op.amount as u128;
        let mut next = slot;
        let (sum, own) = match op.kind {
            OpKind::Increment => (&mut next.sum_p, &mut next.own.p),
            OpKind::Decrement => (&mut next.sum_n, &mut next.own.n),
        };
        if *sum + amount > limit {
            return Err(OpError::Overflow {
                counter: op.counter.clone(),
            });
        }
        *sum += amount;
        match &op.key {
            // A keyed operation counts by its acceptance; the totals stay.
            Some(key) => {
                let first_touch = draft.next_touch();
                draft.keys.insert(key, draft.accepted.len());
                draft.accepted.push(Accepted {
                    counter: &op.counter,
                    accept: KeyAccept {
                        key: key.clone(),
                        kind: op.kind,
                        amount: op.amount,
                        at_ms,
                    },
                    first_touch,
                });
            }
            None => {
                *own += op.amount;
                next.changed = true;
            }
        }
        self.set_touched(&op.counter, next, draft);
        Ok(saturate(next.sum_p as i128 - next.sum_n as i128))
    }

    /// Whether `key` was accepted before (held, or earlier in the batch): `Ok` if for
    /// the same operation, the mismatch if not; `None` if it is new.
    fn accepted_before(
        &self,
        op: &LocalOp,
        key: &str,
        draft: &Draft,
    ) -> Option<Result<(), OpError>> {
        let same = if let Some(&i) = draft.keys.get(key) {
            let a = &draft.accepted[i];
            a.counter == op.counter && a.accept.kind == op.kind && a.accept.amount == op.amount
        } else {
            let record = self.keys.record(self.keys.id(key)?);
            let w = self.keys.winner(record, &self.origin_records);
            self.counters.name(w.counter) == op.counter
                && w.kind == op.kind
                && w.amount == op.amount
        };
        Some(if same {
            Ok(())
        } else {
            Err(OpError::KeyMismatch {
                key: key.to_owned(),
            })
        })
    }

    /// Which of `me`'s acceptances it may resolve now, counter by counter in version
    /// order, stopping at the first `decide` answers [`Resolution::Wait`] for: the folds
    /// for the next batch.
    pub fn plan_folds(
        &self,
        me: &Origin,
        mut decide: impl FnMut(&PendingKey) -> Resolution,
    ) -> Vec<Fold> {
        let Some(&me_id) = self.origins.get(me) else {
            return Vec::new();
        };
        let mut folds = Vec::new();
        for counter in self.keys.counters_unresolved_by(me_id) {
            let mut fold = Fold {
                counter: self.counters.name(counter).to_owned(),
                through: 0,
                p: 0,
                n: 0,
                resolved: 0,
                folded: 0,
            };
            for (version, key) in self.keys.unresolved_of(counter, me_id) {
                let record = self.keys.record(key);
                let pending = PendingKey {
                    key: &record.key,
                    acceptances: record
                        .acceptances
                        .iter()
                        .map(|a| (&self.origin_records[a.origin as usize].origin, a.version))
                        .collect(),
                    winner: &self.origin_records
                        [self.keys.winner(record, &self.origin_records).origin as usize]
                        .origin,
                    resolved_elsewhere: record
                        .acceptances
                        .iter()
                        .any(|a| a.origin != me_id && self.keys.is_resolved(a)),
                };
                match decide(&pending) {
                    Resolution::Wait => break,
                    Resolution::Pass => {}
                    Resolution::Fold => {
                        fold.folded += 1;
                        let own = own_acceptance(&record.acceptances, me_id, version);
                        match own.kind {
                            OpKind::Increment => fold.p += own.amount,
                            OpKind::Decrement => fold.n += own.amount,
                        }
                    }
                }
                fold.through = version;
                fold.resolved += 1;
            }
            if fold.through > 0 {
                folds.push(fold);
            }
        }
        folds
    }
}

fn own_acceptance(acceptances: &[Acceptance], me: u32, version: u64) -> Acceptance {
    *acceptances
        .iter()
        .find(|a| a.origin == me && a.version == version)
        .expect("an unresolved acceptance of this origin is in its key's record")
}
