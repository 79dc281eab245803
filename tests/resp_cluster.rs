//! A 3-node cluster written through RESP on every node at once: pipelined increments
//! and decrements from one client per node, then every node must report the exact sums,
//! over RESP (`redis-cli MGET`) and over HTTP alike.

mod common;

use common::cluster::counters;
use common::redis::{cmd, need, redis_cli, start_redis_node, RedisNode, RespClient};
use common::stdout;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const COUNTERS: [&str; 3] = ["views", "quota:eu", "rate limit"];
const PIPELINES: usize = 40;
const PER_PIPELINE: usize = 25;

/// Writes to `node` through RESP; returns the sum it applied per counter (every reply
/// must be an integer).
fn write(node: &str, seed: u64) -> BTreeMap<String, i64> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut client = RespClient::connect(node).expect("connect");
    let mut sums = BTreeMap::new();
    for _ in 0..PIPELINES {
        let mut commands = Vec::new();
        let mut deltas = Vec::new();
        for _ in 0..PER_PIPELINE {
            let counter = COUNTERS[rng.usize(..COUNTERS.len())];
            let by = rng.i64(-3..=9);
            let words = match by {
                1 => cmd(&["INCR", counter]),
                -1 => cmd(&["DECR", counter]),
                n if n < 0 && rng.bool() => cmd(&["DECRBY", counter, &(-n).to_string()]),
                n => cmd(&["INCRBY", counter, &n.to_string()]),
            };
            commands.push(words);
            deltas.push((counter, by));
        }
        client.send(&commands).expect("send pipeline");
        for (counter, by) in deltas {
            let reply = client.read_reply().expect("reply");
            assert!(reply.starts_with(':'), "{node}: {reply}");
            *sums.entry(counter.to_owned()).or_insert(0) += by;
        }
    }
    sums
}

#[test]
fn three_nodes_written_through_resp_converge_exactly() {
    need("redis-cli");
    let dir = tempfile::tempdir().unwrap();
    let fast = ["--gossip-interval", "50ms"];
    let a = start_redis_node(dir.path(), "a", &[], &fast);
    let b = start_redis_node(dir.path(), "b", &[&a.gossip], &fast);
    let c = start_redis_node(dir.path(), "c", &[&a.gossip, &b.gossip], &fast);
    let nodes: [&RedisNode; 3] = [&a, &b, &c];

    let writers: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let addr = n.redis.clone();
            std::thread::spawn(move || write(&addr, 1000 + i as u64))
        })
        .collect();
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for w in writers {
        for (counter, sum) in w.join().expect("writer") {
            *expected.entry(counter).or_insert(0) += sum;
        }
    }
    assert!(!expected.is_empty());

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen: Vec<_> = nodes.iter().map(|n| counters(&n.http)).collect();
        if seen.iter().all(|s| s.as_ref() == Some(&expected)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no convergence in 20 s: expected {expected:?}, nodes report {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut args = vec!["MGET"];
    args.extend(expected.keys().map(String::as_str));
    let want: Vec<String> = expected.values().map(i64::to_string).collect();
    for node in nodes {
        let out = redis_cli(node, &args);
        let got: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
        assert_eq!(got, want, "MGET on {}", node.name);
    }
}
