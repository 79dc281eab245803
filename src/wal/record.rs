//! Record encoding: what a frame's data means. The first byte is the record type; the
//! body holds absolute state entries, so replaying records is a merge.
//!
//! Types: 1 = local batch (one [`OriginDelta`] of the node's own origin), 2 = learned
//! state (a list of deltas received from peers), 3 = end of snapshot (the number of
//! state chunks before it), 4 = origins retired, 5 = origins compacted (each with the
//! version it retired at), 6 = compacted sums (in snapshots only). Other type bytes are left for later records (membership,
//! idempotency keys); a reader that meets one reports it rather than guessing.
//!
//! Deltas are in the wire codec's delta encoding ([`codec::encode_delta`]), so a delta has
//! one byte form whether it travels or is logged, and one decoder that trusts nothing:
//! counts are bounded by the bytes left, names by the naming rules.
//!
//! That sharing is the one coupling between the wire and the disk, and it is made
//! explicit here: [`DELTA_ENCODING`] is the delta encoding this version of the WAL's
//! formats holds (segment format [`SEGMENT_VERSION`], snapshot format
//! [`SNAPSHOT_VERSION`]). The build fails if the codec's encoding moves without this
//! line moving with it, and a test pins the bytes of one delta, so the encoding cannot
//! change unnoticed. The frame protocol version may change (new frame types) without
//! touching either. A new delta encoding needs new WAL format versions, and a reader for
//! the old ones.

use super::segment::SEGMENT_VERSION;
use super::snapshot::SNAPSHOT_VERSION;
use crate::codec::{self, CodecError, Decoder};
use crate::crdt::{CompactedSum, OriginDelta, OriginVersion};

/// The delta encoding WAL segments of [`SEGMENT_VERSION`] and snapshots of
/// [`SNAPSHOT_VERSION`] hold.
pub const DELTA_ENCODING: u8 = 1;
const _: () = assert!(
    DELTA_ENCODING == codec::DELTA_ENCODING && SEGMENT_VERSION == 1 && SNAPSHOT_VERSION == 1,
    "the delta encoding or a WAL format changed: bump the WAL formats together and keep a \
     reader for the old ones"
);

pub const TYPE_LOCAL_BATCH: u8 = 1;
pub const TYPE_LEARNED: u8 = 2;
pub const TYPE_SNAPSHOT_END: u8 = 3;
pub const TYPE_RETIRED: u8 = 4;
pub const TYPE_COMPACTED: u8 = 5;
pub const TYPE_COMPACTED_SUMS: u8 = 6;

/// A decoded record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    LocalBatch(OriginDelta),
    Learned(Vec<OriginDelta>),
    SnapshotEnd {
        chunks: u64,
    },
    /// Origins retired (see `crdt::retire`), each at its version.
    Retired(Vec<OriginVersion>),
    /// Origins compacted (see `crdt::compact`), each at the version it retired at.
    Compacted(Vec<OriginVersion>),
    /// Compacted sums, by counter (a snapshot's; see `crdt::compact`).
    CompactedSums(Vec<CompactedSum>),
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
    codec::encode_delta(delta, out);
}

/// Appends a learned-state record to `out`.
pub fn encode_learned(deltas: &[OriginDelta], out: &mut Vec<u8>) {
    out.push(TYPE_LEARNED);
    codec::encode_deltas(deltas, out);
}

/// Appends a record of retirements to `out`.
pub fn encode_retired(retired: &[OriginVersion], out: &mut Vec<u8>) {
    out.push(TYPE_RETIRED);
    codec::encode_digest(retired, out);
}

/// Appends a record of compactions to `out`.
pub fn encode_compacted(compacted: &[OriginVersion], out: &mut Vec<u8>) {
    out.push(TYPE_COMPACTED);
    codec::encode_digest(compacted, out);
}

/// Appends a record of compacted sums to `out`.
pub fn encode_compacted_sums(sums: &[CompactedSum], out: &mut Vec<u8>) {
    out.push(TYPE_COMPACTED_SUMS);
    codec::encode_compacted_sums(sums, out);
}

/// Bytes one compacted sum takes inside a record.
pub fn compacted_sum_len(sum: &CompactedSum) -> usize {
    codec::compacted_sum_len(sum)
}

/// Bytes one retirement takes inside a record.
pub fn retired_len(ov: &OriginVersion) -> usize {
    codec::digest_entry_len(ov)
}

/// Appends an end-of-snapshot record to `out`.
pub fn encode_snapshot_end(chunks: u64, out: &mut Vec<u8>) {
    out.push(TYPE_SNAPSHOT_END);
    codec::encode_varint(chunks, out);
}

/// Bytes one delta takes inside a record.
pub fn delta_len(d: &OriginDelta) -> usize {
    codec::delta_len(d)
}

pub fn decode(data: &[u8]) -> Result<Record, RecordError> {
    let (&kind, body) = data
        .split_first()
        .ok_or_else(|| RecordError::Malformed("empty record".into()))?;
    let mut r = Decoder::new(body);
    let record = match kind {
        TYPE_LOCAL_BATCH => Record::LocalBatch(r.delta().map_err(malformed)?),
        TYPE_LEARNED => Record::Learned(r.deltas().map_err(malformed)?),
        TYPE_SNAPSHOT_END => Record::SnapshotEnd {
            chunks: r.varint().map_err(malformed)?,
        },
        TYPE_RETIRED => Record::Retired(r.digest().map_err(malformed)?),
        TYPE_COMPACTED => Record::Compacted(r.digest().map_err(malformed)?),
        TYPE_COMPACTED_SUMS => Record::CompactedSums(r.compacted_sums().map_err(malformed)?),
        other => return Err(RecordError::UnknownType(other)),
    };
    if r.remaining() != 0 {
        return Err(RecordError::Malformed(format!(
            "{} bytes after the end of the record",
            r.remaining()
        )));
    }
    Ok(record)
}

fn malformed(e: CodecError) -> RecordError {
    RecordError::Malformed(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdt::{CounterEntry, Origin, MAX_TOTAL};

    fn delta(node: &str, counters: &[(&str, u64)]) -> OriginDelta {
        let entries: Vec<CounterEntry> = counters
            .iter()
            .enumerate()
            .map(|(i, (c, p))| CounterEntry {
                counter: (*c).into(),
                p: *p,
                n: MAX_TOTAL,
                version: i as u64 + 1,
                keyed: None,
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
        let b = delta("node-b", &[("z", MAX_TOTAL)]);
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
    fn the_delta_encoding_the_wal_holds_is_pinned_to_its_bytes() {
        let d = OriginDelta {
            origin: Origin::new("n", 7),
            from: 0,
            to: 1,
            entries: vec![CounterEntry {
                counter: "c".into(),
                p: 300,
                n: 2,
                version: 1,
                keyed: None,
            }],
        };
        let mut out = Vec::new();
        encode_local(&d, &mut out);
        // Name (length, bytes), incarnation (8 bytes, big-endian), range, entry count,
        // then counter name, p and n (LEB128: 300 is 0xac 0x02) and version.
        let origin = [1, b'n', 0, 0, 0, 0, 0, 0, 0, 7];
        let range_and_count = [0, 1, 1];
        let entry = [1, b'c', 0xac, 0x02, 2, 1];
        let want: Vec<u8> = [&[TYPE_LOCAL_BATCH][..], &origin, &range_and_count, &entry].concat();
        assert_eq!(out, want, "delta encoding {DELTA_ENCODING} changed");
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
        codec::encode_varint(u64::MAX >> 1, &mut buf);
        assert!(matches!(decode(&buf), Err(RecordError::Malformed(_))));
    }
}
