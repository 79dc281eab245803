//! Helpers for tests that run real `gctr node` processes on 127.0.0.1: start a node and
//! wait until it serves HTTP, send operations, read counters, and poll for convergence.

use super::{free_addr, get_json, http_get, wait_until, Proc};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

/// A running node process with its addresses.
pub struct TestNode {
    pub proc: Proc,
    pub name: String,
    pub gossip: String,
    pub http: String,
}

/// Starts `gctr node` on ports the system picks (`127.0.0.1:0`, so no other process can
/// take them between a test choosing and the node binding them) and reads the addresses
/// from the line it prints first: `gctr node NAME gossip ADDR http ADDR`. Its log goes to
/// `log_dir/NAME.log`; it serves HTTP when this returns.
pub fn start_node_anywhere(log_dir: &Path, name: &str, seeds: &[&str], extra: &[&str]) -> TestNode {
    let any = "127.0.0.1:0";
    let args = node_args(name, (any, any), seeds, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let log = log_dir.join(format!("{name}.log"));
    let (proc, words) = super::spawn_reading_first_line(name, &args, &log);
    if words.len() != 7 || words[..3] != ["gctr", "node", name] {
        panic!(
            "{name} did not start: stdout {words:?}, log:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    let (gossip, http) = (words[4].clone(), words[6].clone());
    wait_until(
        &format!("{name} to serve HTTP"),
        Duration::from_secs(10),
        || http_get(&http, "/health").is_ok_and(|(s, _)| s == 200),
    );
    TestNode {
        proc,
        name: name.to_owned(),
        gossip,
        http,
    }
}

/// The arguments of `gctr node` named `name` on `(gossip, http)` with `seeds` (none:
/// no `--seeds`), logging at debug, then `extra`.
pub fn node_args(
    name: &str,
    (gossip, http): (&str, &str),
    seeds: &[&str],
    extra: &[&str],
) -> Vec<String> {
    let mut args = vec!["node", "--addr", gossip, "--http", http, "--name", name];
    args.extend(["--log-level", "debug"]);
    let seeds = seeds.join(",");
    if !seeds.is_empty() {
        args.extend(["--seeds", seeds.as_str()]);
    }
    args.extend(extra);
    args.into_iter().map(str::to_owned).collect()
}

/// Fresh loopback addresses for a node: (gossip, http).
pub fn node_addrs() -> (String, String) {
    (free_addr().to_string(), free_addr().to_string())
}

/// Starts `gctr node` and waits until `GET /health` answers. Its log goes to
/// `log_dir/NAME.log`.
pub fn start_node(
    log_dir: &Path,
    name: &str,
    (gossip, http): (&str, &str),
    seeds: &[&str],
    extra: &[&str],
) -> TestNode {
    let args = node_args(name, (gossip, http), seeds, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let log = log_dir.join(format!("{name}.log"));
    let proc = Proc::spawn(name, &args, Some(&log));
    wait_until(
        &format!("{name} to serve HTTP"),
        Duration::from_secs(10),
        || http_get(http, "/health").is_ok_and(|(s, _)| s == 200),
    );
    TestNode {
        proc,
        name: name.to_owned(),
        gossip: gossip.to_owned(),
        http: http.to_owned(),
    }
}

/// Every counter the node at `http` knows, or `None` if it does not answer.
pub fn counters(http: &str) -> Option<BTreeMap<String, i64>> {
    let (status, body) = http_get(http, "/counters").ok()?;
    if status != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    serde_json::from_value(v.get("counters")?.clone()).ok()
}

/// Polls until every node reports exactly `expected`; on timeout, panics showing what
/// each node reports.
pub fn wait_converged(nodes: &[&TestNode], expected: &BTreeMap<String, i64>, timeout: Duration) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let seen: Vec<Option<BTreeMap<String, i64>>> =
            nodes.iter().map(|n| counters(&n.http)).collect();
        if seen.iter().all(|s| s.as_ref() == Some(expected)) {
            return;
        }
        if std::time::Instant::now() >= deadline {
            let report: Vec<String> = nodes
                .iter()
                .zip(&seen)
                .map(|(n, s)| format!("{}: {s:?}", n.name))
                .collect();
            panic!(
                "no convergence after {timeout:?}; expected {expected:?}\n{}",
                report.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Path of a counter operation, the name percent-encoded as one segment.
pub fn op_path(counter: &str, increment: bool, by: u64) -> String {
    let verb = if increment { "increment" } else { "decrement" };
    let name: String = counter
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("/counters/{name}/{verb}?by={by}")
}

/// Sends one operation with `agent` and returns the value the node answered; panics on
/// anything but 200.
pub fn apply_op(agent: &ureq::Agent, http: &str, counter: &str, increment: bool, by: u64) -> i64 {
    let url = format!("http://{http}{}", op_path(counter, increment, by));
    let resp = agent
        .post(&url)
        .call()
        .unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let v: serde_json::Value = resp.into_json().expect("JSON answer");
    v["value"].as_i64().expect("value")
}

/// Polls until the node accepts writes (`/status` says `writes.writable`): a node that
/// recovered its data holds writes until a member confirms its origin.
pub fn wait_writable(node: &TestNode, timeout: Duration) {
    wait_until(&format!("{} to accept writes", node.name), timeout, || {
        get_json(&node.http, "/status")
            .is_some_and(|s| s["writes"]["writable"].as_bool() == Some(true))
    });
}

/// The number at `path` in the node's `GET /status`.
pub fn figure(node: &TestNode, path: &[&str]) -> u64 {
    let mut v = get_json(&node.http, "/status").expect("status");
    for p in path {
        v = v[*p].clone();
    }
    v.as_u64().unwrap_or_else(|| panic!("{path:?} in /status"))
}
