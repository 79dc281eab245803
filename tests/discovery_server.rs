//! `gctr discovery` as a real process: the member lifecycle over HTTP, TTL expiry, the
//! member cap, every kind of bad request (and that the server keeps serving after each),
//! and a clean stop on SIGTERM.

mod common;

use common::{free_addr, http_get, http_post, run_gctr, wait_until, Proc};
use serde_json::{json, Value};
use std::time::Duration;

/// A discovery server on a free port, ready to answer.
fn start_discovery(extra: &[&str]) -> (Proc, String) {
    let addr = free_addr();
    let port = addr.port().to_string();
    let mut args = vec!["discovery", "--port", &port, "--log-level", "warn"];
    args.extend_from_slice(extra);
    let proc = Proc::spawn("discovery", &args, None);
    let addr = addr.to_string();
    wait_until(
        "discovery to answer /health",
        Duration::from_secs(10),
        || matches!(http_get(&addr, "/health"), Ok((200, _))),
    );
    (proc, addr)
}

fn node(name: &str, port: u16) -> Value {
    json!({"name": name, "addr": format!("127.0.0.1:{port}"), "http": format!("127.0.0.1:{}", port + 1)})
}

fn post_json(addr: &str, path: &str, body: &Value) -> (u16, Value) {
    let (status, text) = http_post(addr, path, &body.to_string()).expect("discovery answers");
    (status, serde_json::from_str(&text).expect("answer is JSON"))
}

fn peers(addr: &str) -> Vec<Value> {
    let (status, text) = http_get(addr, "/peers").expect("discovery answers");
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).expect("peers is a JSON list")
}

/// The table without the ages: (name, addr, http) per member.
fn table(addr: &str) -> Vec<(Value, Value, Value)> {
    peers(addr)
        .into_iter()
        .map(|m| (m["name"].clone(), m["addr"].clone(), m["http"].clone()))
        .collect()
}

fn peer_names(addr: &str) -> Vec<String> {
    peers(addr)
        .iter()
        .map(|m| m["name"].as_str().expect("name").to_owned())
        .collect()
}

#[test]
fn register_heartbeat_deregister_and_list() {
    let (_discovery, addr) = start_discovery(&[]);
    assert!(peers(&addr).is_empty());

    let (status, answer) = post_json(&addr, "/register", &node("b", 9010));
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["ttl_ms"], 5000);
    assert_eq!(answer["members"], 1);
    let (status, _) = post_json(&addr, "/heartbeat", &node("a", 9000));
    assert_eq!(status, 200, "a heartbeat from an unknown node registers it");

    let listed = peers(&addr);
    assert_eq!(peer_names(&addr), ["a", "b"], "sorted by name");
    assert_eq!(listed[1]["addr"], "127.0.0.1:9010");
    assert_eq!(listed[1]["http"], "127.0.0.1:9011");
    assert!(listed[1]["seen_ms_ago"].as_u64().expect("seen_ms_ago") < 5000);

    let (status, _) = post_json(&addr, "/heartbeat", &node("b", 9020));
    assert_eq!(status, 200);
    assert_eq!(peers(&addr)[1]["addr"], "127.0.0.1:9020", "upsert replaces");

    let (status, answer) = post_json(&addr, "/deregister", &json!({"name": "a"}));
    assert_eq!((status, answer), (200, json!({"removed": true})));
    let (status, answer) = post_json(&addr, "/deregister", &json!({"name": "a"}));
    assert_eq!((status, answer), (200, json!({"removed": false})));
    assert_eq!(peer_names(&addr), ["b"]);

    let (status, text) = http_get(&addr, "/health").expect("health");
    assert_eq!(status, 200);
    let health: Value = serde_json::from_str(&text).expect("health is JSON");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["members"], 1);
}

#[test]
fn a_member_that_stops_heartbeating_leaves_after_the_ttl() {
    // Long enough that a loaded machine's stall does not expire a member that speaks.
    let (_discovery, addr) = start_discovery(&["--ttl", "2s"]);
    post_json(&addr, "/register", &node("quiet", 9000));
    post_json(&addr, "/register", &node("chatty", 9010));
    assert_eq!(peer_names(&addr), ["chatty", "quiet"]);
    wait_until("quiet to expire", Duration::from_secs(10), || {
        let (status, _) = post_json(&addr, "/heartbeat", &node("chatty", 9010));
        assert_eq!(status, 200);
        std::thread::sleep(Duration::from_millis(100));
        peer_names(&addr) == ["chatty"]
    });
    let (status, _) = post_json(&addr, "/heartbeat", &node("quiet", 9000));
    assert_eq!(status, 200);
    assert_eq!(
        peer_names(&addr),
        ["chatty", "quiet"],
        "its next heartbeat brings it back"
    );
}

#[test]
fn bad_requests_get_a_json_error_and_change_nothing() {
    let (_discovery, addr) = start_discovery(&[]);
    post_json(&addr, "/register", &node("keep", 9000));
    let before = table(&addr);
    let oversized = format!(
        r#"{{"name":"big","addr":"127.0.0.1:1","http":"127.0.0.1:2","pad":"{}"}}"#,
        "x".repeat(70 * 1024)
    );
    let long_name = "n".repeat(200);
    let cases: Vec<(&str, &str, String, u16)> = vec![
        ("POST", "/register", "{not json".into(), 400),
        ("POST", "/register", "".into(), 400),
        ("POST", "/register", r#"[1,2]"#.into(), 400),
        (
            "POST",
            "/register",
            r#"{"name":"x","addr":"127.0.0.1:1"}"#.into(),
            400,
        ),
        (
            "POST",
            "/heartbeat",
            r#"{"name":7,"addr":"127.0.0.1:1","http":"127.0.0.1:2"}"#.into(),
            400,
        ),
        (
            "POST",
            "/register",
            r#"{"name":"x","addr":"nowhere","http":"127.0.0.1:2"}"#.into(),
            400,
        ),
        (
            "POST",
            "/register",
            r#"{"name":"x","addr":"127.0.0.1:1","http":"127.0.0.1:0"}"#.into(),
            400,
        ),
        (
            "POST",
            "/register",
            r#"{"name":"x","addr":"0.0.0.0:1","http":"127.0.0.1:2"}"#.into(),
            400,
        ),
        (
            "POST",
            "/register",
            format!(r#"{{"name":"{long_name}","addr":"127.0.0.1:1","http":"127.0.0.1:2"}}"#),
            400,
        ),
        (
            "POST",
            "/register",
            r#"{"name":"","addr":"127.0.0.1:1","http":"127.0.0.1:2"}"#.into(),
            400,
        ),
        (
            "POST",
            "/register",
            r#"{"name":"a\nb","addr":"127.0.0.1:1","http":"127.0.0.1:2"}"#.into(),
            400,
        ),
        ("POST", "/deregister", r#"{"nom":"keep"}"#.into(), 400),
        ("POST", "/register", oversized, 413),
        ("GET", "/nowhere", "".into(), 404),
        ("POST", "/", "".into(), 404),
        ("GET", "/register", "".into(), 405),
        ("GET", "/deregister", "".into(), 405),
        ("POST", "/peers", "".into(), 405),
        ("DELETE", "/health", "".into(), 405),
    ];
    for (method, path, body, want) in cases {
        let result = common::agent()
            .request(method, &format!("http://{addr}{path}"))
            .send_string(&body);
        let (status, text) = match result {
            Ok(r) => (r.status(), r.into_string().expect("body")),
            Err(ureq::Error::Status(s, r)) => (s, r.into_string().expect("body")),
            Err(e) => panic!("{method} {path}: {e}"),
        };
        assert_eq!(status, want, "{method} {path} {body:.80}: {text}");
        let error: Value = serde_json::from_str(&text).expect("error is JSON");
        assert!(
            error["error"].as_str().is_some_and(|m| !m.is_empty()),
            "{method} {path}: {text}"
        );
        assert_eq!(table(&addr), before, "{method} {path} changed the table");
    }
}

#[test]
fn a_hostile_content_length_does_not_crash_the_server() {
    use std::io::{Read, Write};
    use std::time::Instant;
    let (mut discovery, addr) = start_discovery(&[]);
    for _ in 0..3 {
        let mut stream = std::net::TcpStream::connect(&addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        stream
            .write_all(
                b"POST /register HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\nabc",
            )
            .expect("send");
        let mut head = [0u8; 12];
        stream.read_exact(&mut head).expect("an answer");
        assert_eq!(&head, b"HTTP/1.1 413");
    }
    // The danger comes after the answer, when the server drains the unread body of the
    // closed connections; there is no event to wait for, so keep it busy for a while and
    // check it never stops answering.
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        assert!(
            matches!(http_get(&addr, "/health"), Ok((200, _))),
            "discovery stopped answering"
        );
    }
    assert_eq!(
        discovery.child.try_wait().expect("status"),
        None,
        "still running"
    );
}

#[test]
fn connections_opened_together_are_all_answered() {
    use std::sync::{Arc, Barrier};
    let (_discovery, addr) = start_discovery(&[]);
    for round in 0..5 {
        let clients = 12;
        let start = Arc::new(Barrier::new(clients));
        let done = Arc::new(Barrier::new(clients));
        let threads: Vec<_> = (0..clients)
            .map(|_| {
                let (start, done, addr) = (start.clone(), done.clone(), addr.clone());
                std::thread::spawn(move || {
                    // Each agent keeps its connection open until every thread is done,
                    // so a connection left waiting for a server thread stays stuck.
                    let agent = ureq::AgentBuilder::new()
                        .timeout(Duration::from_secs(3))
                        .build();
                    start.wait();
                    let result = agent
                        .get(&format!("http://{addr}/health"))
                        .call()
                        .map(|r| r.status())
                        .map_err(|e| e.to_string());
                    done.wait();
                    result
                })
            })
            .collect();
        for thread in threads {
            let result = thread.join().expect("client thread");
            assert_eq!(result, Ok(200), "round {round}");
        }
    }
}

#[test]
fn the_member_cap_refuses_new_names_but_not_heartbeats() {
    let (_discovery, addr) = start_discovery(&["--max-members", "2"]);
    assert_eq!(post_json(&addr, "/register", &node("a", 9000)).0, 200);
    assert_eq!(post_json(&addr, "/register", &node("b", 9010)).0, 200);
    let (status, answer) = post_json(&addr, "/register", &node("c", 9020));
    assert_eq!(status, 503, "{answer}");
    assert!(answer["error"].as_str().is_some());
    assert_eq!(post_json(&addr, "/heartbeat", &node("a", 9000)).0, 200);
    assert_eq!(peer_names(&addr), ["a", "b"]);
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let (mut discovery, _addr) = start_discovery(&[]);
    assert_eq!(discovery.terminate(Duration::from_secs(5)), Some(0));
}

#[test]
fn bad_options_are_usage_errors() {
    for args in [
        &["discovery", "--ttl", "soon"][..],
        &["discovery", "--ttl", "0s"],
        &["discovery", "--port", "99999"],
        &["discovery", "--bind", "localhost"],
        &["discovery", "--max-members", "0"],
        &["discovery", "--log-level", "loud"],
        &["discovery", "--frobnicate"],
    ] {
        let out = run_gctr(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with("gctr: "), "{args:?}: {stderr}");
    }
    let help = run_gctr(&["discovery", "--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("--ttl"));
}

#[test]
fn a_port_in_use_is_a_clear_failure() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let out = run_gctr(&["discovery", "--port", &port]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot listen on"), "{stderr}");
}

/// A server that runs out of file descriptors refuses connections meanwhile and serves
/// again once clients close theirs (tiny_http used to end its accept thread at the
/// first accept error, closing the listener for good).
#[test]
fn running_out_of_file_descriptors_only_refuses_connections_while_it_lasts() {
    use std::net::TcpStream;
    let addr = free_addr();
    let port = addr.port().to_string();
    let limit = "--nofile=48:48";
    let args = [
        limit,
        "--",
        common::gctr_bin(),
        "discovery",
        "--port",
        &port,
    ];
    let child = std::process::Command::new("prlimit")
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("prlimit (util-linux) runs gctr discovery");
    let _discovery = Proc {
        child,
        name: "discovery".into(),
    };
    let addr = addr.to_string();
    wait_until(
        "discovery to answer /health",
        Duration::from_secs(10),
        || matches!(http_get(&addr, "/health"), Ok((200, _))),
    );
    // Idle connections, each holding a descriptor of the server, until it has none left
    // (its connection cap is well above 48) and a request goes unanswered.
    let mut held = Vec::new();
    wait_until(
        "the server to run out of descriptors",
        Duration::from_secs(20),
        || {
            for _ in 0..8 {
                let to = addr.parse().expect("an address");
                if let Ok(stream) = TcpStream::connect_timeout(&to, Duration::from_millis(200)) {
                    held.push(stream);
                }
            }
            http_get(&addr, "/health").is_err()
        },
    );
    drop(held);
    wait_until("discovery to answer again", Duration::from_secs(10), || {
        matches!(http_get(&addr, "/health"), Ok((200, _)))
    });
}
