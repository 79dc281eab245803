//! Start-up and clean stop of `gctr node`: both addresses printed on stdout, SIGINT and
//! SIGTERM stop it with exit 0 even while a peer is connected.

mod common;

use common::cluster::{node_addrs, start_node};
use common::{gctr_bin, http_get, wait_until, Proc};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn prints_both_addresses_and_derives_http_from_addr() {
    let child = Command::new(gctr_bin())
        .args([
            "node",
            "--addr",
            "127.0.0.1:0",
            "--name",
            "solo",
            "--log-level",
            "off",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut node = Proc {
        child,
        name: "solo".into(),
    };
    let mut line = String::new();
    BufReader::new(node.child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[..4], ["gctr", "node", "solo", "gossip"], "{line}");
    assert_eq!(words[5], "http", "{line}");
    assert_eq!(http_get(words[6], "/health").unwrap().0, 200);
    node.kill();

    let out = Command::new(gctr_bin())
        .args(["node", "--help"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("port + 10"));
}

#[test]
fn sigterm_and_sigint_stop_cleanly_with_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let (g, h) = node_addrs();
    let mut a = start_node(dir.path(), "a", (&g, &h), &[], &[]);
    let (g2, h2) = node_addrs();
    let mut b = start_node(dir.path(), "b", (&g2, &h2), &[&a.gossip], &[]);
    wait_until("b to greet a", Duration::from_secs(10), || {
        http_get(&a.http, "/peers").is_ok_and(|(_, body)| body.contains("\"b\""))
    });
    assert_eq!(a.proc.terminate(Duration::from_secs(10)), Some(0));
    let pid = b.proc.pid().to_string();
    Command::new("kill").args(["-INT", &pid]).status().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(status) = b.proc.child.try_wait().unwrap() {
            break status.code();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "b did not stop on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(0));
    let log = std::fs::read_to_string(dir.path().join("b.log")).unwrap();
    assert!(log.contains("node b stopped"), "{log}");
}
