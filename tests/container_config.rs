//! What a container needs from the binary, run as real processes: a node configured by
//! `GCTR_*` variables alone, listening on 0.0.0.0 and advertising the address peers
//! reach; `gctr health` for health checks.

mod common;

use common::cluster::node_addrs;
use common::{free_addr, gctr_bin, get_json, run_gctr, stderr, stdout, wait_until, Proc};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// `gctr ARGS` with only `env` for environment (plus PATH).
fn gctr_with_env(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(gctr_bin());
    cmd.args(args).env_clear().envs(env.iter().copied());
    cmd
}

fn output(mut cmd: Command) -> Output {
    cmd.output().expect("run gctr")
}

#[test]
fn a_node_set_up_by_variables_advertises_the_address_peers_reach() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_addr().port();
    let (http_port, wal) = (free_addr().port(), dir.path().join("a"));
    let listen = format!("0.0.0.0:{port}");
    let listen_http = format!("0.0.0.0:{http_port}");
    let mut cmd = gctr_with_env(
        &["node"],
        &[
            ("GCTR_ADDR", listen.as_str()),
            ("GCTR_HTTP", listen_http.as_str()),
            ("GCTR_ADVERTISE", "localhost"),
            ("GCTR_NAME", "a"),
            ("GCTR_WAL", wal.to_str().unwrap()),
            ("GCTR_NO_EAGER_PUSH", "0"),
            ("GCTR_LOG_LEVEL", "debug"),
        ],
    );
    let log = std::fs::File::create(dir.path().join("a.log")).unwrap();
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
    let _a = Proc {
        child: cmd.spawn().expect("spawn node a"),
        name: "a".into(),
    };
    let a_http = format!("127.0.0.1:{http_port}");
    let a_gossip = format!("127.0.0.1:{port}");
    wait_until("a to serve HTTP", Duration::from_secs(10), || {
        get_json(&a_http, "/health").is_some()
    });
    let members = get_json(&a_http, "/members").expect("a's members");
    let me = members["members"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["name"] == "a"))
        .expect("a among its own members");
    assert_eq!(me["gossip_addr"], a_gossip.as_str(), "{members}");
    assert_eq!(me["http_addr"], a_http.as_str(), "{members}");

    let (g, h) = node_addrs();
    let b = common::cluster::start_node(dir.path(), "b", (&g, &h), &[&a_gossip], &[]);
    let o = run_gctr(&["inc", "--by", "5", "--http", &b.http]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    wait_until("a to learn b's increment", Duration::from_secs(10), || {
        get_json(&a_http, "/counters/default").is_some_and(|v| v["value"] == 5)
    });
    let peers = get_json(&b.http, "/members").expect("b's members");
    let seen = peers["members"].as_array().unwrap().iter().any(|m| {
        m["name"] == "a" && m["gossip_addr"] == a_gossip.as_str() && m["state"] == "alive"
    });
    assert!(seen, "b should see a alive at {a_gossip}: {peers}");

    let o = output(gctr_with_env(&["health"], &[("GCTR_HTTP", &a_http)]));
    assert_eq!((o.status.code(), stdout(&o).trim()), (Some(0), "ok"));
    let o = run_gctr(&["health", "--http", &b.http, "--timeout", "1s"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn health_fails_without_an_answer_and_bad_variables_are_usage_errors() {
    let closed = free_addr().to_string();
    let o = run_gctr(&["health", "--http", &closed, "--timeout", "1s"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).starts_with("gctr: "), "{}", stderr(&o));

    let o = output(gctr_with_env(&["health"], &[("GCTR_TIMEOUT", "soon")]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--timeout"), "{}", stderr(&o));
    let o = output(gctr_with_env(
        &["node"],
        &[("GCTR_ADDR", "127.0.0.1:1"), ("GCTR_REPAIR", "maybe")],
    ));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("GCTR_REPAIR"), "{}", stderr(&o));
    let o = output(gctr_with_env(
        &["node"],
        &[
            ("GCTR_ADDR", "127.0.0.1:0"),
            ("GCTR_ADVERTISE", "no-such-host.invalid"),
        ],
    ));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--advertise"), "{}", stderr(&o));
    let o = output(gctr_with_env(
        &["discovery", "--port", "1"],
        &[("GCTR_BIND", "not-an-ip")],
    ));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}
