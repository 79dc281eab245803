//! A deterministic simulator for the membership module (no counters, no engine).
//!
//! N `Membership`s exchange messages as bytes: every message goes through
//! `wire::encode` and `wire::decode`, and every probe-lane message must fit
//! `MAX_PROBE_BYTES`, or the run fails. Time is virtual; every random choice (link loss,
//! delay and so reordering, each node's RNG, which seed a node joins through) comes from
//! one seed, printed when a run fails and replayed with `GCTR_SIM_SEED=<seed>`.
//!
//! The network: the probe lane loses each message with the link's loss probability (a
//! per-pair override wins); the reliable lane (TCP) never loses; both take a uniform
//! delay, and neither crosses a partition or reaches a crashed node. Faults per node:
//! crash (gone; restart with the same or new data), pause (everything it would handle
//! waits until it resumes), and slow (every message it receives waits `lag` in its
//! receive queue before it is handled, so its replies leave late and acks reach it after
//! its own timers have fired — the overloaded node Lifeguard is for).
//!
//! The simulator records every `Changed` event with its time and observer (when
//! `record` is on), and counts bytes per node and per message kind.

use gctr::membership::{
    wire, Config, Member, MemberChange, Membership, Message, Output, State, MAX_PROBE_BYTES,
};
use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::time::Duration;

/// Wall-clock milliseconds of the simulated epoch, for `started_at` stamps.
const EPOCH_MS: u64 = 1_700_000_000_000;

/// The seed to use: `GCTR_SIM_SEED` when set (to replay a failure), else `default`.
pub fn seed_or(default: u64) -> u64 {
    match std::env::var("GCTR_SIM_SEED") {
        Ok(s) => s.trim().parse().expect("GCTR_SIM_SEED must be a u64"),
        Err(_) => default,
    }
}

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// How links treat messages.
#[derive(Clone, Copy, Debug)]
pub struct Link {
    /// Probe-lane loss probability.
    pub loss: f64,
    pub min_delay: Duration,
    pub max_delay: Duration,
}

impl Link {
    /// A LAN: no loss, 0.2–2 ms.
    pub fn lan() -> Link {
        Link {
            loss: 0.0,
            min_delay: Duration::from_micros(200),
            max_delay: ms(2),
        }
    }

    pub fn lossy(loss: f64) -> Link {
        Link {
            loss,
            ..Link::lan()
        }
    }
}

/// One observed change: at `at`, node `observer` saw `change`.
#[derive(Clone, Debug)]
pub struct Observed {
    pub at: Duration,
    pub observer: usize,
    pub change: MemberChange,
}

/// Bytes and messages sent, per node.
#[derive(Clone, Debug, Default)]
pub struct Traffic {
    pub bytes: u64,
    pub messages: u64,
}

/// One step of a scenario.
#[derive(Clone, Debug)]
pub enum Step {
    /// Adds `count` nodes at once, each joining through one random node added before it
    /// (the first through nobody).
    AddNodes(usize),
    Run(Duration),
    Crash(usize),
    /// Restarts a crashed node under its name and address with the same data
    /// (`new_data` false) or new data (a new data incarnation), joining through `via`.
    Restart {
        node: usize,
        new_data: bool,
        via: usize,
    },
    /// Cuts the network into groups; nodes in different groups cannot reach each other.
    Partition(Vec<Vec<usize>>),
    Heal,
    SetLink(Link),
    /// Probe-lane loss between two nodes, both ways.
    LinkLoss {
        a: usize,
        b: usize,
        loss: f64,
    },
    /// Every message the node receives waits `lag` before it is handled.
    Slow {
        node: usize,
        lag: Duration,
    },
    /// The node handles nothing for `pause`, then everything that waited.
    Pause {
        node: usize,
        pause: Duration,
    },
    Leave(usize),
    Remove {
        by: usize,
        name: usize,
    },
    Join {
        node: usize,
        via: usize,
    },
}

#[derive(PartialEq, Eq)]
enum Kind {
    Timer(usize),
    Deliver {
        from: usize,
        to: usize,
        bytes: Vec<u8>,
    },
}

#[derive(PartialEq, Eq)]
struct Event {
    at: Duration,
    seq: u64,
    kind: Kind,
}

impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Event) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Event {
    fn cmp(&self, other: &Event) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

pub struct Node {
    pub name: String,
    pub addr: String,
    pub membership: Option<Membership>,
    pub incarnation: u64,
    group: usize,
    slow: Duration,
    paused_until: Duration,
    /// The timer event in the queue that counts (others are stale).
    timer_at: Option<Duration>,
    pub traffic: Traffic,
}

pub struct Sim {
    pub seed: u64,
    rng: fastrand::Rng,
    pub now: Duration,
    pub config: Config,
    link: Link,
    link_loss: HashMap<(usize, usize), f64>,
    pub nodes: Vec<Node>,
    by_addr: HashMap<String, usize>,
    queue: BinaryHeap<Reverse<Event>>,
    seq: u64,
    /// Record every `Changed` in `log`.
    pub record: bool,
    pub log: Vec<Observed>,
    /// For each node, how many other members it holds live (alive or suspect).
    live_view: Vec<usize>,
    pub by_kind: BTreeMap<&'static str, Traffic>,
    pub largest_probe: usize,
    pub lost: u64,
    pub conflicts: u64,
}

impl Sim {
    pub fn new(seed: u64, config: Config, link: Link) -> Sim {
        config.validate().expect("a valid config");
        Sim {
            seed,
            rng: fastrand::Rng::with_seed(seed),
            now: Duration::ZERO,
            config,
            link,
            link_loss: HashMap::new(),
            nodes: Vec::new(),
            by_addr: HashMap::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            record: true,
            log: Vec::new(),
            live_view: Vec::new(),
            by_kind: BTreeMap::new(),
            largest_probe: 0,
            lost: 0,
            conflicts: 0,
        }
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
                    let via: Vec<usize> = (!self.nodes.is_empty())
                        .then(|| self.rng.usize(..self.nodes.len()))
                        .into_iter()
                        .collect();
                    self.add_node(&via);
                }
            }
            Step::Run(d) => self.run_for(*d),
            Step::Crash(i) => self.crash(*i),
            Step::Restart {
                node,
                new_data,
                via,
            } => self.restart(*node, *new_data, *via),
            Step::Partition(groups) => {
                for (g, members) in groups.iter().enumerate() {
                    for &m in members {
                        self.nodes[m].group = g;
                    }
                }
            }
            Step::Heal => self.nodes.iter_mut().for_each(|n| n.group = 0),
            Step::SetLink(link) => self.link = *link,
            Step::LinkLoss { a, b, loss } => {
                self.link_loss.insert((*a, *b), *loss);
                self.link_loss.insert((*b, *a), *loss);
            }
            Step::Slow { node, lag } => self.nodes[*node].slow = *lag,
            Step::Pause { node, pause } => self.nodes[*node].paused_until = self.now + *pause,
            Step::Leave(i) => {
                let now = self.now;
                self.membership(*i).leave(now);
                self.after(*i);
            }
            Step::Remove { by, name } => {
                let now = self.now;
                let name = self.nodes[*name].name.clone();
                assert!(self.membership(*by).remove(now, &name), "nothing removed");
                self.after(*by);
            }
            Step::Join { node, via } => {
                let now = self.now;
                let addr = self.nodes[*via].addr.clone();
                self.membership(*node).join(now, &addr);
                self.after(*node);
            }
        }
    }

    pub fn name(i: usize) -> String {
        format!("n{i}")
    }

    fn addr(i: usize) -> String {
        format!("10.{}.{}.{}:7946", i >> 16, (i >> 8) & 0xff, i & 0xff)
    }

    /// Adds a node configured with the addresses of nodes `seeds` (which need not be
    /// running yet) as its seeds; returns its index.
    pub fn add_node(&mut self, seeds: &[usize]) -> usize {
        let i = self.nodes.len();
        let addr = Sim::addr(i);
        self.by_addr.insert(addr.clone(), i);
        self.nodes.push(Node {
            name: Sim::name(i),
            addr,
            membership: None,
            incarnation: self.rng.u64(..),
            group: 0,
            slow: Duration::ZERO,
            paused_until: Duration::ZERO,
            timer_at: None,
            traffic: Traffic::default(),
        });
        self.live_view.push(0);
        self.start(i, seeds);
        i
    }

    fn start(&mut self, i: usize, seeds: &[usize]) {
        let node = &self.nodes[i];
        let me = Member {
            name: gctr::member::NodeName::new(&node.name).expect("a valid name"),
            incarnation: node.incarnation,
            started_at: EPOCH_MS + self.now.as_millis() as u64,
            gossip_addr: node.addr.clone(),
            http_addr: node.addr.replace(":7946", ":8080"),
        };
        let seeds = seeds.iter().map(|&s| Sim::addr(s)).collect();
        let m = Membership::new(me, self.config.clone(), seeds, self.rng.u64(..), self.now);
        self.nodes[i].membership = Some(m);
        self.live_view[i] = 0;
        self.after(i);
    }

    pub fn crash(&mut self, i: usize) {
        self.nodes[i].membership = None;
        self.nodes[i].timer_at = None;
    }

    /// Restarts node `i` (crashing it first if it runs), joining through `via`.
    pub fn restart(&mut self, i: usize, new_data: bool, via: usize) {
        self.crash(i);
        if new_data {
            self.nodes[i].incarnation = self.rng.u64(..);
        }
        self.start(i, &[via]);
    }

    pub fn membership(&mut self, i: usize) -> &mut Membership {
        let fail = self.fail(&format!("node {i} is down"));
        self.nodes[i].membership.as_mut().expect(&fail)
    }

    pub fn view(&self, i: usize) -> Option<&Membership> {
        self.nodes[i].membership.as_ref()
    }

    pub fn running(&self) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.nodes[i].membership.is_some())
            .collect()
    }

    /// Runs every timer and delivery due up to `now + d`.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.queue.peek().is_some_and(|Reverse(e)| e.at <= end) {
            let Reverse(event) = self.queue.pop().expect("peeked");
            self.now = self.now.max(event.at);
            match event.kind {
                Kind::Timer(i) => self.fire_timer(i, event.at),
                Kind::Deliver { from, to, bytes } => self.deliver(from, to, bytes),
            }
        }
        self.now = end;
    }

    fn push(&mut self, at: Duration, kind: Kind) {
        self.seq += 1;
        self.queue.push(Reverse(Event {
            at,
            seq: self.seq,
            kind,
        }));
    }

    fn fire_timer(&mut self, i: usize, at: Duration) {
        if self.nodes[i].timer_at != Some(at) {
            return;
        }
        self.nodes[i].timer_at = None;
        if self.now < self.nodes[i].paused_until {
            let resume = self.nodes[i].paused_until;
            self.nodes[i].timer_at = Some(resume);
            self.push(resume, Kind::Timer(i));
            return;
        }
        let now = self.now;
        let Some(m) = self.nodes[i].membership.as_mut() else {
            return;
        };
        m.handle_timer(now);
        self.after(i);
    }

    fn deliver(&mut self, from: usize, to: usize, bytes: Vec<u8>) {
        if self.nodes[to].membership.is_none() || self.nodes[from].group != self.nodes[to].group {
            self.lost += 1;
            return;
        }
        if self.now < self.nodes[to].paused_until {
            let resume = self.nodes[to].paused_until;
            self.push(resume, Kind::Deliver { from, to, bytes });
            return;
        }
        let msg = match wire::decode(&bytes) {
            Ok(msg) => msg,
            Err(e) => panic!("{}", self.fail(&format!("a message does not decode: {e}"))),
        };
        let now = self.now;
        let from_addr = self.nodes[from].addr.clone();
        self.membership(to).handle_message(now, &from_addr, msg);
        self.after(to);
    }

    /// Carries out node `i`'s outputs and schedules its next timer.
    fn after(&mut self, i: usize) {
        let Some(m) = self.nodes[i].membership.as_mut() else {
            return;
        };
        let outputs = m.drain_outputs();
        let deadline = m.next_deadline().max(self.now);
        for output in outputs {
            match output {
                Output::Send { to, msg } => self.send(i, &to, &msg),
                Output::Changed(change) => self.observe(i, change),
                Output::NameConflict { .. } | Output::OlderRun { .. } => self.conflicts += 1,
            }
        }
        if self.nodes[i].timer_at != Some(deadline) && self.nodes[i].membership.is_some() {
            self.nodes[i].timer_at = Some(deadline);
            self.push(deadline, Kind::Timer(i));
        }
    }

    fn observe(&mut self, i: usize, change: MemberChange) {
        if change.member.name != *self.nodes[i].name {
            let was = change.from.is_some_and(State::is_live);
            let is = change.to.is_some_and(State::is_live);
            match (was, is) {
                (false, true) => self.live_view[i] += 1,
                (true, false) => self.live_view[i] -= 1,
                _ => {}
            }
        }
        if self.record {
            self.log.push(Observed {
                at: self.now,
                observer: i,
                change,
            });
        }
    }

    fn send(&mut self, from: usize, to: &str, msg: &Message) {
        let mut bytes = Vec::new();
        wire::encode(msg, &mut bytes);
        assert_eq!(bytes.len(), wire::encoded_len(msg), "encoded_len is exact");
        if msg.is_probe() {
            assert!(
                bytes.len() <= MAX_PROBE_BYTES,
                "{}",
                self.fail(&format!("a {} of {} bytes", msg.kind(), bytes.len()))
            );
            self.largest_probe = self.largest_probe.max(bytes.len());
        }
        let traffic = &mut self.nodes[from].traffic;
        traffic.bytes += bytes.len() as u64;
        traffic.messages += 1;
        let kind = self.by_kind.entry(msg.kind()).or_default();
        kind.bytes += bytes.len() as u64;
        kind.messages += 1;
        let Some(&to) = self.by_addr.get(to) else {
            self.lost += 1;
            return;
        };
        let loss = self
            .link_loss
            .get(&(from, to))
            .copied()
            .unwrap_or(self.link.loss);
        if self.nodes[from].group != self.nodes[to].group
            || (msg.is_probe() && self.rng.f64() < loss)
        {
            self.lost += 1;
            return;
        }
        let span = self.link.max_delay.saturating_sub(self.link.min_delay);
        let delay = self.link.min_delay + span.mul_f64(self.rng.f64()) + self.nodes[to].slow;
        self.push(self.now + delay, Kind::Deliver { from, to, bytes });
    }

    /// Delivers `msg` to node `to` as if node `from` had just sent it (stale gossip, a
    /// replayed datagram).
    pub fn inject(&mut self, from: usize, to: usize, msg: &Message) {
        let mut bytes = Vec::new();
        wire::encode(msg, &mut bytes);
        self.push(self.now, Kind::Deliver { from, to, bytes });
    }

    /// How many other members node `i` holds live.
    pub fn live_view(&self, i: usize) -> usize {
        self.live_view[i]
    }

    /// Whether every running node holds every other running node alive, and nothing else
    /// live.
    pub fn all_see_all_alive(&self) -> bool {
        let running = self.running();
        running.iter().all(|&i| {
            let m = self.view(i).expect("running");
            m.live_count() == running.len()
                && running.iter().all(|&j| {
                    m.get(&self.nodes[j].name).is_some_and(|u| {
                        u.state == State::Alive && u.member.incarnation == self.nodes[j].incarnation
                    })
                })
        })
    }

    /// Whether every running node holds every other running node live (a cheap count).
    pub fn all_know_all(&self) -> bool {
        let running = self.running();
        running
            .iter()
            .all(|&i| self.live_view[i] == running.len() - 1)
    }

    /// Runs in steps of `tick` until `cond` holds; returns how long it took, or panics
    /// (naming the seed) after `within`.
    pub fn run_until(
        &mut self,
        within: Duration,
        tick: Duration,
        what: &str,
        cond: impl Fn(&Sim) -> bool,
    ) -> Duration {
        let start = self.now;
        loop {
            if cond(self) {
                return self.now - start;
            }
            if self.now - start >= within {
                panic!("{}", self.fail(&format!("no {what} within {within:?}")));
            }
            self.run_for(tick);
        }
    }

    /// Changes seen since `from`, about `name`.
    pub fn changes_about<'a>(
        &'a self,
        name: &'a str,
        from: Duration,
    ) -> impl Iterator<Item = &'a Observed> + 'a {
        self.log
            .iter()
            .filter(move |o| o.at >= from && o.change.member.name == name)
    }

    /// Bytes sent by every node together.
    pub fn total_bytes(&self) -> u64 {
        self.nodes.iter().map(|n| n.traffic.bytes).sum()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "membership simulation failed with seed {}; replay with GCTR_SIM_SEED={}",
                self.seed, self.seed
            );
        }
    }
}

/// The value below which a fraction `q` of the sorted `v` lies (nearest rank).
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    assert!(!sorted.is_empty());
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}
