//! Digest summaries: a replica's digest folded into at most a few kilobytes, so that
//! anti-entropy between replicas that know many origins costs little while they agree,
//! and still works when a whole digest would not fit a frame.
//!
//! Every origin has a stable 64-bit hash ([`origin_hash`]); the top `bits` bits of it pick
//! the origin's bucket. A bucket's hash is the XOR of its origins' entry hashes, each made
//! of the origin's hash, the version the origin is known up to and the highest version
//! held of it ([`entry_hash`]), so two replicas' buckets hash alike exactly when (but for
//! a 2^-64 chance) they know the same origins equally far. A Summary frame carries the
//! bucket hashes; the peer answers only for the buckets that differ, with Page frames:
//! its digest restricted to a [`Span`] of the origin-hash space. An idle round costs one
//! Summary whatever the number of origins or counters.

use crate::crdt::Origin;
use serde::{Deserialize, Serialize};

/// Most bits a bucket index takes: at most 256 buckets, 2 KiB of hashes per Summary.
pub const MAX_BITS: u8 = 8;
/// Origins per bucket a summary aims at: few enough that a differing bucket's page is
/// small, many enough that a summary stays far smaller than the digest it stands for.
const ORIGINS_PER_BUCKET: usize = 8;

/// A range of origin hashes, both ends included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    pub lo: u64,
    pub hi: u64,
}

impl Span {
    /// Every hash.
    pub const ALL: Span = Span {
        lo: 0,
        hi: u64::MAX,
    };

    pub fn contains(&self, hash: u64) -> bool {
        self.lo <= hash && hash <= self.hi
    }
}

/// An origin's place in the hash space: FNV-1a over its name, a byte no UTF-8 name
/// holds, and its incarnation, then a finalizer that spreads every input bit over the
/// result. Part of the wire protocol: every node must compute the same value.
pub fn origin_hash(origin: &Origin) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let bytes = origin.node.as_bytes().iter().chain(&[0xff]);
    for &b in bytes.chain(&origin.incarnation.to_be_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// What one origin adds to its bucket's hash: its hash with the version it is known up
/// to and the highest version held of it.
pub fn entry_hash(origin_hash: u64, known: u64, top: u64) -> u64 {
    mix(origin_hash ^ mix(known ^ mix(top.wrapping_add(0x9e37_79b9_7f4a_7c15))))
}

/// The splitmix64 finalizer.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The bucket of an origin with hash `hash` among `2^bits`.
pub fn bucket_of(hash: u64, bits: u8) -> usize {
    match bits {
        0 => 0,
        _ => (hash >> (64 - u32::from(bits))) as usize,
    }
}

/// The hashes bucket `bucket` of `2^bits` holds.
pub fn bucket_span(bucket: usize, bits: u8) -> Span {
    if bits == 0 {
        return Span::ALL;
    }
    let shift = 64 - u32::from(bits);
    let lo = (bucket as u64) << shift;
    Span {
        lo,
        hi: lo | (u64::MAX >> u32::from(bits)),
    }
}

/// Bytes a summary of `2^bits` buckets takes in a frame.
pub fn summary_len(bits: u8) -> usize {
    1 + 8 * (1usize << bits)
}

/// The bucket bits for a replica that knows `origins` origins and sends frames of at most
/// `max_payload` bytes: about [`ORIGINS_PER_BUCKET`] origins a bucket, at most
/// [`MAX_BITS`], and a summary of at most half a frame.
pub fn bits_for(origins: usize, max_payload: usize) -> u8 {
    let wanted = origins.div_ceil(ORIGINS_PER_BUCKET).max(1);
    let mut bits = (wanted.next_power_of_two().trailing_zeros() as u8).min(MAX_BITS);
    while bits > 0 && summary_len(bits) > max_payload / 2 {
        bits -= 1;
    }
    bits
}

/// The buckets whose hashes differ, as spans, adjacent buckets merged into one span.
/// `mine` and `theirs` hold `2^bits` hashes each.
pub fn differing_spans(mine: &[u64], theirs: &[u64], bits: u8) -> Vec<Span> {
    let mut spans: Vec<Span> = Vec::new();
    for (bucket, (a, b)) in mine.iter().zip(theirs).enumerate() {
        if a == b {
            continue;
        }
        let span = bucket_span(bucket, bits);
        match spans.last_mut() {
            Some(last) if last.hi.wrapping_add(1) == span.lo => last.hi = span.hi,
            _ => spans.push(span),
        }
    }
    spans
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_hash_is_the_protocols_fixed_function() {
        // Every node must place an origin alike; a change here splits a mixed cluster's
        // summaries for good, so the value itself is pinned (FNV-1a and splitmix64 as
        // published, computed apart from this code).
        let o = Origin::new("n1", 7);
        assert_eq!(origin_hash(&o), 0xf8ca_1590_8058_6080);
        assert_ne!(origin_hash(&o), origin_hash(&Origin::new("n1", 8)));
        assert_ne!(origin_hash(&o), origin_hash(&Origin::new("n2", 7)));
    }

    #[test]
    fn entry_hash_changes_with_either_version() {
        let h = origin_hash(&Origin::new("a", 1));
        let base = entry_hash(h, 5, 5);
        assert_ne!(base, entry_hash(h, 6, 6));
        assert_ne!(base, entry_hash(h, 5, 9));
        assert_ne!(entry_hash(h, 5, 9), entry_hash(h, 9, 5));
    }

    #[test]
    fn buckets_tile_the_hash_space_in_order() {
        for bits in 0..=MAX_BITS {
            let n = 1usize << bits;
            assert_eq!(bucket_span(0, bits).lo, 0);
            assert_eq!(bucket_span(n - 1, bits).hi, u64::MAX);
            for b in 1..n {
                assert_eq!(bucket_span(b - 1, bits).hi + 1, bucket_span(b, bits).lo);
            }
            for b in [0, n / 2, n - 1] {
                let span = bucket_span(b, bits);
                assert_eq!(bucket_of(span.lo, bits), b);
                assert_eq!(bucket_of(span.hi, bits), b);
            }
        }
    }

    #[test]
    fn bits_follow_the_origin_count_within_the_frame() {
        assert_eq!(bits_for(0, 1 << 20), 0);
        assert_eq!(bits_for(8, 1 << 20), 0);
        assert_eq!(bits_for(9, 1 << 20), 1);
        assert_eq!(bits_for(1000, 1 << 20), 7);
        assert_eq!(bits_for(100_000, 1 << 20), MAX_BITS);
        // At the smallest frame a summary keeps to half of it: 32 buckets, 257 bytes
        // would be over; 16 buckets, 129 bytes, is not.
        assert_eq!(bits_for(100_000, 512), 4);
        assert!(summary_len(bits_for(100_000, 512)) <= 256);
    }

    #[test]
    fn differing_buckets_come_out_as_merged_spans() {
        let bits = 3;
        let mine = [1, 2, 3, 4, 5, 6, 7, 8];
        let theirs = [1, 0, 0, 4, 5, 0, 7, 0];
        assert_eq!(
            differing_spans(&mine, &theirs, bits),
            vec![
                Span {
                    lo: bucket_span(1, bits).lo,
                    hi: bucket_span(2, bits).hi
                },
                bucket_span(5, bits),
                bucket_span(7, bits),
            ]
        );
        assert!(differing_spans(&mine, &mine, bits).is_empty());
        assert_eq!(differing_spans(&[1], &[2], 0), vec![Span::ALL]);
    }
}
