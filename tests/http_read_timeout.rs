//! Slow clients cannot pin the HTTP workers of a node or of discovery: with
//! `--http-read-timeout`, a request whose body never comes fails with 400 once the
//! timeout passes, so more stalled clients than there are workers still leave the
//! server answering everyone else; and a connection that never finishes its headers or
//! its small body (tiny_http reads bodies up to 1 KiB before handing the request over)
//! is closed rather than holding a thread forever (tiny_http's third gctr patch).

mod common;

use common::cluster::{node_addrs, start_node};
use common::{free_addr, http_get, wait_until, Proc};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// More stalled bodies than the node's 64 HTTP workers.
const STALLED_AT_NODE: usize = 70;
/// More than discovery's 4 workers, few enough to drain within the client's timeout.
const STALLED_AT_DISCOVERY: usize = 12;

/// Opens a connection that sends `head` and then nothing more.
fn stall(addr: &str, head: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(head.as_bytes()).expect("send");
    stream
}

/// The status line the server sent on `stream`, or `None` if it closed without one.
fn status_line(stream: &mut TcpStream) -> Option<String> {
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    while !answer.ends_with(b"\r\n") {
        match stream.read(&mut byte) {
            Ok(0) => return None,
            Ok(_) => answer.push(byte[0]),
            Err(e) => panic!("no answer to a stalled request: {e}"),
        }
    }
    Some(String::from_utf8_lossy(&answer).trim_end().to_owned())
}

/// Stalls `stalled` large bodies, a small body and a header, then checks that a normal
/// request is answered, every stalled large body gets 400, and the other two are closed.
fn stalled_clients_do_not_pin_workers(addr: &str, post: &str, stalled: usize) {
    let body_head = |length: usize| {
        format!("POST {post} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n{{")
    };
    let mut bodies: Vec<TcpStream> = (0..stalled)
        .map(|_| stall(addr, &body_head(4000)))
        .collect();
    let small_body = stall(addr, &body_head(40));
    let header = stall(addr, "GET /health HTTP/1.1\r\nHost: x\r\n");
    assert!(
        matches!(http_get(addr, "/health"), Ok((200, _))),
        "a normal request was not answered"
    );
    for stream in &mut bodies {
        let line = status_line(stream).expect("an answer to the stalled body");
        assert!(line.starts_with("HTTP/1.1 400"), "{line}");
    }
    for (what, mut stream) in [("small body", small_body), ("header", header)] {
        let closed = stream.read_to_end(&mut Vec::new());
        assert!(
            closed.is_ok(),
            "the stalled {what} was not closed: {closed:?}"
        );
    }
}

#[test]
fn a_node_answers_despite_stalled_clients_and_applies_nothing_from_them() {
    let dir = tempfile::tempdir().unwrap();
    let (g, h) = node_addrs();
    let node = start_node(
        dir.path(),
        "slow",
        (&g, &h),
        &[],
        &["--http-read-timeout", "500ms"],
    );
    stalled_clients_do_not_pin_workers(&node.http, "/increment", STALLED_AT_NODE);
    let (status, body) = http_get(&node.http, "/counter").expect("node answers");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["value"], 0, "a stalled request changed the counter");
}

#[test]
fn discovery_answers_despite_stalled_clients() {
    let addr = free_addr().to_string();
    let port = addr.rsplit_once(':').expect("host:port").1;
    let _discovery = Proc::spawn(
        "discovery",
        &["discovery", "--port", port, "--http-read-timeout", "500ms"],
        None,
    );
    wait_until("discovery to answer", Duration::from_secs(10), || {
        matches!(http_get(&addr, "/health"), Ok((200, _)))
    });
    stalled_clients_do_not_pin_workers(&addr, "/register", STALLED_AT_DISCOVERY);
    let (status, body) = http_get(&addr, "/peers").expect("discovery answers");
    assert_eq!((status, body.as_str()), (200, "[]"));
}

/// A client that sends its headers a byte at a time, each within the read timeout, is
/// cut off once the request line and headers have taken longer than it: a socket's read
/// timeout bounds each read only, so it could otherwise hold its connection for days.
#[test]
fn headers_sent_a_byte_at_a_time_are_cut_off_after_the_read_timeout() {
    use gctr::http::{Handler, HttpConfig, HttpServer, Reply, Request};
    use std::sync::Arc;
    use std::time::Instant;
    struct Hello;
    impl Handler for Hello {
        fn handle(&self, _request: &Request) -> Reply {
            Reply::ok(&"hello")
        }
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let config = HttpConfig {
        read_timeout: Duration::from_millis(500),
        ..HttpConfig::default()
    };
    let server =
        HttpServer::spawn_on_connections(listener, &config, "slow", Arc::new(Hello)).unwrap();
    let mut stream = TcpStream::connect(server.local_addr()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let head = format!("GET / HTTP/1.1\r\nX-Slow: {}\r\n\r\n", "a".repeat(100));
    let started = Instant::now();
    let mut closed = false;
    for byte in head.bytes() {
        if stream.write_all(&[byte]).is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        match stream.read(&mut buf) {
            Ok(0) => {
                closed = true;
                break;
            }
            // An answer before the head is complete: an error, then the close.
            Ok(n) => {
                let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
                assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
                closed = true;
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => {
                closed = true;
                break;
            }
        }
    }
    // 130 bytes, one per 100 ms: 13 s if never cut off.
    assert!(
        closed,
        "the server kept a trickling head for {:?}",
        started.elapsed()
    );
}
