//! The event loop: the one thread that owns the node core, the peer table and the peers'
//! outbound links.
//!
//! A thin `crossbeam_channel::select!` over inbound frames, client operations, client
//! queries, control messages (links up and down, membership) and the core's next
//! deadline. Each input goes to the core; the core's effects are then carried out here —
//! frames queued on the peers' links (never blocking), answers sent to the waiting
//! clients — and the core may then sync or snapshot. Every operation waiting at the
//! moment (up to [`MAX_BATCH`]) goes to the core together: one group commit.

use super::listener::{Inbound, InboundCounters};
use super::peers::{Change, PeerInfo, PeerTable};
use super::transport::{LinkConfig, LinkTarget, PeerLink};
use super::views::{
    CounterView, CountersView, DashboardView, OriginTotalsView, PeersView, SelfView,
    MAX_DASHBOARD_COUNTERS,
};
use crate::codec::Frame;
use crate::member::{Member, NodeName};
use crate::node_core::{Effect, NodeCore, OpRequest, OpResult, MAX_BATCH};
use crate::status::histogram::Histogram;
use crate::status::process::ProcessStatus;
use crate::status::{
    members_from_peers, millis, GossipStatus, LatencyStatus, NodeStatus, PeerReplication,
    StateStats, TransportStatus,
};
use crossbeam_channel::{never, select, Receiver, Sender};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Messages for the event loop from the links or a membership source.
#[derive(Debug)]
pub enum Control {
    /// The outbound connection to this target is up.
    LinkUp(LinkTarget),
    /// The outbound connection to this target failed, and why.
    LinkDown(LinkTarget, String),
    /// The full member list from a membership source (discovery).
    Membership(Vec<PeerInfo>),
}

/// Where an operation's answer goes.
pub type OpReply = Sender<OpResult>;

/// A client's read, answered with the matching view.
#[derive(Debug)]
pub enum Query {
    Counters(Sender<CountersView>),
    Counter(String, Sender<CounterView>),
    Peers(Sender<PeersView>),
    Status(Sender<NodeStatus>),
    Dashboard(Sender<DashboardView>),
}

/// The receiving ends the event loop waits on.
pub struct Inputs {
    pub inbound: Receiver<Inbound>,
    pub ops: Receiver<OpRequest<OpReply>>,
    pub queries: Receiver<Query>,
    pub control: Receiver<Control>,
    /// Handed to each peer's writer to report connects and failures.
    pub control_tx: Sender<Control>,
    /// A message (or the sender dropped) stops the loop.
    pub shutdown: Receiver<()>,
}

pub struct EventLoop {
    core: NodeCore<OpReply>,
    me: SelfView,
    own_name: NodeName,
    peers: PeerTable,
    links: HashMap<LinkTarget, PeerLink>,
    link_config: LinkConfig,
    inputs: Inputs,
    inbound_counters: Arc<InboundCounters>,
    /// Recorded by the HTTP API: request received to answer sent, per operation.
    op_durations: Histogram,
    start: Instant,
    /// Frames to peers that had no link.
    unroutable: u64,
    /// Queue drops of links since removed.
    removed_link_drops: u64,
}

impl EventLoop {
    pub fn new(
        core: NodeCore<OpReply>,
        me: &Member,
        link_config: LinkConfig,
        inputs: Inputs,
        inbound_counters: Arc<InboundCounters>,
        op_durations: Histogram,
        start: Instant,
    ) -> EventLoop {
        EventLoop {
            peers: PeerTable::new(me.name.clone()),
            own_name: me.name.clone(),
            me: SelfView::from(me),
            core,
            links: HashMap::new(),
            link_config,
            inputs,
            inbound_counters,
            op_durations,
            start,
            unroutable: 0,
            removed_link_drops: 0,
        }
    }

    /// Adds the seeds (gossip addresses) and starts contacting them.
    pub fn add_seeds(&mut self, seeds: &[String]) {
        for seed in seeds {
            if self.peers.add_seed(seed) {
                self.open_link(LinkTarget::Seed(seed.clone()), seed.clone());
            }
        }
    }

    /// Runs until told to stop, then closes the storage.
    pub fn run(mut self) {
        let mut ops = self.inputs.ops.clone();
        let mut queries = self.inputs.queries.clone();
        let mut inbound = self.inputs.inbound.clone();
        let control = self.inputs.control.clone();
        let shutdown = self.inputs.shutdown.clone();
        loop {
            self.core.handle_timer(self.now());
            self.carry_out_effects();
            let wait = self.core.next_deadline().saturating_sub(self.now());
            select! {
                recv(ops) -> msg => match msg {
                    Ok(first) => self.commit(first),
                    Err(_) => ops = never(),
                },
                recv(inbound) -> msg => match msg {
                    Ok(frame) => self.handle_inbound(frame),
                    Err(_) => inbound = never(),
                },
                recv(queries) -> msg => match msg {
                    Ok(q) => self.answer(q),
                    Err(_) => queries = never(),
                },
                recv(control) -> msg => if let Ok(c) = msg {
                    self.handle_control(c);
                },
                recv(shutdown) -> _ => break,
                default(wait) => {}
            }
            self.carry_out_effects();
        }
        self.links.clear();
        if let Err(e) = self.core.close() {
            log::error!("closing storage: {e}");
        }
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Hands `first` and every operation waiting behind it to the core as one batch.
    fn commit(&mut self, first: OpRequest<OpReply>) {
        let waiting = self.inputs.ops.try_iter().take(MAX_BATCH - 1);
        let batch: Vec<OpRequest<OpReply>> = std::iter::once(first).chain(waiting).collect();
        let now = self.now();
        self.core.commit(now, batch);
    }

    /// Queues frames on links and sends answers, then lets the storage settle.
    fn carry_out_effects(&mut self) {
        for effect in self.core.take_effects() {
            match effect {
                Effect::Send { to, frame } => match self.links.get_mut(&LinkTarget::Member(to)) {
                    Some(link) => link.send(frame),
                    None => self.unroutable += 1,
                },
                Effect::Reply { to, result } => {
                    let _ = to.send(result);
                }
            }
        }
        self.core.settle();
    }

    fn handle_inbound(&mut self, Inbound { from, frame }: Inbound) {
        if from == self.own_name {
            return;
        }
        let now = self.now();
        if let Frame::Hello {
            name,
            gossip_addr,
            http_addr,
        } = frame
        {
            self.greeted(
                PeerInfo {
                    name,
                    gossip_addr,
                    http_addr,
                },
                now,
            );
            return;
        }
        self.peers.heard(&from, now);
        self.core.handle_frame(now, &from, frame);
    }

    fn greeted(&mut self, info: PeerInfo, now: Duration) {
        let was_seed = self.peers.is_unanswered_seed(&info.gossip_addr);
        let change = self.peers.greeted(&info, now);
        self.follow(&info.name, change, "joined");
        if was_seed {
            self.drop_link(&LinkTarget::Seed(info.gossip_addr));
        }
    }

    /// Opens or replaces the link to `name` after a change to its entry.
    fn follow(&mut self, name: &NodeName, change: Change, why: &str) {
        match change {
            Change::None => {}
            Change::Added(addr) => {
                log::info!("peer {} {why}", self.peers.label(name));
                self.open_link(LinkTarget::Member(name.clone()), addr);
            }
            Change::Moved(addr) => {
                log::info!("peer {name} moved to {addr}");
                self.core.remove_peer(name);
                self.drop_link(&LinkTarget::Member(name.clone()));
                self.open_link(LinkTarget::Member(name.clone()), addr);
            }
        }
    }

    fn handle_control(&mut self, control: Control) {
        match control {
            Control::LinkUp(LinkTarget::Member(name)) => {
                if !self.peers.contains(&name) {
                    return;
                }
                if self.peers.set_reachable(&name, true) {
                    log::info!("peer {} is reachable", self.peers.label(&name));
                }
                self.core.add_peer(name);
            }
            Control::LinkDown(LinkTarget::Member(name), why) => {
                if self.peers.set_reachable(&name, false) {
                    log::warn!("peer {} is unreachable: {why}", self.peers.label(&name));
                }
                self.core.remove_peer(&name);
            }
            Control::LinkUp(LinkTarget::Seed(addr)) => {
                self.peers.set_seed_reachable(&addr, true);
            }
            Control::LinkDown(LinkTarget::Seed(addr), why) => {
                if self.peers.set_seed_reachable(&addr, false) {
                    log::warn!("seed {addr} is unreachable: {why}");
                }
            }
            Control::Membership(members) => {
                let (changes, removed) = self.peers.set_membership(&members);
                for (name, change) in changes {
                    self.follow(&name, change, "added by membership");
                }
                for name in removed {
                    log::info!("peer {name} left the membership");
                    self.drop_link(&LinkTarget::Member(name.clone()));
                    self.core.remove_peer(&name);
                }
            }
        }
    }

    fn open_link(&mut self, target: LinkTarget, addr: String) {
        match PeerLink::spawn(
            target.clone(),
            addr,
            &self.link_config,
            self.inputs.control_tx.clone(),
        ) {
            Ok(link) => {
                self.links.insert(target, link);
            }
            Err(e) => log::error!("cannot start a writer for {target}: {e}"),
        }
    }

    /// Drops a link (its writer stops), keeping its drop count for the status.
    fn drop_link(&mut self, target: &LinkTarget) {
        if let Some(link) = self.links.remove(target) {
            self.removed_link_drops += link.dropped;
        }
    }

    fn answer(&mut self, query: Query) {
        match query {
            Query::Counters(reply) => {
                let counters = self
                    .core
                    .state()
                    .values()
                    .map(|(name, value)| (name.to_owned(), value))
                    .collect();
                let _ = reply.send(CountersView { counters });
            }
            Query::Counter(name, reply) => {
                let _ = reply.send(self.counter_view(name));
            }
            Query::Peers(reply) => {
                let _ = reply.send(PeersView {
                    me: self.me.clone(),
                    peers: self.peers.views(self.now()),
                });
            }
            Query::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Query::Dashboard(reply) => {
                let _ = reply.send(self.dashboard());
            }
        }
    }

    fn counter_view(&self, name: String) -> CounterView {
        let state = self.core.state();
        CounterView {
            value: state.value(&name),
            origins: state
                .counter_totals(&name)
                .into_iter()
                .map(|(origin, t)| OriginTotalsView {
                    origin: origin.to_string(),
                    p: t.p,
                    n: t.n,
                })
                .collect(),
            name,
        }
    }

    /// The status, plus the first counters by name with their per-origin totals.
    fn dashboard(&self) -> DashboardView {
        let state = self.core.state();
        let shown: Vec<String> = state
            .values()
            .take(MAX_DASHBOARD_COUNTERS)
            .map(|(name, _)| name.to_owned())
            .collect();
        DashboardView {
            node: self.status(),
            counters: shown.into_iter().map(|n| self.counter_view(n)).collect(),
            counters_total: state.counter_count(),
        }
    }

    fn status(&self) -> NodeStatus {
        let now = self.now();
        let state = self.core.state();
        let peer_views = self.peers.views(now);
        let queue_drops =
            self.removed_link_drops + self.links.values().map(|l| l.dropped).sum::<u64>();
        NodeStatus {
            name: self.me.name.clone(),
            origin: self.me.origin.clone(),
            gossip_addr: self.me.gossip_addr.clone(),
            http_addr: self.me.http_addr.clone(),
            uptime_ms: millis(now),
            peers: self.peers.counts(),
            state: StateStats {
                counters: state.counter_count(),
                entries: state.entry_count(),
                origins: state.origin_count(),
            },
            gossip: GossipStatus::new(self.core.gossip_stats(), now),
            transport: TransportStatus {
                queue_drops,
                unroutable_frames: self.unroutable,
                inbound: self.inbound_counters.stats(),
            },
            requests: self.core.request_stats(),
            storage: self.core.storage_status(),
            members: members_from_peers(&self.me, &peer_views),
            gossip_peers: self.core.peers().iter().map(|p| p.to_string()).collect(),
            replication: self
                .core
                .replication(now)
                .iter()
                .map(PeerReplication::from)
                .collect(),
            latency: LatencyStatus {
                op_duration_seconds: self.op_durations.snapshot(),
                group_commit_ops: self.core.group_commit_sizes(),
            },
            process: ProcessStatus::read(),
        }
    }
}
