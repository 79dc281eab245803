//! A small shared histogram: fixed buckets, recorded where the thing happens (an HTTP
//! worker answering an operation, the node core's group commit, the WAL's fsync) and
//! read by the status model as a [`HistogramSnapshot`].
//!
//! Recording is a few relaxed atomic additions, so any number of threads can record
//! into clones of one [`Histogram`] without a lock. A snapshot reads the buckets one by
//! one, so while recording goes on it may be a few observations out of step between
//! buckets and sum; its count is the sum of its buckets, so the buckets never add up to
//! more than the count (the Prometheus rule).

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Buckets for durations, in seconds: from 50 µs (an in-memory operation) to 2.5 s.
pub const DURATION_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5,
];

/// Buckets for batch sizes (operations per group commit), up to the largest batch.
pub const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0,
];

/// A histogram over fixed buckets; clones record into the same counts.
#[derive(Clone, Debug)]
pub struct Histogram(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    /// Upper bounds, ascending and finite; a value above the last goes to the overflow
    /// bucket (`+Inf`).
    bounds: &'static [f64],
    /// One count per bound, then the overflow bucket.
    counts: Box<[AtomicU64]>,
    /// The sum of every observation, an f64 kept as its bits.
    sum_bits: AtomicU64,
}

impl Histogram {
    /// A histogram over `bounds` (ascending, finite; checked in debug builds).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]));
        debug_assert!(bounds.iter().all(|b| b.is_finite()));
        let counts = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Histogram(Arc::new(Inner {
            bounds,
            counts,
            sum_bits: AtomicU64::new(0f64.to_bits()),
        }))
    }

    /// Records one observation: it counts in the first bucket whose bound is at least
    /// `value` (buckets are "less than or equal").
    pub fn observe(&self, value: f64) {
        let inner = &*self.0;
        let bucket = inner.bounds.partition_point(|b| *b < value);
        inner.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let _ = inner
            .sum_bits
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + value).to_bits())
            });
    }

    /// Records a duration in seconds.
    pub fn observe_duration(&self, d: Duration) {
        self.observe(d.as_secs_f64());
    }

    /// The counts so far.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let inner = &*self.0;
        let counts: Vec<u64> = inner
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let mut cumulative = 0;
        let buckets = inner
            .bounds
            .iter()
            .zip(&counts)
            .map(|(le, n)| {
                cumulative += n;
                Bucket {
                    le: *le,
                    count: cumulative,
                }
            })
            .collect();
        HistogramSnapshot {
            buckets,
            count: counts.iter().sum(),
            sum: f64::from_bits(inner.sum_bits.load(Ordering::Relaxed)),
        }
    }
}

/// A histogram's figures at one moment, as `GET /status` shows them and Prometheus
/// histograms are rendered from.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct HistogramSnapshot {
    /// The finite buckets, ascending; each counts every observation up to its bound
    /// (cumulative). The `+Inf` bucket is `count`.
    pub buckets: Vec<Bucket>,
    /// Observations in all.
    pub count: u64,
    /// The sum of all observations.
    pub sum: f64,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Bucket {
    /// Upper bound (inclusive).
    pub le: f64,
    /// Observations up to `le` (cumulative).
    pub count: u64,
}

impl HistogramSnapshot {
    /// Each bucket with its own (not cumulative) count, the `+Inf` bucket last, as the
    /// Prometheus client takes them.
    pub fn per_bucket(&self) -> Vec<(f64, u64)> {
        let mut below = 0;
        let finite = self.buckets.iter().map(|b| {
            let own = b.count - below;
            below = b.count;
            (b.le, own)
        });
        let mut all: Vec<(f64, u64)> = finite.collect();
        all.push((f64::INFINITY, self.count - below));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_at_least_their_value() {
        let h = Histogram::new(&[1.0, 2.0, 4.0]);
        for v in [0.5, 1.0, 1.5, 4.0, 9.0] {
            h.observe(v);
        }
        let s = h.snapshot();
        let cumulative: Vec<u64> = s.buckets.iter().map(|b| b.count).collect();
        assert_eq!(cumulative, vec![2, 3, 4]);
        assert_eq!(s.count, 5);
        assert_eq!(s.sum, 16.0);
        assert_eq!(
            s.per_bucket(),
            vec![(1.0, 2), (2.0, 1), (4.0, 1), (f64::INFINITY, 1)]
        );
    }

    #[test]
    fn clones_share_their_counts_across_threads() {
        let h = Histogram::new(DURATION_BUCKETS);
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let h = h.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        h.observe_duration(Duration::from_micros(300));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let s = h.snapshot();
        assert_eq!(s.count, 4000);
        assert!((s.sum - 1.2).abs() < 1e-9, "{}", s.sum);
        let le_500us = s.buckets.iter().find(|b| b.le == 0.000_5).unwrap();
        assert_eq!(le_500us.count, 4000);
        let le_250us = s.buckets.iter().find(|b| b.le == 0.000_25).unwrap();
        assert_eq!(le_250us.count, 0);
    }
}
