//! `gctr maelstrom` sessions on one node: the reference task's sample session, the error
//! replies Maelstrom defines for bad input, and a clean stop when stdin closes.

mod maelstrom_net;

use maelstrom_net::{seed, Net};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(5);

fn one_node() -> Net {
    Net::start(1, &[], Duration::ZERO, seed())
}

fn init(net: &mut Net) {
    let id = net.request(
        0,
        "c0",
        json!({"type": "init", "node_id": "n1", "node_ids": ["n1", "n2", "n3"]}),
    );
    let reply = net.await_reply(id, WAIT).expect("init_ok");
    assert_eq!(reply["type"], "init_ok", "{reply}");
    assert_eq!(reply["in_reply_to"], id, "{reply}");
}

fn call(net: &mut Net, body: Value) -> Value {
    let id = net.request(0, "c1", body);
    let reply = net.await_reply(id, WAIT).expect("a reply");
    assert_eq!(reply["in_reply_to"], id, "{reply}");
    reply
}

fn read(net: &mut Net) -> i64 {
    let reply = call(net, json!({"type": "read"}));
    assert_eq!(reply["type"], "read_ok", "{reply}");
    reply["value"].as_i64().expect("an integer value")
}

/// Sends a raw line with `msg_id` and returns the error code of the reply.
fn error_code(net: &mut Net, msg_id: u64, line: &str) -> i64 {
    net.send_raw(0, line);
    let reply = net.await_reply(msg_id, WAIT).expect("an error reply");
    assert_eq!(reply["type"], "error", "{line} → {reply}");
    assert!(
        reply["text"].as_str().is_some_and(|t| !t.is_empty()),
        "{reply}"
    );
    reply["code"].as_i64().expect("an integer code")
}

#[test]
fn the_reference_sample_session() {
    let mut net = one_node();
    init(&mut net);
    net.send_raw(
        0,
        r#"{"src":"n2","dest":"n1","body":{"type":"replicate","p_counters":{"n1":0,"n2":10}}}"#,
    );
    assert_eq!(read(&mut net), 10);
    let reply = call(&mut net, json!({"type": "add", "delta": -3}));
    assert_eq!(reply["type"], "add_ok", "{reply}");
    assert_eq!(read(&mut net), 7);
    // Whole totals merge by maximum: an older, smaller vector changes nothing, a replayed
    // one changes nothing, and decrements arrive in n_counters.
    net.send_raw(
        0,
        r#"{"src":"n3","dest":"n1","body":{"type":"replicate","p_counters":{"n2":4},"n_counters":{"n3":2}}}"#,
    );
    net.send_raw(
        0,
        r#"{"src":"n2","dest":"n1","body":{"type":"replicate","p_counters":{"n1":0,"n2":10}}}"#,
    );
    assert_eq!(read(&mut net), 5);
    let zero = call(&mut net, json!({"type": "add", "delta": 0}));
    assert_eq!(zero["type"], "add_ok", "{zero}");
    let topology = call(
        &mut net,
        json!({"type": "topology", "topology": {"n1": ["n2"], "n2": ["n1"], "n3": []}}),
    );
    assert_eq!(topology["type"], "topology_ok", "{topology}");
    let status = call(&mut net, json!({"type": "gossip_status"}));
    assert_eq!(status["type"], "gossip_status_ok", "{status}");
    assert_eq!(status["local_value"], 5, "{status}");
    assert_eq!(
        status["peers_synced"], 0,
        "no peer runs, so none has sent a digest"
    );
    assert!(status["gossip_rounds"].is_u64(), "{status}");
    assert!(status["convergence_ms"].is_u64(), "{status}");
}

#[test]
fn bad_input_gets_maelstrom_errors_and_the_node_keeps_serving() {
    let mut net = one_node();
    // Before init, a request is definitely refused: temporarily-unavailable.
    assert_eq!(
        error_code(
            &mut net,
            900,
            r#"{"src":"c1","dest":"n1","body":{"type":"read","msg_id":900}}"#
        ),
        11
    );
    init(&mut net);
    // Not JSON at all: nothing to address, logged only.
    net.send_raw(0, "this is not JSON {");
    net.send_raw(
        0,
        r#"{"src":"c1","dest":"n1","body":{"type":"add","delta":1"#,
    );
    let cases = [
        (
            901,
            r#"{"src":"c1","dest":"n1","body":{"type":"add","msg_id":901}}"#,
            12,
        ),
        (
            902,
            r#"{"src":"c1","dest":"n1","body":{"type":"add","delta":"7","msg_id":902}}"#,
            12,
        ),
        (
            903,
            r#"{"src":"c1","dest":"n1","body":{"type":"add","delta":1e30,"msg_id":903}}"#,
            12,
        ),
        (
            904,
            r#"{"src":"c1","dest":"n1","body":{"type":"frobnicate","msg_id":904}}"#,
            10,
        ),
        (905, r#"{"src":"c1","dest":"n1","body":{"msg_id":905}}"#, 12),
        (
            906,
            r#"{"src":"c1","body":{"type":"read","msg_id":906}}"#,
            12,
        ),
        (
            907,
            r#"{"src":"c1","dest":"n1","body":{"type":"init","node_id":"n7","node_ids":["n7"],"msg_id":907}}"#,
            14,
        ),
        (
            908,
            r#"{"src":"n2","dest":"n1","body":{"type":"replicate","p_counters":{"n2":"ten"},"msg_id":908}}"#,
            12,
        ),
        (
            909,
            r#"{"src":"n2","dest":"n1","body":{"type":"gossip","frame":{"type":"syn"},"msg_id":909}}"#,
            12,
        ),
        (
            910,
            r#"{"src":"n2","dest":"n1","body":{"type":"gossip","frame":{"type":"push","delta":[{"origin":{"node":"","incarnation":0},"from":0,"to":1,"entries":[]}]},"msg_id":910}}"#,
            12,
        ),
    ];
    for (msg_id, line, code) in cases {
        assert_eq!(error_code(&mut net, msg_id, line), code, "{line}");
    }
    assert_eq!(read(&mut net), 0, "no bad message changed the counter");

    // An add that would take the total past i64::MAX is refused (abort, definite) and
    // changes nothing.
    let max = call(&mut net, json!({"type": "add", "delta": i64::MAX}));
    assert_eq!(max["type"], "add_ok", "{max}");
    let over = call(&mut net, json!({"type": "add", "delta": 1}));
    assert_eq!(
        (over["type"].as_str(), over["code"].as_i64()),
        (Some("error"), Some(14)),
        "{over}"
    );
    assert_eq!(read(&mut net), i64::MAX);
    let down = call(&mut net, json!({"type": "add", "delta": -i64::MAX}));
    assert_eq!(down["type"], "add_ok", "{down}");
    assert_eq!(read(&mut net), 0);
    assert_eq!(net.exit_code(0), None, "the node is still running");
}

#[test]
fn closing_stdin_stops_the_node_cleanly() {
    let mut net = one_node();
    init(&mut net);
    net.close_stdin(0);
    let deadline = Instant::now() + WAIT;
    let code = loop {
        if let Some(code) = net.exit_code(0) {
            break code;
        }
        assert!(
            Instant::now() < deadline,
            "the node did not stop after stdin closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(0));
}

#[test]
fn the_wrapper_script_runs_the_maelstrom_subcommand() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/maelstrom-node.sh");
    let mut child = Command::new("sh")
        .args([script, "--log-level", "off"])
        .env("GCTR_BIN", env!("CARGO_BIN_EXE_gctr"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run the wrapper script");
    let init = r#"{"src":"c1","dest":"n1","body":{"type":"init","msg_id":1,"node_id":"n1","node_ids":["n1"]}}"#;
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "{init}").expect("write init");
    drop(stdin);
    let out = child.wait_with_output().expect("wrapper output");
    assert!(out.status.success(), "{:?}", out.status);
    let reply: Value = serde_json::from_slice(&out.stdout).expect("one JSON line");
    assert_eq!(reply["body"]["type"], "init_ok", "{reply}");
    assert_eq!(reply["src"], "n1", "{reply}");
}
