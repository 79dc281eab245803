//! Property tests of idempotency keys at the CRDT level: three replicas accept keyed
//! increments (each key one logical operation, retried on any replica), exchange their
//! streams in any order with gaps and duplicates, or whole states, and resolve their
//! acceptances once stable. After every step every replica counts each key it holds
//! exactly once (never twice, never not at all), and once everything is exchanged every
//! replica counts every key once. A fourth replica only listens, and joins late as far
//! as stability knows (no member waits for it): it may lag, but never counts a key twice.
//! A replica may restart from a snapshot of itself at any step, which must change
//! nothing it reads or claims to know. Merging keyed state is commutative, associative
//! and idempotent. A fold made before the key is stable is caught by the same check.

use gctr::crdt::{LocalOp, OpKind, Origin, OriginDelta, PendingKey, Resolution, State};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const COUNTER: &str = "views";
const KEYS: usize = 5;
/// Replicas 0 to 2 accept and resolve keys; replica 3 only listens.
const REPLICAS: usize = 4;
const MEMBERS: usize = 3;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x6b65_7973),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// One step of a run.
#[derive(Clone, Debug)]
enum Step {
    /// A client sends key `k` (its logical operation) to replica `r`.
    Accept { r: usize, k: usize },
    /// One batch of `from`'s own stream (picked by `pick`) reaches `to`.
    Deliver { from: usize, to: usize, pick: usize },
    /// `to` merges `from`'s whole state (a full transfer or snapshot).
    Full { from: usize, to: usize },
    /// Replica `r` resolves what the rule lets it.
    Resolve { r: usize },
    /// Replica `r` restarts from a snapshot of itself.
    Restart { r: usize },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..3usize, 0..KEYS).prop_map(|(r, k)| Step::Accept { r, k }),
        (0..REPLICAS, 0..REPLICAS, any::<usize>()).prop_map(|(from, to, pick)| Step::Deliver {
            from,
            to,
            pick
        }),
        (0..REPLICAS, 0..REPLICAS).prop_map(|(from, to)| Step::Full { from, to }),
        (0..3usize).prop_map(|r| Step::Resolve { r }),
        (0..REPLICAS).prop_map(|r| Step::Restart { r }),
    ]
}

/// The amount of key `k`'s logical operation.
fn amount(k: usize) -> u64 {
    [3, 5, 7, 11, 13][k]
}

fn key(k: usize) -> String {
    format!("op-{k}")
}

/// When a replica may resolve: the rule under test.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// Once every replica holds every acceptance of the key (what the node core's
    /// stability view establishes from digests).
    Stable,
    /// As soon as the replica thinks it won: no stability (the broken fold).
    Eager,
}

struct Run {
    origins: Vec<Origin>,
    replicas: Vec<State>,
    /// Each replica's own batches, in order.
    streams: Vec<Vec<OriginDelta>>,
    /// Per replica, the keys it holds an acceptance of (by any acceptor).
    holds: Vec<BTreeMap<usize, BTreeSet<usize>>>,
    /// Per key, every replica that accepted it.
    accepted: BTreeMap<usize, BTreeSet<usize>>,
    /// What a restart changed, if it changed anything.
    restart_changed: Option<String>,
}

impl Run {
    fn new() -> Run {
        Run {
            origins: vec![
                Origin::new("a", 1),
                Origin::new("b", 1),
                Origin::new("c", 1),
                Origin::new("d", 1),
            ],
            replicas: vec![State::new(); REPLICAS],
            streams: vec![Vec::new(); REPLICAS],
            holds: vec![BTreeMap::new(); REPLICAS],
            accepted: BTreeMap::new(),
            restart_changed: None,
        }
    }

    fn key_index(key: &str) -> usize {
        key.trim_start_matches("op-").parse().expect("a test key")
    }

    fn merge(&mut self, to: usize, delta: &OriginDelta) {
        let acceptor = self
            .origins
            .iter()
            .position(|o| *o == delta.origin)
            .unwrap();
        for entry in &delta.entries {
            if let Some(a) = entry.acceptance() {
                self.holds[to]
                    .entry(Run::key_index(&a.key))
                    .or_default()
                    .insert(acceptor);
            }
        }
        self.replicas[to].apply_delta(delta);
    }

    fn commit(&mut self, r: usize, ops: &[LocalOp], folds: &[gctr::crdt::Fold]) {
        let batch = self.replicas[r].prepare_batch(&self.origins[r], ops, 0, folds);
        for (op, result) in ops.iter().zip(&batch.results) {
            assert!(result.is_ok(), "{op:?} refused: {result:?}");
        }
        if batch.is_empty() {
            return;
        }
        let delta = batch.delta.clone();
        self.merge(r, &delta);
        self.streams[r].push(delta);
    }

    fn step(&mut self, step: &Step, rule: Rule) {
        match *step {
            Step::Accept { r, k } => {
                if !self.holds[r].contains_key(&k) {
                    self.accepted.entry(k).or_default().insert(r);
                }
                let op = LocalOp {
                    counter: COUNTER.into(),
                    kind: OpKind::Increment,
                    amount: amount(k),
                    key: Some(key(k)),
                };
                self.commit(r, &[op], &[]);
            }
            Step::Deliver { from, to, pick } => {
                if !self.streams[from].is_empty() && from != to {
                    let delta = self.streams[from][pick % self.streams[from].len()].clone();
                    self.merge(to, &delta);
                }
            }
            Step::Full { from, to } => {
                if from != to {
                    for delta in self.replicas[from].to_deltas() {
                        self.merge(to, &delta);
                    }
                }
            }
            Step::Resolve { r } => {
                let folds = self.replicas[r]
                    .plan_folds(&self.origins[r], |pending| self.decide(r, pending, rule));
                self.commit(r, &[], &folds);
            }
            Step::Restart { r } => {
                let before = &self.replicas[r];
                let mut restored = State::new();
                for delta in before.to_deltas() {
                    restored.apply_delta(&delta);
                }
                let read = |s: &State| (s.value(COUNTER), s.digest(), s.unresolved_acceptances());
                if read(&restored) != read(before) {
                    self.restart_changed = Some(format!(
                        "replica {r} read {:?} before a restart from its snapshot, {:?} after",
                        read(before),
                        read(&restored)
                    ));
                }
                self.replicas[r] = restored;
            }
        }
    }

    /// The rule's decision for replica `r`'s acceptance of a key.
    fn decide(&self, r: usize, pending: &PendingKey, rule: Rule) -> Resolution {
        let me = &self.origins[r];
        if rule == Rule::Eager {
            return if pending.winner == me {
                Resolution::Fold
            } else {
                Resolution::Pass
            };
        }
        if pending.resolved_elsewhere {
            return Resolution::Pass;
        }
        let k = Run::key_index(pending.key);
        let everywhere = &self.accepted[&k];
        let stable = self.holds[..MEMBERS]
            .iter()
            .all(|h| h.get(&k) == Some(everywhere));
        match (stable, pending.winner == me) {
            (true, true) => Resolution::Fold,
            _ => Resolution::Wait,
        }
    }

    /// What replica `r` must count: each key it holds an acceptance of, once.
    fn owed(&self, r: usize) -> i64 {
        self.holds[r].keys().map(|&k| amount(k) as i64).sum()
    }

    /// Members count exactly what they hold; the listener never more.
    fn check(&self) -> Result<(), String> {
        if let Some(changed) = &self.restart_changed {
            return Err(changed.clone());
        }
        for r in 0..REPLICAS {
            let (got, want) = (self.replicas[r].value(COUNTER), self.owed(r));
            if got > want || (r < MEMBERS && got != want) {
                return Err(format!(
                    "replica {r} counts {got}, but the keys it holds add up to {want}"
                ));
            }
        }
        Ok(())
    }

    /// Every replica merges every other's whole state, twice over.
    fn exchange_all(&mut self) {
        for _ in 0..2 {
            for from in 0..REPLICAS {
                for to in 0..REPLICAS {
                    self.step(&Step::Full { from, to }, Rule::Stable);
                }
            }
        }
    }
}

/// Runs `steps` under `rule`, checking every replica after each; then exchanges
/// everything, resolves until nothing is left, and checks again.
fn run(steps: &[Step], rule: Rule) -> Result<Run, String> {
    let mut run = Run::new();
    for step in steps {
        run.step(step, rule);
        run.check().map_err(|e| format!("after {step:?}: {e}"))?;
    }
    for _ in 0..4 {
        run.exchange_all();
        for r in 0..3 {
            run.step(&Step::Resolve { r }, rule);
        }
        run.check().map_err(|e| format!("while settling: {e}"))?;
    }
    run.exchange_all();
    run.check()?;
    Ok(run)
}

proptest! {
    #![proptest_config(config(400))]

    #[test]
    fn every_replica_counts_each_key_it_holds_once_at_every_step(
        steps in prop::collection::vec(step(), 1..60)
    ) {
        let run = run(&steps, Rule::Stable).map_err(TestCaseError::fail)?;
        let all: i64 = run.accepted.keys().map(|&k| amount(k) as i64).sum();
        for r in 0..REPLICAS {
            prop_assert_eq!(run.replicas[r].value(COUNTER), all);
            prop_assert_eq!(run.replicas[r].unresolved_acceptances(), 0,
                "every acceptance is resolved once everything is exchanged");
            prop_assert_eq!(run.replicas[r].key_count(), run.accepted.len(),
                "resolved keys stay as tombstones within their window");
        }
    }

    #[test]
    fn keyed_merge_is_commutative_associative_and_idempotent(
        steps in prop::collection::vec(step(), 1..40)
    ) {
        let run = run(&steps, Rule::Stable).map_err(TestCaseError::fail)?;
        let [a, b, c] = [0, 1, 3].map(|r| run.replicas[r].clone());
        let merged = |parts: &[&State]| {
            let mut s = State::new();
            for p in parts {
                for d in p.to_deltas() {
                    s.apply_delta(&d);
                }
            }
            (s.value(COUNTER), s.key_count(), s.digest())
        };
        let abc = merged(&[&a, &b, &c]);
        prop_assert_eq!(&abc, &merged(&[&c, &b, &a]));
        prop_assert_eq!(&abc, &merged(&[&b, &a, &c, &a, &b]));
        prop_assert_eq!(&abc, &merged(&[&a, &a, &b, &c, &c]));
    }
}

#[test]
fn the_check_catches_a_fold_made_before_the_key_is_stable() {
    // a and b both accept key 0 before hearing of each other (a retry that crossed a
    // partition); each resolves at once as if it had won.
    let steps = [
        Step::Accept { r: 0, k: 0 },
        Step::Accept { r: 1, k: 0 },
        Step::Resolve { r: 0 },
        Step::Resolve { r: 1 },
        Step::Full { from: 0, to: 2 },
        Step::Full { from: 1, to: 2 },
    ];
    let err = run(&steps, Rule::Eager)
        .err()
        .expect("an eager fold double-counts");
    assert!(
        err.contains("counts 6, but the keys it holds add up to 3"),
        "{err}"
    );
    run(&steps, Rule::Stable).expect("the same steps under the stability rule");
}
