//! The node core's own logic, driven by the simulator over its storage double: group
//! commit (one durable record per batch, a refused operation refused alone), a storage
//! failure that fails every operation of its batch and applies nothing, and state learned
//! from peers logged so that a restart holds it without asking anyone.

mod sim;

use gctr::crdt::{LocalOp, OpError, OpKind};
use gctr::engine::Config;
use gctr::node_core::OpFailure;
use sim::{seed_or, Link, Sim, Step};
use std::time::Duration;

fn op(counter: &str, by: i64) -> LocalOp {
    LocalOp {
        counter: counter.into(),
        kind: if by >= 0 {
            OpKind::Increment
        } else {
            OpKind::Decrement
        },
        amount: by.unsigned_abs(),
        key: None,
    }
}

#[test]
fn a_failed_commit_fails_every_operation_of_its_batch_and_applies_nothing() {
    let mut sim = Sim::new(seed_or(31), Config::default(), Link::perfect());
    sim.run(&[Step::AddNodes(3)]);
    sim.ops(0, &[op("a", 2)]);
    sim.converge_within(Duration::from_secs(5));
    let logged = sim.log(0).deltas.len();

    sim.log(0).fail_commits = 1;
    let results = sim.try_ops(0, &[op("a", 5), op("b", -2), op("a", 1)]);
    assert_eq!(results.len(), 3);
    for result in &results {
        assert!(
            matches!(result, Err(OpFailure::Storage(e)) if e.contains("injected")),
            "{result:?}"
        );
    }
    assert_eq!(sim.log(0).deltas.len(), logged, "a failed batch was logged");
    sim.run_for(Duration::from_secs(2));
    for node in 0..3 {
        let state = sim.state(node).expect("up");
        assert_eq!((state.value("a"), state.value("b")), (2, 0), "node {node}");
    }

    // The next batch commits, and a restart from the log shows only what was acknowledged.
    sim.ops(0, &[op("b", -4)]);
    sim.converge_within(Duration::from_secs(5));
    sim.run(&[Step::RestartDurable(0)]);
    let state = sim.state(0).expect("up");
    assert_eq!((state.value("a"), state.value("b")), (2, -4));
}

#[test]
fn a_batch_is_one_durable_record_and_a_refused_operation_is_refused_alone() {
    let mut sim = Sim::new(seed_or(32), Config::default(), Link::perfect());
    sim.run(&[Step::AddNodes(2)]);
    let results = sim.try_ops(
        0,
        &[
            op("x", 3),
            op("bad\nname", 1),
            op("y", i64::MAX),
            op("y", 1),
            op("x", -1),
        ],
    );
    assert_eq!(results[0], Ok(3));
    assert!(matches!(
        results[1],
        Err(OpFailure::Refused(OpError::BadName(_)))
    ));
    assert_eq!(results[2], Ok(i64::MAX));
    assert!(matches!(
        results[3],
        Err(OpFailure::Refused(OpError::Overflow { .. }))
    ));
    assert_eq!(results[4], Ok(2));
    let log = sim.log(0);
    assert_eq!(log.deltas.len(), 1, "one batch, one durable record");
    let batch = &log.deltas[0];
    assert_eq!(
        (batch.from, batch.to),
        (0, 2),
        "one version per counter touched"
    );
    drop(log);
    sim.converge_within(Duration::from_secs(5));
}

#[test]
fn state_learned_from_peers_is_logged_so_a_restart_needs_no_peer() {
    let mut sim = Sim::new(seed_or(33), Config::default(), Link::perfect());
    sim.run(&[Step::AddNodes(2)]);
    sim.ops(0, &[op("w", 7), op("v", -2)]);
    sim.converge_within(Duration::from_secs(5));
    assert!(
        sim.log(1).deltas.iter().any(|d| d.origin.node == "n0"),
        "node 1 logged nothing of what it learned from node 0"
    );
    sim.run(&[
        Step::Crash(0),
        Step::RestartDurable(1),
        Step::Run(Duration::from_millis(1)),
    ]);
    let state = sim.state(1).expect("up");
    assert_eq!((state.value("w"), state.value("v")), (7, -2));
}
