//! The node core: one node's logic, free of I/O, driven the same way by every runtime —
//! the TCP node (`src/node/`), the Maelstrom runtime (`src/maelstrom/`) and the tests'
//! simulator.
//!
//! It owns the gossip engine, the node's storage and (in the TCP node and the simulator)
//! its SWIM membership, and keeps the durability invariant by construction:
//! [`NodeCore::commit`] is the only way a local operation reaches the state, and it
//! prepares the batch, hands it to the storage and applies it only once the storage
//! made it durable — at once, or later through [`NodeCore::commit_finished`] when the
//! storage works in the background (the TCP node's WAL thread). Meanwhile frames, reads
//! and timers go on against the state without the batch, and new operations wait for
//! the next batch: one batch is pending at a time, so each is prepared from a state that
//! holds every earlier one. State learned from peers is logged as soon as it is learned. The engine gossips with the live members: every membership change
//! updates its peer set. A runtime feeds inputs (operations, frames, timer ticks, joins),
//! each with the current time, and carries out the effects the core queued: frames to
//! send, answers to operations, membership changes to log. The reply handle `R` is
//! whatever the runtime answers through (a channel, a Maelstrom message id, a test tag).
//! Without membership (the Maelstrom runtime) the runtime sets the peer set itself.
//!
//! - `storage`: the `Storage` trait and the in-memory storage.
//! - `origin_guard`: when writes must wait so that no two processes write under one
//!   origin (a recovered node's fence, another live process with this node's name).

mod origin_guard;
mod retirement;
mod stability;
mod storage;
#[cfg(test)]
mod tests;

pub use origin_guard::{GuardStatus, OriginGuard, TWIN_PING_INTERVAL};
pub use retirement::{
    RetirementPolicy, DEFAULT_COMPACT_AFTER, DEFAULT_RETIRE_AFTER, RETIRE_DIGEST_INTERVAL,
};
pub use stability::StabilityView;
pub use storage::{fresh_incarnation, CommitStarted, MemoryStorage, Storage};

use crate::codec::Frame;
use crate::crdt::{Fold, LocalOp, OpError, OpKind, Origin, OriginDelta, PreparedBatch, State};
use crate::engine::{Engine, Output, Stats, WHOLE_DIGEST_INTERVAL};
use crate::member::{Member, NodeName};
use crate::membership::{self, MemberChange, MemberView, Membership};
use crate::replication::PeerLag;
use crate::status::histogram::{Histogram, HistogramSnapshot, BATCH_BUCKETS};
use crate::status::{KeyStats, RequestStats, StorageStatus};
use crossbeam_channel::Receiver;
use std::fmt;
use std::io;
use std::time::Duration;

/// Most client operations gathered into one batch (one durable write).
pub const MAX_BATCH: usize = 4096;
/// How long idempotency keys are kept unless configured otherwise: a day, like the
/// payment APIs that made idempotency keys common.
pub const DEFAULT_KEY_WINDOW: Duration = Duration::from_secs(24 * 3600);
/// Most idempotency keys a node holds unless configured otherwise.
pub const DEFAULT_MAX_KEYS: usize = 10_000_000;
/// How often keys past their window are looked for.
const KEY_EXPIRY_INTERVAL: Duration = Duration::from_secs(10);
/// How long a node with no way to find members must have heard from none before it
/// takes keys: the members of a cluster it was part of contact it well within this.
const KEY_ALONE_GRACE: Duration = Duration::from_secs(2);

/// Where a node's knowledge of idempotency keys stands when it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyStart {
    /// It recovered its state: every key it ever held.
    Recovered,
    /// It starts empty and joins a cluster (seeds, discovery, LAN discovery): it takes
    /// keys once it holds everything a live member's digest showed.
    Joining,
    /// It starts empty with no way to find members: it takes keys once it has heard
    /// from no member for [`KEY_ALONE_GRACE`], else as when joining.
    Alone,
}

/// A client's increment or decrement and where to send its answer.
#[derive(Debug)]
pub struct OpRequest<R> {
    pub op: LocalOp,
    pub reply: R,
}

/// Why an operation was not applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpFailure {
    /// The operation itself was refused (bad input, or it would overflow).
    Refused(OpError),
    /// The storage could not make the batch durable; nothing of it was applied.
    Storage(String),
    /// Writes are held for now (see `origin_guard`); nothing was applied.
    Unavailable(String),
}

impl fmt::Display for OpFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpFailure::Refused(e) => e.fmt(f),
            OpFailure::Storage(e) | OpFailure::Unavailable(e) => f.write_str(e),
        }
    }
}

/// What an operation's answer is: the counter's value after it, or why it failed.
pub type OpResult = Result<i64, OpFailure>;

/// Something for the runtime to carry out.
#[derive(Debug)]
pub enum Effect<R> {
    /// A gossip frame for the member `to`, on the reliable lane.
    Send { to: NodeName, frame: Frame },
    /// A membership message for the gossip address `to`: one datagram on the probe lane
    /// when [`membership::Message::is_probe`], else on the reliable lane.
    SendMember {
        to: String,
        msg: membership::Message,
    },
    /// The answer to one operation, sent once its batch is durable and applied (or failed).
    Reply { to: R, result: OpResult },
    /// A member's state changed in this node's view (for logs and reports).
    MemberChanged(MemberChange),
    /// Another live process runs under this node's name with a later run.
    NameConflict(Member),
    /// This node now writes under a new incarnation (a peer held its origin ahead).
    NewIncarnation(Origin),
}

/// A batch handed to the storage and not yet durable, with whom to answer.
struct PendingBatch<R> {
    batch: PreparedBatch,
    kinds: Vec<OpKind>,
    keyed: Vec<bool>,
    replies: Vec<R>,
    folds: Vec<Fold>,
}

/// Idempotency keys: how long they are kept, the wall clock, and whether this node may
/// accept them yet.
struct KeyPolicy {
    window: Duration,
    /// Wall-clock milliseconds at the runtime's time zero.
    wall_epoch_ms: u64,
    /// Whether this node holds what its peers hold of keys (see [`KeyStart`]): until
    /// then a keyed operation could miss an acceptance made elsewhere, so it is refused.
    ready: bool,
    start: KeyStart,
    /// Since when no member other than this node is known (for [`KeyStart::Alone`]).
    alone_since: Option<Duration>,
    next_expiry: Duration,
    stats: KeyStats,
}

pub struct NodeCore<R> {
    engine: Engine,
    storage: Box<dyn Storage>,
    membership: Option<Membership>,
    effects: Vec<Effect<R>>,
    requests: RequestStats,
    /// Operations per group commit.
    batch_sizes: Histogram,
    /// The state changed since the storage last saw it.
    housekeeping_due: bool,
    guard: OriginGuard,
    /// The batch the storage is making durable in the background, if any.
    pending: Option<PendingBatch<R>>,
    /// Operations that came while a batch was pending: the next batch.
    waiting: Vec<OpRequest<R>>,
    keys: KeyPolicy,
    retirement: RetirementPolicy,
    /// Why the last compaction offer was refused (logged once until the reason changes).
    adoption_refused: Option<String>,
    /// Changes of compacted origins refused as of the last warning, and when it was.
    refused_warned: (u64, Duration),
    /// When live members' origins are next checked against the compacted ones.
    next_compacted_check: Duration,
}

impl<R> NodeCore<R> {
    /// A core around `engine` (started from the state `storage` recovered).
    pub fn new(engine: Engine, storage: Box<dyn Storage>) -> NodeCore<R> {
        NodeCore {
            engine,
            storage,
            membership: None,
            effects: Vec::new(),
            requests: RequestStats::default(),
            batch_sizes: Histogram::new(BATCH_BUCKETS),
            housekeeping_due: false,
            guard: OriginGuard::default(),
            pending: None,
            waiting: Vec::new(),
            keys: KeyPolicy {
                window: DEFAULT_KEY_WINDOW,
                wall_epoch_ms: 0,
                ready: true,
                start: KeyStart::Recovered,
                alone_since: None,
                next_expiry: Duration::ZERO,
                stats: KeyStats::default(),
            },
            retirement: RetirementPolicy::new(None),
            adoption_refused: None,
            refused_warned: (0, Duration::ZERO),
            next_compacted_check: Duration::ZERO,
        }
    }

    /// Retires the origins of members gone for `after` (see [`RetirementPolicy`]); `None`
    /// never retires. Only a core with membership retires.
    pub fn with_retirement(mut self, after: Option<Duration>) -> Self {
        self.retirement = RetirementPolicy::new(after);
        self
    }

    /// Compacts origins retired for `after` (see `crdt::compact`); `None` never does.
    /// Call it after [`NodeCore::with_retirement`].
    pub fn with_compaction(mut self, after: Option<Duration>) -> Self {
        self.retirement = std::mem::replace(&mut self.retirement, RetirementPolicy::new(None))
            .with_compaction(after);
        self
    }

    /// Keeps idempotency keys for `window`, reading the wall clock as `wall_epoch_ms`
    /// (milliseconds since the Unix epoch) at the runtime's time zero; until `start`
    /// says this node holds what its peers hold of keys, keyed operations are refused.
    pub fn with_keys(mut self, window: Duration, wall_epoch_ms: u64, start: KeyStart) -> Self {
        self.keys.window = window;
        self.keys.wall_epoch_ms = wall_epoch_ms;
        self.keys.start = start;
        self.keys.ready = start == KeyStart::Recovered;
        self
    }

    /// Marks the node ready for keys once every live member has shown it knows this
    /// node and it holds everything the last digest of the live member `from` showed,
    /// or (starting alone) once no member was heard of for the grace time.
    fn check_key_readiness(&mut self, now: Duration, from: Option<&NodeName>) {
        let whole_every = if !self.keys.ready {
            Some(WHOLE_DIGEST_INTERVAL)
        } else if self.retirement.waits_for_digests() {
            Some(RETIRE_DIGEST_INTERVAL)
        } else {
            None
        };
        self.engine.set_needs_whole_digests(whole_every);
        if self.keys.ready {
            return;
        }
        // A member that does not know this node yet resolves keys without waiting on
        // it: a key this node accepted meanwhile could count twice.
        if !self.known_by_live_members() {
            return;
        }
        if let Some(peer) = from.filter(|p| self.is_live_member(p)) {
            let state = self.engine.state();
            let caught_up = self
                .engine
                .peer_digest(peer)
                .is_some_and(|d| d.iter().all(|(origin, &v)| state.known(origin) >= v));
            if caught_up {
                self.keys.ready = true;
                return;
            }
        }
        if self.keys.start == KeyStart::Alone && self.members().all(|m| m.is_self) {
            let since = *self.keys.alone_since.get_or_insert(now);
            self.keys.ready = now.saturating_sub(since) >= KEY_ALONE_GRACE;
        } else {
            self.keys.alone_since = None;
        }
    }

    /// Whether every alive or suspect member has shown it knows this node: probed it,
    /// sent it its full membership ([`Membership::is_known_by`]), or started a gossip
    /// round with it ([`Engine::had_round_from`]). True without membership.
    fn known_by_live_members(&self) -> bool {
        let Some(m) = &self.membership else {
            return true;
        };
        m.members()
            .filter(|v| !v.is_self && v.state.is_live())
            .all(|v| m.is_known_by(&v.member.name) || self.engine.had_round_from(&v.member.name))
    }

    /// Idempotency-key figures for reports.
    pub fn key_stats(&self) -> KeyStats {
        let state = self.engine.state();
        KeyStats {
            ready: self.keys.ready,
            held: state.key_count() as u64,
            live: state.unresolved_acceptances() as u64,
            ..self.keys.stats
        }
    }

    fn wall_ms(&self, now: Duration) -> u64 {
        self.keys
            .wall_epoch_ms
            .saturating_add(now.as_millis() as u64)
    }

    /// Holds writes until a live member's digest shows that no other process holds this
    /// node's origin beyond what it recovered, at most `timeout` from `now`. For a node
    /// that recovered its state from disk and has members to ask.
    pub fn fence(&mut self, now: Duration, timeout: Duration) {
        self.guard.fence(now, timeout);
    }

    /// Whether writes are accepted now, and why not.
    pub fn guard_status(&self) -> GuardStatus {
        self.guard.status(&self.name())
    }

    /// The core with `membership` deciding the engine's peers: the live members.
    pub fn with_membership(mut self, membership: Membership) -> NodeCore<R> {
        self.membership = Some(membership);
        self.route_membership_outputs(Duration::ZERO);
        self
    }

    /// Group commit: the operations become one prepared batch, one durable write and one
    /// apply (at `now`), then each gets its answer. If the storage fails, every operation
    /// of the batch fails with it and nothing is applied. While a batch is pending (see
    /// [`CommitStarted::Pending`]) the operations wait and go into the next batch.
    pub fn commit(&mut self, now: Duration, requests: impl IntoIterator<Item = OpRequest<R>>) {
        self.waiting.extend(requests);
        self.start_waiting(now);
    }

    /// The outcome of the pending batch, from [`Storage::completions`]: it is applied
    /// and answered (or failed), the storage gets its turn (the state now holds every
    /// record it was given: the one moment a snapshot can be asked for under steady
    /// writes), then the operations that waited start the next batch.
    pub fn commit_finished(&mut self, now: Duration, outcome: io::Result<()>) {
        match self.pending.take() {
            Some(pending) => self.finish_batch(now, pending, outcome),
            None => log::error!("storage: an outcome arrived with no batch pending"),
        }
        self.settle();
        self.start_waiting(now);
    }

    /// Whether a batch is being made durable in the background.
    pub fn commit_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Where the storage reports the outcomes of pending batches, if it ever leaves one
    /// pending.
    pub fn storage_completions(&self) -> Option<Receiver<io::Result<()>>> {
        self.storage.completions()
    }

    /// Starts one batch of every waiting operation, unless a batch is pending.
    fn start_waiting(&mut self, now: Duration) {
        if self.pending.is_none() && !self.waiting.is_empty() {
            let requests = std::mem::take(&mut self.waiting);
            self.start_batch(now, requests);
        }
    }

    /// Starts a batch of folds alone when no batch is pending and some of this node's
    /// acceptances can be resolved.
    fn start_folds(&mut self, now: Duration) {
        if self.pending.is_none()
            && self.waiting.is_empty()
            && self.engine.state().unresolved_acceptances() > 0
            && self.guard.refusal(&self.name()).is_none()
        {
            self.start_batch(now, Vec::new());
        }
    }

    /// Which of this node's acceptances it may resolve now (see [`StabilityView`]):
    /// none before it is ready for keys and knows every member (a member's full
    /// membership reached it, or it runs alone).
    fn plan_folds(&self) -> Vec<Fold> {
        let knows_members = match &self.membership {
            Some(m) => m.has_synced() || self.keys.start == KeyStart::Alone,
            None => true,
        };
        if self.engine.state().unresolved_acceptances() == 0 || !self.keys.ready || !knows_members {
            return Vec::new();
        }
        let members: Vec<&NodeName> = match &self.membership {
            Some(m) => m.members().map(|v| &v.member.name).collect(),
            None => self.engine.peers().iter().collect(),
        };
        let view = StabilityView::new(&self.engine, members);
        self.engine
            .state()
            .plan_folds(self.engine.origin(), |key| view.decide(key))
    }

    /// Refuses the keyed operations with a key this node does not hold while it is not
    /// ready for keys (one it holds is answered: a retry, or a mismatch); returns the
    /// others.
    fn refuse_keyed_until_ready(&mut self, requests: Vec<OpRequest<R>>) -> Vec<OpRequest<R>> {
        if self.keys.ready {
            return requests;
        }
        let state = self.engine.state();
        let (new_keys, others): (Vec<_>, Vec<_>) = requests
            .into_iter()
            .partition(|r| r.op.key.as_deref().is_some_and(|k| !state.has_key(k)));
        for r in new_keys {
            self.keys.stats.not_ready += 1;
            self.requests.unavailable += 1;
            self.requests.outcomes_mut(r.op.kind).failed += 1;
            let result = Err(OpFailure::Unavailable(
                "this node has not caught up with a member since it started, or a member \
                 does not know it yet, so it cannot tell whether this key was accepted \
                 elsewhere; retry on another node or in a moment"
                    .into(),
            ));
            self.effects.push(Effect::Reply {
                to: r.reply,
                result,
            });
        }
        others
    }

    /// Prepares one batch (with whatever folds are due) and hands it to the storage.
    fn start_batch(&mut self, now: Duration, requests: Vec<OpRequest<R>>) {
        let requests = self.refuse_keyed_until_ready(requests);
        let (ops, replies): (Vec<LocalOp>, Vec<R>) =
            requests.into_iter().map(|r| (r.op, r.reply)).unzip();
        if let Some(reason) = self.guard.refusal(&self.name()) {
            self.requests.unavailable += ops.len() as u64;
            for (to, op) in replies.into_iter().zip(&ops) {
                self.requests.outcomes_mut(op.kind).failed += 1;
                let result = Err(OpFailure::Unavailable(reason.clone()));
                self.effects.push(Effect::Reply { to, result });
            }
            return;
        }
        let folds = self.plan_folds();
        if ops.is_empty() && folds.is_empty() {
            return;
        }
        let pending = PendingBatch {
            batch: self.engine.prepare_local(&ops, self.wall_ms(now), &folds),
            kinds: ops.iter().map(|op| op.kind).collect(),
            keyed: ops.iter().map(|op| op.key.is_some()).collect(),
            replies,
            folds,
        };
        if !ops.is_empty() {
            self.requests.batches += 1;
            self.requests.ops += ops.len() as u64;
            self.batch_sizes.observe(ops.len() as f64);
        }
        if pending.batch.is_empty() {
            return self.finish_batch(now, pending, Ok(()));
        }
        match self.storage.start_commit(&pending.batch.delta) {
            CommitStarted::Done(outcome) => self.finish_batch(now, pending, outcome),
            CommitStarted::Pending => self.pending = Some(pending),
        }
    }

    /// Applies a batch the storage made durable (nothing if it failed) and answers each
    /// of its operations.
    fn finish_batch(&mut self, now: Duration, pending: PendingBatch<R>, outcome: io::Result<()>) {
        let PendingBatch {
            batch,
            kinds,
            keyed,
            replies,
            folds,
        } = pending;
        let mut storage_error = None;
        if !batch.is_empty() {
            match outcome {
                Ok(()) => {
                    self.engine.apply_local(now, &batch);
                    self.route_engine_outputs(now);
                    self.housekeeping_due = true;
                }
                Err(e) => {
                    self.requests.storage_failures += 1;
                    log::error!("storage: cannot make a batch durable: {e}; nothing applied");
                    storage_error = Some(format!("storage failure, not applied: {e}"));
                }
            }
        }
        if storage_error.is_none() {
            self.count_keys(&batch, &keyed, &folds);
        }
        for ((to, result), kind) in replies.into_iter().zip(batch.results).zip(kinds) {
            let outcomes = self.requests.outcomes_mut(kind);
            let result = match (result, &storage_error) {
                (Err(refused), _) => {
                    outcomes.refused += 1;
                    self.requests.refused += 1;
                    Err(OpFailure::Refused(refused))
                }
                (Ok(_), Some(e)) => {
                    outcomes.failed += 1;
                    Err(OpFailure::Storage(e.clone()))
                }
                (Ok(value), None) => {
                    outcomes.ok += 1;
                    Ok(value)
                }
            };
            self.effects.push(Effect::Reply { to, result });
        }
    }

    /// Counts what a durable batch did with keys.
    fn count_keys(&mut self, batch: &PreparedBatch, keyed: &[bool], folds: &[Fold]) {
        let stats = &mut self.keys.stats;
        stats.retries += batch.retries;
        for (result, &keyed) in batch.results.iter().zip(keyed) {
            match result {
                Err(OpError::KeyMismatch { .. }) => stats.mismatches += 1,
                Ok(_) if keyed => stats.accepted += 1,
                _ => {}
            }
        }
        // Retries answered Ok too, but accepted nothing.
        stats.accepted -= batch.retries;
        for fold in folds {
            stats.resolved += fold.resolved;
            stats.folded += fold.folded;
        }
    }

    /// One gossip frame from the peer `from` (a membership frame goes to membership).
    pub fn handle_frame(&mut self, now: Duration, from: &NodeName, frame: Frame) {
        let digest = matches!(frame, Frame::Syn { .. } | Frame::SynAck { .. });
        self.engine.handle_frame(now, from, frame);
        if self.route_engine_outputs(now) {
            self.housekeeping_due = true;
        }
        self.check_key_readiness(now, Some(from));
        // The engine checked the digest against this node's origin (and any claim beyond
        // it made the core take a new incarnation): from a live member, that lifts the fence.
        if digest && self.is_live_member(from) {
            self.guard.digest_checked();
        }
    }

    /// One membership message that came from the gossip address `from_addr`.
    pub fn handle_member_message(
        &mut self,
        now: Duration,
        from_addr: &str,
        msg: membership::Message,
    ) {
        if self.guard.take_ack(&self.name(), from_addr, &msg) {
            return;
        }
        if let Some(m) = &mut self.membership {
            m.handle_message(now, from_addr, msg);
            self.route_membership_outputs(now);
        }
    }

    /// Runs what is due: probes and suspicion timeouts, an anti-entropy round, then the
    /// storage's housekeeping (a timed fsync or a snapshot owed since start-up must not
    /// wait for a change).
    pub fn handle_timer(&mut self, now: Duration) {
        if let Some(m) = self
            .membership
            .as_mut()
            .filter(|m| now >= m.next_deadline())
        {
            m.handle_timer(now);
            self.route_membership_outputs(now);
        }
        if let Some((to, msg)) = self.guard.handle_timer(now, &self.name()) {
            self.effects.push(Effect::SendMember { to, msg });
        }
        self.check_key_readiness(now, None);
        if now >= self.keys.next_expiry {
            self.keys.next_expiry = now + KEY_EXPIRY_INTERVAL.min(self.keys.window);
            let window = self.keys.window.as_millis() as u64;
            let expired = self.engine.expire_keys(self.wall_ms(now), window);
            self.keys.stats.expired += expired as u64;
        }
        if let Some(m) = &self.membership {
            // A live member writing under an origin compacted here (it was taken for
            // gone across a long partition) is told, so it writes under a new one.
            if self.engine.state().retire_stats().compacted > 0 && now >= self.next_compacted_check
            {
                self.next_compacted_check = now + Duration::from_secs(1);
                for view in m.members().filter(|v| !v.is_self && v.state.is_live()) {
                    let name = view.member.name.as_str();
                    let origin = Origin::new(name, view.member.incarnation);
                    if self.engine.state().is_compacted(&origin) {
                        self.engine.offer_compaction(now, &view.member.name);
                    }
                }
            }
            let retired = self.retirement.run(now, &mut self.engine, m);
            for ov in &retired {
                log::info!(
                    "retired origin {} at version {}: its member is gone for good, and its \
                     totals now count in each counter's retired sum",
                    ov.origin,
                    ov.version
                );
            }
            if !retired.is_empty() {
                if let Err(e) = self.storage.log_retired(&retired) {
                    log::warn!("cannot log retirements: {e}");
                }
            }
            let compacted = self.retirement.compact(now, &mut self.engine);
            for ov in &compacted {
                log::info!(
                    "compacted origin {} (retired at version {}): its tombstone's entries are \
                     gone, their totals stay in each counter's compacted sum",
                    ov.origin,
                    ov.version
                );
            }
            if !compacted.is_empty() {
                if let Err(e) = self.storage.log_compacted(&compacted, false) {
                    log::warn!("cannot log compactions: {e}");
                }
            }
            self.warn_of_refused_changes(now);
        }
        if now < self.engine.next_deadline() {
            return;
        }
        self.engine.handle_timer(now);
        self.route_engine_outputs(now);
        self.housekeeping_due = true;
        self.start_folds(now);
        self.settle();
    }

    /// When [`NodeCore::handle_timer`] must next run.
    pub fn next_deadline(&self) -> Duration {
        let engine = self.engine.next_deadline();
        let core = self.guard.next_deadline().map_or(engine, |g| engine.min(g));
        self.membership
            .as_ref()
            .map_or(core, |m| core.min(m.next_deadline()))
    }

    /// Joins the cluster through the node at the gossip address `addr`.
    pub fn join(&mut self, now: Duration, addr: &str) {
        if let Some(m) = &mut self.membership {
            m.join(now, addr);
            self.route_membership_outputs(now);
        }
    }

    /// Replaces the seeds (gossip addresses) contacted while not all of them are members.
    pub fn set_seeds(&mut self, seeds: Vec<String>) {
        if let Some(m) = &mut self.membership {
            m.set_seeds(seeds);
        }
    }

    /// Announces a clean stop: the members mark this node left, not dead.
    pub fn leave(&mut self, now: Duration) {
        if let Some(m) = &mut self.membership {
            m.leave(now);
            self.route_membership_outputs(now);
        }
    }

    /// Marks the member `name` left cluster-wide (an operator's removal); returns whether
    /// it was a live member.
    pub fn remove_member(&mut self, now: Duration, name: &NodeName) -> bool {
        let Some(m) = &mut self.membership else {
            return false;
        };
        let removed = m.remove(now, name.as_str());
        self.route_membership_outputs(now);
        removed
    }

    /// Every member this node knows, itself included (nothing without membership).
    pub fn members(&self) -> impl Iterator<Item = MemberView<'_>> {
        self.membership.iter().flat_map(|m| m.members())
    }

    /// The gossip address of the member `name`, if it is known.
    pub fn member_addr(&self, name: &NodeName) -> Option<&str> {
        let m = self.membership.as_ref()?.get(name.as_str())?;
        Some(m.member.gossip_addr.as_str())
    }

    pub fn membership(&self) -> Option<&Membership> {
        self.membership.as_ref()
    }

    /// Merges totals that arrive without versions (Maelstrom's `replicate`); see
    /// [`Engine::merge_unversioned`]. Returns whether the state grew.
    pub fn merge_unversioned(
        &mut self,
        now: Duration,
        origin: &Origin,
        counter: &str,
        p: u64,
        n: u64,
    ) -> bool {
        self.engine.merge_unversioned(now, origin, counter, p, n)
    }

    pub fn set_peers(&mut self, peers: impl IntoIterator<Item = NodeName>) {
        self.engine.set_peers(peers);
    }

    pub fn add_peer(&mut self, peer: NodeName) {
        self.engine.add_peer(peer);
    }

    pub fn remove_peer(&mut self, peer: &NodeName) {
        self.engine.remove_peer(peer);
    }

    pub fn peers(&self) -> &[NodeName] {
        self.engine.peers()
    }

    /// Takes every effect queued since the last call, in order.
    pub fn take_effects(&mut self) -> Vec<Effect<R>> {
        std::mem::take(&mut self.effects)
    }

    pub fn origin(&self) -> &Origin {
        self.engine.origin()
    }

    pub fn state(&self) -> &State {
        self.engine.state()
    }

    pub fn gossip_stats(&self) -> &Stats {
        self.engine.stats()
    }

    pub fn request_stats(&self) -> RequestStats {
        self.requests
    }

    /// Operations per group commit so far.
    pub fn group_commit_sizes(&self) -> HistogramSnapshot {
        self.batch_sizes.snapshot()
    }

    /// How far each peer's latest digest is behind this node's own writes, at `now`.
    pub fn replication(&self, now: Duration) -> Vec<PeerLag> {
        self.engine.replication(now)
    }

    pub fn storage_status(&self) -> StorageStatus {
        self.storage.status()
    }

    /// Closes the storage; the core is done.
    pub fn close(mut self) -> io::Result<()> {
        // A snapshot owed (an adopted compaction is in no record) is taken first: the
        // storage waits for it before it closes.
        if self.pending.is_none() {
            if let Err(e) = self.storage.after_turn(self.engine.state()) {
                log::warn!("storage: {e}");
            }
        }
        self.storage.close()
    }

    /// Moves the engine's frames to the effects, logs what it learned and answers a
    /// claim on this node's origin; returns whether it learned anything.
    fn route_engine_outputs(&mut self, now: Duration) -> bool {
        let mut learned = false;
        let origin = self.engine.origin().clone();
        for output in self.engine.drain_outputs() {
            match output {
                Output::Send { to, frame } => self.effects.push(Effect::Send { to, frame }),
                Output::Learned(deltas) => {
                    learned = true;
                    self.log_learned(&deltas);
                }
                // Claims about an origin this node already left behind need no answer.
                Output::OwnOriginAhead { from, claimed, own } if origin == *self.origin() => {
                    let reason = format!(
                        "{from} holds this node's origin {origin} up to version {claimed}, beyond the \
                         {own} this node wrote (a copied or restored data directory, or \
                         another process writing under it)"
                    );
                    self.renew_incarnation(now, reason);
                }
                Output::OwnOriginAhead { .. } => {}
                Output::Adopted { from, origins } => {
                    learned = true;
                    log::info!(
                        "adopted {from}'s compaction: {origins} more origin(s) compacted here, \
                         their totals taken from its compacted sums"
                    );
                    let compacted = self.engine.state().compaction().origins;
                    if let Err(e) = self.storage.log_compacted(&compacted, true) {
                        log::warn!("cannot log an adopted compaction: {e}");
                    }
                }
                Output::OwnOriginCompacted { from, version } if origin == *self.origin() => {
                    let reason = format!(
                        "{from} compacted this node's origin {origin} at version {version}: it \
                         took this node for gone longer than its --retire-after plus \
                         --compact-after (a long partition), and refuses what this node \
                         wrote under it past that"
                    );
                    self.renew_incarnation(now, reason);
                }
                Output::OwnOriginCompacted { .. } => {}
                Output::AdoptionRefused { from, reason } => {
                    if self.adoption_refused.as_ref() != Some(&reason) {
                        log::warn!("not adopting {from}'s compaction: {reason}");
                        self.adoption_refused = Some(reason);
                    }
                }
            }
        }
        learned
    }

    /// Writes from now on under a new incarnation, so nothing this node writes can share
    /// versions with the other writer of its old origin. What the old origin holds stays.
    fn renew_incarnation(&mut self, now: Duration, reason: String) {
        let current = self.engine.origin().clone();
        match self.storage.renew_incarnation(&current, reason.clone()) {
            Ok(origin) => {
                log::warn!("{reason}: now writing under the new incarnation {origin}");
                self.engine.set_origin(origin.clone());
                if let Some(m) = &mut self.membership {
                    m.renew_incarnation(now, origin.incarnation);
                    self.route_membership_outputs(now);
                }
                self.guard.renewed();
                self.effects.push(Effect::NewIncarnation(origin));
            }
            Err(e) => {
                log::error!("{reason}; cannot record a new incarnation: {e}");
                self.guard.break_with(format!(
                    "origin conflict and the storage failed to record a new incarnation                      ({e}): writes refused until the node restarts"
                ));
            }
        }
    }

    /// Warns, at most once a minute, when changes of compacted origins were refused
    /// since the last warning: they count on replicas that did not compact those origins
    /// and never here.
    fn warn_of_refused_changes(&mut self, now: Duration) {
        let refused = self.engine.state().retire_stats().refused;
        let (warned, at) = self.refused_warned;
        if refused == warned || (warned > 0 && now < at + Duration::from_secs(60)) {
            return;
        }
        log::warn!(
            "{} change(s) of origins compacted here refused so far: a replica away longer \
             than --retire-after plus --compact-after holds writes of an origin taken for \
             gone, and they cannot be counted here; replicas now disagree until that \
             replica's data is wiped and it rejoins",
            refused
        );
        self.refused_warned = (refused, now);
    }

    /// This node's name (its origin's node).
    fn name(&self) -> NodeName {
        NodeName::new(&self.engine.origin().node).expect("an origin's node name is valid")
    }

    fn is_live_member(&self, name: &NodeName) -> bool {
        self.membership
            .as_ref()
            .and_then(|m| m.get(name.as_str()))
            .is_some_and(|u| u.state.is_live())
    }

    /// Carries membership's outputs over: messages to send, changes to report, and the
    /// engine's peer set kept to the live members.
    fn route_membership_outputs(&mut self, now: Duration) {
        let Some(m) = &mut self.membership else {
            return;
        };
        for output in m.drain_outputs() {
            match output {
                membership::Output::Send { to, msg } => {
                    self.effects.push(Effect::SendMember { to, msg })
                }
                membership::Output::Changed(change) => {
                    let name = change.member.name.clone();
                    if change.member.name.as_str() != self.engine.origin().node {
                        // A digest from an earlier run says nothing of what this run holds.
                        if change.new_run {
                            self.engine.forget_digest(&name);
                        }
                        match change.to {
                            Some(state) if state.is_live() => self.engine.add_peer(name),
                            Some(_) => self.engine.remove_peer(&name),
                            None => self.engine.forget(&name),
                        }
                    }
                    self.effects.push(Effect::MemberChanged(change));
                }
                membership::Output::NameConflict { other } => {
                    self.guard.suspect_twin(now, other.clone());
                    self.effects.push(Effect::NameConflict(other))
                }
                membership::Output::OlderRun { other } => self.guard.suspect_twin(now, other),
            }
        }
    }

    fn log_learned(&mut self, deltas: &[OriginDelta]) {
        if let Err(e) = self.storage.log_learned(deltas) {
            self.requests.learned_log_failures += 1;
            log::warn!("storage: cannot log state learned from peers: {e}");
        }
    }

    /// Lets the storage sync or snapshot if the state changed since it last could. A
    /// runtime calls it after carrying out an input's effects, so answers and frames do
    /// not wait for a snapshot; if it does not, the next timer tick does it.
    /// While a batch is pending the state lacks a record the storage holds, so this
    /// waits for its outcome.
    pub fn settle(&mut self) {
        if self.pending.is_some() || !std::mem::take(&mut self.housekeeping_due) {
            return;
        }
        if let Err(e) = self.storage.after_turn(self.engine.state()) {
            log::warn!("storage: {e}");
        }
    }
}
