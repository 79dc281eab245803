//! Crash safety through RESP: clients pipelining `INCRBY` to a node with `--wal` (fsync
//! always), `kill -9` at a random moment, restart on the same data directory, several
//! rounds. A reply is sent only once its batch is durable, so after every restart each
//! counter must read between what was acknowledged and what was sent (cumulative).
//!
//! The kill schedule comes from a seeded RNG; the seed is printed, and
//! `GCTR_CRASH_SEED=N` replays it.

mod common;

use common::redis::{cmd, start_redis_node, RedisNode, RespClient};
use common::wait_until;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const ROUNDS: usize = 6;
const CLIENTS: usize = 3;
const COUNTERS: usize = 2;
const PIPELINE: usize = 8;

#[derive(Clone, Copy, Default, Debug)]
struct Tally {
    sent: [u64; COUNTERS],
    acked: [u64; COUNTERS],
}

fn counter(c: usize) -> String {
    format!("crash:{c}")
}

/// Pipelines of `INCRBY` until the connection fails or `stop`; an increment counts as
/// sent before its pipeline is written and as acknowledged when its integer reply arrives.
fn client(addr: String, tally: Arc<Mutex<Tally>>, stop: Arc<AtomicBool>, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let Ok(mut conn) = RespClient::connect(&addr) else {
        return;
    };
    while !stop.load(Ordering::SeqCst) {
        let batch: Vec<(usize, u64)> = (0..PIPELINE)
            .map(|_| (rng.usize(..COUNTERS), rng.u64(1..=5)))
            .collect();
        let commands: Vec<Vec<String>> = batch
            .iter()
            .map(|(c, by)| cmd(&["INCRBY", &counter(*c), &by.to_string()]))
            .collect();
        {
            let mut t = tally.lock().unwrap();
            for (c, by) in &batch {
                t.sent[*c] += by;
            }
        }
        if conn.send(&commands).is_err() {
            return;
        }
        for (c, by) in &batch {
            match conn.read_reply() {
                Ok(reply) if reply.starts_with(':') => tally.lock().unwrap().acked[*c] += by,
                Ok(reply) => panic!("unexpected reply {reply}"),
                Err(_) => return,
            }
        }
    }
}

fn start(logs: &Path, wal: &Path) -> RedisNode {
    start_redis_node(logs, "crash", &[], &["--wal", wal.to_str().unwrap()])
}

/// The value of counter `c` read over RESP.
fn read(node: &RedisNode, c: usize) -> u64 {
    let mut conn = RespClient::connect(&node.redis).expect("connect after restart");
    conn.send(&[cmd(&["GET", &counter(c)])]).unwrap();
    let reply = conn.read_reply().unwrap();
    reply
        .strip_prefix('$')
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("GET answered {reply}"))
}

#[test]
fn kill_9_under_pipelined_increments_loses_nothing_acknowledged() {
    let seed = std::env::var("GCTR_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    println!("GCTR_CRASH_SEED={seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = tempfile::tempdir().unwrap();
    let wal = dir.path().join("wal");
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut node = start(dir.path(), &wal);
    for round in 0..ROUNDS {
        let stop = Arc::new(AtomicBool::new(false));
        let before = tally.lock().unwrap().acked.iter().sum::<u64>();
        let clients: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let (addr, tally, stop) = (node.redis.clone(), tally.clone(), stop.clone());
                let client_seed = rng.u64(..);
                std::thread::spawn(move || client(addr, tally, stop, client_seed + i as u64))
            })
            .collect();
        // Kill once the clients are under way, at a random point after that.
        wait_until("increments acknowledged", Duration::from_secs(20), || {
            tally.lock().unwrap().acked.iter().sum::<u64>() > before
        });
        std::thread::sleep(Duration::from_millis(rng.u64(0..150)));
        node.proc.kill();
        stop.store(true, Ordering::SeqCst);
        for c in clients {
            c.join().expect("client thread");
        }
        node = start(dir.path(), &wal);
        let t = *tally.lock().unwrap();
        for c in 0..COUNTERS {
            let recovered = read(&node, c);
            assert!(
                t.acked[c] <= recovered && recovered <= t.sent[c],
                "round {round}, {}: acknowledged {} <= recovered {recovered} <= sent {} fails (seed {seed})",
                counter(c),
                t.acked[c],
                t.sent[c]
            );
        }
        println!("round {round}: {t:?}");
    }
}
