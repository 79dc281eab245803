//! Idempotency keys around restarts, in the simulator: a node that lost its data takes
//! keys only once it has caught up, so retries of keys folded before never count again;
//! a node restarted on its log while cut off resolves nothing it cannot be sure of; and a
//! catch-up split over many frames, in any order, counts every key once.

mod sim;

use gctr::crdt::{LocalOp, OpKind};
use gctr::engine::{Config, MIN_PAYLOAD};
use sim::{seed_or, Link, Sim, Step};
use std::time::Duration;

const KEYS: usize = 200;

fn keyed(k: usize) -> LocalOp {
    LocalOp {
        counter: "c".into(),
        kind: OpKind::Increment,
        amount: 1,
        key: Some(format!("order-{k:04}")),
    }
}

/// Three nodes with membership over small frames (a SynAck carries a few keys); node
/// `writer` takes `KEYS` keyed increments, and every node folds them; then node
/// `fresh` loses its data and starts again under a new incarnation, keys held back
/// until it has caught up.
fn cluster_with_folded_keys(seed: u64, writer: usize, fresh: usize) -> Sim {
    let config = Config {
        max_payload: MIN_PAYLOAD,
        ..Config::default()
    };
    let members = gctr::membership::Config::default();
    let mut sim = Sim::with_membership(seed, config, members, Link::perfect());
    sim.run(&[Step::AddNodes(3)]);
    sim.membership_whole_within(Duration::from_secs(60));
    // Ready for keys once every member has shown it knows the writer.
    let deadline = sim.now() + Duration::from_secs(30);
    while !sim.core(writer).unwrap().key_stats().ready {
        assert!(
            sim.now() < deadline,
            "{}",
            sim.fail("the writer never ready")
        );
        sim.run_for(Duration::from_millis(1));
    }
    let ops: Vec<LocalOp> = (0..KEYS).map(keyed).collect();
    sim.ops(writer, &ops);
    sim.converge_within(Duration::from_secs(60));
    let deadline = sim.now() + Duration::from_secs(60);
    while (0..3).any(|i| sim.state(i).unwrap().unresolved_acceptances() > 0) {
        assert!(sim.now() < deadline, "{}", sim.fail("keys never folded"));
        sim.run_for(Duration::from_millis(10));
    }
    sim.restart_fresh(fresh);
    sim
}

/// Retries every key on node `i` once it says it is ready; returns how many it accepted
/// anew (each a second acceptance of an operation the cluster already counted) and
/// how many keys it held then.
fn retry_everything_once_ready(sim: &mut Sim, i: usize) -> (u64, usize) {
    let deadline = sim.now() + Duration::from_secs(30);
    while !sim.core(i).unwrap().key_stats().ready {
        assert!(sim.now() < deadline, "{}", sim.fail("the node never ready"));
        sim.run_for(Duration::from_millis(1));
    }
    let held = sim.state(i).unwrap().key_count();
    let ops: Vec<LocalOp> = (0..KEYS).map(keyed).collect();
    let results = sim.try_uncounted(i, &ops);
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    (sim.core(i).unwrap().key_stats().accepted, held)
}

/// A node that lost its data is not ready for keys before it has caught up with a
/// member (at its start it knows no member at all): once ready, every retry of a key
/// folded before is recognised.
#[test]
fn a_fresh_node_is_not_ready_for_keys_before_it_has_heard_from_any_member() {
    let mut sim = cluster_with_folded_keys(seed_or(1818), 0, 2);
    let (accepted, held) = retry_everything_once_ready(&mut sim, 2);
    assert_eq!(
        accepted, 0,
        "node 2 said it was ready holding {held} of {KEYS} keys, and accepted {accepted} \
         retries of folded keys anew"
    );
}

/// The same fresh start seen from a member all along: the keys were accepted and folded
/// by node 2, node 1 starts fresh and gets every key again as soon as it takes keys.
/// Node 0 never reads more than the operations acknowledged (a node that knows no
/// member must neither take keys as new nor resolve them as their only acceptor).
#[test]
fn a_member_all_along_never_reads_a_folded_key_twice_after_another_node_starts_fresh() {
    let mut sim = cluster_with_folded_keys(seed_or(1818), 2, 1);
    let expected = sim.expected()["c"];
    let (accepted, _) = retry_everything_once_ready(&mut sim, 1);
    let mut highest = i64::MIN;
    let until = sim.now() + Duration::from_secs(10);
    while sim.now() < until {
        highest = highest.max(sim.state(0).unwrap().value("c"));
        sim.run_for(Duration::from_millis(5));
    }
    let settled = sim.state(0).unwrap().value("c");
    assert_eq!(
        (highest, settled),
        (expected, expected),
        "node 0 read up to {highest} for {expected} operations acknowledged \
         (node 1 accepted {accepted} retries anew), then {settled}"
    );
}

/// A node restarted on its log during a partition knows no member until it reaches
/// one (the fence holds writes for `--fence-timeout`, 5 s, not beyond). Its acceptance
/// of `k` lost to node 0's, which it holds. It must not pass over it meanwhile: once
/// healed, node 0 would take that pass for a fold and pass too, and the acknowledged
/// operation would count nowhere. It waits; node 0 folds; it passes; `k` counts once.
#[test]
fn a_node_restarted_alone_in_a_partition_does_not_pass_over_a_live_winner() {
    let members = gctr::membership::Config::default();
    let mut sim = Sim::with_membership(seed_or(1819), Config::default(), members, Link::perfect());
    sim.run(&[Step::AddNodes(3)]);
    sim.membership_whole_within(Duration::from_secs(60));
    // Nodes that started empty take keys once they caught up with a member.
    let deadline = sim.now() + Duration::from_secs(10);
    while (0..3).any(|i| !sim.core(i).unwrap().key_stats().ready) {
        assert!(sim.now() < deadline, "{}", sim.fail("never ready for keys"));
        sim.run_for(Duration::from_millis(10));
    }
    let op = |amount| LocalOp { amount, ..keyed(7) };
    // k is accepted on both sides of a partition: node 0 first (acknowledged), then a
    // retry on node 1.
    sim.run(&[Step::Partition(vec![vec![0], vec![1, 2]])]);
    sim.ops(0, &[op(5)]);
    let retry = sim.try_uncounted(1, &[op(5)]);
    assert!(retry[0].is_ok(), "{retry:?}");
    // Nodes 0 and 1 swap acceptances; node 2 has not shown node 0's, so neither resolves.
    sim.run(&[
        Step::Partition(vec![vec![0, 1], vec![2]]),
        Step::Run(Duration::from_secs(2)),
    ]);
    for i in [0, 1] {
        let state = sim.state(i).unwrap();
        assert_eq!((state.value("c"), state.unresolved_acceptances()), (5, 2));
    }
    // Node 1 restarts on its log, cut off from everyone, fenced as `gctr node` is
    // (node 0 stays cut off from node 2, so it cannot fold meanwhile).
    sim.run(&[Step::Partition(vec![vec![0], vec![1], vec![2]])]);
    let log = sim.log(1).deltas.clone();
    sim.restore_backup(1, log, Duration::from_secs(5));
    sim.run(&[Step::Run(Duration::from_secs(10)), Step::Heal]);
    let deadline = sim.now() + Duration::from_secs(60);
    while (0..3).any(|i| sim.state(i).unwrap().unresolved_acceptances() > 0) {
        assert!(sim.now() < deadline, "{}", sim.fail("k never resolved"));
        sim.run_for(Duration::from_millis(10));
    }
    let values: Vec<i64> = (0..3).map(|i| sim.state(i).unwrap().value("c")).collect();
    assert_eq!(
        values,
        vec![5; 3],
        "every acceptance of k resolved, none folded: the acknowledged 5 counts nowhere"
    );
}

/// A catch-up split over many frames, delivered in any order, with duplicates, never
/// counts a key twice or a folded key not at all — a
/// frame carrying a fold ledger merges it only when the acceptances it resolves are here
/// — and once every frame has arrived the value is exact. Half of 200 keys are folded, so
/// the frames carry acceptances, the fold ledger and the keys accepted after the fold.
#[test]
fn a_catch_up_split_over_frames_counts_every_key_once_in_any_order() {
    use gctr::codec::Frame;
    use gctr::crdt::{Resolution, State};
    use gctr::engine::{Engine, Output};
    use gctr::member::NodeName;
    let small = Config {
        max_payload: MIN_PAYLOAD,
        ..Config::default()
    };
    let p = gctr::crdt::Origin::new("p", 1);
    let mut state = State::new();
    let first: Vec<LocalOp> = (0..100).map(keyed).collect();
    state.apply_local(&state.prepare_batch(&p, &first, 0, &[]));
    let folds = state.plan_folds(&p, |_| Resolution::Fold);
    let later: Vec<LocalOp> = (100..KEYS).map(keyed).collect();
    state.apply_local(&state.prepare_batch(&p, &later, 0, &folds));
    assert_eq!(
        (state.value("c"), state.unresolved_acceptances()),
        (200, 100)
    );
    let r_name = NodeName::new("r").unwrap();
    let p_name = NodeName::new("p").unwrap();
    let mut peer = Engine::new(p, small.clone(), state, 1, Duration::ZERO);
    peer.set_peers([r_name.clone()]);
    peer.handle_frame(Duration::ZERO, &r_name, Frame::Syn { digest: Vec::new() });
    let frames: Vec<Frame> = peer
        .drain_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::Send { frame, .. } => Some(frame),
            _ => None,
        })
        .collect();
    assert!(frames.len() > 4, "{} frames", frames.len());
    let mut rng = fastrand::Rng::with_seed(seed_or(18));
    for _ in 0..200 {
        let mut order: Vec<usize> = (0..frames.len()).collect();
        order.extend((0..frames.len()).filter(|_| rng.bool()));
        rng.shuffle(&mut order);
        let me = gctr::crdt::Origin::new("r", 1);
        let mut r = Engine::new(me, small.clone(), State::new(), 2, Duration::ZERO);
        r.set_peers([p_name.clone()]);
        for &i in &order {
            r.handle_frame(Duration::ZERO, &p_name, frames[i].clone());
            let state = r.state();
            let value = state.value("c");
            let held = state.key_count() as i64;
            let folded = value - state.unresolved_acceptances() as i64;
            assert!(
                value <= held && (folded == 0 || folded == 100),
                "order {order:?}: {value} with {held} keys held, {folded} by the fold"
            );
        }
        assert_eq!(r.state().value("c"), 200, "order {order:?}");
        // A ledger left out (it came before the acceptances it resolves) comes again
        // with the next pull.
        let digest = r.state().digest();
        peer.handle_frame(Duration::ZERO, &r_name, Frame::Syn { digest });
        for o in peer.drain_outputs() {
            if let Output::Send { frame, .. } = o {
                r.handle_frame(Duration::ZERO, &p_name, frame);
            }
        }
        let state = r.state();
        assert_eq!(
            (state.value("c"), state.unresolved_acceptances()),
            (200, 100),
            "order {order:?}"
        );
    }
}
