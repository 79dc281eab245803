//! The HTTP server's connection cap: past it a new connection is answered 503 and closed
//! as soon as it is accepted (no thread, no descriptor kept), and once a connection
//! closes a new one is served again.

mod common;

use common::wait_until;
use gctr::http::{Handler, HttpConfig, HttpServer, Reply, Request};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

struct Hello;

impl Handler for Hello {
    fn handle(&self, _request: &Request) -> Reply {
        Reply::ok(&"hello")
    }
}

/// A connection that has been answered once (so the server has accepted and counted
/// it), or `None` if the server closed it unanswered.
fn answered_connection(addr: SocketAddr) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut buf = [0u8; 512];
    let n = stream.read(&mut buf).ok()?;
    buf[..n].starts_with(b"HTTP/1.1 200").then_some(stream)
}

#[test]
fn past_the_connection_cap_a_new_connection_is_closed_until_one_closes() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let config = HttpConfig {
        max_connections: 3,
        ..HttpConfig::default()
    };
    let server =
        HttpServer::spawn_on_connections(listener, &config, "capped", Arc::new(Hello)).unwrap();
    let addr = server.local_addr();
    let mut held: Vec<TcpStream> = (0..3)
        .map(|_| answered_connection(addr).expect("under the cap"))
        .collect();
    assert!(answered_connection(addr).is_none(), "a fourth is closed");
    // Told why, before anything is read from it.
    let mut fourth = TcpStream::connect(addr).unwrap();
    fourth
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answer = String::new();
    let _ = fourth.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or_default();
    let error: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
    assert!(error["error"]
        .as_str()
        .unwrap()
        .contains("too many connections"));
    held.pop();
    // The slot frees once the server has seen the close.
    let mut again = None;
    wait_until(
        "a new connection to be served",
        Duration::from_secs(5),
        || {
            again = answered_connection(addr);
            again.is_some()
        },
    );
    held.extend(again);
    assert!(answered_connection(addr).is_none(), "at the cap again");
}
