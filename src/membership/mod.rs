//! Cluster membership: SWIM failure detection with Lifeguard, membership spread by
//! gossip. Free of I/O like the engine: the runtime passes in messages and the time,
//! carries out the [`Output`]s, and owns sockets and clocks.
//!
//! - **Probing** (`probe.rs`): each round, ping the next member of a shuffled
//!   round-robin list; no ack in time, ask k others to ping it (ping-req); still none,
//!   suspect it. A suspect refutes by raising its liveness counter.
//! - **Lifeguard**: local health awareness (`awareness.rs`) stretches this node's probe
//!   interval, probe timeout and suspicion timeouts when it misses acks and nacks;
//!   suspicion timeouts start long and shrink with independent confirmations
//!   (`suspicion.rs`); indirect probers nack; a node tells a member at once when it
//!   suspects it or sees it declared dead, so a live member refutes quickly.
//! - **Dissemination** (`broadcast.rs`): every change is piggybacked on outgoing
//!   messages (probes, gossip rounds, and any frame of the runtime's, through
//!   [`Membership::piggyback`]) a bounded number of times. A digest comparison with one
//!   random member every push-pull interval, and a full exchange on mismatch, repairs
//!   what was lost.
//! - **Healing**: each round a node may contact one random dead member, and contacts a
//!   seed whenever some seed is not a live member, so a partition heals within a few
//!   rounds of the network healing.
//! - **Records** (`member.rs`, `merge.rs`): one total order decides between two records
//!   of a name (later run, then liveness, then left > dead > suspect > alive), so views
//!   converge and never flap. Tombstones stay for the reap time.
//!
//! The wire form of [`Message`] is in `wire.rs`.

mod awareness;
mod broadcast;
mod config;
mod member;
mod merge;
mod message;
mod probe;
mod suspicion;
pub mod wire;

pub use config::Config;
pub use member::{Member, MemberChange, MemberView, Run, State, Update};
pub use merge::MAX_MEMBERS;
pub use message::{Message, MAX_PROBE_BYTES};

use crate::member::NodeName;
use awareness::Awareness;
use broadcast::Broadcasts;
use probe::{Probe, Relay, Rotation};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use suspicion::Suspicion;

/// Members told directly of a leave or a removal (on the reliable lane); gossip does the
/// rest.
const ANNOUNCE_FANOUT: usize = 3;

/// What the runtime must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send `msg` to the gossip address `to`: as one datagram on the probe lane when
    /// [`Message::is_probe`], else on the reliable lane.
    Send { to: String, msg: Message },
    /// A member's state or run changed in this node's view (one event per change).
    Changed(MemberChange),
    /// Another live process uses this node's name with a later run: the cluster follows
    /// it, not this node. Reported once per such run; an operator must resolve it.
    NameConflict { other: Member },
    /// A live record of this node's name from an earlier run at another gossip address:
    /// this node's past run not yet found dead, or another process with its name (a
    /// copied data directory). Reported once per such run; only a direct probe can tell.
    OlderRun { other: Member },
}

/// Running totals, for status pages and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub probes: u64,
    pub probes_failed: u64,
    pub ping_reqs: u64,
    pub nacks_received: u64,
    pub suspicions_raised: u64,
    pub refutations: u64,
    pub full_exchanges: u64,
    /// New members not added because the member list was full.
    pub turned_away: u64,
}

#[derive(Debug)]
struct Entry {
    update: Update,
    since: Duration,
    suspicion: Option<Suspicion>,
    /// This entry's key in `suspicion_deadlines`.
    suspicion_deadline: Option<Duration>,
    /// This entry's key in `reap_queue`.
    reap_at: Option<Duration>,
}

impl Entry {
    fn is_live(&self) -> bool {
        self.update.state.is_live()
    }
}

/// One node's membership: its view of every member (itself included) and the protocol
/// that keeps the view true.
#[derive(Debug)]
pub struct Membership {
    config: Config,
    me: NodeName,
    rng: fastrand::Rng,
    entries: BTreeMap<NodeName, Entry>,
    /// XOR of every entry's digest share.
    digest: u64,
    /// Live (alive or suspect) entries, this node included.
    live: usize,
    /// The names of live members other than this node, sorted: random picks in O(k).
    peers: Vec<NodeName>,
    /// The gossip addresses of live members other than this node (with a count, should
    /// two share one): the seed rule's "in contact" test.
    live_addrs: BTreeMap<String, usize>,
    awareness: Awareness,
    broadcasts: Broadcasts,
    rotation: Rotation,
    probe: Option<Probe>,
    relays: Vec<Relay>,
    seq: u64,
    next_probe_at: Duration,
    next_gossip_at: Duration,
    next_push_pull_at: Duration,
    suspicion_deadlines: BTreeSet<(Duration, NodeName)>,
    reap_queue: BTreeSet<(Duration, NodeName)>,
    seeds: Vec<String>,
    /// When this node last sent its full state to an address (rate limit).
    full_sent: BTreeMap<String, Duration>,
    conflict_reported: Option<Run>,
    older_run_reported: Option<Run>,
    /// When "member list full" was last logged.
    full_logged_at: Option<Duration>,
    /// Reaped members: their last key and when they were forgotten.
    forgotten: BTreeMap<NodeName, (Update, Duration)>,
    /// A member's full membership reached this node (it knows every member that one did).
    synced: bool,
    /// Members shown to know this node: one probed it by name, or sent its full
    /// membership with this node in it.
    known_by: BTreeSet<NodeName>,
    outputs: Vec<Output>,
    stats: Stats,
}

impl Membership {
    /// A node that knows only itself. With seeds, it asks one of them for the membership
    /// at once (and keeps contacting seeds each round while some seed is not a member).
    /// `me.started_at` must be the wall-clock start of this run, so a restart wins over
    /// the records of the run before it.
    pub fn new(
        me: Member,
        config: Config,
        seeds: Vec<String>,
        rng_seed: u64,
        now: Duration,
    ) -> Membership {
        let mut rng = fastrand::Rng::with_seed(rng_seed);
        let jitter = |rng: &mut fastrand::Rng, d: Duration| d.mul_f64(rng.f64());
        let next_probe_at = now + jitter(&mut rng, config.probe_interval);
        let next_push_pull_at = now + jitter(&mut rng, config.push_pull_interval);
        let seq = rng.u64(..);
        let mut m = Membership {
            awareness: Awareness::new(if config.lifeguard {
                config.awareness_max
            } else {
                1
            }),
            config,
            me: me.name.clone(),
            rng,
            entries: BTreeMap::new(),
            digest: 0,
            live: 0,
            peers: Vec::new(),
            live_addrs: BTreeMap::new(),
            broadcasts: Broadcasts::default(),
            rotation: Rotation::default(),
            probe: None,
            relays: Vec::new(),
            seq,
            next_probe_at,
            next_gossip_at: now,
            next_push_pull_at,
            suspicion_deadlines: BTreeSet::new(),
            reap_queue: BTreeSet::new(),
            seeds,
            full_sent: BTreeMap::new(),
            conflict_reported: None,
            older_run_reported: None,
            full_logged_at: None,
            forgotten: BTreeMap::new(),
            synced: false,
            known_by: BTreeSet::new(),
            outputs: Vec::new(),
            stats: Stats::default(),
        };
        let by = me.name.clone();
        m.store(
            now,
            Update {
                member: me,
                liveness: 0,
                state: State::Alive,
                by,
            },
            true,
        );
        if let Some(seed) = m.pick_seed() {
            m.join(now, &seed);
        }
        m
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// This node's own record.
    pub fn me(&self) -> &Update {
        &self.entries[&self.me].update
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Lifeguard's local health score (0 is healthy).
    pub fn health_score(&self) -> u32 {
        self.awareness.score()
    }

    /// Alive and suspect members, this node included.
    pub fn live_count(&self) -> usize {
        self.live
    }

    /// Changes still waiting to be piggybacked.
    pub fn pending_changes(&self) -> usize {
        self.broadcasts.len()
    }

    /// The record held for `name`, if any.
    /// Whether a member's full membership has reached this node since it started: until
    /// then it may not know every member.
    pub fn has_synced(&self) -> bool {
        self.synced
    }

    /// Whether member `name` has shown it knows this node (see `known_by`): its view
    /// of the cluster includes this node, so it waits on this node for what needs every
    /// member (resolving idempotency keys).
    pub fn is_known_by(&self, name: &NodeName) -> bool {
        self.known_by.contains(name)
    }

    pub fn get(&self, name: &str) -> Option<&Update> {
        self.entries.get(name).map(|e| &e.update)
    }

    /// Runs every timer due at `now`: probe rounds and their deadlines, relays, suspicion
    /// expiry, gossip and push-pull rounds, seed and dead-member contact, reaping.
    pub fn handle_timer(&mut self, now: Duration) {
        self.advance_relays(now);
        self.advance_probe(now);
        let active = self.entries[&self.me].is_live();
        if now >= self.next_probe_at {
            self.next_probe_at = now + self.awareness.scale(self.config.probe_interval);
            if active {
                self.start_probe(now);
                self.contact_dead_member();
                if let Some(seed) = self.pick_seed() {
                    self.send_sync(seed, false);
                }
            }
            let gap = self.config.full_exchange_gap;
            self.full_sent.retain(|_, t| now.saturating_sub(*t) < gap);
        }
        self.expire_suspicions(now);
        self.reap(now);
        if now >= self.next_gossip_at && !self.broadcasts.is_empty() {
            self.next_gossip_at = now + self.config.gossip_interval;
            if active {
                self.gossip_round();
            }
        }
        if !self.config.push_pull_interval.is_zero() && now >= self.next_push_pull_at {
            self.next_push_pull_at = now + self.config.push_pull_interval;
            if let Some(peer) = active
                .then(|| self.random_live_others(1, &[]))
                .and_then(|v| v.into_iter().next())
            {
                self.send_sync(peer.gossip_addr, true);
            }
        }
    }

    /// When [`Membership::handle_timer`] must next run.
    pub fn next_deadline(&self) -> Duration {
        let mut d = self.next_probe_at;
        if let Some(p) = &self.probe {
            if !p.indirect_sent {
                d = d.min(p.direct_deadline);
            }
            d = d.min(p.end);
        }
        for r in &self.relays {
            d = d.min(r.nack_at.unwrap_or(r.expire_at)).min(r.expire_at);
        }
        if let Some((t, _)) = self.suspicion_deadlines.first() {
            d = d.min(*t);
        }
        if !self.broadcasts.is_empty()
            && self.config.gossip_fanout > 0
            && self.entries[&self.me].is_live()
        {
            d = d.min(self.next_gossip_at);
        }
        if !self.config.push_pull_interval.is_zero() {
            d = d.min(self.next_push_pull_at);
        }
        if let Some((t, _)) = self.reap_queue.first() {
            d = d.min(*t);
        }
        d
    }

    /// Handles a message that arrived from `from_addr`, which must be the sender's gossip
    /// address (replies go there).
    pub fn handle_message(&mut self, now: Duration, from_addr: &str, msg: Message) {
        let active = self.entries[&self.me].is_live();
        self.heard_from(msg.from());
        match msg {
            Message::Ping {
                seq,
                from,
                target,
                updates,
            } => {
                self.apply_all(now, updates);
                if target == self.me {
                    // Only a member that holds this node's record probes it by name.
                    self.known_by.insert(from.clone());
                    // A left node still answers, its left record riding along.
                    let ack = Message::Ack {
                        seq,
                        from: self.me.clone(),
                        updates: Vec::new(),
                    };
                    let me = self.me.clone();
                    self.send_probe_lane(from_addr.to_owned(), ack, &[&from, &me]);
                }
            }
            Message::Ack { seq, updates, .. } => {
                self.apply_all(now, updates);
                self.on_ack(now, seq);
            }
            Message::PingReq {
                seq,
                target,
                target_addr,
                updates,
                ..
            } => {
                self.apply_all(now, updates);
                // Only for a member this node holds a record of: a probe by name tells its
                // target the prober knows it (see `known_by`).
                if active && self.entries.contains_key(target.as_str()) {
                    self.relay_probe(now, from_addr, seq, target, target_addr);
                }
            }
            Message::Nack { seq, updates, .. } => {
                self.apply_all(now, updates);
                self.on_nack(seq);
            }
            Message::Gossip { updates, .. } | Message::Announce { updates, .. } => {
                self.apply_all(now, updates);
            }
            Message::Sync {
                digest, updates, ..
            } => {
                self.apply_all(now, updates);
                self.on_digest(now, from_addr, digest);
            }
            Message::Full {
                from,
                want_reply,
                members,
            } => {
                self.synced = true;
                if members.iter().any(|u| u.member.name == self.me) {
                    self.known_by.insert(from.clone());
                }
                for update in members {
                    let own = update.member.name == from;
                    self.apply(now, update, own);
                }
                if want_reply && active {
                    self.send_full(now, from_addr, false);
                }
            }
        }
    }

    /// Joins through `addr` (a seed, a discovery entry, an operator's request): sends
    /// this node's records and asks for the full membership. A node that left or was
    /// removed rejoins by this (its liveness raised past the left record).
    pub fn join(&mut self, now: Duration, addr: &str) {
        let mine = self.entries[&self.me].update.clone();
        if mine.state == State::Left {
            let rejoined = Update {
                liveness: mine.liveness + 1,
                state: State::Alive,
                by: self.me.clone(),
                ..mine
            };
            self.store(now, rejoined, true);
        }
        if addr != self.entries[&self.me].update.member.gossip_addr {
            self.send_full(now, addr, true);
        }
    }

    /// Replaces the seed addresses (when DNS names are re-resolved).
    pub fn set_seeds(&mut self, seeds: Vec<String>) {
        self.seeds = seeds;
    }

    /// A clean stop: marks this node left and tells a few members on the reliable lane
    /// (gossip carries it on). Send the outputs before stopping.
    pub fn leave(&mut self, now: Duration) {
        let mine = self.entries[&self.me].update.clone();
        if mine.state == State::Left {
            return;
        }
        let left = Update {
            state: State::Left,
            by: self.me.clone(),
            ..mine
        };
        self.probe = None;
        self.store(now, left.clone(), true);
        self.announce(left, None);
    }

    /// This node now writes under a new data incarnation: its record becomes a new run
    /// (just after the current one, so it supersedes it everywhere) and spreads.
    pub fn renew_incarnation(&mut self, now: Duration, incarnation: u64) {
        let mine = self.entries[&self.me].update.clone();
        let mut member = mine.member;
        member.incarnation = incarnation;
        member.started_at = member.started_at.saturating_add(1);
        let renewed = Update {
            member,
            liveness: 0,
            state: mine.state,
            by: self.me.clone(),
        };
        self.store(now, renewed, true);
    }

    /// Operator force-removal: marks `name` left cluster-wide (with a liveness above its
    /// own, so a concurrent refutation cannot undo it), and tells it. A live node so
    /// removed stays out until it rejoins (an explicit [`Membership::join`] or a restart,
    /// which is a new run). Removing this node is a leave. Returns whether anything
    /// changed.
    pub fn remove(&mut self, now: Duration, name: &str) -> bool {
        if self.me == name {
            let was = self.entries[&self.me].update.state;
            self.leave(now);
            return was != State::Left;
        }
        let Some(entry) = self.entries.get(name) else {
            return false;
        };
        if entry.update.state == State::Left {
            return false;
        }
        let removed = Update {
            liveness: entry.update.liveness + 1,
            state: State::Left,
            by: self.me.clone(),
            ..entry.update.clone()
        };
        let addr = removed.member.gossip_addr.clone();
        self.store(now, removed.clone(), true);
        self.announce(removed, Some(addr));
        true
    }

    /// Changes to piggyback on any outgoing frame, within `budget_bytes` of encoded
    /// records (see [`wire::update_len`]). Each counts as one of its bounded sends.
    pub fn piggyback(&mut self, budget_bytes: usize) -> Vec<Update> {
        let limit = self.config.retransmit_limit(self.live);
        self.broadcasts.take(budget_bytes, limit)
    }

    /// Applies records piggybacked on a frame of the runtime's.
    pub fn apply_updates(&mut self, now: Duration, updates: Vec<Update>) {
        self.apply_all(now, updates);
    }

    /// A cheap summary of the whole membership (every record's name, run, liveness and
    /// state): two nodes with equal digests hold the same records. O(1).
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// A peer at `from_addr` has membership digest `digest` (from a `Sync`, or from the
    /// runtime's own anti-entropy frames): on a mismatch, start a full exchange with it,
    /// at most once per `full_exchange_gap`.
    pub fn on_digest(&mut self, now: Duration, from_addr: &str, digest: u64) {
        if digest != self.digest && self.entries[&self.me].is_live() {
            self.send_full(now, from_addr, true);
        }
    }

    /// Every record held, this node's and tombstones included: the full exchange.
    pub fn full_state(&self) -> Vec<Update> {
        self.entries.values().map(|e| e.update.clone()).collect()
    }

    /// Every member, this node included, in name order.
    pub fn members(&self) -> impl Iterator<Item = MemberView<'_>> + '_ {
        self.entries.values().map(|e| MemberView {
            member: &e.update.member,
            liveness: e.update.liveness,
            state: e.update.state,
            since: e.since,
            is_self: e.update.member.name == self.me,
        })
    }

    /// Alive and suspect members other than this node: the engine's peer set.
    pub fn gossip_targets(&self) -> Vec<Member> {
        self.peers
            .iter()
            .map(|n| self.entries[n].update.member.clone())
            .collect()
    }

    pub fn drain_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outputs)
    }

    /// Applies piggybacked records, each passed on.
    fn apply_all(&mut self, now: Duration, updates: Vec<Update>) {
        for update in updates {
            self.apply(now, update, true);
        }
    }

    /// Up to `k` distinct random live members, none of them this node or in `exclude`.
    fn random_live_others(&mut self, k: usize, exclude: &[&NodeName]) -> Vec<Member> {
        let n = self.peers.len();
        let peers = &self.peers;
        let allowed = |i: usize| !exclude.contains(&&peers[i]);
        let picked: Vec<usize> = if n <= 2 * (k + exclude.len()) + 8 {
            self.rng.choose_multiple((0..n).filter(|&i| allowed(i)), k)
        } else {
            // Enough candidates that drawing until k distinct ones are found ends soon.
            let mut picked = Vec::with_capacity(k);
            while picked.len() < k {
                let i = self.rng.usize(..n);
                if allowed(i) && !picked.contains(&i) {
                    picked.push(i);
                }
            }
            picked
        };
        picked
            .into_iter()
            .map(|i| self.entries[&self.peers[i]].update.member.clone())
            .collect()
    }

    /// Sends a probe-lane message, filling what is left of [`MAX_PROBE_BYTES`] with
    /// changes to spread. Records about the members named in `about` go first when they
    /// are not plain alive: that is how a suspect hears of its suspicion at its next
    /// probe, and how a left node answers.
    fn send_probe_lane(&mut self, to: String, mut msg: Message, about: &[&NodeName]) {
        let header = wire::encoded_len(&msg) + wire::COUNT_LEN;
        let mut budget = MAX_PROBE_BYTES.saturating_sub(header);
        for name in about {
            if let Some(e) = self.entries.get(*name) {
                let len = wire::update_len(&e.update);
                if e.update.state != State::Alive && len <= budget {
                    budget -= len;
                    msg.updates_mut().push(e.update.clone());
                }
            }
        }
        let more = self.piggyback(budget);
        let updates = msg.updates_mut();
        for u in more {
            if !updates.iter().any(|h| h.member.name == u.member.name) {
                updates.push(u);
            }
        }
        self.outputs.push(Output::Send { to, msg });
    }

    /// Tells a member directly what this node now holds about it (Lifeguard: a suspect,
    /// or a member just seen declared dead, hears it at once and can refute).
    fn tell_member(&mut self, update: Update) {
        let to = update.member.gossip_addr.clone();
        let msg = Message::Gossip {
            from: self.me.clone(),
            updates: vec![update],
        };
        self.outputs.push(Output::Send { to, msg });
    }

    /// Sends `update` on the reliable lane to a few live members, and to `also`.
    fn announce(&mut self, update: Update, also: Option<String>) {
        let name = update.member.name.clone();
        let mut targets: Vec<String> = self
            .random_live_others(ANNOUNCE_FANOUT, &[&name])
            .into_iter()
            .map(|m| m.gossip_addr)
            .collect();
        targets.extend(also);
        for to in targets {
            let msg = Message::Announce {
                from: self.me.clone(),
                updates: vec![update.clone()],
            };
            self.outputs.push(Output::Send { to, msg });
        }
    }

    /// One gossip round: news to `gossip_fanout` random live members.
    fn gossip_round(&mut self) {
        for peer in self.random_live_others(self.config.gossip_fanout, &[]) {
            if self.broadcasts.is_empty() {
                break;
            }
            let msg = Message::Gossip {
                from: self.me.clone(),
                updates: Vec::new(),
            };
            self.send_probe_lane(peer.gossip_addr, msg, &[]);
        }
    }

    /// Sends this node's digest to `to`; `piggyback` only towards a live member (a seed
    /// or a dead member may not be listening, and would waste a send).
    fn send_sync(&mut self, to: String, piggyback: bool) {
        let msg = Message::Sync {
            from: self.me.clone(),
            digest: self.digest,
            updates: Vec::new(),
        };
        if piggyback {
            self.send_probe_lane(to, msg, &[]);
        } else {
            self.outputs.push(Output::Send { to, msg });
        }
    }

    /// Sends every record to `to` (reliable lane), unless this node did so within the
    /// full-exchange gap.
    fn send_full(&mut self, now: Duration, to: &str, want_reply: bool) {
        if let Some(t) = self.full_sent.get(to) {
            if now.saturating_sub(*t) < self.config.full_exchange_gap {
                return;
            }
        }
        self.full_sent.insert(to.to_owned(), now);
        self.stats.full_exchanges += 1;
        let msg = Message::Full {
            from: self.me.clone(),
            want_reply,
            members: self.full_state(),
        };
        self.outputs.push(Output::Send {
            to: to.to_owned(),
            msg,
        });
    }

    /// Seeds that are neither this node nor a live member's address.
    fn seeds_out_of_contact(&self) -> Vec<String> {
        let my_addr = &self.entries[&self.me].update.member.gossip_addr;
        self.seeds
            .iter()
            .filter(|s| *s != my_addr && !self.live_addrs.contains_key(*s))
            .cloned()
            .collect()
    }

    /// One random seed to contact this round, if some seed is out of contact (chitchat's
    /// rule: a cluster cannot stay split while its seeds are on both sides).
    fn pick_seed(&mut self) -> Option<String> {
        let out = self.seeds_out_of_contact();
        self.rng.choice(out)
    }

    /// With the configured probability, sends a digest to one random dead member: if it
    /// is alive after all (a healed partition), the digests differ and a full exchange
    /// follows, in which it learns it was declared dead and refutes.
    fn contact_dead_member(&mut self) {
        if self.rng.f64() >= self.config.dead_contact_probability {
            return;
        }
        let dead: Vec<String> = self
            .entries
            .values()
            .filter(|e| e.update.state == State::Dead)
            .map(|e| e.update.member.gossip_addr.clone())
            .collect();
        if let Some(addr) = self.rng.choice(dead) {
            self.send_sync(addr, false);
        }
    }
}

#[cfg(test)]
mod tests;
