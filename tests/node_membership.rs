//! Membership with real `gctr node` processes: joins through a chain of single seeds, a
//! killed node declared dead, a SIGSTOPped node suspected, declared dead and refuting
//! after SIGCONT, a clean stop that shows `left`, a restart with new data replacing the
//! old entry at once, an operator's removal and join. Times are printed; the bounds
//! asserted are generous, the figures to beat are in `scripts/bench.sh`.

mod common;

use common::cluster::{apply_op, node_addrs, start_node, wait_converged, TestNode};
use common::{agent, get_json, run_gctr, wait_until};
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

/// Each node's state of `name` in `node`'s view, if it knows `name`.
fn state_of(node: &TestNode, name: &str) -> Option<String> {
    let v = get_json(&node.http, "/members")?;
    v["members"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == name)
        .and_then(|m| m["state"].as_str().map(String::from))
}

/// `name`'s origin in `node`'s view.
fn origin_of(node: &TestNode, name: &str) -> Option<String> {
    let v = get_json(&node.http, "/members")?;
    v["members"]
        .as_array()?
        .iter()
        .find(|m| m["name"] == name)
        .and_then(|m| m["origin"].as_str().map(String::from))
}

fn all_alive(nodes: &[&TestNode]) -> bool {
    nodes.iter().all(|n| {
        nodes
            .iter()
            .all(|m| state_of(n, &m.name).as_deref() == Some("alive"))
    })
}

fn signal(node: &TestNode, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &node.proc.pid().to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {sig} {}", node.name);
}

/// Starts `n` nodes, each seeded with the one before it only.
fn chain(dir: &std::path::Path, n: usize, extra: &[&str]) -> Vec<TestNode> {
    let mut nodes: Vec<TestNode> = Vec::new();
    for i in 0..n {
        let (g, h) = node_addrs();
        let seeds: Vec<&str> = nodes
            .last()
            .map(|p| p.gossip.as_str())
            .into_iter()
            .collect();
        nodes.push(start_node(dir, &format!("m{i}"), (&g, &h), &seeds, extra));
    }
    nodes
}

#[test]
fn a_chain_of_single_seeds_becomes_one_cluster_and_a_killed_node_is_declared_dead() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut nodes = chain(dir.path(), 5, &[]);
    let refs: Vec<&TestNode> = nodes.iter().collect();
    wait_until(
        "all five to list each other alive",
        Duration::from_secs(15),
        || all_alive(&refs),
    );
    println!(
        "chain of 5: one membership {:?} after the first start",
        started.elapsed()
    );

    let killed_at = Instant::now();
    nodes[0].proc.kill();
    let rest: Vec<&TestNode> = nodes[1..].iter().collect();
    wait_until(
        "the others to declare m0 dead",
        Duration::from_secs(10),
        || {
            rest.iter()
                .all(|n| state_of(n, "m0").as_deref() == Some("dead"))
        },
    );
    println!("m0 killed: dead everywhere {:?} later", killed_at.elapsed());

    let agent = agent();
    apply_op(&agent, &nodes[4].http, "c", true, 5);
    apply_op(&agent, &nodes[1].http, "c", false, 2);
    let expected = BTreeMap::from([("c".to_owned(), 3)]);
    wait_converged(&rest, &expected, Duration::from_secs(10));
}

#[test]
fn a_stopped_node_is_suspected_then_dead_and_refutes_once_it_runs_again() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = chain(dir.path(), 3, &[]);
    let refs: Vec<&TestNode> = nodes.iter().collect();
    wait_until("one membership", Duration::from_secs(10), || {
        all_alive(&refs)
    });

    signal(&nodes[2], "-STOP");
    let stopped_at = Instant::now();
    let mut seen = Vec::new();
    let agent = agent();
    let mut took = Vec::new();
    wait_until("m2 declared dead", Duration::from_secs(15), || {
        let t = Instant::now();
        apply_op(&agent, &nodes[0].http, "c", true, 1);
        took.push(t.elapsed());
        let state = state_of(&nodes[0], "m2").unwrap_or_default();
        if seen.last() != Some(&state) {
            seen.push(state.clone());
        }
        state == "dead"
    });
    took.sort();
    let typical = took[took.len() / 2];
    println!(
        "m2 stopped: {seen:?} over {:?}; increments on m0 meanwhile: median {typical:?}, \
         slowest {:?}",
        stopped_at.elapsed(),
        took.last()
    );
    // The suspect state can be shorter than a poll: m0's log holds every change.
    let log = std::fs::read_to_string(dir.path().join("m0.log")).expect("m0's log");
    assert!(
        log.lines()
            .any(|l| l.contains("member m2 (") && l.contains(" is suspect (was alive")),
        "m0 never suspected m2: {seen:?}"
    );
    // Writes do not wait on a stopped member (they would, for seconds, until it is dead).
    assert!(
        typical < Duration::from_secs(1),
        "increments took {typical:?} (median) while a member was stopped"
    );

    signal(&nodes[2], "-CONT");
    wait_until("m2 alive again everywhere", Duration::from_secs(15), || {
        all_alive(&refs)
    });
    // m0 took one increment per poll while m2 was stopped; m2 adds 100 once back.
    let before = get_json(&nodes[0].http, "/counters/c").unwrap()["value"]
        .as_i64()
        .unwrap();
    apply_op(&agent, &nodes[2].http, "c", true, 100);
    let expected = BTreeMap::from([("c".to_owned(), before + 100)]);
    wait_converged(&refs, &expected, Duration::from_secs(10));
}

#[test]
fn a_clean_stop_shows_left_and_never_dead() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = chain(dir.path(), 3, &[]);
    let refs: Vec<&TestNode> = nodes.iter().collect();
    wait_until("one membership", Duration::from_secs(10), || {
        all_alive(&refs)
    });
    assert_eq!(nodes[2].proc.terminate(Duration::from_secs(10)), Some(0));
    let mut seen = Vec::new();
    wait_until("m2 left everywhere", Duration::from_secs(10), || {
        let states: Vec<String> = nodes[..2]
            .iter()
            .map(|n| state_of(n, "m2").unwrap_or_default())
            .collect();
        seen.extend(states.iter().cloned());
        states.iter().all(|s| s == "left")
    });
    assert!(
        seen.iter().all(|s| s == "alive" || s == "left"),
        "a clean stop was seen as {seen:?}"
    );
}

#[test]
fn a_restart_with_new_data_under_the_same_name_replaces_the_old_entry_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = chain(dir.path(), 2, &[]);
    let (g, h) = node_addrs();
    let old_wal = dir.path().join("old-wal");
    let mut r = start_node(
        dir.path(),
        "r",
        (&g, &h),
        &[&nodes[0].gossip],
        &["--wal", old_wal.to_str().unwrap()],
    );
    wait_until("r alive on m0", Duration::from_secs(10), || {
        state_of(&nodes[0], "r").as_deref() == Some("alive")
    });
    let old_origin = origin_of(&nodes[0], "r").unwrap();
    r.proc.kill();

    let new_wal = dir.path().join("new-wal");
    let (g2, h2) = node_addrs();
    let restarted_at = Instant::now();
    r = start_node(
        dir.path(),
        "r",
        (&g2, &h2),
        &[&nodes[1].gossip],
        &["--wal", new_wal.to_str().unwrap()],
    );
    let new_origin = origin_of(&r, "r").unwrap();
    assert_ne!(old_origin, new_origin);
    wait_until("m0 to hold r's new run", Duration::from_secs(5), || {
        origin_of(&nodes[0], "r").as_deref() == Some(new_origin.as_str())
            && state_of(&nodes[0], "r").as_deref() == Some("alive")
    });
    println!(
        "r restarted with new data: replaced on m0 {:?} later",
        restarted_at.elapsed()
    );
    let v = get_json(&nodes[0].http, "/members").unwrap();
    let entries = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["name"] == "r")
        .count();
    assert_eq!(entries, 1, "{v}");
    nodes.push(r);
}

#[test]
fn an_operator_removes_a_member_and_joins_it_again() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = chain(dir.path(), 3, &[]);
    let refs: Vec<&TestNode> = nodes.iter().collect();
    wait_until("one membership", Duration::from_secs(10), || {
        all_alive(&refs)
    });

    let o = run_gctr(&["remove", "m2", "--http", &nodes[0].http]);
    assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));
    wait_until("m2 left everywhere", Duration::from_secs(10), || {
        refs.iter()
            .all(|n| state_of(n, "m2").as_deref() == Some("left"))
    });
    let o = run_gctr(&["remove", "nobody", "--http", &nodes[0].http]);
    assert_eq!(o.status.code(), Some(1), "{}", common::stdout(&o));

    let o = run_gctr(&["join", &nodes[0].gossip, "--http", &nodes[2].http]);
    assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));
    wait_until("m2 alive again everywhere", Duration::from_secs(10), || {
        all_alive(&refs)
    });
}

#[test]
fn two_separate_nodes_become_one_cluster_through_post_members() {
    let dir = tempfile::tempdir().unwrap();
    let (ga, ha) = node_addrs();
    let a = start_node(dir.path(), "solo-a", (&ga, &ha), &[], &[]);
    let (gb, hb) = node_addrs();
    let b = start_node(dir.path(), "solo-b", (&gb, &hb), &[], &[]);
    assert_eq!(state_of(&a, "solo-b"), None);
    let o = run_gctr(&["join", &b.gossip, "--http", &a.http, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));
    wait_until(
        "a and b to know each other",
        Duration::from_secs(10),
        || all_alive(&[&a, &b]),
    );
    let o = run_gctr(&["join", "no-port", "--http", &a.http]);
    assert_eq!(o.status.code(), Some(1), "{}", common::stdout(&o));
    assert!(
        common::stderr(&o).contains("HTTP 400"),
        "{}",
        common::stderr(&o)
    );
}
