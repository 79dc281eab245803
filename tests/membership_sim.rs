//! Membership scenarios run by the deterministic simulator (`tests/membership_sim/`):
//! join speed, crash detection times, false deaths under loss, Lifeguard against a slow
//! node, partitions healing, restarts, leaves, removals, reaping, and idle traffic.
//! Every run is seeded; a failure prints the seed (replay with GCTR_SIM_SEED).

#[path = "membership_sim/mod.rs"]
mod sim;

use gctr::membership::{Config, State};
use sim::{ms, percentile, secs, seed_or, Link, Sim, Step};
use std::time::Duration;

/// Nodes all started at once, each joining through a random earlier node: rounds
/// (probe intervals) until every node holds every other live.
fn join_rounds(n: usize, seed: u64) -> (Duration, f64) {
    let mut sim = Sim::new(seed, Config::default(), Link::lan());
    sim.record = false;
    sim.run(&[Step::AddNodes(n)]);
    let took = sim.run_until(secs(300), ms(100), "full membership", Sim::all_know_all);
    let rounds = took.as_secs_f64() / sim.config.probe_interval.as_secs_f64();
    (took, rounds)
}

#[test]
fn nodes_joined_through_random_seeds_all_know_each_other_within_log_n_rounds() {
    for (n, seed) in [(25, 1), (100, 2)] {
        let wall = std::time::Instant::now();
        let (took, rounds) = join_rounds(n, seed_or(seed));
        let log2 = (n as f64).log2();
        println!(
            "join {n} nodes: full membership after {took:?} = {rounds:.1} rounds = {:.2}·log2 N (wall {:?})",
            rounds / log2,
            wall.elapsed()
        );
        assert!(rounds <= 4.0 * log2, "{rounds} rounds for {n} nodes");
    }
}

#[test]
#[ignore = "about a minute in debug; run with --ignored"]
fn a_thousand_nodes_join_within_log_n_rounds() {
    let n = 1000;
    let wall = std::time::Instant::now();
    let (took, rounds) = join_rounds(n, seed_or(3));
    let log2 = (n as f64).log2();
    println!(
        "join {n} nodes: full membership after {took:?} = {rounds:.1} rounds = {:.2}·log2 N (wall {:?})",
        rounds / log2,
        wall.elapsed()
    );
    assert!(rounds <= 4.0 * log2, "{rounds} rounds for {n} nodes");
}

/// Crashes nodes one after another in a converged cluster of `n`; returns every
/// member's detection time of every crash.
fn detection_times(n: usize, crashes: usize, seed: u64, config: Config) -> Vec<Duration> {
    let mut sim = Sim::new(seed, config, Link::lan());
    sim.run(&[Step::AddNodes(n)]);
    sim.run_until(secs(60), ms(100), "full membership", Sim::all_see_all_alive);
    let mut times = Vec::new();
    for k in 0..crashes {
        let victim = (k * 7 + 3) % n;
        let name = Sim::name(victim);
        sim.run_for(ms(sim.config.probe_interval.as_millis() as u64 / 3 + 37 * k as u64 % 500));
        let t0 = sim.now;
        sim.crash(victim);
        let all_dead = |s: &Sim| {
            s.running().iter().all(|&i| {
                s.view(i)
                    .and_then(|m| m.get(&name))
                    .is_some_and(|u| u.state == State::Dead)
            })
        };
        sim.run_until(secs(30), ms(10), "detection everywhere", all_dead);
        for i in sim.running() {
            let at = sim
                .changes_about(&name, t0)
                .find(|o| o.observer == i && o.change.to == Some(State::Dead))
                .map(|o| o.at)
                .expect("every member saw the death");
            times.push(at - t0);
        }
        let via = (victim + 1) % n;
        sim.restart(victim, true, via);
        sim.run_until(secs(60), ms(100), "rejoin", Sim::all_see_all_alive);
    }
    times.sort();
    times
}

#[test]
fn a_crashed_node_is_declared_dead_by_every_member_within_5_s() {
    for (n, crashes, seed) in [(20, 20, 10), (50, 6, 11)] {
        let times = detection_times(n, crashes, seed_or(seed), Config::default());
        let (p50, p99, max) = (
            percentile(&times, 0.5),
            percentile(&times, 0.99),
            *times.last().expect("some"),
        );
        println!(
            "{n} nodes, {crashes} crashes, {} detections: p50 {p50:?}, p99 {p99:?}, max {max:?}",
            times.len()
        );
        assert!(max <= secs(5), "{n} nodes: a detection took {max:?}");
    }
}
