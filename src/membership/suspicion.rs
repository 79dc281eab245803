//! Lifeguard's dynamic suspicion timeout: a suspicion starts long and shrinks as
//! independent members confirm it.
//!
//! A lone suspicion may come from one slow or badly connected node, so it waits the
//! longest timeout, giving the suspect time to hear of it and refute. Each distinct
//! further declarer is independent evidence, and the timeout falls logarithmically from
//! `max` to `min`, reaching `min` at `expected` confirmations:
//!
//! `timeout(c) = max − (max − min) · ln(c + 1) / ln(expected + 1)`, never below `min`.
//!
//! The timeout counts from when this node first held the suspicion, so confirmations
//! arriving late can expire it at once.

use crate::member::NodeName;
use std::collections::BTreeSet;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct Suspicion {
    started: Duration,
    min: Duration,
    max: Duration,
    expected: u32,
    /// Who declared it first; not a confirmation.
    first: NodeName,
    /// Distinct later declarers, at most `expected` kept (more change nothing).
    confirmers: BTreeSet<NodeName>,
}

impl Suspicion {
    pub fn new(now: Duration, min: Duration, max: Duration, expected: u32, by: &NodeName) -> Self {
        Suspicion {
            started: now,
            min,
            max: max.max(min),
            expected,
            first: by.to_owned(),
            confirmers: BTreeSet::new(),
        }
    }

    /// Counts `by` as a confirmation if it is new. Returns whether it was.
    pub fn confirm(&mut self, by: &NodeName) -> bool {
        if *by == self.first
            || self.confirmers.len() as u32 >= self.expected
            || self.confirmers.contains(by)
        {
            return false;
        }
        self.confirmers.insert(by.to_owned())
    }

    pub fn confirmations(&self) -> u32 {
        self.confirmers.len() as u32
    }

    /// The timeout with the confirmations received so far.
    pub fn timeout(&self) -> Duration {
        if self.expected == 0 {
            return self.min;
        }
        let c = self.confirmations() as f64;
        let frac = ((c + 1.0).ln() / (self.expected as f64 + 1.0).ln()).min(1.0);
        let span = self.max.saturating_sub(self.min);
        (self.max.saturating_sub(span.mul_f64(frac))).max(self.min)
    }

    /// When the suspicion expires, its timeout stretched by `scale` (Lifeguard's local
    /// health multiplier: a node that is itself struggling is slow to declare deaths).
    pub fn deadline(&self, scale: u32) -> Duration {
        self.started + self.timeout() * scale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn n(name: &str) -> NodeName {
        NodeName::new(name).expect("a valid name")
    }

    #[test]
    fn the_timeout_shrinks_from_max_to_min_with_independent_confirmations() {
        let mut s = Suspicion::new(ms(1000), ms(1000), ms(4000), 3, &n("a"));
        assert_eq!(s.timeout(), ms(4000), "unconfirmed: the longest timeout");
        assert!(!s.confirm(&n("a")), "the first declarer is no confirmation");
        assert!(s.confirm(&n("b")));
        assert!(!s.confirm(&n("b")), "the same confirmer counts once");
        // ln 2 / ln 4 = 0.5 of the way down.
        assert_eq!(s.timeout(), ms(2500));
        assert!(s.confirm(&n("c")));
        let two = s.timeout();
        assert!(two > ms(1000) && two < ms(2500), "{two:?}");
        assert!(s.confirm(&n("d")));
        assert_eq!(
            s.timeout(),
            ms(1000),
            "expected confirmations: the shortest"
        );
        assert!(
            !s.confirm(&n("e")),
            "confirmations past the expected count change nothing"
        );
        assert_eq!(s.deadline(1), ms(2000));
        assert_eq!(
            s.deadline(3),
            ms(4000),
            "local health stretches the deadline"
        );
    }

    #[test]
    fn without_expected_confirmations_the_timeout_is_the_minimum() {
        let s = Suspicion::new(Duration::ZERO, ms(700), ms(2100), 0, &n("a"));
        assert_eq!(s.timeout(), ms(700));
    }
}
