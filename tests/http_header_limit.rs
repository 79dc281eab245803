//! A request line plus headers larger than the cap gets `431` and a closed connection,
//! from a node and from discovery alike (tiny_http's fourth gctr patch), and a client
//! streaming an endless header does not grow the server: the connection is closed after
//! the cap, long before the gigabyte it means to send, and the process's resident memory
//! stays where it was.

mod common;

use common::cluster::{node_addrs, start_node};
use common::{free_addr, http_get, wait_until, Proc};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Bytes of one header line in the big request.
const HEADER_KIB: usize = 100;

/// Sends a GET whose one header is `HEADER_KIB` KiB, and returns the status line and body.
fn oversized_request(addr: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let request = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(HEADER_KIB * 1024)
    );
    // The server may close before reading all of it; what it answered is still there.
    let _ = stream.write_all(request.as_bytes());
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.lines().next().unwrap_or("").to_owned();
    (status, body.to_owned())
}

/// Streams one endless header line in 64 KiB pieces, up to 1 GiB; returns how many bytes
/// went out before the server closed the connection.
fn stream_endless_header(addr: &str) -> usize {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_write_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let piece = vec![b'a'; 64 * 1024];
    let mut sent = 0;
    if stream
        .write_all(b"GET /health HTTP/1.1\r\nX-Endless: ")
        .is_err()
    {
        return sent;
    }
    while sent < 1 << 30 {
        match stream.write(&piece) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    sent
}

/// Resident set size of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

fn check_server(addr: &str, pid: u32) {
    let (status, body) = oversized_request(addr);
    assert!(status.starts_with("HTTP/1.1 431"), "{status:?}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("a JSON error body");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains("over the")),
        "{body}"
    );
    let before = rss_kib(pid);
    let sent = stream_endless_header(addr);
    let after = rss_kib(pid);
    println!("endless header: closed after {sent} bytes; RSS {before} KiB -> {after} KiB");
    assert!(
        sent < 64 << 20,
        "the server read {sent} bytes of one header before closing"
    );
    assert!(
        after < before + 16 * 1024,
        "RSS grew from {before} KiB to {after} KiB"
    );
    assert!(
        matches!(http_get(addr, "/health"), Ok((200, _))),
        "the server stopped answering"
    );
}

#[test]
fn a_node_refuses_oversized_headers_with_431_and_stays_small() {
    let dir = tempfile::tempdir().unwrap();
    let (g, h) = node_addrs();
    let node = start_node(dir.path(), "big-headers", (&g, &h), &[], &[]);
    check_server(&node.http, node.proc.pid());
}

#[test]
fn discovery_refuses_oversized_headers_with_431_and_stays_small() {
    let addr = free_addr().to_string();
    let port = addr.rsplit_once(':').expect("host:port").1;
    let discovery = Proc::spawn("discovery", &["discovery", "--port", port], None);
    wait_until("discovery to answer", Duration::from_secs(10), || {
        matches!(http_get(&addr, "/health"), Ok((200, _)))
    });
    check_server(&addr, discovery.pid());
}
