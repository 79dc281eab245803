//! SWIM failure detection: who to probe next, the probe in flight, and probes run on
//! behalf of others.
//!
//! Each probe round a node pings the next member of a shuffled round-robin list (so every
//! member is probed within one pass, unlike a random pick). No ack within the probe
//! timeout: it asks `indirect_probes` random members to ping the target (ping-req), and
//! they pass the target's ack back — or, with Lifeguard, a nack when the target did not
//! answer them either. No ack by the end of the round: the target is suspected.
//!
//! Lifeguard's local health score moves with each probe: an ack in time lowers it; a
//! failed probe raises it by the nacks that did not come (all nacks came: the target is
//! down, not us) or by one when nobody could be asked.

use super::member::{Run, State, Update};
use super::message::Message;
use super::Membership;
use crate::member::NodeName;
use std::time::Duration;

/// Ping-reqs served at once; further requests are dropped (the requester then sees a
/// missing nack, which is honest: this node is overloaded).
const MAX_RELAYS: usize = 64;

/// Round-robin over a shuffled list of member names.
#[derive(Debug, Default)]
pub struct Rotation {
    order: Vec<NodeName>,
    next: usize,
}

impl Rotation {
    /// The next name in this pass, if any is left.
    pub fn pop(&mut self) -> Option<NodeName> {
        let name = self.order.get(self.next)?.clone();
        self.next += 1;
        Some(name)
    }

    /// Starts a new pass over `names`, shuffled.
    pub fn reset(&mut self, mut names: Vec<NodeName>, rng: &mut fastrand::Rng) {
        rng.shuffle(&mut names);
        self.order = names;
        self.next = 0;
    }

    /// Adds a newly live member at a random place in what is left of this pass, so it
    /// is probed soon but at no predictable moment. O(1): it swaps places with a random
    /// later entry. A member already in the pass may then be probed twice in it, which
    /// is harmless; members no longer live are skipped when popped.
    pub fn insert(&mut self, name: &NodeName, rng: &mut fastrand::Rng) {
        self.order.push(name.to_owned());
        let at = rng.usize(self.next..self.order.len());
        let last = self.order.len() - 1;
        self.order.swap(at, last);
    }
}

/// The probe in flight.
#[derive(Debug)]
pub struct Probe {
    pub seq: u64,
    pub target: NodeName,
    pub target_addr: String,
    /// The run probed: if the member restarts meanwhile, the result is about the old run.
    pub run: Run,
    /// No ack by then: ask others (ping-req).
    pub direct_deadline: Duration,
    /// No ack by then: the probe failed.
    pub end: Duration,
    pub indirect_sent: bool,
    pub expected_nacks: u32,
    pub nacks: u32,
}

/// A ping this node sends for another node's ping-req.
#[derive(Debug)]
pub struct Relay {
    /// The sequence number of this node's ping to the target.
    pub seq: u64,
    pub requester_addr: String,
    pub requester_seq: u64,
    /// When to send the requester a nack (Lifeguard), if the target has not acked.
    pub nack_at: Option<Duration>,
    pub expire_at: Duration,
}

impl Membership {
    /// Starts the next probe, if there is a member to probe.
    pub(super) fn start_probe(&mut self, now: Duration) {
        let Some(target) = self.next_probe_target() else {
            return;
        };
        let entry = &self.entries[&target];
        let target_addr = entry.update.member.gossip_addr.clone();
        let run = entry.update.member.run();
        let seq = self.next_seq();
        self.probe = Some(Probe {
            seq,
            target: target.clone(),
            target_addr: target_addr.clone(),
            run,
            direct_deadline: now + self.awareness.scale(self.config.probe_timeout),
            end: now + self.awareness.scale(self.config.probe_interval),
            indirect_sent: false,
            expected_nacks: 0,
            nacks: 0,
        });
        self.stats.probes += 1;
        self.send_ping(seq, target, target_addr);
    }

    /// Pings `target` at `target_addr`, its own record (if it is in doubt) riding along.
    fn send_ping(&mut self, seq: u64, target: NodeName, target_addr: String) {
        let ping = Message::Ping {
            seq,
            from: self.me.clone(),
            target: target.clone(),
            updates: Vec::new(),
        };
        self.send_probe_lane(target_addr, ping, &[&target]);
    }

    fn next_probe_target(&mut self) -> Option<NodeName> {
        for _ in 0..2 {
            while let Some(name) = self.rotation.pop() {
                if name != self.me && self.entries.get(&name).is_some_and(|e| e.is_live()) {
                    return Some(name);
                }
            }
            self.rotation.reset(self.peers.clone(), &mut self.rng);
        }
        None
    }

    /// Moves the probe in flight on: ping-reqs at the direct deadline, failure at the end.
    pub(super) fn advance_probe(&mut self, now: Duration) {
        let Some(probe) = self.probe.as_mut() else {
            return;
        };
        if !probe.indirect_sent && now >= probe.direct_deadline {
            probe.indirect_sent = true;
            let (seq, target, target_addr) =
                (probe.seq, probe.target.clone(), probe.target_addr.clone());
            let helpers = self.random_live_others(self.config.indirect_probes, &[&target]);
            // The target's record rides along, so a helper that has not heard of it yet
            // holds it before it probes it (it relays only for members it holds).
            let record: Vec<_> = self
                .entries
                .get(&target)
                .map(|e| e.update.clone())
                .into_iter()
                .collect();
            for helper in &helpers {
                let req = Message::PingReq {
                    seq,
                    from: self.me.clone(),
                    target: target.clone(),
                    target_addr: target_addr.clone(),
                    updates: record.clone(),
                };
                self.send_probe_lane(helper.gossip_addr.clone(), req, &[]);
            }
            self.stats.ping_reqs += helpers.len() as u64;
            if self.config.lifeguard {
                if let Some(p) = self.probe.as_mut() {
                    p.expected_nacks = helpers.len() as u32;
                }
            }
        }
        if self.probe.as_ref().is_some_and(|p| now >= p.end) {
            let probe = self.probe.take().expect("checked");
            self.stats.probes_failed += 1;
            let missing = probe.expected_nacks.saturating_sub(probe.nacks);
            let blame_self = if probe.expected_nacks > 0 { missing } else { 1 };
            self.awareness_delta(blame_self as i64);
            self.suspect_after_failed_probe(now, &probe.target, probe.run);
        }
    }

    /// An ack arrived: it ends our probe, or is passed on to whoever asked us to probe.
    pub(super) fn on_ack(&mut self, now: Duration, seq: u64) {
        if let Some(probe) = self.probe.as_ref().filter(|p| p.seq == seq) {
            let in_time = now <= probe.direct_deadline;
            self.probe = None;
            if in_time {
                self.awareness_delta(-1);
            }
            return;
        }
        if let Some(i) = self.relays.iter().position(|r| r.seq == seq) {
            let relay = self.relays.swap_remove(i);
            let ack = Message::Ack {
                seq: relay.requester_seq,
                from: self.me.clone(),
                updates: Vec::new(),
            };
            self.send_probe_lane(relay.requester_addr, ack, &[]);
        }
    }

    pub(super) fn on_nack(&mut self, seq: u64) {
        if let Some(probe) = self.probe.as_mut().filter(|p| p.seq == seq) {
            probe.nacks += 1;
            self.stats.nacks_received += 1;
        }
    }

    /// Pings `target` for the node at `requester_addr` (a ping-req).
    pub(super) fn relay_probe(
        &mut self,
        now: Duration,
        requester_addr: &str,
        requester_seq: u64,
        target: NodeName,
        target_addr: String,
    ) {
        if self.relays.len() >= MAX_RELAYS || target == self.me {
            return;
        }
        let seq = self.next_seq();
        self.relays.push(Relay {
            seq,
            requester_addr: requester_addr.to_owned(),
            requester_seq,
            nack_at: self
                .config
                .lifeguard
                .then_some(now + self.config.probe_timeout),
            expire_at: now + self.config.probe_interval,
        });
        self.send_ping(seq, target, target_addr);
    }

    /// Sends due nacks and drops relays whose time is up.
    pub(super) fn advance_relays(&mut self, now: Duration) {
        let mut nacks = Vec::new();
        for relay in &mut self.relays {
            if relay.nack_at.is_some_and(|t| t <= now) {
                relay.nack_at = None;
                nacks.push((relay.requester_addr.clone(), relay.requester_seq));
            }
        }
        self.relays.retain(|r| r.expire_at > now);
        for (addr, seq) in nacks {
            let nack = Message::Nack {
                seq,
                from: self.me.clone(),
                updates: Vec::new(),
            };
            self.send_probe_lane(addr, nack, &[]);
        }
    }

    /// This node's probe of `name` failed: suspect it (or, if it is suspect already,
    /// confirm the suspicion as one more independent prober).
    fn suspect_after_failed_probe(&mut self, now: Duration, name: &NodeName, run: Run) {
        let Some(entry) = self.entries.get(name) else {
            return;
        };
        if entry.update.member.run() != run {
            return;
        }
        match entry.update.state {
            State::Alive => {
                let update = Update {
                    state: State::Suspect,
                    by: self.me.clone(),
                    ..entry.update.clone()
                };
                self.stats.suspicions_raised += 1;
                self.store(now, update.clone(), true);
                if self.config.lifeguard {
                    self.tell_member(update);
                }
            }
            State::Suspect => {
                let me = self.me.clone();
                self.confirm_suspicion(name, &me);
            }
            State::Dead | State::Left => {}
        }
    }

    pub(super) fn next_seq(&mut self) -> u64 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }
}
