//! A deterministic in-memory simulator for the node core: the same `NodeCore` that
//! `gctr node` and `gctr maelstrom` run, over a storage double.
//!
//! N node cores exchange frames as encoded bytes (every frame goes through
//! `codec::encode` and `codec::decode` with the engine's payload limit, so an oversized or
//! malformed frame fails the run). Time is virtual; every random choice — link loss,
//! duplication, delay (and so reordering), which node runs an operation, each engine's own
//! RNG — comes from one seed, printed when a run fails and replayed with
//! `GCTR_SIM_SEED=<seed>`.
//!
//! Each node's storage ([`SimStorage`]) keeps what a WAL would keep: every batch the core
//! commits and every delta it logs as learned, and it fails commits on demand. A crash
//! drops the core; a restart rebuilds the state from that log (same origin) or starts
//! empty under a new incarnation. The simulator tracks every acknowledged operation, so
//! the exact expected value of each counter is known.
//!
//! With [`Sim::with_membership`] the cores run SWIM membership too: nodes join through
//! node 0, membership messages travel the same lossy network, and the engine gossips
//! with whoever membership says is live, as in `gctr node`; without it every node knows
//! every other as a peer from the start.
//!
//! Scenarios are data: a list of [`Step`]s run in order by [`Sim::run`].

#![allow(dead_code)] // Each test binary that includes the simulator uses a part of it.

use gctr::codec::{self, Frame};
use gctr::crdt::{LocalOp, OpKind, Origin, OriginDelta, OriginVersion, State};
use gctr::engine::{Config, Engine, Stats};
use gctr::member::{Member, NodeName};
use gctr::membership::{self, Membership};
use gctr::node_core::{
    fresh_incarnation, Effect, KeyStart, NodeCore, OpRequest, OpResult, Storage, DEFAULT_KEY_WINDOW,
};
use gctr::status::StorageStatus;
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap};
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The seed to use: `GCTR_SIM_SEED` when set (to replay a failure), else `default`.
pub fn seed_or(default: u64) -> u64 {
    match std::env::var("GCTR_SIM_SEED") {
        Ok(s) => s.trim().parse().expect("GCTR_SIM_SEED must be a u64"),
        Err(_) => default,
    }
}

/// How every link treats a frame: dropped with probability `loss`, sent twice with
/// probability `duplicate`, each copy delayed uniformly in `delay` (so frames reorder).
#[derive(Clone, Copy, Debug)]
pub struct Link {
    pub loss: f64,
    pub duplicate: f64,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Link {
    pub fn perfect() -> Link {
        Link {
            loss: 0.0,
            duplicate: 0.0,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(5),
        }
    }

    /// Loss and duplication, with delays spread wide enough to reorder across rounds.
    pub fn faulty(loss: f64, duplicate: f64) -> Link {
        Link {
            loss,
            duplicate,
            min_delay: Duration::from_millis(1),
            max_delay: Duration::from_millis(150),
        }
    }
}

/// One step of a scenario.
#[derive(Clone, Debug)]
pub enum Step {
    /// Adds nodes; every node knows every other node as a peer.
    AddNodes(usize),
    /// `count` random increments and decrements (amounts 1..=5) on counters `c0`..,
    /// on random live nodes, spread evenly over `over`.
    RandomOps {
        count: usize,
        counters: usize,
        over: Duration,
    },
    /// One operation on one node; `by` > 0 increments, < 0 decrements.
    Op {
        node: usize,
        counter: String,
        by: i64,
    },
    /// Cuts the network into groups; nodes in different groups cannot reach each other.
    Partition(Vec<Vec<usize>>),
    Heal,
    SetLink(Link),
    /// Drops the node's engine and everything volatile; the log survives.
    Crash(usize),
    /// Restarts under the same origin from the log.
    RestartDurable(usize),
    /// Restarts with an empty state under a new incarnation (the data was lost).
    RestartFresh(usize),
    /// The misuse the design forbids: empty state, same origin. For the test showing why.
    RestartEmptySameOrigin(usize),
    Run(Duration),
    /// Every live node reports the exact expected value of every counter within the time.
    AssertConverged {
        within: Duration,
    },
}

struct Msg {
    at: Duration,
    seq: u64,
    from: usize,
    to: usize,
    bytes: Vec<u8>,
}

impl PartialEq for Msg {
    fn eq(&self, other: &Msg) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Msg {}

impl PartialOrd for Msg {
    fn partial_cmp(&self, other: &Msg) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Msg {
    fn cmp(&self, other: &Msg) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// What a node's storage holds across crashes, and the faults it is told to inject.
#[derive(Debug, Default)]
pub struct SimLog {
    /// Durable local batches and learned deltas, in log order.
    pub deltas: Vec<OriginDelta>,
    /// Retirements logged; a restart makes them after replaying `deltas` (where the
    /// origin has not moved past its version since, they hold).
    pub retired: Vec<OriginVersion>,
    /// Commits still to fail.
    pub fail_commits: usize,
    /// The incarnation the node took while running, which a restart resumes under.
    pub renewed: Option<Origin>,
}

/// The storage double: logs in memory (kept across a crash by the simulator), fails
/// commits when told to.
pub struct SimStorage(Arc<Mutex<SimLog>>);

impl SimStorage {
    fn log(&self) -> std::sync::MutexGuard<'_, SimLog> {
        self.0.lock().expect("the log lock")
    }
}

impl Storage for SimStorage {
    fn commit_local(&mut self, delta: &OriginDelta) -> io::Result<()> {
        let mut log = self.log();
        if log.fail_commits > 0 {
            log.fail_commits -= 1;
            return Err(io::Error::other("injected commit failure"));
        }
        log.deltas.push(delta.clone());
        Ok(())
    }

    fn log_learned(&mut self, deltas: &[OriginDelta]) -> io::Result<()> {
        self.log().deltas.extend_from_slice(deltas);
        Ok(())
    }

    fn log_retired(&mut self, retired: &[OriginVersion]) -> io::Result<()> {
        self.log().retired.extend_from_slice(retired);
        Ok(())
    }

    fn after_turn(&mut self, _state: &State) -> io::Result<()> {
        Ok(())
    }

    fn renew_incarnation(&mut self, current: &Origin, _reason: String) -> io::Result<Origin> {
        let origin = fresh_incarnation(current);
        self.log().renewed = Some(origin.clone());
        Ok(origin)
    }

    fn status(&self) -> StorageStatus {
        StorageStatus::MEMORY
    }

    fn close(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A sim node's core; replies are tagged with the operation's position in its batch.
type Core = NodeCore<usize>;

struct Node {
    name: NodeName,
    origin: Origin,
    core: Option<Core>,
    log: Arc<Mutex<SimLog>>,
    group: usize,
}

pub struct Sim {
    pub seed: u64,
    rng: fastrand::Rng,
    now: Duration,
    config: Config,
    link: Link,
    nodes: Vec<Node>,
    queue: BinaryHeap<Reverse<Msg>>,
    seq: u64,
    expected: BTreeMap<String, i64>,
    /// Operations acknowledged (durable and applied).
    pub acknowledged: u64,
    /// Largest encoded frame seen, header included.
    pub largest_frame: usize,
    pub frames_sent: u64,
    pub frames_lost: u64,
    /// Membership settings, when the cores run membership.
    membership: Option<membership::Config>,
    /// How long an origin must be gone before a core retires it (`None`: never).
    retire_after: Option<Duration>,
    compact_after: Option<Duration>,
}

/// The simulated wall clock at virtual time zero, for membership's run stamps.
const EPOCH_MS: u64 = 1_700_000_000_000;

impl Sim {
    /// A simulator whose nodes run SWIM membership and join through node 0.
    pub fn with_membership(
        seed: u64,
        config: Config,
        membership: membership::Config,
        link: Link,
    ) -> Sim {
        let mut sim = Sim::new(seed, config, link);
        sim.membership = Some(membership);
        sim
    }

    /// The cores retire origins gone for `after` (they need membership to).
    pub fn with_retirement(mut self, after: Duration) -> Sim {
        self.retire_after = Some(after);
        self
    }

    /// The cores compact origins retired for `after` (see `crdt::compact`).
    pub fn with_compaction(mut self, after: Duration) -> Sim {
        self.compact_after = Some(after);
        self
    }

    pub fn new(seed: u64, config: Config, link: Link) -> Sim {
        Sim {
            membership: None,
            retire_after: None,
            compact_after: None,
            seed,
            rng: fastrand::Rng::with_seed(seed),
            now: Duration::ZERO,
            config,
            link,
            nodes: Vec::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            expected: BTreeMap::new(),
            acknowledged: 0,
            largest_frame: 0,
            frames_sent: 0,
            frames_lost: 0,
        }
    }

    /// The exact value every counter must reach: the sum of acknowledged operations.
    pub fn expected(&self) -> &BTreeMap<String, i64> {
        &self.expected
    }

    pub fn state(&self, node: usize) -> Option<&State> {
        self.nodes[node].core.as_ref().map(Core::state)
    }

    /// The storage log of node `i`, to inject faults or inspect what it made durable.
    pub fn log(&self, i: usize) -> std::sync::MutexGuard<'_, SimLog> {
        self.nodes[i].log.lock().expect("the log lock")
    }

    fn live(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].core.is_some())
            .collect()
    }

    /// A failure message naming the seed.
    pub fn fail(&self, what: &str) -> String {
        format!(
            "{what} (at {:?}; seed {}, replay with GCTR_SIM_SEED={})",
            self.now, self.seed, self.seed
        )
    }

    pub fn run(&mut self, steps: &[Step]) {
        for step in steps {
            self.step(step);
        }
    }

    fn step(&mut self, step: &Step) {
        match step {
            Step::AddNodes(n) => {
                for _ in 0..*n {
                    self.add_node();
                }
            }
            Step::RandomOps {
                count,
                counters,
                over,
            } => self.random_ops(*count, *counters, *over),
            Step::Op { node, counter, by } => self.op(*node, counter, *by),
            Step::Partition(groups) => {
                for (g, members) in groups.iter().enumerate() {
                    for &m in members {
                        self.nodes[m].group = g;
                    }
                }
            }
            Step::Heal => self.nodes.iter_mut().for_each(|n| n.group = 0),
            Step::SetLink(link) => self.link = *link,
            Step::Crash(i) => self.crash(*i),
            Step::RestartDurable(i) => self.restart_durable(*i),
            Step::RestartFresh(i) => self.restart_fresh(*i),
            Step::RestartEmptySameOrigin(i) => self.restart_empty_same_origin(*i),
            Step::Run(d) => self.run_for(*d),
            Step::AssertConverged { within } => {
                self.converge_within(*within);
            }
        }
    }

    fn name(i: usize) -> NodeName {
        NodeName::new(&format!("n{i}")).expect("a valid name")
    }

    /// Node `i`'s gossip address.
    fn addr(i: usize) -> String {
        format!("10.0.{}.{}:9000", i / 250, i % 250 + 1)
    }

    /// The node a gossip address belongs to.
    fn node_at(addr: &str) -> Option<usize> {
        let host = addr.strip_suffix(":9000")?.strip_prefix("10.0.")?;
        let (hi, lo) = host.split_once('.')?;
        Some(hi.parse::<usize>().ok()? * 250 + lo.parse::<usize>().ok()? - 1)
    }

    /// Whether every live node sees every other live node alive, and no other member
    /// alive or suspect.
    pub fn membership_whole(&self) -> bool {
        let live: Vec<usize> = self.live();
        live.iter().all(|&i| {
            let core = self.nodes[i].core.as_ref().expect("live");
            let alive: Vec<&str> = core
                .members()
                .filter(|m| m.state.is_live())
                .map(|m| m.member.name.as_str())
                .collect();
            alive.len() == live.len()
                && live
                    .iter()
                    .all(|&j| alive.contains(&self.nodes[j].name.as_str()))
        })
    }

    /// Runs until [`Sim::membership_whole`]; returns how long it took, or panics after
    /// `within`.
    pub fn membership_whole_within(&mut self, within: Duration) -> Duration {
        let tick = self.config.gossip_interval / 10;
        self.run_until(within, tick, "one whole membership", Sim::membership_whole)
    }

    pub fn add_node(&mut self) -> usize {
        let i = self.nodes.len();
        let name = Sim::name(i);
        let origin = Origin::new(name.as_str(), self.rng.u64(..));
        self.nodes.push(Node {
            name: name.clone(),
            origin,
            core: None,
            log: Arc::default(),
            group: 0,
        });
        self.start(i, State::new());
        if self.membership.is_none() {
            for j in 0..i {
                if let Some(core) = self.nodes[j].core.as_mut() {
                    core.add_peer(name.clone());
                }
            }
        }
        i
    }

    fn start(&mut self, i: usize, state: State) {
        let empty = state.origin_count() == 0;
        let seed = self.rng.u64(..);
        let engine = Engine::new(
            self.nodes[i].origin.clone(),
            self.config.clone(),
            state,
            seed,
            self.now,
        );
        let storage = SimStorage(self.nodes[i].log.clone());
        // As `gctr node` decides: a node with state recovered it; an empty one joins
        // through node 0, which itself has no one to join (without membership every
        // node knows every other from the start).
        let key_start = match (empty, self.membership.is_some(), i) {
            (true, true, 0) => KeyStart::Alone,
            (true, true, _) => KeyStart::Joining,
            _ => KeyStart::Recovered,
        };
        let mut core = NodeCore::new(engine, Box::new(storage))
            .with_keys(DEFAULT_KEY_WINDOW, EPOCH_MS, key_start)
            .with_retirement(self.retire_after)
            .with_compaction(self.compact_after);
        match self.membership.clone() {
            Some(config) => {
                let origin = &self.nodes[i].origin;
                let me = Member {
                    name: self.nodes[i].name.clone(),
                    incarnation: origin.incarnation,
                    started_at: EPOCH_MS + self.now.as_millis() as u64,
                    gossip_addr: Sim::addr(i),
                    http_addr: String::new(),
                };
                let seeds = if i == 0 {
                    Vec::new()
                } else {
                    vec![Sim::addr(0)]
                };
                let m = Membership::new(me, config, seeds, self.rng.u64(..), self.now);
                core = core.with_membership(m);
            }
            None => core.set_peers(
                (0..self.nodes.len())
                    .filter(|&j| j != i)
                    .map(|j| self.nodes[j].name.clone()),
            ),
        }
        self.nodes[i].core = Some(core);
        self.drain(i);
    }

    pub fn crash(&mut self, i: usize) {
        self.nodes[i].core = None;
    }

    pub fn restart_durable(&mut self, i: usize) {
        self.crash(i);
        let renewed = self.log(i).renewed.take();
        if let Some(origin) = renewed {
            self.nodes[i].origin = origin;
        }
        let mut state = State::new();
        for delta in &self.log(i).deltas {
            state.apply_delta(delta);
        }
        state.retire_all(&self.log(i).retired);
        self.start(i, state);
    }

    /// Restarts node `i` from `backup`, an older copy of its log (a restored backup),
    /// fenced for at most `fence` as the TCP node is after recovering a data directory.
    pub fn restore_backup(&mut self, i: usize, backup: Vec<OriginDelta>, fence: Duration) {
        self.crash(i);
        let mut state = State::new();
        for delta in &backup {
            state.apply_delta(delta);
        }
        self.log(i).deltas = backup;
        self.log(i).retired.clear();
        self.start(i, state);
        let now = self.now;
        if let Some(core) = self.nodes[i].core.as_mut() {
            core.fence(now, fence);
        }
    }

    /// Node `i`'s core, if it is up.
    pub fn core(&self, i: usize) -> Option<&Core> {
        self.nodes[i].core.as_ref()
    }

    pub fn restart_fresh(&mut self, i: usize) {
        self.crash(i);
        self.nodes[i].origin.incarnation = self.rng.u64(..);
        self.log(i).deltas.clear();
        self.log(i).retired.clear();
        self.log(i).renewed = None;
        self.start(i, State::new());
    }

    pub fn restart_empty_same_origin(&mut self, i: usize) {
        self.crash(i);
        self.log(i).deltas.clear();
        self.log(i).retired.clear();
        self.start(i, State::new());
    }

    /// Runs local operations as one group commit on node `i` and returns each one's
    /// answer; the acknowledged ones count towards the expected values.
    pub fn try_ops(&mut self, i: usize, ops: &[LocalOp]) -> Vec<OpResult> {
        let results = self.try_uncounted(i, ops);
        for (op, result) in ops.iter().zip(&results) {
            if result.is_ok() {
                let signed = match op.kind {
                    OpKind::Increment => op.amount as i64,
                    OpKind::Decrement => -(op.amount as i64),
                };
                self.expect(&op.counter, signed);
                self.acknowledged += 1;
            }
        }
        results
    }

    /// Adds `by` to what `counter` must reach: for a client that counts its logical
    /// operations itself (keyed ones, which retries must not count again).
    pub fn expect(&mut self, counter: &str, by: i64) {
        *self.expected.entry(counter.to_owned()).or_default() += by;
    }

    /// Makes node `i` (without membership) gossip with, and count as members, only
    /// `peers`: a node that does not know of the others.
    pub fn set_peers(&mut self, i: usize, peers: &[usize]) {
        let names: Vec<NodeName> = peers.iter().map(|&j| self.nodes[j].name.clone()).collect();
        if let Some(core) = self.nodes[i].core.as_mut() {
            core.set_peers(names);
        }
    }

    /// The nodes that are up.
    pub fn live_nodes(&self) -> Vec<usize> {
        self.live()
    }

    /// The current virtual time.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Runs local operations as one group commit on node `i` and returns each one's
    /// answer, counting nothing towards the expected values.
    pub fn try_uncounted(&mut self, i: usize, ops: &[LocalOp]) -> Vec<OpResult> {
        let core = self.nodes[i]
            .core
            .as_mut()
            .unwrap_or_else(|| panic!("node {i} is down"));
        let requests = ops.iter().enumerate().map(|(k, op)| OpRequest {
            op: op.clone(),
            reply: k,
        });
        core.commit(self.now, requests);
        let mut results: Vec<Option<OpResult>> = vec![None; ops.len()];
        for effect in self.drain(i) {
            results[effect.0] = Some(effect.1);
        }
        results
            .into_iter()
            .map(|r| r.expect("every operation is answered"))
            .collect()
    }

    /// Runs local operations as one batch on node `i`: every one must be acknowledged.
    pub fn ops(&mut self, i: usize, ops: &[LocalOp]) {
        let results = self.try_ops(i, ops);
        for (op, result) in ops.iter().zip(&results) {
            assert!(result.is_ok(), "operation {op:?} refused: {result:?}");
        }
    }

    pub fn op(&mut self, i: usize, counter: &str, by: i64) {
        let kind = if by >= 0 {
            OpKind::Increment
        } else {
            OpKind::Decrement
        };
        self.ops(
            i,
            &[LocalOp {
                counter: counter.to_owned(),
                kind,
                amount: by.unsigned_abs(),
                key: None,
            }],
        );
    }

    fn random_ops(&mut self, count: usize, counters: usize, over: Duration) {
        let gap = over / count.max(1) as u32;
        for _ in 0..count {
            self.run_for(gap);
            let live = self.live();
            assert!(!live.is_empty(), "{}", self.fail("no live node for ops"));
            let node = live[self.rng.usize(..live.len())];
            let counter = format!("c{}", self.rng.usize(..counters));
            let amount = self.rng.i64(1..=5);
            let by = if self.rng.bool() { amount } else { -amount };
            self.op(node, &counter, by);
        }
    }

    /// Runs every timer and delivery due up to `now + d`.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            let timer = self
                .nodes
                .iter()
                .enumerate()
                .filter_map(|(i, n)| n.core.as_ref().map(|c| (c.next_deadline(), i)))
                .min();
            let msg_at = self.queue.peek().map(|Reverse(m)| m.at);
            match (timer, msg_at) {
                (Some((t, i)), m) if t <= end && m.is_none_or(|m| t <= m) => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    self.nodes[i].core.as_mut().expect("live").handle_timer(now);
                    self.drain(i);
                }
                (_, Some(m)) if m <= end => {
                    let Reverse(msg) = self.queue.pop().expect("peeked");
                    self.now = self.now.max(msg.at);
                    self.deliver(msg);
                }
                _ => break,
            }
        }
        self.now = end;
    }

    fn deliver(&mut self, msg: Msg) {
        if self.nodes[msg.from].group != self.nodes[msg.to].group {
            self.frames_lost += 1;
            return;
        }
        let max = self.config.max_payload;
        let from = self.nodes[msg.from].name.clone();
        let now = self.now;
        let Some(core) = self.nodes[msg.to].core.as_mut() else {
            self.frames_lost += 1;
            return;
        };
        let frame = match codec::decode(&msg.bytes, max) {
            Ok(frame) => frame,
            Err(e) => panic!(
                "{}",
                self.fail(&format!("a frame from {from} does not decode: {e}"))
            ),
        };
        match frame {
            Frame::Member(m) => core.handle_member_message(now, &Sim::addr(msg.from), m),
            frame => core.handle_frame(now, &from, frame),
        }
        self.drain(msg.to);
    }

    /// Carries out node `i`'s effects: frames onto the network; returns the answers.
    fn drain(&mut self, i: usize) -> Vec<(usize, OpResult)> {
        let core = self.nodes[i].core.as_mut().expect("live");
        let effects = core.take_effects();
        core.settle();
        let mut replies = Vec::new();
        for effect in effects {
            match effect {
                Effect::Send { to, frame } => {
                    let to: usize = to.as_str()[1..].parse().expect("peer names are n<index>");
                    let bytes = codec::encode(&frame);
                    self.largest_frame = self.largest_frame.max(bytes.len());
                    self.send(i, to, bytes);
                }
                Effect::SendMember { to, msg } => {
                    let bytes = codec::encode(&Frame::Member(msg));
                    match Sim::node_at(&to) {
                        Some(to) if to < self.nodes.len() => self.send(i, to, bytes),
                        _ => self.frames_lost += 1,
                    }
                }
                Effect::Reply { to, result } => replies.push((to, result)),
                Effect::MemberChanged(_) | Effect::NameConflict(_) | Effect::NewIncarnation(_) => {}
            }
        }
        replies
    }

    fn send(&mut self, from: usize, to: usize, bytes: Vec<u8>) {
        self.frames_sent += 1;
        if self.nodes[from].group != self.nodes[to].group || self.rng.f64() < self.link.loss {
            self.frames_lost += 1;
            return;
        }
        let copies = if self.rng.f64() < self.link.duplicate {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let span = self.link.max_delay.saturating_sub(self.link.min_delay);
            let delay = self.link.min_delay + span.mul_f64(self.rng.f64());
            self.seq += 1;
            self.queue.push(Reverse(Msg {
                at: self.now + delay,
                seq: self.seq,
                from,
                to,
                bytes: bytes.clone(),
            }));
        }
    }

    /// Whether every live node reports exactly the expected value of every counter, and
    /// no other counter.
    pub fn converged(&self) -> bool {
        self.nodes.iter().filter_map(|n| n.core.as_ref()).all(|c| {
            let state = c.state();
            state.counter_count() == self.expected.len()
                && self
                    .expected
                    .iter()
                    .all(|(name, want)| state.value(name) == *want)
        })
    }

    /// Whether every live node reports the same value for every counter.
    pub fn agree(&self) -> bool {
        let mut views = self
            .nodes
            .iter()
            .filter_map(|n| n.core.as_ref())
            .map(|c| c.state().values().collect::<Vec<_>>());
        let Some(first) = views.next() else {
            return true;
        };
        views.all(|v| v == first)
    }

    /// Runs until [`Sim::converged`], checking every tenth of a gossip interval; returns
    /// how long it took, or panics (naming the seed) after `within`.
    pub fn converge_within(&mut self, within: Duration) -> Duration {
        let tick = self.config.gossip_interval / 10;
        self.run_until(within, tick, "exact convergence", Sim::converged)
    }

    /// As [`Sim::converge_within`], checking every `tick` (to time fast convergence).
    pub fn converge_within_by(&mut self, within: Duration, tick: Duration) -> Duration {
        self.run_until(within, tick, "exact convergence", Sim::converged)
    }

    /// Runs until [`Sim::agree`]; as [`Sim::converge_within`].
    pub fn agree_within(&mut self, within: Duration) -> Duration {
        let tick = self.config.gossip_interval / 10;
        self.run_until(within, tick, "agreement", Sim::agree)
    }

    fn run_until(
        &mut self,
        within: Duration,
        tick: Duration,
        what: &str,
        cond: fn(&Sim) -> bool,
    ) -> Duration {
        let start = self.now;
        loop {
            if cond(self) {
                return self.now - start;
            }
            if self.now - start >= within {
                panic!(
                    "{}",
                    self.fail(&format!(
                        "no {what} within {within:?}: expected {:?}, live nodes report {:?}",
                        self.expected,
                        self.report()
                    ))
                );
            }
            self.run_for(tick);
        }
    }

    /// Each live node's values (trimmed to a few counters for readable failures).
    fn report(&self) -> Vec<(String, Vec<(String, i64)>)> {
        self.nodes
            .iter()
            .filter_map(|n| {
                let c = n.core.as_ref()?;
                let values = c
                    .state()
                    .values()
                    .take(8)
                    .map(|(c, v)| (c.to_owned(), v))
                    .collect();
                Some((n.name.to_string(), values))
            })
            .collect()
    }

    /// Stats summed over every live node.
    pub fn total_stats(&self) -> Stats {
        let mut total = Stats::default();
        for n in &self.nodes {
            if let Some(c) = n.core.as_ref() {
                add_stats(&mut total, c.gossip_stats());
            }
        }
        total
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "simulation failed with seed {}; replay with GCTR_SIM_SEED={}",
                self.seed, self.seed
            );
        }
    }
}

fn add_stats(total: &mut Stats, s: &Stats) {
    total.frames_out.add(&s.frames_out);
    total.bytes_out.add(&s.bytes_out);
    total.frames_in.add(&s.frames_in);
    total.bytes_in.add(&s.bytes_in);
    total.rounds += s.rounds;
    total.rounds_skipped += s.rounds_skipped;
    total.entries_out += s.entries_out;
    total.entries_in += s.entries_in;
    total.forwarded += s.forwarded;
    total.push_batches += s.push_batches;
    total.repairs += s.repairs;
}
