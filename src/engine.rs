//! The gossip engine: scuttlebutt anti-entropy and eager push over the CRDT state.
//!
//! The engine is a plain struct with no sockets, threads, files or clock reads. A runtime
//! feeds it inputs — a frame from a peer, the timer firing, a durable local batch, a new
//! peer set — each with the current time, and drains the outputs it queued: frames to
//! send and state learned from peers (which the runtime logs). Randomness comes from an
//! RNG seeded by the runtime, so a simulator can replay any run from its seed.
//!
//! Anti-entropy: every `gossip_interval` the engine sends its digest to `fanout` peers
//! (by default one with eager push, two without), taking every peer in turn in an order
//! shuffled for each cycle (Syn); a peer answers with what the sender lacks plus its own
//! digest (SynAck); the sender answers with what the peer lacks (Delta). Deltas are
//! split into frames of at most `max_payload` bytes in version order, each chunk closing
//! its origin's range at the last version it carries, so a receiver that gets only a
//! prefix advances only that far.
//!
//! Eager push, coalesced ([`crate::push`]): a durable local batch, and whatever a push
//! taught this node, waits for the next push batch (Push), which leaves at once when the
//! push window is free, else when it ends, carrying everything new since the last one,
//! one frame per target: every peer of a small cluster, two overlay neighbours of a
//! larger one. A push that teaches nothing goes no further, and a push that reveals a
//! gap makes the receiver pull from the pusher at once instead of waiting for the next
//! round. While push batches leave, rounds only repair: a node skips up to
//! [`MAX_SKIPPED_ROUNDS`] in a row, unless it needs its peers' whole digests.
//!
//! A Syn or SynAck carries the node's whole digest while it is small (at most
//! [`Config::full_digest_bytes`]). A node with a larger digest starts its rounds with a
//! Summary instead, one hash per bucket of origins ([`crate::summary`]). The peer
//! answers each bucket that differs: one of few origins with a Page, its digest of the
//! bucket, split across frames as needed; a larger one with a Summary of that bucket cut
//! finer, which the node answers the same way. Given a page, a node sends what the peer lacks in its
//! span as Delta frames and, if the page shows something it lacks, its own page of the
//! span, which the peer answers with Delta frames. An idle round costs one Summary
//! however many origins and counters there are. A node whose digest does not fit a frame
//! answers a Syn with Delta frames only.
//!
//! Each peer's digest (in its Syn or SynAck) also tells how far it is behind this
//! node's own writes; the engine keeps that in a [`ReplicationTracker`] for reports.

mod compaction;

use crate::codec::{self, Frame, PerFrameType};
use crate::crdt::{
    Applied, Digest, Fold, LocalOp, Origin, OriginDelta, OriginVersion, PreparedBatch, State,
};
use crate::member::NodeName;
use crate::push::{self, PushQueue, PushWindow};
use crate::replication::{PeerLag, ReplicationTracker};
use crate::summary::{self, Span};
use std::collections::{HashMap, HashSet};
use std::time::Duration;

/// Smallest payload limit the engine accepts; every entry fits in it.
pub const MIN_PAYLOAD: usize = 512;
/// Time between anti-entropy rounds unless configured otherwise: the reference systems'.
pub const DEFAULT_GOSSIP_INTERVAL: Duration = Duration::from_millis(100);
/// The shortest gossip interval the engine runs at.
pub const MIN_GOSSIP_INTERVAL: Duration = Duration::from_millis(1);
/// Peers per anti-entropy round without eager push, unless configured otherwise: the
/// reference systems'.
pub const FANOUT_WITHOUT_PUSH: usize = 2;
/// Peers per anti-entropy round with eager push, unless configured otherwise. Pushes
/// carry the changes then; rounds only repair what a lost push left out, and a second
/// peer per round would add about a frame per cluster-wide increment at 50 nodes.
pub const FANOUT_WITH_PUSH: usize = 1;
/// Largest digest a Syn carries whole unless configured otherwise (about 80 origins).
pub const FULL_DIGEST_BYTES: usize = 2048;
/// Most anti-entropy rounds in a row a node skips while its push batches flow (see
/// [`Engine::handle_timer`]): at least one round in three still runs.
pub const MAX_SKIPPED_ROUNDS: u32 = 2;
/// How often a node that needs its peers' whole digests asks each peer for one, in the
/// summaries it sends it (see [`Engine::set_needs_whole_digests`]).
pub const WHOLE_DIGEST_INTERVAL: Duration = Duration::from_secs(1);

/// Peers per anti-entropy round.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Fanout {
    /// [`FANOUT_WITH_PUSH`] with eager push, [`FANOUT_WITHOUT_PUSH`] without.
    #[default]
    Auto,
    /// This many, with or without eager push.
    Fixed(usize),
}

/// Gossip settings. The defaults are those of the reference systems (100 ms, fanout 2)
/// but for one peer per round while eager push carries the changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub gossip_interval: Duration,
    pub fanout: Fanout,
    pub eager_push: bool,
    /// How long a push window lasts: at most one push batch per window.
    pub push_window: PushWindow,
    /// Largest frame payload the engine builds, in bytes.
    pub max_payload: usize,
    /// Largest digest a Syn carries whole; a larger one goes as a Summary.
    pub full_digest_bytes: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            gossip_interval: DEFAULT_GOSSIP_INTERVAL,
            fanout: Fanout::Auto,
            eager_push: true,
            push_window: PushWindow::Auto,
            max_payload: codec::DEFAULT_MAX_PAYLOAD,
            full_digest_bytes: FULL_DIGEST_BYTES,
        }
    }
}

impl Config {
    /// Peers each anti-entropy round goes to.
    pub fn peers_per_round(&self) -> usize {
        match (self.fanout, self.eager_push) {
            (Fanout::Fixed(n), _) => n,
            (Fanout::Auto, true) => FANOUT_WITH_PUSH,
            (Fanout::Auto, false) => FANOUT_WITHOUT_PUSH,
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
    /// This node adopted `from`'s compaction, compacting `origins` more origins (see
    /// `crdt::compact`); a runtime with a WAL snapshots soon, as no record holds it.
    Adopted {
        from: NodeName,
        origins: usize,
    },
    /// This node refused `from`'s compaction; nothing changed.
    AdoptionRefused {
        from: NodeName,
        reason: String,
    },
    /// `from` compacted this node's own origin at `version` (it took this node for
    /// gone for longer than its compact-after time): its changes past that are refused
    /// there, so the node must write under a new incarnation.
    OwnOriginCompacted {
        from: NodeName,
        version: u64,
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
    /// Rounds skipped because push batches left since the last one.
    pub rounds_skipped: u64,
    /// Counter entries sent and received in deltas and pushes.
    pub entries_out: u64,
    pub entries_in: u64,
    /// Pushes that taught this node something, passed on with its next push batch.
    pub forwarded: u64,
    /// Push batches sent (each one frame per target).
    pub push_batches: u64,
    /// Immediate pulls made because a push revealed a gap.
    pub repairs: u64,
    /// Deltas and digests from peers that claimed this node's own origin beyond what it
    /// wrote (refused; see [`Output::OwnOriginAhead`]).
    pub own_origin_claims: u64,
    /// Syns answered with Delta frames only, as this node's digest does not fit a frame
    /// beside them (the peer learns it from this node's own rounds, by summary).
    pub digests_over_limit: u64,
    /// Compaction offers sent to peers that differ from this node on an origin
    /// compacted here (they lack part of it, hold it past its version, or write under
    /// it).
    pub compaction_offers: u64,
    /// Origins compacted here by adopting a peer's compaction, and offers refused.
    pub compaction_adopted: u64,
    pub compaction_refused: u64,
    /// Offers dropped before adopting: a part missing, too large, not from a peer, or
    /// too many offers gathered at once.
    pub compaction_dropped: u64,
    /// The last time a frame from a peer changed the state (reports show how long ago).
    #[serde(skip)]
    pub last_learned: Option<Duration>,
}

pub struct Engine {
    me: Origin,
    /// The node's name, as its peers know it.
    name: NodeName,
    config: Config,
    state: State,
    peers: Vec<NodeName>,
    rng: fastrand::Rng,
    outbox: Vec<Output>,
    next_round: Duration,
    /// Whether a push batch left since the last round was due.
    pushed_since_round: bool,
    /// Rounds skipped in a row.
    rounds_skipped: u32,
    /// Peers the rounds of this cycle have yet to reach (see `pick_peers`).
    round_order: Vec<NodeName>,
    pushes: PushQueue,
    /// Per peer, when the next gap-repair pull may be sent to it.
    repair_after: HashMap<NodeName, Duration>,
    stats: Stats,
    replication: ReplicationTracker,
    /// Each peer's last digest: what the node core decides idempotency keys' stability by.
    peer_digests: HashMap<NodeName, HashMap<Origin, u64>>,
    /// Peers that started an anti-entropy round with this node by a Syn: a node starts
    /// one only with its own peers, so each of these counts this node as a member. Only
    /// peers are noted, so it holds at most the members.
    rounds_from: HashSet<NodeName>,
    /// Origins peers said they retired, at the version this node knows them up to
    /// (see [`Frame::Retired`]); only origins held and live here.
    retired_hints: HashMap<Origin, u64>,
    /// The summary a peer's last digest was taken from, when it was one that agreed with
    /// this node's whole state.
    agreed_summaries: HashMap<NodeName, Vec<u64>>,
    /// The node core needs its peers' whole digests (besides while this node's own
    /// acceptances are unresolved).
    /// How often the node core needs its peers' whole digests, if it does.
    whole_every: Option<Duration>,
    /// Per peer, when this node last asked it for its whole digest, and the number of
    /// that request: only pages answering it are gathered.
    whole_asked: HashMap<NodeName, (Duration, u64)>,
    /// Per peer, the pages of its whole digest gathered so far: the hash the next page
    /// must start at, and the versions.
    wholes: HashMap<NodeName, (u64, HashMap<Origin, u64>)>,
    /// The bucket hashes of the whole digest last computed: the state's generation and
    /// the bits they were computed at. An idle node summarises its digest, and compares
    /// its peers' summaries, without walking its origins again.
    summary_cache: Option<(u64, u8, Vec<u64>)>,
    compaction: compaction::Exchange,
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
        let name = NodeName::new(&me.node).expect("an origin's node name is valid");
        Engine {
            me,
            name,
            config,
            state,
            peers: Vec::new(),
            rng,
            outbox: Vec::new(),
            next_round: now + offset,
            pushed_since_round: false,
            rounds_skipped: 0,
            round_order: Vec::new(),
            pushes: PushQueue::default(),
            repair_after: HashMap::new(),
            stats: Stats::default(),
            replication: ReplicationTracker::default(),
            peer_digests: HashMap::new(),
            rounds_from: HashSet::new(),
            retired_hints: HashMap::new(),
            agreed_summaries: HashMap::new(),
            whole_every: None,
            whole_asked: HashMap::new(),
            wholes: HashMap::new(),
            compaction: compaction::Exchange::default(),
            summary_cache: None,
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

    /// When the runtime must next call [`Engine::handle_timer`]: the next anti-entropy
    /// round, or the end of the push window if changes wait for it.
    pub fn next_deadline(&self) -> Duration {
        self.pushes
            .deadline(self.push_window())
            .map_or(self.next_round, |t| t.min(self.next_round))
    }

    /// Takes every output queued since the last call.
    pub fn drain_outputs(&mut self) -> Vec<Output> {
        std::mem::take(&mut self.outbox)
    }

    /// Sends the push batch and runs an anti-entropy round if they are due.
    ///
    /// A round is skipped when push batches left this node since the last one was due,
    /// up to [`MAX_SKIPPED_ROUNDS`] in a row: while writes flow, pushes carry them and a
    /// push that reveals a gap pulls at once, so rounds only repair, and at every
    /// interval they would cost about a frame per cluster-wide increment at 50 nodes.
    /// Once pushes stop, rounds run at every interval again. No round is skipped while
    /// the node needs its peers' whole digests (to resolve its own keys' acceptances, to
    /// become ready for keys, or to retire origins): those come only from rounds.
    pub fn handle_timer(&mut self, now: Duration) {
        self.push_if_due(now);
        if now < self.next_round {
            return;
        }
        self.next_round = now + self.config.gossip_interval;
        let pushed = std::mem::take(&mut self.pushed_since_round);
        let needs_digests = self.whole_digests_every().is_some();
        if pushed && !needs_digests && self.rounds_skipped < MAX_SKIPPED_ROUNDS {
            self.rounds_skipped += 1;
            self.stats.rounds_skipped += 1;
            return;
        }
        self.rounds_skipped = 0;
        self.stats.rounds += 1;
        let syn = self.syn_frame();
        for peer in self.pick_peers(self.config.peers_per_round()) {
            let frame = self.ask_whole(now, &peer, syn.clone());
            self.send(peer, frame);
        }
    }

    /// Says how often the node core needs its peers' whole digests, if it does: every
    /// [`WHOLE_DIGEST_INTERVAL`] to become ready for idempotency keys, less often to
    /// retire origins. They are also needed every [`WHOLE_DIGEST_INTERVAL`] while any of
    /// this node's own acceptances is unresolved. While they are, a summary to a peer
    /// asks it for its whole digest once that often: summaries stand for a peer's digest
    /// only when they agree in every bucket, which writes in flight can keep from
    /// happening.
    pub fn set_needs_whole_digests(&mut self, every: Option<Duration>) {
        self.whole_every = every;
    }

    /// `frame`, a Summary marked as asking `peer` for its whole digest if this node
    /// needs it and has not asked `peer` within the interval it needs it at.
    fn ask_whole(&mut self, now: Duration, peer: &NodeName, mut frame: Frame) -> Frame {
        let Frame::Summary { wants_whole, .. } = &mut frame else {
            return frame;
        };
        let Some(every) = self.whole_digests_every() else {
            return frame;
        };
        let due = self
            .whole_asked
            .get(peer)
            .is_none_or(|&(at, _)| now >= at + every);
        if due {
            let request = self.rng.u64(1..);
            *wants_whole = request;
            self.whole_asked.insert(peer.clone(), (now, request));
        }
        frame
    }

    /// How often this node needs each peer's whole digest, if it does: every
    /// [`WHOLE_DIGEST_INTERVAL`] while an acceptance of its own is unresolved, else as
    /// the node core asked ([`Engine::set_needs_whole_digests`]).
    fn whole_digests_every(&self) -> Option<Duration> {
        match self.state.has_unresolved_of(&self.me) {
            true => Some(WHOLE_DIGEST_INTERVAL),
            false => self.whole_every,
        }
    }

    /// What starts an anti-entropy exchange: a Syn with the whole digest while it is
    /// small and fits a frame, else a Summary of it.
    fn syn_frame(&mut self) -> Frame {
        let origins = self.state.origin_count();
        let limit = self.config.full_digest_bytes;
        // Every origin takes at least 11 bytes of a digest: past this many, it is large.
        if origins <= limit / 11 {
            let digest = self.state.digest();
            let len = codec::digest_len(&digest);
            if len <= limit && len < self.config.max_payload {
                return Frame::Syn { digest };
            }
        }
        self.summary_of(Span::ALL, origins)
    }

    /// A summary of `span`, which holds `origins` of this node's origins.
    fn summary_of(&mut self, span: Span, origins: usize) -> Frame {
        let bits = summary::bits_for(origins, self.config.max_payload);
        Frame::Summary {
            span,
            bits,
            wants_whole: 0,
            hashes: self.bucket_hashes(span, bits),
        }
    }

    /// The state's bucket hashes of `span` cut into `2^bits`; those of the whole digest
    /// come from the cache while the state has not changed.
    fn bucket_hashes(&mut self, span: Span, bits: u8) -> Vec<u64> {
        if span != Span::ALL {
            return self.state.bucket_hashes(span, bits);
        }
        let generation = self.state.generation();
        match &self.summary_cache {
            Some((g, b, hashes)) if *g == generation && *b == bits => hashes.clone(),
            _ => {
                let hashes = self.state.bucket_hashes(span, bits);
                self.summary_cache = Some((generation, bits, hashes.clone()));
                hashes
            }
        }
    }

    /// Handles one frame from `from`.
    pub fn handle_frame(&mut self, now: Duration, from: &NodeName, frame: Frame) {
        let kind = frame.frame_type();
        self.stats.frames_in[kind] += 1;
        self.stats.bytes_in[kind] += codec::encoded_len(&frame) as u64;
        match frame {
            Frame::Hello { .. } | Frame::Member(_) | Frame::Keys(_) => {}
            Frame::Syn { digest } => {
                if self.peers.binary_search(from).is_ok() {
                    self.rounds_from.insert(from.clone());
                }
                self.check_digest(from, &digest);
                self.saw_digest(now, from, &digest);
                self.answer_syn(from, &digest);
                self.offer_compaction_if_differing(now, from, &digest, Span::ALL);
            }
            Frame::Summary {
                span,
                bits,
                wants_whole,
                hashes,
            } => self.answer_summary(now, from, span, bits, wants_whole, &hashes),
            Frame::Page {
                span,
                reply,
                whole,
                digest,
            } => self.answer_page(now, from, span, (reply, whole), &digest),
            Frame::SynAck { digest, delta } => {
                self.check_digest(from, &digest);
                self.saw_digest(now, from, &digest);
                self.apply_pulled(now, from, &delta);
                let missing = self.state.missing_from(&digest);
                for chunk in self.chunk(&missing, 0) {
                    self.send_deltas_counted(&chunk);
                    self.send(from.clone(), Frame::Delta { delta: chunk });
                }
                self.send_retired(from, &missing);
                self.offer_compaction_if_differing(now, from, &digest, Span::ALL);
            }
            Frame::Compaction {
                offer,
                part,
                parts,
                origins,
                sums,
            } => {
                let part = compaction::Part {
                    offer,
                    part,
                    parts,
                    origins,
                    sums,
                };
                self.gather_compaction(from, part);
            }
            Frame::Retired { digest } => self.note_retired(&digest),
            Frame::Delta { delta } => {
                self.apply_pulled(now, from, &delta);
            }
            Frame::Push { delta } => {
                self.apply(now, from, &delta);
                // Still not knowing the origin up to the push's end means a change is missing.
                let gap = delta.iter().any(|d| self.state.known(&d.origin) < d.to);
                // In a mesh every node had the push from its origin; beyond, what it
                // carries past this node's own batches goes on with the next one.
                if !self.is_mesh() {
                    let mut carried = false;
                    for d in delta.iter().filter(|d| d.origin != self.me) {
                        carried |= self.pushes.carry_on(d);
                    }
                    if carried {
                        self.stats.forwarded += 1;
                        self.push_if_due(now);
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
        let missing = self.state.missing_from(digest);
        let mut chunks = self.chunk(&missing, reserved).into_iter();
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
        self.send_retired(from, &missing);
    }

    /// Whether `digest` fits a frame, with room for a SynAck's empty delta count; a
    /// SynAck left unsent for it is counted.
    fn digest_fits(&mut self, digest: &Digest) -> bool {
        let fits = codec::digest_len(digest) < self.config.max_payload;
        if !fits {
            self.stats.digests_over_limit += 1;
        }
        fits
    }

    /// Answers a Summary of `span` bucket by bucket: nothing for a bucket whose hash
    /// equals this node's own, and for one that differs, this node's page of it (asking
    /// for the peer's page in return) or, when it holds many origins, a finer summary of
    /// it. The buckets that agree tell how far the peer knows their origins. A summary
    /// that asks for this node's whole digest is answered with all of it, as pages
    /// carrying the request's number. A summary of a shape it cannot have is ignored
    /// (the binary decoder refuses it; JSON runtimes hand frames over as sent).
    fn answer_summary(
        &mut self,
        now: Duration,
        from: &NodeName,
        span: Span,
        bits: u8,
        wants_whole: u64,
        hashes: &[u64],
    ) {
        if span.lo > span.hi || bits > summary::MAX_BITS || hashes.len() != 1 << bits {
            return;
        }
        let mine = self.bucket_hashes(span, bits);
        self.saw_summary(now, from, span, bits, &mine, hashes);
        if wants_whole != 0 {
            self.send_pages(from, Span::ALL, (true, wants_whole));
            return;
        }
        for bucket in summary::differing(&mine, hashes) {
            let Some(part) = span.bucket(bucket, bits) else {
                continue;
            };
            let origins = self.state.origin_count_in(part);
            // A part of one hash cannot be cut finer.
            if origins <= summary::PAGE_ORIGINS || part.lo == part.hi {
                self.send_pages(from, part, (true, 0));
            } else {
                let finer = self.summary_of(part, origins);
                self.send(from.clone(), finer);
            }
        }
    }

    /// Answers a peer's page of `span`: what the peer lacks there, as Delta frames, and
    /// when asked (`reply`) and the page shows something this node lacks, this node's
    /// own page of the span, which the peer answers with Delta frames in turn. A page of
    /// a whole digest is gathered too ([`Engine::gather_whole`]).
    fn answer_page(
        &mut self,
        now: Duration,
        from: &NodeName,
        span: Span,
        (reply, whole): (bool, u64),
        digest: &Digest,
    ) {
        if span.lo > span.hi
            || digest
                .iter()
                .any(|ov| !span.contains(summary::origin_hash(&ov.origin)))
        {
            return;
        }
        self.check_digest(from, digest);
        self.saw_page(now, from, span, digest);
        if whole != 0 {
            self.gather_whole(from, span, whole, digest);
        }
        let missing = self.state.missing_from_in(digest, span);
        for chunk in self.chunk(&missing, 0) {
            self.send_deltas_counted(&chunk);
            self.send(from.clone(), Frame::Delta { delta: chunk });
        }
        self.send_retired(from, &missing);
        self.offer_compaction_if_differing(now, from, digest, span);
        if reply && self.state.lacks_any(digest) {
            self.send_pages(from, span, (false, 0));
        }
    }

    /// Gathers the pages of live peer `from`'s whole digest answering this node's last
    /// request to it (`request`), which it sent at one moment and which arrive in order
    /// on one link: the last one makes them its last digest. Pages answering an earlier
    /// request are ignored (a dropped frame must not splice two answers into one); a page
    /// out of order, or more origins than this node's own count allows for, drops what
    /// was gathered.
    fn gather_whole(&mut self, from: &NodeName, span: Span, request: u64, digest: &Digest) {
        let asked = self.whole_asked.get(from).map(|&(_, r)| r);
        if self.peers.binary_search(from).is_err() || asked != Some(request) {
            return;
        }
        if span.lo == 0 {
            self.wholes.insert(from.clone(), (0, HashMap::new()));
        }
        let most = 2 * self.state.origin_count() + 10_000;
        let Some((next, versions)) = self.wholes.get_mut(from) else {
            return;
        };
        if *next != span.lo || versions.len() + digest.len() > most {
            self.wholes.remove(from);
            return;
        }
        versions.extend(digest.iter().map(|ov| (ov.origin.clone(), ov.version)));
        if span.hi < u64::MAX {
            *next = span.hi + 1;
            return;
        }
        if let Some((_, versions)) = self.wholes.remove(from) {
            self.peer_digests.insert(from.clone(), versions);
            self.agreed_summaries.remove(from);
        }
    }

    /// Sends this node's digest of `span` to `to` as Page frames of at most
    /// `max_payload` bytes, each covering the part of the span up to the next page's
    /// first origin; an empty span goes as one empty page (this node knows none of it).
    /// `flags` are the pages' reply flag and the whole-digest request they answer.
    fn send_pages(&mut self, to: &NodeName, span: Span, flags: (bool, u64)) {
        // Room for the span, the flag, the request and the digest's count.
        let budget = self.config.max_payload - (8 + 8 + 1 + 8 + 10);
        let mut lo = span.lo;
        let mut digest: Digest = Vec::new();
        let mut used = 0;
        let mut last_hash = None;
        for (hash, ov) in self.state.digest_in(span) {
            let len = codec::digest_entry_len(&ov);
            // Origins of one hash share a page: a page's bounds are hashes.
            if used + len > budget && !digest.is_empty() && last_hash != Some(hash) {
                let page = Span { lo, hi: hash - 1 };
                self.send_page(to, page, flags, std::mem::take(&mut digest));
                lo = hash;
                used = 0;
            }
            used += len;
            last_hash = Some(hash);
            digest.push(ov);
        }
        self.send_page(to, Span { lo, hi: span.hi }, flags, digest);
    }

    fn send_page(&mut self, to: &NodeName, span: Span, flags: (bool, u64), digest: Digest) {
        let (reply, whole) = flags;
        let page = Frame::Page {
            span,
            reply,
            whole,
            digest,
        };
        self.send(to.clone(), page);
    }

    /// Turns client operations (keyed ones accepted at `at_ms`, wall-clock milliseconds)
    /// and this node's `folds` into a batch of absolute entries without applying them.
    /// The runtime makes the batch durable, then calls [`Engine::apply_local`]; no other
    /// batch may be prepared in between.
    pub fn prepare_local(&self, ops: &[LocalOp], at_ms: u64, folds: &[Fold]) -> PreparedBatch {
        self.state.prepare_batch(&self.me, ops, at_ms, folds)
    }

    /// The last whole digest of live peer `peer`: how far it knew each origin at one
    /// moment, as a Syn or SynAck carried it, or as this node's own digest when the peer
    /// sent a summary of its whole digest that agreed with this node's in every bucket.
    /// Pages and partial agreement never change it: a digest pieced together from parts
    /// of different moments could show the peer short of what it held, and keys'
    /// stability must never be decided on less than the peer held. Kept when the peer
    /// stops being live, until [`Engine::forget`].
    pub fn peer_digest(&self, peer: &NodeName) -> Option<&HashMap<Origin, u64>> {
        self.peer_digests.get(peer)
    }

    /// Whether `peer` has started an anti-entropy round with this node by a Syn, which
    /// it does only with nodes it counts as members.
    pub fn had_round_from(&self, peer: &NodeName) -> bool {
        self.rounds_from.contains(peer)
    }

    /// Drops what is kept of a member that is gone for good.
    pub fn forget(&mut self, peer: &NodeName) {
        self.remove_peer(peer);
        self.forget_digest(peer);
        self.rounds_from.remove(peer);
        self.compaction.forget(peer);
    }

    /// Drops the last digest of `peer` (it restarted: the digest was its earlier run's).
    pub fn forget_digest(&mut self, peer: &NodeName) {
        self.peer_digests.remove(peer);
        self.agreed_summaries.remove(peer);
        self.wholes.remove(peer);
        self.whole_asked.remove(peer);
    }

    /// Drops the idempotency keys whose retention window has passed at `now_ms`; see
    /// [`State::expire_keys`]. Returns how many.
    pub fn expire_keys(&mut self, now_ms: u64, window_ms: u64) -> usize {
        self.state.expire_keys(now_ms, window_ms)
    }

    /// Retires `origin` at `version`; see [`State::retire`]. Returns whether it did.
    pub fn retire(&mut self, origin: &Origin, version: u64) -> bool {
        self.retired_hints.remove(origin);
        self.state.retire(origin, version)
    }

    /// Compacts a retired origin (see `crdt::compact`); returns whether it did.
    pub fn compact(&mut self, origin: &Origin, version: u64) -> bool {
        self.state.compact(origin, version)
    }

    /// Applies a durable local batch (made durable by `now`); it goes out with the next
    /// push batch, at once if the push window is free.
    pub fn apply_local(&mut self, now: Duration, batch: &PreparedBatch) {
        if batch.is_empty() {
            return;
        }
        self.state.apply_local(batch);
        self.replication.wrote(now, self.state.known(&self.me));
        if !self.config.eager_push {
            return;
        }
        self.pushes.hold(&self.me, batch.delta.from);
        self.push_if_due(now);
    }

    /// Sends what waits to be pushed, if the push window allows it at `now`: one frame
    /// to each of [`Engine::push_targets`]; what does not fit in one frame waits for the
    /// next window.
    fn push_if_due(&mut self, now: Duration) {
        if !self.pushes.due(now, self.push_window()) {
            return;
        }
        let mut frames = self.chunk(&self.pushes.waiting(), 0);
        let first = if frames.is_empty() {
            Vec::new()
        } else {
            frames.remove(0)
        };
        self.pushes.sent(now, &first, &frames);
        if first.is_empty() {
            return;
        }
        self.stats.push_batches += 1;
        self.pushed_since_round = true;
        for peer in self.push_targets() {
            // A node's own changes never go back to it.
            let delta: Vec<OriginDelta> = first
                .iter()
                .filter(|d| d.origin.node != peer.as_str())
                .cloned()
                .collect();
            if !delta.is_empty() {
                self.send_deltas_counted(&delta);
                self.send(peer, Frame::Push { delta });
            }
        }
    }

    /// Whether pushes go to every peer (a small cluster), so none need passing on.
    fn is_mesh(&self) -> bool {
        push::is_mesh(self.peers.len())
    }

    /// How long a push window lasts in this node's cluster.
    pub fn push_window(&self) -> Duration {
        push::window(
            self.config.push_window,
            self.peers.len() + 1,
            self.config.gossip_interval,
        )
    }

    /// Whom push batches go to: every peer of a cluster of up to [`push::MESH_NODES`]
    /// nodes, else two overlay neighbours (see [`push::targets`]).
    pub fn push_targets(&self) -> Vec<NodeName> {
        push::targets(&self.name, &self.peers)
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

    /// Merges deltas that anti-entropy or a repair brought; a gap they fill in a range
    /// this node pushed on without vouching for it goes out with the next push batch.
    fn apply_pulled(&mut self, now: Duration, from: &NodeName, deltas: &[OriginDelta]) {
        let learned = self.apply(now, from, deltas);
        if learned.is_empty() {
            return;
        }
        for d in &learned {
            self.pushes.gap_filled(&d.origin);
        }
        self.push_if_due(now);
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
                .any(|e| !self.state.holds_entry(&self.me, e));
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

    /// Notes the whole digest live peer `from` sent (in a Syn or SynAck): its last
    /// digest, and how much of this node's own origin it holds.
    fn saw_digest(&mut self, now: Duration, from: &NodeName, digest: &Digest) {
        if self.peers.binary_search(from).is_err() {
            return;
        }
        let versions = digest.iter().map(|ov| (ov.origin.clone(), ov.version));
        self.peer_digests.insert(from.clone(), versions.collect());
        self.agreed_summaries.remove(from);
        self.saw_page(now, from, Span::ALL, digest);
    }

    /// Notes the page of `span` live peer `from` sent: how much of this node's own origin
    /// it holds, if its span covers that. A page is a part of the peer's digest, so it
    /// never becomes the peer's last digest (see [`Engine::peer_digest`]).
    fn saw_page(&mut self, now: Duration, from: &NodeName, span: Span, digest: &Digest) {
        if self.peers.binary_search(from).is_err() || !span.contains(summary::origin_hash(&self.me))
        {
            return;
        }
        let holds = digest
            .iter()
            .find(|d| d.origin == self.me)
            .map_or(0, |d| d.version);
        let own = self.state.known(&self.me);
        self.replication.saw_digest(now, from, holds, own);
    }

    /// Notes a Summary of `span` from live peer `from`. If the bucket of this node's own
    /// origin agrees, the peer holds all of it. If the summary is of the whole digest and
    /// every bucket agrees, the peer's digest is this node's own: that becomes its last
    /// digest (rebuilt only when the summary changed since).
    fn saw_summary(
        &mut self,
        now: Duration,
        from: &NodeName,
        span: Span,
        bits: u8,
        mine: &[u64],
        theirs: &[u64],
    ) {
        if self.peers.binary_search(from).is_err() {
            return;
        }
        let own_hash = summary::origin_hash(&self.me);
        if span.contains(own_hash) {
            let bucket = span.bucket_of(own_hash, bits);
            if mine[bucket] == theirs[bucket] {
                let own = self.state.known(&self.me);
                self.replication.saw_digest(now, from, own, own);
            }
        }
        let whole = span == Span::ALL && mine == theirs;
        if !whole || self.agreed_summaries.get(from).is_some_and(|s| s == theirs) {
            return;
        }
        let versions = self
            .state
            .origins_in(Span::ALL)
            .map(|(origin, _, version)| (origin.clone(), version));
        self.peer_digests.insert(from.clone(), versions.collect());
        self.agreed_summaries.insert(from.clone(), theirs.to_vec());
    }

    /// Starts a round with `from`, a live peer whose push showed a gap (never with a
    /// node that is not a peer here: a Syn tells its receiver it is one).
    fn repair(&mut self, now: Duration, from: &NodeName) {
        if self.peers.binary_search(from).is_err()
            || self.repair_after.get(from).is_some_and(|t| now < *t)
        {
            return;
        }
        self.repair_after
            .insert(from.clone(), now + self.config.gossip_interval / 4);
        self.stats.repairs += 1;
        let syn = self.syn_frame();
        self.send(from.clone(), syn);
    }

    /// Tells `to` which of the origins just sent to it (`missing`) are retired here,
    /// in frames of at most `max_payload` bytes.
    fn send_retired(&mut self, to: &NodeName, missing: &[(Origin, u64)]) {
        let budget = self.config.max_payload - 10;
        let mut digest = Vec::new();
        let mut used = 0;
        for (origin, _) in missing {
            let Some(version) = self.state.retired_at(origin) else {
                continue;
            };
            let ov = OriginVersion {
                origin: origin.clone(),
                version,
            };
            let len = codec::digest_entry_len(&ov);
            if used + len > budget && !digest.is_empty() {
                let full = std::mem::take(&mut digest);
                self.send(to.clone(), Frame::Retired { digest: full });
                used = 0;
            }
            used += len;
            digest.push(ov);
        }
        if !digest.is_empty() {
            self.send(to.clone(), Frame::Retired { digest });
        }
    }

    /// Keeps the retirements a peer reported of origins this node holds up to the same
    /// version and has not retired.
    fn note_retired(&mut self, digest: &Digest) {
        for ov in digest {
            let held = ov.version > 0 && self.state.known(&ov.origin) == ov.version;
            if held && self.state.retired_at(&ov.origin).is_none() {
                self.retired_hints.insert(ov.origin.clone(), ov.version);
            }
        }
    }

    /// The version a peer said it retired `origin` at, if it is what this node knows
    /// it up to now.
    pub fn retired_hint(&self, origin: &Origin) -> Option<u64> {
        let version = *self.retired_hints.get(origin)?;
        (self.state.known(origin) == version).then_some(version)
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
            // Its entries are gone: a range of it would claim what it does not carry (a
            // forwarded push of it, say); a peer lacking it is offered the compaction.
            if self.state.is_compacted(origin) {
                continue;
            }
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

    /// The next `k` distinct peers of this cycle of rounds: every peer once a cycle, in
    /// an order shuffled anew for each cycle, so each is reached within ⌈peers / k⌉
    /// rounds (random picks would take about ln(peers) times as many to reach them all).
    /// A peer that joined meanwhile waits for the next cycle; one that left is passed over.
    fn pick_peers(&mut self, k: usize) -> Vec<NodeName> {
        let k = k.min(self.peers.len());
        let mut picked: Vec<NodeName> = Vec::with_capacity(k);
        // Each refill holds every peer and fewer than k are picked, so this ends.
        while picked.len() < k {
            let Some(next) = self.round_order.pop() else {
                self.round_order = self.peers.clone();
                self.rng.shuffle(&mut self.round_order);
                continue;
            };
            if self.peers.binary_search(&next).is_ok() && !picked.contains(&next) {
                picked.push(next);
            }
        }
        picked
    }
}
