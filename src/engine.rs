//! The gossip engine: scuttlebutt anti-entropy and eager push over the CRDT state.
//!
//! The engine is a plain struct with no sockets, threads, files or clock reads. A runtime
//! feeds it inputs — a frame from a peer, the timer firing, a durable local batch, a new
//! peer set — each with the current time, and drains the outputs it queued: frames to
//! send and state learned from peers (which the runtime logs). Randomness comes from an
//! RNG seeded by the runtime, so a simulator can replay any run from its seed.
//!
//! Anti-entropy: every `gossip_interval` the engine sends its digest to `fanout` random
//! peers (Syn); a peer answers with what the sender lacks plus its own digest (SynAck);
//! the sender answers with what the peer lacks (Delta). Deltas are split into frames of
//! at most `max_payload` bytes in version order, each chunk closing its origin's range at
//! the last version it carries, so a receiver that gets only a prefix advances only that far.
//!
//! Eager push: a durable local batch goes at once to random peers (Push); a peer that
//! learns something from a push passes it to as many others, and a push that reveals a
//! gap makes the receiver pull from the pusher at once instead of waiting for the next
//! round. A push goes to `fanout` peers or, in a cluster of n nodes, ln(n) + 3 if more
//! (every peer in a small cluster; see [`Engine::push_fanout`]).
//!
//! A Syn or SynAck carries the node's whole digest. One that does not fit a frame is
//! not sent (a peer would drop it): the node reports it once ([`Output::DigestOverLimit`])
//! and answers Syns with Delta frames only, until the limit is raised.
//!
//! Each peer's digest (in its Syn or SynAck) also tells how far it is behind this
//! node's own writes; the engine keeps that in a [`ReplicationTracker`] for reports.

use crate::codec::{self, Frame, PerFrameType};
use crate::crdt::{Applied, Digest, LocalOp, Origin, OriginDelta, PreparedBatch, State};
use crate::member::NodeName;
use crate::replication::{PeerLag, ReplicationTracker};
use std::collections::HashMap;
use std::time::Duration;

/// Smallest payload limit the engine accepts; every entry fits in it.
pub const MIN_PAYLOAD: usize = 512;
/// Time between anti-entropy rounds unless configured otherwise: the reference systems'.
pub const DEFAULT_GOSSIP_INTERVAL: Duration = Duration::from_millis(100);
/// The shortest gossip interval the engine runs at.
pub const MIN_GOSSIP_INTERVAL: Duration = Duration::from_millis(1);
/// Peers per anti-entropy round unless configured otherwise: the reference systems'.
pub const DEFAULT_FANOUT: usize = 2;

/// Gossip settings. The defaults are those of the reference systems: 100 ms, fanout 2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub gossip_interval: Duration,
    pub fanout: usize,
    pub eager_push: bool,
    /// Largest frame payload the engine builds, in bytes.
    pub max_payload: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            gossip_interval: DEFAULT_GOSSIP_INTERVAL,
            fanout: DEFAULT_FANOUT,
            eager_push: true,
            max_payload: codec::DEFAULT_MAX_PAYLOAD,
        }
    }
}

/// An effect for the runtime to carry out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    Send {
        to: NodeName,
        frame: Frame,
    },
    /// Deltas from peers that changed the state or advanced a digest; a runtime with a
    /// WAL logs them so a restart does not have to fetch them again.
    Learned(Vec<OriginDelta>),
    /// The peer `from` claims this node's own origin beyond what this node wrote (up to
    /// `claimed`; this node is at `own`): another process writes under it, or this
    /// node's data is older than what it once gossiped. Nothing of the claim was merged.
    OwnOriginAhead {
        from: NodeName,
        claimed: u64,
        own: u64,
    },
    /// This node's digest of `origins` origins takes `needs` bytes and no longer fits a
    /// frame's `max` payload bytes. Until digests are split across frames, the node sends
    /// no Syn or SynAck (each carries the whole digest, and a peer drops a frame over the
    /// limit); the deltas a SynAck would carry still go, as Delta frames. Reported when
    /// the digest stops fitting, not again until it has fitted once more.
    DigestOverLimit {
        origins: usize,
        needs: usize,
        max: usize,
    },
}

/// Figures for status pages and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub frames_out: PerFrameType,
    pub bytes_out: PerFrameType,
    pub frames_in: PerFrameType,
    pub bytes_in: PerFrameType,
    /// Anti-entropy rounds started.
    pub rounds: u64,
    /// Counter entries sent and received in deltas and pushes.
    pub entries_out: u64,
    pub entries_in: u64,
    /// Pushes passed on after learning from them.
    pub forwarded: u64,
    /// Immediate pulls made because a push revealed a gap.
    pub repairs: u64,
    /// Deltas and digests from peers that claimed this node's own origin beyond what it
    /// wrote (refused; see [`Output::OwnOriginAhead`]).
    pub own_origin_claims: u64,
    /// Syns and SynAcks not sent because this node's digest does not fit a frame (see
    /// [`Output::DigestOverLimit`]).
    pub digests_over_limit: u64,
    /// The last time a frame from a peer changed the state (reports show how long ago).
    #[serde(skip)]
    pub last_learned: Option<Duration>,
}

pub struct Engine {
    me: Origin,
    config: Config,
    state: State,
    peers: Vec<NodeName>,
    rng: fastrand::Rng,
    outbox: Vec<Output>,
    next_round: Duration,
    /// Per peer, when the next gap-repair pull may be sent to it.
    repair_after: HashMap<NodeName, Duration>,
    /// The digest did not fit a frame the last time one was to be sent.
    digest_over_limit: bool,
    stats: Stats,
    replication: ReplicationTracker,
}

impl Engine {
    /// An engine for origin `me` starting from `state` (empty, or recovered from a WAL).
    pub fn new(me: Origin, config: Config, state: State, seed: u64, now: Duration) -> Engine {
        let mut rng = fastrand::Rng::with_seed(seed);
        let interval = config.gossip_interval.max(MIN_GOSSIP_INTERVAL);
        // A random first round keeps nodes started together from gossiping in lockstep.
        let offset = interval.mul_f64(rng.f64());
        let config = Config {
            gossip_interval: interval,
            max_payload: config
                .max_payload
                .clamp(MIN_PAYLOAD, codec::MAX_PAYLOAD_LIMIT),
            ..config
        };
        Engine {
            me,
            config,
            state,
            peers: Vec::new(),
            rng,
            outbox: Vec::new(),
            next_round: now + offset,
            repair_after: HashMap::new(),
            digest_over_limit: false,
            stats: Stats::default(),
            replication: ReplicationTracker::default(),
        }
    }

    pub fn origin(&self) -> &Origin {
        &self.me
    }

    /// Writes from now on under `origin` (a new incarnation of this node). What the old
    /// origin wrote stays in the state as any other origin's changes.
    pub fn set_origin(&mut self, origin: Origin) {
        self.me = origin;
        self.replication = ReplicationTracker::default();
    }

    pub fn state(&self) -> &State {
        &self.state
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub fn peers(&self) -> &[NodeName] {
        &self.peers
    }

    /// How far each peer's latest digest is behind this node's own writes, at `now`.
    pub fn replication(&self, now: Duration) -> Vec<PeerLag> {
        self.replication.lags(now, self.state.known(&self.me))
    }

    /// Replaces the peer set.
    pub fn set_peers(&mut self, peers: impl IntoIterator<Item = NodeName>) {
        self.peers = peers.into_iter().collect();
        self.peers.sort();
        self.peers.dedup();
        let peers = &self.peers;
        self.repair_after
            .retain(|p, _| peers.binary_search(p).is_ok());
        self.replication.retain(|p| peers.binary_search(p).is_ok());
    }

    pub fn add_peer(&mut self, peer: NodeName) {
        if let Err(at) = self.peers.binary_search(&peer) {
            self.peers.insert(at, peer);
        }
    }

    pub fn remove_peer(&mut self, peer: &NodeName) {
        if let Ok(at) = self.peers.binary_search(peer) {
            self.peers.remove(at);
        }
        self.repair_after.remove(peer);
        self.replication.forget(peer);
    }

    /// When the runtime must next call [`Engine::handle_timer`].
    pub fn next_deadline(&self) -> Duration {
        self.next_round
    }

    /// Takes every output queued since the last call.
    pub fn drain_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outbox)
    }

    /// Runs an anti-entropy round if one is due.
    pub fn handle_timer(&mut self, now: Duration) {
        if now < self.next_round {
            return;
        }
        self.next_round = now + self.config.gossip_interval;
        self.stats.rounds += 1;
        let digest = self.state.digest();
        if !self.digest_fits(&digest) {
            return;
        }
        for peer in self.pick_peers(self.config.fanout, None) {
            self.send(
                peer,
                Frame::Syn {
                    digest: digest.clone(),
                },
            );
        }
    }

    /// Handles one frame from `from`.
    pub fn handle_frame(&mut self, now: Duration, from: &NodeName, frame: Frame) {
        let kind = frame.frame_type();
        self.stats.frames_in[kind] += 1;
        self.stats.bytes_in[kind] += codec::encoded_len(&frame) as u64;
        match frame {
            Frame::Hello { .. } | Frame::Member(_) => {}
            Frame::Syn { digest } => {
                self.check_digest(from, &digest);
                self.saw_digest(now, from, &digest);
                self.answer_syn(from, &digest);
            }
            Frame::SynAck { digest, delta } => {
                self.check_digest(from, &digest);
                self.saw_digest(now, from, &digest);
                self.apply(now, from, &delta);
                for chunk in self.chunk_missing(&digest, 0) {
                    self.send_deltas_counted(&chunk);
                    self.send(from.clone(), Frame::Delta { delta: chunk });
                }
            }
            Frame::Delta { delta } => {
                self.apply(now, from, &delta);
            }
            Frame::Push { delta } => {
                let learned = self.apply(now, from, &delta);
                // Still not knowing the origin up to the push's end means a change is missing.
                let gap = delta.iter().any(|d| self.state.known(&d.origin) < d.to);
                if !learned.is_empty() {
                    self.stats.forwarded += 1;
                    for peer in self.pick_peers(self.push_fanout(), Some(from)) {
                        self.send_deltas_counted(&learned);
                        self.send(
                            peer,
                            Frame::Push {
                                delta: learned.clone(),
                            },
                        );
                    }
                }
                if gap {
                    self.repair(now, from);
                }
            }
        }
    }

    /// Answers a Syn: what the peer with `digest` lacks, the first chunk in a SynAck with
    /// this node's digest, the rest in Delta frames; all in Delta frames when this node's
    /// digest does not fit a frame.
    fn answer_syn(&mut self, from: &NodeName, digest: &Digest) {
        let mine = self.state.digest();
        let ack = self.digest_fits(&mine);
        let reserved = if ack { codec::digest_len(&mine) } else { 0 };
        let mut chunks = self.chunk_missing(digest, reserved).into_iter();
        if ack {
            let first = chunks.next().unwrap_or_default();
            self.send_deltas_counted(&first);
            self.send(
                from.clone(),
                Frame::SynAck {
                    digest: mine,
                    delta: first,
                },
            );
        }
        for chunk in chunks {
            self.send_deltas_counted(&chunk);
            self.send(from.clone(), Frame::Delta { delta: chunk });
        }
    }

    /// Whether `digest` fits a frame, with room for a SynAck's empty delta count. A Syn
    /// or SynAck left unsent for it is counted, and reported when the digest stops fitting.
    fn digest_fits(&mut self, digest: &Digest) -> bool {
        let needs = codec::digest_len(digest);
        let max = self.config.max_payload;
        let fits = needs < max;
        if !fits {
            self.stats.digests_over_limit += 1;
            if !self.digest_over_limit {
                self.outbox.push(Output::DigestOverLimit {
                    origins: digest.len(),
                    needs,
                    max,
                });
            }
        }
        self.digest_over_limit = !fits;
        fits
    }

    /// Turns client operations into a batch of absolute entries without applying them.
    /// The runtime makes the batch durable, then calls [`Engine::apply_local`]; no other
    /// batch may be prepared in between.
    pub fn prepare_local(&self, ops: &[LocalOp]) -> PreparedBatch {
        self.state.prepare_local(&self.me, ops)
    }

    /// Applies a durable local batch (made durable by `now`) and pushes it to
    /// [`Engine::push_fanout`] peers at once.
    pub fn apply_local(&mut self, now: Duration, batch: &PreparedBatch) {
        if batch.is_empty() {
            return;
        }
        self.state.apply_local(batch);
        self.replication.wrote(now, self.state.known(&self.me));
        if !self.config.eager_push {
            return;
        }
        let from = batch.delta.from;
        let chunks = self.chunk(&[(self.me.clone(), from)], 0);
        let peers = self.pick_peers(self.push_fanout(), None);
        for chunk in chunks {
            for peer in &peers {
                self.send_deltas_counted(&chunk);
                self.send(
                    peer.clone(),
                    Frame::Push {
                        delta: chunk.clone(),
                    },
                );
            }
        }
    }

    /// Merges totals that arrive without versions (whole p/n vectors from a foreign
    /// protocol). They count towards the value but are not passed on by anti-entropy:
    /// their sender spreads them itself.
    pub fn merge_unversioned(
        &mut self,
        now: Duration,
        origin: &Origin,
        counter: &str,
        p: u64,
        n: u64,
    ) -> bool {
        let changed =
            self.state
                .merge_entry(origin, counter, crate::crdt::Totals { p, n, version: 0 });
        if changed {
            self.stats.last_learned = Some(now);
        }
        changed
    }

    /// Merges the deltas of peer `from`, except any of this node's own origin: only this
    /// node writes under it, so a peer can only echo it back ([`Engine::check_own_delta`]).
    fn apply(
        &mut self,
        now: Duration,
        from: &NodeName,
        deltas: &[OriginDelta],
    ) -> Vec<OriginDelta> {
        let mut learned = Vec::new();
        for d in deltas {
            self.stats.entries_in += d.entries.len() as u64;
            if d.origin == self.me {
                self.check_own_delta(from, d);
                continue;
            }
            let Applied { changed, advanced } = self.state.apply_delta(d);
            if changed {
                self.stats.last_learned = Some(now);
            }
            if changed || advanced {
                learned.push(d.clone());
            }
        }
        if !learned.is_empty() {
            self.outbox.push(Output::Learned(learned.clone()));
        }
        learned
    }

    /// A delta of this node's own origin from a peer: an echo of what it wrote changes
    /// nothing; anything beyond it (a later range or version, or larger totals) is a
    /// claim another writer made, refused and reported.
    fn check_own_delta(&mut self, from: &NodeName, delta: &OriginDelta) {
        let own = self.state.known(&self.me);
        let claimed = delta
            .entries
            .iter()
            .map(|e| e.version)
            .fold(delta.to, u64::max);
        let beyond = claimed > own
            || delta
                .entries
                .iter()
                .any(|e| !self.state.holds(&self.me, &e.counter, e.p, e.n));
        if beyond {
            self.own_origin_ahead(from, claimed, own);
        }
    }

    /// A digest that says peer `from` knows this node's own origin beyond what it wrote.
    fn check_digest(&mut self, from: &NodeName, digest: &Digest) {
        let own = self.state.known(&self.me);
        if let Some(d) = digest
            .iter()
            .find(|d| d.origin == self.me && d.version > own)
        {
            self.own_origin_ahead(from, d.version, own);
        }
    }

    fn own_origin_ahead(&mut self, from: &NodeName, claimed: u64, own: u64) {
        self.stats.own_origin_claims += 1;
        self.outbox.push(Output::OwnOriginAhead {
            from: from.clone(),
            claimed,
            own,
        });
    }

    /// Notes how much of this node's own origin the digest of peer `from` holds.
    fn saw_digest(&mut self, now: Duration, from: &NodeName, digest: &Digest) {
        if self.peers.binary_search(from).is_err() {
            return;
        }
        let holds = digest
            .iter()
            .find(|d| d.origin == self.me)
            .map_or(0, |d| d.version);
        let own = self.state.known(&self.me);
        self.replication.saw_digest(now, from, holds, own);
    }

    fn repair(&mut self, now: Duration, from: &NodeName) {
        if self.repair_after.get(from).is_some_and(|t| now < *t) {
            return;
        }
        self.repair_after
            .insert(from.clone(), now + self.config.gossip_interval / 4);
        let digest = self.state.digest();
        if self.digest_fits(&digest) {
            self.stats.repairs += 1;
            self.send(from.clone(), Frame::Syn { digest });
        }
    }

    /// What a peer with `digest` lacks, split into frames; the first frame has
    /// `first_reserved` fewer bytes to spend.
    fn chunk_missing(&self, digest: &Digest, first_reserved: usize) -> Vec<Vec<OriginDelta>> {
        let missing = self.state.missing_from(digest);
        self.chunk(&missing, first_reserved)
    }

    /// For each `(origin, after)`, the origin's entries above `after` in version order,
    /// packed into frames of at most `max_payload` bytes. A delta cut between frames
    /// closes its range at the last version it carries (never past `known`), so the next
    /// chunk starts where it stopped. The first frame has `first_reserved` fewer bytes.
    fn chunk(&self, missing: &[(Origin, u64)], first_reserved: usize) -> Vec<Vec<OriginDelta>> {
        // Room for the frame's own delta count, which the per-delta sizes leave out.
        let budget = self.config.max_payload - 10;
        let mut frames: Vec<Vec<OriginDelta>> = Vec::new();
        let mut current: Vec<OriginDelta> = Vec::new();
        let mut used = first_reserved;
        for (origin, after) in missing {
            let head = codec::delta_head_len(origin);
            let to = self.state.known(origin).max(*after);
            let mut delta = OriginDelta {
                origin: origin.clone(),
                from: *after,
                to,
                entries: Vec::new(),
            };
            for entry in self.state.entries_after(origin, *after) {
                let len = codec::entry_len(&entry);
                let mut need = if delta.entries.is_empty() {
                    head + len
                } else {
                    len
                };
                if used + need > budget && used > 0 {
                    if let Some(last) = delta.entries.last() {
                        let cut = last.version.min(to);
                        let rest = OriginDelta {
                            origin: origin.clone(),
                            from: cut,
                            to,
                            entries: Vec::new(),
                        };
                        let mut done = std::mem::replace(&mut delta, rest);
                        done.to = cut;
                        current.push(done);
                    }
                    frames.push(std::mem::take(&mut current));
                    used = 0;
                    need = head + len;
                }
                used += need;
                delta.entries.push(entry);
            }
            if delta.entries.is_empty() {
                if delta.to == delta.from {
                    continue;
                }
                if used + head > budget && used > 0 {
                    frames.push(std::mem::take(&mut current));
                    used = 0;
                }
                used += head;
            }
            current.push(delta);
        }
        if !current.is_empty() {
            frames.push(current);
        }
        frames
    }

    fn send_deltas_counted(&mut self, deltas: &[OriginDelta]) {
        self.stats.entries_out += deltas.iter().map(|d| d.entries.len() as u64).sum::<u64>();
    }

    fn send(&mut self, to: NodeName, frame: Frame) {
        let kind = frame.frame_type();
        self.stats.frames_out[kind] += 1;
        self.stats.bytes_out[kind] += codec::encoded_len(&frame) as u64;
        self.outbox.push(Output::Send { to, frame });
    }

    /// How many peers a push goes to, from its origin and from each node it teaches.
    /// When every node passes a push on to f random peers as it first learns from it, a
    /// given node is missed with a probability of about e^-f, and a missed node waits for
    /// an anti-entropy round: at f = 2 that is one node in seven, so a 5-node cluster
    /// regularly converged a gossip interval late. With f = ln(n) + 3 for n nodes the
    /// chance that a push misses any node at all is about e^-3 (5%); in a cluster of up to
    /// six nodes it goes to every peer. Never fewer than `fanout`.
    pub fn push_fanout(&self) -> usize {
        let nodes = (self.peers.len() + 1) as f64;
        let wide = nodes.ln().ceil() as usize + 3;
        wide.max(self.config.fanout).min(self.peers.len())
    }

    /// Up to `k` distinct random peers, never `except`.
    fn pick_peers(&mut self, k: usize, except: Option<&NodeName>) -> Vec<NodeName> {
        let mut candidates: Vec<&NodeName> =
            self.peers.iter().filter(|p| Some(*p) != except).collect();
        let k = k.min(candidates.len());
        for i in 0..k {
            let j = self.rng.usize(i..candidates.len());
            candidates.swap(i, j);
        }
        candidates.truncate(k);
        candidates.into_iter().cloned().collect()
    }
}
