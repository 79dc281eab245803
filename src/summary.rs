//! Digest summaries: a replica's digest folded into at most a few kilobytes, so that
//! anti-entropy between replicas that know many origins costs little while they agree,
//! and still works when a whole digest would not fit a frame.
//!
//! Every origin has a stable 64-bit hash ([`origin_hash`]). A summary cuts a [`Span`] of
//! the hash space (the whole of it to begin with) into `2^bits` equal buckets; a bucket's
//! hash is the wrapping sum of its origins' entry hashes, each made of the origin's hash,
//! the version the origin is known up to and the versions held beyond it ([`entry_hash`]),
//! so two replicas' buckets hash alike exactly when (but for a 2^-64 chance) they hold
//! the same of the same origins. An origin of which nothing is held adds nothing, as a
//! digest without it says the same. A sum, not a XOR: two equal entry hashes (origins
//! made to collide) must not cancel out. The peer answers only for the buckets that differ: one
//! holding few origins with a Page frame (its digest of the bucket's span), a larger one
//! with a summary of that bucket, cut finer, which the first node answers the same way.
//! An idle round costs one Summary whatever the number of origins or counters, and a
//! difference costs a summary per level (two levels hold 100,000 origins) and a page of
//! a few origins.

use crate::crdt::Origin;
use serde::{Deserialize, Serialize};

/// Most bits a bucket index takes: at most 256 buckets, 2 KiB of hashes per Summary.
pub const MAX_BITS: u8 = 8;
/// Origins per bucket a summary aims at: few enough that a differing bucket's page is
/// small, many enough that a summary stays far smaller than the digest it stands for.
const ORIGINS_PER_BUCKET: usize = 8;
/// A differing bucket of at most this many origins is answered with a page of them; a
/// larger one with a summary of its own.
pub const PAGE_ORIGINS: usize = 32;

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

    /// How many hashes the span holds (up to 2^64).
    fn width(&self) -> u128 {
        u128::from(self.hi - self.lo) + 1
    }

    /// The bucket, among `2^bits` equal parts of this span, of `hash` (which it holds).
    pub fn bucket_of(&self, hash: u64, bits: u8) -> usize {
        ((u128::from(hash - self.lo) << bits) / self.width()) as usize
    }

    /// The hashes bucket `bucket` of `2^bits` holds: those [`Span::bucket_of`] puts
    /// there. `None` when it holds none (a span narrower than `2^bits`).
    pub fn bucket(&self, bucket: usize, bits: u8) -> Option<Span> {
        let parts = 1u128 << bits;
        // The first offset a bucket holds: the smallest whose bucket_of is `b`.
        let start = |b: u128| (b * self.width()).div_ceil(parts);
        let (from, to) = (start(bucket as u128), start(bucket as u128 + 1));
        (from < to).then(|| Span {
            lo: self.lo + from as u64,
            hi: self.lo + (to - 1) as u64,
        })
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
/// to and `beyond`, the [`held_hash`] of the versions held above that.
pub fn entry_hash(origin_hash: u64, known: u64, beyond: u64) -> u64 {
    mix(origin_hash ^ mix(known ^ mix(beyond.wrapping_add(0x9e37_79b9_7f4a_7c15))))
}

/// A hash of a set of versions (0 for none): which changes beyond a gap are held, so
/// two replicas that know an origin equally far but hold different changes past a gap
/// differ.
pub fn held_hash(versions: impl Iterator<Item = u64>) -> u64 {
    versions.fold(0, |h, v| h.wrapping_add(mix(v ^ 0x51_7cc1_b727_220a)))
}

/// The splitmix64 finalizer.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Bytes a summary of `2^bits` buckets takes in a frame: its span, the bits, the
/// whole-digest request, the hashes.
pub fn summary_len(bits: u8) -> usize {
    8 + 8 + 1 + 8 + 8 * (1usize << bits)
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

/// The buckets whose hashes differ.
pub fn differing<'a>(mine: &'a [u64], theirs: &'a [u64]) -> impl Iterator<Item = usize> + 'a {
    (0..mine.len().min(theirs.len())).filter(move |&b| mine[b] != theirs[b])
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
    fn entry_and_held_hashes_are_the_protocols_fixed_functions() {
        // Pinned like the origin hash: computed apart from this code (splitmix64's
        // finalizer as published).
        let origin = 0xf8ca_1590_8058_6080;
        let beyond = held_hash([7, 9].into_iter());
        assert_eq!(beyond, 0x23a8_082e_7ef5_9a4a);
        assert_eq!(held_hash(std::iter::empty()), 0);
        assert_eq!(entry_hash(origin, 5, beyond), 0x56af_a51c_18b2_fb44);
        assert_eq!(entry_hash(origin, 5, 0), 0xbbe9_7bcd_dab1_cbc8);
    }

    #[test]
    fn entry_hash_changes_with_what_is_held() {
        let h = origin_hash(&Origin::new("a", 1));
        let held = |versions: &[u64]| held_hash(versions.iter().copied());
        let base = entry_hash(h, 5, 0);
        assert_ne!(base, entry_hash(h, 6, 0));
        assert_ne!(base, entry_hash(h, 5, held(&[8])));
        assert_ne!(
            entry_hash(h, 5, held(&[7, 8])),
            entry_hash(h, 5, held(&[8]))
        );
        assert_eq!(held(&[7, 8]), held(&[8, 7]));
        assert_eq!(held(&[]), 0);
    }

    /// Checks that the buckets of `span` tile it in order, each hash in the bucket
    /// `bucket_of` names.
    fn assert_tiles(span: Span, bits: u8) {
        let parts: Vec<Span> = (0..1usize << bits)
            .filter_map(|b| span.bucket(b, bits))
            .collect();
        assert_eq!(parts.first().map(|p| p.lo), Some(span.lo));
        assert_eq!(parts.last().map(|p| p.hi), Some(span.hi));
        for pair in parts.windows(2) {
            assert_eq!(pair[0].hi + 1, pair[1].lo, "{span:?} in 2^{bits}");
        }
        for b in 0..1usize << bits {
            if let Some(part) = span.bucket(b, bits) {
                for hash in [part.lo, part.lo + (part.hi - part.lo) / 2, part.hi] {
                    assert_eq!(span.bucket_of(hash, bits), b, "{hash} of {span:?}");
                }
            }
        }
    }

    #[test]
    fn buckets_tile_their_span_in_order() {
        for bits in 0..=MAX_BITS {
            assert_tiles(Span::ALL, bits);
            assert_tiles(Span { lo: 1000, hi: 1000 }, bits);
            assert_tiles(Span { lo: 5, hi: 300 }, bits);
            assert_tiles(
                Span {
                    lo: 12345,
                    hi: u64::MAX - 7,
                },
                bits,
            );
        }
        // Of the whole space, a bucket is the hashes with its number as their top bits.
        let top = |hash: u64, bits: u8| (hash >> (64 - u32::from(bits))) as usize;
        for hash in [0, 1 << 63, u64::MAX, 0x1234_5678_9abc_def0] {
            assert_eq!(Span::ALL.bucket_of(hash, 8), top(hash, 8));
            assert_eq!(Span::ALL.bucket_of(hash, 0), 0);
        }
        // A span narrower than its buckets leaves some of them empty.
        let narrow = Span { lo: 10, hi: 12 };
        let held = (0..8).filter(|&b| narrow.bucket(b, 3).is_some()).count();
        assert_eq!(held, 3);
    }

    #[test]
    fn bits_follow_the_origin_count_within_the_frame() {
        assert_eq!(bits_for(0, 1 << 20), 0);
        assert_eq!(bits_for(8, 1 << 20), 0);
        assert_eq!(bits_for(9, 1 << 20), 1);
        assert_eq!(bits_for(1000, 1 << 20), 7);
        assert_eq!(bits_for(100_000, 1 << 20), MAX_BITS);
        // At the smallest frame a summary keeps to half of it: 32 buckets, 281 bytes
        // would be over; 16 buckets, 153 bytes, is not.
        assert_eq!(bits_for(100_000, 512), 4);
        assert!(summary_len(bits_for(100_000, 512)) <= 256);
    }

    #[test]
    fn differing_buckets_are_those_whose_hashes_differ() {
        let mine = [1, 2, 3, 4, 5, 6, 7, 8];
        let theirs = [1, 0, 0, 4, 5, 0, 7, 0];
        assert_eq!(differing(&mine, &theirs).collect::<Vec<_>>(), [1, 2, 5, 7]);
        assert_eq!(differing(&mine, &mine).count(), 0);
    }
}
