//! Idempotency keys with real processes: `Idempotency-Key` on the HTTP API and `gctr inc
//! --id`. A keyed increment retried on the same node, on other nodes and after a
//! `kill -9` and restart counts once; the same key with other parameters is refused with
//! 422 and changes nothing; a key that breaks the rules is refused with 400; the same key
//! sent to two nodes at once counts once, and ends resolved on every node.

mod common;

use common::cluster::{figure, start_node, TestNode};
use common::{agent, free_addr, get_json, run_gctr, stderr, stdout, wait_until};
use std::path::Path;
use std::time::Duration;

/// Sends an operation with `key`; returns the status and the answered value (if 200).
fn keyed(http: &str, counter: &str, verb: &str, by: u64, key: &str) -> (u16, Option<i64>) {
    let url = format!("http://{http}/counters/{counter}/{verb}?by={by}");
    match agent().post(&url).set("Idempotency-Key", key).call() {
        Ok(resp) => {
            let v: serde_json::Value = resp.into_json().expect("a JSON answer");
            (200, v["value"].as_i64())
        }
        Err(ureq::Error::Status(status, _)) => (status, None),
        Err(e) => panic!("POST {url}: {e}"),
    }
}

fn value(node: &TestNode, counter: &str) -> Option<i64> {
    get_json(&node.http, &format!("/counters/{counter}")).and_then(|v| v["value"].as_i64())
}

/// Asserts that `GET /counters/{counter}` adds up: the live origins' totals, the retired
/// sum and what keys count by acceptance make the value.
fn assert_parts_add_up(node: &TestNode, counter: &str) {
    let view = get_json(&node.http, &format!("/counters/{counter}")).expect("the counter");
    let net = |v: &serde_json::Value| v["p"].as_i64().unwrap() - v["n"].as_i64().unwrap();
    let origins: i64 = view["origins"].as_array().unwrap().iter().map(net).sum();
    let parts = origins + net(&view["retired"]) + net(&view["accepted"]);
    assert_eq!(Some(parts), view["value"].as_i64(), "{}: {view}", node.name);
}

fn wait_value(nodes: &[TestNode], counter: &str, want: i64) {
    for node in nodes {
        wait_until(
            &format!("{} to report {counter} = {want}", node.name),
            Duration::from_secs(15),
            || value(node, counter) == Some(want),
        );
    }
}

fn start(logs: &Path, name: &str, addrs: (&str, &str), seeds: &[&str], wal: &Path) -> TestNode {
    let wal = wal.join(name);
    start_node(
        logs,
        name,
        addrs,
        seeds,
        &["--wal", wal.to_str().unwrap(), "--gossip-interval", "50ms"],
    )
}

#[test]
fn a_keyed_increment_counts_once_wherever_and_however_often_it_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let addrs: Vec<(String, String)> = (0..3)
        .map(|_| (free_addr().to_string(), free_addr().to_string()))
        .collect();
    let gossip: Vec<&str> = addrs.iter().map(|(g, _)| g.as_str()).collect();
    let names = ["a", "b", "c"];
    let mut nodes: Vec<TestNode> = (0..3)
        .map(|i| {
            let seeds: Vec<&str> = (0..3).filter(|&j| j != i).map(|j| gossip[j]).collect();
            start(
                dir.path(),
                names[i],
                (&addrs[i].0, &addrs[i].1),
                &seeds,
                dir.path(),
            )
        })
        .collect();

    // A node that started without state takes keys once a peer answered its pull.
    for node in &nodes {
        wait_until(
            &format!("{} to take keys", node.name),
            Duration::from_secs(15),
            || get_json(&node.http, "/status").is_some_and(|s| s["keys"]["ready"] == true),
        );
    }

    // First acceptance, then retries on the same node and, once it spread, on the others.
    assert_eq!(
        keyed(&nodes[0].http, "orders", "increment", 5, "order-1"),
        (200, Some(5))
    );
    assert_parts_add_up(&nodes[0], "orders");
    assert_eq!(
        keyed(&nodes[0].http, "orders", "increment", 5, "order-1"),
        (200, Some(5))
    );
    wait_value(&nodes, "orders", 5);
    assert_eq!(
        keyed(&nodes[1].http, "orders", "increment", 5, "order-1"),
        (200, Some(5))
    );
    let cli = run_gctr(&[
        "inc",
        "orders",
        "--by",
        "5",
        "--id",
        "order-1",
        "--http",
        &nodes[2].http,
    ]);
    assert!(cli.status.success(), "{}", stderr(&cli));
    assert_eq!(stdout(&cli).trim(), "5");

    // Another operation under the key is refused and changes nothing, on any node.
    assert_eq!(
        keyed(&nodes[2].http, "orders", "increment", 6, "order-1").0,
        422
    );
    assert_eq!(
        keyed(&nodes[1].http, "orders", "decrement", 5, "order-1").0,
        422
    );
    assert_eq!(
        keyed(&nodes[0].http, "other", "increment", 5, "order-1").0,
        422
    );
    let cli = run_gctr(&[
        "dec",
        "orders",
        "--by",
        "5",
        "--id",
        "order-1",
        "--http",
        &nodes[0].http,
    ]);
    assert!(!cli.status.success());
    assert!(stderr(&cli).contains("HTTP 422"), "{}", stderr(&cli));
    assert_eq!(
        keyed(&nodes[0].http, "orders", "increment", 1, &"k".repeat(129)).0,
        400
    );
    assert_eq!(keyed(&nodes[0].http, "orders", "increment", 1, "").0, 400);
    let cli = run_gctr(&["inc", "--id", &"k".repeat(129), "--http", &nodes[0].http]);
    assert_eq!(
        cli.status.code(),
        Some(2),
        "a key over 128 bytes is a usage error"
    );

    // One new key sent to two nodes at once (a client that retried before the first
    // answer came): both accept it, every node counts it once.
    let (a, b) = (nodes[0].http.clone(), nodes[1].http.clone());
    let first = std::thread::spawn(move || keyed(&a, "orders", "increment", 7, "order-2"));
    let second = keyed(&b, "orders", "increment", 7, "order-2");
    assert_eq!(first.join().unwrap().0, 200);
    assert_eq!(second.0, 200);
    wait_value(&nodes, "orders", 12);
    for node in &nodes {
        wait_until(
            &format!("{} to resolve every acceptance", node.name),
            Duration::from_secs(15),
            || figure(node, &["keys", "live"]) == 0 && figure(node, &["keys", "held"]) == 2,
        );
    }
    assert_eq!(
        value(&nodes[2], "orders"),
        Some(12),
        "resolving changed the value"
    );
    for node in &nodes {
        assert_parts_add_up(node, "orders");
        let accepted = get_json(&node.http, "/counters/orders").unwrap()["accepted"].clone();
        assert_eq!(
            accepted,
            serde_json::json!({"p": 0, "n": 0}),
            "all resolved"
        );
    }
    let retries: u64 = nodes.iter().map(|n| figure(n, &["keys", "retries"])).sum();
    assert!(retries >= 3, "retries recognised: {retries}");

    // The keys survive a kill -9: a retry on the restarted node still counts once.
    nodes[1].proc.kill();
    let seeds = [gossip[0], gossip[2]];
    nodes[1] = start(
        dir.path(),
        "b",
        (&addrs[1].0, &addrs[1].1),
        &seeds,
        dir.path(),
    );
    common::cluster::wait_writable(&nodes[1], Duration::from_secs(15));
    assert_eq!(
        keyed(&nodes[1].http, "orders", "increment", 7, "order-2"),
        (200, Some(12))
    );
    assert_eq!(
        keyed(&nodes[1].http, "orders", "increment", 5, "order-1"),
        (200, Some(12))
    );
    wait_value(&nodes, "orders", 12);
    let metrics = common::http_get(&nodes[0].http, "/metrics").unwrap().1;
    assert!(
        metrics.contains("gctr_idempotency_keys 2"),
        "the metrics show the keys held:\n{metrics}"
    );
}
