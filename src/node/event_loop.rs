//! The event loop: the one thread that owns the engine, the peer table, the peers'
//! outbound links and the storage.
//!
//! It waits (`crossbeam_channel::select!`) on inbound frames, client operations, client
//! queries, control messages (peer up/down, membership, shutdown) and the engine's next
//! deadline; after every input it drains the engine's outputs, queueing frames on the
//! peers' links (never blocking) and logging learned state to the storage.
//!
//! Client operations are group-committed: every operation waiting at that moment (up to
//! [`MAX_BATCH`]) becomes one prepared batch, one durable write, one apply. An operation
//! is answered only after its batch is durable and applied.

use super::config::MAX_BATCH;
use super::listener::{Inbound, InboundStats};
use super::peers::{PeerInfo, PeerTable};
use super::storage::Storage;
use super::transport::{LinkSettings, PeerLink};
use super::views::{CounterView, CountersView, OriginTotalsView, PeersView, SelfView};
use crate::codec::{Frame, FrameType};
use crate::crdt::{LocalOp, OpError};
use crate::engine::{Engine, Output, Stats};
use crossbeam_channel::{never, select, Receiver, Sender};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Messages for the event loop from the transport, a membership source, or the node.
#[derive(Debug)]
pub enum Control {
    /// The outbound connection to this peer is up.
    PeerUp(String),
    /// The outbound connection to this peer failed, and why.
    PeerDown(String, String),
    /// The full member list from a membership source (discovery).
    Membership(Vec<PeerInfo>),
    /// Stop: answer nothing more, close the storage and return.
    Shutdown,
}

/// Why an operation was not applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OpFailure {
    /// The operation itself was refused (bad input, or it would overflow).
    Refused(OpError),
    /// The storage could not make the batch durable; nothing was applied.
    Storage(String),
}

/// A client's increments or decrements, each answered once applied and durable.
#[derive(Debug)]
pub enum OpRequest {
    /// One operation (an HTTP request).
    One {
        op: LocalOp,
        reply: Sender<Result<i64, OpFailure>>,
    },
    /// Operations committed in the same batch, answered in their order on one channel
    /// (a RESP pipeline). At most [`MAX_BATCH`] of them.
    Many {
        ops: Vec<LocalOp>,
        reply: Sender<Result<i64, OpFailure>>,
    },
}

impl OpRequest {
    /// Appends the request's operations to `ops` and, for each, where to answer it.
    fn unpack(self, ops: &mut Vec<LocalOp>, replies: &mut Vec<Sender<Result<i64, OpFailure>>>) {
        match self {
            OpRequest::One { op, reply } => {
                ops.push(op);
                replies.push(reply);
            }
            OpRequest::Many { ops: many, reply } => {
                replies.extend(std::iter::repeat_n(reply, many.len()));
                ops.extend(many);
            }
        }
    }
}

/// A client's read, answered with the JSON of the matching view.
#[derive(Debug)]
pub enum Query {
    Counters(Sender<Value>),
    Counter(String, Sender<Value>),
    Peers(Sender<Value>),
    Status(Sender<Value>),
}

/// The receiving ends the event loop waits on.
pub struct Inputs {
    pub inbound: Receiver<Inbound>,
    pub ops: Receiver<OpRequest>,
    pub queries: Receiver<Query>,
    pub control: Receiver<Control>,
    /// Handed to each peer's writer to report connects and failures.
    pub control_tx: Sender<Control>,
}

#[derive(Debug, Default)]
struct RequestFigures {
    batches: u64,
    ops: u64,
    refused: u64,
    storage_failures: u64,
    learned_log_failures: u64,
}

pub struct EventLoop {
    engine: Engine,
    storage: Box<dyn Storage>,
    me: SelfView,
    peers: PeerTable,
    links: HashMap<String, PeerLink>,
    link_settings: LinkSettings,
    inputs: Inputs,
    inbound_stats: Arc<InboundStats>,
    start: Instant,
    figures: RequestFigures,
    /// Frames to peers whose link had been removed meanwhile.
    unroutable: u64,
    /// Queue drops of links since removed.
    removed_link_drops: u64,
}

impl EventLoop {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        engine: Engine,
        storage: Box<dyn Storage>,
        me: SelfView,
        link_settings: LinkSettings,
        inputs: Inputs,
        inbound_stats: Arc<InboundStats>,
        start: Instant,
    ) -> EventLoop {
        let peers = PeerTable::new(me.gossip_addr.clone());
        EventLoop {
            engine,
            storage,
            me,
            peers,
            links: HashMap::new(),
            link_settings,
            inputs,
            inbound_stats,
            start,
            figures: RequestFigures::default(),
            unroutable: 0,
            removed_link_drops: 0,
        }
    }

    /// Adds the seeds (gossip addresses) and starts connecting to them.
    pub fn add_seeds(&mut self, seeds: &[String]) {
        for seed in seeds {
            if self.peers.add_seed(seed) {
                self.open_link(seed);
            }
        }
    }

    /// Runs until [`Control::Shutdown`], then closes the storage.
    pub fn run(mut self) {
        let mut ops = self.inputs.ops.clone();
        let mut queries = self.inputs.queries.clone();
        let mut inbound = self.inputs.inbound.clone();
        let control = self.inputs.control.clone();
        loop {
            let now = self.now();
            if now >= self.engine.next_deadline() {
                self.engine.handle_timer(now);
                self.flush_outputs();
                // A timed fsync or a snapshot owed since start-up must not wait for a change.
                self.storage_housekeeping();
            }
            let wait = self.engine.next_deadline().saturating_sub(self.now());
            select! {
                recv(ops) -> msg => match msg {
                    Ok(first) => self.handle_ops(first),
                    Err(_) => ops = never(),
                },
                recv(inbound) -> msg => match msg {
                    Ok(frame) => self.handle_inbound(frame),
                    Err(_) => inbound = never(),
                },
                recv(queries) -> msg => match msg {
                    Ok(q) => self.handle_query(q),
                    Err(_) => queries = never(),
                },
                recv(control) -> msg => match msg {
                    Ok(Control::Shutdown) | Err(_) => break,
                    Ok(c) => self.handle_control(c),
                },
                default(wait) => {}
            }
            self.flush_outputs();
        }
        self.links.clear();
        if let Err(e) = self.storage.close() {
            log::error!("closing storage: {e}");
        }
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn handle_ops(&mut self, first: OpRequest) {
        let mut ops = Vec::new();
        let mut replies = Vec::new();
        first.unpack(&mut ops, &mut replies);
        while ops.len() < MAX_BATCH {
            match self.inputs.ops.try_recv() {
                Ok(r) => r.unpack(&mut ops, &mut replies),
                Err(_) => break,
            }
        }
        let batch = self.engine.prepare_local(&ops);
        self.figures.batches += 1;
        self.figures.ops += ops.len() as u64;
        let mut storage_error = None;
        if !batch.is_empty() {
            match self.storage.commit_local(&batch.delta) {
                Ok(()) => self.engine.apply_local(&batch),
                Err(e) => {
                    self.figures.storage_failures += 1;
                    log::error!("storage: cannot make a batch durable: {e}; nothing applied");
                    storage_error = Some(format!("storage failure, nothing applied: {e}"));
                }
            }
        }
        for (reply, result) in replies.into_iter().zip(batch.results) {
            let answer = match (result, &storage_error) {
                (Err(refused), _) => {
                    self.figures.refused += 1;
                    Err(OpFailure::Refused(refused))
                }
                (Ok(_), Some(e)) => Err(OpFailure::Storage(e.clone())),
                (Ok(value), None) => Ok(value),
            };
            let _ = reply.send(answer);
        }
        if !batch.delta.entries.is_empty() && storage_error.is_none() {
            self.storage_housekeeping();
        }
    }

    fn handle_inbound(&mut self, Inbound { from, frame }: Inbound) {
        if from == self.me.gossip_addr {
            return;
        }
        let now = self.now();
        if let Frame::Hello {
            name, http_addr, ..
        } = &frame
        {
            if self.peers.greeted(&from, name, http_addr, now) {
                log::info!("peer {name} ({from}) joined");
                self.open_link(&from);
            }
            return;
        }
        self.peers.heard(&from, now);
        self.engine.handle_frame(now, &from, frame);
    }

    fn handle_control(&mut self, control: Control) {
        match control {
            Control::PeerUp(addr) => {
                if !self.peers.contains(&addr) {
                    return;
                }
                if self.peers.set_reachable(&addr, true) {
                    log::info!("peer {} is reachable", self.peers.label(&addr));
                }
                self.engine.add_peer(addr);
            }
            Control::PeerDown(addr, why) => {
                if self.peers.set_reachable(&addr, false) {
                    log::warn!("peer {} is unreachable: {why}", self.peers.label(&addr));
                }
                self.engine.remove_peer(&addr);
            }
            Control::Membership(members) => {
                let (added, removed) = self.peers.set_membership(&members);
                for addr in added {
                    log::info!("peer {} added by membership", self.peers.label(&addr));
                    self.open_link(&addr);
                }
                for addr in removed {
                    log::info!("peer {addr} left the membership");
                    if let Some(link) = self.links.remove(&addr) {
                        self.removed_link_drops += link.dropped;
                    }
                    self.engine.remove_peer(&addr);
                }
            }
            Control::Shutdown => {}
        }
    }

    fn open_link(&mut self, addr: &str) {
        match PeerLink::spawn(
            addr.to_owned(),
            &self.link_settings,
            self.inputs.control_tx.clone(),
        ) {
            Ok(link) => {
                self.links.insert(addr.to_owned(), link);
            }
            Err(e) => log::error!("cannot start a writer for peer {addr}: {e}"),
        }
    }

    /// Carries out the engine's outputs: frames onto links, learned deltas to storage.
    fn flush_outputs(&mut self) {
        let mut learned = false;
        for output in self.engine.drain_outputs() {
            match output {
                Output::Send { to, frame } => match self.links.get_mut(&to) {
                    Some(link) => link.send(frame),
                    None => self.unroutable += 1,
                },
                Output::Learned(deltas) => {
                    learned = true;
                    if let Err(e) = self.storage.log_learned(&deltas) {
                        self.figures.learned_log_failures += 1;
                        log::warn!("storage: cannot log state learned from peers: {e}");
                    }
                }
            }
        }
        if learned {
            self.storage_housekeeping();
        }
    }

    fn storage_housekeeping(&mut self) {
        if let Err(e) = self.storage.after_turn(self.engine.state()) {
            log::warn!("storage: {e}");
        }
    }

    fn handle_query(&mut self, query: Query) {
        match query {
            Query::Counters(reply) => {
                let view = CountersView {
                    counters: self
                        .engine
                        .state()
                        .values()
                        .map(|(name, value)| (name.to_owned(), value))
                        .collect(),
                };
                let _ = reply.send(to_json(&view));
            }
            Query::Counter(name, reply) => {
                let state = self.engine.state();
                let view = CounterView {
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
                };
                let _ = reply.send(to_json(&view));
            }
            Query::Peers(reply) => {
                let view = PeersView {
                    me: self.me.clone(),
                    peers: self.peers.views(self.now()),
                };
                let _ = reply.send(to_json(&view));
            }
            Query::Status(reply) => {
                let _ = reply.send(self.status());
            }
        }
    }

    fn status(&self) -> Value {
        let now = self.now();
        let views = self.peers.views(now);
        let state = self.engine.state();
        let queue_drops: u64 =
            self.removed_link_drops + self.links.values().map(|l| l.dropped).sum::<u64>();
        json!({
            "name": self.me.name,
            "origin": self.me.origin,
            "gossip_addr": self.me.gossip_addr,
            "http_addr": self.me.http_addr,
            "uptime_ms": now.as_millis() as u64,
            "peers": {
                "known": views.len(),
                "reachable": views.iter().filter(|p| p.reachable).count(),
            },
            "state": {
                "counters": state.counter_count(),
                "entries": state.entry_count(),
                "origins": state.digest().len(),
            },
            "gossip": gossip_json(self.engine.stats(), now),
            "transport": {
                "queue_drops": queue_drops,
                "unroutable_frames": self.unroutable,
                "inbound": self.inbound_stats.figures(),
            },
            "requests": {
                "batches": self.figures.batches,
                "ops": self.figures.ops,
                "refused": self.figures.refused,
                "storage_failures": self.figures.storage_failures,
                "learned_log_failures": self.figures.learned_log_failures,
            },
            "storage": self.storage.status(),
        })
    }
}

fn gossip_json(stats: &Stats, now: Duration) -> Value {
    let per_type = |figures: &[u64; 5]| -> Value {
        FrameType::ALL
            .iter()
            .map(|t| (t.name().to_owned(), json!(figures[t.index()])))
            .collect::<serde_json::Map<String, Value>>()
            .into()
    };
    json!({
        "frames_out": per_type(&stats.frames_out),
        "bytes_out": per_type(&stats.bytes_out),
        "frames_in": per_type(&stats.frames_in),
        "bytes_in": per_type(&stats.bytes_in),
        "rounds": stats.rounds,
        "entries_out": stats.entries_out,
        "entries_in": stats.entries_in,
        "forwarded": stats.forwarded,
        "repairs": stats.repairs,
        "last_learned_ms_ago": stats.last_learned.map(|t| now.saturating_sub(t).as_millis() as u64),
    })
}

fn to_json(view: &impl serde::Serialize) -> Value {
    serde_json::to_value(view).unwrap_or_else(|e| json!({ "error": e.to_string() }))
}
