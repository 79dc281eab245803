//! `gctr inc`, `gctr dec`, `gctr get` (and `gctr node`'s argument checks) run as real
//! processes: exit 0 on success, 1 with a clear `gctr:` message when the operation
//! fails, 2 on a usage error.

mod common;

use common::cluster::{node_addrs, start_node};
use common::{free_addr, run_gctr, stderr, stdout, wait_until};
use std::time::Duration;

#[test]
fn inc_dec_get_succeed_against_a_node() {
    let dir = tempfile::tempdir().unwrap();
    let (g, h) = node_addrs();
    let node = start_node(dir.path(), "cli", (&g, &h), &[], &[]);
    let http = node.http.as_str();

    let o = run_gctr(&["inc", "--http", http]);
    assert_eq!(
        (o.status.code(), stdout(&o).trim()),
        (Some(0), "1"),
        "{}",
        stderr(&o)
    );
    let o = run_gctr(&["inc", "hits/today", "--by", "10", "--http", http]);
    assert_eq!((o.status.code(), stdout(&o).trim()), (Some(0), "10"));
    let o = run_gctr(&[
        "dec",
        "hits/today",
        "--by",
        "3",
        "--http",
        &format!("http://{http}/"),
    ]);
    assert_eq!((o.status.code(), stdout(&o).trim()), (Some(0), "7"));
    let o = run_gctr(&["get", "hits/today", "--http", http]);
    assert_eq!((o.status.code(), stdout(&o).trim()), (Some(0), "7"));
    let o = run_gctr(&["get", "--http", http, "--json"]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(
        (v["name"].as_str(), v["value"].as_i64()),
        (Some("default"), Some(1))
    );
    let o = run_gctr(&["inc", "x", "--json", "--http", http]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v, serde_json::json!({"name": "x", "value": 1}));
}

#[test]
fn failures_exit_1_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let (g, h) = node_addrs();
    let node = start_node(dir.path(), "cli", (&g, &h), &[], &[]);
    let nowhere = free_addr().to_string();
    for cmd in ["inc", "dec", "get"] {
        let o = run_gctr(&[cmd, "--http", &nowhere]);
        assert_eq!(o.status.code(), Some(1), "{cmd}: {}", stderr(&o));
        assert!(
            stderr(&o).starts_with("gctr: cannot reach the node at"),
            "{cmd}: {}",
            stderr(&o)
        );
    }
    let max = i64::MAX.to_string();
    assert_eq!(
        run_gctr(&["inc", "--by", &max, "--http", &node.http])
            .status
            .code(),
        Some(0)
    );
    let o = run_gctr(&["inc", "--http", &node.http]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("refused (HTTP 400)"), "{}", stderr(&o));
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["inc", "--by", "0"][..],
        &["dec", "--by", "abc"],
        &["get", "a", "b"],
        &["get", "--by", "2"],
        &["get", "--node", "n1", "--http", "127.0.0.1:1"],
        &["peers", "extra"],
        &[
            "node",
            "--addr",
            "127.0.0.1:1",
            "--heartbeat-interval",
            "1s",
        ],
        &["inc", "--bogus"],
        &["node"],
        &["node", "--addr", "127.0.0.1:65530"],
        &["node", "--addr", "127.0.0.1:1", "--fanout", "0"],
    ] {
        let o = run_gctr(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).starts_with("gctr: "), "{args:?}: {}", stderr(&o));
        // The hint names the command's own help.
        let hint = format!("gctr: try `gctr {} --help`", args[0]);
        assert!(stderr(&o).contains(&hint), "{args:?}: {}", stderr(&o));
    }
    let o = run_gctr(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("commands: discovery, node, inc"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("try `gctr --help`"), "{}", stderr(&o));
    for cmd in gctr::cli::COMMANDS {
        let o = run_gctr(&[cmd, "--help"]);
        assert_eq!(o.status.code(), Some(0), "{cmd}: {}", stderr(&o));
        assert!(stdout(&o).contains("Usage: gctr"), "{cmd}");
    }
}

#[test]
fn get_all_shows_every_node_and_whether_they_agree() {
    let dir = tempfile::tempdir().unwrap();
    let (g, h) = node_addrs();
    let a = start_node(dir.path(), "a", (&g, &h), &[], &[]);
    let (g2, h2) = node_addrs();
    let b = start_node(dir.path(), "b", (&g2, &h2), &[&a.gossip], &[]);
    assert_eq!(
        run_gctr(&["inc", "--by", "4", "--http", &b.http])
            .status
            .code(),
        Some(0)
    );

    let mut last = None;
    wait_until(
        "get --all to report agreement",
        Duration::from_secs(10),
        || {
            let o = run_gctr(&["get", "--all", "--http", &a.http]);
            // Agreement of both nodes, once b has joined a's membership.
            let agreed = o.status.code() == Some(0) && stdout(&o).contains(&b.http);
            last = Some(o);
            agreed
        },
    );
    let out = stdout(last.as_ref().unwrap());
    assert!(out.contains("all 2 nodes agree"), "{out}");
    assert!(out.contains(&b.http) && out.contains(&a.http), "{out}");

    let o = run_gctr(&["get", "--all", "--json", "--http", &a.http]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["agree"], true);
    let values: Vec<i64> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["value"].as_i64().unwrap())
        .collect();
    assert_eq!(values, vec![4, 4]);

    drop(b);
    let o = run_gctr(&["get", "--all", "--http", &a.http]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("could not be asked"), "{}", stderr(&o));
}
