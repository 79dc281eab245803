//! The core over a storage that leaves each batch pending: what it hands the storage,
//! in which order, and when it answers.

use super::*;
use crate::crdt::OpKind;
use crate::engine::Config;
use std::sync::{Arc, Mutex};

/// What the storage was asked, in order.
#[derive(Debug, PartialEq, Eq)]
enum Call {
    Commit(u64),
    Turn { counter_total: i64 },
}

struct PendingStorage(Arc<Mutex<Vec<Call>>>);

impl Storage for PendingStorage {
    fn commit_local(&mut self, _delta: &OriginDelta) -> io::Result<()> {
        unreachable!("the core starts commits, it does not wait for them")
    }

    fn start_commit(&mut self, delta: &OriginDelta) -> CommitStarted {
        let total = delta.entries.iter().map(|e| e.p).sum();
        self.0.lock().unwrap().push(Call::Commit(total));
        CommitStarted::Pending
    }

    fn log_learned(&mut self, _deltas: &[OriginDelta]) -> io::Result<()> {
        Ok(())
    }

    fn after_turn(&mut self, state: &State) -> io::Result<()> {
        let counter_total = state.value("c");
        self.0.lock().unwrap().push(Call::Turn { counter_total });
        Ok(())
    }

    fn renew_incarnation(&mut self, current: &Origin, _reason: String) -> io::Result<Origin> {
        Ok(fresh_incarnation(current))
    }

    fn status(&self) -> StorageStatus {
        StorageStatus::MEMORY
    }

    fn close(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn increment(by: u64, reply: u32) -> OpRequest<u32> {
    OpRequest {
        op: LocalOp {
            counter: "c".into(),
            kind: OpKind::Increment,
            amount: by,
            key: None,
        },
        reply,
    }
}

fn answers(core: &mut NodeCore<u32>) -> Vec<(u32, OpResult)> {
    core.take_effects()
        .into_iter()
        .filter_map(|e| match e {
            Effect::Reply { to, result } => Some((to, result)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_pending_batch_is_applied_and_answered_on_its_outcome_and_the_storage_settles_before_the_next()
{
    let calls = Arc::new(Mutex::new(Vec::new()));
    let me = Origin::new("a", 1);
    let engine = Engine::new(me, Config::default(), State::default(), 1, Duration::ZERO);
    let mut core = NodeCore::new(engine, Box::new(PendingStorage(calls.clone())));
    let now = Duration::from_millis(1);

    core.commit(now, [increment(2, 1)]);
    assert!(core.commit_pending());
    core.commit(now, [increment(3, 2), increment(4, 3)]);
    core.settle();
    assert!(answers(&mut core).is_empty(), "answered before durable");
    assert_eq!(core.state().value("c"), 0, "applied before durable");

    core.commit_finished(now, Ok(()));
    assert_eq!(answers(&mut core), vec![(1, Ok(2))]);
    assert_eq!(core.state().value("c"), 2);
    core.commit_finished(now, Err(io::Error::other("disk gone")));
    let failed = answers(&mut core);
    assert_eq!(failed.len(), 2);
    assert!(failed
        .iter()
        .all(|(_, r)| matches!(r, Err(OpFailure::Storage(_)))));
    assert_eq!(core.state().value("c"), 2, "a failed batch applies nothing");
    assert!(!core.commit_pending());

    // The storage's turn comes between the first outcome and the second batch, with the
    // first batch applied: the only moment it can snapshot while writes keep coming.
    // (A delta carries absolute totals: the second batch takes c to 2 + 3 + 4.)
    assert_eq!(
        *calls.lock().unwrap(),
        vec![
            Call::Commit(2),
            Call::Turn { counter_total: 2 },
            Call::Commit(9),
        ]
    );
}

/// The membership of node `n` (incarnation 2) that knows `p` (incarnation 1) alive,
/// from p's full membership, which did not list `n` yet.
fn membership_of_n_knowing_p(n_name: &NodeName, p_name: &NodeName) -> Membership {
    let member = |name: &NodeName, incarnation| crate::member::Member {
        name: name.clone(),
        incarnation,
        started_at: 1,
        gossip_addr: format!("{name}:9000"),
        http_addr: String::new(),
    };
    let mut membership = Membership::new(
        member(n_name, 2),
        membership::Config::default(),
        Vec::new(),
        1,
        Duration::ZERO,
    );
    membership.handle_message(
        Duration::ZERO,
        &format!("{p_name}:9000"),
        membership::Message::Full {
            from: p_name.clone(),
            want_reply: false,
            members: vec![membership::Update {
                member: member(p_name, 1),
                liveness: 0,
                state: membership::State::Alive,
                by: p_name.clone(),
            }],
        },
    );
    assert!(membership.has_synced() && !membership.is_known_by(p_name));
    membership
}

/// Frame by frame: a node started without state, knowing one member `p`, pulls from it;
/// `p` answers with a SynAck carrying the first frame of what the node lacks and Delta
/// frames with the rest. With only the SynAck here (the Deltas lost, late, or dropped
/// from a full queue) the node is not ready for keys: a retry of a key in the missing
/// frames is refused, not accepted anew.
#[test]
fn a_fresh_node_is_not_ready_for_keys_after_only_the_first_frame_of_its_catch_up() {
    use crate::codec::Frame;
    use crate::engine::{Output, MIN_PAYLOAD};
    let keyed = |k: usize| LocalOp {
        counter: "c".into(),
        kind: OpKind::Increment,
        amount: 1,
        key: Some(format!("order-{k:04}")),
    };
    let small = Config {
        max_payload: MIN_PAYLOAD,
        ..Config::default()
    };
    let n_name = NodeName::new("n").unwrap();
    let p_name = NodeName::new("p").unwrap();
    let p_origin = Origin::new("p", 1);
    let mut p_state = State::new();
    let ops: Vec<LocalOp> = (0..40).map(keyed).collect();
    p_state.apply_local(&p_state.prepare_batch(&p_origin, &ops, 0, &[]));
    let mut peer = Engine::new(p_origin, small.clone(), p_state, 1, Duration::ZERO);
    peer.set_peers([n_name.clone()]);

    let membership = membership_of_n_knowing_p(&n_name, &p_name);
    let engine = Engine::new(Origin::new("n", 2), small, State::new(), 2, Duration::ZERO);
    let mut core: NodeCore<u32> = NodeCore::new(engine, Box::new(MemoryStorage))
        .with_membership(membership)
        .with_keys(DEFAULT_KEY_WINDOW, 0, KeyStart::Joining);
    assert_eq!(core.members().count(), 2, "n knows p");
    assert!(!core.key_stats().ready);

    peer.handle_frame(Duration::ZERO, &n_name, Frame::Syn { digest: Vec::new() });
    let frames: Vec<Frame> = peer
        .drain_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::Send { frame, .. } => Some(frame),
            _ => None,
        })
        .collect();
    assert!(frames.len() > 1, "the catch-up takes several frames");
    let ack = frames
        .into_iter()
        .find(|f| matches!(f, Frame::SynAck { .. }))
        .unwrap();
    core.handle_frame(Duration::ZERO, &p_name, ack);
    let held = core.state().key_count();
    core.commit(
        Duration::ZERO,
        [OpRequest {
            op: keyed(39),
            reply: 0,
        }],
    );
    let stats = core.key_stats();
    assert_eq!(
        (stats.ready, stats.accepted, stats.not_ready),
        (false, 0, 1),
        "holding {held} of 40 keys, n took a retry of p's last key"
    );
}

/// A node that joined takes keys only once every live member has shown it knows it:
/// caught up with `p` through an answer to its own Syn, `n` still waits, for `p` may
/// not count it as a member yet and would then resolve keys without waiting on it; a
/// round `p` starts with it (or a probe by name) shows it does.
#[test]
fn a_joined_node_takes_keys_only_once_its_members_know_it() {
    use crate::codec::Frame;
    use crate::engine::Output;
    let n_name = NodeName::new("n").unwrap();
    let p_name = NodeName::new("p").unwrap();
    let p_origin = Origin::new("p", 1);
    let mut p_state = State::new();
    let plain = LocalOp {
        counter: "c".into(),
        kind: OpKind::Increment,
        amount: 3,
        key: None,
    };
    p_state.apply_local(&p_state.prepare_batch(&p_origin, &[plain], 0, &[]));
    let mut peer = Engine::new(p_origin, Config::default(), p_state, 1, Duration::ZERO);
    let membership = membership_of_n_knowing_p(&n_name, &p_name);
    let engine = Engine::new(
        Origin::new("n", 2),
        Config::default(),
        State::new(),
        2,
        Duration::ZERO,
    );
    let mut core: NodeCore<u32> = NodeCore::new(engine, Box::new(MemoryStorage))
        .with_membership(membership)
        .with_keys(DEFAULT_KEY_WINDOW, 0, KeyStart::Joining);

    // n's own Syn, answered by p: n now holds all p holds, and has p's digest.
    peer.handle_frame(Duration::ZERO, &n_name, Frame::Syn { digest: Vec::new() });
    for output in peer.drain_outputs() {
        if let Output::Send { frame, .. } = output {
            core.handle_frame(Duration::ZERO, &p_name, frame);
        }
    }
    assert_eq!(core.state().value("c"), 3, "caught up with p");
    assert!(!core.key_stats().ready, "p has not shown it knows n");

    let digest = peer.state().digest();
    core.handle_frame(Duration::ZERO, &p_name, Frame::Syn { digest });
    assert!(
        core.key_stats().ready,
        "p started a round with n: it counts n a member"
    );
}
