//! A peer that refuses connections and a peer that accepts but never reads must not slow
//! increments on the other nodes: every peer has its own writer thread and bounded
//! queue, so the event loop never waits on a socket. Compared with a healthy cluster in
//! the same test, with a generous bound.

mod common;

use common::cluster::{apply_op, node_addrs, start_node, wait_converged, TestNode};
use common::{agent, free_addr, http_get, wait_until};
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::time::{Duration, Instant};

fn pair(dir: &std::path::Path, prefix: &str, extra_seeds: &[&str]) -> (TestNode, TestNode) {
    let (ga, ha) = node_addrs();
    let mut seeds = extra_seeds.to_vec();
    let a = start_node(dir, &format!("{prefix}a"), (&ga, &ha), &seeds, &[]);
    seeds.push(&a.gossip);
    let (gb, hb) = node_addrs();
    let b = start_node(dir, &format!("{prefix}b"), (&gb, &hb), &seeds, &[]);
    (a, b)
}

fn p50(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn peer_reachable(node: &TestNode, gossip: &str) -> Option<bool> {
    let (_, body) = http_get(&node.http, "/peers").ok()?;
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["peers"]
        .as_array()?
        .iter()
        .find(|p| p["gossip_addr"] == gossip)
        .and_then(|p| p["reachable"].as_bool())
}

#[test]
fn refusing_and_black_holed_peers_do_not_slow_increments() {
    let dir = tempfile::tempdir().unwrap();
    let refusing = free_addr().to_string();
    let black_hole = TcpListener::bind("127.0.0.1:0").unwrap();
    let black_hole_addr = black_hole.local_addr().unwrap().to_string();

    let (ha, hb) = pair(dir.path(), "healthy-", &[]);
    let (sa, sb) = pair(dir.path(), "burdened-", &[&refusing, &black_hole_addr]);

    wait_until(
        "the burdened node to see its bad peers",
        Duration::from_secs(10),
        || {
            peer_reachable(&sa, &refusing) == Some(false)
                && peer_reachable(&sa, &black_hole_addr) == Some(true)
        },
    );

    let agent = agent();
    let (mut healthy, mut burdened) = (Vec::new(), Vec::new());
    for round in 0..20 {
        for (node, samples) in [(&ha, &mut healthy), (&sa, &mut burdened)] {
            for _ in 0..10 {
                let t = Instant::now();
                let increment = round % 2 == 0;
                apply_op(
                    &agent,
                    &node.http,
                    "c",
                    increment,
                    if increment { 2 } else { 1 },
                );
                samples.push(t.elapsed());
            }
        }
    }
    let (healthy, burdened) = (p50(&mut healthy), p50(&mut burdened));
    eprintln!("p50 increment latency: healthy {healthy:?}, with bad peers {burdened:?}");
    assert!(
        burdened <= healthy * 5 + Duration::from_millis(5),
        "bad peers slowed increments: p50 {burdened:?} against {healthy:?}"
    );

    // Each pair still converges exactly: 100 increments of 2 and 100 decrements of 1.
    let expected = BTreeMap::from([("c".to_owned(), 100)]);
    wait_converged(&[&ha, &hb], &expected, Duration::from_secs(10));
    wait_converged(&[&sa, &sb], &expected, Duration::from_secs(10));
    drop(black_hole);
}
