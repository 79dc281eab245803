//! One Maelstrom node, free of I/O: it takes input lines and timer ticks with the time
//! since start, drives the node core (the same one `gctr node` runs, over a storage that
//! keeps nothing: Maelstrom has no disk), and queues the messages to write.
//!
//! Adds that arrive together (one turn of the event loop) form one group commit, then an
//! `add_ok` per add. Any other message first closes the batch, so a `read` sees every
//! `add` that came before it.
//!
//! What `gossip_status_ok` reports:
//! - `local_value`: this node's value of the `default` counter;
//! - `gossip_rounds`: anti-entropy rounds this node has started (one per gossip interval,
//!   fewer while its push batches flow);
//! - `peers_synced`: peers whose latest digest seen here (in a Syn or SynAck they sent)
//!   covers every origin up to the version this node knows it, i.e. peers known to hold
//!   all the versioned state this node holds. Totals merged from `replicate` carry no
//!   version and do not count;
//! - `convergence_ms`: milliseconds from the first change this node saw (a local add, or a
//!   gossip or `replicate` message that grew its state) to the last such change; 0 before
//!   any. Once writes stop and the state has settled, it is how long this node took to go
//!   from the first write it saw to holding the final state.

use super::message::{self, ErrorCode, Incoming, Outgoing, Parsed, ReplyTo, Request};
use crate::codec::Frame;
use crate::crdt::{Digest, LocalOp, OpKind, Origin, State, DEFAULT_COUNTER};
use crate::engine::{Config, Engine};
use crate::member::NodeName;
use crate::node_core::{Effect, MemoryStorage, NodeCore, OpRequest};
use log::{debug, info, warn};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// The incarnation of every origin under Maelstrom (see the module header of `maelstrom`).
pub const INCARNATION: u64 = 0;

/// A Maelstrom node: waiting for `init`, then serving.
pub struct Node {
    config: Config,
    seed: u64,
    serving: Option<Serving>,
    outbox: Vec<Outgoing>,
    next_msg_id: u64,
}

/// Who asked for an add, under which msg_id, and the delta.
type AddRequest = (String, Option<u64>, i64);

struct Serving {
    me: String,
    core: NodeCore<AddRequest>,
    /// Adds of the current batch.
    pending_adds: Vec<AddRequest>,
    /// The latest digest each peer sent us.
    peer_digests: HashMap<NodeName, Digest>,
    first_change: Option<Duration>,
    last_change: Option<Duration>,
}

impl Node {
    pub fn new(config: Config, seed: u64) -> Node {
        Node {
            config,
            seed,
            serving: None,
            outbox: Vec::new(),
            next_msg_id: 1,
        }
    }

    /// This node's id, once `init` named it.
    pub fn id(&self) -> Option<&str> {
        self.serving.as_ref().map(|s| s.me.as_str())
    }

    /// When [`Node::handle_timer`] must next run, once serving.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.serving.as_ref().map(|s| s.core.next_deadline())
    }

    /// Handles one input line.
    pub fn handle_line(&mut self, now: Duration, line: &[u8]) {
        match message::parse(line) {
            Parsed::Request(incoming) => self.handle_request(now, incoming),
            Parsed::Reply { src, kind } => debug!("ignored a {kind:?} reply from {src}"),
            Parsed::Invalid {
                reply_to,
                code,
                text,
            } => {
                warn!("{text}; line: {}", preview(line));
                if let Some(to) = reply_to {
                    self.outbox.push(Outgoing::error(&to, code, &text));
                }
            }
        }
    }

    /// Runs the engine's timer and closes the current batch of adds. Call once per turn,
    /// after the turn's lines.
    pub fn handle_timer(&mut self, now: Duration) {
        self.flush_adds(now);
        if let Some(s) = &mut self.serving {
            s.core.handle_timer(now);
        }
        self.collect_effects();
    }

    /// Every line to write since the last call, stamped with this node's id and fresh
    /// message ids. Closes the current batch of adds first.
    pub fn drain_lines(&mut self, now: Duration) -> Vec<String> {
        self.flush_adds(now);
        self.collect_effects();
        let outbox = std::mem::take(&mut self.outbox);
        let me = self.serving.as_ref().map(|s| s.me.as_str());
        let first = self.next_msg_id;
        self.next_msg_id += outbox.len() as u64;
        outbox
            .iter()
            .zip(first..)
            .map(|(m, id)| m.to_line(me, id))
            .collect()
    }

    fn handle_request(&mut self, now: Duration, incoming: Incoming) {
        let Incoming {
            src,
            dest,
            msg_id,
            request,
        } = incoming;
        if !matches!(request, Request::Add { .. }) {
            self.flush_adds(now);
        }
        match request {
            Request::Init { node_id, node_ids } => self.init(now, &src, msg_id, node_id, node_ids),
            _ if self.serving.is_none() => self.not_ready(src, dest, msg_id),
            Request::Add { delta } => {
                if let Some(s) = &mut self.serving {
                    s.pending_adds.push((src, msg_id, delta));
                }
            }
            Request::Topology { topology } => {
                let me = self.id().unwrap_or_default();
                debug!(
                    "topology names {:?} as neighbours of {me}; gossip uses every node",
                    topology.get(me)
                );
                self.reply(&src, msg_id, "topology_ok", json!({}));
            }
            Request::Read => {
                let value = self.state().map_or(0, |s| s.value(DEFAULT_COUNTER));
                self.reply(&src, msg_id, "read_ok", json!({ "value": value }));
            }
            Request::Replicate {
                p_counters,
                n_counters,
            } => self.replicate(now, &src, p_counters, n_counters),
            Request::GossipStatus => self.gossip_status(&src, msg_id),
            Request::Gossip { frame } => self.gossip(now, &src, frame),
        }
    }

    fn init(
        &mut self,
        now: Duration,
        src: &str,
        msg_id: Option<u64>,
        node_id: String,
        node_ids: Vec<String>,
    ) {
        if let Some(me) = self.id() {
            if me != node_id {
                let text = format!("already initialised as {me}; cannot become {node_id}");
                warn!("{text}");
                self.error(src, msg_id, ErrorCode::Abort, &text);
                return;
            }
        }
        let peers: Vec<NodeName> = node_ids
            .iter()
            .filter(|id| **id != node_id)
            .filter_map(|id| match NodeName::new(id) {
                Ok(name) => Some(name),
                Err(e) => {
                    warn!("node id {id:?} cannot be a peer: {e}");
                    None
                }
            })
            .collect();
        match &mut self.serving {
            Some(s) => s.core.set_peers(peers),
            None => {
                let origin = Origin::new(node_id.clone(), INCARNATION);
                let engine = Engine::new(origin, self.config.clone(), State::new(), self.seed, now);
                let mut core = NodeCore::new(engine, Box::new(MemoryStorage));
                core.set_peers(peers);
                info!(
                    "node {node_id} serving with peers {:?}, gossip every {:?}, fanout {}, eager push {}",
                    core.peers(),
                    self.config.gossip_interval,
                    self.config.peers_per_round(),
                    self.config.eager_push
                );
                self.serving = Some(Serving {
                    me: node_id,
                    core,
                    pending_adds: Vec::new(),
                    peer_digests: HashMap::new(),
                    first_change: None,
                    last_change: None,
                });
            }
        }
        self.reply(src, msg_id, "init_ok", json!({}));
    }

    /// Commits the batch of adds gathered so far; each is answered as the core replies.
    fn flush_adds(&mut self, now: Duration) {
        let Some(s) = &mut self.serving else {
            return;
        };
        let adds = std::mem::take(&mut s.pending_adds);
        let (zero, nonzero): (Vec<AddRequest>, Vec<AddRequest>) =
            adds.into_iter().partition(|(_, _, delta)| *delta == 0);
        let requests = nonzero.into_iter().map(|add| OpRequest {
            op: LocalOp {
                key: None,
                counter: DEFAULT_COUNTER.to_owned(),
                kind: if add.2 > 0 {
                    OpKind::Increment
                } else {
                    OpKind::Decrement
                },
                amount: add.2.unsigned_abs(),
            },
            reply: add,
        });
        s.core.commit(now, requests);
        for (src, msg_id, _) in zero {
            self.reply(&src, msg_id, "add_ok", json!({}));
        }
        self.collect_effects_at(Some(now));
    }

    fn replicate(
        &mut self,
        now: Duration,
        src: &str,
        p_counters: BTreeMap<String, u64>,
        n_counters: BTreeMap<String, u64>,
    ) {
        let Some(s) = &mut self.serving else {
            return;
        };
        let mut nodes: Vec<&String> = p_counters.keys().chain(n_counters.keys()).collect();
        nodes.sort();
        nodes.dedup();
        let mut grew = false;
        for node in nodes {
            let p = p_counters.get(node).copied().unwrap_or(0);
            let n = n_counters.get(node).copied().unwrap_or(0);
            let origin = Origin::new(node.clone(), INCARNATION);
            grew |= s
                .core
                .merge_unversioned(now, &origin, DEFAULT_COUNTER, p, n);
        }
        if grew {
            s.changed(now);
        }
        debug!("replicate from {src} merged; state grew: {grew}");
    }

    fn gossip(&mut self, now: Duration, src: &str, frame: Frame) {
        let Some(s) = &mut self.serving else {
            return;
        };
        let Some(from) = s.core.peers().iter().find(|p| p.as_str() == src).cloned() else {
            warn!("gossip from {src}, which is not a node of this cluster, ignored");
            return;
        };
        if let Frame::Syn { digest } | Frame::SynAck { digest, .. } = &frame {
            s.peer_digests.insert(from.clone(), digest.clone());
        }
        let before = s.core.gossip_stats().last_learned;
        s.core.handle_frame(now, &from, frame);
        if s.core.gossip_stats().last_learned != before {
            s.changed(now);
        }
    }

    fn gossip_status(&mut self, src: &str, msg_id: Option<u64>) {
        let Some(s) = &self.serving else {
            return;
        };
        let mine = s.core.state().digest();
        let peers_synced = s
            .core
            .peers()
            .iter()
            .filter(|p| s.peer_digests.get(*p).is_some_and(|d| covers(d, &mine)))
            .count();
        let convergence = match (s.first_change, s.last_change) {
            (Some(first), Some(last)) => last.saturating_sub(first).as_millis() as u64,
            _ => 0,
        };
        let fields = json!({
            "local_value": s.core.state().value(DEFAULT_COUNTER),
            "gossip_rounds": s.core.gossip_stats().rounds,
            "peers_synced": peers_synced,
            "convergence_ms": convergence,
        });
        self.reply(src, msg_id, "gossip_status_ok", fields);
    }

    fn collect_effects(&mut self) {
        self.collect_effects_at(None);
    }

    /// Turns the core's effects into messages: gossip frames, and `add_ok` or an error
    /// per add. A successful add at `now` counts as a change of this node's state.
    fn collect_effects_at(&mut self, now: Option<Duration>) {
        let Some(s) = &mut self.serving else {
            return;
        };
        let mut applied = false;
        for effect in s.core.take_effects() {
            match effect {
                Effect::Send { to, frame } => {
                    self.outbox.push(Outgoing::gossip(to.as_str(), &frame))
                }
                // This runtime runs without membership: its peers are the init's node ids.
                Effect::SendMember { .. }
                | Effect::MemberChanged(_)
                | Effect::NameConflict(_)
                | Effect::NewIncarnation(_) => {}
                Effect::Reply {
                    to: (src, msg_id, delta),
                    result,
                } => match result {
                    Ok(_) => {
                        applied = true;
                        if msg_id.is_some() {
                            self.outbox
                                .push(Outgoing::reply(&src, msg_id, "add_ok", json!({})));
                        }
                    }
                    Err(e) => {
                        let text = format!("add {delta} refused: {e}");
                        warn!("{text}");
                        if let Some(msg_id) = msg_id {
                            let to = ReplyTo {
                                src,
                                msg_id,
                                dest: None,
                            };
                            self.outbox
                                .push(Outgoing::error(&to, ErrorCode::Abort, &text));
                        }
                    }
                },
            }
        }
        if let (true, Some(now)) = (applied, now) {
            s.changed(now);
        }
    }

    fn state(&self) -> Option<&State> {
        self.serving.as_ref().map(|s| s.core.state())
    }

    fn not_ready(&mut self, src: String, dest: String, msg_id: Option<u64>) {
        let text = "this node has not received `init` yet";
        warn!("request from {src} before init, refused");
        if let Some(msg_id) = msg_id {
            let to = ReplyTo {
                src,
                msg_id,
                dest: Some(dest),
            };
            self.outbox.push(Outgoing::error(
                &to,
                ErrorCode::TemporarilyUnavailable,
                text,
            ));
        }
    }

    fn reply(&mut self, dest: &str, msg_id: Option<u64>, kind: &str, fields: serde_json::Value) {
        if msg_id.is_some() {
            self.outbox
                .push(Outgoing::reply(dest, msg_id, kind, fields));
        }
    }

    fn error(&mut self, dest: &str, msg_id: Option<u64>, code: ErrorCode, text: &str) {
        if let Some(msg_id) = msg_id {
            let to = ReplyTo {
                src: dest.to_owned(),
                msg_id,
                dest: None,
            };
            self.outbox.push(Outgoing::error(&to, code, text));
        }
    }
}

impl Serving {
    fn changed(&mut self, now: Duration) {
        self.first_change.get_or_insert(now);
        self.last_change = Some(now);
    }
}

/// Whether a peer's digest shows it knows every origin at least as far as `mine` does.
fn covers(theirs: &Digest, mine: &Digest) -> bool {
    let theirs: HashMap<&Origin, u64> = theirs.iter().map(|ov| (&ov.origin, ov.version)).collect();
    mine.iter()
        .all(|ov| ov.version == 0 || theirs.get(&ov.origin).is_some_and(|v| *v >= ov.version))
}

/// The start of a line, for a log message.
fn preview(line: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(&line[..line.len().min(MAX)]);
    if line.len() > MAX {
        format!("{text}… ({} bytes)", line.len())
    } else {
        text.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn send(node: &mut Node, now: Duration, src: &str, dest: &str, body: Value) {
        let line = json!({"src": src, "dest": dest, "body": body}).to_string();
        node.handle_line(now, line.as_bytes());
    }

    fn drain(node: &mut Node, now: Duration) -> Vec<Value> {
        node.drain_lines(now)
            .iter()
            .map(|l| serde_json::from_str(l).expect("JSON out"))
            .collect()
    }

    fn started(id: &str, ids: &[&str]) -> Node {
        let mut node = Node::new(Config::default(), 7);
        send(
            &mut node,
            ms(0),
            "c0",
            id,
            json!({"type": "init", "msg_id": 1, "node_id": id, "node_ids": ids}),
        );
        let out = drain(&mut node, ms(0));
        assert_eq!(out[0]["body"]["type"], "init_ok");
        node
    }

    fn of_type<'a>(out: &'a [Value], kind: &str) -> Vec<&'a Value> {
        out.iter().filter(|m| m["body"]["type"] == kind).collect()
    }

    #[test]
    fn adds_of_one_turn_are_one_batch_and_one_push_per_peer() {
        let mut node = started("n1", &["n1", "n2", "n3"]);
        for (i, delta) in [5, -2, 0, 4].into_iter().enumerate() {
            let body = json!({"type": "add", "msg_id": 10 + i, "delta": delta});
            send(&mut node, ms(1), "c1", "n1", body);
        }
        send(
            &mut node,
            ms(1),
            "c1",
            "n1",
            json!({"type": "read", "msg_id": 20}),
        );
        let out = drain(&mut node, ms(1));
        assert_eq!(of_type(&out, "add_ok").len(), 4);
        assert_eq!(of_type(&out, "read_ok")[0]["body"]["value"], 7);
        let pushes = of_type(&out, "gossip");
        assert_eq!(
            pushes.len(),
            2,
            "one push to each peer of the mesh: {out:?}"
        );
        let entries = &pushes[0]["body"]["frame"]["delta"][0]["entries"];
        assert_eq!(entries.as_array().map(Vec::len), Some(1));
        assert_eq!(
            (entries[0]["p"].as_u64(), entries[0]["n"].as_u64()),
            (Some(9), Some(2))
        );
    }

    /// Two nodes wired by hand: lines from one are fed to the other, on a virtual clock.
    #[test]
    fn gossip_lines_converge_two_nodes_and_status_reports_it() {
        let mut a = started("n1", &["n1", "n2"]);
        let mut b = started("n2", &["n1", "n2"]);
        send(
            &mut a,
            ms(10),
            "c1",
            "n1",
            json!({"type": "add", "msg_id": 2, "delta": 3}),
        );
        send(
            &mut b,
            ms(10),
            "c1",
            "n2",
            json!({"type": "add", "msg_id": 2, "delta": -8}),
        );
        let mut now = ms(10);
        let mut to_a = drain(&mut b, now);
        let mut to_b = drain(&mut a, now);
        while now < ms(600) {
            now += ms(50);
            for m in std::mem::take(&mut to_a) {
                if m["dest"] == "n1" {
                    a.handle_line(now, m.to_string().as_bytes());
                }
            }
            for m in std::mem::take(&mut to_b) {
                if m["dest"] == "n2" {
                    b.handle_line(now, m.to_string().as_bytes());
                }
            }
            a.handle_timer(now);
            b.handle_timer(now);
            to_b = drain(&mut a, now);
            to_a = drain(&mut b, now);
        }
        for node in [&mut a, &mut b] {
            let me = node.id().expect("initialised").to_owned();
            send(
                node,
                now,
                "c1",
                &me,
                json!({"type": "gossip_status", "msg_id": 9}),
            );
            let out = drain(node, now);
            let status = &of_type(&out, "gossip_status_ok")[0]["body"];
            assert_eq!(status["local_value"], -5, "{me}: {status}");
            assert_eq!(status["peers_synced"], 1, "{me}: {status}");
            assert!(
                status["gossip_rounds"].as_u64() >= Some(3),
                "{me}: {status}"
            );
            // Each node's own add came at 10 ms and the peer's one gossip hop later (50 ms).
            assert_eq!(status["convergence_ms"], 50, "{me}: {status}");
        }
    }

    #[test]
    fn a_peer_is_not_synced_until_its_digest_covers_ours() {
        let mut node = started("n1", &["n1", "n2"]);
        send(
            &mut node,
            ms(1),
            "c1",
            "n1",
            json!({"type": "add", "msg_id": 2, "delta": 1}),
        );
        drain(&mut node, ms(1));
        let empty = json!({"type": "gossip", "frame": {"type": "syn", "digest": []}});
        send(&mut node, ms(2), "n2", "n1", empty);
        send(
            &mut node,
            ms(2),
            "c1",
            "n1",
            json!({"type": "gossip_status", "msg_id": 3}),
        );
        let out = drain(&mut node, ms(2));
        assert_eq!(
            of_type(&out, "gossip_status_ok")[0]["body"]["peers_synced"],
            0
        );
        let covering = json!({"type": "gossip", "frame": {"type": "syn", "digest":
            [{"origin": {"node": "n1", "incarnation": 0}, "version": 1}]}});
        send(&mut node, ms(3), "n2", "n1", covering);
        send(
            &mut node,
            ms(3),
            "c1",
            "n1",
            json!({"type": "gossip_status", "msg_id": 4}),
        );
        let out = drain(&mut node, ms(3));
        assert_eq!(
            of_type(&out, "gossip_status_ok")[0]["body"]["peers_synced"],
            1
        );
    }
}
