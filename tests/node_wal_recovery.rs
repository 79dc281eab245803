//! Start-up on a data directory that a crash or a bad disk left behind, with the real
//! binary: corruption in an earlier segment is refused (exit 1, naming file and offset)
//! until `--repair`; a torn last record is cut and logged and every complete record kept;
//! a kill under `--fsync never` brings a new incarnation that still counts the old one.

mod common;

use common::cluster::{node_addrs, start_node, TestNode};
use common::{agent, get_json, http_get, http_post, Proc};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A segment starts with an 8-byte magic and a u32 format version; a frame with a u64
/// sequence number, a u32 length and a u32 CRC before its data.
const SEGMENT_HEADER: usize = 12;
const FRAME_HEADER: usize = 16;

/// The segments in `dir`, oldest first.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    found.sort();
    found
}

/// Each frame of a segment: (offset, data length). A segment is preallocated, so after
/// a kill its last frame is followed by zeros (sequence numbers start at 1, so a frame
/// header of zeros is none).
fn frames(segment: &Path) -> Vec<(usize, usize)> {
    let bytes = std::fs::read(segment).unwrap();
    let mut at = SEGMENT_HEADER;
    let mut found = Vec::new();
    while at + FRAME_HEADER <= bytes.len() && bytes[at..at + 8] != [0; 8] {
        let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        found.push((at, len));
        at += FRAME_HEADER + len;
    }
    assert!(
        at <= bytes.len() && bytes[at..].iter().all(|b| *b == 0),
        "{} does not end on a frame and zeros",
        segment.display()
    );
    found
}

fn increments(node: &TestNode, counter: &str, times: usize) {
    let agent = agent();
    for _ in 0..times {
        common::cluster::apply_op(&agent, &node.http, counter, true, 1);
    }
}

fn json(http: &str, path: &str) -> Value {
    get_json(http, path).unwrap_or_else(|| panic!("GET {path} did not answer 200 with JSON"))
}

fn value(node: &TestNode, counter: &str) -> i64 {
    json(&node.http, &format!("/counters/{counter}"))["value"]
        .as_i64()
        .unwrap()
}

fn log_of(logs: &Path, name: &str) -> String {
    std::fs::read_to_string(logs.join(format!("{name}.log"))).unwrap()
}

/// Runs `gctr node args…` expecting it to refuse to start; returns its exit code and
/// stderr.
fn refused(logs: &Path, args: &[&str]) -> (Option<i32>, String) {
    let log = logs.join("refused.log");
    let mut proc = Proc::spawn("refused", args, Some(&log));
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(status) = proc.child.try_wait().unwrap() {
            break status.code();
        }
        assert!(
            Instant::now() < deadline,
            "the node started instead of refusing"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    (code, std::fs::read_to_string(&log).unwrap())
}

#[test]
fn corruption_in_an_earlier_segment_is_refused_until_repair() {
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let wal = data.path().to_str().unwrap();
    let (gossip, http) = node_addrs();
    let flags = ["--wal", wal, "--segment-size", "300"];
    let mut node = start_node(logs.path(), "n1", (&gossip, &http), &[], &flags);
    let origin = json(&http, "/status")["origin"].clone();
    increments(&node, "c", 20);
    assert_eq!(node.proc.terminate(Duration::from_secs(10)), Some(0));

    let segs = segments(data.path());
    assert!(segs.len() >= 3, "tiny segments: {segs:?}");
    let first = &segs[0];
    let records = frames(first);
    assert!(records.len() >= 3, "{records:?}");
    let bad = records.len() / 2;
    let (offset, len) = records[bad];
    let mut bytes = std::fs::read(first).unwrap();
    bytes[offset + FRAME_HEADER + len / 2] ^= 0x10;
    std::fs::write(first, bytes).unwrap();

    let args = [
        "node", "--addr", &gossip, "--http", &http, "--name", "n1", "--wal", wal,
    ];
    let (code, stderr) = refused(logs.path(), &args);
    assert_eq!(code, Some(1), "{stderr}");
    let file = first.file_name().unwrap().to_str().unwrap();
    assert!(
        stderr.contains(file) && stderr.contains(&format!("offset {offset}")),
        "the error names neither {file} nor offset {offset}: {stderr}"
    );
    assert!(stderr.contains("--repair"), "{stderr}");

    let repaired = start_node(
        logs.path(),
        "n1",
        (&gossip, &http),
        &[],
        &["--wal", wal, "--repair"],
    );
    // Every record before the bad one is kept; the later segments are set aside.
    assert_eq!(value(&repaired, "c"), bad as i64);
    let status = json(&http, "/status");
    assert_ne!(
        status["origin"], origin,
        "repair must take a new incarnation"
    );
    let repairs = &status["storage"]["recovery"]["repairs"];
    assert_eq!(repairs.as_array().map(Vec::len), Some(1), "{status}");
    assert!(log_of(logs.path(), "n1").contains("repaired corruption"));
    let (s, body) = http_post(&http, "/counters/c/increment", "").unwrap();
    assert_eq!(
        (s, body),
        (200, format!(r#"{{"name":"c","value":{}}}"#, bad + 1))
    );
}

#[test]
fn a_torn_tail_is_cut_and_logged_and_every_complete_record_kept() {
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let wal = data.path().to_str().unwrap();
    let (gossip, http) = node_addrs();
    let addrs = (gossip.as_str(), http.as_str());
    let mut node = start_node(logs.path(), "n1", addrs, &[], &["--wal", wal]);
    increments(&node, "c", 5);
    node.proc.kill();

    // The last record cut short, as by a crash in the middle of its write.
    let last = segments(data.path()).pop().unwrap();
    let (offset, len) = *frames(&last).last().unwrap();
    let file = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
    file.set_len((offset + FRAME_HEADER + len - 3) as u64)
        .unwrap();
    drop(file);
    let mut node = start_node(logs.path(), "n1", addrs, &[], &["--wal", wal]);
    assert_eq!(value(&node, "c"), 4);
    let log = log_of(logs.path(), "n1");
    assert!(log.contains("torn tail cut"), "{log}");
    let torn = &json(&http, "/status")["storage"]["recovery"]["torn_tail"];
    assert_eq!(torn["offset"], offset, "{torn}");
    increments(&node, "c", 1);
    node.proc.kill();

    // Garbage after the last complete record.
    let last = segments(data.path()).pop().unwrap();
    let mut bytes = std::fs::read(&last).unwrap();
    let (offset, len) = *frames(&last).last().unwrap();
    let end = offset + FRAME_HEADER + len;
    bytes.truncate(end);
    bytes.extend((0..37u8).map(|b| b.wrapping_mul(97)));
    std::fs::write(&last, bytes).unwrap();
    let node = start_node(logs.path(), "n1", addrs, &[], &["--wal", wal]);
    assert_eq!(value(&node, "c"), 5);
    let log = log_of(logs.path(), "n1");
    assert!(log.contains(&format!("at offset {end}")), "{log}");
    increments(&node, "c", 1);
    assert_eq!(value(&node, "c"), 6);
}

#[test]
fn a_kill_under_fsync_never_brings_a_new_incarnation_that_counts_the_old() {
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let wal = data.path().to_str().unwrap();
    let (gossip, http) = node_addrs();
    let addrs = (gossip.as_str(), http.as_str());
    let flags = ["--wal", wal, "--fsync", "never"];
    let mut node = start_node(logs.path(), "n1", addrs, &[], &flags);
    let old = json(&http, "/status")["origin"]
        .as_str()
        .unwrap()
        .to_owned();
    increments(&node, "c", 7);
    node.proc.kill();

    let node = start_node(logs.path(), "n1", addrs, &[], &flags);
    let status = json(&http, "/status");
    let new = status["origin"].as_str().unwrap();
    assert_ne!(
        new, old,
        "an unclean stop under --fsync never needs a new incarnation"
    );
    assert!(new.starts_with("n1/"), "{new}");
    let incarnation = &status["storage"]["recovery"]["new_incarnation"];
    assert!(incarnation["reason"].is_string(), "{status}");
    // The process died, not the machine: what it wrote is in the page cache and replays.
    let counter = json(&http, "/counters/c");
    assert_eq!(counter["value"], 7, "{counter}");
    let origins = counter["origins"].as_array().unwrap();
    assert!(
        origins
            .iter()
            .any(|o| o["origin"] == old.as_str() && o["p"] == 7),
        "{counter}"
    );
    increments(&node, "c", 1);
    assert_eq!(value(&node, "c"), 8);
}

#[test]
fn a_data_directory_keeps_its_name() {
    let logs = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let wal = data.path().to_str().unwrap();
    let (gossip, http) = node_addrs();
    let mut node = start_node(logs.path(), "n1", (&gossip, &http), &[], &["--wal", wal]);
    assert_eq!(node.proc.terminate(Duration::from_secs(10)), Some(0));

    let args = [
        "node", "--addr", &gossip, "--http", &http, "--name", "n2", "--wal", wal,
    ];
    let (code, stderr) = refused(logs.path(), &args);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("\"n1\""), "{stderr}");

    // Without --name the directory's own name is used.
    let mut proc = Proc::spawn(
        "unnamed",
        &["node", "--addr", &gossip, "--http", &http, "--wal", wal],
        None,
    );
    common::wait_until("the node to serve", Duration::from_secs(10), || {
        http_get(&http, "/health").is_ok_and(|(s, _)| s == 200)
    });
    assert_eq!(json(&http, "/status")["name"], "n1");
    proc.kill();
}
