//! Nodes that join through discovery, as real processes: nodes started with nothing but
//! `--discovery` find each other and converge, a late node is learned by all and catches
//! up, a killed node leaves discovery after the TTL and returns when restarted, a clean
//! stop deregisters at once, the cluster keeps converging while discovery is down (each
//! node logging the outage once), and a restarted discovery is whole again within about
//! one heartbeat interval. Also `--node NAME` and `gctr peers` against such a cluster.

mod common;

use common::cluster::{node_addrs, start_node, wait_converged, TestNode};
use common::{free_addr, gctr_bin, get_json, http_get, run_gctr, stderr, stdout, wait_until, Proc};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const HEARTBEAT: Duration = Duration::from_millis(300);
const HEARTBEAT_ARG: &str = "300ms";
const TTL_ARG: &str = "1s";
const TTL: Duration = Duration::from_secs(1);
/// How long a wait for something a few heartbeats bring may take on a loaded machine:
/// the times taken are printed, speed is the benchmarks' business.
const PATIENCE: Duration = Duration::from_secs(15);

/// Starts `gctr discovery` on `addr` (so a restart can reuse it) and waits until it
/// answers; its log goes to `log_dir/discovery.log`.
fn start_discovery(log_dir: &Path, addr: &str) -> Proc {
    let port = addr.rsplit_once(':').expect("host:port").1;
    let log = log_dir.join("discovery.log");
    let proc = Proc::spawn(
        "discovery",
        &["discovery", "--port", port, "--ttl", TTL_ARG],
        Some(&log),
    );
    wait_until(
        "discovery to answer /health",
        Duration::from_secs(10),
        || matches!(http_get(addr, "/health"), Ok((200, _))),
    );
    proc
}

/// Starts a node that knows nothing but the discovery server.
fn start_member(log_dir: &Path, name: &str, discovery: &str, addrs: (&str, &str)) -> TestNode {
    let url = format!("http://{discovery}");
    start_node(
        log_dir,
        name,
        addrs,
        &[],
        &["--discovery", &url, "--heartbeat-interval", HEARTBEAT_ARG],
    )
}

fn start_members(log_dir: &Path, names: &[&str], discovery: &str) -> Vec<TestNode> {
    names
        .iter()
        .map(|name| {
            let (g, h) = node_addrs();
            start_member(log_dir, name, discovery, (&g, &h))
        })
        .collect()
}

/// Names of the members discovery lists (empty when it does not answer).
fn discovery_names(discovery: &str) -> BTreeSet<String> {
    get_json(discovery, "/peers")
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|m| m["name"].as_str().map(String::from))
        .collect()
}

/// How long ago discovery last heard from member `name`.
fn seen_ms_ago(discovery: &str, name: &str) -> u64 {
    get_json(discovery, "/peers")
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
        .iter()
        .find(|m| m["name"] == name)
        .and_then(|m| m["seen_ms_ago"].as_u64())
        .unwrap_or_else(|| panic!("discovery does not list {name}"))
}

/// Names of the peers in a node's `GET /peers`.
fn peer_names(node: &TestNode) -> BTreeSet<String> {
    get_json(&node.http, "/peers")
        .and_then(|v| v["peers"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p["name"].as_str().map(String::from))
        .collect()
}

/// Whether every node lists exactly every other node as a peer.
fn all_know_each_other(nodes: &[&TestNode]) -> bool {
    nodes.iter().all(|n| {
        let others: BTreeSet<String> = nodes
            .iter()
            .filter(|o| o.name != n.name)
            .map(|o| o.name.clone())
            .collect();
        peer_names(n) == others
    })
}

fn names(nodes: &[&TestNode]) -> BTreeSet<String> {
    nodes.iter().map(|n| n.name.clone()).collect()
}

/// Polls until `cond` holds and returns how long that took; panics after `timeout`.
fn time_until(what: &str, timeout: Duration, cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    wait_until(what, timeout, cond);
    start.elapsed()
}

fn counter_map(value: i64) -> BTreeMap<String, i64> {
    BTreeMap::from([("default".to_owned(), value)])
}

fn log_lines_with(log_dir: &Path, name: &str, needle: &str) -> usize {
    std::fs::read_to_string(log_dir.join(format!("{name}.log")))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(needle))
        .count()
}

#[test]
fn five_nodes_find_each_other_converge_and_learn_a_late_node() {
    let dir = tempfile::tempdir().unwrap();
    let discovery_addr = free_addr().to_string();
    let _discovery = start_discovery(dir.path(), &discovery_addr);
    let url = format!("http://{discovery_addr}");
    let nodes = start_members(dir.path(), &["1", "2", "3", "4", "5"], &discovery_addr);
    let all: Vec<&TestNode> = nodes.iter().collect();

    let took = time_until("every node to know the other four", PATIENCE, || {
        all_know_each_other(&all)
    });
    eprintln!("five nodes knew each other {took:?} after the last one was up");

    let o = run_gctr(&["inc", "--node", "3", "--discovery", &url, "--by", "5"]);
    assert_eq!(
        (o.status.code(), stdout(&o).trim()),
        (Some(0), "5"),
        "{}",
        stderr(&o)
    );
    let on_three = get_json(&nodes[2].http, "/counters/default").expect("node 3 answers");
    assert_eq!(on_three["value"], 5, "the increment went to node 3");
    assert!(
        on_three["origins"][0]["origin"]
            .as_str()
            .is_some_and(|o| o.starts_with("3/")),
        "{on_three}"
    );
    wait_converged(&all, &counter_map(5), Duration::from_secs(10));

    let (g, h) = node_addrs();
    let late = start_member(dir.path(), "6", &discovery_addr, (&g, &h));
    let mut six = all.clone();
    six.push(&late);
    let took = time_until("every node to know the late one", PATIENCE, || {
        all_know_each_other(&six)
    });
    eprintln!("the late node was known to all {took:?} after it was up");
    wait_converged(&six, &counter_map(5), Duration::from_secs(10));

    // `gctr peers` and `get --all` through `--node` see the whole cluster.
    let o = run_gctr(&["peers", "--node", "6", "--discovery", &url]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let table = stdout(&o);
    assert!(table.starts_with("node 6 "), "{table}");
    for name in ["1", "2", "3", "4", "5"] {
        assert!(
            table.lines().any(|l| l.starts_with(&format!("{name} "))),
            "{name} missing:\n{table}"
        );
    }
    let o = run_gctr(&["peers", "--http", &late.http, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).expect("JSON");
    assert_eq!(v["self"]["name"], "6");
    assert_eq!(v["peers"].as_array().map(Vec::len), Some(5));
    let o = run_gctr(&["get", "--all", "--node", "2", "--discovery", &url]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("all 6 nodes agree"), "{}", stdout(&o));
}

#[test]
fn killed_nodes_leave_after_the_ttl_stopped_ones_at_once_and_both_return() {
    let dir = tempfile::tempdir().unwrap();
    let discovery = free_addr().to_string();
    let _discovery = start_discovery(dir.path(), &discovery);
    let mut nodes = start_members(dir.path(), &["a", "b", "c"], &discovery);
    wait_until("discovery to list a, b and c", PATIENCE, || {
        discovery_names(&discovery).len() == 3
    });
    let addrs: Vec<(String, String)> = nodes
        .iter()
        .map(|n| (n.gossip.clone(), n.http.clone()))
        .collect();

    // SIGKILL: no deregistration, so b stays listed until its TTL runs out: at least
    // the TTL after the last heartbeat discovery had from it when asked before the kill.
    let asked = Instant::now();
    let seen_ago = Duration::from_millis(seen_ms_ago(&discovery, "b") + 1);
    nodes[1].proc.kill();
    let took = time_until("b to leave discovery", PATIENCE, || {
        !discovery_names(&discovery).contains("b")
    });
    eprintln!("killed b left discovery {took:?} after the kill");
    assert!(
        asked.elapsed() + seen_ago >= TTL,
        "b left {:?} after its last heartbeat, before its TTL could run out",
        asked.elapsed() + seen_ago
    );
    wait_until(
        "a and c to see b unreachable",
        Duration::from_secs(5),
        || {
            [&nodes[0], &nodes[2]].iter().all(|n| {
                get_json(&n.http, "/peers").is_some_and(|v| {
                    v["peers"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|p| p["name"] == "b" && p["reachable"] == false)
                })
            })
        },
    );
    let o = run_gctr(&["inc", "--http", &nodes[0].http, "--by", "3"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    wait_converged(
        &[&nodes[0], &nodes[2]],
        &counter_map(3),
        Duration::from_secs(10),
    );

    let (g, h) = &addrs[1];
    nodes[1] = start_member(dir.path(), "b", &discovery, (g, h));
    wait_until("b to return to discovery", PATIENCE, || {
        discovery_names(&discovery).contains("b")
    });
    let all: Vec<&TestNode> = nodes.iter().collect();
    wait_converged(&all, &counter_map(3), Duration::from_secs(10));

    // SIGTERM: the node deregisters on its way out, long before its TTL.
    assert_eq!(nodes[2].proc.terminate(Duration::from_secs(10)), Some(0));
    assert!(
        !discovery_names(&discovery).contains("c"),
        "c is still listed right after a clean stop"
    );
    assert_eq!(
        log_lines_with(dir.path(), "c", "deregistered c from discovery"),
        1
    );
}

#[test]
fn the_cluster_converges_without_discovery_and_a_restarted_one_refills() {
    let dir = tempfile::tempdir().unwrap();
    let discovery_addr = free_addr().to_string();
    let url = format!("http://{discovery_addr}");
    let mut discovery = start_discovery(dir.path(), &discovery_addr);
    let nodes = start_members(dir.path(), &["x", "y", "z"], &discovery_addr);
    let all: Vec<&TestNode> = nodes.iter().collect();
    wait_until("every node to know the others", PATIENCE, || {
        all_know_each_other(&all)
    });

    discovery.kill();
    let down = Instant::now();
    let outage = "cannot reach the discovery server";
    wait_until("every node to log the outage", PATIENCE, || {
        nodes
            .iter()
            .all(|n| log_lines_with(dir.path(), &n.name, outage) >= 1)
    });
    for (i, n) in nodes.iter().enumerate() {
        let o = run_gctr(&["inc", "--http", &n.http, "--by", &(i + 1).to_string()]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    wait_converged(&all, &counter_map(6), Duration::from_secs(10));
    assert!(all_know_each_other(&all), "a node forgot its peers");

    let o = run_gctr(&["get", "--node", "x", "--discovery", &url]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).starts_with(&format!("gctr: {outage}")),
        "{}",
        stderr(&o)
    );

    // Many failed ticks later, each node has still logged the outage only once.
    wait_until("ten heartbeat intervals of outage", PATIENCE, || {
        down.elapsed() >= HEARTBEAT * 10
    });
    for n in &nodes {
        assert_eq!(
            log_lines_with(dir.path(), &n.name, outage),
            1,
            "{} logged the outage more than once",
            n.name
        );
    }

    let _discovery = start_discovery(dir.path(), &discovery_addr);
    let took = time_until(
        "the restarted discovery to list every node",
        PATIENCE,
        || discovery_names(&discovery_addr) == names(&all),
    );
    eprintln!("restarted discovery listed every node {took:?} after it answered");
    wait_until("every node to log the return", PATIENCE, || {
        nodes
            .iter()
            .all(|n| log_lines_with(dir.path(), &n.name, "is reachable again") == 1)
    });
    let o = run_gctr(&["get", "--node", "z", "--discovery", &url]);
    assert_eq!(
        (o.status.code(), stdout(&o).trim()),
        (Some(0), "6"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn node_names_resolve_through_discovery_or_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let discovery = free_addr().to_string();
    let _discovery = start_discovery(dir.path(), &discovery);
    let nodes = start_members(dir.path(), &["left", "right"], &discovery);
    wait_until("discovery to list both", PATIENCE, || {
        discovery_names(&discovery).len() == 2
    });

    // GCTR_DISCOVERY names the server when --discovery is not given.
    let with_env = |args: &[&str]| {
        Command::new(gctr_bin())
            .args(args)
            .env("GCTR_DISCOVERY", format!("http://{discovery}"))
            .stdin(Stdio::null())
            .output()
            .expect("run gctr")
    };
    let o = with_env(&["inc", "--node", "right"]);
    assert_eq!(
        (o.status.code(), stdout(&o).trim()),
        (Some(0), "1"),
        "{}",
        stderr(&o)
    );
    let on_right = get_json(&nodes[1].http, "/counters/default").expect("right answers");
    assert_eq!(on_right["value"], 1);
    let o = with_env(&["dec", "--node", "right", "--by", "4"]);
    assert_eq!((o.status.code(), stdout(&o).trim()), (Some(0), "-3"));

    let o = with_env(&["get", "--node", "middle"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stderr(&o).trim(),
        "gctr: no node named \"middle\"; known nodes: left, right"
    );

    let nowhere = free_addr().to_string();
    for cmd in ["inc", "dec", "get", "peers"] {
        let o = run_gctr(&[cmd, "--node", "left", "--discovery", &nowhere]);
        assert_eq!(o.status.code(), Some(1), "{cmd}");
        assert!(
            stderr(&o).starts_with(&format!(
                "gctr: cannot reach the discovery server at http://{nowhere}"
            )),
            "{cmd}: {}",
            stderr(&o)
        );
    }

    for args in [
        &["inc", "--node", "left", "--http", &nodes[0].http][..],
        &["get", "--discovery", &discovery],
        &["peers", "--node"],
        &["peers", "default"],
    ] {
        let o = with_env(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).starts_with("gctr: "), "{args:?}");
    }
    assert_eq!(
        get_json(&nodes[1].http, "/counters/default").expect("right answers")["value"],
        -3,
        "a usage error changed a counter"
    );
}
