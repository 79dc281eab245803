//! Two processes must never write under one origin, tried with real nodes:
//!
//! - a data directory copied and started as a second node: both processes find each
//!   other under the same name, refuse writes with the documented 503, and once the copy
//!   is stopped the original writes again, every count exact;
//! - a backup restored over a node whose later writes its peers hold: the restarted node
//!   holds writes until a member's digest shows its origin ahead, takes a new
//!   incarnation, and nothing acknowledged is lost or counted twice;
//! - frames that claim a node's own origin, or versions and totals past their bounds,
//!   sent from a bare connection to an unkeyed cluster: refused, counted, and nothing
//!   changes.

mod common;

use common::cluster::{
    apply_op, counters, figure, node_addrs, start_node, wait_converged, wait_writable, TestNode,
};
use common::{agent, get_json, http_post, varint, wait_until};
use gctr::codec::{self, Frame};
use gctr::crdt::{CounterEntry, Origin, OriginDelta, MAX_VERSION};
use gctr::member::NodeName;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

const CONFLICT: &str = "origin conflict: another live process runs as";

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A cluster of `names` with WALs under `root`, each joining through the first.
fn cluster(root: &Path, names: &[&str]) -> Vec<TestNode> {
    let mut nodes: Vec<TestNode> = Vec::new();
    for name in names {
        let wal = root.join(name);
        let seeds: Vec<&str> = nodes
            .first()
            .map(|n| n.gossip.as_str())
            .into_iter()
            .collect();
        let (g, h) = node_addrs();
        nodes.push(start_node(
            root,
            name,
            (&g, &h),
            &seeds,
            &["--wal", wal.to_str().unwrap()],
        ));
    }
    let all: Vec<&TestNode> = nodes.iter().collect();
    for n in &all {
        wait_until(
            &format!("{} to see every member", n.name),
            Duration::from_secs(15),
            || {
                get_json(&n.http, "/members").is_some_and(|m| {
                    m["members"].as_array().is_some_and(|a| {
                        a.iter().filter(|m| m["state"] == "alive").count() == names.len()
                    })
                })
            },
        );
    }
    nodes
}

/// Increments `counter` by `by` on `node`; the status and body.
fn increment(node: &TestNode, counter: &str, by: u64) -> (u16, String) {
    http_post(
        &node.http,
        &format!("/counters/{counter}/increment?by={by}"),
        "",
    )
    .expect("POST")
}

fn writes_status(node: &TestNode) -> serde_json::Value {
    get_json(&node.http, "/status").expect("status")["writes"].clone()
}

#[test]
fn a_copied_data_directory_started_as_a_second_node_is_refused_until_the_copy_stops() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = cluster(dir.path(), &["n1", "n2", "n3"]);
    let a = agent();
    let mut expected = BTreeMap::new();
    apply_op(&a, &nodes[0].http, "c", true, 5);
    apply_op(&a, &nodes[1].http, "c", true, 2);
    expected.insert("c".to_owned(), 7);
    wait_converged(
        &nodes.iter().collect::<Vec<_>>(),
        &expected,
        Duration::from_secs(10),
    );

    // The copy, started on its own addresses, joins as n1 (the directory names it).
    let copy_dir_path = dir.path().join("copy");
    copy_dir(&dir.path().join("n1"), &copy_dir_path);
    let (g, h) = node_addrs();
    let mut copy = start_node(
        dir.path(),
        "n1-copy",
        (&g, &h),
        &[nodes[1].gossip.as_str()],
        &["--wal", copy_dir_path.to_str().unwrap(), "--name", "n1"],
    );

    // Both processes named n1 find each other and refuse writes, saying why.
    for node in [&nodes[0], &copy] {
        wait_until(
            &format!("{} to refuse writes", node.name),
            Duration::from_secs(15),
            || writes_status(node)["twin"].is_string(),
        );
        let (status, body) = increment(node, "c", 1);
        assert_eq!(status, 503, "{}: {body}", node.name);
        assert!(body.contains(CONFLICT), "{}: {body}", node.name);
    }
    // The rest of the cluster keeps taking writes.
    apply_op(&a, &nodes[2].http, "c", true, 10);
    expected.insert("c".to_owned(), 17);

    // The documented resolution: stop the copy. The original writes again.
    copy.proc.terminate(Duration::from_secs(10));
    wait_writable(&nodes[0], Duration::from_secs(15));
    apply_op(&a, &nodes[0].http, "c", true, 100);
    expected.insert("c".to_owned(), 117);
    wait_converged(
        &nodes.iter().collect::<Vec<_>>(),
        &expected,
        Duration::from_secs(15),
    );
    let log = std::fs::read_to_string(dir.path().join("n1.log")).unwrap();
    assert!(log.contains("another live process runs as n1"), "{log}");
}

#[test]
fn a_backup_restored_over_a_node_takes_a_new_incarnation_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = cluster(dir.path(), &["n1", "n2", "n3"]);
    let a = agent();
    let mut expected = BTreeMap::new();
    apply_op(&a, &nodes[0].http, "c", true, 4);
    expected.insert("c".to_owned(), 4);
    wait_converged(
        &nodes.iter().collect::<Vec<_>>(),
        &expected,
        Duration::from_secs(10),
    );

    // A backup of n1's directory, taken with n1 stopped; n1 then writes more.
    let (g, h) = (nodes[0].gossip.clone(), nodes[0].http.clone());
    nodes[0].proc.terminate(Duration::from_secs(10));
    let backup = dir.path().join("backup");
    copy_dir(&dir.path().join("n1"), &backup);
    let wal = dir.path().join("n1");
    let restart = |seeds: &str| {
        start_node(
            dir.path(),
            "n1",
            (&g, &h),
            &[seeds],
            &["--wal", wal.to_str().unwrap()],
        )
    };
    nodes[0] = restart(&nodes[1].gossip);
    wait_writable(&nodes[0], Duration::from_secs(15));
    let before = get_json(&nodes[0].http, "/status").unwrap()["origin"].clone();
    apply_op(&a, &nodes[0].http, "c", true, 30);
    apply_op(&a, &nodes[0].http, "d", true, 1);
    expected.insert("c".to_owned(), 34);
    expected.insert("d".to_owned(), 1);
    wait_converged(
        &nodes.iter().collect::<Vec<_>>(),
        &expected,
        Duration::from_secs(10),
    );

    // The backup is restored over n1, which comes back on its own address.
    nodes[0].proc.kill();
    std::fs::remove_dir_all(&wal).unwrap();
    copy_dir(&backup, &wal);
    nodes[0] = restart(&nodes[1].gossip);
    wait_writable(&nodes[0], Duration::from_secs(15));
    let status = get_json(&nodes[0].http, "/status").unwrap();
    assert_ne!(
        status["origin"], before,
        "the restored node reuses its old versions"
    );
    assert_eq!(status["writes"]["new_incarnations"], 1);

    apply_op(&a, &nodes[0].http, "c", true, 1);
    expected.insert("c".to_owned(), 35);
    wait_converged(
        &nodes.iter().collect::<Vec<_>>(),
        &expected,
        Duration::from_secs(10),
    );
    let log = std::fs::read_to_string(dir.path().join("n1.log")).unwrap();
    assert!(
        log.contains("now writing under the new incarnation"),
        "{log}"
    );
}

/// Sends `frames` after a Hello on a fresh connection and waits for the node to close it
/// or for a moment of silence (a valid frame keeps the connection open).
fn send_frames(gossip: &str, frames: &[Frame]) {
    let mut s = TcpStream::connect(gossip).unwrap();
    let hello = Frame::Hello {
        name: NodeName::new("intruder").unwrap(),
        gossip_addr: "127.0.0.1:1".into(),
        http_addr: "127.0.0.1:1".into(),
    };
    let mut bytes = codec::encode(&hello);
    for f in frames {
        bytes.extend(codec::encode(f));
    }
    s.write_all(&bytes).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let _ = s.read(&mut [0u8; 16]);
}

/// A frame's bytes with the first occurrence of `from` (a varint) replaced by `to`.
fn patched(frame: &Frame, from: u64, to: u64) -> Vec<u8> {
    let mut bytes = codec::encode(frame);
    let (old, new) = (varint(from), varint(to));
    let at = bytes
        .windows(old.len())
        .position(|w| w == old.as_slice())
        .expect("marker in frame");
    bytes.splice(at..at + old.len(), new);
    let len = (bytes.len() - codec::HEADER_LEN) as u32;
    bytes[codec::HEADER_LEN - 4..codec::HEADER_LEN].copy_from_slice(&len.to_be_bytes());
    bytes
}

#[test]
fn own_origin_and_out_of_bound_frames_from_a_bare_connection_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = cluster(dir.path(), &["n1", "n2", "n3"]);
    let a = agent();
    let mut expected = BTreeMap::new();
    apply_op(&a, &nodes[0].http, "c", true, 3);
    expected.insert("c".to_owned(), 3);
    let all: Vec<&TestNode> = nodes.iter().collect();
    wait_converged(&all, &expected, Duration::from_secs(10));
    let origin: Origin = {
        let s = get_json(&nodes[0].http, "/status").unwrap();
        let text = s["origin"].as_str().unwrap().to_owned();
        let (node, inc) = text.rsplit_once('/').unwrap();
        Origin::new(node, u64::from_str_radix(inc, 16).unwrap())
    };

    // The own-origin attack: a range end at the bound and a huge total for n1's origin.
    let claim = OriginDelta {
        origin: origin.clone(),
        from: 0,
        to: MAX_VERSION,
        entries: vec![CounterEntry {
            counter: "c".into(),
            p: 1_000_000_000_000_000,
            n: 0,
            version: MAX_VERSION,
            keyed: None,
        }],
    };
    send_frames(&nodes[0].gossip, &[Frame::Push { delta: vec![claim] }]);
    wait_until("n1 to count the claim", Duration::from_secs(10), || {
        figure(&nodes[0], &["gossip", "own_origin_claims"]) >= 1
    });
    // Never merged: n1 moved its writes to a new incarnation, so no later write of its
    // can meet the claim's versions.
    assert_eq!(figure(&nodes[0], &["writes", "new_incarnations"]), 1);

    // Past the bounds: a range end of 2^64-1 and a total above i64::MAX, to every node.
    let marker = 123_456_789;
    let made_up = |to: u64, p: u64| OriginDelta {
        origin: Origin::new("made-up", 1),
        from: 0,
        to,
        entries: vec![CounterEntry {
            counter: "c".into(),
            p,
            n: 0,
            version: 1,
            keyed: None,
        }],
    };
    for node in &nodes {
        let before = figure(node, &["transport", "inbound", "malformed_frames"]);
        let wide = Frame::Push {
            delta: vec![made_up(marker, 1)],
        };
        let big = Frame::Push {
            delta: vec![made_up(1, marker)],
        };
        for bytes in [
            patched(&wide, marker, u64::MAX),
            patched(&big, marker, i64::MAX as u64 + 1),
        ] {
            let mut s = TcpStream::connect(&node.gossip).unwrap();
            let hello = Frame::Hello {
                name: NodeName::new("intruder").unwrap(),
                gossip_addr: "127.0.0.1:1".into(),
                http_addr: "127.0.0.1:1".into(),
            };
            s.write_all(&codec::encode(&hello)).unwrap();
            s.write_all(&bytes).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
            assert!(
                matches!(s.read(&mut [0u8; 16]), Ok(0) | Err(_)),
                "connection left open"
            );
        }
        wait_until(
            "the refusals to be counted",
            Duration::from_secs(10),
            || figure(node, &["transport", "inbound", "malformed_frames"]) >= before + 2,
        );
    }

    // Nothing changed, and n1's writes still reach everyone.
    for node in &nodes {
        assert_eq!(
            counters(&node.http),
            Some(expected.clone()),
            "{}",
            node.name
        );
    }
    apply_op(&a, &nodes[0].http, "c", true, 1);
    expected.insert("c".to_owned(), 4);
    wait_converged(&all, &expected, Duration::from_secs(10));
}
