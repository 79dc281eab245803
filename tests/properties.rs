//! Property tests of the protocol core: merge is commutative, associative and
//! idempotent over random states; every frame type round-trips through the codec; and no
//! byte string — random, truncated, bit-flipped, with huge lengths or counts — panics
//! the decoder.

mod common;

use common::varint;
use gctr::codec::{self, CodecError, Frame, FrameType, HEADER_LEN, MAGIC, PROTOCOL_VERSION};
use gctr::crdt::{
    CounterEntry, LocalOp, OpKind, Origin, OriginDelta, OriginVersion, State, Totals, MAX_TOTAL,
    MAX_VERSION,
};
use gctr::engine::{Config, Engine, Output, MIN_PAYLOAD};
use gctr::member::NodeName;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::time::Duration;

const MAX: usize = codec::DEFAULT_MAX_PAYLOAD;

/// A fixed seed keeps every run the same (`PROPTEST_RNG_SEED` does not override it; edit
/// here to explore); failures are reported with their minimal input instead of being saved.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x6763_7472),
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn origins() -> Vec<Origin> {
    // Two incarnations of one node name among them: they must count as distinct origins.
    vec![
        Origin::new("a", 1),
        Origin::new("b", 2),
        Origin::new("c", 3),
        Origin::new("a", 4),
    ]
}

/// A random history: operations by several origins, each origin running its batches on
/// its own replica. Returns every delta those origins could have sent: each batch, and
/// a snapshot of the origin's state after every third batch.
fn history() -> impl Strategy<Value = Vec<OriginDelta>> {
    let op = (0..4usize, 0..5usize, any::<bool>(), 1..50u64, any::<bool>());
    prop::collection::vec(op, 1..40).prop_map(|ops| {
        let origins = origins();
        let mut replicas: Vec<State> = origins.iter().map(|_| State::new()).collect();
        let mut pending: Vec<Vec<LocalOp>> = origins.iter().map(|_| Vec::new()).collect();
        let mut batches = vec![0usize; origins.len()];
        let mut pool = Vec::new();
        for (who, counter, inc, amount, close) in ops {
            pending[who].push(LocalOp {
                // Long names, so a handful of entries fill a small frame.
                counter: format!("{}{counter}", "k".repeat(100)),
                kind: if inc {
                    OpKind::Increment
                } else {
                    OpKind::Decrement
                },
                amount,
                key: None,
            });
            if close {
                let ops = std::mem::take(&mut pending[who]);
                let batch = replicas[who].prepare_local(&origins[who], &ops);
                replicas[who].apply_local(&batch);
                pool.push(batch.delta);
                batches[who] += 1;
                if batches[who].is_multiple_of(3) {
                    pool.extend(replicas[who].to_deltas());
                }
            }
        }
        pool
    })
}

/// Random replicas built from a history: each receives some of its deltas, in some
/// order, some twice.
fn replicas(n: usize) -> impl Strategy<Value = (Vec<OriginDelta>, Vec<Vec<usize>>)> {
    history().prop_flat_map(move |pool| {
        let picks = prop::collection::vec(prop::collection::vec(any::<usize>(), 0..25), n);
        (Just(pool), picks)
    })
}

fn build(pool: &[OriginDelta], picks: &[usize]) -> State {
    let mut state = State::new();
    for &i in picks {
        if !pool.is_empty() {
            state.apply_delta(&pool[i % pool.len()]);
        }
    }
    state
}

/// Merges `other` into `into` the way a full transfer does.
fn merge(into: &State, other: &State) -> State {
    let mut merged = into.clone();
    for delta in other.to_deltas() {
        merged.apply_delta(&delta);
    }
    merged
}

/// What a state reports: values, per-origin totals of every counter, digest.
type View = (
    Vec<(String, i64)>,
    Vec<(String, Vec<(Origin, Totals)>)>,
    Vec<OriginVersion>,
);

fn view(state: &State) -> View {
    let values: Vec<(String, i64)> = state.values().map(|(c, v)| (c.to_owned(), v)).collect();
    let totals = values
        .iter()
        .map(|(c, _)| (c.clone(), state.counter_totals(c)))
        .collect();
    (values, totals, state.digest())
}

/// The value each counter must have after receiving `picks`: per (counter, origin) the
/// largest p and n among the entries received, summed. Computed without `State`.
fn oracle(pool: &[OriginDelta], picks: &[usize]) -> BTreeMap<String, i64> {
    let mut best: BTreeMap<(String, Origin), (u64, u64)> = BTreeMap::new();
    for &i in picks {
        let Some(delta) = pool.get(i % pool.len().max(1)) else {
            continue;
        };
        for e in &delta.entries {
            let slot = best
                .entry((e.counter.clone(), delta.origin.clone()))
                .or_default();
            slot.0 = slot.0.max(e.p);
            slot.1 = slot.1.max(e.n);
        }
    }
    let mut values = BTreeMap::new();
    for ((counter, _), (p, n)) in best {
        *values.entry(counter).or_insert(0i64) += p as i64 - n as i64;
    }
    values
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn applying_deltas_gives_the_per_field_maximum_in_any_order(
        (pool, picks) in replicas(1),
        shuffle in any::<u64>(),
    ) {
        let picks = &picks[0];
        let state = build(&pool, picks);
        let values: BTreeMap<String, i64> =
            state.values().map(|(c, v)| (c.to_owned(), v)).collect();
        prop_assert_eq!(&values, &oracle(&pool, picks));

        let mut reordered = picks.clone();
        fastrand::Rng::with_seed(shuffle).shuffle(&mut reordered);
        reordered.extend(picks.iter().take(5));
        let other = build(&pool, &reordered);
        prop_assert_eq!(view(&state).0, view(&other).0);
        prop_assert_eq!(view(&state).1, view(&other).1);
    }

    #[test]
    fn merge_is_commutative((pool, picks) in replicas(2)) {
        let a = build(&pool, &picks[0]);
        let b = build(&pool, &picks[1]);
        prop_assert_eq!(view(&merge(&a, &b)), view(&merge(&b, &a)));
    }

    #[test]
    fn merge_is_associative((pool, picks) in replicas(3)) {
        let a = build(&pool, &picks[0]);
        let b = build(&pool, &picks[1]);
        let c = build(&pool, &picks[2]);
        prop_assert_eq!(
            view(&merge(&merge(&a, &b), &c)),
            view(&merge(&a, &merge(&b, &c)))
        );
    }

    #[test]
    fn merge_is_idempotent((pool, picks) in replicas(2)) {
        let a = build(&pool, &picks[0]);
        let b = build(&pool, &picks[1]);
        prop_assert_eq!(view(&merge(&a, &a)), view(&a));
        let ab = merge(&a, &b);
        prop_assert_eq!(view(&merge(&ab, &b)), view(&ab));
        prop_assert_eq!(view(&merge(&ab, &a)), view(&ab));
    }

    #[test]
    fn merge_entry_agrees_with_apply_delta((pool, picks) in replicas(1)) {
        let by_delta = build(&pool, &picks[0]);
        let mut by_entry = State::new();
        for &i in picks[0].iter().filter(|_| !pool.is_empty()) {
            let delta = &pool[i % pool.len()];
            for e in &delta.entries {
                by_entry.merge_entry(
                    &delta.origin,
                    &e.counter,
                    Totals { p: e.p, n: e.n, version: e.version },
                );
            }
        }
        prop_assert_eq!(view(&by_delta).0, view(&by_entry).0);
        prop_assert_eq!(view(&by_delta).1, view(&by_entry).1);
    }

    /// Retiring changes how a replica holds an origin, never what it counts: a replica
    /// that retires every origin it can, at random points, reads what one that never
    /// retires reads after every delta, in any order, and ends with the same state to
    /// send. A late delta within a retirement is dropped; one past it undoes it.
    #[test]
    fn retiring_at_random_points_never_changes_a_value(
        (pool, picks) in replicas(1),
        retire_at in prop::collection::vec(any::<bool>(), 25),
    ) {
        let mut reference = State::new();
        let mut retiring = State::new();
        let origins = origins();
        for (step, &i) in picks[0].iter().enumerate().filter(|_| !pool.is_empty()) {
            let delta = &pool[i % pool.len()];
            reference.apply_delta(delta);
            retiring.apply_delta(delta);
            if retire_at[step % retire_at.len()] {
                for origin in &origins {
                    if let Some(version) = retiring.retirable_at(origin) {
                        prop_assert!(retiring.retire(origin, version));
                    }
                }
            }
            prop_assert_eq!(view(&retiring).0, view(&reference).0);
            prop_assert_eq!(retiring.digest(), reference.digest());
        }
        prop_assert_eq!(retiring.to_deltas(), reference.to_deltas());
        let stats = retiring.retire_stats();
        prop_assert_eq!(stats.done - stats.undone, stats.retired as u64);
        prop_assert_eq!(retiring.live_origin_count() + stats.retired, reference.origin_count());
    }
}

fn peer(name: &str) -> NodeName {
    NodeName::new(name).expect("a valid test name")
}

fn engine_with(state: State, max_payload: usize) -> Engine {
    let config = Config {
        max_payload,
        eager_push: false,
        ..Config::default()
    };
    Engine::new(Origin::new("z", 0), config, state, 1, Duration::ZERO)
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn anti_entropy_frames_fit_the_limit_and_carry_everything_the_peer_lacks(
        (pool, picks) in replicas(2),
        max_payload in MIN_PAYLOAD..2048,
        shuffle in any::<u64>(),
    ) {
        let a = build(&pool, &picks[0]);
        let b = build(&pool, &picks[1]);
        let mut sender = engine_with(a.clone(), max_payload);
        sender.handle_frame(Duration::ZERO, &peer("b"), Frame::Syn { digest: b.digest() });
        let mut frames = Vec::new();
        for output in sender.drain_outputs() {
            if let Output::Send { frame, .. } = output {
                let bytes = codec::encode(&frame);
                prop_assert_eq!(codec::decode(&bytes, max_payload), Ok(frame.clone()));
                frames.push(frame);
            }
        }
        let want = view(&merge(&b, &a));

        let mut in_order = engine_with(b.clone(), max_payload);
        for frame in frames.iter().cloned() {
            in_order.handle_frame(Duration::ZERO, &peer("a"), frame);
        }
        prop_assert_eq!(&view(in_order.state()).0, &want.0);
        prop_assert_eq!(&view(in_order.state()).1, &want.1);
        for ov in a.digest() {
            prop_assert!(in_order.state().known(&ov.origin) >= ov.version);
        }

        let mut shuffled = frames;
        fastrand::Rng::with_seed(shuffle).shuffle(&mut shuffled);
        let mut any_order = engine_with(b, max_payload);
        for frame in shuffled {
            any_order.handle_frame(Duration::ZERO, &peer("a"), frame);
        }
        prop_assert_eq!(&view(any_order.state()).0, &want.0);
    }
}

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9_.-]{1,12}|\\PC{1,20}"
}

fn origin() -> impl Strategy<Value = Origin> {
    (name(), any::<u64>()).prop_map(|(node, incarnation)| Origin { node, incarnation })
}

/// Any version a frame may carry, the bound included.
fn version() -> impl Strategy<Value = u64> {
    prop_oneof![0..=MAX_VERSION, Just(MAX_VERSION)]
}

/// Any total an entry may hold, the bound included.
fn total() -> impl Strategy<Value = u64> {
    prop_oneof![0..=MAX_TOTAL, Just(MAX_TOTAL)]
}

fn digest() -> impl Strategy<Value = Vec<OriginVersion>> {
    prop::collection::vec(
        (origin(), version()).prop_map(|(origin, version)| OriginVersion { origin, version }),
        0..6,
    )
}

fn deltas() -> impl Strategy<Value = Vec<OriginDelta>> {
    let entry =
        (name(), total(), total(), version()).prop_map(|(counter, p, n, version)| CounterEntry {
            counter,
            p,
            n,
            version,
            keyed: None,
        });
    let delta = (
        origin(),
        version(),
        version(),
        prop::collection::vec(entry, 0..6),
    )
        .prop_map(|(origin, a, b, entries)| OriginDelta {
            origin,
            from: a.min(b),
            to: a.max(b),
            entries,
        });
    prop::collection::vec(delta, 0..4)
}

fn frame() -> impl Strategy<Value = Frame> {
    prop_oneof![
        (name(), "\\PC{0,40}", "\\PC{0,40}").prop_map(|(name, gossip_addr, http_addr)| {
            Frame::Hello {
                name: peer(&name),
                gossip_addr,
                http_addr,
            }
        }),
        digest().prop_map(|digest| Frame::Syn { digest }),
        (digest(), deltas()).prop_map(|(digest, delta)| Frame::SynAck { digest, delta }),
        deltas().prop_map(|delta| Frame::Delta { delta }),
        deltas().prop_map(|delta| Frame::Push { delta }),
        digest().prop_map(|digest| Frame::Retired { digest }),
    ]
}

proptest! {
    #![proptest_config(config(128))]

    #[test]
    fn every_frame_type_round_trips(frame in frame()) {
        let bytes = codec::encode(&frame);
        prop_assert_eq!(bytes.len(), codec::encoded_len(&frame));
        prop_assert_eq!(codec::decode(&bytes, MAX), Ok(frame.clone()));
        let read = codec::read_frame(&mut bytes.as_slice(), MAX).expect("read_frame");
        prop_assert_eq!(read, frame);
    }

    #[test]
    fn a_version_or_total_past_its_bound_is_refused_at_decode(
        frame in frame(),
        pick in any::<usize>(),
        over in 1u64..=(u64::MAX - MAX_VERSION),
    ) {
        // Push one version above 2^62 or one total above i64::MAX, whichever `pick` lands on.
        let mut frame = frame;
        let mut fields: Vec<(&mut u64, u64)> = Vec::new();
        let (digest, deltas) = match &mut frame {
            Frame::Syn { digest } => (Some(digest), None),
            Frame::SynAck { digest, delta } => (Some(digest), Some(delta)),
            Frame::Delta { delta } | Frame::Push { delta } => (None, Some(delta)),
            _ => (None, None),
        };
        for d in digest.into_iter().flatten() {
            fields.push((&mut d.version, MAX_VERSION));
        }
        for d in deltas.into_iter().flatten() {
            // `to` keeps the range forwards; `from` past the bound is refused either way.
            fields.push((&mut d.to, MAX_VERSION));
            for e in &mut d.entries {
                fields.push((&mut e.p, MAX_TOTAL));
                fields.push((&mut e.n, MAX_TOTAL));
                fields.push((&mut e.version, MAX_VERSION));
            }
        }
        prop_assume!(!fields.is_empty());
        let k = pick % fields.len();
        let (field, bound) = fields.swap_remove(k);
        *field = bound.saturating_add(over);
        let bytes = codec::encode(&frame);
        prop_assert!(
            matches!(codec::decode(&bytes, MAX), Err(CodecError::Invalid(_))),
            "{:?}", codec::decode(&bytes, MAX)
        );
    }

    #[test]
    fn every_truncation_of_a_frame_is_refused(frame in frame()) {
        let bytes = codec::encode(&frame);
        for cut in 0..bytes.len() {
            prop_assert!(codec::decode(&bytes[..cut], MAX).is_err(), "cut at {}", cut);
            prop_assert!(codec::read_frame(&mut &bytes[..cut], MAX).is_err());
        }
        // The payload alone, cut short, under the header's type.
        let kind = frame.frame_type();
        for cut in 0..bytes.len() - HEADER_LEN {
            let _ = codec::decode_payload(kind, &bytes[HEADER_LEN..HEADER_LEN + cut]);
        }
    }

    #[test]
    fn bit_flips_never_panic_and_what_decodes_re_encodes(
        frame in frame(),
        flips in prop::collection::vec(any::<usize>(), 1..4),
    ) {
        let mut bytes = codec::encode(&frame);
        for f in flips {
            let bit = f % (bytes.len() * 8);
            bytes[bit / 8] ^= 1 << (bit % 8);
        }
        if let Ok(decoded) = codec::decode(&bytes, MAX) {
            prop_assert_eq!(codec::encode(&decoded).len(), codec::encoded_len(&decoded));
        }
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        let _ = codec::decode(&bytes, MAX);
        let _ = codec::read_frame(&mut bytes.as_slice(), MAX);
    }

    #[test]
    fn random_payloads_under_a_valid_header_never_panic(
        kind in 1u8..=5,
        payload in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut bytes = header(kind, payload.len() as u32);
        bytes.extend_from_slice(&payload);
        let _ = codec::decode(&bytes, MAX);
    }

    #[test]
    fn huge_length_headers_are_refused_before_reading_the_payload(
        kind in 1u8..=5,
        len in (MAX as u32 + 1)..=u32::MAX,
    ) {
        let bytes = header(kind, len);
        let expected = CodecError::TooLarge { len: len as usize, max: MAX };
        prop_assert_eq!(codec::decode(&bytes, MAX), Err(expected.clone()));
        match codec::read_frame(&mut bytes.as_slice(), MAX) {
            Err(codec::ReadError::Codec(e)) => prop_assert_eq!(e, expected),
            other => prop_assert!(false, "read_frame gave {:?}", other),
        }
    }

    #[test]
    fn huge_element_counts_are_refused(
        count in (1u64 << 20)..=u64::MAX,
        tail in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        // A count at the top level of every list-bearing frame type…
        for kind in [FrameType::Syn, FrameType::SynAck, FrameType::Delta, FrameType::Push] {
            let mut payload = varint(count);
            payload.extend_from_slice(&tail);
            prop_assert!(codec::decode_payload(kind, &payload).is_err());
        }
        // …and the entry count inside one delta.
        let mut payload = varint(1);
        payload.extend_from_slice(&[1, b'a']);
        payload.extend_from_slice(&7u64.to_be_bytes());
        payload.extend_from_slice(&[0, 1]);
        payload.extend_from_slice(&varint(count));
        payload.extend_from_slice(&tail);
        prop_assert!(codec::decode_payload(FrameType::Delta, &payload).is_err());
    }
}

fn header(kind: u8, len: u32) -> Vec<u8> {
    let mut bytes = MAGIC.to_vec();
    bytes.push(PROTOCOL_VERSION);
    bytes.push(kind);
    bytes.extend_from_slice(&len.to_be_bytes());
    bytes
}

#[test]
fn a_frame_at_the_payload_limit_decodes_and_one_byte_more_does_not() {
    let limit = 500;
    let frame = |name_len: usize| Frame::Hello {
        name: peer("n"),
        gossip_addr: "a".repeat(name_len.min(codec::MAX_ADDR_BYTES)),
        http_addr: "h".repeat(name_len.saturating_sub(codec::MAX_ADDR_BYTES)),
    };
    // Find the Hello whose payload is exactly `limit` bytes.
    let exact = (0..2 * codec::MAX_ADDR_BYTES)
        .map(frame)
        .find(|f| codec::payload_len(f) == limit)
        .expect("a frame of exactly the limit");
    assert!(codec::decode(&codec::encode(&exact), limit).is_ok());
    let bigger = (0..2 * codec::MAX_ADDR_BYTES)
        .map(frame)
        .find(|f| codec::payload_len(f) == limit + 1)
        .expect("a frame one byte over");
    assert_eq!(
        codec::decode(&codec::encode(&bigger), limit),
        Err(CodecError::TooLarge {
            len: limit + 1,
            max: limit
        })
    );
}
