//! Crash safety with real processes: a stream of increments from several keep-alive
//! clients, `kill -9` at a random moment, restart on the same data directory, twenty
//! rounds. Every acknowledged increment must survive and nothing beyond what was sent
//! may appear (acknowledged ≤ recovered ≤ sent, per counter and per node, cumulative),
//! and under `--fsync always` a node keeps its origin, so its own totals never go back.
//!
//! The kill schedule comes from a seeded RNG; the seed is printed, and
//! `GCTR_CRASH_SEED=N` replays it.

mod common;

use common::cluster::{node_addrs, start_node, TestNode};
use common::{agent, http_get, wait_until};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ROUNDS: usize = 20;
const CLIENTS: usize = 4;
const COUNTERS: usize = 3;

fn counter(c: usize) -> String {
    format!("c{c}")
}

/// What the clients sent to and had acknowledged by each node, per counter.
#[derive(Clone, Default)]
struct Tally {
    sent: Vec<[u64; COUNTERS]>,
    acked: Vec<[u64; COUNTERS]>,
}

impl Tally {
    fn new(nodes: usize) -> Tally {
        Tally {
            sent: vec![[0; COUNTERS]; nodes],
            acked: vec![[0; COUNTERS]; nodes],
        }
    }

    fn sum(per_node: &[[u64; COUNTERS]], c: usize) -> u64 {
        per_node.iter().map(|n| n[c]).sum()
    }
}

/// One node of the test: its name, addresses and data directory, and the process.
struct DurableNode {
    name: String,
    gossip: String,
    http: String,
    wal: PathBuf,
    seeds: Vec<String>,
    running: Option<TestNode>,
}

impl DurableNode {
    fn start(&mut self, logs: &Path) {
        let wal = self.wal.to_str().unwrap().to_owned();
        let seeds: Vec<&str> = self.seeds.iter().map(String::as_str).collect();
        self.running = Some(start_node(
            logs,
            &self.name,
            (&self.gossip, &self.http),
            &seeds,
            &["--wal", &wal, "--gossip-interval", "50ms"],
        ));
    }

    fn kill(&mut self) {
        if let Some(mut node) = self.running.take() {
            node.proc.kill();
        }
    }

    fn origin(&self) -> String {
        let (_, body) = http_get(&self.http, "/status").expect("GET /status");
        let v: Value = serde_json::from_str(&body).expect("status JSON");
        v["origin"].as_str().expect("origin").to_owned()
    }

    /// The per-origin increments of `counter` this node knows: origin → p.
    fn origin_totals(&self, counter: &str) -> Vec<(String, u64)> {
        let (status, body) = http_get(&self.http, &format!("/counters/{counter}")).unwrap();
        assert_eq!(status, 200, "{body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        v["origins"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| {
                assert_eq!(o["n"], 0, "no decrements were sent: {body}");
                (
                    o["origin"].as_str().unwrap().to_owned(),
                    o["p"].as_u64().unwrap(),
                )
            })
            .collect()
    }
}

/// Sends increments of random size to random nodes and counters until `stop`, on one
/// keep-alive connection per node; an increment counts as sent before it goes out (and
/// stops counting if the connection was refused), and as acknowledged only on a 200.
fn client(nodes: Vec<String>, tally: Arc<Mutex<Tally>>, stop: Arc<AtomicBool>, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let agent = agent();
    while !stop.load(Ordering::SeqCst) {
        let node = rng.usize(..nodes.len());
        let c = rng.usize(..COUNTERS);
        let by = rng.u64(1..=5);
        tally.lock().unwrap().sent[node][c] += by;
        let url = format!(
            "http://{}/counters/{}/increment?by={by}",
            nodes[node],
            counter(c)
        );
        match agent.post(&url).call() {
            Ok(resp) if resp.status() == 200 => tally.lock().unwrap().acked[node][c] += by,
            // Refused before a byte was sent (the node is down): it was never sent.
            Err(ureq::Error::Transport(t)) if t.kind() == ureq::ErrorKind::ConnectionFailed => {
                tally.lock().unwrap().sent[node][c] -= by
            }
            _ => {}
        }
    }
}

fn seed() -> u64 {
    let seed = std::env::var("GCTR_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("crash test seed: {seed} (GCTR_CRASH_SEED={seed} replays the kill schedule)");
    seed
}

/// Runs the rounds against `n` nodes (each seeded with the others) and returns the nodes,
/// all up, with the tally.
fn crash_rounds(n: usize, logs: &Path, data: &Path) -> (Vec<DurableNode>, Tally) {
    let mut rng = fastrand::Rng::with_seed(seed());
    let addrs: Vec<(String, String)> = (0..n).map(|_| node_addrs()).collect();
    let mut nodes: Vec<DurableNode> = (0..n)
        .map(|i| DurableNode {
            name: format!("n{i}"),
            gossip: addrs[i].0.clone(),
            http: addrs[i].1.clone(),
            wal: data.join(format!("n{i}")),
            seeds: (0..n)
                .filter(|j| *j != i)
                .map(|j| addrs[j].0.clone())
                .collect(),
            running: None,
        })
        .collect();
    for node in &mut nodes {
        node.start(logs);
    }
    let origins: Vec<String> = nodes.iter().map(DurableNode::origin).collect();
    let https: Vec<String> = nodes.iter().map(|n| n.http.clone()).collect();
    let tally = Arc::new(Mutex::new(Tally::new(n)));

    for round in 0..ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..CLIENTS)
            .map(|_| {
                let (https, tally, stop) = (https.clone(), tally.clone(), stop.clone());
                let seed = rng.u64(..);
                std::thread::spawn(move || client(https, tally, stop, seed))
            })
            .collect();
        // The random moment of the crash, while the clients are sending.
        std::thread::sleep(Duration::from_millis(rng.u64(20..250)));
        let victim = rng.usize(..n);
        nodes[victim].kill();
        stop.store(true, Ordering::SeqCst);
        for c in clients {
            c.join().expect("client thread");
        }
        nodes[victim].start(logs);

        let node = &nodes[victim];
        assert_eq!(
            node.origin(),
            origins[victim],
            "round {round}: {} changed its origin under --fsync always",
            node.name
        );
        let t = tally.lock().unwrap().clone();
        for c in 0..COUNTERS {
            let own = node
                .origin_totals(&counter(c))
                .into_iter()
                .find(|(o, _)| *o == origins[victim])
                .map_or(0, |(_, p)| p);
            let (acked, sent) = (t.acked[victim][c], t.sent[victim][c]);
            assert!(
                acked <= own && own <= sent,
                "round {round}: {} recovered {own} of its own increments of {}, but {acked} were \
                 acknowledged and {sent} sent",
                node.name,
                counter(c)
            );
        }
    }
    let tally = tally.lock().unwrap().clone();
    let acked: u64 = (0..COUNTERS).map(|c| Tally::sum(&tally.acked, c)).sum();
    let sent: u64 = (0..COUNTERS).map(|c| Tally::sum(&tally.sent, c)).sum();
    println!("{ROUNDS} rounds on {n} node(s): {acked} increments acknowledged, {sent} sent");
    assert!(
        acked >= ROUNDS as u64,
        "too little traffic to test anything: {acked} acknowledged"
    );
    (nodes, tally)
}

/// Checks one node's view of every counter against the tally: the value and every
/// node's own contribution lie between what was acknowledged and what was sent.
fn check_bounds(node: &DurableNode, nodes: &[DurableNode], origins: &[String], tally: &Tally) {
    for c in 0..COUNTERS {
        let totals = node.origin_totals(&counter(c));
        let known: Vec<&String> = totals.iter().map(|(o, _)| o).collect();
        assert!(
            known.iter().all(|o| origins.contains(o)),
            "{}: {} has origins {known:?}, expected only {origins:?}",
            node.name,
            counter(c)
        );
        for (i, origin) in origins.iter().enumerate() {
            let p = totals
                .iter()
                .find(|(o, _)| o == origin)
                .map_or(0, |(_, p)| *p);
            let (acked, sent) = (tally.acked[i][c], tally.sent[i][c]);
            assert!(
                acked <= p && p <= sent,
                "{} counts {p} increments of {} from {}, but {acked} were acknowledged and \
                 {sent} sent",
                node.name,
                counter(c),
                nodes[i].name
            );
        }
        let value: u64 = totals.iter().map(|(_, p)| p).sum();
        let (acked, sent) = (Tally::sum(&tally.acked, c), Tally::sum(&tally.sent, c));
        assert!(acked <= value && value <= sent);
    }
}

#[test]
fn a_node_killed_at_random_moments_keeps_every_acknowledged_increment() {
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let (nodes, tally) = crash_rounds(1, logs.path(), data.path());
    let origins = vec![nodes[0].origin()];
    check_bounds(&nodes[0], &nodes, &origins, &tally);
}

#[test]
fn a_cluster_with_random_nodes_killed_converges_within_the_bounds() {
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let (nodes, tally) = crash_rounds(3, logs.path(), data.path());
    let origins: Vec<String> = nodes.iter().map(DurableNode::origin).collect();
    wait_until(
        "the restarted cluster to converge",
        Duration::from_secs(20),
        || {
            let views: Vec<_> = nodes
                .iter()
                .map(|n| common::cluster::counters(&n.http))
                .collect();
            views[0].is_some() && views.iter().all(|v| *v == views[0])
        },
    );
    for node in &nodes {
        check_bounds(node, &nodes, &origins, &tally);
    }
}
