//! The gossip keyring with real nodes: a node with another key never becomes a member
//! and changes nothing; frames captured from a real connection and replayed on another
//! connection or again on the same one are refused, and so is a datagram replayed; the
//! attacks that work on an unkeyed cluster (plaintext frames claiming a node's origin,
//! bounds-breaking totals, made-up members, thousands of Hellos) change nothing on a
//! keyed cluster and are each counted.

mod common;

use common::cluster::{apply_op, counters, node_addrs, wait_converged, TestNode};
use common::keys::{keyed_node, rejections, Proxy, ProxyMode, UdpRelay};
use common::{agent, get_json, http_post, wait_until};
use gctr::codec::{self, Frame};
use gctr::crdt::{CounterEntry, Origin, OriginDelta};
use gctr::keyring::Key;
use gctr::member::NodeName;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(15);

/// `n` nodes sharing `key`, each seeded with the first.
fn keyed_cluster(dir: &Path, names: &[&str], key: &Key) -> Vec<TestNode> {
    let mut nodes: Vec<TestNode> = Vec::new();
    for name in names {
        let (g, h) = node_addrs();
        let seeds: Vec<&str> = nodes
            .first()
            .map(|n| n.gossip.as_str())
            .into_iter()
            .collect();
        nodes.push(keyed_node(dir, name, (&g, &h), &seeds, &[key], &[]));
    }
    let all: Vec<&TestNode> = nodes.iter().collect();
    wait_members(&all, names.len());
    nodes
}

fn member_names(node: &TestNode) -> Vec<String> {
    let v = get_json(&node.http, "/members").expect("members");
    let mut names: Vec<String> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["state"] == "alive")
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

fn wait_members(nodes: &[&TestNode], n: usize) {
    wait_until(&format!("{n} alive members everywhere"), WAIT, || {
        nodes.iter().all(|node| member_names(node).len() == n)
    });
}

fn threads(node: &TestNode) -> u64 {
    get_json(&node.http, "/status").unwrap()["process"]["threads"]
        .as_u64()
        .unwrap()
}

fn resident_bytes(node: &TestNode) -> u64 {
    get_json(&node.http, "/status").unwrap()["process"]["resident_memory_bytes"]
        .as_u64()
        .unwrap()
}

#[test]
fn a_node_with_another_key_is_refused_never_a_member_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let key = Key::generate().unwrap();
    let nodes = keyed_cluster(dir.path(), &["k1", "k2", "k3"], &key);
    let a = agent();
    apply_op(&a, &nodes[0].http, "c", true, 7);

    let (g, h) = node_addrs();
    let other = Key::generate().unwrap();
    let seeds = [nodes[0].gossip.as_str()];
    let wrong = keyed_node(dir.path(), "wrong", (&g, &h), &seeds, &[&other], &[]);
    apply_op(&a, &wrong.http, "c", true, 1000);
    apply_op(&a, &wrong.http, "mine", true, 1);
    // It tries on both lanes: its join on TCP, its probes on UDP.
    let join = format!(r#"{{"addr":"{}"}}"#, nodes[1].gossip);
    assert_eq!(http_post(&wrong.http, "/members", &join).unwrap().0, 202);
    // Its link to an address that never completed a handshake is dropped, and a join
    // through that address within 5 s makes no new link.
    let log = dir.path().join("wrong.log");
    let links = |n: &TestNode| get_json(&n.http, "/status").unwrap()["transport"]["links"].clone();
    wait_until("the wrong node to drop its link", WAIT, || {
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("keyed handshake failed")
            && links(&wrong) == 0
    });
    // (Membership sends one join a second per address: ask until one goes out.)
    wait_until("a join through it to find no route", WAIT, || {
        assert_eq!(http_post(&wrong.http, "/members", &join).unwrap().0, 202);
        let s = get_json(&wrong.http, "/status").unwrap();
        s["transport"]["unroutable_frames"].as_u64() > Some(0)
    });
    assert_eq!(links(&wrong), 0);

    wait_until("the wrong key's attempts to be refused", WAIT, || {
        rejections(&nodes[0], "udp", "not_authentic") > 0
            && rejections(&nodes[1], "tcp", "unknown_key") > 0
    });

    let all: Vec<&TestNode> = nodes.iter().collect();
    let expected = BTreeMap::from([("c".to_owned(), 7)]);
    wait_converged(&all, &expected, WAIT);
    for node in &nodes {
        assert_eq!(member_names(node), vec!["k1", "k2", "k3"], "{}", node.name);
    }
    assert_eq!(member_names(&wrong), vec!["wrong"]);
    assert_eq!(
        counters(&wrong.http),
        Some(BTreeMap::from([
            ("c".to_owned(), 1000),
            ("mine".to_owned(), 1)
        ]))
    );
}

#[test]
fn captured_frames_replayed_on_another_or_the_same_connection_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = Key::generate().unwrap();
    let nodes = keyed_cluster(dir.path(), &["r1", "r2"], &key);
    apply_op(&agent(), &nodes[0].http, "c", true, 2);
    let all: Vec<&TestNode> = nodes.iter().collect();
    let expected = BTreeMap::from([("c".to_owned(), 2)]);
    wait_converged(&all, &expected, WAIT);

    // r2 joins r1 through a recording proxy: its keyed hello, Hello and join, sealed.
    let recorder = Proxy::start(&nodes[0].gossip, ProxyMode::Record);
    let join = format!(r#"{{"addr":"{}"}}"#, recorder.addr);
    assert_eq!(http_post(&nodes[1].http, "/members", &join).unwrap().0, 202);
    wait_until("a join to pass the proxy", WAIT, || {
        recorder.recorded().len() > 100
    });
    let captured = recorder.recorded();
    assert_eq!(&captured[..4], b"GCTK", "the connection is keyed");
    let members_before = member_names(&nodes[0]);

    // Replayed on another connection: the node answers the hello, then the first frame
    // fails (this connection's keys differ) and the connection is closed.
    let bad_frames = rejections(&nodes[0], "tcp", "bad_frame");
    let mut replay = TcpStream::connect(&nodes[0].gossip).unwrap();
    replay.write_all(&captured).unwrap();
    replay
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = replay.read_to_end(&mut answer);
    assert_eq!(
        answer.len(),
        36,
        "only the node's half of the handshake came back"
    );
    wait_until("the replay to be counted", WAIT, || {
        rejections(&nodes[0], "tcp", "bad_frame") == bad_frames + 1
    });

    // Replayed on the same connection: a proxy sends r2's first sealed frame twice.
    let duplicator = Proxy::start(&nodes[0].gossip, ProxyMode::DuplicateFirstFrame);
    let join = format!(r#"{{"addr":"{}"}}"#, duplicator.addr);
    assert_eq!(http_post(&nodes[1].http, "/members", &join).unwrap().0, 202);
    wait_until("the duplicate to be counted", WAIT, || {
        rejections(&nodes[0], "tcp", "bad_frame") == bad_frames + 2
    });

    assert_eq!(member_names(&nodes[0]), members_before);
    apply_op(&agent(), &nodes[1].http, "c", true, 1);
    let expected = BTreeMap::from([("c".to_owned(), 3)]);
    wait_converged(&all, &expected, WAIT);
}

#[test]
fn a_captured_datagram_replayed_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = Key::generate().unwrap();
    let (g1, h1) = node_addrs();
    let n1 = keyed_node(dir.path(), "u1", (&g1, &h1), &[], &[&key], &[]);
    // u2's seed is a relay that passes its first probe datagram on four times.
    let relay = UdpRelay::start(&n1.gossip, 3);
    let (g2, h2) = node_addrs();
    let n2 = keyed_node(dir.path(), "u2", (&g2, &h2), &[&relay.addr], &[&key], &[]);
    wait_until("the three replays to be refused", WAIT, || {
        rejections(&n1, "udp", "replayed") == 3
    });
    assert_eq!(rejections(&n1, "udp", "not_authentic"), 0);
    // The relay's address is no member's: u2 keeps probing it, but it only ever replayed
    // the first datagram.
    assert_eq!(rejections(&n1, "udp", "replayed"), 3);
    assert_eq!(rejections(&n2, "udp", "replayed"), 0);
}

/// A plaintext connection sending a Hello claiming `addr`, then `frames`; the node
/// closes it at once.
fn plaintext_attack(gossip: &str, addr: &str, frames: &[Frame]) {
    let mut s = TcpStream::connect(gossip).unwrap();
    let hello = Frame::Hello {
        name: NodeName::new("intruder").unwrap(),
        gossip_addr: addr.into(),
        http_addr: addr.into(),
    };
    let mut bytes = codec::encode(&hello);
    for f in frames {
        bytes.extend(codec::encode(f));
    }
    let _ = s.write_all(&bytes);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert!(
        matches!(s.read(&mut [0u8; 16]), Ok(0) | Err(_)),
        "connection left open"
    );
}

fn origin_of(node: &TestNode) -> Origin {
    let s = get_json(&node.http, "/status").unwrap();
    let text = s["origin"].as_str().unwrap().to_owned();
    let (name, inc) = text.rsplit_once('/').unwrap();
    Origin::new(name, u64::from_str_radix(inc, 16).unwrap())
}

#[test]
fn the_issues_attacks_against_a_keyed_cluster_change_nothing_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let key = Key::generate().unwrap();
    let nodes = keyed_cluster(dir.path(), &["a1", "a2", "a3"], &key);
    let a = agent();
    apply_op(&a, &nodes[0].http, "c", true, 3);
    let all: Vec<&TestNode> = nodes.iter().collect();
    let expected = BTreeMap::from([("c".to_owned(), 3)]);
    wait_converged(&all, &expected, WAIT);
    let threads_before: Vec<u64> = nodes.iter().map(threads).collect();
    let rss_before: Vec<u64> = nodes.iter().map(resident_bytes).collect();

    let delta = |origin: Origin, to: u64, p: u64| OriginDelta {
        origin,
        from: 0,
        to,
        entries: vec![CounterEntry {
            counter: "c".into(),
            p,
            n: 0,
            version: to.min(1),
            keyed: None,
        }],
    };
    let own = delta(origin_of(&nodes[0]), (1 << 62) - 1, 1_000_000_000_000_000);
    let made_up = delta(Origin::new("made-up", 1), 1, 1_000_000_000_000_000);
    let at_max = delta(Origin::new("made-up", 2), 1, i64::MAX as u64);
    let attacks: Vec<Vec<Frame>> = vec![
        vec![Frame::Push { delta: vec![own] }],
        vec![Frame::Push {
            delta: vec![made_up.clone()],
        }],
        vec![Frame::Push {
            delta: vec![at_max],
        }],
        vec![Frame::Syn { digest: vec![] }],
        vec![],
    ];
    // Every attack on every node, and 3,000 Hellos with new addresses on the first.
    for node in &nodes {
        for frames in &attacks {
            plaintext_attack(&node.gossip, "127.0.0.1:1", frames);
        }
    }
    for i in 0..3000 {
        plaintext_attack(&nodes[0].gossip, &format!("127.0.0.1:{}", 10_000 + i), &[]);
    }
    // Plaintext datagrams carrying a made-up origin.
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let full = codec::encode(&Frame::Push {
        delta: vec![made_up],
    });
    for node in &nodes {
        for _ in 0..5 {
            udp.send_to(&full, &node.gossip).unwrap();
        }
    }
    for (i, node) in nodes.iter().enumerate() {
        let extra = if i == 0 { 3000 } else { 0 };
        wait_until(
            &format!("{}'s refusals to be counted", node.name),
            WAIT,
            || {
                rejections(node, "tcp", "plaintext") == attacks.len() as u64 + extra
                    && rejections(node, "udp", "plaintext") == 5
            },
        );
    }

    for node in &nodes {
        assert_eq!(
            counters(&node.http),
            Some(expected.clone()),
            "{}",
            node.name
        );
        assert_eq!(member_names(node), vec!["a1", "a2", "a3"]);
        let s = get_json(&node.http, "/status").unwrap();
        assert_eq!(s["gossip"]["own_origin_claims"], 0);
        assert_eq!(s["writes"]["new_incarnations"], 0);
    }
    for (node, before) in nodes.iter().zip(threads_before) {
        wait_until("reader threads to finish", WAIT, || {
            threads(node) <= before + 4
        });
    }
    for (node, before) in nodes.iter().zip(rss_before) {
        let after = resident_bytes(node);
        assert!(
            after < before + (16 << 20),
            "{}: resident memory {before} -> {after} bytes",
            node.name
        );
    }
    let (_, metrics) = common::http_get(&nodes[0].http, "/metrics").unwrap();
    assert!(
        metrics.contains(r#"gctr_keyring_rejections_total{lane="tcp",reason="plaintext"} 3005"#),
        "{metrics}"
    );
    // Logged once a minute per kind, not once per attempt.
    let log = std::fs::read_to_string(dir.path().join("a1.log")).unwrap();
    let lines = log
        .lines()
        .filter(|l| l.contains("refused gossip") && l.contains("tcp plaintext"))
        .count();
    assert_eq!(lines, 1, "{log}");
    apply_op(&a, &nodes[2].http, "c", true, 1);
    let expected = BTreeMap::from([("c".to_owned(), 4)]);
    wait_converged(&all, &expected, WAIT);
}

#[test]
fn the_keys_routes_answer_their_documented_statuses_and_never_show_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = Key::generate().unwrap();
    let (g, h) = node_addrs();
    let node = keyed_node(dir.path(), "s1", (&g, &h), &[], &[&key], &[]);
    let (g2, h2) = node_addrs();
    let plain = common::cluster::start_node(dir.path(), "s2", (&g2, &h2), &[], &[]);
    let status = |r: Result<(u16, String), String>| r.unwrap().0;
    let install = |k: &str| http_post(&node.http, "/keys", &format!(r#"{{"key":"{k}"}}"#));

    assert_eq!(status(common::http_get(&plain.http, "/keys")), 404);
    assert_eq!(status(install("not a key")), 400);
    assert_eq!(status(http_post(&node.http, "/keys", r#"{"k":1}"#)), 400);
    assert_eq!(status(install(&key.to_base64())), 409, "installed already");
    let other = Key::generate().unwrap();
    let unknown = format!(r#"{{"key":"{}"}}"#, other.id());
    assert_eq!(
        status(http_post(&node.http, "/keys/primary", &unknown)),
        404
    );
    let remove = |id: String| {
        common::agent()
            .delete(&format!("http://{}/keys/{id}", node.http))
            .call()
            .map_or_else(
                |e| match e {
                    ureq::Error::Status(s, _) => s,
                    e => panic!("{e}"),
                },
                |r| r.status(),
            )
    };
    assert_eq!(remove(key.id().to_string()), 409, "the primary");
    assert_eq!(remove(other.id().to_string()), 404);
    assert_eq!(remove("nonsense".into()), 400);
    assert_eq!(status(common::http_get(&node.http, "/keys/enforce")), 405);
    let view = keys_view_text(&node);
    assert!(!view.contains(&key.to_base64()), "{view}");

    assert_eq!(status(install(&other.to_base64())), 200);
    let (_, text) = http_post(
        &node.http,
        "/keys/primary",
        &format!(r#"{{"key":"{}"}}"#, other.to_base64()),
    )
    .unwrap();
    assert!(!text.contains(&other.to_base64()), "{text}");
    assert_eq!(remove(key.id().to_string()), 200);
    let file = std::fs::read_to_string(dir.path().join("s1.keyring")).unwrap();
    assert!(file.contains(&other.to_base64()) && !file.contains(&key.to_base64()));
}

fn keys_view_text(node: &TestNode) -> String {
    common::http_get(&node.http, "/keys").unwrap().1
}
