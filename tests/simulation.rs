//! Cluster scenarios run by the deterministic simulator: lossy links, partitions,
//! crashes and restarts, idle traffic, frame splitting and anti-entropy convergence
//! speed. Every run is seeded; a failure prints the seed (replay with GCTR_SIM_SEED).

mod sim;

use gctr::codec::{FrameType, HEADER_LEN};
use gctr::engine::{Config, Fanout, MIN_PAYLOAD};
use gctr::push::PushWindow;
use sim::{seed_or, Link, Sim, Step};
use std::time::Duration;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[test]
fn five_lossy_nodes_reach_the_exact_sum_of_1000_operations() {
    let mut sim = Sim::new(seed_or(1), Config::default(), Link::faulty(0.3, 0.2));
    sim.run(&[
        Step::AddNodes(5),
        Step::RandomOps {
            count: 1000,
            counters: 6,
            over: secs(20),
        },
    ]);
    let took = sim.converge_within(secs(30));
    println!("5 nodes, 30% loss: exact sums {took:?} after the last of 1000 operations");
    assert_eq!(sim.acknowledged, 1000);
    assert!(
        sim.frames_lost > 0 && sim.total_stats().repairs > 0,
        "{}",
        sim.fail("the links lost nothing, so the test proves nothing")
    );
}

#[test]
fn a_partition_with_writes_on_both_sides_heals_to_the_exact_sum() {
    let mut sim = Sim::new(seed_or(2), Config::default(), Link::faulty(0.1, 0.1));
    sim.run(&[
        Step::AddNodes(6),
        Step::Partition(vec![vec![0, 1, 2], vec![3, 4, 5]]),
        Step::RandomOps {
            count: 300,
            counters: 4,
            over: secs(10),
        },
        Step::Op {
            node: 4,
            counter: "right-only".into(),
            by: 7,
        },
        Step::Op {
            node: 1,
            counter: "left-only".into(),
            by: -3,
        },
        Step::Run(secs(5)),
    ]);
    let left = sim.state(0).expect("node 0 is up");
    let right = sim.state(5).expect("node 5 is up");
    assert_eq!(
        (left.value("left-only"), left.value("right-only")),
        (-3, 0),
        "{}",
        sim.fail("the left side saw across the partition")
    );
    assert_eq!(
        (right.value("left-only"), right.value("right-only")),
        (0, 7),
        "{}",
        sim.fail("the right side saw across the partition")
    );
    sim.run(&[Step::Heal]);
    let took = sim.converge_within(secs(10));
    println!("partition of 6 nodes: exact sums {took:?} after the heal");
}

/// Rounds (gossip intervals) 'n' nodes take to converge by anti-entropy alone, when
/// every node made one change at the start.
fn anti_entropy_rounds(n: usize, seed: u64) -> f64 {
    let config = Config {
        eager_push: false,
        ..Config::default()
    };
    let interval = config.gossip_interval;
    let mut sim = Sim::new(seed, config, Link::perfect());
    sim.run(&[Step::AddNodes(n)]);
    for i in 0..n {
        sim.op(i, "c", 1);
    }
    let took = sim.converge_within(interval * 200);
    took.as_secs_f64() / interval.as_secs_f64()
}

fn assert_logarithmic(n: usize, seed: u64) {
    let rounds = anti_entropy_rounds(n, seed);
    let log2 = (n as f64).log2();
    println!(
        "anti-entropy alone: N = {n}, converged in {rounds:.1} rounds (log2 N = {log2:.1}, \
         ratio {:.2})",
        rounds / log2
    );
    assert!(
        rounds <= 2.0 * log2,
        "N = {n} took {rounds:.1} rounds, over 2 × log2(N) = {:.1} (seed {seed})",
        2.0 * log2
    );
}

#[test]
fn two_hundred_nodes_converge_by_anti_entropy_in_logarithmic_rounds() {
    for n in [25, 50, 100, 200] {
        assert_logarithmic(n, seed_or(3));
    }
}

#[test]
#[ignore = "about 30 s in debug; run with --ignored --nocapture"]
fn a_thousand_nodes_converge_by_anti_entropy_in_logarithmic_rounds() {
    assert_logarithmic(1000, seed_or(4));
}

#[test]
fn a_crash_and_durable_restart_loses_nothing_that_was_durable() {
    let mut sim = Sim::new(seed_or(5), Config::default(), Link::faulty(0.2, 0.1));
    sim.run(&[
        Step::AddNodes(5),
        Step::RandomOps {
            count: 200,
            counters: 3,
            over: secs(5),
        },
        // Crash with changes of node 2 still in flight, keep writing elsewhere.
        Step::Op {
            node: 2,
            counter: "c0".into(),
            by: 5,
        },
        Step::Crash(2),
        Step::RandomOps {
            count: 100,
            counters: 3,
            over: secs(3),
        },
        // New changes on the counter whose last change may not have left the node.
        Step::RestartDurable(2),
        Step::Op {
            node: 2,
            counter: "c0".into(),
            by: 11,
        },
        Step::Op {
            node: 2,
            counter: "c1".into(),
            by: -2,
        },
        Step::AssertConverged { within: secs(20) },
        // Crash everyone, restart everyone from their logs: the sums stand.
        Step::Crash(0),
        Step::Crash(1),
        Step::Crash(2),
        Step::Crash(3),
        Step::Crash(4),
        Step::RestartDurable(0),
        Step::RestartDurable(1),
        Step::RestartDurable(2),
        Step::RestartDurable(3),
        Step::RestartDurable(4),
    ]);
    assert!(
        sim.converged(),
        "{}",
        sim.fail("a restart from the logs lost something")
    );
}

#[test]
fn a_node_that_lost_its_data_restarts_under_a_new_incarnation_and_loses_nothing_new() {
    let mut sim = Sim::new(seed_or(6), Config::default(), Link::faulty(0.1, 0.1));
    sim.run(&[
        Step::AddNodes(4),
        Step::Op {
            node: 3,
            counter: "x".into(),
            by: 10,
        },
        Step::AssertConverged { within: secs(10) },
        Step::RestartFresh(3),
        Step::Op {
            node: 3,
            counter: "x".into(),
            by: 3,
        },
        Step::AssertConverged { within: secs(10) },
    ]);
    assert_eq!(sim.expected()["x"], 13);
}

#[test]
fn restarting_empty_under_the_same_origin_would_swallow_new_writes() {
    // The hazard the new incarnation exists for: the new total 3 loses to the old 10.
    let mut sim = Sim::new(seed_or(7), Config::default(), Link::perfect());
    sim.run(&[
        Step::AddNodes(4),
        Step::Op {
            node: 3,
            counter: "x".into(),
            by: 10,
        },
        Step::AssertConverged { within: secs(10) },
        Step::RestartEmptySameOrigin(3),
        Step::Op {
            node: 3,
            counter: "x".into(),
            by: 3,
        },
        Step::Run(secs(10)),
    ]);
    for i in 0..4 {
        let value = sim.state(i).expect("up").value("x");
        assert!(
            value < 13,
            "{}",
            sim.fail(&format!("node {i} counted the write it should have lost"))
        );
    }
}

#[test]
fn writes_spread_before_a_data_loss_keep_the_live_nodes_in_agreement() {
    // A node writes, its pushes partly reach others, then it loses its data for good:
    // whatever part of its changes survived must reach every live node alike.
    let mut sim = Sim::new(seed_or(8), Config::default(), Link::faulty(0.5, 0.0));
    sim.run(&[Step::AddNodes(5)]);
    for k in 0..40 {
        sim.op(4, &format!("c{}", k % 3), 1 + k % 4);
        sim.run_for(Duration::from_millis(3));
    }
    sim.run(&[
        Step::Crash(4),
        Step::SetLink(Link::perfect()),
        Step::Run(secs(1)),
    ]);
    sim.agree_within(secs(20));
    let before = sim.total_stats();
    sim.run_for(secs(5));
    let after = sim.total_stats();
    assert!(sim.agree(), "{}", sim.fail("agreement did not last"));
    println!(
        "after a data loss: {:.1} entries resent per round",
        (after.entries_out - before.entries_out) as f64 / (after.rounds - before.rounds) as f64
    );
}

/// Bytes sent per anti-entropy round, summed over nodes, once an idle cluster holding
/// `counters` counters, written by every node, has converged; panics if any entry is sent
/// while idle. (Digests list one entry per origin: both runs must have the same ones.)
fn idle_bytes_per_round(counters: usize, seed: u64) -> f64 {
    let mut sim = Sim::new(seed, Config::default(), Link::perfect());
    sim.run(&[Step::AddNodes(5)]);
    for node in 0..5 {
        sim.op(node, "c0", 1);
    }
    sim.run(&[
        Step::RandomOps {
            count: counters,
            counters,
            over: secs(2),
        },
        Step::AssertConverged { within: secs(10) },
        Step::Run(secs(1)),
    ]);
    let before = sim.total_stats();
    sim.run_for(secs(5));
    let after = sim.total_stats();
    assert_eq!(
        after.entries_out,
        before.entries_out,
        "{}",
        sim.fail("an idle cluster sent counter entries")
    );
    for t in [FrameType::Delta, FrameType::Push] {
        assert_eq!(
            after.frames_out[t],
            before.frames_out[t],
            "{}",
            sim.fail(&format!("an idle cluster sent {} frames", t.name()))
        );
    }
    let rounds = (after.rounds - before.rounds) as f64;
    assert!(rounds > 0.0);
    (after.bytes_out.total() - before.bytes_out.total()) as f64 / rounds
}

#[test]
fn an_idle_cluster_exchanges_digests_only_whatever_the_number_of_counters() {
    let few = idle_bytes_per_round(10, seed_or(9));
    let many = idle_bytes_per_round(1000, seed_or(9));
    println!("idle bytes per round: 10 counters {few:.1}, 1000 counters {many:.1}");
    assert!(
        many <= few * 1.25,
        "idle traffic grows with the counters: {few:.1} B/round for 10, {many:.1} for 1000"
    );
}

#[test]
fn small_frames_split_large_deltas_and_converge_despite_lost_chunks() {
    let config = Config {
        max_payload: MIN_PAYLOAD,
        ..Config::default()
    };
    let mut sim = Sim::new(seed_or(10), config, Link::faulty(0.1, 0.05));
    sim.run(&[Step::AddNodes(5)]);
    // Thousands of counters with names near the 128-byte limit, written in a few big
    // batches, so deltas must be split and entries are large against the frame.
    for node in 0..5 {
        for batch in 0..4 {
            let ops: Vec<_> = (0..200)
                .map(|k| gctr::crdt::LocalOp {
                    counter: format!("{}-{node}-{batch}-{k}", "long".repeat(28)),
                    kind: gctr::crdt::OpKind::Increment,
                    amount: 1 + k as u64,
                    key: None,
                })
                .collect();
            sim.ops(node, &ops);
        }
    }
    sim.converge_within(secs(60));
    let stats = sim.total_stats();
    assert!(
        sim.largest_frame <= HEADER_LEN + MIN_PAYLOAD,
        "a frame of {} bytes passed the {MIN_PAYLOAD}-byte payload limit",
        sim.largest_frame
    );
    assert!(
        stats.frames_out[FrameType::Delta] > 100 && sim.frames_lost > 0,
        "{}",
        sim.fail("the deltas were not split or nothing was lost")
    );
}

/// A random scenario: bursts of writes among partitions, crashes and restarts, and
/// changing link faults; then the network heals and every node comes back. Restarts are
/// durable unless `data_loss`, where some come back empty under a new incarnation; the
/// scenario then ends in agreement rather than an exact sum (unspread writes are gone).
fn chaos(seed: u64, data_loss: bool) -> Vec<Step> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let n = rng.usize(3..8);
    let mut steps = vec![Step::AddNodes(n)];
    let mut down = vec![false; n];
    for _ in 0..rng.usize(5..15) {
        steps.push(match rng.usize(0..6) {
            0 | 1 => Step::RandomOps {
                count: rng.usize(1..60),
                counters: rng.usize(1..6),
                over: Duration::from_millis(rng.u64(1..2000)),
            },
            2 => {
                let mut groups = vec![Vec::new(), Vec::new()];
                for i in 0..n {
                    groups[rng.usize(0..2)].push(i);
                }
                Step::Partition(groups)
            }
            3 => Step::Heal,
            4 => {
                let i = rng.usize(0..n);
                // Keep one node up so writes can go on.
                if down[i] || down.iter().filter(|d| !**d).count() > 1 {
                    down[i] = !down[i];
                    if down[i] {
                        Step::Crash(i)
                    } else if data_loss && rng.bool() {
                        Step::RestartFresh(i)
                    } else {
                        Step::RestartDurable(i)
                    }
                } else {
                    Step::Run(Duration::from_millis(100))
                }
            }
            _ => Step::SetLink(Link::faulty(rng.f64() * 0.5, rng.f64() * 0.3)),
        });
        steps.push(Step::Run(Duration::from_millis(rng.u64(0..500))));
    }
    steps.push(Step::Heal);
    steps.push(Step::SetLink(Link::faulty(0.1, 0.1)));
    for (i, d) in down.iter().enumerate() {
        if *d {
            steps.push(Step::RestartDurable(i));
        }
    }
    if !data_loss {
        steps.push(Step::AssertConverged { within: secs(30) });
    }
    steps
}

/// The seeds to run: `GCTR_SIM_SEED` alone when set, else 40 from `first` (or as many
/// as `GCTR_SIM_RUNS` says, for a longer sweep).
fn chaos_seeds(first: u64) -> std::ops::Range<u64> {
    if std::env::var("GCTR_SIM_SEED").is_ok() {
        let seed = seed_or(first);
        return seed..seed + 1;
    }
    let runs = std::env::var("GCTR_SIM_RUNS").map_or(40, |r| {
        r.trim().parse().expect("GCTR_SIM_RUNS must be a number")
    });
    first..first + runs
}

/// Gossip settings drawn from the seed: fanout automatic or 1 to 3, eager push on or off, the
/// smallest or the default frame size, the automatic push window or one of 1 to 30 ms,
/// digests sent whole while small or always as summaries.
fn chaos_config(seed: u64) -> Config {
    let mut rng = fastrand::Rng::with_seed(seed ^ 0x5eed);
    Config {
        fanout: match rng.usize(0..=3) {
            0 => Fanout::Auto,
            k => Fanout::Fixed(k),
        },
        eager_push: rng.bool(),
        max_payload: if rng.bool() {
            MIN_PAYLOAD
        } else {
            Config::default().max_payload
        },
        push_window: if rng.bool() {
            PushWindow::Auto
        } else {
            PushWindow::Fixed(Duration::from_millis(rng.u64(1..=30)))
        },
        full_digest_bytes: if rng.bool() {
            0
        } else {
            Config::default().full_digest_bytes
        },
        ..Config::default()
    }
}

#[test]
fn random_scenarios_of_partitions_crashes_and_faults_reach_the_exact_sum() {
    for seed in chaos_seeds(100) {
        let mut sim = Sim::new(seed, chaos_config(seed), Link::perfect());
        sim.run(&chaos(seed, false));
    }
}

#[test]
fn random_scenarios_with_data_loss_end_with_every_node_in_agreement() {
    for seed in chaos_seeds(200) {
        let mut sim = Sim::new(seed, chaos_config(seed), Link::perfect());
        sim.run(&chaos(seed, true));
        sim.agree_within(secs(30));
    }
}

/// Membership and gossip together, as in `gctr node`: a cluster split in two halves for
/// ten minutes, with writes on both sides, becomes one membership again within a few
/// probe rounds of the heal (each half had declared the other dead), and every node
/// reaches the exact sum.
#[test]
fn a_ten_minute_partition_heals_into_one_membership_and_the_exact_sum() {
    let members = gctr::membership::Config::default();
    let probe = members.probe_interval;
    let mut sim = Sim::with_membership(
        seed_or(40),
        Config::default(),
        members,
        Link::faulty(0.05, 0.05),
    );
    sim.run(&[Step::AddNodes(8)]);
    sim.membership_whole_within(secs(30));
    sim.run(&[
        Step::Partition(vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7]]),
        Step::RandomOps {
            count: 600,
            counters: 5,
            over: secs(600),
        },
    ]);
    assert!(
        !sim.membership_whole(),
        "{}",
        sim.fail("the halves still saw each other alive after ten minutes apart")
    );
    sim.run(&[Step::Heal]);
    let healed = sim.membership_whole_within(secs(60));
    println!(
        "10-minute partition: one membership {healed:?} ({:.1} probe rounds) after the heal",
        healed.as_secs_f64() / probe.as_secs_f64()
    );
    let converged = sim.converge_within(secs(30));
    println!("exact sums {converged:?} after that");
    assert!(
        healed <= probe * 10,
        "{}",
        sim.fail(&format!("the heal took {healed:?}, over 10 probe rounds"))
    );
}
