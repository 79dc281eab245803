//! What a real `gctr node` shows of itself: the dashboard page, the JSON it polls (open
//! to other origins), Prometheus metrics in both formats, operation timings, member
//! states as the peer table knows them, and `--log-format json`. (The metric families
//! are parsed by real Prometheus parsers, and the page driven in a real browser, in
//! `tests/observability/`.)

mod common;

use common::cluster::{node_addrs, start_node};
use common::{agent, http_post, wait_until, Proc};
use std::time::Duration;

/// Status, content type, `Access-Control-Allow-Origin` and body of a GET.
fn get(http: &str, path: &str, accept: Option<&str>) -> (u16, String, Option<String>, String) {
    let mut request = agent().get(&format!("http://{http}{path}"));
    if let Some(a) = accept {
        request = request.set("Accept", a);
    }
    let response = request.call().expect("GET");
    (
        response.status(),
        response.content_type().to_owned(),
        response
            .header("Access-Control-Allow-Origin")
            .map(str::to_owned),
        response.into_string().expect("body"),
    )
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[test]
fn the_page_its_json_and_the_metrics_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let (g, h) = node_addrs();
    let node = start_node(dir.path(), "obs", (&g, &h), &[], &[]);
    let http = node.http.as_str();

    let (status, content_type, _, page) = get(http, "/", None);
    assert_eq!((status, content_type.as_str()), (200, "text/html"));
    assert!(page.contains("/dashboard.json") && page.contains("<svg"));
    // Self-contained: nothing is loaded from elsewhere.
    for external in [
        "src=\"http",
        "href=\"http",
        "src=\"//",
        "href=\"//",
        "@import",
    ] {
        assert!(!page.contains(external), "the page loads {external}…");
    }

    for i in 0..105 {
        let (s, _) = http_post(http, &format!("/counters/c{i:03}/increment?by=2"), "").unwrap();
        assert_eq!(s, 200);
    }
    assert_eq!(
        http_post(http, "/counters/c000/decrement", "").unwrap().0,
        200
    );

    // An operation's time is recorded once its answer is sent, just after the client
    // has it: wait for the last one.
    wait_until("every operation timed", Duration::from_secs(5), || {
        let (_, _, _, body) = get(http, "/status", None);
        json(&body)["latency"]["op_duration_seconds"]["count"] == 106
    });
    let (status, content_type, cors, body) = get(http, "/dashboard.json", None);
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    assert_eq!(cors.as_deref(), Some("*"), "other nodes' pages poll this");
    let view = json(&body);
    assert_eq!(view["counters_total"], 105);
    let shown = view["counters"].as_array().unwrap();
    assert_eq!(shown.len(), 100);
    assert_eq!(shown[0]["name"], "c000");
    assert_eq!(shown[0]["value"], 1);
    assert_eq!(shown[0]["origins"][0]["p"], 2);
    assert_eq!(shown[0]["origins"][0]["n"], 1);
    let status = &view["node"];
    assert_eq!(status["name"], "obs");
    assert_eq!(
        status["members"],
        serde_json::json!([{"name": "obs", "gossip_addr": node.gossip, "http_addr": http,
            "state": "alive", "self": true, "last_heard_ms_ago": null}])
    );
    assert_eq!(status["requests"]["increment"]["ok"], 105);
    assert_eq!(status["requests"]["decrement"]["ok"], 1);
    assert_eq!(status["latency"]["group_commit_ops"]["sum"], 106.0);
    assert!(status["process"]["threads"].as_u64().unwrap() > 1);

    let (status, content_type, _, text) = get(http, "/metrics", None);
    assert_eq!(status, 200);
    assert_eq!(content_type, "text/plain");
    assert!(text.contains("gctr_ops_total{op=\"increment\",result=\"ok\"} 105\n"));
    assert!(text.contains("gctr_op_duration_seconds_count 106\n"));
    assert!(!text.contains("c000"), "a counter name became a label");
    let (_, content_type, _, text) = get(
        http,
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"),
    );
    assert_eq!(content_type, "application/openmetrics-text");
    assert!(text.ends_with("# EOF\n"));
    assert!(text.contains("# TYPE gctr_ops counter\n"));
}

#[test]
fn a_killed_peer_is_shown_dead_and_counted_so() {
    let dir = tempfile::tempdir().unwrap();
    let (ga, ha) = node_addrs();
    let (gb, hb) = node_addrs();
    let a = start_node(dir.path(), "a", (&ga, &ha), &[], &[]);
    let mut b = start_node(dir.path(), "b", (&gb, &hb), &[&ga], &[]);
    let state_of_b = || {
        let (_, _, _, body) = get(&a.http, "/dashboard.json", None);
        json(&body)["node"]["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == "b")
            .map(|m| m["state"].as_str().unwrap().to_owned())
    };
    wait_until("a sees b alive", Duration::from_secs(10), || {
        state_of_b().as_deref() == Some("alive")
    });
    http_post(&a.http, "/counters/x/increment", "").unwrap();
    wait_until(
        "a sees b holding its write",
        Duration::from_secs(10),
        || {
            let (_, _, _, body) = get(&a.http, "/status", None);
            json(&body)["replication"][0]["versions_behind"] == 0
        },
    );
    b.proc.kill();
    wait_until("a sees b dead", Duration::from_secs(10), || {
        state_of_b().as_deref() == Some("dead")
    });
    let (_, _, _, text) = get(&a.http, "/metrics", None);
    assert!(text.contains("gctr_members{state=\"dead\"} 1"), "{text}");
    assert!(text.contains("gctr_members{state=\"alive\"} 1"), "{text}");
}

#[test]
fn json_logs_are_one_object_a_line() {
    let dir = tempfile::tempdir().unwrap();
    let (g, h) = node_addrs();
    let log = dir.path().join("node.log");
    let mut node = Proc::spawn(
        "node",
        &[
            "node",
            "--addr",
            &g,
            "--http",
            &h,
            "--name",
            "j",
            "--log-format",
            "json",
        ],
        Some(&log),
    );
    wait_until("the node serves", Duration::from_secs(10), || {
        common::http_get(&h, "/health").is_ok()
    });
    assert_eq!(node.terminate(Duration::from_secs(10)), Some(0));
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(json).collect();
    assert!(lines.len() >= 2, "{text}");
    for line in &lines {
        let keys: Vec<&str> = line
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ["level", "message", "target", "time"], "{line}");
    }
    assert!(lines.iter().any(|l| l["level"] == "info"
        && l["target"] == "node"
        && l["message"].as_str().unwrap().starts_with("node j ")));

    let bad = common::run_gctr(&["discovery", "--log-format", "yaml"]);
    assert_eq!(bad.status.code(), Some(2), "{}", common::stderr(&bad));
    assert!(common::stderr(&bad).contains("--log-format"));
}
