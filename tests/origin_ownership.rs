//! Only a node writes under its own origin, and versions stay bounded.
//!
//! - Versions stop at `MAX_VERSION`: a batch that would pass it is refused whole, and
//!   nothing wraps. `scripts/test.sh` also runs this file with `--release`, where integer
//!   overflow is not checked, so a wrap would show as a wrong value rather than a panic.
//! - A peer's delta or digest that claims a node's own origin beyond what it wrote is
//!   never merged; the engine reports it, and the node core answers by writing under a
//!   new incarnation, losing nothing.
//! - A node restored from an older copy of its log is fenced: it refuses writes until a
//!   live member's digest shows its origin ahead, takes a new incarnation, and every
//!   acknowledged increment is counted exactly once.

mod sim;

use gctr::codec::Frame;
use gctr::crdt::{
    CounterEntry, LocalOp, OpError, OpKind, Origin, OriginDelta, OriginVersion, State, MAX_TOTAL,
    MAX_VERSION,
};
use gctr::engine::{Config, Engine, Output};
use gctr::member::NodeName;
use gctr::node_core::{Effect, MemoryStorage, NodeCore, OpFailure, OpRequest};
use sim::{seed_or, Link, Sim, Step};
use std::time::Duration;

fn inc(counter: &str, amount: u64) -> LocalOp {
    LocalOp {
        counter: counter.into(),
        kind: OpKind::Increment,
        amount,
        key: None,
    }
}

fn name(s: &str) -> NodeName {
    NodeName::new(s).unwrap()
}

fn own_delta(origin: &Origin, from: u64, to: u64, entries: &[(&str, u64, u64)]) -> OriginDelta {
    OriginDelta {
        origin: origin.clone(),
        from,
        to,
        entries: entries
            .iter()
            .map(|&(counter, p, version)| CounterEntry {
                counter: counter.into(),
                p,
                n: 0,
                version,
                keyed: None,
            })
            .collect(),
    }
}

#[test]
fn versions_stop_at_the_bound_and_a_batch_that_would_pass_it_is_refused_whole() {
    let me = Origin::new("a", 1);
    let mut state = State::new();
    // This origin has reached one below the bound (as far as this replica knows).
    state.apply_delta(&own_delta(
        &me,
        0,
        MAX_VERSION - 1,
        &[("x", 5, MAX_VERSION - 1)],
    ));
    assert_eq!(state.known(&me), MAX_VERSION - 1);

    // Two counters need two versions: one too many. Nothing of the batch applies.
    let batch = state.prepare_local(&me, &[inc("x", 1), inc("y", 1)]);
    assert!(batch.is_empty());
    assert_eq!(
        batch.results,
        vec![
            Err(OpError::VersionsExhausted),
            Err(OpError::VersionsExhausted)
        ]
    );

    // One counter takes the last version there is.
    let batch = state.prepare_local(&me, &[inc("x", 2), inc("x", 3)]);
    assert_eq!(batch.results, vec![Ok(7), Ok(10)]);
    assert_eq!(
        (batch.delta.from, batch.delta.to),
        (MAX_VERSION - 1, MAX_VERSION)
    );
    state.apply_local(&batch);
    assert_eq!(state.known(&me), MAX_VERSION);
    assert_eq!(state.value("x"), 10);

    // Then every write is refused and the state stays as it was.
    let batch = state.prepare_local(&me, &[inc("x", 1)]);
    assert_eq!(batch.results, vec![Err(OpError::VersionsExhausted)]);
    assert!(batch.is_empty());
    assert_eq!(state.value("x"), 10);
    assert!(state.entries_after(&me, MAX_VERSION).is_empty());
}

#[test]
fn totals_at_the_bound_merge_and_the_value_stays_in_range() {
    let mut state = State::new();
    for node in ["a", "b"] {
        state.apply_delta(&own_delta(
            &Origin::new(node, 1),
            0,
            1,
            &[("x", MAX_TOTAL, 1)],
        ));
    }
    assert_eq!(
        state.value("x"),
        i64::MAX,
        "the sum saturates, it does not wrap"
    );
    let refused = state.prepare_local(&Origin::new("c", 1), &[inc("x", 1)]);
    assert!(matches!(refused.results[0], Err(OpError::Overflow { .. })));
}

fn engine(me: &Origin, peers: &[&str]) -> Engine {
    let mut e = Engine::new(
        me.clone(),
        Config::default(),
        State::new(),
        7,
        Duration::ZERO,
    );
    e.set_peers(peers.iter().map(|p| name(p)));
    e
}

fn claims(e: &mut Engine) -> Vec<(String, u64, u64)> {
    e.drain_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::OwnOriginAhead { from, claimed, own } => Some((from.to_string(), claimed, own)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_peer_can_neither_raise_nor_advance_a_nodes_own_origin() {
    let me = Origin::new("a", 1);
    let mut e = engine(&me, &["b"]);
    let batch = e.prepare_local(&[inc("x", 1)], 0, &[]);
    e.apply_local(Duration::ZERO, &batch);
    e.drain_outputs();
    let now = Duration::from_millis(1);

    // The attack measured on the old main: a range end at the top, which stopped the
    // node's own writes from ever replicating.
    let far = own_delta(
        &me,
        0,
        MAX_VERSION,
        &[("x", 1_000_000_000_000_000, MAX_VERSION)],
    );
    e.handle_frame(now, &name("b"), Frame::Push { delta: vec![far] });
    // Larger totals at a version the node did write.
    let larger = own_delta(&me, 0, 1, &[("x", 50, 1)]);
    e.handle_frame(
        now,
        &name("b"),
        Frame::Delta {
            delta: vec![larger],
        },
    );
    // A digest that says the peer knows more of this origin than it wrote.
    let digest = vec![OriginVersion {
        origin: me.clone(),
        version: 9,
    }];
    e.handle_frame(now, &name("b"), Frame::Syn { digest });
    assert_eq!(
        claims(&mut e),
        vec![
            ("b".into(), MAX_VERSION, 1),
            ("b".into(), 1, 1),
            ("b".into(), 9, 1)
        ]
    );
    assert_eq!(e.stats().own_origin_claims, 3);
    assert_eq!(e.state().value("x"), 1);
    assert_eq!(e.state().known(&me), 1);

    // An echo of what the node wrote is no claim, and its next write follows on.
    let echo = own_delta(&me, 0, 1, &[("x", 1, 1)]);
    e.handle_frame(now, &name("b"), Frame::Push { delta: vec![echo] });
    assert!(claims(&mut e).is_empty());
    let batch = e.prepare_local(&[inc("x", 1)], 0, &[]);
    assert_eq!((batch.delta.from, batch.delta.to), (1, 2));
}

#[test]
fn an_echo_of_a_nodes_keyed_writes_is_no_claim_but_an_acceptance_it_never_made_is() {
    let me = Origin::new("a", 1);
    let mut e = engine(&me, &["b"]);
    let mut keyed = inc("x", 3);
    keyed.key = Some("k".into());
    let batch = e.prepare_local(&[keyed], 0, &[]);
    e.apply_local(Duration::ZERO, &batch);
    e.drain_outputs();
    let now = Duration::from_millis(1);
    let echo = batch.delta.clone();
    e.handle_frame(now, &name("b"), Frame::Push { delta: vec![echo] });
    assert!(
        claims(&mut e).is_empty(),
        "the acceptance is the node's own"
    );
    let mut forged = batch.delta;
    forged.entries[0].version = 2;
    forged.to = 2;
    e.handle_frame(
        now,
        &name("b"),
        Frame::Push {
            delta: vec![forged],
        },
    );
    assert_eq!(claims(&mut e), vec![("b".into(), 2, 1)]);
    assert_eq!((e.state().value("x"), e.state().key_count()), (3, 1));
}

#[test]
fn a_claim_on_a_nodes_origin_makes_it_write_under_a_new_incarnation_and_keep_everything() {
    let me = Origin::new("a", 1);
    let mut core: NodeCore<u32> = NodeCore::new(engine(&me, &["b"]), Box::new(MemoryStorage));
    let commit = |core: &mut NodeCore<u32>, amount: u64| {
        core.commit(
            Duration::ZERO,
            [OpRequest {
                op: inc("x", amount),
                reply: 0,
            }],
        );
        core.take_effects()
            .into_iter()
            .find_map(|e| match e {
                Effect::Reply { result, .. } => Some(result),
                _ => None,
            })
            .expect("an answer")
    };
    assert_eq!(commit(&mut core, 2), Ok(2));

    let claim = own_delta(&me, 0, 40, &[("x", 90, 40)]);
    core.handle_frame(
        Duration::ZERO,
        &name("b"),
        Frame::Push { delta: vec![claim] },
    );
    let renewed: Vec<Origin> = core
        .take_effects()
        .into_iter()
        .filter_map(|e| match e {
            Effect::NewIncarnation(o) => Some(o),
            _ => None,
        })
        .collect();
    assert_eq!(renewed.len(), 1);
    let new = &renewed[0];
    assert_eq!(new.node, "a");
    assert_ne!(new.incarnation, me.incarnation);
    assert_eq!(core.origin(), new);
    assert_eq!(core.guard_status().new_incarnations, 1);

    // The old origin's 2 stays; new writes go under the new one.
    assert_eq!(commit(&mut core, 3), Ok(5));
    let totals: Vec<(Origin, u64)> = core
        .state()
        .counter_totals("x")
        .into_iter()
        .map(|(o, t)| (o, t.p))
        .collect();
    assert_eq!(totals.len(), 2);
    assert!(totals.contains(&(me.clone(), 2)));
    assert!(totals.contains(&(new.clone(), 3)));

    // The old origin is an ordinary one now: what the other writer holds of it merges.
    let later = own_delta(&me, 0, 40, &[("x", 90, 40)]);
    core.handle_frame(
        Duration::ZERO,
        &name("b"),
        Frame::Push { delta: vec![later] },
    );
    assert_eq!(core.state().value("x"), 93);
    assert_eq!(core.guard_status().new_incarnations, 1);
}

fn membership_config() -> gctr::membership::Config {
    gctr::membership::Config::default()
}

#[test]
fn a_node_restored_from_an_old_copy_of_its_log_is_fenced_then_loses_nothing() {
    let mut sim = Sim::with_membership(
        seed_or(61),
        Config::default(),
        membership_config(),
        Link::perfect(),
    );
    sim.run(&[Step::AddNodes(3)]);
    sim.membership_whole_within(Duration::from_secs(10));
    sim.op(0, "a", 5);
    sim.converge_within(Duration::from_secs(5));
    let backup = sim.log(0).deltas.clone();
    let before = sim.core(0).expect("up").origin().clone();
    sim.op(0, "a", 7);
    sim.op(0, "b", 1);
    sim.converge_within(Duration::from_secs(5));

    sim.restore_backup(0, backup, Duration::from_secs(30));
    let held = sim.try_ops(0, &[inc("a", 100)]);
    assert!(
        matches!(&held[0], Err(OpFailure::Unavailable(why)) if why.starts_with("starting")),
        "{held:?}"
    );
    // A member's digest shows the node's origin ahead of the restored log: the node takes
    // a new incarnation and opens, long before the fence's timeout.
    let mut waited = Duration::ZERO;
    while !sim.core(0).expect("up").guard_status().writable {
        assert!(
            waited < Duration::from_secs(5),
            "{}",
            sim.fail("still fenced")
        );
        sim.run_for(Duration::from_millis(10));
        waited += Duration::from_millis(10);
    }
    let after = sim.core(0).expect("up").origin().clone();
    assert_ne!(
        after, before,
        "writes would reuse versions the peers already hold"
    );
    assert_eq!(sim.core(0).expect("up").guard_status().new_incarnations, 1);

    sim.op(0, "a", 1);
    sim.op(1, "b", 2);
    sim.converge_within(Duration::from_secs(10));
    assert_eq!(sim.expected()["a"], 13);
    assert_eq!(sim.expected()["b"], 3);

    // A restart resumes under the new incarnation (its storage recorded it).
    sim.run(&[Step::RestartDurable(0)]);
    assert_eq!(sim.core(0).expect("up").origin(), &after);
    sim.op(0, "a", 1);
    sim.converge_within(Duration::from_secs(10));
}
