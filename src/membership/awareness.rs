//! Lifeguard's local health awareness: a small score of how badly this node itself keeps
//! up, which stretches its probe interval, probe timeout and suspicion timeouts.
//!
//! A node that misses acks because it is slow (CPU-starved, paused, its receive queue
//! backed up) would otherwise blame healthy members. The evidence that the fault is
//! local: a failed probe for which the indirect probers did not even send their nacks
//! (they would have, had they been reachable and the target down), and being suspected
//! itself. A probe acked in time is evidence of health. The score is clamped to
//! `0..max`; timeouts are multiplied by `score + 1`.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Awareness {
    score: u32,
    max: u32,
}

impl Awareness {
    /// `max` of 1 pins the score at 0: awareness off.
    pub fn new(max: u32) -> Awareness {
        Awareness {
            score: 0,
            max: max.max(1),
        }
    }

    pub fn score(&self) -> u32 {
        self.score
    }

    /// Moves the score by `delta`, clamped to `0..max`. Returns whether it changed.
    pub fn apply(&mut self, delta: i64) -> bool {
        let next = (self.score as i64 + delta).clamp(0, self.max as i64 - 1) as u32;
        let changed = next != self.score;
        self.score = next;
        changed
    }

    /// `d` stretched by the local health multiplier (score + 1).
    pub fn scale(&self, d: Duration) -> Duration {
        d * (self.score + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_score_is_clamped_and_scales_timeouts() {
        let mut a = Awareness::new(8);
        assert_eq!(
            a.scale(Duration::from_millis(200)),
            Duration::from_millis(200)
        );
        assert!(!a.apply(-1), "the score never goes below 0");
        assert!(a.apply(3));
        assert_eq!(
            a.scale(Duration::from_millis(200)),
            Duration::from_millis(800)
        );
        a.apply(100);
        assert_eq!(a.score(), 7, "the score stays under its maximum");
        assert_eq!(a.scale(Duration::from_millis(500)), Duration::from_secs(4));
        a.apply(-2);
        assert_eq!(a.score(), 5);
    }

    #[test]
    fn a_maximum_of_one_turns_awareness_off() {
        let mut a = Awareness::new(1);
        assert!(!a.apply(5));
        assert_eq!(a.score(), 0);
        assert_eq!(
            a.scale(Duration::from_millis(200)),
            Duration::from_millis(200)
        );
    }
}
