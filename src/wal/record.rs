//! Record encoding: what a frame's data means. The first byte is the record type; the
//! body holds absolute state entries, so replaying records is a merge.
//!
//! Types: 1 = local batch (one [`OriginDelta`] of the node's own origin), 2 = learned
//! state (a list of deltas received from peers), 3 = end of snapshot (the number of
//! state chunks before it). Other type bytes are left for later records (membership,
//! idempotency keys); a reader that meets one reports it rather than guessing.
//!
//! A delta is: origin name (varint length + UTF-8), incarnation (u64 little-endian),
//! `from`, `to`, entry count, then per entry the counter name, `p`, `n` and version.
//! Integers other than the incarnation are LEB128 varints. Decoding trusts nothing:
//! counts are bounded by the bytes left, names by the naming rules.

use crate::crdt::{
    validate_counter_name, validate_node_name, CounterEntry, Origin, OriginDelta,
    MAX_COUNTER_NAME_BYTES, MAX_NODE_NAME_BYTES,
};

pub const TYPE_LOCAL_BATCH: u8 = 1;
pub const TYPE_LEARNED: u8 = 2;
pub const TYPE_SNAPSHOT_END: u8 = 3;

/// A decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    LocalBatch(OriginDelta),
    Learned(Vec<OriginDelta>),
    SnapshotEnd { chunks: u64 },
}

/// Why a record's bytes do not decode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordError {
    /// A type byte this version does not know (a record written by a newer gctr).
    UnknownType(u8),
    /// The body is malformed; the text says how.
    Malformed(String),
}

impl std::fmt::Display for RecordError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecordError::UnknownType(t) => write!(f, "unknown record type {t}"),
            RecordError::Malformed(why) => write!(f, "malformed record: {why}"),
        }
    }
}

/// Appends a local-batch record to `out`.
pub fn encode_local(delta: &OriginDelta, out: &mut Vec<u8>) {
    out.push(TYPE_LOCAL_BATCH);
    put_delta(out, delta);
}

/// Appends a learned-state record to `out`.
pub fn encode_learned(deltas: &[OriginDelta], out: &mut Vec<u8>) {
    out.push(TYPE_LEARNED);
    put_varint(out, deltas.len() as u64);
    for d in deltas {
        put_delta(out, d);
    }
}

/// Appends an end-of-snapshot record to `out`.
pub fn encode_snapshot_end(chunks: u64, out: &mut Vec<u8>) {
    out.push(TYPE_SNAPSHOT_END);
    put_varint(out, chunks);
}

/// Bytes one delta takes inside a record.
pub fn delta_len(d: &OriginDelta) -> usize {
    let mut n = varint_len(d.origin.node.len() as u64) + d.origin.node.len() + 8;
    n += varint_len(d.from) + varint_len(d.to) + varint_len(d.entries.len() as u64);
    for e in &d.entries {
        n += varint_len(e.counter.len() as u64) + e.counter.len();
        n += varint_len(e.p) + varint_len(e.n) + varint_len(e.version);
    }
    n
}

pub fn decode(data: &[u8]) -> Result<Record, RecordError> {
    let (&kind, body) = data
        .split_first()
        .ok_or_else(|| RecordError::Malformed("empty record".into()))?;
    let mut r = Reader { buf: body };
    let record = match kind {
        TYPE_LOCAL_BATCH => Record::LocalBatch(r.delta()?),
        TYPE_LEARNED => {
            let count = r.count(MIN_DELTA_LEN)?;
            let mut deltas = Vec::with_capacity(count);
            for _ in 0..count {
                deltas.push(r.delta()?);
            }
            Record::Learned(deltas)
        }
        TYPE_SNAPSHOT_END => Record::SnapshotEnd {
            chunks: r.varint()?,
        },
        other => return Err(RecordError::UnknownType(other)),
    };
    if !r.buf.is_empty() {
        return Err(RecordError::Malformed(format!(
            "{} bytes after the end of the record",
            r.buf.len()
        )));
    }
    Ok(record)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_delta(out: &mut Vec<u8>, d: &OriginDelta) {
    put_str(out, &d.origin.node);
    out.extend_from_slice(&d.origin.incarnation.to_le_bytes());
    put_varint(out, d.from);
    put_varint(out, d.to);
    put_varint(out, d.entries.len() as u64);
    for e in &d.entries {
        put_str(out, &e.counter);
        put_varint(out, e.p);
        put_varint(out, e.n);
        put_varint(out, e.version);
    }
}

/// Smallest encodings, used to bound element counts by the bytes that remain.
const MIN_DELTA_LEN: usize = 1 + 1 + 8 + 3;
const MIN_ENTRY_LEN: usize = 1 + 1 + 3;

struct Reader<'a> {
    buf: &'a [u8],
}

fn malformed(what: &str) -> RecordError {
    RecordError::Malformed(what.to_owned())
}

impl<'a> Reader<'a> {
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.buf.len() < n {
            return Err(malformed("record ends early"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn varint(&mut self) -> Result<u64, RecordError> {
        let mut v: u64 = 0;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self
                .buf
                .split_first()
                .ok_or_else(|| malformed("record ends early"))?;
            self.buf = rest;
            let bits = (byte & 0x7f) as u64;
            if shift == 63 && bits > 1 {
                return Err(malformed("integer does not fit 64 bits"));
            }
            v |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(malformed("integer does not fit 64 bits"))
    }

    fn count(&mut self, min_element_len: usize) -> Result<usize, RecordError> {
        let n = self.varint()?;
        if n > (self.buf.len() / min_element_len) as u64 {
            return Err(malformed("element count is larger than the record"));
        }
        Ok(n as usize)
    }

    fn string(&mut self, max: usize) -> Result<&'a str, RecordError> {
        let len = self.varint()?;
        if len > max as u64 {
            return Err(RecordError::Malformed(format!(
                "name of {len} bytes is over the {max}-byte limit"
            )));
        }
        std::str::from_utf8(self.bytes(len as usize)?).map_err(|_| malformed("name is not UTF-8"))
    }

    fn delta(&mut self) -> Result<OriginDelta, RecordError> {
        let node = self.string(MAX_NODE_NAME_BYTES)?;
        validate_node_name(node).map_err(|e| RecordError::Malformed(e.0))?;
        let incarnation = u64::from_le_bytes(self.bytes(8)?.try_into().expect("8 bytes"));
        let from = self.varint()?;
        let to = self.varint()?;
        if to < from {
            return Err(malformed("delta range runs backwards"));
        }
        let count = self.count(MIN_ENTRY_LEN)?;
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            let counter = self.string(MAX_COUNTER_NAME_BYTES)?;
            validate_counter_name(counter).map_err(|e| RecordError::Malformed(e.0))?;
            entries.push(CounterEntry {
                counter: counter.to_owned(),
                p: self.varint()?,
                n: self.varint()?,
                version: self.varint()?,
            });
        }
        Ok(OriginDelta {
            origin: Origin::new(node, incarnation),
            from,
            to,
            entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delta(node: &str, counters: &[(&str, u64)]) -> OriginDelta {
        let entries: Vec<CounterEntry> = counters
            .iter()
            .enumerate()
            .map(|(i, (c, p))| CounterEntry {
                counter: (*c).into(),
                p: *p,
                n: u64::MAX,
                version: i as u64 + 1,
            })
            .collect();
        OriginDelta {
            origin: Origin::new(node, u64::MAX - 3),
            from: 0,
            to: entries.len() as u64,
            entries,
        }
    }

    #[test]
    fn records_round_trip_and_measure_what_they_encode() {
        let a = delta("a", &[("x", 1), ("y", 300)]);
        let b = delta("node-b", &[("z", u64::MAX)]);
        let mut buf = Vec::new();
        encode_local(&a, &mut buf);
        assert_eq!(buf.len(), 1 + delta_len(&a));
        assert_eq!(decode(&buf), Ok(Record::LocalBatch(a.clone())));
        buf.clear();
        encode_learned(&[a.clone(), b.clone()], &mut buf);
        assert_eq!(decode(&buf), Ok(Record::Learned(vec![a, b])));
        buf.clear();
        encode_snapshot_end(42, &mut buf);
        assert_eq!(decode(&buf), Ok(Record::SnapshotEnd { chunks: 42 }));
    }

    #[test]
    fn an_unknown_type_is_named() {
        assert_eq!(decode(&[9, 1, 2]), Err(RecordError::UnknownType(9)));
    }

    #[test]
    fn every_truncation_and_trailing_byte_is_refused() {
        let mut buf = Vec::new();
        encode_local(&delta("a", &[("x", 5)]), &mut buf);
        for cut in 0..buf.len() {
            assert!(decode(&buf[..cut]).is_err(), "cut {cut}");
        }
        buf.push(0);
        assert!(matches!(decode(&buf), Err(RecordError::Malformed(_))));
    }

    #[test]
    fn a_huge_count_is_refused_before_allocating() {
        let mut buf = vec![TYPE_LEARNED];
        put_varint(&mut buf, u64::MAX >> 1);
        assert!(matches!(decode(&buf), Err(RecordError::Malformed(_))));
    }
}
