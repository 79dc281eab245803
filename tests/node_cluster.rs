//! Real `gctr node` processes joined with `--seeds` converge on the exact sums of
//! concurrent increments and decrements sent to different nodes, and a node killed and
//! restarted without a WAL rejoins under a new origin with nothing lost or doubled.

mod common;

use common::cluster::{apply_op, node_addrs, start_node, wait_converged, TestNode};
use common::{agent, http_get};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const COUNTERS: [&str; 3] = ["default", "orders", "page views/é"];

/// Starts `n` nodes; each seeds only the one before it, so joining relies on Hellos.
fn start_chain(dir: &Path, n: usize) -> Vec<TestNode> {
    let mut nodes: Vec<TestNode> = Vec::new();
    for i in 0..n {
        let (gossip, http) = node_addrs();
        let seeds: Vec<&str> = nodes
            .last()
            .map(|p| p.gossip.as_str())
            .into_iter()
            .collect();
        nodes.push(start_node(
            dir,
            &format!("n{i}"),
            (&gossip, &http),
            &seeds,
            &[],
        ));
    }
    nodes
}

/// Sends `per_thread` random operations from each of `threads` threads, each operation to
/// a random node; returns the exact sums they add up to.
fn concurrent_load(
    nodes: &[TestNode],
    threads: usize,
    per_thread: usize,
    seed: u64,
) -> BTreeMap<String, i64> {
    let https: Vec<String> = nodes.iter().map(|n| n.http.clone()).collect();
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let https = https.clone();
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(seed + t as u64);
                let agent = agent();
                let mut sums: BTreeMap<String, i64> = BTreeMap::new();
                for _ in 0..per_thread {
                    let http = &https[rng.usize(..https.len())];
                    let counter = COUNTERS[rng.usize(..COUNTERS.len())];
                    let increment = rng.u8(..4) != 0;
                    let by = rng.u64(1..=5);
                    apply_op(&agent, http, counter, increment, by);
                    let delta = if increment { by as i64 } else { -(by as i64) };
                    *sums.entry(counter.to_owned()).or_default() += delta;
                }
                sums
            })
        })
        .collect();
    let mut total: BTreeMap<String, i64> = BTreeMap::new();
    for h in handles {
        for (k, v) in h.join().expect("load thread") {
            *total.entry(k).or_default() += v;
        }
    }
    total
}

fn every_node_lists_every_other(nodes: &[TestNode]) -> bool {
    nodes.iter().all(|n| {
        let Ok((200, body)) = http_get(&n.http, "/peers") else {
            return false;
        };
        let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
        let peers = v["peers"].as_array().cloned().unwrap_or_default();
        nodes.iter().filter(|o| o.gossip != n.gossip).all(|o| {
            peers.iter().any(|p| {
                p["gossip_addr"] == o.gossip.as_str()
                    && p["http_addr"] == o.http.as_str()
                    && p["name"] == o.name.as_str()
                    && p["reachable"] == true
            })
        })
    })
}

fn converge_under_load(n: usize, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_chain(dir.path(), n);
    let expected = concurrent_load(&nodes, 4, 60, seed);
    let refs: Vec<&TestNode> = nodes.iter().collect();
    wait_converged(&refs, &expected, Duration::from_secs(20));
    // Hellos spread names and HTTP addresses along the chain's links.
    common::wait_until(
        "every node to list its direct peers",
        Duration::from_secs(10),
        || nodes.windows(2).all(every_node_lists_every_other),
    );
}

#[test]
fn three_nodes_reach_the_exact_sums() {
    converge_under_load(3, 3);
}

#[test]
fn five_nodes_reach_the_exact_sums() {
    converge_under_load(5, 5);
}

#[test]
fn a_killed_node_restarted_without_wal_rejoins_and_nothing_is_lost_or_doubled() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = start_chain(dir.path(), 3);
    let mut expected = concurrent_load(&nodes, 3, 30, 42);
    {
        let refs: Vec<&TestNode> = nodes.iter().collect();
        wait_converged(&refs, &expected, Duration::from_secs(20));
    }
    let (gossip, http) = (nodes[2].gossip.clone(), nodes[2].http.clone());
    let seeds = [nodes[0].gossip.clone()];
    nodes[2].proc.kill();
    nodes.pop();

    let agent = agent();
    apply_op(&agent, &nodes[0].http, "orders", true, 7);
    *expected.entry("orders".into()).or_default() += 7;

    let restarted = start_node(dir.path(), "n2-again", (&gossip, &http), &[&seeds[0]], &[]);
    apply_op(&agent, &restarted.http, "orders", false, 2);
    apply_op(&agent, &restarted.http, "fresh", true, 11);
    *expected.entry("orders".into()).or_default() -= 2;
    expected.insert("fresh".into(), 11);
    nodes.push(restarted);

    let refs: Vec<&TestNode> = nodes.iter().collect();
    wait_converged(&refs, &expected, Duration::from_secs(20));

    // The restarted node wrote under a new origin; its old origin's totals were kept.
    let (_, body) = http_get(&nodes[0].http, "/counters/orders").unwrap();
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let origins: Vec<&str> = v["origins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["origin"].as_str().unwrap())
        .collect();
    assert!(
        origins.iter().any(|o| o.starts_with("n2-again/")),
        "no origin of the restarted node in {origins:?}"
    );
}
