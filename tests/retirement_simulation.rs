//! Retiring the origins of members gone for good, in the deterministic simulator with
//! membership: members replaced one by one 2,000 times with writes throughout keep the
//! live origins at about the member count and every value exact at every quiescent
//! point; and the adversarial schedules — a member taken for dead that kept writing
//! across a partition, a replica away for long holding the only copy of a retired
//! origin's last writes — bring the retirement back and never change a count wrongly.

mod sim;

use gctr::engine::Config;
use gctr::membership;
use sim::{seed_or, Link, Sim, Step};
use std::time::Duration;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const RETIRE_AFTER: Duration = Duration::from_secs(10);
const MEMBERS: usize = 5;

/// How long an origin stays retired before it is compacted, in the tests that compact.
const COMPACT_AFTER: Duration = Duration::from_secs(20);

fn cluster(seed: u64, link: Link) -> Sim {
    start(
        Sim::with_membership(seed, Config::default(), membership::Config::default(), link)
            .with_retirement(RETIRE_AFTER),
    )
}

/// A cluster that also compacts origins retired for [`COMPACT_AFTER`], on lossy links.
fn compacting_cluster(seed: u64) -> Sim {
    let link = Link::faulty(0.05, 0.02);
    start(
        Sim::with_membership(seed, Config::default(), membership::Config::default(), link)
            .with_retirement(RETIRE_AFTER)
            .with_compaction(COMPACT_AFTER),
    )
}

fn start(mut sim: Sim) -> Sim {
    sim.run(&[Step::AddNodes(MEMBERS)]);
    sim.membership_whole_within(secs(60));
    sim
}

/// Writes on every node until they converge, then splits the cluster into `sides`.
fn write_then_partition(sim: &mut Sim, sides: Vec<Vec<usize>>) {
    sim.run(&[
        Step::RandomOps {
            count: 50,
            counters: 3,
            over: secs(2),
        },
        Step::AssertConverged { within: secs(30) },
        Step::Partition(sides),
    ]);
}

/// Writes on every node until they converge, then cuts node 4 off; returns its origin.
fn write_then_cut_off_node_4(sim: &mut Sim) -> gctr::crdt::Origin {
    write_then_partition(sim, vec![vec![0, 1, 2, 3], vec![4]]);
    sim.core(4).expect("running").origin().clone()
}

/// [`write_then_cut_off_node_4`], until the others have compacted its origin.
fn cut_off_node_4_until_compacted(sim: &mut Sim) -> gctr::crdt::Origin {
    let four = write_then_cut_off_node_4(sim);
    run_until(
        sim,
        RETIRE_AFTER + COMPACT_AFTER + secs(60),
        "the others compact node 4's origin",
        |sim| (0..4).all(|i| sim.state(i).is_some_and(|s| s.is_compacted(&four))),
    );
    four
}

/// The most live origins any running node holds.
fn most_live_origins(sim: &Sim) -> usize {
    sim.live_nodes()
        .into_iter()
        .filter_map(|i| sim.state(i))
        .map(|s| s.live_origin_count())
        .max()
        .unwrap_or(0)
}

/// Restarts node `node` without its data `times` times, each run writing once.
fn restart_writing_once(sim: &mut Sim, node: usize, times: usize) {
    for _ in 0..times {
        sim.run(&[
            Step::Op {
                node,
                counter: "c0".into(),
                by: 1,
            },
            Step::Run(ms(300)),
            Step::RestartFresh(node),
            Step::Run(ms(200)),
        ]);
    }
}

/// Runs until `done` holds, checking every 200 ms; panics after `within`.
fn run_until(sim: &mut Sim, within: Duration, what: &str, done: impl Fn(&Sim) -> bool) {
    let deadline = sim.now() + within;
    while !done(sim) {
        assert!(
            sim.now() < deadline,
            "{}",
            sim.fail(&format!("not yet: {what}"))
        );
        sim.run_for(ms(200));
    }
}

/// Runs until every running node holds at most `most` live origins; panics after
/// `within`.
fn live_origins_within(sim: &mut Sim, most: usize, within: Duration) {
    run_until(
        sim,
        within,
        &format!("at most {most} live origins"),
        |sim| most_live_origins(sim) <= most,
    );
}

/// Members 1 to 4 replaced one by one, a round every 500 ms, while node 0 (the seed)
/// stays: a node up for longer than the retire-after time holds the current members'
/// origins, those gone within that time (about 20) and those waiting for a member's
/// whole digest (members live 2 s here, so some never send one) while writes flow — a
/// few dozen, however many replacements came before; at every
/// quiescent point every node holds at most one live origin per member, with every
/// value exact. A node that just joined holds every
/// origin it learned live until its own retire-after time has passed (it cannot tell
/// how long an origin has been gone; see the README). With compaction 20 s after
/// retirement, node 0's tombstones hold only the origins retired within that time:
/// memory stays bounded however many replacements came before.
///
/// Unoptimised it takes many minutes, so it is built in release builds only:
/// `scripts/test.sh` runs this file with `cargo test --release` too.
#[cfg(not(debug_assertions))]
#[test]
fn members_replaced_2000_times_leave_about_one_live_origin_each_and_values_exact() {
    const ROUND: Duration = Duration::from_millis(500);
    let mut sim = compacting_cluster(seed_or(1900));
    let mut started = [Duration::ZERO; MEMBERS];
    let mut most_tombstone_entries = 0;
    let mut peak = 0;
    for round in 1..=2000usize {
        let replaced = 1 + round % (MEMBERS - 1);
        sim.run(&[
            Step::RandomOps {
                count: 3,
                counters: 4,
                over: ROUND - ms(100),
            },
            Step::RestartFresh(replaced),
            Step::Run(ms(100)),
        ]);
        started[replaced] = sim.now();
        let settled = (0..MEMBERS).filter(|&i| sim.now() >= started[i] + RETIRE_AFTER + secs(5));
        let live = settled
            .filter_map(|i| sim.state(i))
            .map(|s| s.live_origin_count());
        peak = peak.max(live.max().unwrap_or(0));
        let tombstones = sim
            .state(0)
            .map_or(0, |s| s.retire_stats().tombstone_entries);
        most_tombstone_entries = most_tombstone_entries.max(tombstones);
        if round % 250 == 0 {
            sim.converge_within(secs(60));
            live_origins_within(&mut sim, MEMBERS, RETIRE_AFTER + secs(60));
            sim.converge_within(secs(1));
        }
    }
    let state = sim.state(1).expect("running");
    let stats = state.retire_stats();
    println!(
        "2000 replacements over {:.0} simulated minutes: at most {peak} live origins on a \
         settled node while writes flowed; {} origins heard of, {} retired, {} undone, \
         {} compacted; at most {most_tombstone_entries} tombstone entries on node 0",
        sim.now().as_secs_f64() / 60.0,
        state.origin_count(),
        stats.retired,
        stats.undone,
        stats.compacted
    );
    // Each retired origin wrote at most the 4 counters; those retired within the last
    // compact-after time (one replacement a round) are all a tombstone holds.
    let compacting = ((RETIRE_AFTER + COMPACT_AFTER).as_millis() / ROUND.as_millis()) as usize;
    assert!(
        most_tombstone_entries <= 4 * 2 * compacting,
        "{}",
        sim.fail(&format!("{most_tombstone_entries} tombstone entries"))
    );
    assert!(stats.compacted > 1500, "{}", sim.fail("too few compacted"));
    assert!(
        state.origin_count() > 1500,
        "{}",
        sim.fail("too few origins to prove anything")
    );
    let window = (RETIRE_AFTER.as_millis() / ROUND.as_millis()) as usize;
    assert!(
        peak <= MEMBERS + 4 * window,
        "{}",
        sim.fail(&format!(
            "{peak} live origins on a settled node while writes flowed"
        ))
    );
}

/// Node 4 is cut off long enough to be taken for dead; it keeps writing. The others
/// retire its origin; once the partition heals its writes bring it back, and every
/// value is exact. Later, with node 4 gone for good, the origin retires again.
#[test]
fn a_member_taken_for_dead_that_kept_writing_comes_back_exactly() {
    let seed = seed_or(1901);
    let mut sim = cluster(seed, Link::faulty(0.05, 0.02));
    let four = write_then_cut_off_node_4(&mut sim);
    sim.run(&[Step::Run(secs(5))]);
    for _ in 0..40 {
        sim.run(&[
            Step::Op {
                node: 4,
                counter: "c0".into(),
                by: 2,
            },
            Step::Run(secs(1)),
        ]);
    }
    let retired_on = |sim: &Sim| {
        (0..4)
            .filter(|&i| sim.state(i).is_some_and(|s| s.is_retired(&four)))
            .count()
    };
    assert_eq!(
        retired_on(&sim),
        4,
        "{}",
        sim.fail("the others retired node 4's origin")
    );
    sim.run(&[Step::Heal, Step::AssertConverged { within: secs(60) }]);
    for i in 0..4 {
        let state = sim.state(i).expect("running");
        assert!(!state.is_retired(&four), "{}", sim.fail("node 4 came back"));
        assert!(state.retire_stats().undone >= 1);
    }
    sim.run(&[Step::Crash(4)]);
    sim.run_for(RETIRE_AFTER + secs(60));
    assert_eq!(
        retired_on(&sim),
        4,
        "{}",
        sim.fail("gone for good, it retires again")
    );
    sim.run(&[Step::AssertConverged { within: secs(1) }]);
}

/// Node 3's last writes reach only node 4; both are then cut off, and node 3 is gone
/// for good. The others retire node 3's origin at what they know, short of those
/// writes. Node 4 comes back after ten times the retire-after time: node 3's last
/// writes undo the retirement, and every value is exact, then node 3's origin retires
/// everywhere at its true end.
#[test]
fn a_replica_away_for_long_with_a_retired_origins_last_writes_changes_no_count_wrongly() {
    let seed = seed_or(1902);
    let mut sim = cluster(seed, Link::perfect());
    write_then_partition(&mut sim, vec![vec![0, 1, 2], vec![3, 4]]);
    let three = sim.core(3).expect("running").origin().clone();
    for by in 1..=10 {
        sim.run(&[
            Step::Op {
                node: 3,
                counter: "c1".into(),
                by,
            },
            Step::Run(ms(300)),
        ]);
    }
    let held = |sim: &Sim, i: usize| sim.state(i).expect("running").known(&three);
    let last = held(&sim, 3);
    let run = Duration::from_secs(5);
    sim.run(&[Step::Run(run), Step::Crash(3)]);
    assert_eq!(
        held(&sim, 4),
        last,
        "{}",
        sim.fail("node 4 holds node 3's last writes")
    );
    sim.run(&[Step::Partition(vec![vec![0, 1, 2], vec![3], vec![4]])]);
    sim.run_for(RETIRE_AFTER * 10);
    for i in 0..3 {
        let state = sim.state(i).expect("running");
        assert!(state.is_retired(&three) && state.known(&three) < last);
    }
    sim.run(&[Step::Heal, Step::AssertConverged { within: secs(60) }]);
    for i in [0, 1, 2, 4] {
        assert_eq!(
            held(&sim, i),
            last,
            "{}",
            sim.fail("node 3's last writes everywhere")
        );
    }
    run_until(
        &mut sim,
        RETIRE_AFTER + secs(60),
        "node 3's origin retired at its end",
        |sim| {
            [0, 1, 2, 4]
                .iter()
                .all(|&i| sim.state(i).is_some_and(|s| s.is_retired(&three)))
        },
    );
    sim.run(&[Step::AssertConverged { within: secs(1) }]);
}

/// A node that joins learns from its peers which origins they retired (they say so
/// after the tombstones they send it), and retires those whose members are gone here
/// too at once, not after its own retire-after time.
#[test]
fn a_newcomer_retires_what_its_peers_retired_without_waiting() {
    let seed = seed_or(1903);
    let mut sim = cluster(seed, Link::faulty(0.05, 0.02));
    restart_writing_once(&mut sim, 1, 30);
    sim.converge_within(secs(30));
    live_origins_within(&mut sim, MEMBERS, RETIRE_AFTER + secs(30));
    let before = sim.state(0).expect("running").origin_count();
    let left = format!("{before} origins: the restarts left theirs");
    assert!(before >= 30, "{}", sim.fail(&left));
    sim.run(&[Step::RestartFresh(2)]);
    let joined = sim.now();
    run_until(
        &mut sim,
        RETIRE_AFTER / 2,
        "the newcomer holds every origin, at most one live per member",
        |sim| {
            sim.state(2)
                .is_some_and(|s| s.origin_count() >= before && s.live_origin_count() <= MEMBERS)
        },
    );
    println!(
        "a newcomer holds at most {MEMBERS} live origins of {before} after {:?}",
        sim.now() - joined
    );
    sim.run(&[Step::AssertConverged { within: secs(1) }]);
}

/// A retire-after time too long to add to a clock (as `--retire-after` accepts) never
/// retires and never overflows.
#[test]
fn a_retire_after_time_past_any_clock_never_retires() {
    let mut sim = Sim::with_membership(
        seed_or(1904),
        Config::default(),
        membership::Config::default(),
        Link::perfect(),
    )
    .with_retirement(Duration::MAX);
    sim.run(&[Step::AddNodes(3)]);
    sim.membership_whole_within(secs(60));
    sim.run(&[
        Step::Op {
            node: 1,
            counter: "c0".into(),
            by: 4,
        },
        Step::AssertConverged { within: secs(10) },
        Step::RestartFresh(1),
        Step::Run(secs(30)),
        Step::AssertConverged { within: secs(1) },
    ]);
    assert_eq!(sim.state(0).expect("running").retire_stats().done, 0);
}

/// Retirements are logged: a node restarted from its log holds the origins it retired
/// retired again at once, not after another retire-after time.
#[test]
fn a_durable_restart_keeps_its_retirements() {
    let seed = seed_or(1905);
    let mut sim = cluster(seed, Link::perfect());
    restart_writing_once(&mut sim, 1, 10);
    sim.converge_within(secs(30));
    live_origins_within(&mut sim, MEMBERS, RETIRE_AFTER + secs(30));
    let retired = sim.state(3).expect("running").retire_stats().retired;
    assert!(
        retired >= 10,
        "{}",
        sim.fail("node 3 retired the restarts' origins")
    );
    sim.run(&[Step::RestartDurable(3)]);
    let state = sim.state(3).expect("running");
    assert_eq!(state.retire_stats().retired, retired);
    assert!(state.live_origin_count() <= MEMBERS);
    sim.run(&[Step::AssertConverged { within: secs(10) }]);
}

/// Restarts leave retired origins whose tombstones keep every entry they wrote; once
/// retired for the compact-after time they are compacted on every node (tombstones
/// empty, values exact), and a node that joins afterwards — which no peer can send
/// those origins' entries any more — adopts a peer's compaction and reads exactly what
/// the others read.
#[test]
fn compaction_empties_the_tombstones_and_a_later_newcomer_adopts_it_exactly() {
    let mut sim = compacting_cluster(seed_or(1905));
    restart_writing_once(&mut sim, 1, 20);
    sim.converge_within(secs(30));
    let compacted = |sim: &Sim, i: usize| sim.state(i).map_or(0, |s| s.retire_stats().compacted);
    run_until(
        &mut sim,
        RETIRE_AFTER + COMPACT_AFTER + secs(60),
        "20 origins compacted on every node, tombstones empty",
        |sim| {
            sim.live_nodes().into_iter().all(|i| {
                compacted(sim, i) >= 20
                    && sim
                        .state(i)
                        .is_some_and(|s| s.retire_stats().tombstone_entries == 0)
            })
        },
    );
    sim.run(&[Step::AssertConverged { within: secs(1) }]);
    sim.run(&[Step::RestartFresh(3)]);
    run_until(
        &mut sim,
        secs(60),
        "the newcomer adopts the compaction",
        |sim| compacted(sim, 3) >= 20,
    );
    sim.run(&[Step::AssertConverged { within: secs(10) }]);
    let stats = sim.state(3).expect("running").retire_stats();
    println!(
        "newcomer: {} origins compacted (adopted), {} tombstone entries",
        stats.compacted, stats.tombstone_entries
    );
}

/// Node 4 is cut off, taken for dead, and keeps writing; the others retire its origin
/// and, past the compact-after time, compact it. Once the partition heals its writes
/// past the compaction cannot be merged: they are refused and counted on every other
/// node, whose values do not move, and node 4 cannot adopt their compaction either (it
/// holds the origin past it). Nothing is counted wrongly; the replicas disagree on node
/// 4's partition writes, as the README says, until node 4 is wiped and rejoins.
#[test]
fn a_member_away_past_compaction_is_refused_and_nothing_is_counted_wrongly() {
    let mut sim = compacting_cluster(seed_or(1906));
    let four = cut_off_node_4_until_compacted(&mut sim);
    let others_values = |sim: &Sim| -> Vec<Vec<(String, i64)>> {
        (0..4)
            .map(|i| {
                let s = sim.state(i).expect("running");
                s.values().map(|(n, v)| (n.to_owned(), v)).collect()
            })
            .collect()
    };
    let mut writes = 0;
    let before = others_values(&sim);
    for _ in 0..10 {
        sim.run(&[
            Step::Op {
                node: 4,
                counter: "c0".into(),
                by: 2,
            },
            Step::Run(ms(500)),
        ]);
        writes += 1;
    }
    sim.run(&[Step::Heal]);
    run_until(
        &mut sim,
        secs(60),
        "node 4's late writes refused everywhere",
        |sim| (0..4).all(|i| sim.state(i).is_some_and(|s| s.retire_stats().refused > 0)),
    );
    sim.run_for(secs(10));
    assert_eq!(
        others_values(&sim),
        before,
        "{}",
        sim.fail("the others' values moved")
    );
    let mine = sim.state(4).expect("running").value("c0");
    let theirs = sim.state(0).expect("running").value("c0");
    assert!(
        mine >= theirs + 2 * writes,
        "node 4 holds its {writes} writes: {mine} vs {theirs}"
    );
    assert!(!sim.state(4).expect("running").is_compacted(&four));
}

/// Both sides of a partition longer than retire-after plus compact-after compact the
/// other side's origins. Once it heals, each node learns from a peer's compaction offer
/// that its own origin was compacted there and writes under a new incarnation: what it
/// acknowledges after the heal reaches every node (what it wrote under the old origin
/// past the compaction stays refused there, as the README says).
#[test]
fn after_a_partition_past_compaction_new_writes_reach_everyone() {
    let mut sim = compacting_cluster(seed_or(1907));
    let four = cut_off_node_4_until_compacted(&mut sim);
    sim.run(&[Step::Heal]);
    sim.membership_whole_within(secs(60));
    run_until(
        &mut sim,
        secs(60),
        "node 4 writes under a new origin",
        |sim| sim.core(4).is_some_and(|c| *c.origin() != four),
    );
    for node in [4, 0] {
        for _ in 0..10 {
            sim.run(&[
                Step::Op {
                    node,
                    counter: format!("after-heal-{node}"),
                    by: 1,
                },
                Step::Run(ms(200)),
            ]);
        }
    }
    run_until(
        &mut sim,
        secs(60),
        "every write after the heal everywhere",
        |sim| {
            sim.live_nodes().into_iter().all(|i| {
                sim.state(i)
                    .is_some_and(|s| s.value("after-heal-4") == 10 && s.value("after-heal-0") == 10)
            })
        },
    );
}
