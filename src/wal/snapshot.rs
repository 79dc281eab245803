//! Snapshots: the whole state as of a sequence number, so recovery need not replay the
//! segments it covers and those segments can be deleted.
//!
//! A snapshot is named `<last sequence number as 16 hex digits>.snap`. It holds a 20-byte
//! header — magic `GCTRSNAP`, format version (u32), the last sequence number it covers
//! (u64), little-endian — then frames numbered from 1, each a learned-state record
//! carrying a chunk of `State::to_deltas()`, then records of the origins retired (their
//! tombstones are among the chunks), then the compaction (records of the origins
//! compacted and of the compacted sums, adopted whole into the state once all are in),
//! and a final end record that counts the chunks. It is written to a temporary file, fsynced, renamed and the directory
//! fsynced, so it is either whole or absent; a snapshot that does not check out anyway
//! is reported and not used.

use super::frame::{encode_frame, parse_frame, Parsed};
use super::fs::{write_atomic, FileSystem};
use super::record::{self, Record};
use super::segment::parse_hex_name;
use super::split_by_len;
use crate::crdt::{Compaction, CounterEntry, OriginDelta, State};
use std::io;
use std::path::Path;

pub const SNAPSHOT_MAGIC: [u8; 8] = *b"GCTRSNAP";
pub const SNAPSHOT_VERSION: u32 = 1;
const SNAPSHOT_HEADER_LEN: usize = 20;
const SNAPSHOT_SUFFIX: &str = ".snap";
/// Snapshot files larger than this are refused unread.
pub const MAX_SNAPSHOT_BYTES: u64 = 1 << 36;
/// Target size of one chunk record; a chunk holds at least one delta.
const CHUNK_BYTES: usize = 1 << 20;

pub fn snapshot_name(last_seq: u64) -> String {
    format!("{last_seq:016x}{SNAPSHOT_SUFFIX}")
}

pub fn parse_snapshot_name(name: &str) -> Option<u64> {
    parse_hex_name(name, SNAPSHOT_SUFFIX)
}

/// Encodes the whole state as a snapshot covering records up to `last_seq`.
pub fn encode(state: &State, last_seq: u64) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&SNAPSHOT_MAGIC);
    out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    out.extend_from_slice(&last_seq.to_le_bytes());
    let mut records = 0u64;
    let mut put = |data: &[u8], out: &mut Vec<u8>| {
        records += 1;
        encode_frame(records, data, out);
    };
    let mut data = Vec::new();
    let deltas: Vec<OriginDelta> = state
        .to_deltas()
        .into_iter()
        .flat_map(split_delta)
        .collect();
    for chunk in split_by_len(&deltas, CHUNK_BYTES, record::delta_len) {
        data.clear();
        record::encode_learned(chunk, &mut data);
        put(&data, &mut out);
    }
    for chunk in split_by_len(&state.retired_origins(), CHUNK_BYTES, record::retired_len) {
        data.clear();
        record::encode_retired(chunk, &mut data);
        put(&data, &mut out);
    }
    let compaction = state.compaction();
    for chunk in split_by_len(&compaction.origins, CHUNK_BYTES, record::retired_len) {
        data.clear();
        record::encode_compacted(chunk, &mut data);
        put(&data, &mut out);
    }
    for chunk in split_by_len(&compaction.sums, CHUNK_BYTES, record::compacted_sum_len) {
        data.clear();
        record::encode_compacted_sums(chunk, &mut data);
        put(&data, &mut out);
    }
    data.clear();
    record::encode_snapshot_end(records, &mut data);
    encode_frame(records + 1, &data, &mut out);
    out
}

/// Splits a `(0, known]` delta whose encoding would pass the chunk size into pieces in
/// version order, each starting where the previous one ended, so applying them in order
/// restores the same entries and known version.
fn split_delta(delta: OriginDelta) -> Vec<OriginDelta> {
    if record::delta_len(&delta) <= CHUNK_BYTES {
        return vec![delta];
    }
    let known = delta.to;
    let mut pieces = Vec::new();
    let mut from = delta.from;
    let mut entries = Vec::new();
    let mut len = 0;
    for entry in delta.entries {
        let entry_len = entry.counter.len() + 40;
        if !entries.is_empty() && len + entry_len > CHUNK_BYTES {
            let to: u64 = entries
                .last()
                .map_or(from, |e: &CounterEntry| e.version.min(known))
                .max(from);
            pieces.push(OriginDelta {
                origin: delta.origin.clone(),
                from,
                to,
                entries: std::mem::take(&mut entries),
            });
            from = to;
            len = 0;
        }
        len += entry_len;
        entries.push(entry);
    }
    pieces.push(OriginDelta {
        origin: delta.origin,
        from,
        to: known.max(from),
        entries,
    });
    pieces
}

/// Writes a snapshot of `state` covering records up to `last_seq` into `dir`.
pub fn write(fs: &dyn FileSystem, dir: &Path, state: &State, last_seq: u64) -> io::Result<u64> {
    let bytes = encode(state, last_seq);
    write_atomic(fs, dir, &snapshot_name(last_seq), &bytes)?;
    Ok(bytes.len() as u64)
}

/// Why a snapshot is not usable: the offset and what is wrong there.
pub type SnapshotFault = (u64, String);

/// Reads a snapshot's bytes into a fresh state; `expected_seq` comes from the file name.
pub fn decode(bytes: &[u8], expected_seq: u64) -> Result<State, SnapshotFault> {
    if bytes.len() < SNAPSHOT_HEADER_LEN {
        return Err((0, "shorter than a snapshot header".into()));
    }
    if bytes[..8] != SNAPSHOT_MAGIC {
        return Err((0, "bad magic: not a gctr snapshot".into()));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if version != SNAPSHOT_VERSION {
        return Err((8, format!("unsupported snapshot version {version}")));
    }
    let last_seq = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    if last_seq != expected_seq {
        return Err((
            12,
            format!("header says sequence {last_seq}, the name says {expected_seq}"),
        ));
    }
    let mut state = State::new();
    let mut compaction = Compaction::default();
    let mut offset = SNAPSHOT_HEADER_LEN;
    let mut expected_chunk = 1u64;
    loop {
        let at = offset as u64;
        let (seq, data, next) = match parse_frame(bytes, offset) {
            Parsed::Frame { seq, data, next } => (seq, data, next),
            Parsed::Incomplete => return Err((at, "snapshot ends early".into())),
            Parsed::Bad(reason) => return Err((at, reason)),
        };
        if seq != expected_chunk {
            return Err((at, format!("chunk {seq} where {expected_chunk} was due")));
        }
        match record::decode(data) {
            Ok(Record::Learned(deltas)) => {
                for d in &deltas {
                    state.apply_delta(d);
                }
            }
            Ok(Record::Retired(retired)) => state.retire_all(&retired),
            Ok(Record::Compacted(origins)) => compaction.origins.extend(origins),
            Ok(Record::CompactedSums(sums)) => compaction.sums.extend(sums),
            Ok(Record::SnapshotEnd { chunks }) if chunks.checked_add(1) == Some(seq) => {
                if next != bytes.len() {
                    return Err((next as u64, "bytes after the end of the snapshot".into()));
                }
                if let Err(refusal) = state.adopt(&compaction) {
                    return Err((
                        at,
                        format!("its compaction does not fit its state: {refusal}"),
                    ));
                }
                return Ok(state);
            }
            Ok(Record::SnapshotEnd { chunks }) => {
                return Err((
                    at,
                    format!("end record counts {chunks} chunks, not {}", seq - 1),
                ))
            }
            Ok(Record::LocalBatch(_)) => return Err((at, "a local batch in a snapshot".into())),
            Err(e) => return Err((at, e.to_string())),
        }
        expected_chunk += 1;
        offset = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdt::{Origin, Totals};

    #[test]
    fn a_state_larger_than_a_chunk_round_trips_with_its_known_versions() {
        let big = Origin::new("big", 1);
        let gappy = Origin::new("gappy", 2);
        let mut state = State::new();
        let entries: Vec<CounterEntry> = (1..=120_000u64)
            .map(|v| CounterEntry {
                counter: format!("counter-{v}"),
                p: v,
                n: v / 2,
                version: v,
                keyed: None,
            })
            .collect();
        state.apply_delta(&OriginDelta {
            origin: big.clone(),
            from: 0,
            to: 120_000,
            entries,
        });
        // Known up to 3 with an entry at 9 beyond a gap: both must survive.
        state.apply_delta(&OriginDelta {
            origin: gappy.clone(),
            from: 0,
            to: 3,
            entries: vec![CounterEntry {
                counter: "g".into(),
                p: 1,
                n: 0,
                version: 3,
                keyed: None,
            }],
        });
        state.merge_entry(
            &gappy,
            "h",
            Totals {
                p: 5,
                n: 0,
                version: 9,
            },
        );

        let bytes = encode(&state, 77);
        assert!(bytes.len() > 2 * CHUNK_BYTES, "the big origin is split");
        let back = decode(&bytes, 77).unwrap();
        assert_eq!(back.to_deltas(), state.to_deltas());
        assert_eq!(back.known(&big), 120_000);
        assert_eq!(back.known(&gappy), 3);
        assert_eq!(back.value("h"), 5);

        assert!(
            decode(&bytes, 78).is_err(),
            "the name and header must agree"
        );
        assert!(decode(&bytes[..bytes.len() - 1], 77).is_err());
    }
}
