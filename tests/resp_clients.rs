//! `gctr node --redis` driven by real Redis clients: every listed command through
//! `redis-cli`, the Python `redis` package (tests/resp/redis_py_checks.py: pipelines of
//! 1,000 commands, transactions, refusals), inline commands, and bad input; values are
//! checked against the HTTP API of the same node.

mod common;

use common::redis::{
    cmd, need, need_python_redis, redis_cli, redis_cli_stdin, start_redis_node, RespClient,
};
use common::{gctr_bin, get_json, stdout, Proc};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

/// `redis-cli args...` on `node`, its stdout lines.
fn cli(node: &common::redis::RedisNode, args: &[&str]) -> Vec<String> {
    let out = redis_cli(node, args);
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    stdout(&out).lines().map(str::to_owned).collect()
}

fn http_value(http: &str, name: &str) -> i64 {
    let v = get_json(http, &format!("/counters/{name}")).expect("GET /counters/NAME");
    v["value"].as_i64().expect("value")
}

#[test]
fn the_start_up_line_names_the_redis_address_only_when_enabled() {
    let child = Command::new(gctr_bin())
        .args([
            "node",
            "--addr",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--log-level",
            "off",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut node = Proc {
        child,
        name: "plain".into(),
    };
    let mut line = String::new();
    BufReader::new(node.child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.split_whitespace().count(), 7, "{line}");
    assert!(!line.contains("redis"), "{line}");
    node.kill();

    let help = Command::new(gctr_bin())
        .args(["node", "--help"])
        .output()
        .unwrap();
    assert!(stdout(&help).contains("--redis HOST:PORT"));
}

#[test]
fn redis_cli_runs_every_listed_command() {
    need("redis-cli");
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal");
    let node = start_redis_node(dir.path(), "cli", &[], &["--wal", wal.to_str().unwrap()]);

    assert_eq!(cli(&node, &["PING"]), ["PONG"]);
    assert_eq!(cli(&node, &["PING", "hi"]), ["hi"]);
    assert_eq!(cli(&node, &["ECHO", "a b"]), ["a b"]);
    assert_eq!(cli(&node, &["INCR", "hits"]), ["1"]);
    assert_eq!(cli(&node, &["INCRBY", "hits", "9"]), ["10"]);
    assert_eq!(cli(&node, &["DECR", "hits"]), ["9"]);
    assert_eq!(cli(&node, &["DECRBY", "hits", "4"]), ["5"]);
    assert_eq!(cli(&node, &["INCRBY", "hits", "-7"]), ["-2"]);
    assert_eq!(cli(&node, &["DECRBY", "hits", "-3"]), ["1"]);
    assert_eq!(cli(&node, &["GET", "hits"]), ["1"]);
    assert_eq!(cli(&node, &["GET", "never"]), ["0"]);
    assert_eq!(cli(&node, &["MGET", "hits", "never"]), ["1", "0"]);
    assert_eq!(cli(&node, &["EXISTS", "hits", "never", "hits"]), ["2"]);
    assert_eq!(http_value(&node.http, "hits"), 1);
    assert_eq!(cli(&node, &["SELECT", "0"]), ["OK"]);
    assert!(cli(&node, &["SELECT", "3"])[0].starts_with("ERR DB index is out of range"));
    assert_eq!(cli(&node, &["QUIT"]), ["OK"]);
    assert_eq!(cli(&node, &["RESET"]), ["RESET"]);
    let hello = cli(&node, &["HELLO", "2"]);
    assert_eq!(
        hello[..6],
        [
            "server",
            "gctr",
            "version",
            env!("CARGO_PKG_VERSION"),
            "proto",
            "2"
        ]
    );
    assert!(cli(&node, &["HELLO", "3"])[0].starts_with("NOPROTO"));
    assert!(cli(&node, &["AUTH", "secret"])[0].contains("AUTH is not supported"));
    assert!(cli(&node, &["CLIENT", "ID"])[0].parse::<u64>().is_ok());
    assert_eq!(cli(&node, &["CLIENT", "SETINFO", "LIB-VER", "1.0"]), ["OK"]);
    // One connection: the name set is the name read back.
    let out = redis_cli_stdin(
        &node,
        "CLIENT GETNAME\nCLIENT SETNAME worker-1\nCLIENT GETNAME\n",
    );
    assert_eq!(
        stdout(&out).lines().collect::<Vec<_>>(),
        ["", "OK", "worker-1"]
    );
    let count: usize = cli(&node, &["COMMAND", "COUNT"])[0].parse().unwrap();
    assert!(count >= 18, "{count}");
    assert_eq!(
        cli(&node, &["COMMAND", "INFO", "incrby"])[..2],
        ["incrby", "3"]
    );
    let docs = cli(&node, &["COMMAND", "DOCS", "get"]);
    assert_eq!(
        docs[..3],
        [
            "get",
            "summary",
            "Returns a counter's value as a string; \"0\" for a counter never written."
        ]
    );
    assert!(cli(&node, &["COMMAND"]).contains(&"mget".to_owned()));
    let info = cli(&node, &["INFO"]).join("\n");
    for field in [
        "# Server",
        "redis_version:",
        "# Clients",
        // Earlier redis-cli connections may still be closing: any count will do.
        "connected_clients:",
        "maxclients:1024",
        "# Persistence",
        "aof_enabled:1",
        "gctr_fsync_policy:always",
        "# Replication",
        "role:master",
        "gctr_peers_known:0",
    ] {
        assert!(info.contains(field), "{field} missing from INFO:\n{info}");
    }
    assert_eq!(
        cli(&node, &["CONFIG", "GET", "appendonly"]),
        ["appendonly", "yes"]
    );
    assert_eq!(cli(&node, &["CONFIG", "GET", "save"]), ["save", ""]);

    // Every other command is refused, naming it, and applies nothing.
    for words in [
        &["SET", "hits", "100"][..],
        &["DEL", "hits"],
        &["EXPIRE", "hits", "1"],
        &["INCRBYFLOAT", "hits", "1.5"],
    ] {
        let reply = cli(&node, words)[0].clone();
        assert!(
            reply.starts_with(&format!("ERR unknown command '{}'", words[0]))
                && reply.contains("PN-counters only"),
            "{reply}"
        );
    }
    assert!(cli(&node, &["INCRBY", "hits", "ten"])[0].contains("not an integer"));
    let long = "k".repeat(129);
    assert!(cli(&node, &["INCR", &long])[0].contains("invalid counter name"));
    assert_eq!(cli(&node, &["GET", "hits"]), ["1"]);
    assert_eq!(http_value(&node.http, "hits"), 1);
    let counters = get_json(&node.http, "/counters").unwrap();
    assert_eq!(counters["counters"], serde_json::json!({"hits": 1}));
}

#[test]
fn inline_commands_work_as_over_telnet() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_redis_node(dir.path(), "inline", &[], &[]);
    let mut s = TcpStream::connect(&node.redis).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"PING\r\nincrby  visits\t5\r\n\r\nget visits\nquit\r\n")
        .unwrap();
    let mut replies = String::new();
    s.read_to_string(&mut replies).unwrap();
    assert_eq!(replies, "+PONG\r\n:5\r\n$1\r\n5\r\n+OK\r\n");
    assert_eq!(http_value(&node.http, "visits"), 5);
}

#[test]
fn the_python_redis_client_works_against_the_node() {
    need_python_redis();
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal");
    let node = start_redis_node(dir.path(), "py", &[], &["--wal", wal.to_str().unwrap()]);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/resp/redis_py_checks.py");
    let out = Command::new("python3")
        .args([script, &node.port(), &node.http])
        .stdin(Stdio::null())
        .output()
        .expect("run python3");
    let text = format!("{}{}", stdout(&out), common::stderr(&out));
    assert!(out.status.success(), "redis_py_checks.py failed:\n{text}");
    assert!(text.contains("all checks passed"), "{text}");
    println!("{text}");
}

#[test]
fn bad_input_closes_only_its_own_connection() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_redis_node(dir.path(), "bad", &[], &[]);
    let mut healthy = RespClient::connect(&node.redis).unwrap();
    for garbage in [
        &b"*1\r\n$2147483648\r\n"[..],
        b"*99999999\r\n",
        b"*1\r\n:1\r\n",
        b"*1\r\n$1\r\nab\r\n",
        b"*1\r\n$999999999999999999999999\r\n",
    ] {
        let mut s = TcpStream::connect(&node.redis).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(garbage).unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert!(
            reply.starts_with("-ERR Protocol error"),
            "{garbage:?}: {reply}"
        );
    }
    healthy
        .send(&[cmd(&["INCR", "ok"]), cmd(&["GET", "ok"])])
        .unwrap();
    assert_eq!(healthy.read_reply().unwrap(), ":1");
    assert_eq!(healthy.read_reply().unwrap(), "$1");
    assert_eq!(
        get_json(&node.http, "/counters").unwrap()["counters"],
        serde_json::json!({"ok": 1})
    );
}
