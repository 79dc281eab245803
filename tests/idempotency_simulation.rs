//! Idempotency keys in the deterministic simulator, with membership: clients retry every
//! operation whose answer they did not get, with its key, on a random node each time,
//! over links that lose 30 % of frames and duplicate some, through partitions of either
//! half and a node crash with a durable restart. Once everything heals every node must
//! report exactly the sum of the logical operations (each key once, not a range), and
//! every acceptance must end resolved, leaving one tombstone per key. And the same check
//! catches folds made before a key is stable.

mod sim;

use gctr::crdt::{LocalOp, OpError, OpKind};
use gctr::engine::Config;
use gctr::node_core::OpFailure;
use sim::{seed_or, Link, Sim, Step};
use std::time::Duration;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// One logical operation and what its client knows of it.
struct Logical {
    op: LocalOp,
    acknowledged: bool,
    next_try: Duration,
}

/// Clients that retry until acknowledged.
struct Clients {
    ops: Vec<Logical>,
    rng: fastrand::Rng,
    /// Requests sent (first tries, retries, and repeats of acknowledged ones).
    requests: u64,
}

/// How often an answer is lost on its way back, so the client retries an operation that
/// was applied.
const ANSWER_LOSS: f64 = 0.3;
/// How long a client waits before retrying.
const RETRY_AFTER: Duration = Duration::from_millis(300);

impl Clients {
    fn new(seed: u64) -> Clients {
        Clients {
            ops: Vec::new(),
            rng: fastrand::Rng::with_seed(seed ^ 0x6964_656d),
            requests: 0,
        }
    }

    fn issue(&mut self, now: Duration) {
        let n = self.ops.len();
        let amount = self.rng.u64(1..=9);
        self.ops.push(Logical {
            op: LocalOp {
                counter: format!("c{}", self.rng.usize(..3)),
                kind: if self.rng.bool() {
                    OpKind::Increment
                } else {
                    OpKind::Decrement
                },
                amount,
                key: Some(format!("client-op-{n}")),
            },
            acknowledged: false,
            next_try: now,
        });
    }

    /// Sends every operation due to a random live node; now and then repeats one already
    /// acknowledged.
    fn send_due(&mut self, sim: &mut Sim) {
        let now = sim.now();
        for i in 0..self.ops.len() {
            let due = !self.ops[i].acknowledged && self.ops[i].next_try <= now;
            let repeat = self.ops[i].acknowledged && self.rng.f64() < 0.002;
            if due || repeat {
                self.send(sim, i);
            }
        }
    }

    fn send(&mut self, sim: &mut Sim, i: usize) {
        let live = sim.live_nodes();
        let node = live[self.rng.usize(..live.len())];
        self.requests += 1;
        let result = sim.try_uncounted(node, std::slice::from_ref(&self.ops[i].op));
        let logical = &mut self.ops[i];
        match &result[0] {
            Err(OpFailure::Refused(e @ OpError::KeyMismatch { .. })) => {
                panic!("{}", sim.fail(&format!("a retry was refused: {e}")))
            }
            Ok(_) if self.rng.f64() >= ANSWER_LOSS => {
                if !logical.acknowledged {
                    logical.acknowledged = true;
                    let amount = logical.op.amount as i64;
                    let signed = match logical.op.kind {
                        OpKind::Increment => amount,
                        OpKind::Decrement => -amount,
                    };
                    sim.expect(&logical.op.counter, signed);
                }
            }
            _ => logical.next_try = sim.now() + RETRY_AFTER,
        }
    }

    /// Sends five random acknowledged operations again, to `node`; returns how many it
    /// refused as not ready. Every other answer must be the retry recognised.
    fn repeat_to(&mut self, sim: &mut Sim, node: usize) -> usize {
        let mut not_ready = 0;
        for _ in 0..5 {
            let i = self.rng.usize(..self.ops.len());
            match &sim.try_uncounted(node, std::slice::from_ref(&self.ops[i].op))[0] {
                Ok(_) => {}
                Err(OpFailure::Unavailable(_)) => not_ready += 1,
                Err(e) => panic!("{}", sim.fail(&format!("a retry was refused: {e}"))),
            }
        }
        not_ready
    }

    fn all_acknowledged(&self) -> bool {
        self.ops.iter().all(|o| o.acknowledged)
    }
}

/// A scenario over `n` nodes: `ops` logical operations over 40 s while the halves are
/// cut apart twice (either half, one way then the other) and node 1 crashes and restarts
/// on its log; then everything heals.
fn scenario(seed: u64, config: Config, n: usize, ops: usize) -> (Sim, Clients) {
    let members = gctr::membership::Config::default();
    let mut sim = Sim::with_membership(seed, config, members, Link::faulty(0.3, 0.1));
    sim.run(&[Step::AddNodes(n)]);
    sim.membership_whole_within(secs(60));
    let mut clients = Clients::new(seed);
    let half: Vec<usize> = (0..n / 2).collect();
    let rest: Vec<usize> = (n / 2..n).collect();
    let evens: Vec<usize> = (0..n).step_by(2).collect();
    let odds: Vec<usize> = (1..n).step_by(2).collect();
    let tick = Duration::from_millis(100);
    let ticks = 400u64;
    for t in 0..ticks {
        match t {
            50 => sim.run(&[Step::Partition(vec![half.clone(), rest.clone()])]),
            150 | 380 => sim.run(&[Step::Heal]),
            200 => sim.run(&[Step::Crash(1)]),
            250 => sim.run(&[Step::RestartDurable(1)]),
            300 => sim.run(&[Step::Partition(vec![odds.clone(), evens.clone()])]),
            _ => {}
        }
        let due = ops * (t as usize + 1) / ticks as usize;
        while clients.ops.len() < due {
            clients.issue(sim.now());
        }
        clients.send_due(&mut sim);
        sim.run_for(tick);
    }
    let deadline = sim.now() + secs(120);
    while !clients.all_acknowledged() {
        assert!(
            sim.now() < deadline,
            "{}",
            sim.fail("operations never acknowledged")
        );
        clients.send_due(&mut sim);
        sim.run_for(tick);
    }
    (sim, clients)
}

/// Runs until every node holds `keys` keys, all resolved, at the exact sums; panics
/// after two minutes.
fn settle(sim: &mut Sim, n: usize, keys: usize) {
    let deadline = sim.now() + secs(120);
    let settled = |sim: &Sim| {
        (0..n).all(|i| {
            sim.state(i)
                .is_some_and(|s| s.unresolved_acceptances() == 0 && s.key_count() == keys)
        })
    };
    while !settled(sim) {
        assert!(
            sim.now() < deadline,
            "{}",
            sim.fail("acceptances still unresolved two minutes after the last operation")
        );
        sim.run_for(Duration::from_millis(100));
    }
    assert!(sim.converged(), "{}", sim.fail("folding changed a value"));
}

/// The scenario, then: exact sums on every node, every acceptance resolved and one
/// tombstone per key left on each. Then node 2 loses its disk and restarts empty, and
/// old keys are sent to it again from its first moment: refused (503) until it has
/// caught up, recognised after, never counted again.
fn check(seed: u64, config: Config, n: usize, ops: usize) -> (u64, u64) {
    let (mut sim, mut clients) = scenario(seed, config, n, ops);
    let took = sim.converge_within(secs(60));
    settle(&mut sim, n, ops);
    assert_eq!(
        sim.total_stats().own_origin_claims,
        0,
        "{}",
        sim.fail("a node's own keyed writes, echoed back, were taken for another writer's")
    );
    let accepted: u64 = (0..n)
        .filter_map(|i| sim.core(i))
        .map(|c| c.key_stats().accepted)
        .sum();
    sim.run(&[Step::RestartFresh(2)]);
    let mut not_ready = 0;
    for _ in 0..40 {
        not_ready += clients.repeat_to(&mut sim, 2);
        sim.run_for(Duration::from_millis(50));
    }
    assert!(
        not_ready > 0 && not_ready < 200,
        "{}",
        sim.fail(&format!(
            "{not_ready} of 200 repeats to the emptied node refused as not ready"
        ))
    );
    sim.converge_within(secs(60));
    settle(&mut sim, n, ops);
    println!(
        "{n} nodes, seed {seed}: {ops} keyed operations, {} requests, {accepted} acceptances; \
         exact sums {took:?} after the last; the emptied node refused {not_ready} of 200 \
         repeats until it caught up",
        clients.requests
    );
    (clients.requests, accepted)
}

/// `runs` seeds from `first`, or the one `GCTR_SIM_SEED` names.
fn seeds(first: u64, runs: u64) -> std::ops::Range<u64> {
    let first = seed_or(first);
    if std::env::var("GCTR_SIM_SEED").is_ok() {
        first..first + 1
    } else {
        first..first + runs
    }
}

#[test]
fn retried_keyed_operations_count_once_on_five_nodes_through_partitions_and_a_crash() {
    let mut concurrent = 0;
    for seed in seeds(500, 6) {
        let ops = 300;
        let (requests, accepted) = check(seed, Config::default(), 5, ops);
        assert!(requests > ops as u64, "no retries: the test proves nothing");
        concurrent += accepted.saturating_sub(ops as u64);
    }
    assert!(
        concurrent > 0,
        "no key was ever accepted on two nodes: the retries never crossed a partition"
    );
}

/// The same with every digest sent as a summary (as beyond about 80 origins): keys are
/// decided on peers' whole digests, which summaries stand for only when they agree in
/// every bucket, and which a node that needs them asks for while writes keep buckets
/// apart. Still exact, and every acceptance resolves.
#[test]
fn retried_keyed_operations_count_once_when_digests_go_as_summaries() {
    let config = Config {
        full_digest_bytes: 0,
        ..Config::default()
    };
    for seed in seeds(700, 3) {
        let (requests, _) = check(seed, config.clone(), 5, 300);
        assert!(requests > 300, "no retries: the test proves nothing");
    }
}

/// Keys resolve while writes keep flowing, with every digest a summary: a keyed write
/// every 2 ms for 20 s leaves buckets apart at most moments, so keys are decided on the
/// whole digests a node asks its peers for. By the end of the stream every key written
/// more than 5 s before it is resolved everywhere.
#[test]
fn keys_resolve_while_writes_keep_summaries_apart() {
    let members = gctr::membership::Config::default();
    let config = Config {
        full_digest_bytes: 0,
        ..Config::default()
    };
    let mut sim = Sim::with_membership(seed_or(800), config, members, Link::perfect());
    sim.run(&[Step::AddNodes(5)]);
    sim.membership_whole_within(secs(60));
    // Each node takes keys once every member has shown it knows it (here, with every
    // digest a summary, by probing it).
    let deadline = sim.now() + secs(30);
    while (0..5).any(|i| !sim.core(i).unwrap().key_stats().ready) {
        assert!(sim.now() < deadline, "{}", sim.fail("a node never ready"));
        sim.run_for(Duration::from_millis(1));
    }
    let step = Duration::from_millis(2);
    let writes = 10_000;
    for i in 0..writes {
        let op = LocalOp {
            counter: "c".into(),
            kind: OpKind::Increment,
            amount: 1,
            key: Some(format!("stream-{i}")),
        };
        let result = sim.try_ops(i % 5, &[op]);
        assert!(result[0].is_ok(), "{}", sim.fail("a keyed write refused"));
        sim.run_for(step);
    }
    let recent = (Duration::from_secs(5).as_millis() / step.as_millis()) as u64;
    for i in 0..5 {
        let live = sim.core(i).map_or(0, |c| c.key_stats().live);
        assert!(
            live <= recent,
            "{}",
            sim.fail(&format!("node {i} holds {live} unresolved acceptances"))
        );
    }
    sim.converge_within(secs(60));
}

/// The check that a node folds only once a key is stable is what keeps a key from
/// counting twice: two nodes that do not count each other as members each accept one
/// key (a retry that crossed between them) and, stable as far as each knows, each fold
/// it; once they talk the key counts twice, and the simulator's check of exact sums
/// fails. The same two nodes counting each other, cut apart by a partition instead,
/// count it once.
#[test]
fn folding_before_a_key_is_stable_counts_it_twice_and_the_check_catches_it() {
    let op = LocalOp {
        counter: "c".into(),
        kind: OpKind::Increment,
        amount: 5,
        key: Some("crossed".into()),
    };
    let accept_on_both = |sim: &mut Sim| {
        for node in [0, 1] {
            assert!(sim.try_uncounted(node, std::slice::from_ref(&op))[0].is_ok());
        }
        sim.expect("c", 5);
        sim.run_for(secs(2));
    };

    let mut sim = Sim::new(seed_or(700), Config::default(), Link::perfect());
    sim.run(&[Step::AddNodes(2)]);
    sim.set_peers(0, &[]);
    sim.set_peers(1, &[]);
    accept_on_both(&mut sim);
    let resolved = |sim: &Sim| (0..2).all(|i| sim.state(i).unwrap().unresolved_acceptances() == 0);
    assert!(resolved(&sim), "each folded at once: no member to wait for");
    sim.set_peers(0, &[1]);
    sim.set_peers(1, &[0]);
    sim.run_for(secs(5));
    assert_eq!(sim.state(0).unwrap().value("c"), 10, "the key counts twice");
    assert!(!sim.converged(), "the check of exact sums catches it");

    let mut sim = Sim::new(seed_or(700), Config::default(), Link::perfect());
    sim.run(&[Step::AddNodes(2), Step::Partition(vec![vec![0], vec![1]])]);
    accept_on_both(&mut sim);
    assert!(!resolved(&sim), "each waits for the other's digest");
    sim.run(&[Step::Heal]);
    sim.converge_within(secs(10));
    while !resolved(&sim) {
        assert!(sim.now() < secs(60), "{}", sim.fail("never resolved"));
        sim.run_for(Duration::from_millis(100));
    }
    assert!(sim.converged());
}

#[test]
fn retried_keyed_operations_count_once_on_fifty_nodes() {
    for seed in seeds(600, 3) {
        let (requests, accepted) = check(seed, Config::default(), 50, 400);
        assert!(
            requests > 400 && accepted > 400,
            "no key crossed a partition"
        );
    }
}
