//! Real `gctr node` processes retiring origins: a 5-node cluster whose four ephemeral
//! members (no `--wal`) are restarted 200 times in all, each run writing once (and
//! stopped only once the seed holds that write: without a WAL it would die with it). With
//! `--retire-after 1s`, every node ends holding one live origin per member, the retired
//! ones summed, and every value exact. The seed keeps a WAL: restarted with
//! `--retire-after 1h`, it holds what it retired retired from its first answer (only
//! its log can tell it so).

mod common;

use common::cluster::{
    apply_op, figure, start_node, start_node_anywhere, wait_converged, TestNode,
};
use common::{agent, get_json, wait_until};
use std::collections::BTreeMap;
use std::time::Duration;

const RESTARTS: usize = 200;
const EPHEMERAL: usize = 4;

#[test]
fn two_hundred_ephemeral_restarts_leave_one_live_origin_per_member_and_exact_values() {
    let dir = tempfile::tempdir().expect("temp dir");
    let args = ["--retire-after", "1s", "--log-level", "warn"];
    let data = dir.path().join("seed-data");
    let data = data.to_str().expect("a UTF-8 temp path");
    let seed_args = [&args[..], &["--wal", data]].concat();
    let mut seed = start_node_anywhere(dir.path(), "seed", &[], &seed_args);
    let mut ephemeral: Vec<Option<TestNode>> = (0..EPHEMERAL).map(|_| None).collect();
    for restart in 1..=RESTARTS {
        let slot = restart % EPHEMERAL;
        if let Some(mut previous) = ephemeral[slot].take() {
            previous.proc.kill();
        }
        let name = format!("ephemeral-{slot}");
        // Ports the system picks: two hundred starts must not race other processes.
        let node = start_node_anywhere(dir.path(), &name, &[&seed.gossip], &args);
        apply_op(&agent(), &node.http, "restarts", true, 1);
        // Without a WAL a run's write lives only in memory until a peer holds it.
        wait_until(
            &format!("the seed to hold restart {restart}"),
            Duration::from_secs(30),
            || {
                common::cluster::counters(&seed.http).and_then(|c| c.get("restarts").copied())
                    == Some(restart as i64)
            },
        );
        ephemeral[slot] = Some(node);
    }
    apply_op(&agent(), &seed.http, "restarts", true, 1);
    let mut nodes: Vec<&TestNode> = ephemeral.iter().flatten().collect();
    nodes.push(&seed);
    let expected = BTreeMap::from([("restarts".to_owned(), RESTARTS as i64 + 1)]);
    wait_converged(&nodes, &expected, Duration::from_secs(60));
    wait_until(
        "one live origin per member on every node",
        Duration::from_secs(60),
        || {
            nodes
                .iter()
                .all(|n| figure(n, &["state", "origins_live"]) <= nodes.len() as u64)
        },
    );
    wait_converged(&nodes, &expected, Duration::from_secs(5));
    let counter = get_json(&seed.http, "/counters/restarts").expect("GET /counters/restarts");
    let live: u64 = counter["origins"]
        .as_array()
        .expect("origins")
        .iter()
        .map(|o| o["p"].as_u64().expect("p"))
        .sum();
    let retired = counter["retired"]["p"].as_u64().expect("retired p");
    println!(
        "seed: {} origins heard of, {} live, {} retired; the counter's retired sum {retired}",
        figure(&seed, &["state", "origins"]),
        figure(&seed, &["state", "origins_live"]),
        figure(&seed, &["state", "origins_retired"]),
    );
    assert_eq!(live + retired, RESTARTS as u64 + 1);
    assert!(figure(&seed, &["state", "origins_retired"]) >= (RESTARTS - EPHEMERAL) as u64);
    assert!(figure(&seed, &["state", "retirements"]) >= (RESTARTS - EPHEMERAL) as u64);

    let members = nodes.len() as u64;
    let retired = figure(&seed, &["state", "origins_retired"]);
    let (gossip, http) = (seed.gossip.clone(), seed.http.clone());
    assert_eq!(seed.proc.terminate(Duration::from_secs(10)), Some(0));
    let patient = ["--retire-after", "1h", "--log-level", "warn", "--wal", data];
    // At its old addresses, where the others look for it.
    let seed = start_node(dir.path(), "seed", (&gossip, &http), &[], &patient);
    assert_eq!(figure(&seed, &["state", "origins_retired"]), retired);
    assert!(figure(&seed, &["state", "origins_live"]) <= members);
    let nodes: Vec<&TestNode> = ephemeral.iter().flatten().chain([&seed]).collect();
    wait_converged(&nodes, &expected, Duration::from_secs(30));
}

/// With `--compact-after 2s`, origins retired that long are compacted: the tombstones
/// empty out on every node and values stay exact. A node that joins afterwards adopts a
/// peer's compaction (no peer can send it those origins' entries any more) and reads the
/// same; both the seed (compactions logged) and the newcomer (its adoption snapshotted)
/// hold what they compacted after a restart from their WAL.
#[test]
fn compacted_origins_empty_the_tombstones_and_a_later_newcomer_adopts_them() {
    const RUNS: usize = 20;
    let dir = tempfile::tempdir().expect("temp dir");
    let args = [
        "--retire-after",
        "1s",
        "--compact-after",
        "2s",
        "--idempotency-window",
        "1s",
        "--log-level",
        "warn",
    ];
    let wal = |name: &str| dir.path().join(name).to_str().expect("UTF-8").to_owned();
    let seed_data = wal("seed-data");
    let seed_args = [&args[..], &["--wal", &seed_data]].concat();
    let seed = start_node_anywhere(dir.path(), "seed", &[], &seed_args);
    let mut runs: Vec<Option<TestNode>> = vec![None, None];
    for run in 1..=RUNS {
        let slot = run % 2;
        if let Some(mut previous) = runs[slot].take() {
            previous.proc.kill();
        }
        let node = start_node_anywhere(dir.path(), &format!("run-{slot}"), &[&seed.gossip], &args);
        apply_op(&agent(), &node.http, "runs", true, 1);
        wait_until(
            &format!("the seed to hold run {run}"),
            Duration::from_secs(30),
            || {
                common::cluster::counters(&seed.http).and_then(|c| c.get("runs").copied())
                    == Some(run as i64)
            },
        );
        runs[slot] = Some(node);
    }
    let expected = BTreeMap::from([("runs".to_owned(), RUNS as i64)]);
    let compacted_everywhere = |nodes: &[&TestNode]| {
        nodes.iter().all(|n| {
            figure(n, &["state", "origins_compacted"]) >= (RUNS - 2) as u64
                && figure(n, &["state", "tombstone_entries"]) == 0
        })
    };
    let nodes: Vec<&TestNode> = runs.iter().flatten().chain([&seed]).collect();
    wait_until(
        "the gone runs' origins compacted everywhere",
        Duration::from_secs(60),
        || compacted_everywhere(&nodes),
    );
    wait_converged(&nodes, &expected, Duration::from_secs(10));

    let late_data = wal("late-data");
    let late_args = [&args[..], &["--wal", &late_data]].concat();
    let late = start_node_anywhere(dir.path(), "late", &[&seed.gossip], &late_args);
    let nodes: Vec<&TestNode> = runs.iter().flatten().chain([&seed, &late]).collect();
    wait_converged(&nodes, &expected, Duration::from_secs(30));
    wait_until(
        "the newcomer to adopt the compaction",
        Duration::from_secs(30),
        || compacted_everywhere(&[&late]),
    );
    println!(
        "seed: {} origins, {} compacted; newcomer: {} compacted, {} adopted",
        figure(&seed, &["state", "origins"]),
        figure(&seed, &["state", "origins_compacted"]),
        figure(&late, &["state", "origins_compacted"]),
        figure(&late, &["gossip", "compaction_adopted"]),
    );

    // Both restart from their WAL holding what they compacted.
    let mut restarted = Vec::new();
    for (node, data) in [(seed, seed_data), (late, late_data)] {
        let compacted = figure(&node, &["state", "origins_compacted"]);
        let (name, gossip, http) = (node.name.clone(), node.gossip.clone(), node.http.clone());
        let mut node = node;
        assert_eq!(node.proc.terminate(Duration::from_secs(10)), Some(0));
        let again = [&args[..], &["--wal", &data]].concat();
        let node = start_node(dir.path(), &name, (&gossip, &http), &[], &again);
        assert_eq!(
            figure(&node, &["state", "origins_compacted"]),
            compacted,
            "{name}"
        );
        restarted.push(node);
    }
    let nodes: Vec<&TestNode> = runs.iter().flatten().chain(&restarted).collect();
    wait_converged(&nodes, &expected, Duration::from_secs(30));
}
