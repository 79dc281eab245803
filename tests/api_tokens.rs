//! API tokens (`--api-token-file`) on a real node and a real discovery server: no token
//! or an unknown one is 401, a read-only token on a change is 403 and changes nothing, a
//! read-write token may do anything, `/health` is always open, every refusal is counted
//! in `/status` and `/metrics`; the CLI sends `--token` / `GCTR_TOKEN`; a node with a
//! token registers with a discovery that needs one and the cluster forms, one without
//! is refused; the Redis protocol asks for `AUTH TOKEN` and keeps read-only tokens to
//! reads; a flood of requests without credentials changes nothing, is counted and
//! costs no threads; a malformed token file stops the server naming its line.

mod common;

use common::cluster::{node_addrs, start_node};
use common::redis::{cmd, need, redis_cli, start_redis_node, RespClient};
use common::{free_addr, gctr_bin, get_json, run_gctr, stderr, stdout, wait_until, Proc};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const RW: &str = "rw-token-0123456789abcdef";
const RO: &str = "ro-token-0123456789abcdef";

fn token_file(dir: &Path) -> PathBuf {
    let path = dir.join("tokens");
    std::fs::write(&path, format!("# test tokens\nrw {RW}\nro {RO}\n")).unwrap();
    path
}

/// `method` on `http://addr/path` with `token` as a bearer token; status, body and the
/// `WWW-Authenticate` header.
fn call(method: &str, addr: &str, path: &str, token: Option<&str>) -> (u16, String, String) {
    let mut request = common::agent().request(method, &format!("http://{addr}{path}"));
    if let Some(t) = token {
        request = request.set("Authorization", &format!("Bearer {t}"));
    }
    let response = match request.send_string(if method == "GET" { "" } else { "{}" }) {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {path}: {e}"),
    };
    let status = response.status();
    let challenge = response.header("WWW-Authenticate").unwrap_or("").to_owned();
    (status, response.into_string().unwrap(), challenge)
}

fn status_of(method: &str, addr: &str, path: &str, token: Option<&str>) -> u16 {
    call(method, addr, path, token).0
}

fn value(addr: &str, counter: &str) -> i64 {
    let (status, body, _) = call("GET", addr, &format!("/counters/{counter}"), Some(RO));
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<serde_json::Value>(&body).unwrap()["value"]
        .as_i64()
        .unwrap()
}

/// `gctr ARGS` with `GCTR_TOKEN` set to `env_token` (or unset).
fn gctr_with_env(args: &[&str], env_token: Option<&str>) -> std::process::Output {
    let mut cmd = Command::new(gctr_bin());
    cmd.args(args).stdin(Stdio::null()).env_remove("GCTR_TOKEN");
    if let Some(t) = env_token {
        cmd.env("GCTR_TOKEN", t);
    }
    cmd.output().expect("run gctr")
}

#[test]
fn node_api_needs_a_token_and_a_read_write_one_for_changes() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = token_file(dir.path());
    let (g, h) = node_addrs();
    let extra = ["--api-token-file", tokens.to_str().unwrap()];
    let node = start_node(dir.path(), "tok", (&g, &h), &[], &extra);
    let http = node.http.as_str();
    let inc = "/counters/c/increment?by=2";

    assert_eq!(status_of("GET", http, "/health", None), 200);
    let (status, body, challenge) = call("POST", http, inc, None);
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("Authorization: Bearer TOKEN"), "{body}");
    assert_eq!(challenge, "Bearer realm=\"gctr\"");
    assert_eq!(
        status_of("POST", http, inc, Some("unknown-token-0123456789")),
        401
    );
    let (status, body, challenge) = call("POST", http, inc, Some(RO));
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("read-only"), "{body}");
    assert!(challenge.contains("insufficient_scope"), "{challenge}");
    assert_eq!(status_of("POST", http, "/members", Some(RO)), 403);
    assert_eq!(status_of("DELETE", http, "/members/other", Some(RO)), 403);
    assert_eq!(value(http, "c"), 0, "a refused write changed the counter");

    assert_eq!(status_of("POST", http, inc, Some(RW)), 200);
    assert_eq!(value(http, "c"), 2);
    for path in ["/counters", "/status", "/members", "/metrics", "/counter"] {
        assert_eq!(status_of("GET", http, path, Some(RO)), 200, "{path}");
        assert_eq!(status_of("GET", http, path, None), 401, "{path}");
    }

    let (_, body, _) = call("GET", http, "/status", Some(RO));
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["access"]["tokens_required"], true);
    assert_eq!(status["access"]["unauthenticated"], 7);
    assert_eq!(status["access"]["forbidden"], 3);
    let (_, metrics, _) = call("GET", http, "/metrics", Some(RO));
    assert!(
        metrics.contains("gctr_requests_refused_total{reason=\"forbidden\"} 3"),
        "{metrics}"
    );
    assert!(metrics.contains("gctr_api_tokens_required 1"), "{metrics}");
}

#[test]
fn the_cli_sends_its_token_from_the_flag_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = token_file(dir.path());
    let (g, h) = node_addrs();
    let extra = ["--api-token-file", tokens.to_str().unwrap()];
    let node = start_node(dir.path(), "cli", (&g, &h), &[], &extra);
    let http = node.http.as_str();

    let o = gctr_with_env(&["inc", "hits", "--http", http], None);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("HTTP 401"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--token or GCTR_TOKEN"),
        "{}",
        stderr(&o)
    );
    let o = gctr_with_env(&["inc", "hits", "--http", http], Some(RO));
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("HTTP 403"), "{}", stderr(&o));
    let o = gctr_with_env(
        &["inc", "hits", "--by", "4", "--http", http, "--token", RW],
        Some(RO),
    );
    assert_eq!(
        (o.status.code(), stdout(&o).trim()),
        (Some(0), "4"),
        "{}",
        stderr(&o)
    );
    let o = gctr_with_env(&["get", "hits", "--http", http], Some(RO));
    assert_eq!(
        (o.status.code(), stdout(&o).trim()),
        (Some(0), "4"),
        "{}",
        stderr(&o)
    );
    let o = gctr_with_env(&["get", "hits", "--all", "--http", http], Some(RO));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn a_malformed_token_file_stops_the_server_naming_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad-tokens");
    std::fs::write(&bad, format!("rw {RW}\nadmin {RO}\n")).unwrap();
    let bad = bad.to_str().unwrap();
    let (g, _) = node_addrs();
    let port = free_addr().port().to_string();
    for args in [
        vec!["node", "--addr", &g, "--api-token-file", bad],
        vec!["discovery", "--port", &port, "--api-token-file", bad],
    ] {
        let o = run_gctr(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let e = stderr(&o);
        assert!(
            e.contains(bad) && e.contains("line 2: expected `ro TOKEN` or `rw TOKEN`"),
            "{e}"
        );
    }
}

fn start_discovery(dir: &Path, tokens: &Path) -> (Proc, String) {
    let addr = free_addr();
    let port = addr.port().to_string();
    let args = [
        "discovery",
        "--port",
        &port,
        "--api-token-file",
        tokens.to_str().unwrap(),
    ];
    let proc = Proc::spawn("discovery", &args, Some(&dir.join("discovery.log")));
    let addr = addr.to_string();
    wait_until(
        "discovery to answer /health",
        Duration::from_secs(10),
        || common::http_get(&addr, "/health").is_ok_and(|(s, _)| s == 200),
    );
    (proc, addr)
}

/// The names discovery lists, asked with the read-only token.
fn registered(discovery: &str) -> Vec<String> {
    let (status, body, _) = call("GET", discovery, "/peers", Some(RO));
    assert_eq!(status, 200, "{body}");
    let peers: Vec<serde_json::Value> = serde_json::from_str(&body).unwrap();
    peers
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn discovery_with_tokens_refuses_strangers_and_admits_nodes_with_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = token_file(dir.path());
    let (_discovery, d) = start_discovery(dir.path(), &tokens);
    let url = format!("http://{d}");
    let body = r#"{"name":"x","addr":"127.0.0.1:1","http":"127.0.0.1:2"}"#;
    for (method, path) in [("GET", "/peers"), ("GET", "/status"), ("POST", "/register")] {
        assert_eq!(status_of(method, &d, path, None), 401, "{method} {path}");
    }
    let register = common::agent()
        .post(&format!("{url}/register"))
        .set("Authorization", &format!("Bearer {RO}"))
        .send_string(body);
    assert!(matches!(register, Err(ureq::Error::Status(403, _))));
    assert!(registered(&d).is_empty(), "a refused registration was kept");

    let rw_file = dir.path().join("discovery-token");
    std::fs::write(&rw_file, format!("{RW}\n")).unwrap();
    let with_token = [
        "--discovery",
        &url,
        "--discovery-token-file",
        rw_file.to_str().unwrap(),
    ];
    let mut nodes = Vec::new();
    for name in ["a", "b"] {
        let (g, h) = node_addrs();
        nodes.push(start_node(dir.path(), name, (&g, &h), &[], &with_token));
    }
    let (g, h) = node_addrs();
    let stranger = start_node(
        dir.path(),
        "stranger",
        (&g, &h),
        &[],
        &["--discovery", &url],
    );
    wait_until("a and b to register", Duration::from_secs(10), || {
        registered(&d) == ["a", "b"]
    });
    wait_until("a and b to see each other", Duration::from_secs(10), || {
        nodes.iter().all(|n| {
            get_json(&n.http, "/members").is_some_and(|m| {
                m["members"]
                    .as_array()
                    .is_some_and(|all| all.iter().filter(|x| x["state"] == "alive").count() == 2)
            })
        })
    });
    wait_until(
        "the stranger to log its refusal",
        Duration::from_secs(10),
        || {
            std::fs::read_to_string(dir.path().join("stranger.log"))
                .is_ok_and(|log| log.contains("HTTP 401") && log.contains("--discovery-token-file"))
        },
    );
    assert_eq!(registered(&d), ["a", "b"], "the stranger registered");
    let members = get_json(&stranger.http, "/members").unwrap();
    assert_eq!(members["members"].as_array().map(Vec::len), Some(1));

    let o = gctr_with_env(&["inc", "--node", "a", "--discovery", &url], Some(RW));
    assert_eq!(
        (o.status.code(), stdout(&o).trim()),
        (Some(0), "1"),
        "{}",
        stderr(&o)
    );
    let o = gctr_with_env(&["inc", "--node", "a", "--discovery", &url], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("the discovery server"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("HTTP 401"), "{}", stderr(&o));
}

#[test]
fn redis_clients_must_auth_and_read_only_tokens_only_read() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = token_file(dir.path());
    let extra = ["--api-token-file", tokens.to_str().unwrap()];
    let node = start_redis_node(dir.path(), "resp", &[], &extra);
    let mut c = RespClient::connect(&node.redis).unwrap();
    let mut ask = |words: &[&str]| {
        c.send(&[cmd(words)]).unwrap();
        c.read_reply().unwrap()
    };
    assert!(ask(&["GET", "c"]).starts_with("-NOAUTH"));
    assert!(ask(&["INCR", "c"]).starts_with("-NOAUTH"));
    assert!(ask(&["AUTH", "not-a-token-0123456789"]).starts_with("-WRONGPASS"));
    assert_eq!(ask(&["AUTH", RO]), "+OK");
    assert_eq!(ask(&["GET", "c"]), "$0");
    assert!(ask(&["INCR", "c"]).starts_with("-NOPERM"));
    assert_eq!(ask(&["MULTI"]), "+OK");
    assert!(ask(&["INCRBY", "c", "5"]).starts_with("-NOPERM"));
    assert!(ask(&["EXEC"]).starts_with("-EXECABORT"));
    assert_eq!(ask(&["AUTH", "default", RW]), "+OK");
    assert_eq!(ask(&["INCR", "c"]), ":1");
    assert_eq!(ask(&["RESET"]), "+RESET");
    assert!(ask(&["GET", "c"]).starts_with("-NOAUTH"));

    let (_, body, _) = call("GET", &node.http, "/status", Some(RO));
    let status: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["access"]["unauthenticated"], 4);
    assert_eq!(status["access"]["forbidden"], 2);
    assert_eq!(value(&node.http, "c"), 1);

    need("redis-cli");
    let o = redis_cli(&node, &["-a", RW, "--no-auth-warning", "INCRBY", "c", "2"]);
    assert_eq!(stdout(&o).trim(), "3", "{}", stderr(&o));
    let o = redis_cli(&node, &["-a", RO, "--no-auth-warning", "INCR", "c"]);
    assert!(stdout(&o).contains("NOPERM"), "{}", stdout(&o));
    let o = redis_cli(&node, &["INCR", "c"]);
    assert!(stdout(&o).contains("NOAUTH"), "{}", stdout(&o));
    assert_eq!(value(&node.http, "c"), 3);
}

#[test]
fn a_flood_without_credentials_changes_nothing_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = token_file(dir.path());
    let (_discovery, d) = start_discovery(dir.path(), &tokens);
    let status = |token: &str| {
        let (_, body, _) = call("GET", &d, "/status", Some(token));
        serde_json::from_str::<serde_json::Value>(&body).unwrap()
    };
    let threads_before = status(RO)["process"]["threads"].as_u64();
    let agent = common::agent();
    let rounds = 300;
    for i in 0..rounds {
        let body = format!(
            r#"{{"name":"n{i}","addr":"127.0.0.1:{}","http":"127.0.0.1:2"}}"#,
            i + 1
        );
        for (path, token) in [
            ("/register", None),
            ("/heartbeat", Some(RO)),
            ("/deregister", Some("x")),
        ] {
            let mut request = agent.post(&format!("http://{d}{path}"));
            if let Some(t) = token {
                request = request.set("Authorization", &format!("Bearer {t}"));
            }
            match request.send_string(&body) {
                Err(ureq::Error::Status(401 | 403, _)) => {}
                other => panic!("{path} with {token:?} was not refused: {other:?}"),
            }
        }
    }
    let after = status(RO);
    assert_eq!(after["members"], 0, "{after}");
    assert_eq!(after["events"]["joined"], 0, "{after}");
    assert_eq!(after["access"]["unauthenticated"], 2 * rounds);
    assert_eq!(after["access"]["forbidden"], rounds);
    // One keep-alive connection carried the flood: at most a thread or two of
    // tiny_http's pool may come and go meanwhile, never one per request.
    let before = threads_before.unwrap();
    let now = after["process"]["threads"].as_u64().unwrap();
    assert!(now <= before + 2, "threads {before} -> {now}");
}
