//! The PN-counter CRDT: named counters, origins, per-(counter, origin) totals, merge,
//! digests and deltas.
//!
//! Every replica holds, for each counter and each origin, the absolute totals `p`
//! (increments) and `n` (decrements) that origin has made, stamped with the origin's
//! version of its last change. Merge is the per-field maximum, so it is commutative,
//! associative and idempotent, and replicas exchange absolute totals, never "+1".
//!
//! For scuttlebutt reconciliation each origin also has a *known* version: the highest
//! version `v` such that this replica holds everything the origin had changed up to `v`.
//! Deltas carry explicit `(from, to]` ranges; a replica advances `known` only when a delta
//! starts at or below what it already knows, so a lost or reordered message can delay a
//! digest but never make it claim something the replica lacks. It also advances over
//! versions it holds one after another (a change held directly is a change known).
//!
//! A replica can hold entries above `known` (from a delta with a gap). They are passed on
//! with every delta for their origin, beyond its range: if the origin is gone for good and
//! no replica holds the change in the gap, its later changes still reach every replica.

mod compact;
mod keyed;
mod prepare;
mod retire;
mod table;

pub use compact::{AdoptRefusal, CompactedSum, Compaction};
pub use keyed::{Folded, KeyAccept, Keyed, MAX_KEY_BYTES};
pub use retire::RetireStats;

use crate::summary::{self, Span};
use keyed::{Acceptance, KeyId, KeyStore};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use table::{CounterId, CounterTable, OriginId, Slot};

/// The counter used when none is named.
pub const DEFAULT_COUNTER: &str = "default";
/// Longest counter name, in bytes.
pub const MAX_COUNTER_NAME_BYTES: usize = 128;
/// Longest node name, in bytes.
pub const MAX_NODE_NAME_BYTES: usize = 128;
/// The highest version an origin may reach, and the highest a frame or record may name.
/// At a billion changes a second an origin needs 146 years to get there; a claim above it
/// can only be forged or corrupt, and keeping every version under it leaves room for
/// arithmetic on versions that can never wrap.
pub const MAX_VERSION: u64 = 1 << 62;
/// The highest total `p` or `n` an entry may hold: a counter's value is an i64.
pub const MAX_TOTAL: u64 = i64::MAX as u64;

/// Checks a counter name: UTF-8 (guaranteed by `&str`), 1 to 128 bytes, no control characters.
pub fn validate_counter_name(name: &str) -> Result<(), NameError> {
    validate_name(name, MAX_COUNTER_NAME_BYTES, "counter name")
}

/// Checks an idempotency key with the same rules as a counter name.
pub fn validate_key(key: &str) -> Result<(), NameError> {
    validate_name(key, MAX_KEY_BYTES, "idempotency key")
}

/// Checks a node name with the same rules as a counter name.
pub fn validate_node_name(name: &str) -> Result<(), NameError> {
    validate_name(name, MAX_NODE_NAME_BYTES, "node name")
}

fn validate_name(name: &str, max: usize, what: &'static str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError(format!("{what} is empty")));
    }
    if name.len() > max {
        return Err(NameError(format!(
            "{what} is {} bytes long; the limit is {max}",
            name.len()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(NameError(format!("{what} contains a control character")));
    }
    Ok(())
}

/// A name that breaks the naming rules; the message says which rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameError(pub String);

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NameError {}

/// One replica's identity: the node's name plus an incarnation made when its data
/// directory was created. A node that lost its data gets a new incarnation, so its new
/// changes can never be swallowed by the max-merge of its old, larger entries.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Origin {
    pub node: String,
    pub incarnation: u64,
}

impl Origin {
    pub fn new(node: impl Into<String>, incarnation: u64) -> Origin {
        Origin {
            node: node.into(),
            incarnation,
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{:016x}", self.node, self.incarnation)
    }
}

/// The totals one origin contributed to one counter, and the version of its last change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub p: u64,
    pub n: u64,
    pub version: u64,
}

impl Totals {
    /// The per-field maximum; returns whether anything grew.
    fn merge(&mut self, other: Totals) -> bool {
        let before = *self;
        self.p = self.p.max(other.p);
        self.n = self.n.max(other.n);
        self.version = self.version.max(other.version);
        *self != before
    }
}

/// One counter's entry inside an [`OriginDelta`] (the origin is the delta's): the
/// origin's totals for the counter, or one acceptance of an idempotency key (see
/// [`Keyed`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterEntry {
    pub counter: String,
    pub p: u64,
    pub n: u64,
    pub version: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyed: Option<Box<Keyed>>,
}

impl CounterEntry {
    /// A plain totals entry.
    pub fn plain(counter: impl Into<String>, p: u64, n: u64, version: u64) -> CounterEntry {
        CounterEntry {
            counter: counter.into(),
            p,
            n,
            version,
            keyed: None,
        }
    }

    /// The fold ledger of a totals entry, if it has one.
    pub fn folded(&self) -> Option<Folded> {
        match self.keyed.as_deref() {
            Some(Keyed::Folded(f)) => Some(*f),
            _ => None,
        }
    }

    /// The acceptance an entry carries, if it is one.
    pub fn acceptance(&self) -> Option<&KeyAccept> {
        match self.keyed.as_deref() {
            Some(Keyed::Accept(a)) => Some(a),
            _ => None,
        }
    }

    fn totals(&self) -> Totals {
        Totals {
            p: self.p,
            n: self.n,
            version: self.version,
        }
    }
}

/// Everything one origin changed in the version range `(from, to]`, in version order.
/// A receiver that knows the origin up to at least `from` knows it up to `to` after
/// applying it. Entries superseded by a later change of the same counter are absent.
/// Entries above `to` may follow: changes the sender holds beyond what it knows without
/// a gap; they merge but vouch for no range.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginDelta {
    pub origin: Origin,
    pub from: u64,
    pub to: u64,
    pub entries: Vec<CounterEntry>,
}

/// The highest contiguous version a replica knows of one origin.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginVersion {
    pub origin: Origin,
    pub version: u64,
}

/// A digest: for every origin a replica has heard of, the version it knows it up to.
pub type Digest = Vec<OriginVersion>;

/// What applying a delta did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Some counter's totals grew.
    pub changed: bool,
    /// The origin's known version moved forward.
    pub advanced: bool,
}

/// Why a local operation was refused. Nothing is applied when an operation is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpError {
    BadName(NameError),
    /// The amount was 0 or above i64::MAX.
    BadAmount(u64),
    /// The operation would take the counter's total of increments or decrements past i64::MAX.
    Overflow {
        counter: String,
    },
    /// The origin has used every version up to [`MAX_VERSION`].
    VersionsExhausted,
    /// The idempotency key breaks the naming rules.
    BadKey(NameError),
    /// The idempotency key was already used for a different operation (counter,
    /// direction or amount).
    KeyMismatch {
        key: String,
    },
    /// A new idempotency key beyond the replica's limit of keys held (within their
    /// retention window keys are never evicted to make room).
    TooManyKeys {
        limit: usize,
    },
    /// The operation would create a counter beyond the replica's limit.
    TooManyCounters {
        limit: usize,
    },
}

impl fmt::Display for OpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpError::BadName(e) | OpError::BadKey(e) => e.fmt(f),
            OpError::TooManyKeys { limit } => write!(
                f,
                "this node holds its limit of {limit} idempotency keys within their retention \
                 window; a new key cannot be accepted until older ones expire"
            ),
            OpError::KeyMismatch { key } => write!(
                f,
                "idempotency key {key:?} was already used for a different operation \
                 (counter, direction or amount); nothing was applied"
            ),
            OpError::BadAmount(by) => write!(f, "amount {by} is out of range 1..={}", i64::MAX),
            OpError::Overflow { counter } => write!(
                f,
                "counter {counter:?} would pass {} in total; nothing was applied",
                i64::MAX
            ),
            OpError::VersionsExhausted => write!(
                f,
                "this node's origin has used every version up to {MAX_VERSION}; nothing was applied"
            ),
            OpError::TooManyCounters { limit } => write!(
                f,
                "this node holds its limit of {limit} counters; a new counter cannot be created"
            ),
        }
    }
}

impl std::error::Error for OpError {}

/// Increment or decrement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OpKind {
    Increment,
    Decrement,
}

/// One local operation a client asked for, with its idempotency key if it has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalOp {
    pub counter: String,
    pub kind: OpKind,
    pub amount: u64,
    pub key: Option<String>,
}

/// What one origin resolves of its acceptances of one counter in a batch: every
/// acceptance up to `through`, adding the won ones' amounts (`p`, `n`) to its totals.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fold {
    pub counter: String,
    pub through: u64,
    pub p: u64,
    pub n: u64,
    /// Acceptances resolved, and of those the ones folded (won).
    pub resolved: u64,
    pub folded: u64,
}

/// How an acceptor may resolve one of its acceptances: what the node core decides from
/// what it knows of the cluster (see `node_core::stability`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// Not yet: the key may still be accepted elsewhere, or its winner has not folded it.
    Wait,
    /// Fold the amount into the acceptor's totals (it won the key).
    Fold,
    /// Pass over it (another acceptance won the key).
    Pass,
}

/// One of this node's unresolved acceptances, as the node core sees it to decide.
#[derive(Debug)]
pub struct PendingKey<'a> {
    pub key: &'a str,
    /// Every acceptance of the key this replica holds: acceptor and version.
    pub acceptances: Vec<(&'a Origin, u64)>,
    /// The acceptor that decides the key (the smallest origin).
    pub winner: &'a Origin,
    /// Some acceptance of the key is already resolved by its acceptor.
    pub resolved_elsewhere: bool,
}

/// A batch of local operations turned into the absolute entries that make them durable.
/// Made by [`State::prepare_local`] without changing the state; logged; then applied
/// with [`State::apply_local`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedBatch {
    /// The origin's changes, `(from, to]`: one totals entry per counter touched, one
    /// acceptance per new keyed operation.
    pub delta: OriginDelta,
    /// Per operation, in the order given: the counter's value after it, or why it was refused.
    pub results: Vec<Result<i64, OpError>>,
    /// Keyed operations that were retries of an operation already accepted (they
    /// change nothing).
    pub retries: u64,
}

impl PreparedBatch {
    /// Whether the batch changes nothing (every operation refused, or none given).
    pub fn is_empty(&self) -> bool {
        self.delta.entries.is_empty()
    }
}

/// What a replica keeps per origin.
#[derive(Clone, Debug)]
struct OriginRecord {
    origin: Origin,
    /// The origin's place in digest summaries ([`summary::origin_hash`]).
    hash: u64,
    known: u64,
    /// version → what holds it: one per (counter, this origin) totals entry and one per
    /// acceptance; drives deltas in version order.
    by_version: BTreeMap<u64, Item>,
    /// How many counters hold a totals entry of this origin.
    slots: u32,
    /// Set once the origin is retired (see [`retire`]): its entries as they were then.
    retired: Option<Box<retire::Tombstone>>,
}

impl OriginRecord {
    /// Whether the origin is compacted (see [`compact`]).
    fn is_compacted(&self) -> bool {
        self.retired.as_ref().is_some_and(|t| t.compacted)
    }

    /// The highest version held: what is known without a gap, or any change beyond it.
    fn top(&self) -> u64 {
        let held = self.by_version.keys().next_back().copied().unwrap_or(0);
        self.known.max(held)
    }

    /// The versions held above `known` (changes past a gap).
    fn beyond(&self) -> impl Iterator<Item = u64> + '_ {
        use std::ops::Bound::{Excluded, Unbounded};
        self.by_version
            .range((Excluded(self.known), Unbounded))
            .map(|(&v, _)| v)
    }
}

/// What an origin's version holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Item {
    /// The origin's totals entry of a counter.
    Totals(CounterId),
    /// An acceptance of a key.
    Accept(KeyId),
    /// A second acceptance of a key by the same origin (only a faulty origin makes one):
    /// held so the version counts as known, never counted or sent.
    Ignored,
}

/// The whole replicated state of one replica.
#[derive(Clone, Debug)]
pub struct State {
    counters: CounterTable,
    /// Origin → id, in origin order.
    origins: BTreeMap<Origin, OriginId>,
    /// What is kept per origin, by id.
    origin_records: Vec<OriginRecord>,
    /// Every origin by its hash ([`summary::origin_hash`]), for summaries of a span.
    by_hash: BTreeSet<(u64, OriginId)>,
    /// Idempotency keys and their acceptances.
    keys: KeyStore,
    /// Most counters a local operation may create; see [`State::set_counter_limit`].
    counter_limit: usize,
    /// Most idempotency keys a local operation may add; see [`State::set_key_limit`].
    key_limit: usize,
    /// Counts the changes made through `&mut` methods; see [`State::generation`].
    generation: u64,
    /// Per counter id, the totals of the retired origins (see [`retire`]), compacted
    /// ones included.
    base: Vec<(u128, u128)>,
    /// Per counter id, the totals of the compacted origins (see [`compact`]).
    compacted: Vec<(u128, u128)>,
    retirements: retire::RetireStats,
    /// Retirements recovery replayed but could not make yet (see
    /// [`State::retire_all`]), by origin.
    logged_retirements: HashMap<Origin, u64>,
}

impl Default for State {
    fn default() -> State {
        State {
            counters: CounterTable::default(),
            origins: BTreeMap::new(),
            origin_records: Vec::new(),
            by_hash: BTreeSet::new(),
            keys: KeyStore::default(),
            counter_limit: usize::MAX,
            key_limit: usize::MAX,
            generation: 0,
            base: Vec::new(),
            compacted: Vec::new(),
            retirements: retire::RetireStats::default(),
            logged_retirements: HashMap::new(),
        }
    }
}

impl State {
    pub fn new() -> State {
        State::default()
    }

    /// Caps the number of counters: a local operation that would create a counter beyond
    /// `limit` is refused with [`OpError::TooManyCounters`]. Counters learned from peers
    /// are always merged (refusing them would keep replicas apart for good), so a replica
    /// can hold more than its limit when its peers allow more.
    pub fn set_counter_limit(&mut self, limit: usize) {
        self.counter_limit = limit;
    }

    /// Caps the idempotency keys held: a keyed operation with a new key beyond `limit`
    /// is refused with [`OpError::TooManyKeys`]. Keys learned from peers always merge.
    pub fn set_key_limit(&mut self, limit: usize) {
        self.key_limit = limit;
    }

    /// The counter's value, Σp − Σn. A counter never written reads 0. Concurrent writes on
    /// different replicas can, together, pass the i64 range; the value then saturates.
    pub fn value(&self, counter: &str) -> i64 {
        self.counters.id(counter).map_or(0, |id| self.value_of(id))
    }

    /// The increments and decrements of `counter` that idempotency keys count by
    /// acceptance: accepted, not yet resolved into an origin's totals.
    pub fn accepted_totals(&self, counter: &str) -> (u128, u128) {
        self.counters
            .id(counter)
            .map_or((0, 0), |id| self.keys.live(id))
    }

    /// A counter's value: its totals and the keys it counts by acceptance.
    fn value_of(&self, id: CounterId) -> i64 {
        let (p, n) = self.sums(id);
        saturate(p as i128 - n as i128)
    }

    /// A counter's increments and decrements: its totals and the keys it counts by
    /// acceptance.
    fn sums(&self, id: CounterId) -> (u128, u128) {
        let (p, n) = sums(self.counters.slots(id));
        let (kp, kn) = self.keys.live(id);
        let (rp, rn) = self.retired_sums(id);
        (p + kp + rp, n + kn + rn)
    }

    /// Every counter with its value, in name order.
    pub fn values(&self) -> impl Iterator<Item = (&str, i64)> {
        self.first_values(usize::MAX).into_iter()
    }

    /// The first `limit` counters by name with their values, in name order, without
    /// sorting all of them when `limit` is small.
    pub fn first_values(&self, limit: usize) -> Vec<(&str, i64)> {
        let mut names: Vec<(&str, CounterId)> = self
            .counters
            .ids()
            .map(|id| (self.counters.name(id), id))
            .collect();
        if limit < names.len() {
            names.select_nth_unstable_by(limit, |a, b| a.0.cmp(b.0));
            names.truncate(limit);
        }
        names.sort_unstable_by(|a, b| a.0.cmp(b.0));
        names
            .into_iter()
            .map(|(name, id)| (name, self.value_of(id)))
            .collect()
    }

    /// The per-origin totals of one counter, in origin order: its live origins' (the
    /// retired ones' are summed in [`State::retired_totals`]).
    pub fn counter_totals(&self, counter: &str) -> Vec<(Origin, Totals)> {
        let mut totals: Vec<(Origin, Totals)> = self
            .counters
            .id(counter)
            .map(|id| {
                self.counters
                    .slots(id)
                    .map(|s| {
                        (
                            self.origin_records[s.origin as usize].origin.clone(),
                            s.totals,
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        totals.sort_by(|a, b| a.0.cmp(&b.0));
        totals
    }

    pub fn counter_count(&self) -> usize {
        self.counters.len()
    }

    /// A number that differs whenever the state may have changed since it was read:
    /// what caches of figures derived from the state (summaries) are checked against.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Number of origins heard of.
    pub fn origin_count(&self) -> usize {
        self.origins.len()
    }

    /// Number of (counter, origin) entries.
    pub fn entry_count(&self) -> usize {
        self.counters.entries()
    }

    /// Whether this replica holds an acceptance of `key`.
    pub fn has_key(&self, key: &str) -> bool {
        self.keys.id(key).is_some()
    }

    /// Idempotency keys held, resolved ones (tombstones) included.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Acceptances of idempotency keys not yet resolved by their acceptor.
    pub fn unresolved_acceptances(&self) -> usize {
        self.keys.unresolved()
    }

    /// Whether `origin` has acceptances of keys it has not resolved.
    pub fn has_unresolved_of(&self, origin: &Origin) -> bool {
        self.origins
            .get(origin)
            .is_some_and(|&id| self.keys.has_unresolved_by(id))
    }

    /// Forgets every key whose acceptances are all resolved and were all accepted at
    /// least `window_ms` before `now_ms` (wall-clock milliseconds); a retry of one counts
    /// again. Local to this replica: each forgets on its own clock. Returns how many.
    pub fn expire_keys(&mut self, now_ms: u64, window_ms: u64) -> usize {
        self.generation += 1;
        let before = self.keys.len();
        for (origin, version) in self.keys.expire(now_ms, window_ms) {
            self.origin_records[origin as usize]
                .by_version
                .remove(&version);
        }
        before - self.keys.len()
    }

    /// The version this replica knows `origin` up to (0 if never heard of).
    pub fn known(&self, origin: &Origin) -> u64 {
        self.record(origin).map_or(0, |o| o.known)
    }

    /// Whether this replica's entry of `origin` in `counter` has totals of at least
    /// `p` and `n`.
    pub fn holds(&self, origin: &Origin, counter: &str, p: u64, n: u64) -> bool {
        self.totals_of(origin, counter)
            .is_some_and(|t| t.p >= p && t.n >= n)
    }

    /// Whether this replica holds `entry` of `origin` already: totals (and fold ledger)
    /// at least as large, or the acceptance at that version.
    pub fn holds_entry(&self, origin: &Origin, entry: &CounterEntry) -> bool {
        if entry.acceptance().is_some() {
            return self.origins.get(origin).is_some_and(|&id| {
                self.origin_records[id as usize]
                    .by_version
                    .contains_key(&entry.version)
            });
        }
        let ledger_held = entry.folded().is_none_or(|f| {
            let held = self
                .counters
                .id(&entry.counter)
                .zip(self.origins.get(origin))
                .and_then(|(c, &o)| self.keys.folded(c, o))
                .unwrap_or_default();
            held.p >= f.p && held.n >= f.n && held.through >= f.through
        });
        ledger_held && self.holds(origin, &entry.counter, entry.p, entry.n)
    }

    fn totals_of(&self, origin: &Origin, counter: &str) -> Option<Totals> {
        let origin = *self.origins.get(origin)?;
        self.counters.get(self.counters.id(counter)?, origin)
    }

    /// For every origin heard of, the version it is known up to.
    pub fn digest(&self) -> Digest {
        self.origins
            .iter()
            .map(|(origin, &id)| OriginVersion {
                origin: origin.clone(),
                version: self.origin_records[id as usize].known,
            })
            .collect()
    }

    /// The entries of `origin` with versions above `after`, in version order: those in
    /// `(after, known]`, then any held beyond `known`. These are what a peer that knows
    /// `origin` up to `after` may lack.
    pub fn entries_after(&self, origin: &Origin, after: u64) -> Vec<CounterEntry> {
        let Some(&id) = self.origins.get(origin) else {
            return Vec::new();
        };
        let record = &self.origin_records[id as usize];
        if after == u64::MAX {
            return Vec::new();
        }
        if let Some(tombstone) = &record.retired {
            return self.tombstone_entries(tombstone, after);
        }
        record
            .by_version
            .range(after + 1..)
            .filter_map(|(&version, &item)| self.entry_of(id, version, item))
            .collect()
    }

    /// The entry an origin's version holds, as deltas carry it.
    fn entry_of(&self, origin: OriginId, version: u64, item: Item) -> Option<CounterEntry> {
        match item {
            Item::Totals(counter) => Some(self.totals_entry(counter, origin)),
            Item::Accept(key) => {
                let record = self.keys.record(key);
                let a = record
                    .acceptances
                    .iter()
                    .find(|a| a.origin == origin && a.version == version)?;
                Some(self.acceptance_entry(&record.key, a))
            }
            Item::Ignored => None,
        }
    }

    /// An origin's totals entry of a counter, with its fold ledger if it has one.
    fn totals_entry(&self, counter: CounterId, origin: OriginId) -> CounterEntry {
        let t = self.counters.get(counter, origin).unwrap_or_default();
        let mut entry = CounterEntry::plain(self.counters.name(counter), t.p, t.n, t.version);
        entry.keyed = self
            .keys
            .folded(counter, origin)
            .map(|f| Box::new(Keyed::Folded(f)));
        entry
    }

    fn acceptance_entry(&self, key: &str, a: &Acceptance) -> CounterEntry {
        let mut entry = CounterEntry::plain(self.counters.name(a.counter), 0, 0, a.version);
        entry.keyed = Some(Box::new(Keyed::Accept(KeyAccept {
            key: key.to_owned(),
            kind: a.kind,
            amount: a.amount,
            at_ms: a.at_ms,
        })));
        entry
    }

    /// The origins this replica has something of that a peer with `digest` may lack (a
    /// longer known range, or entries above the peer's), with the version the peer knows
    /// each up to. A compacted origin is never among them: its entries are gone, and a
    /// range sent without them would claim what it does not carry (see
    /// [`State::differs_on_compacted`]).
    pub fn missing_from(&self, digest: &Digest) -> Vec<(Origin, u64)> {
        self.missing_from_in(digest, Span::ALL)
    }

    /// [`State::missing_from`] among the origins whose hash lies in `span`, for a peer
    /// whose digest of that span is `digest`.
    pub fn missing_from_in(&self, digest: &Digest, span: Span) -> Vec<(Origin, u64)> {
        let theirs: HashMap<&Origin, u64> =
            digest.iter().map(|ov| (&ov.origin, ov.version)).collect();
        let mut missing: Vec<(Origin, u64)> = self
            .records_in(span)
            .filter(|record| !record.is_compacted())
            .filter_map(|record| {
                let their = theirs.get(&record.origin).copied().unwrap_or(0);
                (record.top() > their).then(|| (record.origin.clone(), their))
            })
            .collect();
        missing.sort_unstable();
        missing
    }

    /// Whether a peer whose digest of `span` is `digest` differs from this replica on
    /// an origin it compacted: it lacks part of it (what it can get only by adopting
    /// this replica's compaction), or holds changes past the compaction (it may be the
    /// writer, which must be told: its changes are refused here).
    pub fn differs_on_compacted(&self, digest: &Digest, span: Span) -> bool {
        if self.retirements.compacted == 0 {
            return false;
        }
        let theirs: HashMap<&Origin, u64> =
            digest.iter().map(|ov| (&ov.origin, ov.version)).collect();
        self.records_in(span).any(|record| {
            record.is_compacted()
                && theirs.get(&record.origin).copied().unwrap_or(0) != record.known
        })
    }

    /// Whether `digest` shows some origin further than this replica knows it.
    pub fn lacks_any(&self, digest: &Digest) -> bool {
        digest.iter().any(|ov| ov.version > self.known(&ov.origin))
    }

    /// Per bucket of `span` cut into `2^bits`, the sum of its origins' entry hashes: a
    /// digest summary (see [`crate::summary`]).
    pub fn bucket_hashes(&self, span: Span, bits: u8) -> Vec<u64> {
        let mut hashes = vec![0u64; 1 << bits.min(summary::MAX_BITS)];
        for record in self.records_in(span).filter(|r| r.top() > 0) {
            let beyond = summary::held_hash(record.beyond());
            let bucket = &mut hashes[span.bucket_of(record.hash, bits)];
            *bucket = bucket.wrapping_add(summary::entry_hash(record.hash, record.known, beyond));
        }
        hashes
    }

    /// Every origin whose hash lies in `span`, with its hash and the version it is known
    /// up to, in hash order.
    pub fn origins_in(&self, span: Span) -> impl Iterator<Item = (&Origin, u64, u64)> {
        self.records_in(span).map(|r| (&r.origin, r.hash, r.known))
    }

    /// How many origins' hashes lie in `span`.
    pub fn origin_count_in(&self, span: Span) -> usize {
        self.records_in(span).count()
    }

    fn records_in(&self, span: Span) -> impl Iterator<Item = &OriginRecord> {
        self.by_hash
            .range((span.lo, 0)..=(span.hi, OriginId::MAX))
            .map(|&(_, id)| &self.origin_records[id as usize])
    }

    /// The digest of the origins whose hash lies in `span`, each with its hash, in hash
    /// order.
    pub fn digest_in(&self, span: Span) -> Vec<(u64, OriginVersion)> {
        self.origins_in(span)
            .map(|(origin, hash, version)| {
                let ov = OriginVersion {
                    origin: origin.clone(),
                    version,
                };
                (hash, ov)
            })
            .collect()
    }

    /// Merges one delta: every entry by maximum, and the origin's known version advanced
    /// to `to` if the delta starts at or below what is already known, then over every
    /// version held next in line.
    ///
    /// A totals entry with a fold ledger merges only when this replica holds every
    /// acceptance the ledger resolves: when the ledger's `through` is already known, or
    /// this delta continues what is known through it. That holds for an entry past the
    /// delta's range too (one held past a gap, which snapshots and transfers send with
    /// the range): it may be the only entry of its counter, having replaced the change in
    /// range. Otherwise it is left out, as if lost, and comes again once the gap before
    /// it is filled.
    ///
    /// A delta of a retired origin that holds nothing past its retirement is dropped;
    /// one that does brings the origin back first (see [`retire`]).
    pub fn apply_delta(&mut self, delta: &OriginDelta) -> Applied {
        self.generation += 1;
        let mut applied = Applied::default();
        let origin = self.origin_id(&delta.origin);
        if !self.unretire_for(origin, delta) {
            return applied;
        }
        let known = self.origin_records[origin as usize].known;
        let continues = delta.from <= known;
        for entry in &delta.entries {
            applied.changed |= match entry.keyed.as_deref() {
                None => self.merge_slot(origin, &entry.counter, entry.totals()),
                Some(Keyed::Folded(f)) => {
                    let holds_resolved = f.through <= known || (continues && f.through <= delta.to);
                    holds_resolved && self.merge_folded(origin, entry, *f)
                }
                Some(Keyed::Accept(a)) => self.merge_acceptance(origin, entry, a),
            };
        }
        let record = &mut self.origin_records[origin as usize];
        let before = record.known;
        if delta.from <= record.known && delta.to > record.known {
            record.known = delta.to;
        }
        // Holding the change numbered `known + 1` itself is knowing it.
        while record
            .known
            .checked_add(1)
            .is_some_and(|next| record.by_version.contains_key(&next))
        {
            record.known += 1;
        }
        applied.advanced = record.known > before;
        applied
    }

    /// Merges one entry by maximum and keeps the version index in step; returns whether
    /// the totals grew. Also used by recovery and by runtimes that receive whole totals.
    pub fn merge_entry(&mut self, origin: &Origin, counter: &str, incoming: Totals) -> bool {
        self.generation += 1;
        let origin = self.origin_id(origin);
        self.unretire_for_totals(origin, counter, incoming.p, incoming.n)
            && self.merge_slot(origin, counter, incoming)
    }

    fn merge_slot(&mut self, origin_id: OriginId, counter: &str, incoming: Totals) -> bool {
        let Some(counter) = self.counters.id_or_insert(counter) else {
            return false;
        };
        self.merge_totals(origin_id, counter, incoming)
    }

    /// Merges a totals entry with its fold ledger, in one step: the keys the ledger
    /// resolves stop counting by acceptance as their folded amounts join the totals.
    fn merge_folded(&mut self, origin: OriginId, entry: &CounterEntry, folded: Folded) -> bool {
        let Some(counter) = self.counters.id_or_insert(&entry.counter) else {
            return false;
        };
        let before = self.keys.folded(counter, origin);
        let changed = self.merge_totals(origin, counter, entry.totals());
        self.keys
            .merge_folded(counter, origin, folded, &self.origin_records);
        changed || self.keys.folded(counter, origin) != before
    }

    /// Records an acceptance at its own version; returns whether it is new.
    fn merge_acceptance(&mut self, origin: OriginId, entry: &CounterEntry, a: &KeyAccept) -> bool {
        let record = &self.origin_records[origin as usize];
        // No origin accepts at version 0 (the decoder refuses it too). One this replica
        // knows but no longer holds has expired (or was never sent because it had): a
        // late copy must not bring its key back, or a later acceptance of the key, made
        // after the window, would be ignored as a retry.
        if entry.version == 0
            || entry.version <= record.known
            || record.by_version.contains_key(&entry.version)
        {
            return false;
        }
        let Some(counter) = self.counters.id_or_insert(&entry.counter) else {
            return false;
        };
        for (o, version) in self.keys.end_generation(&a.key, origin, entry.version) {
            self.origin_records[o as usize].by_version.remove(&version);
        }
        let acceptance = Acceptance {
            origin,
            counter,
            version: entry.version,
            kind: a.kind,
            amount: a.amount,
            at_ms: a.at_ms,
        };
        let new = self.keys.accept(&a.key, acceptance, &self.origin_records);
        let item = match self.keys.id(&a.key) {
            Some(key) if new => Item::Accept(key),
            _ => Item::Ignored,
        };
        self.origin_records[origin as usize]
            .by_version
            .insert(entry.version, item);
        new
    }

    fn merge_totals(&mut self, origin_id: OriginId, counter: CounterId, incoming: Totals) -> bool {
        let held = self.counters.get(counter, origin_id);
        let old = held.unwrap_or_default();
        let mut merged = old;
        let changed = merged.merge(incoming);
        if changed || held.is_none() {
            self.counters.set(counter, origin_id, merged);
        }
        if held.is_none() {
            self.origin_records[origin_id as usize].slots += 1;
        }
        if merged.version != old.version {
            let record = &mut self.origin_records[origin_id as usize];
            if record.by_version.get(&old.version) == Some(&Item::Totals(counter)) {
                record.by_version.remove(&old.version);
            }
            record
                .by_version
                .insert(merged.version, Item::Totals(counter));
        }
        changed
    }

    fn record(&self, origin: &Origin) -> Option<&OriginRecord> {
        let id = *self.origins.get(origin)?;
        Some(&self.origin_records[id as usize])
    }

    /// The id of `origin`, given (the next one) if it is new.
    fn origin_id(&mut self, origin: &Origin) -> OriginId {
        if let Some(&id) = self.origins.get(origin) {
            return id;
        }
        let id = self.origin_records.len() as OriginId;
        let hash = summary::origin_hash(origin);
        self.origin_records.push(OriginRecord {
            origin: origin.clone(),
            hash,
            known: 0,
            by_version: BTreeMap::new(),
            slots: 0,
            retired: None,
        });
        self.by_hash.insert((hash, id));
        self.origins.insert(origin.clone(), id);
        id
    }

    /// Every entry of every origin, origin by origin in version order, each as a delta
    /// covering `(0, known]`; a retired origin's as they were when it retired; none of a
    /// compacted origin (its entries are gone: see [`State::compaction`]). Snapshots and
    /// full transfers use it. Walks the counters, not the version index, so entries
    /// merged without a version (all at version 0) are kept.
    pub fn to_deltas(&self) -> Vec<OriginDelta> {
        let mut entries: Vec<Vec<CounterEntry>> = vec![Vec::new(); self.origin_records.len()];
        for id in self.counters.ids() {
            for slot in self.counters.slots(id) {
                entries[slot.origin as usize].push(self.totals_entry(id, slot.origin));
            }
        }
        for (_, record) in self.keys.records() {
            for a in &record.acceptances {
                entries[a.origin as usize].push(self.acceptance_entry(&record.key, a));
            }
        }
        self.origins
            .iter()
            .filter(|(_, &id)| !self.origin_records[id as usize].is_compacted())
            .map(|(origin, &id)| {
                let record = &self.origin_records[id as usize];
                let mut entries = match &record.retired {
                    Some(tombstone) => self.tombstone_entries(tombstone, 0),
                    None => std::mem::take(&mut entries[id as usize]),
                };
                entries.sort_by_key(|e| e.version);
                OriginDelta {
                    origin: origin.clone(),
                    from: 0,
                    to: record.known,
                    entries,
                }
            })
            .collect()
    }

    /// Applies a batch made by [`State::prepare_local`] once it is durable. The batch must
    /// be the last one prepared: preparing two batches before applying either would give
    /// both the same versions.
    pub fn apply_local(&mut self, batch: &PreparedBatch) {
        self.apply_delta(&batch.delta);
    }
}

fn sums(slots: impl Iterator<Item = Slot>) -> (u128, u128) {
    slots.fold((0u128, 0u128), |(p, n), s| {
        (p + s.totals.p as u128, n + s.totals.n as u128)
    })
}

fn saturate(v: i128) -> i64 {
    v.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn inc(counter: &str, amount: u64) -> LocalOp {
        LocalOp {
            counter: counter.into(),
            kind: OpKind::Increment,
            amount,
            key: None,
        }
    }

    #[test]
    fn local_batch_assigns_one_version_per_counter_in_first_touch_order() {
        let me = Origin::new("a", 1);
        let state = State::new();
        let batch = state.prepare_local(&me, &[inc("y", 1), inc("x", 2), inc("y", 3)]);
        assert_eq!(batch.results, vec![Ok(1), Ok(2), Ok(4)]);
        let names: Vec<(&str, u64)> = batch
            .delta
            .entries
            .iter()
            .map(|e| (e.counter.as_str(), e.version))
            .collect();
        assert_eq!(names, vec![("y", 1), ("x", 2)]);
        assert_eq!((batch.delta.from, batch.delta.to), (0, 2));
    }

    #[test]
    fn overflow_is_refused_and_changes_nothing() {
        let me = Origin::new("a", 1);
        let mut state = State::new();
        let batch = state.prepare_local(&me, &[inc("x", i64::MAX as u64)]);
        state.apply_local(&batch);
        let batch = state.prepare_local(&me, &[inc("x", 1), inc("z", 5)]);
        assert!(matches!(batch.results[0], Err(OpError::Overflow { .. })));
        assert_eq!(batch.results[1], Ok(5));
        assert_eq!(batch.delta.entries.len(), 1);
        state.apply_local(&batch);
        assert_eq!(state.value("x"), i64::MAX);
        assert_eq!(state.value("z"), 5);
    }

    pub(super) fn dec(counter: &str, amount: u64) -> LocalOp {
        LocalOp {
            counter: counter.into(),
            kind: OpKind::Decrement,
            amount,
            key: None,
        }
    }

    /// `origin`'s replica after `ops` (one batch each), and the deltas it made.
    pub(super) fn writer(origin: &Origin, ops: &[LocalOp]) -> (State, Vec<OriginDelta>) {
        let mut state = State::new();
        let mut deltas = Vec::new();
        for op in ops {
            let batch = state.prepare_local(origin, std::slice::from_ref(op));
            state.apply_local(&batch);
            deltas.push(batch.delta);
        }
        (state, deltas)
    }

    /// Every counter's value, as owned pairs.
    pub(super) fn values(state: &State) -> Vec<(String, i64)> {
        state.values().map(|(n, v)| (n.to_owned(), v)).collect()
    }

    #[test]
    fn sizes_count_counters_origins_and_entries() {
        let mut state = State::new();
        for (origin, counters) in [
            (Origin::new("a", 1), ["x", "y"]),
            (Origin::new("b", 2), ["y", "z"]),
        ] {
            let ops: Vec<LocalOp> = counters.iter().map(|c| inc(c, 1)).collect();
            state.apply_local(&state.prepare_local(&origin, &ops));
        }
        let sizes = (
            state.counter_count(),
            state.origin_count(),
            state.entry_count(),
        );
        assert_eq!(sizes, (3, 2, 4));
    }

    #[test]
    fn an_origin_reads_as_its_name_and_incarnation_in_hex() {
        assert_eq!(Origin::new("n1", 255).to_string(), "n1/00000000000000ff");
    }

    #[test]
    fn a_refused_operation_says_which_rule_it_broke() {
        let me = Origin::new("a", 1);
        let mut state = State::new();
        state.apply_local(&state.prepare_local(&me, &[inc("full", i64::MAX as u64)]));
        let ops = [
            inc("", 1),
            inc(&"x".repeat(MAX_COUNTER_NAME_BYTES + 1), 1),
            inc("a\nb", 1),
            inc("x", 0),
            inc("x", i64::MAX as u64 + 1),
            inc("full", 1),
        ];
        let said: Vec<String> = state
            .prepare_local(&me, &ops)
            .results
            .into_iter()
            .map(|r| r.unwrap_err().to_string())
            .collect();
        let limit = i64::MAX;
        assert_eq!(
            said,
            vec![
                "counter name is empty".to_owned(),
                format!("counter name is 129 bytes long; the limit is {MAX_COUNTER_NAME_BYTES}"),
                "counter name contains a control character".to_owned(),
                format!("amount 0 is out of range 1..={limit}"),
                format!("amount {} is out of range 1..={limit}", limit as u64 + 1),
                format!("counter \"full\" would pass {limit} in total; nothing was applied"),
            ]
        );
    }

    #[test]
    fn decrements_answer_the_value_after_them_and_stop_at_the_limit_of_every_origin() {
        let me = Origin::new("a", 1);
        let mut state = State::new();
        state.apply_local(&state.prepare_local(&me, &[inc("x", 10)]));
        let batch = state.prepare_local(&me, &[dec("x", 3), dec("x", 4), inc("x", 1), dec("y", 2)]);
        assert_eq!(batch.results, vec![Ok(7), Ok(3), Ok(4), Ok(-2)]);
        state.apply_local(&batch);
        assert_eq!((state.value("x"), state.value("y")), (4, -2));

        // Another origin's decrements count towards the limit: 7 here, i64::MAX - 10 there.
        let other = Origin::new("b", 2);
        let far = i64::MAX as u64 - 10;
        state.apply_delta(&OriginDelta {
            origin: other.clone(),
            from: 0,
            to: 1,
            entries: vec![CounterEntry {
                counter: "x".into(),
                p: 0,
                n: far,
                version: 1,
                keyed: None,
            }],
        });
        let batch = state.prepare_local(&me, &[dec("x", 4), dec("x", 3), dec("x", 1)]);
        assert!(matches!(batch.results[0], Err(OpError::Overflow { .. })));
        assert_eq!(batch.results[1], Ok(11 - i64::MAX));
        assert!(matches!(batch.results[2], Err(OpError::Overflow { .. })));
        state.apply_local(&batch);
        assert_eq!(state.value("x"), 11 - i64::MAX);
        let own = state.counter_totals("x");
        let mine = own.iter().find(|(o, _)| *o == me).map(|(_, t)| (t.p, t.n));
        assert_eq!(mine, Some((11, 10)));
    }

    #[test]
    fn a_new_counter_past_the_limit_is_refused_and_changes_nothing() {
        let me = Origin::new("a", 1);
        let mut state = State::new();
        state.set_counter_limit(2);
        let batch = state.prepare_local(&me, &[inc("x", 1), inc("y", 1), inc("z", 1), inc("x", 1)]);
        assert_eq!(batch.results[..2], [Ok(1), Ok(1)]);
        assert_eq!(batch.results[2], Err(OpError::TooManyCounters { limit: 2 }));
        assert_eq!(batch.results[3], Ok(2));
        state.apply_local(&batch);
        assert_eq!(state.counter_count(), 2);
        assert_eq!(state.value("z"), 0);
        let peer = Origin::new("b", 1);
        let learned = CounterEntry {
            counter: "w".into(),
            p: 4,
            n: 0,
            version: 1,
            keyed: None,
        };
        state.apply_delta(&OriginDelta {
            origin: peer,
            from: 0,
            to: 1,
            entries: vec![learned],
        });
        assert_eq!(
            state.value("w"),
            4,
            "what peers wrote is kept past the limit"
        );
    }

    #[test]
    fn values_come_in_name_order_and_first_values_takes_the_smallest_names() {
        let me = Origin::new("a", 1);
        let mut state = State::new();
        let ops: Vec<LocalOp> = ["m", "b", "z", "a", "q"]
            .iter()
            .map(|c| inc(c, 1))
            .collect();
        let batch = state.prepare_local(&me, &ops);
        state.apply_local(&batch);
        let names: Vec<&str> = state.values().map(|(n, _)| n).collect();
        assert_eq!(names, ["a", "b", "m", "q", "z"]);
        let first: Vec<&str> = state.first_values(2).into_iter().map(|(n, _)| n).collect();
        assert_eq!(first, ["a", "b"]);
        let all: Vec<&str> = state.first_values(5).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            all, names,
            "a limit of exactly the number of counters takes them all"
        );
    }

    #[test]
    fn a_delta_with_a_gap_merges_but_does_not_advance_the_digest() {
        let origin = Origin::new("a", 1);
        let mut state = State::new();
        let gap = OriginDelta {
            origin: origin.clone(),
            from: 3,
            to: 4,
            entries: vec![CounterEntry {
                counter: "x".into(),
                p: 9,
                n: 0,
                version: 4,
                keyed: None,
            }],
        };
        let applied = state.apply_delta(&gap);
        assert!(applied.changed && !applied.advanced);
        assert_eq!(state.value("x"), 9);
        assert_eq!(state.known(&origin), 0);
        // The entry above the gap is still passed on, beyond the range it cannot vouch for.
        assert_eq!(state.entries_after(&origin, 0).len(), 1);
        assert_eq!(state.missing_from(&Vec::new()), vec![(origin.clone(), 0)]);
    }

    #[test]
    fn a_full_transfer_keeps_entries_merged_without_versions() {
        let origin = Origin::new("m", 1);
        let mut state = State::new();
        for (counter, p) in [("x", 3), ("y", 4)] {
            state.merge_entry(
                &origin,
                counter,
                Totals {
                    p,
                    n: 0,
                    version: 0,
                },
            );
        }
        let mut copy = State::new();
        for delta in state.to_deltas() {
            copy.apply_delta(&delta);
        }
        assert_eq!((copy.value("x"), copy.value("y")), (3, 4));
    }

    #[test]
    fn filling_a_gap_advances_over_the_versions_held_beyond_it() {
        let origin = Origin::new("a", 1);
        let entry = |counter: &str, version| CounterEntry {
            counter: counter.into(),
            p: version,
            n: 0,
            version,
            keyed: None,
        };
        let mut state = State::new();
        let late = OriginDelta {
            origin: origin.clone(),
            from: 2,
            to: 4,
            entries: vec![entry("y", 3), entry("z", 4)],
        };
        assert!(!state.apply_delta(&late).advanced);
        let early = OriginDelta {
            origin: origin.clone(),
            from: 0,
            to: 2,
            entries: vec![entry("w", 1), entry("x", 2)],
        };
        let applied = state.apply_delta(&early);
        assert!(applied.advanced);
        assert_eq!(state.known(&origin), 4);
    }

    #[test]
    fn a_peer_that_knows_more_still_gets_the_entries_held_above_its_digest() {
        let origin = Origin::new("a", 1);
        let mut state = State::new();
        state.apply_delta(&OriginDelta {
            origin: origin.clone(),
            from: 6,
            to: 7,
            entries: vec![CounterEntry {
                counter: "x".into(),
                p: 1,
                n: 0,
                version: 7,
                keyed: None,
            }],
        });
        let theirs = vec![OriginVersion {
            origin: origin.clone(),
            version: 5,
        }];
        assert_eq!(state.missing_from(&theirs), vec![(origin.clone(), 5)]);
        let ahead = vec![OriginVersion {
            origin: origin.clone(),
            version: 7,
        }];
        assert!(state.missing_from(&ahead).is_empty());
    }
}
