//! The event loop: the one thread that owns the node core and the outbound links.
//!
//! A thin `crossbeam_channel::select!` over inbound frames (TCP), probe datagrams (UDP),
//! client operations, client queries, control messages (links up and down, addresses to
//! join, resolved seeds) and the core's next deadline. Each input goes to the core; the
//! core's effects are then carried out here — gossip frames queued on the links to
//! members' addresses (never blocking), membership probes sent as datagrams, answers
//! sent to the waiting clients, membership changes logged — and the core may then ask
//! for a snapshot. Every operation waiting at the moment (up to [`MAX_BATCH`]) goes to
//! the core together: one group commit, handed to the WAL thread. While it is on the
//! disk the loop takes no operations (they wait in their channel) but goes on with
//! everything else; when the storage's completion arrives the batch is applied and
//! answered, and the operations that waited become the next batch.
//!
//! With a keyring, the `keyring` child module carries the keyring's messages and the
//! operator's commands, and keeps the addresses whose keyed handshake failed.

mod keyring;

use super::listener::{Inbound, InboundCounters};
use super::node_keys::{KeysCommandError, NodeKeys};
use super::oneshot;
use super::probe_lane::{Datagram, ProbeLane, MAX_DATAGRAM};
use super::transport::{LinkConfig, PeerLink};
use super::views::{
    CounterView, CountersView, DashboardView, MemberEntryView, MembersView, OriginTotalsView,
    PeerView, PeersView, SelfView, SummedTotalsView, MAX_DASHBOARD_COUNTERS,
};
use crate::codec::{self, Frame, FrameType, PerFrameType};
use crate::crdt::LocalOp;
use crate::http::Access;
use crate::keyring::cluster::{Command, KeysView};
use crate::member::{Member, NodeName};
use crate::membership::{MemberChange, MemberView, State};
use crate::node_core::{Effect, NodeCore, OpRequest, OpResult, MAX_BATCH};
use crate::status::histogram::Histogram;
use crate::status::process::ProcessStatus;
use crate::status::{
    millis, GossipStatus, LatencyStatus, MemberStatus, NodeStatus, PeerCounts, PeerReplication,
    StateStats, TransportStatus,
};
use crossbeam_channel::{never, select, tick, Receiver, RecvError, Sender};
use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A link to an address that is no live member's is dropped after this long unused.
const LINK_IDLE: Duration = Duration::from_secs(30);
/// How often idle links are looked for.
const LINK_SWEEP: Duration = Duration::from_secs(1);
/// Most time a clean stop waits for the links to send the leave announcement.
const LEAVE_FLUSH: Duration = Duration::from_millis(500);
/// Most outbound links (one writer thread each). Past it, a new link first evicts the
/// least recently used link to an address that is no live member's; if there is none,
/// the frame is dropped and counted as unroutable.
const MAX_LINKS: usize = 2048;
/// Most addresses from one discovery or LAN report that a node tries to join through:
/// joining one member is enough, and a report full of made-up addresses must not make
/// the node open a connection to each.
const MAX_JOINS_PER_REPORT: usize = 8;
/// Time between two "too many links" log lines.
const LINKS_FULL_LOG_INTERVAL: Duration = Duration::from_secs(60);
/// How long an address that failed the keyed handshake gets no new link, unless it is a
/// live member's.
const HANDSHAKE_RETRY: Duration = Duration::from_secs(5);

/// Messages for the event loop from the links, the seed resolver and membership sources.
#[derive(Debug)]
pub enum Control {
    /// The outbound connection to this gossip address is up.
    LinkUp(String),
    /// The outbound connection to this gossip address failed, and why.
    LinkDown(String, String),
    /// The peer at this gossip address did not complete the keyed handshake, and why.
    HandshakeFailed(String, String),
    /// Gossip addresses of nodes to join through (from discovery or LAN discovery), the
    /// source's first choices first; those already live members are skipped.
    Discovered(Vec<String>),
    /// The seeds, freshly resolved to addresses.
    Seeds(Vec<String>),
}

/// Where an operation's answer goes.
#[derive(Debug)]
pub enum OpReply {
    /// A thread waiting for this one answer (an HTTP request).
    Once(oneshot::Sender<OpResult>),
    /// A channel that takes answers in order (a RESP session).
    Channel(ChannelReply),
}

impl OpReply {
    pub fn send(self, result: OpResult) {
        match self {
            OpReply::Once(tx) => tx.send(result),
            OpReply::Channel(reply) => {
                let _ = reply.tx.send(result);
            }
        }
    }
}

/// Called once an answer is on its channel, to wake whoever waits for it without
/// blocking on the channel (the RESP event loop).
#[derive(Clone)]
pub struct Notify(Arc<dyn Fn() + Send + Sync>);

impl Notify {
    pub fn new(f: impl Fn() + Send + Sync + 'static) -> Notify {
        Notify(Arc::new(f))
    }

    pub fn call(&self) {
        (self.0)()
    }
}

impl std::fmt::Debug for Notify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Notify")
    }
}

/// One answer's place on an ordered channel, and whom to wake once it is there: when it
/// is sent, or dropped unsent (the node is stopping), so a waiter is never left asleep.
#[derive(Debug)]
pub struct ChannelReply {
    tx: Sender<OpResult>,
    notify: Option<Notify>,
}

impl ChannelReply {
    pub fn new(tx: Sender<OpResult>, notify: Option<Notify>) -> ChannelReply {
        ChannelReply { tx, notify }
    }
}

impl Drop for ChannelReply {
    fn drop(&mut self) {
        if let Some(notify) = &self.notify {
            notify.call();
        }
    }
}

/// A client's increments or decrements, each answered once applied and durable.
#[derive(Debug)]
pub enum ClientOps {
    /// One operation.
    One { op: LocalOp, reply: OpReply },
    /// Operations committed in the same batch, answered in their order on one channel
    /// (a RESP pipeline); `notify` is called once, with the last answer (sent or
    /// dropped). At most [`MAX_BATCH`] of them.
    Many {
        ops: Vec<LocalOp>,
        reply: Sender<OpResult>,
        notify: Option<Notify>,
    },
}

impl ClientOps {
    /// The operations, each with where to answer it, appended to `batch`.
    fn unpack(self, batch: &mut Vec<OpRequest<OpReply>>) {
        match self {
            ClientOps::One { op, reply } => batch.push(OpRequest { op, reply }),
            ClientOps::Many { ops, reply, notify } => {
                // Answered in order: only the last one wakes the waiter.
                let last = ops.len().saturating_sub(1);
                batch.extend(ops.into_iter().enumerate().map(|(i, op)| OpRequest {
                    op,
                    reply: OpReply::Channel(ChannelReply::new(
                        reply.clone(),
                        notify.clone().filter(|_| i == last),
                    )),
                }))
            }
        }
    }
}

/// A client's read or membership request, answered on its channel.
#[derive(Debug)]
pub enum Query {
    Counters(Sender<CountersView>),
    Counter(String, Sender<CounterView>),
    Peers(Sender<PeersView>),
    Members(Sender<MembersView>),
    Status(Sender<NodeStatus>),
    /// Join the cluster through this gossip address.
    Join(String, Sender<()>),
    /// Mark this member left cluster-wide; answers whether it was a live member.
    Remove(NodeName, Sender<bool>),
    Dashboard(Sender<DashboardView>),
    /// The keyring: a command to carry out (none for a listing), answered with the
    /// listing after it; `None` when the node has no keyring.
    Keys(Option<Command>, Sender<KeysAnswer>),
}

/// What a keyring query gets back.
pub type KeysAnswer = Option<Result<KeysView, KeysCommandError>>;

/// The receiving ends the event loop waits on.
pub struct Inputs {
    pub inbound: Receiver<Inbound>,
    pub datagrams: Receiver<Datagram>,
    pub ops: Receiver<ClientOps>,
    pub queries: Receiver<Query>,
    pub control: Receiver<Control>,
    /// Handed to each link's writer to report connects and failures.
    pub control_tx: Sender<Control>,
    /// A message (or the sender dropped) stops the loop, after a leave announcement.
    pub shutdown: Receiver<()>,
}

struct Link {
    link: PeerLink,
    last_used: Duration,
}

/// Membership frames sent and received, which the engine does not count.
#[derive(Default)]
struct MemberFrames {
    frames_out: u64,
    bytes_out: u64,
    frames_in: u64,
    bytes_in: u64,
}

pub struct EventLoop {
    core: NodeCore<OpReply>,
    me: Member,
    links: HashMap<String, Link>,
    link_config: LinkConfig,
    probes: ProbeLane,
    inputs: Inputs,
    figures: SharedFigures,
    start: Instant,
    /// When a frame from each member last arrived.
    last_heard: HashMap<NodeName, Duration>,
    member_frames: MemberFrames,
    /// Frames to members whose address was unknown, or datagrams to bad addresses.
    unroutable: u64,
    /// When "too many links" was last logged.
    links_full_logged_at: Option<Duration>,
    /// Queue drops of links since removed.
    removed_link_drops: u64,
    /// Datagrams that were not a membership frame.
    malformed_datagrams: u64,
    /// The keyring, with `--keyring`.
    keys: Option<NodeKeys>,
    /// Addresses whose keyed handshake failed, and when.
    refused_addrs: HashMap<String, Duration>,
}

/// Figures other threads record that the event loop reports.
pub struct SharedFigures {
    /// Kept by the listener and its readers.
    pub inbound_counters: Arc<InboundCounters>,
    /// Recorded by the HTTP API: request received to answer sent, per operation.
    pub op_durations: Histogram,
    /// The API tokens and their refusals, counted by the HTTP API and the RESP server.
    pub access: Access,
}

impl EventLoop {
    pub fn new(
        core: NodeCore<OpReply>,
        me: Member,
        link_config: LinkConfig,
        probes: ProbeLane,
        inputs: Inputs,
        figures: SharedFigures,
        start: Instant,
    ) -> EventLoop {
        EventLoop {
            core,
            me,
            links: HashMap::new(),
            link_config,
            probes,
            inputs,
            figures,
            start,
            last_heard: HashMap::new(),
            member_frames: MemberFrames::default(),
            unroutable: 0,
            links_full_logged_at: None,
            removed_link_drops: 0,
            malformed_datagrams: 0,
            keys: None,
            refused_addrs: HashMap::new(),
        }
    }

    /// Gossip under this keyring.
    pub fn with_keys(mut self, keys: Option<NodeKeys>) -> EventLoop {
        self.keys = keys;
        self
    }

    /// Runs until told to stop; then announces the leave, closes the storage and returns.
    pub fn run(mut self) {
        let mut ops = self.inputs.ops.clone();
        let mut queries = self.inputs.queries.clone();
        let mut inbound = self.inputs.inbound.clone();
        let mut datagrams = self.inputs.datagrams.clone();
        let mut completions = self.core.storage_completions().unwrap_or_else(never);
        let control = self.inputs.control.clone();
        let shutdown = self.inputs.shutdown.clone();
        let sweep = tick(LINK_SWEEP);
        // Operations are taken only while no batch is pending: those that come meanwhile
        // wait in their channel and all go into the next batch.
        let held = never();
        loop {
            self.core.handle_timer(self.now());
            self.carry_out_effects();
            let wait = self.core.next_deadline().saturating_sub(self.now());
            let next_ops = if self.core.commit_pending() {
                &held
            } else {
                &ops
            };
            let mut ops_closed = false;
            select! {
                recv(next_ops) -> msg => match msg {
                    Ok(first) => self.commit(Some(first)),
                    Err(_) => ops_closed = true,
                },
                recv(completions) -> msg => {
                    if msg.is_err() {
                        completions = never();
                    }
                    self.commit_finished(msg);
                },
                recv(inbound) -> msg => match msg {
                    Ok(frame) => self.handle_inbound(frame),
                    Err(_) => inbound = never(),
                },
                recv(datagrams) -> msg => match msg {
                    Ok(d) => self.handle_datagram(d),
                    Err(_) => datagrams = never(),
                },
                recv(queries) -> msg => match msg {
                    Ok(q) => self.answer(q),
                    Err(_) => queries = never(),
                },
                recv(control) -> msg => if let Ok(c) = msg {
                    self.handle_control(c);
                },
                recv(sweep) -> _ => {
                    self.drop_idle_links();
                    self.advertise_keys();
                }
                recv(shutdown) -> _ => break,
                default(wait) => {}
            }
            if ops_closed {
                ops = never();
            }
            self.carry_out_effects();
        }
        self.finish_pending(&completions);
        self.leave();
        if let Err(e) = self.core.close() {
            log::error!("closing storage: {e}");
        }
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Hands `first` and every operation waiting behind it (up to [`MAX_BATCH`] of them)
    /// to the core as one batch.
    fn commit(&mut self, first: Option<ClientOps>) {
        let mut batch = Vec::new();
        if let Some(first) = first {
            first.unpack(&mut batch);
        }
        while batch.len() < MAX_BATCH {
            match self.inputs.ops.try_recv() {
                Ok(more) => more.unpack(&mut batch),
                Err(_) => break,
            }
        }
        let now = self.now();
        self.core.commit(now, batch);
    }

    /// The pending batch's outcome from the storage (a closed channel: the storage's
    /// thread is gone, and the batch failed); then the operations that came meanwhile
    /// start the next batch.
    fn commit_finished(&mut self, outcome: Result<io::Result<()>, RecvError>) {
        let outcome =
            outcome.unwrap_or_else(|_| Err(io::Error::other("the storage thread has stopped")));
        self.core.commit_finished(self.now(), outcome);
        if !self.core.commit_pending() {
            self.commit(None);
        }
    }

    /// Waits for the pending batch, so a batch made durable is also answered before the
    /// node stops.
    fn finish_pending(&mut self, completions: &Receiver<io::Result<()>>) {
        while self.core.commit_pending() {
            let outcome = completions.recv();
            let gone = outcome.is_err();
            self.core.commit_finished(
                self.now(),
                outcome.unwrap_or_else(|_| Err(io::Error::other("the storage thread has stopped"))),
            );
            self.carry_out_effects();
            if gone {
                break;
            }
        }
    }

    /// Announces the leave and gives the links a moment to carry it.
    fn leave(&mut self) {
        self.core.leave(self.now());
        self.carry_out_effects();
        let deadline = Instant::now() + LEAVE_FLUSH;
        while Instant::now() < deadline && self.links.values().any(|l| l.link.queued() > 0) {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.links.clear();
        self.probes.stop();
    }

    /// Carries out the core's effects, then lets the storage settle.
    fn carry_out_effects(&mut self) {
        for effect in self.core.take_effects() {
            match effect {
                Effect::Send { to, frame } => match self.core.member_addr(&to) {
                    Some(addr) => {
                        let addr = addr.to_owned();
                        self.send_reliable(addr, frame);
                    }
                    None => self.unroutable += 1,
                },
                Effect::SendMember { to, msg } => {
                    let frame = Frame::Member(msg);
                    self.member_frames.frames_out += 1;
                    self.member_frames.bytes_out += codec::encoded_len(&frame) as u64;
                    if matches!(&frame, Frame::Member(m) if m.is_probe()) {
                        self.send_datagram(&to, &frame);
                    } else {
                        self.send_reliable(to, frame);
                    }
                }
                Effect::Reply { to, result } => to.send(result),
                Effect::MemberChanged(change) => self.member_changed(change),
                Effect::NewIncarnation(origin) => {
                    self.me = match self.core.membership() {
                        Some(m) => m.me().member.clone(),
                        None => Member {
                            incarnation: origin.incarnation,
                            ..self.me.clone()
                        },
                    };
                }
                Effect::NameConflict(other) => log::error!(
                    "another process runs as {} (incarnation {:016x}, gossip {}) and started after \
                     this one: the cluster follows it; stop one of the two",
                    other.name,
                    other.incarnation,
                    other.gossip_addr
                ),
            }
        }
        self.core.settle();
    }

    fn send_reliable(&mut self, addr: String, frame: Frame) {
        let now = self.now();
        if let Some(l) = self.links.get_mut(&addr) {
            l.last_used = now;
            l.link.send(frame);
            return;
        }
        if self.recently_refused(&addr, now) {
            self.unroutable += 1;
            return;
        }
        if self.links.len() >= MAX_LINKS && !self.evict_a_link(now) {
            self.unroutable += 1;
            if self
                .links_full_logged_at
                .is_none_or(|t| now >= t + LINKS_FULL_LOG_INTERVAL)
            {
                self.links_full_logged_at = Some(now);
                log::warn!(
                    "{MAX_LINKS} outbound links, all to live members: not connecting to {addr}"
                );
            }
            return;
        }
        match PeerLink::spawn(
            addr.clone(),
            &self.link_config,
            self.inputs.control_tx.clone(),
        ) {
            Ok(mut link) => {
                link.send(frame);
                self.links.insert(
                    addr,
                    Link {
                        link,
                        last_used: now,
                    },
                );
            }
            Err(e) => log::error!("cannot start a writer for {addr}: {e}"),
        }
    }

    fn send_datagram(&mut self, to: &str, frame: &Frame) {
        let Ok(addr) = to.parse() else {
            self.unroutable += 1;
            return;
        };
        let bytes = codec::encode(frame);
        let bytes = match &mut self.keys {
            Some(keys) => keys.seal_datagram(bytes),
            None => bytes,
        };
        self.probes.send(addr, &bytes);
    }

    /// One log line per membership change; links to members that left the cluster go.
    fn member_changed(&mut self, change: MemberChange) {
        let m = &change.member;
        let label = format!("{} ({}, {})", m.name, m.gossip_addr, m.origin());
        match (change.from, change.to) {
            (None, Some(to)) => log::info!("member {label} joined as {}", to.name()),
            (Some(from), Some(to)) if change.new_run => {
                log::info!("member {label} restarted: {} -> {}", from.name(), to.name())
            }
            (Some(from), Some(to)) => log::info!(
                "member {label} is {} (was {}, by {})",
                to.name(),
                from.name(),
                change.by
            ),
            (_, None) => log::info!("member {label} forgotten after the reap time"),
        }
        let live_now = change.to.is_some_and(State::is_live);
        if !live_now {
            self.last_heard.remove(&m.name);
            if let Some(l) = self.links.remove(&m.gossip_addr) {
                self.removed_link_drops += l.link.dropped;
            }
        }
        self.keys_member_changed(&m.name, live_now, change.from.is_some_and(State::is_live));
    }

    fn handle_inbound(
        &mut self,
        Inbound {
            from,
            from_addr,
            frame,
        }: Inbound,
    ) {
        if from == self.me.name {
            return;
        }
        let now = self.now();
        self.last_heard.insert(from.clone(), now);
        match frame {
            Frame::Hello { .. } => {}
            Frame::Keys(msg) => self.handle_keys(msg),
            Frame::Member(msg) => {
                self.member_frames.frames_in += 1;
                self.member_frames.bytes_in +=
                    (codec::HEADER_LEN + crate::membership::wire::encoded_len(&msg)) as u64;
                self.core.handle_member_message(now, &from_addr, msg);
            }
            frame => self.core.handle_frame(now, &from, frame),
        }
    }

    fn handle_datagram(&mut self, Datagram { from, bytes }: Datagram) {
        let bytes = match &mut self.keys {
            Some(keys) => match keys.open_datagram(from, bytes) {
                Some(plain) => plain,
                None => return,
            },
            None => bytes,
        };
        match codec::decode(&bytes, MAX_DATAGRAM) {
            Ok(Frame::Member(msg)) => {
                let now = self.now();
                self.member_frames.frames_in += 1;
                self.member_frames.bytes_in += bytes.len() as u64;
                self.last_heard.insert(msg.from().clone(), now);
                self.core.handle_member_message(now, &from.to_string(), msg);
            }
            Ok(other) => {
                self.malformed_datagrams += 1;
                log::debug!(
                    "datagram from {from} holds a {:?} frame",
                    other.frame_type()
                );
            }
            Err(e) => {
                self.malformed_datagrams += 1;
                log::debug!("bad datagram from {from}: {e}");
            }
        }
    }

    fn handle_control(&mut self, control: Control) {
        let now = self.now();
        match control {
            Control::LinkUp(addr) => log::debug!("connected to {addr}"),
            Control::LinkDown(addr, why) => log::debug!("link to {addr} down: {why}"),
            Control::HandshakeFailed(addr, why) => self.handshake_failed(addr, why),
            Control::Discovered(addrs) => {
                let mut new: Vec<String> = addrs
                    .into_iter()
                    .filter(|a| *a != self.me.gossip_addr && !self.is_live_member_addr(a))
                    .collect();
                // Half the joins go to the source's first choices (discovery: the members
                // it heard from last), half to random others, so neither stale entries
                // nor a few fresh made-up ones can crowd out the rest for long.
                let mut others = new.split_off(new.len().min(MAX_JOINS_PER_REPORT / 2));
                fastrand::shuffle(&mut others);
                new.extend(others);
                for addr in new.into_iter().take(MAX_JOINS_PER_REPORT) {
                    self.core.join(now, &addr);
                }
            }
            Control::Seeds(seeds) => self.core.set_seeds(seeds),
        }
    }

    fn is_live_member_addr(&self, addr: &str) -> bool {
        self.core
            .members()
            .any(|m| m.state.is_live() && m.member.gossip_addr == addr)
    }

    /// Drops the least recently used link to an address that is no live member's; returns
    /// whether there was one.
    fn evict_a_link(&mut self, now: Duration) -> bool {
        let oldest = self
            .links
            .iter()
            .filter(|(addr, _)| !self.is_live_member_addr(addr))
            .min_by_key(|(_, l)| l.last_used)
            .map(|(addr, _)| addr.clone());
        let Some(addr) = oldest else {
            return false;
        };
        log::debug!("too many links at {now:?}: dropping the one to {addr}");
        if let Some(l) = self.links.remove(&addr) {
            self.removed_link_drops += l.link.dropped;
        }
        true
    }

    /// Drops links to addresses no live member has that have gone unused a while.
    fn drop_idle_links(&mut self) {
        let now = self.now();
        let idle: Vec<String> = self
            .links
            .iter()
            .filter(|(_, l)| now.saturating_sub(l.last_used) >= LINK_IDLE)
            .map(|(addr, _)| addr.clone())
            .filter(|addr| !self.is_live_member_addr(addr))
            .collect();
        for addr in idle {
            if let Some(l) = self.links.remove(&addr) {
                self.removed_link_drops += l.link.dropped;
            }
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
                let _ = reply.send(self.peers_view());
            }
            Query::Members(reply) => {
                let _ = reply.send(self.members_view());
            }
            Query::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Query::Join(addr, reply) => {
                self.core.join(self.now(), &addr);
                let _ = reply.send(());
            }
            Query::Remove(name, reply) => {
                let removed = self.core.remove_member(self.now(), &name);
                if removed {
                    log::info!("member {name} removed by an operator");
                }
                let _ = reply.send(removed);
            }
            Query::Dashboard(reply) => {
                let _ = reply.send(self.dashboard());
            }
            Query::Keys(command, reply) => {
                let _ = reply.send(self.keys_query(command));
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
            retired: SummedTotalsView::from(state.retired_totals(&name)),
            accepted: SummedTotalsView::from(state.accepted_totals(&name)),
            name,
        }
    }

    fn heard_ago(&self, name: &NodeName, now: Duration) -> Option<u64> {
        self.last_heard
            .get(name)
            .map(|t| millis(now.saturating_sub(*t)))
    }

    fn peers_view(&self) -> PeersView {
        let now = self.now();
        let peers = self
            .core
            .members()
            .filter(|m| !m.is_self)
            .map(|m| PeerView {
                name: Some(m.member.name.to_string()),
                gossip_addr: m.member.gossip_addr.clone(),
                http_addr: Some(m.member.http_addr.clone()),
                reachable: m.state == State::Alive,
                state: m.state.name().to_owned(),
                last_heard_ms_ago: self.heard_ago(&m.member.name, now),
            })
            .collect();
        PeersView {
            me: SelfView::from(&self.me),
            peers,
        }
    }

    fn members_view(&self) -> MembersView {
        let now = self.now();
        let entry = |m: MemberView| MemberEntryView {
            name: m.member.name.to_string(),
            gossip_addr: m.member.gossip_addr.clone(),
            http_addr: m.member.http_addr.clone(),
            state: m.state.name().to_owned(),
            origin: m.member.origin().to_string(),
            since_ms: millis(now.saturating_sub(m.since)),
            liveness: m.liveness,
            started_at: m.member.started_at,
            last_heard_ms_ago: self.heard_ago(&m.member.name, now),
        };
        MembersView {
            me: self.me.name.to_string(),
            members: self.core.members().map(entry).collect(),
        }
    }

    fn gossip_status(&self, now: Duration) -> GossipStatus {
        let mut status = GossipStatus::new(self.core.gossip_stats(), now);
        let f = &self.member_frames;
        let add = |figures: &mut PerFrameType, n: u64| figures[FrameType::Member] += n;
        add(&mut status.stats.frames_out, f.frames_out);
        add(&mut status.stats.bytes_out, f.bytes_out);
        add(&mut status.stats.frames_in, f.frames_in);
        add(&mut status.stats.bytes_in, f.bytes_in);
        status
    }

    /// The status, plus the first counters by name with their per-origin totals.
    fn dashboard(&self) -> DashboardView {
        let state = self.core.state();
        let shown: Vec<String> = state
            .first_values(MAX_DASHBOARD_COUNTERS)
            .into_iter()
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
        let queue_drops =
            self.removed_link_drops + self.links.values().map(|l| l.link.dropped).sum::<u64>();
        let members: Vec<MemberStatus> = self
            .core
            .members()
            .map(|m| MemberStatus::new(&m, self.heard_ago(&m.member.name, now)))
            .collect();
        let others = || members.iter().filter(|m| !m.is_self);
        let mut inbound = self.figures.inbound_counters.stats();
        inbound.malformed_frames += self.malformed_datagrams;
        NodeStatus {
            name: self.me.name.to_string(),
            origin: self.me.origin().to_string(),
            gossip_addr: self.me.gossip_addr.clone(),
            http_addr: self.me.http_addr.clone(),
            uptime_ms: millis(now),
            peers: PeerCounts {
                known: others().count(),
                reachable: others().filter(|m| m.state == State::Alive.name()).count(),
            },
            state: StateStats {
                counters: state.counter_count(),
                entries: state.entry_count(),
                origins: state.origin_count(),
                origins_live: state.live_origin_count(),
                origins_retired: state.retire_stats().retired,
                tombstone_entries: state.retire_stats().tombstone_entries,
                origins_compacted: state.retire_stats().compacted,
                compacted_changes_refused: state.retire_stats().refused,
                retirements: state.retire_stats().done,
                retirements_undone: state.retire_stats().undone,
            },
            gossip: self.gossip_status(now),
            transport: TransportStatus {
                queue_drops,
                unroutable_frames: self.unroutable,
                links: self.links.len(),
                inbound,
            },
            requests: self.core.request_stats(),
            keys: self.core.key_stats(),
            writes: self.core.guard_status(),
            storage: self.core.storage_status(),
            members,
            gossip_peers: self.core.peers().iter().map(|p| p.to_string()).collect(),
            replication: self
                .core
                .replication(now)
                .iter()
                .map(PeerReplication::from)
                .collect(),
            latency: LatencyStatus {
                op_duration_seconds: self.figures.op_durations.snapshot(),
                group_commit_ops: self.core.group_commit_sizes(),
            },
            access: self.figures.access.status(),
            process: ProcessStatus::read(),
            keyring: self.keys.as_ref().map(NodeKeys::status),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crdt::OpKind;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn inc(counter: &str) -> LocalOp {
        LocalOp {
            counter: counter.into(),
            kind: OpKind::Increment,
            amount: 1,
            key: None,
        }
    }

    /// A pipeline's answers wake its waiter once, with the last of them, whether they
    /// are sent or dropped unsent.
    #[test]
    fn a_pipeline_wakes_its_waiter_once_with_its_last_answer() {
        for send in [true, false] {
            let wakes = Arc::new(AtomicUsize::new(0));
            let notify = {
                let wakes = wakes.clone();
                Notify::new(move || {
                    wakes.fetch_add(1, Ordering::SeqCst);
                })
            };
            let (reply, answers) = crossbeam_channel::unbounded();
            let mut batch = Vec::new();
            let ops = vec![inc("a"), inc("b"), inc("c")];
            ClientOps::Many {
                ops,
                reply,
                notify: Some(notify),
            }
            .unpack(&mut batch);
            let mut woken_at = Vec::new();
            for (i, request) in batch.into_iter().enumerate() {
                if send {
                    request.reply.send(Ok(i as i64));
                } else {
                    drop(request);
                }
                woken_at.push(wakes.load(Ordering::SeqCst));
            }
            assert_eq!(woken_at, [0, 0, 1], "sent: {send}");
            assert_eq!(answers.try_iter().count(), if send { 3 } else { 0 });
        }
    }
}
