//! Membership settings, each with its default and the reason for it.
//!
//! The defaults detect a crash on a LAN-sized cluster (up to ~50 nodes) in under 5 s at
//! every member (measured by `tests/membership_sim.rs`), keep an idle node's membership
//! traffic to a few hundred bytes per second, and ride out 50 % packet loss without
//! declaring a live member dead.

use std::time::Duration;

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// How often a node probes one member (round-robin over a shuffled list). Lifeguard
    /// stretches it by the local health multiplier. Default 400 ms: with n members, the
    /// first probe of a crashed one comes after about one interval, but after several
    /// in the worst percent of cases, and that wait dominates the detection time.
    pub probe_interval: Duration,
    /// How long a direct ping waits for its ack before asking others to probe
    /// (ping-req). Stretched like the interval. Must be under half the interval, so the
    /// indirect probes and their nacks have time to come back. Default 150 ms (a LAN
    /// round trip is well under 1 ms; the rest is room for a busy event loop).
    pub probe_timeout: Duration,
    /// Members asked to probe a target that missed its direct ack (SWIM's k). Default 3.
    pub indirect_probes: usize,
    /// The shortest suspicion: `suspicion_min_mult · max(1, log10 n) · probe_interval`
    /// for a cluster of n live members. A suspicion confirmed by
    /// `suspicion_confirmations` independent members expires after it. Default 2.
    pub suspicion_min_mult: f64,
    /// The longest suspicion, as a multiple of the shortest: an unconfirmed suspicion
    /// waits this long, so one confused node cannot quickly kill a healthy member.
    /// Default 3.
    pub suspicion_max_mult: f64,
    /// Independent confirmations that bring a suspicion down to its shortest timeout
    /// (capped at n − 2). Default 3.
    pub suspicion_confirmations: u32,
    /// Each change is piggybacked at most `retransmit_mult · ⌈log10(n + 1)⌉` times per
    /// node. Default 4 (8 sends at 20 nodes, 16 at 1000).
    pub retransmit_mult: u32,
    /// How often a node with changes still to spread sends them in a gossip message to
    /// `gossip_fanout` random live members. Nothing is sent when there is nothing new.
    /// Default 200 ms.
    pub gossip_interval: Duration,
    /// Members per gossip round. 0 leaves dissemination to piggybacking on probes and
    /// on the runtime's own frames. Default 3.
    pub gossip_fanout: usize,
    /// How often a node compares membership digests with one random live member (a
    /// `Sync`), then exchanges full state if they differ; this repairs any lost
    /// piggyback. `Duration::ZERO` turns it off, for a runtime that carries
    /// [`Membership::digest`](super::Membership::digest) in its own anti-entropy frames
    /// and calls [`Membership::on_digest`](super::Membership::on_digest). Default 2 s.
    pub push_pull_interval: Duration,
    /// The shortest time between two full exchanges started with one address. Default
    /// 1 s.
    pub full_exchange_gap: Duration,
    /// How long dead and left members are kept as tombstones (listed, gossiped in full
    /// exchanges, contacted now and then) before they are forgotten. A forgotten
    /// member's last record is still kept, unlisted, so stale gossip cannot bring it
    /// back. A partition that outlasts the reap time heals through seeds (or discovery)
    /// rather than dead-member contact. Default 1 h.
    pub reap_time: Duration,
    /// The chance, each probe round, of also contacting one random dead member, so a
    /// partition heals however long it lasted. Default 0.2.
    pub dead_contact_probability: f64,
    /// Lifeguard's local health score runs from 0 to `awareness_max − 1`; timeouts and
    /// the probe interval are multiplied by score + 1. Default 8.
    pub awareness_max: u32,
    /// Lifeguard: local health awareness, nacks from indirect probers, suspicion
    /// timeouts that shrink with confirmations, and telling a suspect at once. Off gives
    /// plain SWIM (fixed shortest suspicion timeout), for comparison in tests.
    /// Default on.
    pub lifeguard: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            probe_interval: Duration::from_millis(400),
            probe_timeout: Duration::from_millis(150),
            indirect_probes: 3,
            suspicion_min_mult: 2.0,
            suspicion_max_mult: 3.0,
            suspicion_confirmations: 3,
            retransmit_mult: 4,
            gossip_interval: Duration::from_millis(200),
            gossip_fanout: 3,
            push_pull_interval: Duration::from_secs(2),
            full_exchange_gap: Duration::from_secs(1),
            reap_time: Duration::from_secs(3600),
            dead_contact_probability: 0.2,
            awareness_max: 8,
            lifeguard: true,
        }
    }
}

impl Config {
    /// Checks the settings against each other; the error names the rule broken.
    pub fn validate(&self) -> Result<(), String> {
        if self.probe_interval.is_zero() || self.gossip_interval.is_zero() {
            return Err("probe and gossip intervals must be above zero".into());
        }
        let twice = self.probe_timeout.checked_mul(2);
        if self.probe_timeout.is_zero() || twice.is_none_or(|t| t >= self.probe_interval) {
            return Err(format!(
                "the probe timeout ({:?}) must be above zero and under half the probe interval ({:?})",
                self.probe_timeout, self.probe_interval
            ));
        }
        if !(self.suspicion_min_mult > 0.0 && self.suspicion_min_mult.is_finite()) {
            return Err("the suspicion multiplier must be above zero".into());
        }
        if !(self.suspicion_max_mult >= 1.0 && self.suspicion_max_mult.is_finite()) {
            return Err("the suspicion maximum multiplier must be at least 1".into());
        }
        if self.retransmit_mult == 0 {
            return Err("the retransmit multiplier must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.dead_contact_probability) {
            return Err("the dead-contact probability must be between 0 and 1".into());
        }
        if self.awareness_max == 0 {
            return Err("the awareness maximum must be at least 1".into());
        }
        Ok(())
    }

    /// The suspicion timeouts for a cluster of `live` members: (shortest, longest).
    pub fn suspicion_bounds(&self, live: usize) -> (Duration, Duration) {
        let scale = (live.max(1) as f64).log10().max(1.0);
        let min = self.probe_interval.mul_f64(self.suspicion_min_mult * scale);
        (min, min.mul_f64(self.suspicion_max_mult))
    }

    /// How many times each change is sent by one node, in a cluster of `live` members.
    pub fn retransmit_limit(&self, live: usize) -> u32 {
        let log = ((live + 1) as f64).log10().ceil().max(1.0) as u32;
        self.retransmit_mult * log
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_timeout_too_long_to_double_is_refused_not_a_panic() {
        let config = Config {
            probe_timeout: Duration::MAX,
            ..Config::default()
        };
        assert!(config.validate().unwrap_err().contains("probe timeout"));
        assert_eq!(Config::default().validate(), Ok(()));
    }
}
