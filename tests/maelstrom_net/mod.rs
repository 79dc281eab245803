//! A Maelstrom network played in Rust for the `gctr maelstrom` tests: it runs N node
//! processes, reads each one's stdout on its own thread, routes node-to-node messages with
//! random delays (from a seeded RNG) and drops every one that crosses a partition, and
//! lets a test act as Maelstrom's clients `c1`, `c2`, … sending requests and collecting
//! replies. Processes are killed when the network is dropped.
#![allow(dead_code)]

use crossbeam_channel::Sender;
use crossbeam_channel::{Receiver, RecvTimeoutError};
use serde_json::{json, Value};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The seed of this run: `GCTR_SEED` when set (to replay a failure), else random.
pub fn seed() -> u64 {
    std::env::var("GCTR_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..))
}

/// Node ids `n1..=nN`.
pub fn node_ids(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("n{i}")).collect()
}

struct NodeProc {
    child: Child,
    /// Lines for the node's stdin, written by a thread of their own so that a paused
    /// node with a full pipe never blocks the network. Dropping it closes stdin.
    stdin: Option<Sender<String>>,
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the thread that writes lines to a node's stdin; it ends, closing stdin, when
/// the sender is dropped or the node stops reading.
fn spawn_writer(mut stdin: ChildStdin) -> Sender<String> {
    let (tx, rx) = crossbeam_channel::unbounded::<String>();
    thread::spawn(move || {
        for line in rx {
            let written = stdin
                .write_all(line.as_bytes())
                .and_then(|_| stdin.write_all(b"\n"))
                .and_then(|_| stdin.flush());
            if written.is_err() {
                return;
            }
        }
    });
    tx
}

/// A message in flight between nodes.
struct InFlight {
    due: Instant,
    seq: u64,
    from: usize,
    to: usize,
    line: String,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

/// Figures about the traffic routed so far.
#[derive(Debug, Default, Clone)]
pub struct Traffic {
    pub routed: u64,
    pub dropped_by_partition: u64,
}

pub struct Net {
    pub seed: u64,
    rng: fastrand::Rng,
    ids: Vec<String>,
    nodes: Vec<NodeProc>,
    from_nodes: Receiver<(usize, String)>,
    in_flight: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    /// Group of each node while a partition lasts.
    groups: Option<Vec<usize>>,
    max_delay: Duration,
    next_msg_id: u64,
    /// Replies to clients, by the `in_reply_to` they carry, with the time they came.
    replies: HashMap<u64, (Instant, Value)>,
    pub traffic: Traffic,
}

impl Net {
    /// Starts `n` nodes with `args` after `maelstrom`; node messages get a delay drawn
    /// from `0..=max_delay`. Nothing is sent yet: see [`Net::init_all`].
    pub fn start(n: usize, args: &[&str], max_delay: Duration, seed: u64) -> Net {
        eprintln!("maelstrom net: {n} nodes, seed {seed} (replay with GCTR_SEED={seed})");
        let (tx, rx) = crossbeam_channel::unbounded();
        let ids = node_ids(n);
        let mut nodes = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            let mut child = Command::new(env!("CARGO_BIN_EXE_gctr"))
                .arg("maelstrom")
                .args(["--seed", &(seed ^ i as u64).to_string()])
                .args(["--log-level", "error"])
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("spawn gctr maelstrom");
            let stdout = child.stdout.take().expect("child stdout");
            let stdin = child.stdin.take().map(spawn_writer);
            let tx = tx.clone();
            let name = id.clone();
            thread::Builder::new()
                .name(format!("read-{name}"))
                .spawn(move || {
                    for line in BufReader::new(stdout).lines() {
                        let Ok(line) = line else { return };
                        if tx.send((i, line)).is_err() {
                            return;
                        }
                    }
                })
                .expect("spawn reader");
            nodes.push(NodeProc { child, stdin });
        }
        Net {
            seed,
            rng: fastrand::Rng::with_seed(seed),
            ids,
            nodes,
            from_nodes: rx,
            in_flight: BinaryHeap::new(),
            seq: 0,
            groups: None,
            max_delay,
            next_msg_id: 1,
            replies: HashMap::new(),
            traffic: Traffic::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Sends `init` to every node and waits for every `init_ok`.
    pub fn init_all(&mut self) {
        let ids = self.ids.clone();
        let pending: Vec<u64> = (0..self.len())
            .map(|i| {
                self.request(
                    i,
                    "c0",
                    json!({"type": "init", "node_id": ids[i], "node_ids": ids}),
                )
            })
            .collect();
        for id in pending {
            let reply = self.await_reply(id, Duration::from_secs(10));
            let reply = reply.unwrap_or_else(|| panic!("no init_ok (seed {})", self.seed));
            assert_eq!(reply["type"], "init_ok", "seed {}: {reply}", self.seed);
        }
    }

    /// Sends `body` (given a fresh `msg_id`) from `client` to node `i`; returns the msg_id.
    pub fn request(&mut self, i: usize, client: &str, mut body: Value) -> u64 {
        let msg_id = self.next_msg_id;
        self.next_msg_id += 1;
        body["msg_id"] = msg_id.into();
        let line = json!({"src": client, "dest": self.ids[i], "body": body}).to_string();
        self.send_raw(i, &line);
        msg_id
    }

    /// Writes one raw line to node `i`'s stdin.
    pub fn send_raw(&mut self, i: usize, line: &str) {
        let stdin = self.nodes[i].stdin.as_ref().expect("stdin open");
        stdin
            .send(line.to_owned())
            .unwrap_or_else(|_| panic!("{}'s stdin writer stopped", self.ids[i]));
    }

    /// Closes node `i`'s stdin.
    pub fn close_stdin(&mut self, i: usize) {
        self.nodes[i].stdin = None;
    }

    /// Node `i`'s exit code, once it has exited.
    pub fn exit_code(&mut self, i: usize) -> Option<Option<i32>> {
        self.nodes[i]
            .child
            .try_wait()
            .expect("try_wait")
            .map(|s| s.code())
    }

    /// Routes messages until the reply to `msg_id` comes or `timeout` passes.
    pub fn await_reply(&mut self, msg_id: u64, timeout: Duration) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((_, reply)) = self.replies.remove(&msg_id) {
                return Some(reply);
            }
            if Instant::now() >= deadline {
                return None;
            }
            self.pump(deadline);
        }
    }

    /// Takes the reply to `msg_id`, with the time it came, if it has come.
    pub fn take_reply(&mut self, msg_id: u64) -> Option<(Instant, Value)> {
        self.replies.remove(&msg_id)
    }

    /// Stops node `i` (SIGSTOP): it answers nothing until [`Net::resume`].
    pub fn pause(&mut self, i: usize) {
        self.signal(i, "-STOP");
    }

    pub fn resume(&mut self, i: usize) {
        self.signal(i, "-CONT");
    }

    fn signal(&mut self, i: usize, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.nodes[i].child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {signal} {} failed", self.ids[i]);
    }

    /// Routes messages until `until`.
    pub fn run_until(&mut self, until: Instant) {
        while Instant::now() < until {
            self.pump(until);
        }
    }

    /// Cuts the network into groups; `groups[i]` is node i's group.
    pub fn partition(&mut self, groups: Vec<usize>) {
        assert_eq!(groups.len(), self.len());
        self.groups = Some(groups);
    }

    /// A random split of the nodes into two non-empty groups.
    pub fn random_halves(&mut self) -> Vec<usize> {
        let n = self.len();
        let mut order: Vec<usize> = (0..n).collect();
        self.rng.shuffle(&mut order);
        let cut = self.rng.usize(1..n);
        let mut groups = vec![0; n];
        for &i in &order[cut..] {
            groups[i] = 1;
        }
        groups
    }

    pub fn is_partitioned(&self) -> bool {
        self.groups.is_some()
    }

    pub fn heal(&mut self) {
        self.groups = None;
    }

    pub fn rng(&mut self) -> &mut fastrand::Rng {
        &mut self.rng
    }

    fn cut(&self, a: usize, b: usize) -> bool {
        self.groups.as_ref().is_some_and(|g| g[a] != g[b])
    }

    /// Handles node output and due deliveries until the next event or `until`.
    fn pump(&mut self, until: Instant) {
        let now = Instant::now();
        while self.in_flight.peek().is_some_and(|m| m.0.due <= now) {
            let Reverse(m) = self.in_flight.pop().expect("peeked");
            if self.cut(m.from, m.to) {
                self.traffic.dropped_by_partition += 1;
            } else {
                self.send_raw(m.to, &m.line);
            }
        }
        let next = self.in_flight.peek().map_or(until, |m| m.0.due.min(until));
        let wait = next.saturating_duration_since(Instant::now());
        match self.from_nodes.recv_timeout(wait) {
            Ok((from, line)) => self.route(from, line),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => panic!("every node's stdout closed"),
        }
    }

    fn route(&mut self, from: usize, line: String) {
        let msg: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            panic!(
                "{} wrote a line that is not JSON ({e}): {line}",
                self.ids[from]
            )
        });
        assert_eq!(
            msg["src"], self.ids[from],
            "{} wrote a message with a wrong src: {line}",
            self.ids[from]
        );
        let dest = msg["dest"]
            .as_str()
            .unwrap_or_else(|| panic!("no dest: {line}"));
        if let Some(to) = self.ids.iter().position(|id| id == dest) {
            if self.cut(from, to) {
                self.traffic.dropped_by_partition += 1;
                return;
            }
            self.traffic.routed += 1;
            let delay = self.max_delay.mul_f64(self.rng.f64());
            self.seq += 1;
            self.in_flight.push(Reverse(InFlight {
                due: Instant::now() + delay,
                seq: self.seq,
                from,
                to,
                line,
            }));
        } else if let Some(id) = msg["body"]["in_reply_to"].as_u64() {
            // A reply to a client, or to a node this network does not run (a test that
            // plays that peer itself).
            self.replies
                .insert(id, (Instant::now(), msg["body"].clone()));
        } else {
            assert!(
                !dest.starts_with('c'),
                "a message to a client that is no reply: {line}"
            );
        }
    }
}
