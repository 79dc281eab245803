//! A peer that refuses connections (killed) and a peer that accepts but never reads
//! (SIGSTOPped, so the kernel still accepts for it) must not slow increments on the
//! other nodes: every link has its own writer thread and bounded queue, so the event
//! loop never waits on a socket. Both are members when they go bad, so the first
//! seconds, before membership declares them dead, are measured. Compared with a healthy
//! cluster in the same test, with a generous bound.

mod common;

use common::cluster::{apply_op, node_addrs, start_node, wait_converged, TestNode};
use common::{agent, get_json, wait_until};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn pair(dir: &std::path::Path, prefix: &str) -> (TestNode, TestNode) {
    let (ga, ha) = node_addrs();
    let a = start_node(dir, &format!("{prefix}a"), (&ga, &ha), &[], &[]);
    let (gb, hb) = node_addrs();
    let b = start_node(dir, &format!("{prefix}b"), (&gb, &hb), &[&a.gossip], &[]);
    (a, b)
}

fn p50(samples: &mut [Duration]) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn peer_state(node: &TestNode, name: &str) -> Option<String> {
    let v = get_json(&node.http, "/members")?;
    v["members"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == name)
        .and_then(|m| m["state"].as_str().map(String::from))
}

#[test]
fn refusing_and_black_holed_peers_do_not_slow_increments() {
    let dir = tempfile::tempdir().unwrap();
    let (ha, hb) = pair(dir.path(), "healthy-");
    let (sa, sb) = pair(dir.path(), "burdened-");
    let (gc, hc) = node_addrs();
    let mut refusing = start_node(dir.path(), "refusing", (&gc, &hc), &[&sa.gossip], &[]);
    let (gd, hd) = node_addrs();
    let black_hole = start_node(dir.path(), "black-hole", (&gd, &hd), &[&sa.gossip], &[]);
    wait_until(
        "the burdened node to have its soon-bad peers as members",
        Duration::from_secs(10),
        || {
            peer_state(&sa, "refusing").as_deref() == Some("alive")
                && peer_state(&sa, "black-hole").as_deref() == Some("alive")
        },
    );
    refusing.proc.kill();
    let stopped = std::process::Command::new("kill")
        .args(["-STOP", &black_hole.proc.pid().to_string()])
        .status()
        .expect("kill -STOP");
    assert!(stopped.success());

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
    // A write that waited on a bad peer would wait for seconds (a connect or write
    // timeout); the slack absorbs a loaded machine's noise on sub-millisecond medians.
    assert!(
        burdened <= healthy * 5 + Duration::from_millis(50),
        "bad peers slowed increments: p50 {burdened:?} against {healthy:?}"
    );

    // Each pair still converges exactly: 100 increments of 2 and 100 decrements of 1.
    let expected = BTreeMap::from([("c".to_owned(), 100)]);
    wait_converged(&[&ha, &hb], &expected, Duration::from_secs(10));
    wait_converged(&[&sa, &sb], &expected, Duration::from_secs(10));
    drop(black_hole);
}
