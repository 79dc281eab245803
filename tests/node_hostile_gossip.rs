//! Hostile bytes on the gossip port: garbage, a frame header claiming a huge payload, a
//! first frame that is not a Hello, and thousands of connections. The node closes what
//! it must, counts it, stays up, keeps serving HTTP and keeps gossiping with its peer.
//! Thousands of made-up registrations in discovery leave it with a bounded number of
//! outbound links and threads.

mod common;

use common::cluster::{apply_op, figure, node_addrs, start_node, wait_converged, TestNode};
use common::{agent, free_addr, http_get, http_post, wait_until, Proc};
use gctr::codec::{self, Frame};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

fn inbound_figure(node: &TestNode, field: &str) -> u64 {
    let (_, body) = http_get(&node.http, "/status").expect("status");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    v["transport"]["inbound"][field].as_u64().expect(field)
}

/// Sends `bytes` and expects the node to close the connection.
fn send_and_expect_close(gossip: &str, bytes: &[u8]) {
    let mut s = TcpStream::connect(gossip).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The node may close before reading everything; a reset is a close too.
    let _ = s.write_all(bytes);
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("the node sent {n} bytes on an inbound connection"),
        Err(e) => assert!(
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "the node kept the connection open: {e}"
        ),
    }
}

fn hello() -> Vec<u8> {
    codec::encode(&Frame::Hello {
        name: gctr::member::NodeName::new("intruder").unwrap(),
        gossip_addr: "127.0.0.1:1".into(),
        http_addr: "127.0.0.1:1".into(),
    })
}

fn huge_header() -> Vec<u8> {
    let mut h = codec::MAGIC.to_vec();
    h.extend([codec::PROTOCOL_VERSION, 2]);
    h.extend(u32::MAX.to_be_bytes());
    h
}

#[test]
fn malformed_frames_close_their_connection_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (g, h) = node_addrs();
    let node = start_node(dir.path(), "target", (&g, &h), &[], &[]);

    let mut rng = fastrand::Rng::with_seed(7);
    let garbage: Vec<u8> = (0..4096).map(|_| rng.u8(..)).collect();
    send_and_expect_close(&node.gossip, &garbage);
    send_and_expect_close(&node.gossip, &huge_header());
    let mut after_hello = hello();
    after_hello.extend(huge_header());
    send_and_expect_close(&node.gossip, &after_hello);
    let not_hello = codec::encode(&Frame::Syn { digest: vec![] });
    send_and_expect_close(&node.gossip, &not_hello);

    wait_until(
        "four malformed frames counted",
        Duration::from_secs(5),
        || inbound_figure(&node, "malformed_frames") == 4,
    );
    assert_eq!(apply_op(&agent(), &node.http, "still", true, 1), 1);
}

#[test]
fn thousands_of_connections_do_not_take_the_node_down() {
    let dir = tempfile::tempdir().unwrap();
    let (g, h) = node_addrs();
    let node = start_node(dir.path(), "target", (&g, &h), &[], &[]);
    let (g2, h2) = node_addrs();
    let peer = start_node(dir.path(), "peer", (&g2, &h2), &[&node.gossip], &[]);

    let mut held = Vec::new();
    for i in 0..2000 {
        if let Ok(s) = TcpStream::connect(&node.gossip) {
            // Hold 600 open at once; the rest come and go.
            if i < 600 {
                held.push(s);
            }
        }
    }
    assert_eq!(http_get(&node.http, "/health").unwrap().0, 200);
    assert_eq!(apply_op(&agent(), &node.http, "during", true, 3), 3);
    // The acceptor may still be working through the kernel's backlog of connects.
    wait_until(
        "connections past the limit to be refused",
        Duration::from_secs(10),
        || inbound_figure(&node, "rejected") > 0,
    );
    assert!(inbound_figure(&node, "open") <= 256);
    drop(held);

    apply_op(&agent(), &node.http, "after", true, 4);
    let expected = BTreeMap::from([("during".to_owned(), 3), ("after".to_owned(), 4)]);
    wait_converged(&[&node, &peer], &expected, Duration::from_secs(20));
}

#[test]
fn thousands_of_made_up_discovery_entries_open_a_bounded_number_of_links() {
    let dir = tempfile::tempdir().unwrap();
    let discovery = free_addr().to_string();
    let port = discovery.rsplit_once(':').unwrap().1.to_owned();
    let _discovery = Proc::spawn(
        "discovery",
        &["discovery", "--port", &port, "--ttl", "120s"],
        Some(&dir.path().join("discovery.log")),
    );
    wait_until("discovery to answer", Duration::from_secs(10), || {
        matches!(http_get(&discovery, "/health"), Ok((200, _)))
    });
    // 3,000 entries whose addresses nothing listens on (TEST-NET-1: never answers).
    for i in 0..3000 {
        let body = format!(
            r#"{{"name":"junk-{i}","addr":"192.0.2.{}:{}","http":"192.0.2.1:1"}}"#,
            i % 250 + 1,
            10_000 + i
        );
        let (status, text) = http_post(&discovery, "/register", &body).expect("register");
        assert_eq!(status, 200, "{text}");
    }
    let url = format!("http://{discovery}");
    let discovery_args = ["--discovery", url.as_str(), "--heartbeat-interval", "200ms"];
    let (g, h) = node_addrs();
    let node = start_node(dir.path(), "target", (&g, &h), &[], &discovery_args);
    let (g2, h2) = node_addrs();
    let peer = start_node(dir.path(), "peer", (&g2, &h2), &[], &discovery_args);

    // Twenty refreshes of the whole list later, the links stay few and writes flow.
    let refreshes = || figure(&node, &["gossip", "rounds"]);
    let start = refreshes();
    let mut most_links = 0;
    let mut most_threads = 0;
    wait_until("40 gossip rounds", Duration::from_secs(60), || {
        most_links = most_links.max(figure(&node, &["transport", "links"]));
        most_threads = most_threads.max(figure(&node, &["process", "threads"]));
        refreshes() >= start + 40
    });
    assert!(most_links <= 300, "{most_links} links open");
    assert!(most_threads <= 450, "{most_threads} threads");
    apply_op(&agent(), &node.http, "c", true, 2);
    apply_op(&agent(), &peer.http, "c", true, 3);
    let expected = BTreeMap::from([("c".to_owned(), 5)]);
    wait_converged(&[&node, &peer], &expected, Duration::from_secs(20));
}
