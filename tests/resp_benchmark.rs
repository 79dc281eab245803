//! `redis-benchmark -t incr,get` against a durable node, without and with pipelining:
//! no error from the server, and the counter it increments ends equal to the number of
//! `INCR`s it sent (over RESP and over HTTP).

mod common;

use common::redis::{need, redis_cli, start_redis_node};
use common::{get_json, stderr, stdout};
use std::process::{Command, Stdio};

/// Requests per test; a multiple of the pipeline depth, since redis-benchmark sends
/// whole pipelines (n = 5000 with -P 16 sends 5008 INCRs).
const REQUESTS: u64 = 4800;

#[test]
fn redis_benchmark_incr_get_runs_without_errors_and_counts_every_incr() {
    need("redis-benchmark");
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal");
    let node = start_redis_node(dir.path(), "bench", &[], &["--wal", wal.to_str().unwrap()]);
    let mut incrs = 0;
    for pipeline in ["1", "16"] {
        let n = REQUESTS.to_string();
        let out = Command::new("redis-benchmark")
            .args(["-h", "127.0.0.1", "-p", &node.port(), "-t", "incr,get"])
            .args(["-n", &n, "-c", "16", "-P", pipeline, "--csv"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-benchmark");
        let text = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            out.status.success(),
            "redis-benchmark -P {pipeline}: {text}"
        );
        // redis-benchmark 7 stops at the first error reply, printing it ("Error from
        // server: ...") and failing.
        assert!(
            !text.to_lowercase().contains("error"),
            "-P {pipeline}: {text}"
        );
        for test in ["\"INCR\"", "\"GET\""] {
            assert!(
                text.contains(test),
                "no {test} result with -P {pipeline}: {text}"
            );
        }
        incrs += REQUESTS;
    }
    let reply = stdout(&redis_cli(&node, &["GET", "counter:__rand_int__"]));
    assert_eq!(reply.trim(), incrs.to_string());
    let v = get_json(&node.http, "/counters/counter:__rand_int__").expect("GET over HTTP");
    assert_eq!(v["value"].as_u64(), Some(incrs));
}
