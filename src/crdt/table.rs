//! The compact store behind [`super::State`]: every counter's name held once, and its
//! per-origin totals in one small array.
//!
//! A replica can hold millions of counters, each with an entry per origin that wrote it,
//! so the layout is what decides memory. A counter gets a dense [`CounterId`] when it is
//! first seen; its name lives in its record and nowhere else (the name index is a hash
//! table of ids that compares through the records); origins are [`OriginId`]s, four bytes
//! each; and a counter is one allocation holding its name and its entries, 28 bytes a
//! [`Slot`], grown by one slot when a new origin writes it and shrunk by one when an
//! origin is retired. Counters are never removed, so ids stay valid for the life of the
//! table.

use super::Totals;
use hashbrown::HashTable;
use std::hash::{BuildHasher, RandomState};

/// A counter's index in the table.
pub(super) type CounterId = u32;
/// An origin's index in the state's origin list.
pub(super) type OriginId = u32;

/// One origin's totals in one counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Slot {
    pub(super) origin: OriginId,
    pub(super) totals: Totals,
}

/// Bytes a slot takes in a record: the origin id, then `p`, `n` and the version.
const SLOT_BYTES: usize = 4 + 3 * 8;

impl Slot {
    fn write(&self, out: &mut [u8]) {
        out[..4].copy_from_slice(&self.origin.to_le_bytes());
        out[4..12].copy_from_slice(&self.totals.p.to_le_bytes());
        out[12..20].copy_from_slice(&self.totals.n.to_le_bytes());
        out[20..28].copy_from_slice(&self.totals.version.to_le_bytes());
    }

    fn read(bytes: &[u8]) -> Slot {
        let word = |at: usize| {
            let mut b = [0; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let mut origin = [0; 4];
        origin.copy_from_slice(&bytes[..4]);
        Slot {
            origin: OriginId::from_le_bytes(origin),
            totals: Totals {
                p: word(4),
                n: word(12),
                version: word(20),
            },
        }
    }
}

/// One counter in one allocation: the name's length (a byte; names are at most
/// [`MAX_NAME_BYTES`]), the name, then its slots.
type Record = Box<[u8]>;

/// Longest name a record can hold; every name the state accepts is shorter
/// ([`super::MAX_COUNTER_NAME_BYTES`]).
const MAX_NAME_BYTES: usize = u8::MAX as usize;
const _: () = assert!(super::MAX_COUNTER_NAME_BYTES <= MAX_NAME_BYTES);

fn record_name(record: &[u8]) -> &[u8] {
    &record[1..1 + record[0] as usize]
}

fn record_slots(record: &[u8]) -> impl Iterator<Item = Slot> + '_ {
    record[1 + record[0] as usize..]
        .chunks_exact(SLOT_BYTES)
        .map(Slot::read)
}

/// The table's 64-bit hash from a stored 32-bit one: spread over every bit, since the
/// table takes the bucket from the low bits and a tag from the high ones.
fn spread(short: u32) -> u64 {
    u64::from(short).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Counters by id and by name, with their slots.
#[derive(Clone, Default)]
pub(super) struct CounterTable {
    records: Vec<Record>,
    /// Every counter's id with its name's short hash, so growing the table rehashes
    /// without reading a single name.
    by_name: HashTable<(CounterId, u32)>,
    hasher: RandomState,
    entries: usize,
}

impl std::fmt::Debug for CounterTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CounterTable")
            .field("counters", &self.records.len())
            .field("entries", &self.entries)
            .finish()
    }
}

impl CounterTable {
    pub(super) fn len(&self) -> usize {
        self.records.len()
    }

    /// Number of (counter, origin) entries.
    pub(super) fn entries(&self) -> usize {
        self.entries
    }

    pub(super) fn id(&self, name: &str) -> Option<CounterId> {
        let short = self.short_hash(name);
        self.by_name
            .find(spread(short), |&(id, h)| {
                h == short && record_name(&self.records[id as usize]) == name.as_bytes()
            })
            .map(|&(id, _)| id)
    }

    /// The counter's id, adding it if new; `None` only for a name longer than a record
    /// holds (the state never passes one) or when the table holds as many counters as an
    /// id can name (2^32), which memory reaches long before.
    pub(super) fn id_or_insert(&mut self, name: &str) -> Option<CounterId> {
        if let Some(id) = self.id(name) {
            return Some(id);
        }
        let id = CounterId::try_from(self.records.len()).ok()?;
        if name.len() > MAX_NAME_BYTES {
            return None;
        }
        let mut record = Vec::with_capacity(1 + name.len());
        record.push(name.len() as u8);
        record.extend_from_slice(name.as_bytes());
        self.records.push(record.into_boxed_slice());
        let short = self.short_hash(name);
        self.by_name
            .insert_unique(spread(short), (id, short), |&(_, h)| spread(h));
        Some(id)
    }

    /// The name's keyed (SipHash) hash, cut to 32 bits.
    fn short_hash(&self, name: &str) -> u32 {
        self.hasher.hash_one(name.as_bytes()) as u32
    }

    pub(super) fn name(&self, id: CounterId) -> &str {
        std::str::from_utf8(record_name(&self.records[id as usize]))
            .expect("a record's name was copied from a &str")
    }

    pub(super) fn slots(&self, id: CounterId) -> impl Iterator<Item = Slot> + '_ {
        record_slots(&self.records[id as usize])
    }

    /// Every counter id, in id (first seen) order.
    pub(super) fn ids(&self) -> impl Iterator<Item = CounterId> {
        0..self.records.len() as CounterId
    }

    pub(super) fn get(&self, id: CounterId, origin: OriginId) -> Option<Totals> {
        self.slots(id)
            .find(|s| s.origin == origin)
            .map(|s| s.totals)
    }

    /// Stores the totals of `origin` in counter `id`, adding the slot if it is new.
    pub(super) fn set(&mut self, id: CounterId, origin: OriginId, totals: Totals) {
        let record = &mut self.records[id as usize];
        let slot = Slot { origin, totals };
        let first = 1 + record[0] as usize;
        let at = record[first..]
            .chunks_exact(SLOT_BYTES)
            .position(|s| Slot::read(s).origin == origin);
        if let Some(i) = at {
            let start = first + i * SLOT_BYTES;
            slot.write(&mut record[start..start + SLOT_BYTES]);
            return;
        }
        let mut grown = std::mem::take(record).into_vec();
        grown.reserve_exact(SLOT_BYTES);
        let start = grown.len();
        grown.resize(start + SLOT_BYTES, 0);
        slot.write(&mut grown[start..]);
        *record = grown.into_boxed_slice();
        self.entries += 1;
    }

    /// Takes the slot of `origin` out of counter `id`; returns its totals if it had one.
    pub(super) fn remove(&mut self, id: CounterId, origin: OriginId) -> Option<Totals> {
        let record = &mut self.records[id as usize];
        let first = 1 + record[0] as usize;
        let (i, slot) = record[first..]
            .chunks_exact(SLOT_BYTES)
            .map(Slot::read)
            .enumerate()
            .find(|(_, s)| s.origin == origin)?;
        let start = first + i * SLOT_BYTES;
        let mut shrunk = std::mem::take(record).into_vec();
        shrunk.drain(start..start + SLOT_BYTES);
        *record = shrunk.into_boxed_slice();
        self.entries -= 1;
        Some(slot.totals)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(p: u64) -> Totals {
        Totals {
            p,
            n: 0,
            version: p,
        }
    }

    #[test]
    fn a_slot_reads_back_what_was_written() {
        let slot = Slot {
            origin: u32::MAX - 1,
            totals: Totals {
                p: u64::MAX,
                n: 1 << 40,
                version: 7,
            },
        };
        let mut bytes = [0; SLOT_BYTES];
        slot.write(&mut bytes);
        assert_eq!(Slot::read(&bytes), slot);
    }

    #[test]
    fn a_record_is_the_name_then_28_bytes_an_origin_and_debug_shows_sizes_only() {
        let mut table = CounterTable::default();
        let id = table.id_or_insert("hits").unwrap();
        for origin in 0..3 {
            table.set(id, origin, totals(1));
        }
        assert_eq!(table.records[id as usize].len(), 1 + 4 + 3 * 28);
        assert_eq!(
            format!("{table:?}"),
            "CounterTable { counters: 1, entries: 3 }"
        );
    }

    #[test]
    fn a_name_longer_than_a_record_holds_is_refused() {
        let mut table = CounterTable::default();
        assert_eq!(table.id_or_insert(&"x".repeat(MAX_NAME_BYTES + 1)), None);
        assert_eq!(table.id_or_insert(&"x".repeat(MAX_NAME_BYTES)), Some(0));
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn names_map_to_stable_ids_and_slots_grow_per_origin() {
        let mut table = CounterTable::default();
        let names: Vec<String> = (0..1000).map(|i| format!("c{i}")).collect();
        for name in &names {
            let id = table.id_or_insert(name).unwrap();
            table.set(id, 0, totals(1));
        }
        for (i, name) in names.iter().enumerate() {
            assert_eq!(table.id(name), Some(i as CounterId));
            assert_eq!(table.name(i as CounterId), name);
        }
        let id = table.id("c7").unwrap();
        table.set(id, 3, totals(5));
        table.set(id, 0, totals(2));
        assert_eq!(table.get(id, 0), Some(totals(2)));
        assert_eq!(table.get(id, 3), Some(totals(5)));
        assert_eq!(table.get(id, 1), None);
        assert_eq!((table.len(), table.entries()), (1000, 1001));
        assert_eq!(table.id("nope"), None);
    }

    #[test]
    fn removing_a_slot_keeps_the_others_and_the_entry_count() {
        let mut table = CounterTable::default();
        let id = table.id_or_insert("hits").unwrap();
        for origin in 0..3 {
            table.set(id, origin, totals(origin as u64 + 1));
        }
        assert_eq!(table.remove(id, 1), Some(totals(2)));
        assert_eq!(table.remove(id, 1), None);
        let left: Vec<Slot> = table.slots(id).collect();
        assert_eq!(left.iter().map(|s| s.origin).collect::<Vec<_>>(), [0, 2]);
        assert_eq!((table.get(id, 2), table.entries()), (Some(totals(3)), 2));
        assert_eq!(table.records[id as usize].len(), 1 + 4 + 2 * 28);
    }
}
