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
