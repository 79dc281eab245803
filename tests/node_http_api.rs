//! The node's HTTP API against a real `gctr node`: every route answers as documented,
//! and bad input gets its status with `{"error": ...}` and changes no state.

mod common;

use common::cluster::{node_addrs, start_node};
use common::{http_get, http_post};

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[test]
fn routes_answer_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let (g, h) = node_addrs();
    let node = start_node(dir.path(), "api", (&g, &h), &[], &[]);
    let http = node.http.as_str();

    assert_eq!(http_get(http, "/health").unwrap().0, 200);
    let (s, b) = http_post(http, "/counters/hits/increment?by=5", "").unwrap();
    assert_eq!(
        (s, json(&b)),
        (200, serde_json::json!({"name": "hits", "value": 5}))
    );
    let (s, b) = http_post(http, "/counters/hits/decrement", "").unwrap();
    assert_eq!((s, json(&b)["value"].as_i64()), (200, Some(4)));
    let (s, b) = http_post(http, "/counters/caf%C3%A9%2Fx/increment?by=2", "").unwrap();
    assert_eq!((s, json(&b)["name"].as_str()), (200, Some("café/x")));

    let (s, b) = http_post(http, "/increment?by=3", "").unwrap();
    assert_eq!(
        (s, json(&b)),
        (200, serde_json::json!({"name": "default", "value": 3}))
    );
    let (s, b) = http_post(http, "/decrement", "").unwrap();
    assert_eq!((s, json(&b)["value"].as_i64()), (200, Some(2)));
    let (s, b) = http_get(http, "/counter").unwrap();
    assert_eq!((s, json(&b)["value"].as_i64()), (200, Some(2)));

    let (_, b) = http_get(http, "/counters").unwrap();
    assert_eq!(
        json(&b)["counters"],
        serde_json::json!({"café/x": 2, "default": 2, "hits": 4})
    );
    let (_, b) = http_get(http, "/counters/hits").unwrap();
    let v = json(&b);
    assert_eq!(v["origins"][0]["p"], 5);
    assert_eq!(v["origins"][0]["n"], 1);
    assert!(v["origins"][0]["origin"]
        .as_str()
        .unwrap()
        .starts_with("api/"));
    let (_, b) = http_get(http, "/counters/never-written").unwrap();
    assert_eq!(json(&b)["value"], 0);

    let (_, b) = http_get(http, "/peers").unwrap();
    let v = json(&b);
    assert_eq!(v["self"]["http_addr"], http);
    assert_eq!(v["self"]["gossip_addr"], node.gossip.as_str());
    assert_eq!(v["peers"], serde_json::json!([]));

    let (_, b) = http_get(http, "/status").unwrap();
    let v = json(&b);
    assert_eq!(v["name"], "api");
    assert_eq!(v["requests"]["ops"], 5);
    assert!(v["gossip"]["frames_out"]["syn"].is_u64());
    assert_eq!(v["storage"]["kind"], "memory");
}

#[test]
fn bad_input_gets_its_status_and_an_error_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (g, h) = node_addrs();
    let node = start_node(dir.path(), "api", (&g, &h), &[], &[]);
    let http = node.http.as_str();
    let max = i64::MAX.to_string();
    assert_eq!(
        http_post(http, &format!("/counters/full/increment?by={max}"), "")
            .unwrap()
            .0,
        200
    );
    assert_eq!(
        http_post(http, "/counters/x/increment?by=5", "").unwrap().0,
        200
    );
    let before = http_get(http, "/counters").unwrap();

    let long_name = "n".repeat(129);
    let cases: Vec<(&str, String, u16)> = vec![
        ("POST", format!("/counters/{long_name}/increment"), 400),
        ("POST", "/counters/a%0Ab/increment".into(), 400),
        ("POST", "/counters/%FF/increment".into(), 400),
        ("POST", "/counters//increment".into(), 400),
        ("GET", "/counters/%FF".into(), 400),
        ("POST", "/counters/x/increment?by=0".into(), 400),
        ("POST", "/counters/x/increment?by=-1".into(), 400),
        ("POST", "/counters/x/decrement?by=abc".into(), 400),
        ("POST", "/counters/x/increment?by=".into(), 400),
        (
            "POST",
            "/counters/x/increment?by=9223372036854775808".into(),
            400,
        ),
        ("POST", "/counters/x/increment?by=1&by=2".into(), 400),
        ("POST", "/counters/x/increment?step=1".into(), 400),
        ("POST", "/counters/full/increment?by=1".into(), 400),
        ("GET", "/nope".into(), 404),
        ("POST", "/counters/x/reset".into(), 404),
        ("GET", "/counters/x/increment".into(), 405),
        ("POST", "/counters".into(), 405),
        ("POST", "/counter".into(), 405),
        ("GET", "/increment".into(), 405),
    ];
    for (method, path, want) in &cases {
        let (status, body) = if *method == "GET" {
            http_get(http, path).unwrap()
        } else {
            http_post(http, path, "").unwrap()
        };
        assert_eq!(status, *want, "{method} {path}: {body}");
        assert!(json(&body)["error"].is_string(), "{method} {path}: {body}");
    }
    let big = "x".repeat(100 * 1024);
    let (status, body) = http_post(http, "/counters/x/increment", &big).unwrap();
    assert_eq!(status, 413, "{body}");
    assert!(json(&body)["error"].is_string());

    assert_eq!(http_get(http, "/counters").unwrap(), before);
}

#[test]
fn a_node_at_its_counter_limit_refuses_new_counters_with_507_and_keeps_serving_old_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (g, h) = node_addrs();
    let node = start_node(dir.path(), "cap", (&g, &h), &[], &["--max-counters", "2"]);
    let http = node.http.as_str();

    assert_eq!(http_post(http, "/counters/a/increment", "").unwrap().0, 200);
    assert_eq!(http_post(http, "/counters/b/increment", "").unwrap().0, 200);
    let (s, b) = http_post(http, "/counters/c/increment", "").unwrap();
    assert_eq!(s, 507, "{b}");
    assert!(
        json(&b)["error"]
            .as_str()
            .unwrap()
            .contains("limit of 2 counters"),
        "{b}"
    );
    let (s, b) = http_post(http, "/counters/a/increment?by=2", "").unwrap();
    assert_eq!((s, json(&b)["value"].as_i64()), (200, Some(3)));
    let (_, b) = http_get(http, "/counters").unwrap();
    assert_eq!(json(&b)["counters"], serde_json::json!({"a": 3, "b": 1}));
}
