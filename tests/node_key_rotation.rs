//! Key rotation and turning encryption on, in running five-node clusters, under a steady
//! stream of increments: every increment acknowledged, none lost, exact counts at the
//! end, and `keys list` right on every node after every step.
//!
//! - Rotation: `gctr keys install K2`, `use K2`, `remove K1`, each through another node.
//! - Turning encryption on: one rolling restart with `--keyring FILE
//!   --keyring-transition`, then `gctr keys enforce`.

mod common;

use common::cluster::{node_addrs, start_node, wait_converged, wait_writable, TestNode};
use common::keys::{key_holders, keyed_node, keyring_file, keys_view, rejections};
use common::{agent, get_json, run_gctr, stderr, stdout, wait_until};
use gctr::keyring::Key;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::thread::JoinHandle;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);
const COUNTER: &str = "load";

/// Increments sent one after another, round robin over the nodes that are `available`;
/// a node is taken out (under the write lock) before it is restarted, so no request is
/// ever in flight to a node that stops.
struct Stream {
    available: Arc<RwLock<Vec<String>>>,
    stop: Arc<AtomicBool>,
    acked: Arc<std::sync::atomic::AtomicU64>,
    thread: Option<JoinHandle<Vec<String>>>,
}

impl Stream {
    fn start(nodes: &[TestNode]) -> Stream {
        let available = Arc::new(RwLock::new(
            nodes.iter().map(|n| n.http.clone()).collect::<Vec<_>>(),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (avail, halt, count) = (available.clone(), stop.clone(), acked.clone());
        let thread = std::thread::spawn(move || {
            let agent = agent();
            let mut failures = Vec::new();
            let mut i = 0usize;
            while !halt.load(Ordering::SeqCst) {
                let nodes = avail.read().unwrap();
                if nodes.is_empty() {
                    continue;
                }
                let http = &nodes[i % nodes.len()];
                i += 1;
                let url = format!("http://{http}/counters/{COUNTER}/increment");
                match agent.post(&url).call() {
                    Ok(r) if r.status() == 200 => {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(r) => failures.push(format!("{http}: {}", r.status())),
                    Err(e) => failures.push(format!("{http}: {e}")),
                }
                drop(nodes);
                std::thread::sleep(Duration::from_millis(2));
            }
            failures
        });
        Stream {
            available,
            stop,
            acked,
            thread: Some(thread),
        }
    }

    fn acked(&self) -> u64 {
        self.acked.load(Ordering::SeqCst)
    }

    /// Waits until `n` more increments were acknowledged: the stream goes on.
    fn wait_more(&self, n: u64) {
        let target = self.acked() + n;
        wait_until("the stream to go on", WAIT, || self.acked() >= target);
    }

    fn take_out(&self, http: &str) {
        self.available.write().unwrap().retain(|h| h != http);
    }

    fn put_back(&self, http: &str) {
        self.available.write().unwrap().push(http.to_owned());
    }

    /// Stops the stream; returns how many increments were acknowledged.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        let failures = self.thread.take().unwrap().join().unwrap();
        assert!(failures.is_empty(), "failed increments: {failures:?}");
        self.acked()
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Runs `gctr keys ARGS --http NODE` and expects success.
fn keys_command(node: &TestNode, args: &[&str]) -> String {
    let mut all = vec!["keys"];
    all.extend(args);
    all.extend(["--http", &node.http]);
    let out = run_gctr(&all);
    assert!(out.status.success(), "gctr {all:?}: {}", stderr(&out));
    stdout(&out)
}

/// Polls until every node lists exactly `expected` (id, held by, sealing with), its
/// mode is `mode`, and no live member is unreported or behind.
fn wait_listing(nodes: &[&TestNode], expected: &[(String, u64, u64)], mode: &str) {
    let ok = |n: &TestNode| {
        let v = keys_view(n);
        key_holders(&v) == expected
            && v["mode"] == mode
            && v["live_members"] == nodes.len()
            && v["unreported"].as_array().is_some_and(Vec::is_empty)
            && v["behind"].as_array().is_some_and(Vec::is_empty)
    };
    let deadline = std::time::Instant::now() + WAIT;
    while !nodes.iter().all(|n| ok(n)) {
        if std::time::Instant::now() > deadline {
            let views: Vec<String> = nodes
                .iter()
                .map(|n| format!("{}: {}", n.name, keys_view(n)))
                .collect();
            panic!("expected {expected:?} in mode {mode}\n{}", views.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn row(key: &Key, held: u64, sealing: u64) -> (String, u64, u64) {
    (key.id().to_string(), held, sealing)
}

#[test]
fn install_use_remove_under_a_stream_of_increments_on_five_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let (k1, k2) = (Key::generate().unwrap(), Key::generate().unwrap());
    let mut nodes: Vec<TestNode> = Vec::new();
    for i in 1..=5 {
        let (g, h) = node_addrs();
        let seeds: Vec<&str> = nodes
            .first()
            .map(|n| n.gossip.as_str())
            .into_iter()
            .collect();
        nodes.push(keyed_node(
            dir.path(),
            &format!("n{i}"),
            (&g, &h),
            &seeds,
            &[&k1],
            &[],
        ));
    }
    let all: Vec<&TestNode> = nodes.iter().collect();
    wait_listing(&all, &[row(&k1, 5, 5)], "strict");
    let stream = Stream::start(&nodes);
    stream.wait_more(50);

    let listed = keys_command(&nodes[0], &["install", &k2.to_base64()]);
    assert!(listed.contains(&k2.id().to_string()), "{listed}");
    wait_listing(&all, &[row(&k1, 5, 5), row(&k2, 5, 0)], "strict");
    let file = std::fs::read_to_string(dir.path().join("n4.keyring")).unwrap();
    assert!(
        file.contains(&k2.to_base64()) && file.contains("# version 1 enforced n1"),
        "{file}"
    );
    stream.wait_more(50);

    keys_command(&nodes[2], &["use", &k2.id().to_string()]);
    wait_listing(&all, &[row(&k2, 5, 5), row(&k1, 5, 0)], "strict");
    stream.wait_more(50);

    keys_command(&nodes[4], &["remove", &k1.to_base64()]);
    wait_listing(&all, &[row(&k2, 5, 5)], "strict");
    let text = keys_command(&nodes[1], &["list"]);
    assert!(text.contains("5/5") && text.contains("version 3"), "{text}");
    stream.wait_more(50);

    let acked = stream.finish();
    let expected = BTreeMap::from([(COUNTER.to_owned(), acked as i64)]);
    wait_converged(&all, &expected, WAIT);
    for node in &nodes {
        assert_eq!(rejections(node, "tcp", "bad_frame"), 0, "{}", node.name);
        assert_eq!(rejections(node, "tcp", "unknown_key"), 0, "{}", node.name);
    }

    // The removed key opens nothing any more: a node holding only it stays out.
    let (g, h) = node_addrs();
    let seeds = [nodes[0].gossip.as_str()];
    let old = keyed_node(dir.path(), "old", (&g, &h), &seeds, &[&k1], &[]);
    wait_until("the old key to be refused", WAIT, || {
        rejections(&nodes[0], "udp", "not_authentic") > 0
    });
    wait_listing(&all, &[row(&k2, 5, 5)], "strict");
    let members = get_json(&old.http, "/members").unwrap();
    assert_eq!(members["members"].as_array().unwrap().len(), 1);
}

#[test]
fn turning_encryption_on_takes_one_rolling_restart_and_one_command() {
    let dir = tempfile::tempdir().unwrap();
    let key = Key::generate().unwrap();
    let mut nodes: Vec<TestNode> = Vec::new();
    let mut wal_args: Vec<Vec<String>> = Vec::new();
    for i in 1..=5 {
        let (g, h) = node_addrs();
        let name = format!("p{i}");
        let wal = dir
            .path()
            .join(format!("{name}.wal"))
            .to_str()
            .unwrap()
            .to_owned();
        let seeds: Vec<&str> = nodes
            .first()
            .map(|n| n.gossip.as_str())
            .into_iter()
            .collect();
        let args = vec!["--wal".to_owned(), wal];
        let extra: Vec<&str> = args.iter().map(String::as_str).collect();
        nodes.push(start_node(dir.path(), &name, (&g, &h), &seeds, &extra));
        wal_args.push(args);
    }
    for n in &nodes {
        wait_writable(n, WAIT);
    }
    let stream = Stream::start(&nodes);
    stream.wait_more(50);

    // The rolling restart: each node in turn, with the keyring in the transition mode.
    for i in 0..nodes.len() {
        let (name, gossip, http) = (
            nodes[i].name.clone(),
            nodes[i].gossip.clone(),
            nodes[i].http.clone(),
        );
        stream.take_out(&http);
        assert_eq!(nodes[i].proc.terminate(WAIT), Some(0));
        let file = keyring_file(dir.path(), &name, &[&key]);
        let mut extra: Vec<&str> = wal_args[i].iter().map(String::as_str).collect();
        extra.extend(["--keyring", file.to_str().unwrap(), "--keyring-transition"]);
        let seeds: Vec<&str> = if i == 0 {
            vec![]
        } else {
            vec![nodes[0].gossip.as_str()]
        };
        nodes[i] = start_node(dir.path(), &name, (&gossip, &http), &seeds, &extra);
        wait_writable(&nodes[i], WAIT);
        stream.put_back(&http);
        stream.wait_more(30);
    }
    let all: Vec<&TestNode> = nodes.iter().collect();
    wait_listing(&all, &[row(&key, 5, 5)], "open");

    let listed = keys_command(&nodes[1], &["enforce"]);
    assert!(listed.contains("mode"), "{listed}");
    wait_listing(&all, &[row(&key, 5, 5)], "strict");
    stream.wait_more(50);

    // Plaintext is refused now.
    let before = rejections(&nodes[2], "tcp", "plaintext");
    let mut s = TcpStream::connect(&nodes[2].gossip).unwrap();
    let hello = gctr::codec::encode(&gctr::codec::Frame::Syn { digest: vec![] });
    let _ = s.write_all(&hello);
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert!(matches!(s.read(&mut [0u8; 8]), Ok(0) | Err(_)));
    wait_until("the plaintext to be refused", WAIT, || {
        rejections(&nodes[2], "tcp", "plaintext") == before + 1
    });

    let acked = stream.finish();
    let expected = BTreeMap::from([(COUNTER.to_owned(), acked as i64)]);
    wait_converged(&all, &expected, WAIT);

    // A restart keeps the enforced keyring, whatever the command line still says.
    let file = dir.path().join("p3.keyring");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains(" enforced "), "{text}");
    let (name, gossip, http) = (
        nodes[2].name.clone(),
        nodes[2].gossip.clone(),
        nodes[2].http.clone(),
    );
    assert_eq!(nodes[2].proc.terminate(WAIT), Some(0));
    let mut extra: Vec<&str> = wal_args[2].iter().map(String::as_str).collect();
    extra.extend(["--keyring", file.to_str().unwrap(), "--keyring-transition"]);
    nodes[2] = start_node(
        dir.path(),
        &name,
        (&gossip, &http),
        &[&nodes[0].gossip],
        &extra,
    );
    assert_eq!(keys_view(&nodes[2])["mode"], "strict");
    let all: Vec<&TestNode> = nodes.iter().collect();
    wait_listing(&all, &[row(&key, 5, 5)], "strict");
    wait_converged(&all, &expected, WAIT);
}
