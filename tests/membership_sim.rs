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
        assert!(
            rounds <= 4.0 * log2,
            "{rounds} rounds for {n} nodes (replay with GCTR_SIM_SEED={})",
            seed_or(seed)
        );
    }
}

#[test]
#[ignore = "1.5 CPU-minutes in debug; run with --ignored"]
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
    assert!(
        rounds <= 4.0 * log2,
        "{rounds} rounds for {n} nodes (replay with GCTR_SIM_SEED={})",
        seed_or(3)
    );
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
        sim.run_for(ms(
            sim.config.probe_interval.as_millis() as u64 / 3 + 37 * k as u64 % 500
        ));
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
        assert!(
            max <= secs(5),
            "{n} nodes: a detection took {max:?} (replay with GCTR_SIM_SEED={})",
            seed_or(seed)
        );
    }
}

/// Runs `n` healthy nodes at probe-lane loss `loss` for `how_long`; returns the false
/// suspicions and false deaths seen (events at any member).
fn false_alarms(n: usize, loss: f64, how_long: Duration, seed: u64) -> (usize, usize, Sim) {
    let mut sim = Sim::new(seed, Config::default(), Link::lan());
    sim.run(&[Step::AddNodes(n)]);
    sim.run_until(secs(60), ms(100), "full membership", Sim::all_see_all_alive);
    let t0 = sim.now;
    sim.run(&[Step::SetLink(Link::lossy(loss)), Step::Run(how_long)]);
    let count = |to: State| {
        sim.log
            .iter()
            .filter(|o| o.at >= t0 && o.change.to == Some(to))
            .count()
    };
    let (suspicions, deaths) = (count(State::Suspect), count(State::Dead));
    (suspicions, deaths, sim)
}

#[test]
fn no_false_death_in_30_minutes_of_20_nodes_at_10_percent_loss() {
    let wall = std::time::Instant::now();
    let (suspicions, deaths, sim) = false_alarms(20, 0.1, secs(30 * 60), seed_or(20));
    println!(
        "20 nodes, 10% loss, 30 min: {suspicions} suspicion events, {deaths} false deaths, {} refutations (wall {:?})",
        sim.running().iter().map(|&i| sim.view(i).unwrap().stats().refutations).sum::<u64>(),
        wall.elapsed()
    );
    assert!(
        suspicions > 0,
        "{}",
        sim.fail("no suspicion at all: the loss did nothing")
    );
    assert_eq!(deaths, 0, "{}", sim.fail("a live member was declared dead"));
}

#[test]
fn no_false_death_in_30_seconds_of_20_nodes_at_50_percent_loss() {
    let (suspicions, deaths, mut sim) = false_alarms(20, 0.5, secs(30), seed_or(21));
    let health = |sim: &Sim| -> Vec<u32> {
        sim.running()
            .iter()
            .map(|&i| sim.view(i).unwrap().health_score())
            .collect()
    };
    println!(
        "20 nodes, 50% loss, 30 s: {suspicions} suspicion events, {deaths} false deaths; \
         health scores {:?}",
        health(&sim)
    );
    assert_eq!(deaths, 0, "{}", sim.fail("a live member was declared dead"));
    sim.run(&[Step::SetLink(Link::lan())]);
    let took = sim.run_until(secs(120), ms(100), "health back to 0", |s| {
        health(s).iter().all(|&h| h == 0) && s.all_see_all_alive()
    });
    println!("loss over: every node healthy and every member alive {took:?} later");
    let dead = sim
        .log
        .iter()
        .filter(|o| o.change.to == Some(State::Dead))
        .count();
    assert_eq!(dead, 0, "{}", sim.fail("a live member was declared dead"));
}

/// One node of 20 receives everything 2× the probe timeout late for 20 s: the false
/// suspicions and false deaths of the 19 healthy members (events at any member), and
/// the suspicions of the slow node itself.
fn slow_node_alarms(lifeguard: bool, lag_timeouts: u32, seed: u64) -> (usize, usize, usize) {
    let config = Config {
        lifeguard,
        ..Config::default()
    };
    let lag = config.probe_timeout * lag_timeouts;
    let mut sim = Sim::new(seed, config, Link::lan());
    sim.run(&[Step::AddNodes(20)]);
    sim.run_until(secs(60), ms(100), "full membership", Sim::all_see_all_alive);
    let slow = 5;
    let t0 = sim.now;
    sim.run(&[
        Step::Slow { node: slow, lag },
        Step::Run(secs(20)),
        Step::Slow {
            node: slow,
            lag: Duration::ZERO,
        },
        Step::Run(secs(10)),
    ]);
    let slow_name = Sim::name(slow);
    let healthy = |to: State| {
        sim.log
            .iter()
            .filter(|o| o.at >= t0 && o.change.member.name != *slow_name && o.change.to == Some(to))
            .count()
    };
    let of_slow = sim
        .changes_about(&slow_name, t0)
        .filter(|o| o.change.to == Some(State::Suspect))
        .count();
    (healthy(State::Suspect), healthy(State::Dead), of_slow)
}

/// At 2× the probe timeout (300 ms) the lag is absorbed by both modes: a late direct
/// ack still counts until the round ends (400 ms). Past the probe interval, plain SWIM
/// has the slow node suspect healthy members at every probe; Lifeguard must cut those
/// false alarms at least tenfold.
#[test]
fn lifeguard_cuts_false_alarms_caused_by_a_slow_node_tenfold() {
    let seed = seed_or(30);
    for lag in [2, 4, 8] {
        let (on_suspect, on_dead, on_slow) = slow_node_alarms(true, lag, seed);
        let (off_suspect, off_dead, off_slow) = slow_node_alarms(false, lag, seed);
        println!(
            "slow node (lag {lag}× probe timeout) for 20 s, 19 healthy members: false suspicions / \
             deaths (events) with Lifeguard {on_suspect} / {on_dead}, without {off_suspect} / \
             {off_dead}; the slow node suspected {on_slow} / {off_slow} times"
        );
        if lag >= 4 {
            assert!(
                off_suspect >= 100,
                "lag {lag}: plain SWIM should raise false alarms (seed {seed})"
            );
        }
        assert!(
            (on_suspect + on_dead) * 10 <= off_suspect + off_dead,
            "lag {lag}: Lifeguard {on_suspect}+{on_dead}, plain {off_suspect}+{off_dead} \
             (replay with GCTR_SIM_SEED={seed})"
        );
        assert_eq!(
            on_dead, 0,
            "lag {lag}: a healthy member declared dead with Lifeguard (seed {seed})"
        );
    }
}

/// 20 nodes split in two halves for 10 minutes, then healed: rounds until every node
/// sees every other alive again. `seeds`: every node is configured with seeds in both
/// halves (chitchat's rule then contacts one each round while it is unreachable).
/// `reap_time`: tombstones shorter than the partition are forgotten during it, so only
/// the seeds can heal it.
fn partition_heal_rounds(seeds: bool, reap_time: Duration, seed: u64) -> f64 {
    let config = Config {
        reap_time,
        ..Config::default()
    };
    let mut sim = Sim::new(seed, config, Link::lan());
    let halves: (Vec<usize>, Vec<usize>) = ((0..10).collect(), (10..20).collect());
    if seeds {
        for _ in 0..20 {
            sim.add_node(&[0, 10]);
        }
    } else {
        sim.run(&[Step::AddNodes(20)]);
    }
    sim.run_until(secs(60), ms(100), "full membership", Sim::all_see_all_alive);
    sim.run(&[
        Step::Partition(vec![halves.0.clone(), halves.1.clone()]),
        Step::Run(secs(600)),
    ]);
    let split = sim.running().iter().all(|&i| {
        let m = sim.view(i).unwrap();
        let other = if i < 10 { &halves.1 } else { &halves.0 };
        other.iter().all(|&j| {
            m.get(&Sim::name(j))
                .is_none_or(|u| u.state == State::Dead && reap_time > secs(600))
        })
    });
    assert!(
        split,
        "{}",
        sim.fail("each half should hold the other dead (or forgotten)")
    );
    sim.run(&[Step::Heal]);
    let took = sim.run_until(
        secs(120),
        ms(50),
        "one membership after the heal",
        Sim::all_see_all_alive,
    );
    took.as_secs_f64() / sim.config.probe_interval.as_secs_f64()
}

#[test]
fn a_ten_minute_partition_heals_within_a_few_rounds() {
    let hour = secs(3600);
    for (seeds, reap_time, how) in [
        (false, hour, "no seeds (dead-member contact only)"),
        (true, hour, "seeds in both halves"),
        (
            true,
            secs(120),
            "seeds in both halves, tombstones reaped during the partition",
        ),
    ] {
        let rounds = partition_heal_rounds(seeds, reap_time, seed_or(40));
        println!(
            "10-minute partition of 20 nodes into halves, {how}: one membership {rounds:.1} probe rounds after the heal"
        );
        assert!(
            rounds <= 10.0,
            "{rounds} rounds to heal ({how}; replay with GCTR_SIM_SEED={})",
            seed_or(40)
        );
    }
}

/// Whether every running node other than `node` holds `node` in `state` with data
/// incarnation `incarnation`.
fn all_hold(sim: &Sim, node: usize, state: State, incarnation: u64) -> bool {
    let name = Sim::name(node);
    sim.running().iter().filter(|&&i| i != node).all(|&i| {
        sim.view(i)
            .and_then(|m| m.get(&name))
            .is_some_and(|u| u.state == state && u.member.incarnation == incarnation)
    })
}

fn converged_cluster(n: usize, seed: u64, config: Config) -> Sim {
    let mut sim = Sim::new(seed, config, Link::lan());
    sim.run(&[Step::AddNodes(n)]);
    sim.run_until(secs(60), ms(100), "full membership", Sim::all_see_all_alive);
    sim
}

#[test]
fn a_restart_replaces_the_old_entry_at_once_everywhere_and_never_flaps_back() {
    for new_data in [true, false] {
        let mut sim = converged_cluster(20, seed_or(50), Config::default());
        let v = 7;
        let name = Sim::name(v);
        let old_run = sim.view(0).unwrap().get(&name).unwrap().member.run();
        let t0 = sim.now;
        sim.run(&[Step::Restart {
            node: v,
            new_data,
            via: 0,
        }]);
        let new_member = sim.view(v).unwrap().me().member.clone();
        let new_run = new_member.run();
        let took = sim.run_until(secs(10), ms(10), "the new run everywhere", |s| {
            all_hold(s, v, State::Alive, new_member.incarnation)
                && s.running()
                    .iter()
                    .all(|&i| s.view(i).unwrap().get(&name).unwrap().member.run() == new_run)
        });
        sim.run_for(secs(60));
        let mut replaced_at = std::collections::BTreeMap::new();
        for o in sim.changes_about(&name, t0) {
            if o.change.member.run() == new_run {
                replaced_at.entry(o.observer).or_insert(o.at);
            } else {
                assert!(
                    !replaced_at.contains_key(&o.observer) && o.change.member.run() == old_run,
                    "{}",
                    sim.fail(&format!(
                        "node {} flapped back to the old run: {:?}",
                        o.observer, o.change
                    ))
                );
            }
            if o.change.member.run() == new_run {
                assert_eq!(
                    o.change.to,
                    Some(State::Alive),
                    "{}",
                    sim.fail("the new run is not alive")
                );
            }
        }
        assert!(
            all_hold(&sim, v, State::Alive, new_member.incarnation),
            "{}",
            sim.fail("not alive")
        );
        println!(
            "restart with {} data: every member holds the new run after {took:?}; no flap in 60 s",
            if new_data { "new" } else { "the same" }
        );
    }
}

#[test]
fn a_leave_shows_left_everywhere_never_dead() {
    let mut sim = converged_cluster(20, seed_or(51), Config::default());
    let v = 4;
    let inc = sim.nodes[v].incarnation;
    let t0 = sim.now;
    sim.run(&[Step::Leave(v), Step::Crash(v)]);
    let took = sim.run_until(secs(10), ms(10), "left everywhere", |s| {
        all_hold(s, v, State::Left, inc)
    });
    sim.run_for(secs(120));
    let name = Sim::name(v);
    let other: Vec<_> = sim
        .changes_about(&name, t0)
        .filter(|o| o.change.to != Some(State::Left))
        .collect();
    assert!(
        other.is_empty(),
        "{}",
        sim.fail(&format!("a leave seen as {:?}", other[0].change))
    );
    assert!(all_hold(&sim, v, State::Left, inc));
    println!(
        "leave: every member holds the node left after {took:?}, never suspect or dead in 120 s"
    );
}

#[test]
fn a_removed_node_stays_out_until_it_rejoins() {
    let mut sim = converged_cluster(20, seed_or(52), Config::default());
    let v = 9;
    let name = Sim::name(v);
    let inc = sim.nodes[v].incarnation;
    sim.run(&[Step::Remove { by: 0, name: v }]);
    let took = sim.run_until(secs(10), ms(10), "left everywhere", |s| {
        all_hold(s, v, State::Left, inc) && s.view(v).unwrap().me().state == State::Left
    });
    let t_removed = sim.now;
    sim.run_for(secs(120));
    let back: Vec<_> = sim
        .changes_about(&name, t_removed)
        .filter(|o| o.change.to != Some(State::Left))
        .collect();
    assert!(
        back.is_empty(),
        "{}",
        sim.fail(&format!("the removed node came back: {:?}", back[0]))
    );
    assert!(
        all_hold(&sim, v, State::Left, inc),
        "{}",
        sim.fail("not left everywhere")
    );
    println!(
        "remove: left everywhere (the node itself included) after {took:?}, still out 120 s later"
    );

    sim.run(&[Step::Join { node: v, via: 3 }]);
    let took = sim.run_until(secs(10), ms(10), "rejoined", Sim::all_see_all_alive);
    println!("remove, then an explicit join: alive everywhere after {took:?}");

    sim.run(&[Step::Remove { by: 2, name: v }]);
    sim.run_until(secs(10), ms(10), "left again", |s| {
        all_hold(s, v, State::Left, inc)
    });
    sim.run(&[Step::Restart {
        node: v,
        new_data: true,
        via: 1,
    }]);
    let took = sim.run_until(
        secs(10),
        ms(10),
        "back with new data",
        Sim::all_see_all_alive,
    );
    println!("remove, then a restart with new data: alive everywhere after {took:?}");
}

#[test]
fn tombstones_are_reaped_and_stale_gossip_does_not_resurrect_them() {
    let config = Config {
        reap_time: secs(60),
        ..Config::default()
    };
    let mut sim = converged_cluster(10, seed_or(53), config);
    let v = 3;
    let name = Sim::name(v);
    let stale_alive = sim.view(0).unwrap().get(&name).unwrap().clone();
    sim.run(&[Step::Crash(v)]);
    let inc = sim.nodes[v].incarnation;
    sim.run_until(secs(10), ms(10), "dead everywhere", |s| {
        all_hold(s, v, State::Dead, inc)
    });
    let stale_dead = sim.view(0).unwrap().get(&name).unwrap().clone();
    let forgotten = |s: &Sim| {
        s.running()
            .iter()
            .all(|&i| s.view(i).unwrap().get(&name).is_none())
    };
    sim.run_for(secs(55));
    assert!(
        sim.running()
            .iter()
            .all(|&i| sim.view(i).unwrap().get(&name).is_some()),
        "{}",
        sim.fail("a tombstone was reaped before the reap time")
    );
    let took = sim.run_until(secs(30), ms(100), "forgotten everywhere", forgotten);
    println!(
        "reap: the dead member forgotten everywhere {:?} after its tombstones were made",
        secs(55) + took
    );
    for i in sim.running() {
        let msg = gctr::membership::Message::Gossip {
            from: gctr::member::NodeName::new(&Sim::name(0)).expect("a valid name"),
            updates: vec![stale_alive.clone(), stale_dead.clone()],
        };
        sim.inject(0, i, &msg);
    }
    sim.run_for(secs(30));
    assert!(
        forgotten(&sim),
        "{}",
        sim.fail("stale gossip brought a reaped member back")
    );
}

#[test]
fn a_paused_node_survives_a_short_pause_and_refutes_after_a_long_one() {
    let mut sim = converged_cluster(20, seed_or(54), Config::default());
    let v = 11;
    let name = Sim::name(v);
    let inc = sim.nodes[v].incarnation;
    let t0 = sim.now;
    sim.run(&[
        Step::Pause {
            node: v,
            pause: secs(1),
        },
        Step::Run(secs(30)),
    ]);
    let deaths = sim
        .changes_about(&name, t0)
        .filter(|o| o.change.to == Some(State::Dead))
        .count();
    assert_eq!(deaths, 0, "{}", sim.fail("a 1 s pause killed the node"));
    let paused_at = sim.now;
    sim.run(&[Step::Pause {
        node: v,
        pause: secs(20),
    }]);
    let dead_after = sim.run_until(secs(20), ms(10), "dead during the pause", |s| {
        all_hold(s, v, State::Dead, inc)
    });
    let resume = paused_at + secs(20);
    sim.run_for(resume - sim.now - ms(1));
    assert!(
        all_hold(&sim, v, State::Dead, inc),
        "{}",
        sim.fail("it came back while paused")
    );
    let took = sim.run_until(secs(20), ms(10), "alive again", Sim::all_see_all_alive);
    println!(
        "pause: 1 s survived; a 20 s pause declared dead everywhere after {dead_after:?}, \
         then alive everywhere {took:?} after resuming"
    );
}

#[test]
fn a_broken_link_between_two_nodes_kills_neither() {
    let mut sim = converged_cluster(10, seed_or(55), Config::default());
    let t0 = sim.now;
    sim.run(&[
        Step::LinkLoss {
            a: 1,
            b: 2,
            loss: 1.0,
        },
        Step::Run(secs(300)),
    ]);
    let deaths = sim
        .log
        .iter()
        .filter(|o| o.at >= t0 && o.change.to == Some(State::Dead))
        .count();
    let failed: u64 = sim
        .running()
        .iter()
        .map(|&i| sim.view(i).unwrap().stats().probes_failed)
        .sum();
    println!("a broken link for 5 min: {deaths} deaths, {failed} failed probes (indirect probes get through)");
    assert_eq!(deaths, 0, "{}", sim.fail("a broken link killed a node"));
}

#[test]
fn idle_traffic_per_node_and_join_time() {
    let mut sim = converged_cluster(10, seed_or(60), Config::default());
    sim.run_for(secs(30));
    let before = sim.total_bytes();
    let kinds_before = sim.by_kind.clone();
    let window = secs(120);
    sim.run_for(window);
    let per_node = (sim.total_bytes() - before) as f64 / 10.0 / window.as_secs_f64();
    let kinds: Vec<String> = sim
        .by_kind
        .iter()
        .map(|(k, t)| {
            let b = t.bytes - kinds_before.get(k).map_or(0, |t| t.bytes);
            format!("{k} {:.0}", b as f64 / 10.0 / window.as_secs_f64())
        })
        .collect();
    println!(
        "10 idle nodes: {per_node:.0} membership bytes per node per second ({}), largest probe-lane message {} bytes",
        kinds.join(", "),
        sim.largest_probe
    );
    assert!(
        per_node < 15_000.0,
        "{}",
        sim.fail(&format!("{per_node} B/s per node"))
    );
    assert!(
        sim.running()
            .iter()
            .all(|&i| sim.view(i).unwrap().pending_changes() == 0),
        "{}",
        sim.fail("an idle cluster has nothing left to spread")
    );

    for n in [5, 100] {
        let mut sim = converged_cluster(n - 1, seed_or(61), Config::default());
        let via = n / 2;
        let joiner = sim.add_node(&[via]);
        let took = sim.run_until(secs(30), ms(10), "the join everywhere", |s| {
            all_hold(s, joiner, State::Alive, s.nodes[joiner].incarnation)
                && s.live_view(joiner) == n - 1
        });
        println!(
            "join into {n} nodes: known alive by every member (and knowing all) after {took:?}"
        );
        assert!(
            took <= secs(10),
            "{}",
            sim.fail(&format!("a join took {took:?}"))
        );
    }
}

/// For `scripts/bench.sh`: detection and join times at the cluster sizes in
/// `GCTR_BENCH_SIZES` (default 100 and 1000), one `RESULT` line each. Run in release
/// with `--ignored`; at 1000 nodes it takes a few CPU-minutes.
#[test]
#[ignore = "a benchmark: scripts/bench.sh runs it"]
fn bench_detection_and_join_at_scale() {
    let sizes = std::env::var("GCTR_BENCH_SIZES").unwrap_or_else(|_| "100,1000".into());
    for n in sizes
        .split(',')
        .filter_map(|s| s.trim().parse::<usize>().ok())
    {
        let crashes = if n >= 500 { 2 } else { 5 };
        let times = detection_times(n, crashes, seed_or(70), Config::default());
        let mut sim = converged_cluster(n - 1, seed_or(71), Config::default());
        let joiner = sim.add_node(&[n / 2]);
        let join = sim.run_until(secs(60), ms(10), "the join everywhere", |s| {
            all_hold(s, joiner, State::Alive, s.nodes[joiner].incarnation)
                && s.live_view(joiner) == n - 1
        });
        println!(
            "RESULT n={n} detections={} detect_p50_ms={} detect_p99_ms={} detect_max_ms={} join_ms={}",
            times.len(),
            percentile(&times, 0.5).as_millis(),
            percentile(&times, 0.99).as_millis(),
            times.last().map_or(0, Duration::as_millis),
            join.as_millis()
        );
    }
}
