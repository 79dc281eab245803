//! The gossip engine wired by hand: a few engines, frames carried one at a time, and
//! assertions on exactly what each one queued. Covers the rules the simulator relies on:
//! writes within a push window share one frame per peer, pushes that teach something are
//! passed on to two neighbours in a large cluster, a gap triggers one immediate pull, and
//! a split delta chains its ranges so a receiver can apply the chunks in any order.

use gctr::codec::{self, Frame, FrameType};
use gctr::crdt::{CounterEntry, Digest, LocalOp, OpKind, Origin, OriginDelta, Resolution, State};
use gctr::engine::{
    Config, Engine, Fanout, Output, DEFAULT_GOSSIP_INTERVAL, FANOUT_WITHOUT_PUSH, FANOUT_WITH_PUSH,
    MAX_SKIPPED_ROUNDS, MIN_PAYLOAD,
};
use gctr::member::NodeName;
use std::collections::HashSet;
use std::time::Duration;

const NOW: Duration = Duration::from_secs(1);

fn engine(name: &str, peers: &[&str], config: Config) -> Engine {
    let mut e = Engine::new(
        Origin::new(name, 7),
        config,
        State::new(),
        42,
        Duration::ZERO,
    );
    e.set_peers(peers.iter().map(|p| peer(p)));
    e
}

fn peer(name: &str) -> NodeName {
    NodeName::new(name).expect("a valid test name")
}

fn inc(counter: &str, amount: u64) -> LocalOp {
    LocalOp {
        counter: counter.into(),
        kind: OpKind::Increment,
        amount,
        key: None,
    }
}

/// Runs one durable local batch and returns the frames it sent.
fn write(e: &mut Engine, ops: &[LocalOp]) -> Vec<(String, Frame)> {
    let batch = e.prepare_local(ops, 0, &[]);
    e.apply_local(Duration::ZERO, &batch);
    sends(e)
}

fn sends(e: &mut Engine) -> Vec<(String, Frame)> {
    e.drain_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::Send { to, frame } => Some((to.to_string(), frame)),
            _ => None,
        })
        .collect()
}

/// Runs one durable local batch at `now` and returns the frames it sent.
fn write_at(e: &mut Engine, now: Duration, ops: &[LocalOp]) -> Vec<(String, Frame)> {
    let batch = e.prepare_local(ops, 0, &[]);
    e.apply_local(now, &batch);
    sends(e)
}

fn names(prefix: &str, n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("{prefix}{i:02}")).collect()
}

fn refs(names: &[String]) -> Vec<&str> {
    names.iter().map(String::as_str).collect()
}

#[test]
fn a_push_with_a_gap_pulls_the_gap_from_the_pusher_once() {
    let mut a = engine("a", &["b", "c"], Config::default());
    let mut b = engine("b", &["a", "c"], Config::default());
    write(&mut a, &[inc("x", 1)]); // lost on the way
    let window = a.push_window();
    let pushes = write_at(&mut a, window, &[inc("y", 2)]);
    let (_, push) = pushes
        .iter()
        .find(|(to, _)| to == "b")
        .expect("a push to b");

    b.handle_frame(NOW, &peer("a"), push.clone());
    let out = sends(&mut b);
    assert!(
        out.iter()
            .any(|(to, f)| to == "a" && matches!(f, Frame::Syn { .. })),
        "no repair pull to the pusher: {out:?}"
    );
    assert!(
        !out.iter().any(|(_, f)| matches!(f, Frame::Push { .. })),
        "in a cluster of three every node has the push from its origin: {out:?}"
    );
    assert_eq!(b.state().value("y"), 2);
    assert_eq!(
        b.state().known(a.origin()),
        0,
        "b cannot know a past the gap"
    );

    // The same push again teaches nothing, and the pull is not repeated at once.
    b.handle_frame(NOW, &peer("a"), push.clone());
    assert_eq!(sends(&mut b), vec![]);
    assert_eq!(b.stats().repairs, 1);
}

#[test]
fn a_push_without_a_gap_pulls_nothing() {
    let mut a = engine("a", &["b", "c"], Config::default());
    let mut b = engine("b", &["a", "c"], Config::default());
    let pushes = write(&mut a, &[inc("x", 1)]);
    let (_, push) = pushes
        .iter()
        .find(|(to, _)| to == "b")
        .expect("a push to b");
    b.handle_frame(NOW, &peer("a"), push.clone());
    assert_eq!(b.state().known(a.origin()), 1);
    assert_eq!(b.stats().repairs, 0);
    let out = sends(&mut b);
    assert!(
        !out.iter().any(|(_, f)| matches!(f, Frame::Syn { .. })),
        "a pull with nothing missing: {out:?}"
    );
}

#[test]
fn the_push_window_grows_with_every_node_of_the_cluster_itself_included() {
    let peers = names("p", 19);
    let a = engine("a", &refs(&peers), Config::default());
    // 280 us a node for 20 nodes, within 2 ms and a quarter of the gossip interval.
    assert_eq!(a.push_window(), Duration::from_micros(5_600));
}

#[test]
fn a_peers_last_digest_is_kept_until_forgotten() {
    let a = engine("a", &["b"], Config::default());
    let mut b = engine("b", &["a"], Config::default());
    let syn = || Frame::Syn {
        digest: a.state().digest(),
    };
    b.handle_frame(NOW, &peer("a"), syn());
    assert!(b.peer_digest(&peer("a")).is_some());
    b.forget_digest(&peer("a"));
    assert!(
        b.peer_digest(&peer("a")).is_none(),
        "a restarted: its digest goes"
    );
    assert_eq!(b.peers(), &[peer("a")], "and it stays a peer");
    b.handle_frame(NOW, &peer("a"), syn());
    b.forget(&peer("a"));
    assert!(b.peer_digest(&peer("a")).is_none() && b.peers().is_empty());
}

#[test]
fn keys_expire_once_folded_and_past_their_window_and_say_how_many() {
    let mut a = engine("a", &["b"], Config::default());
    let keyed = |key: &str| LocalOp {
        key: Some(key.into()),
        ..inc("x", 1)
    };
    let batch = a.prepare_local(&[keyed("k1"), keyed("k2")], 1_000, &[]);
    a.apply_local(NOW, &batch);
    assert_eq!(a.expire_keys(1_000_000, 10), 0, "unresolved keys stay");
    let folds = a.state().plan_folds(a.origin(), |_| Resolution::Fold);
    let batch = a.prepare_local(&[], 2_000, &folds);
    a.apply_local(NOW, &batch);
    assert_eq!(a.expire_keys(1_999, 1_000), 0, "within the window");
    assert_eq!(a.expire_keys(2_000, 1_000), 2);
    assert_eq!(a.state().value("x"), 2);
}

#[test]
fn a_gap_pulls_again_a_quarter_of_a_gossip_interval_later_not_sooner() {
    let mut a = engine("a", &["b"], Config::default());
    let mut b = engine("b", &["a"], Config::default());
    write(&mut a, &[inc("x", 1)]); // lost on the way
                                   // One write a push window apart: each goes out at once, in its own push.
    let window = a.push_window();
    let pushes: Vec<Frame> = (0..3u32)
        .map(|i| {
            write_at(&mut a, window * (i + 1), &[inc("y", u64::from(i) + 1)])
                .remove(0)
                .1
        })
        .collect();
    let pulls = |b: &mut Engine, at: Duration, push: &Frame| {
        b.handle_frame(at, &peer("a"), push.clone());
        let out = sends(b);
        out.iter()
            .filter(|(_, f)| matches!(f, Frame::Syn { .. }))
            .count()
    };
    let quarter = DEFAULT_GOSSIP_INTERVAL / 4;
    assert_eq!(pulls(&mut b, NOW, &pushes[0]), 1);
    assert_eq!(
        pulls(&mut b, NOW + quarter - Duration::from_nanos(1), &pushes[1]),
        0
    );
    assert_eq!(pulls(&mut b, NOW + quarter, &pushes[2]), 1);
    assert_eq!(b.stats().repairs, 2);
}

#[test]
fn a_round_runs_at_its_deadline_once_and_the_next_is_one_interval_later() {
    let mut a = engine("a", &["b", "c"], Config::default());
    let first = a.next_deadline();
    assert!(
        first < DEFAULT_GOSSIP_INTERVAL,
        "the first round within one interval"
    );
    a.handle_timer(first - Duration::from_nanos(1));
    assert_eq!(sends(&mut a), vec![]);
    a.handle_timer(first);
    let syns = sends(&mut a);
    assert_eq!(
        syns.len(),
        FANOUT_WITH_PUSH,
        "one peer with eager push: {syns:?}"
    );
    assert!(syns.iter().all(|(_, f)| matches!(f, Frame::Syn { .. })));
    a.handle_timer(first);
    assert_eq!(sends(&mut a), vec![]);
    assert_eq!(a.stats().rounds, 1);
    assert_eq!(a.next_deadline(), first + DEFAULT_GOSSIP_INTERVAL);
}

/// Whether a round ran at `at` (a Syn went out).
fn round_ran(e: &mut Engine, at: Duration) -> bool {
    e.handle_timer(at);
    sends(e).iter().any(|(_, f)| matches!(f, Frame::Syn { .. }))
}

/// Before each of `rounds` rounds, a batch of `op` whose push leaves at once; whether
/// each round ran.
fn rounds_while_pushing(e: &mut Engine, rounds: usize, op: impl Fn(usize) -> LocalOp) -> Vec<bool> {
    let mut at = e.next_deadline();
    (0..rounds)
        .map(|i| {
            let pushes = write_at(e, at, &[op(i)]);
            assert!(!pushes.is_empty(), "the batch left at once");
            let ran = round_ran(e, at);
            at += DEFAULT_GOSSIP_INTERVAL;
            ran
        })
        .collect()
}

#[test]
fn rounds_pause_while_push_batches_leave_but_never_more_than_two_in_a_row() {
    let mut a = engine("a", &["b", "c"], Config::default());
    let ran = rounds_while_pushing(&mut a, 12, |_| inc("x", 1));
    let cycle = MAX_SKIPPED_ROUNDS as usize + 1;
    let expected: Vec<bool> = (0..12).map(|i| i % cycle == cycle - 1).collect();
    assert_eq!(ran, expected);
    assert_eq!(
        (a.stats().rounds, a.stats().rounds_skipped),
        (12 / cycle as u64, 12 - 12 / cycle as u64)
    );
    // The writes stop: every round runs.
    let mut at = a.next_deadline();
    for _ in 0..3 {
        assert!(round_ran(&mut a, at));
        at += DEFAULT_GOSSIP_INTERVAL;
    }
}

#[test]
fn no_round_is_skipped_while_the_nodes_own_key_acceptances_wait_for_digests() {
    let mut a = engine("a", &["b", "c"], Config::default());
    let keyed = |i: usize| LocalOp {
        key: Some(format!("k{i}")),
        ..inc("x", 1)
    };
    assert_eq!(rounds_while_pushing(&mut a, 6, keyed), vec![true; 6]);
    assert_eq!(a.stats().rounds_skipped, 0);
    // Nor while it needs its peers' whole digests for another reason.
    let mut b = engine("b", &["a", "c"], Config::default());
    b.set_needs_whole_digests(Some(Duration::from_secs(10)));
    assert_eq!(
        rounds_while_pushing(&mut b, 6, |_| inc("x", 1)),
        vec![true; 6]
    );
}

#[test]
fn rounds_reach_every_peer_once_a_cycle() {
    let peers = names("p", 7);
    let mut a = engine("a", &refs(&peers), Config::default());
    let mut at = a.next_deadline();
    let mut round = || {
        a.handle_timer(at);
        at += DEFAULT_GOSSIP_INTERVAL;
        let to: Vec<String> = sends(&mut a).into_iter().map(|(p, _)| p).collect();
        assert_eq!(to.len(), FANOUT_WITH_PUSH, "{to:?}");
        to
    };
    for cycle in 0..3 {
        let mut reached: Vec<String> = (0..peers.len()).flat_map(|_| round()).collect();
        reached.sort();
        assert_eq!(reached, peers, "cycle {cycle}: each peer once");
    }
}

#[test]
fn a_round_goes_to_two_peers_without_eager_push_or_to_as_many_as_configured() {
    let lazy = Config {
        eager_push: false,
        ..Config::default()
    };
    let fixed = Config {
        fanout: Fanout::Fixed(3),
        ..Config::default()
    };
    for (config, expected) in [(lazy, FANOUT_WITHOUT_PUSH), (fixed, 3)] {
        let mut a = engine("a", &["b", "c", "d", "e"], config);
        a.handle_timer(a.next_deadline());
        let syns = sends(&mut a);
        assert_eq!(syns.len(), expected, "{syns:?}");
        let to: HashSet<_> = syns.iter().map(|(p, _)| p.clone()).collect();
        assert_eq!(to.len(), expected, "distinct peers: {syns:?}");
    }
}

#[test]
fn figures_count_the_frames_bytes_and_entries_sent_and_received() {
    let mut a = engine("a", &["b"], Config::default());
    let mut b = engine("b", &["a"], Config::default());
    let mut pushes = write(&mut a, &[inc("x", 1), inc("y", 2)]);
    assert_eq!(pushes.len(), 1);
    let (_, push) = pushes.remove(0);
    let len = codec::encoded_len(&push) as u64;
    b.handle_frame(NOW, &peer("a"), push);
    let (out, into) = (a.stats(), b.stats());
    let push = FrameType::Push;
    assert_eq!(
        (out.frames_out[push], out.bytes_out[push], out.entries_out),
        (1, len, 2)
    );
    assert_eq!(
        (into.frames_in[push], into.bytes_in[push], into.entries_in),
        (1, len, 2)
    );
    assert_eq!(into.last_learned, Some(NOW));
}

/// The distinct peers that received a Push.
fn pushed_to(frames: &[(String, Frame)]) -> std::collections::BTreeSet<String> {
    frames
        .iter()
        .filter(|(_, f)| matches!(f, Frame::Push { .. }))
        .map(|(to, _)| to.clone())
        .collect()
}

#[test]
fn writes_within_a_push_window_share_one_frame_per_peer() {
    let mut a = engine("a", &["b", "c"], Config::default());
    let mut b = engine("b", &["a", "c"], Config::default());
    let window = a.push_window();
    let first = write_at(&mut a, Duration::ZERO, &[inc("x", 1)]);
    assert_eq!(pushed_to(&first).len(), 2, "the first write goes at once");
    for k in 0..100 {
        let later = write_at(&mut a, window / 2, &[inc(&format!("c{}", k % 7), 1)]);
        assert_eq!(later, vec![], "a write inside the window waits");
    }
    assert_eq!(
        a.next_deadline(),
        window,
        "the window's end is the next deadline"
    );
    a.handle_timer(window);
    let batch = sends(&mut a);
    assert_eq!(batch.len(), 2, "one frame per peer: {batch:?}");
    for (to, frame) in first.into_iter().chain(batch) {
        if to == "b" {
            b.handle_frame(NOW, &peer("a"), frame);
        }
    }
    assert_eq!(b.state().known(a.origin()), 101);
    assert_eq!(b.state().value("c0"), 15);
    assert_eq!(a.stats().push_batches, 2);
}

#[test]
fn a_large_cluster_pushes_to_two_neighbours_who_pass_on_only_what_is_new() {
    let all = names("p", 50);
    let me = &all[0];
    let others: Vec<&str> = refs(&all).into_iter().filter(|n| n != me).collect();
    let mut a = engine(me, &others, Config::default());
    let pushes = write(&mut a, &[inc("x", 1)]);
    let targets = pushed_to(&pushes);
    assert_eq!(targets.len(), 2, "{targets:?}");

    // Each target passes it on to its own two neighbours, never back to its origin.
    let (to, push) = pushes.first().expect("a push");
    let rest: Vec<&str> = refs(&all).into_iter().filter(|n| n != to).collect();
    let mut b = engine(to, &rest, Config::default());
    b.handle_frame(NOW, &peer(me), push.clone());
    let forwarded = pushed_to(&sends(&mut b));
    assert!(
        !forwarded.is_empty() && forwarded.len() <= 2 && !forwarded.contains(me.as_str()),
        "{forwarded:?}"
    );
    assert_eq!(b.stats().forwarded, 1);

    // The same push again teaches nothing: it goes no further.
    b.handle_timer(NOW + b.push_window());
    b.handle_frame(NOW + b.push_window(), &peer(me), push.clone());
    assert_eq!(pushed_to(&sends(&mut b)).len(), 0);
}

#[test]
fn a_split_delta_chains_its_ranges_and_applies_in_any_order() {
    let small = Config {
        max_payload: MIN_PAYLOAD,
        eager_push: false,
        ..Config::default()
    };
    let mut a = engine("a", &["b"], small.clone());
    let mut b = engine("b", &["a"], small);
    for k in 0..12 {
        let ops: Vec<LocalOp> = (0..5)
            .map(|j| inc(&format!("{}-{k}-{j}", "n".repeat(100)), 1 + j))
            .collect();
        write(&mut a, &ops);
    }

    a.handle_frame(NOW, &peer("b"), Frame::Syn { digest: Vec::new() });
    let frames: Vec<Frame> = sends(&mut a).into_iter().map(|(_, f)| f).collect();
    assert!(
        frames.len() > 5,
        "60 long entries fit in {} frames",
        frames.len()
    );
    let mut ranges = Vec::new();
    for f in &frames {
        let bytes = codec::encode(f);
        assert!(
            codec::decode(&bytes, MIN_PAYLOAD).is_ok(),
            "a frame over the limit"
        );
        let deltas = match f {
            Frame::SynAck { delta, .. } | Frame::Delta { delta } => delta,
            other => panic!("unexpected {other:?}"),
        };
        ranges.extend(deltas.iter().map(|d| (d.from, d.to)));
    }
    let a_known = a.state().known(a.origin());
    assert_eq!(ranges.first().map(|r| r.0), Some(0));
    assert_eq!(ranges.last().map(|r| r.1), Some(a_known));
    for pair in ranges.windows(2) {
        assert_eq!(pair[0].1, pair[1].0, "ranges do not chain: {ranges:?}");
    }

    // Last chunk first: b merges the entries at once, and knows all of a's changes once
    // the first chunk closes the gap.
    for f in frames.into_iter().rev() {
        b.handle_frame(NOW, &peer("a"), f);
    }
    assert_eq!(b.state().known(a.origin()), a_known);
    let values = |e: &Engine| {
        e.state()
            .values()
            .map(|(c, v)| (c.to_owned(), v))
            .collect::<Vec<_>>()
    };
    assert_eq!(values(&b), values(&a));
}

#[test]
fn a_peers_digest_tells_how_far_behind_this_nodes_writes_it_is() {
    let ms = Duration::from_millis;
    let mut a = engine("a", &["b"], Config::default());
    let mut b = engine("b", &["a"], Config::default());
    assert_eq!(a.replication(ms(0)), vec![], "no digest from b yet");

    // Two writes whose pushes are lost; b's next Syn shows it lacks both.
    for (at, counter) in [(10, "x"), (20, "y")] {
        let batch = a.prepare_local(&[inc(counter, 1)], 0, &[]);
        a.apply_local(ms(at), &batch);
        sends(&mut a);
    }
    let syn = Frame::Syn {
        digest: b.state().digest(),
    };
    a.handle_frame(ms(50), &peer("b"), syn);
    let lag = &a.replication(ms(60))[0];
    assert_eq!(lag.peer, peer("b"));
    assert_eq!(lag.versions_behind, 2);
    assert_eq!(lag.behind_for, ms(50), "behind since the write at 10 ms");
    assert_eq!(lag.digest_age, ms(10));
    assert_eq!(lag.caught_up_ago, None);

    // a answers with what b lacks; b's next digest holds everything.
    for (_, frame) in sends(&mut a) {
        b.handle_frame(ms(70), &peer("a"), frame);
    }
    sends(&mut b);
    let syn = Frame::Syn {
        digest: b.state().digest(),
    };
    a.handle_frame(ms(150), &peer("b"), syn);
    let lag = &a.replication(ms(160))[0];
    assert_eq!((lag.versions_behind, lag.behind_for), (0, Duration::ZERO));
    assert_eq!(lag.caught_up_ago, Some(ms(10)));

    // A peer that leaves the peer set is no longer reported.
    a.remove_peer(&peer("b"));
    assert_eq!(a.replication(ms(200)), vec![]);
}

/// Engine `b`, peer of `a`, holding `origins` origins whose names take `name_len` bytes,
/// each with three long entries: what a new peer lacks takes several frames.
fn replier_knowing(origins: usize, name_len: usize, max_payload: usize) -> Engine {
    let mut state = State::new();
    for i in 0..origins {
        let entries = (1..=3)
            .map(|v| CounterEntry {
                counter: format!("{}-{v}", "c".repeat(60)),
                p: v,
                n: 0,
                version: v,
                keyed: None,
            })
            .collect();
        state.apply_delta(&OriginDelta {
            origin: Origin::new(format!("{i:0>name_len$}"), 7),
            from: 0,
            to: 3,
            entries,
        });
    }
    replier(state, max_payload)
}

/// Engine `b` holding `state`, with `a` as its peer, sending frames of at most
/// `max_payload` bytes and no pushes.
fn replier(state: State, max_payload: usize) -> Engine {
    let config = Config {
        max_payload,
        eager_push: false,
        ..Config::default()
    };
    let mut b = Engine::new(Origin::new("b", 7), config, state, 42, Duration::ZERO);
    b.set_peers([peer("a")]);
    b
}

/// Asks `b` with an empty digest and checks its Delta frames: at least `min_frames`,
/// within the limit, every one but the last more than half full, and together carrying
/// everything `b` holds. The chunker counts each delta head at its largest (from and
/// to as 10-byte varints), and in these tests an entry with its head takes under 130
/// bytes, so a frame cut with less than half of it used was packed badly.
fn assert_reply_packed(mut b: Engine, min_frames: usize) {
    b.handle_frame(NOW, &peer("a"), Frame::Syn { digest: Vec::new() });
    let frames: Vec<Frame> = sends(&mut b).into_iter().map(|(_, f)| f).collect();
    assert_within(&frames, MIN_PAYLOAD);
    let sizes: Vec<usize> = frames
        .iter()
        .filter(|f| matches!(f, Frame::Delta { .. }))
        .map(codec::payload_len)
        .collect();
    assert!(sizes.len() >= min_frames, "delta frames of {sizes:?} bytes");
    assert!(
        sizes[..sizes.len() - 1]
            .iter()
            .all(|&len| len > MIN_PAYLOAD / 2),
        "delta frames of {sizes:?} bytes"
    );
    check_everything_arrives(&b, frames);
}

/// Carries `frames` from `b` to a new engine `a` and checks that `a` then holds all `b` holds.
fn check_everything_arrives(b: &Engine, frames: Vec<Frame>) {
    let mut a = engine("a", &["b"], Config::default());
    for f in frames {
        a.handle_frame(NOW, &peer("b"), f);
    }
    assert_eq!(a.state().to_deltas(), b.state().to_deltas());
}

/// Every frame in `frames` checked against the payload limit, as the receiver checks it.
fn assert_within(frames: &[Frame], max_payload: usize) {
    for f in frames {
        let (len, kind) = (codec::payload_len(f), f.frame_type());
        assert!(
            len <= max_payload,
            "a {kind:?} frame of {len} bytes against a {max_payload}-byte limit"
        );
        assert_eq!(
            codec::decode(&codec::encode(f), max_payload).as_ref(),
            Ok(f)
        );
    }
}

#[test]
fn delta_frames_are_filled_before_the_next_one_begins() {
    assert_reply_packed(replier_knowing(60, 20, MIN_PAYLOAD), 10);
}

/// Versions near the highest an origin may reach take 9-byte varints, so the chunker's
/// head estimate (10 bytes each for from and to) leaves almost no slack: frames must
/// still fit the limit.
#[test]
fn frames_of_versions_near_the_top_fit_the_limit_too() {
    let base = gctr::crdt::MAX_VERSION - 1_000;
    let entries = (1..=300)
        .map(|i| CounterEntry {
            counter: format!("{}-{i}", "c".repeat(40 + i as usize % 37)),
            p: i,
            n: 0,
            version: base + i,
            keyed: None,
        })
        .collect();
    let mut state = State::new();
    state.apply_delta(&OriginDelta {
        origin: Origin::new("a-writer", 7),
        from: 0,
        to: base + 300,
        entries,
    });
    assert_reply_packed(replier(state, MIN_PAYLOAD), 20);
}

/// Origins known up to a version whose changes are all superseded or gone (an empty
/// delta range): their deltas carry no entry, only the range, and still fill frames
/// within the limit.
#[test]
fn ranges_without_entries_are_sent_too_and_fill_frames_within_the_limit() {
    let mut state = State::new();
    for i in 0..100 {
        state.apply_delta(&OriginDelta {
            origin: Origin::new(format!("{i:0>20}"), 7),
            from: 0,
            to: 5,
            entries: Vec::new(),
        });
    }
    assert_reply_packed(replier(state, MIN_PAYLOAD), 4);
}

#[test]
fn a_reply_to_a_syn_fits_the_limit_with_a_large_digest_and_a_delta_over_several_frames() {
    let mut b = replier_knowing(10, 20, MIN_PAYLOAD);
    let digest_len = codec::digest_len(&b.state().digest());
    assert!(
        digest_len > MIN_PAYLOAD / 2,
        "a digest of {digest_len} bytes"
    );

    b.handle_frame(NOW, &peer("a"), Frame::Syn { digest: Vec::new() });
    let frames: Vec<Frame> = sends(&mut b).into_iter().map(|(_, f)| f).collect();
    assert!(frames.len() > 3, "{} frames", frames.len());
    assert!(matches!(&frames[0], Frame::SynAck { digest, .. } if digest.len() == 10));
    assert_within(&frames, MIN_PAYLOAD);
    check_everything_arrives(&b, frames);
}

#[test]
fn a_digest_that_fills_a_frame_is_not_sent_as_the_reply_would_pass_the_limit() {
    // 7 origins of 63-byte names: a digest of exactly 512 bytes, and a SynAck carrying
    // it would need one byte more for its (empty) delta count.
    let mut b = replier_knowing(7, 63, MIN_PAYLOAD);
    assert_eq!(codec::digest_len(&b.state().digest()), MIN_PAYLOAD);
    b.handle_frame(NOW, &peer("a"), Frame::Syn { digest: Vec::new() });
    let frames: Vec<Frame> = sends(&mut b).into_iter().map(|(_, f)| f).collect();
    assert!(frames.iter().all(|f| matches!(f, Frame::Delta { .. })));
    assert_within(&frames, MIN_PAYLOAD);
    check_everything_arrives(&b, frames);
}

#[test]
fn a_digest_larger_than_a_frame_goes_as_a_summary_and_a_syn_is_answered_with_deltas() {
    let mut b = replier_knowing(40, 28, MIN_PAYLOAD);
    let needs = codec::digest_len(&b.state().digest());
    assert!(needs > MIN_PAYLOAD, "a digest of {needs} bytes");

    b.handle_frame(NOW, &peer("a"), Frame::Syn { digest: Vec::new() });
    let frames: Vec<Frame> = sends(&mut b).into_iter().map(|(_, f)| f).collect();
    assert!(frames.iter().all(|f| matches!(f, Frame::Delta { .. })));
    assert_within(&frames, MIN_PAYLOAD);
    check_everything_arrives(&b, frames);
    assert_eq!(b.stats().digests_over_limit, 1);

    // Its own rounds send a summary of the digest, within the limit.
    for round in 1..=3 {
        b.handle_timer(NOW * round);
        let frames: Vec<Frame> = sends(&mut b).into_iter().map(|(_, f)| f).collect();
        assert!(
            matches!(frames.as_slice(), [Frame::Summary { .. }]),
            "round {round}: {frames:?}"
        );
        assert_within(&frames, MIN_PAYLOAD);
    }
}

#[test]
fn totals_merged_without_versions_say_whether_they_changed_anything() {
    let mut a = engine("a", &["b"], Config::default());
    let other = Origin::new("m", 3);
    assert!(a.merge_unversioned(NOW, &other, "x", 5, 2));
    assert!(
        !a.merge_unversioned(NOW, &other, "x", 5, 2),
        "the same totals again"
    );
    assert!(
        !a.merge_unversioned(NOW, &other, "x", 4, 1),
        "smaller totals"
    );
    assert!(a.merge_unversioned(NOW, &other, "x", 5, 3));
    assert_eq!(a.state().value("x"), 2);
    assert_eq!(a.stats().last_learned, Some(NOW));
}

/// A node that sends a retired origin's tombstone to a peer also says it retired it
/// (`Frame::Retired`, after the deltas); the peer keeps that as a hint only while it
/// knows the origin up to the same version and has not retired it, and ignores one
/// about an origin it holds less of, or not at all.
#[test]
fn a_retired_origins_tombstone_goes_out_with_a_hint_the_receiver_checks() {
    let gone = Origin::new("gone", 3);
    let mut a = engine("a", &["b"], Config::default());
    let mut b = engine("b", &["a"], Config::default());
    let delta = OriginDelta {
        origin: gone.clone(),
        from: 0,
        to: 2,
        entries: vec![
            CounterEntry::plain("x", 4, 0, 1),
            CounterEntry::plain("y", 0, 2, 2),
        ],
    };
    a.handle_frame(NOW, &peer("c"), Frame::Delta { delta: vec![delta] });
    assert!(a.retire(&gone, 2));
    sends(&mut a);

    a.handle_frame(NOW, &peer("b"), Frame::Syn { digest: vec![] });
    let sent = sends(&mut a);
    let kinds: Vec<FrameType> = sent.iter().map(|(_, f)| f.frame_type()).collect();
    assert_eq!(kinds, [FrameType::SynAck, FrameType::Retired]);
    for (_, frame) in &sent {
        let bytes = codec::encode(frame);
        assert_eq!(
            &codec::decode(&bytes, codec::DEFAULT_MAX_PAYLOAD).unwrap(),
            frame
        );
    }
    let (_, Frame::Retired { digest }) = &sent[1] else {
        panic!("a Retired frame");
    };
    assert_eq!((&digest[0].origin, digest[0].version), (&gone, 2));

    assert_eq!(b.retired_hint(&gone), None);
    b.handle_frame(NOW, &peer("a"), sent[1].1.clone());
    assert_eq!(b.retired_hint(&gone), None, "b holds nothing of it yet");
    b.handle_frame(NOW, &peer("a"), sent[0].1.clone());
    b.handle_frame(NOW, &peer("a"), sent[1].1.clone());
    assert_eq!(b.retired_hint(&gone), Some(2));
    assert_eq!(b.state().value("x") - b.state().value("y"), 6);
    assert!(b.retire(&gone, 2));
    assert_eq!(b.retired_hint(&gone), None, "spent once retired");

    let mut c = engine("c", &["a"], Config::default());
    let short = OriginDelta {
        origin: gone.clone(),
        from: 0,
        to: 1,
        entries: vec![CounterEntry::plain("x", 4, 0, 1)],
    };
    c.handle_frame(NOW, &peer("a"), Frame::Delta { delta: vec![short] });
    c.handle_frame(NOW, &peer("a"), sent[1].1.clone());
    assert_eq!(c.retired_hint(&gone), None, "c knows it only up to 1");
}

/// Carries every frame `from` queued for `to` (others are dropped); returns how many.
fn carry(from: &mut Engine, from_name: &str, to: &mut Engine, to_name: &str) -> usize {
    let frames: Vec<Frame> = sends(from)
        .into_iter()
        .filter(|(t, _)| t == to_name)
        .map(|(_, f)| f)
        .collect();
    for frame in &frames {
        let bytes = codec::encode(frame);
        let decoded = codec::decode(&bytes, codec::DEFAULT_MAX_PAYLOAD).unwrap();
        assert_eq!(&decoded, frame);
        to.handle_frame(NOW, &peer(from_name), decoded);
    }
    frames.len()
}

/// Node "a" (peer "b", the smallest frames) holding origin "gone" compacted after it
/// wrote 300 counters (so its compacted sums take several frames), nothing queued.
fn compacted_node() -> (Engine, Origin, Config) {
    let gone = Origin::new("gone", 3);
    let config = Config {
        max_payload: MIN_PAYLOAD,
        ..Config::default()
    };
    let mut a = engine("a", &["b"], config.clone());
    let entries: Vec<CounterEntry> = (1..=300)
        .map(|i| CounterEntry::plain(format!("counter-{i:04}"), i, 1, i))
        .collect();
    let delta = OriginDelta {
        origin: gone.clone(),
        from: 0,
        to: 300,
        entries,
    };
    a.handle_frame(NOW, &peer("c"), Frame::Delta { delta: vec![delta] });
    assert!(a.retire(&gone, 300) && a.compact(&gone, 300));
    sends(&mut a);
    (a, gone, config)
}

/// The compaction offer `a` sends b at `at`, answering an empty Syn from it.
fn offer_to_b(a: &mut Engine, at: Duration) -> Vec<Frame> {
    a.handle_frame(at, &peer("b"), Frame::Syn { digest: vec![] });
    sends(a)
        .into_iter()
        .map(|(_, f)| f)
        .filter(|f| f.frame_type() == FrameType::Compaction)
        .collect()
}

/// The parts of an offer fit the smallest frame limit and are packed: each but the last
/// is full to within an entry or so.
fn assert_packed(parts: &[Frame]) {
    assert_within(parts, MIN_PAYLOAD);
    let lens: Vec<usize> = parts.iter().map(codec::payload_len).collect();
    assert!(
        lens[..lens.len() - 1]
            .iter()
            .all(|&len| len > MIN_PAYLOAD * 3 / 4),
        "{lens:?}"
    );
}

/// A node that compacted an origin never sends a range of it (its entries are gone): a
/// peer lacking part of it gets the node's compaction instead, cut into parts, and once
/// the last is in reads what the node reads. An offer goes at most once a while.
#[test]
fn a_peer_lacking_a_compacted_origin_adopts_the_compaction_offered_to_it() {
    let (mut a, gone, config) = compacted_node();
    write(&mut a, &[inc("own", 5)]);

    let mut b = engine("b", &["a"], config);
    let syn = b.state().digest();
    a.handle_frame(
        NOW,
        &peer("b"),
        Frame::Syn {
            digest: syn.clone(),
        },
    );
    let sent = sends(&mut a);
    let kinds: Vec<FrameType> = sent.iter().map(|(_, f)| f.frame_type()).collect();
    assert_eq!(
        kinds[0],
        FrameType::SynAck,
        "a's own origin goes as a delta"
    );
    let parts = kinds
        .iter()
        .filter(|k| **k == FrameType::Compaction)
        .count();
    assert!(parts > 1, "{kinds:?}");
    // The parts fit the frame limit and are packed: each but the last is full to within
    // an entry or so.
    let offer: Vec<Frame> = sent
        .iter()
        .map(|(_, f)| f.clone())
        .filter(|f| f.frame_type() == FrameType::Compaction)
        .collect();
    assert_packed(&offer);
    for (_, frame) in &sent {
        if let Frame::SynAck { delta, .. } | Frame::Delta { delta } = frame {
            assert!(delta.iter().all(|d| d.origin != gone), "no range of gone");
        }
    }
    // Every part but the last changes nothing; the last adopts the whole.
    for (i, (_, frame)) in sent.iter().enumerate() {
        b.handle_frame(NOW, &peer("a"), frame.clone());
        if i + 1 < sent.len() {
            assert_eq!(b.state().retire_stats().compacted, 0);
        }
    }
    assert!(b.state().is_compacted(&gone));
    let values = |e: &Engine| {
        e.state()
            .values()
            .map(|(n, v)| (n.to_owned(), v))
            .collect::<Vec<_>>()
    };
    assert_eq!(values(&b), values(&a));
    assert_eq!(b.state().digest(), a.state().digest());
    assert!(b
        .drain_outputs()
        .iter()
        .any(|o| matches!(o, Output::Adopted { origins: 1, .. })));
    assert_eq!(
        (b.stats().compaction_adopted, b.stats().compaction_refused),
        (1, 0)
    );

    // No second offer to b for a while, even to a digest that lacks it.
    a.handle_frame(
        NOW,
        &peer("b"),
        Frame::Syn {
            digest: syn.clone(),
        },
    );
    assert!(sends(&mut a)
        .iter()
        .all(|(_, f)| f.frame_type() != FrameType::Compaction));

    // And b, holding it, draws none: the digests agree.
    b.handle_frame(
        NOW,
        &peer("a"),
        Frame::Syn {
            digest: a.state().digest(),
        },
    );
    assert_eq!(carry(&mut b, "b", &mut a, "a"), 1, "only a SynAck");
    let offered_at = |a: &mut Engine, at: Duration, digest: &Digest| {
        a.handle_frame(
            at,
            &peer("b"),
            Frame::Syn {
                digest: digest.clone(),
            },
        );
        sends(a)
            .iter()
            .any(|(_, f)| f.frame_type() == FrameType::Compaction)
    };
    let offered = |a: &mut Engine, digest: &Digest| offered_at(a, NOW, digest);
    // b's whole digest agreed (its SynAck): a later one lacking the origin (b lost it)
    // draws an offer at once, then none for a while again.
    assert!(
        offered(&mut a, &syn),
        "the wait ends once the digests agree"
    );
    assert!(!offered(&mut a, &syn));
    // The first wait is 5 s: an offer goes again at its end, not before.
    let wait_over = NOW + Duration::from_secs(5);
    assert!(!offered_at(
        &mut a,
        wait_over - Duration::from_nanos(1),
        &syn
    ));
    assert!(
        offered_at(&mut a, wait_over, &syn),
        "the first wait is over"
    );
    // Each wait doubles the last: the next is 10 s.
    let second_over = wait_over + Duration::from_secs(10);
    assert!(!offered_at(
        &mut a,
        second_over - Duration::from_nanos(1),
        &syn
    ));
    let offers = a.stats().compaction_offers;
    assert!(
        offered_at(&mut a, second_over, &syn),
        "the second wait is over"
    );
    assert_eq!(a.stats().compaction_offers, offers + 1, "one offer counted");
    // Past the longest wait between offers (10 minutes), one goes again.
    let later = NOW + Duration::from_secs(600);
    assert!(
        offered_at(&mut a, later, &syn),
        "offers repeat while it lacks it"
    );
    assert!(!offered_at(&mut a, later, &syn));
    // A node forgotten (gone for good) that comes back starts afresh too.
    a.forget(&peer("b"));
    a.add_peer(peer("b"));
    assert!(offered(&mut a, &syn), "a forgotten peer starts afresh");
}

/// Parts that do not continue the offer being gathered (a lost part, another offer)
/// drop it: nothing is adopted from a piece.
#[test]
fn a_compaction_offer_missing_a_part_is_never_adopted() {
    let (mut a, gone, config) = compacted_node();
    let parts = offer_to_b(&mut a, NOW);
    assert!(parts.len() > 2);
    let mut b = engine("b", &["a"], config.clone());
    for (i, part) in parts.iter().enumerate() {
        if i != 1 {
            b.handle_frame(NOW, &peer("a"), part.clone());
        }
    }
    assert!(!b.state().is_compacted(&gone));
    assert_eq!(b.state().values().count(), 0, "nothing adopted");
    assert_eq!(b.stats().compaction_dropped, 1, "dropped at the gap");
    // A part twice (a retransmission) drops the offer as well, and so does a part of
    // another offer in the middle of one.
    let mut c = engine("c", &["a"], config.clone());
    for part in [&parts[0], &parts[1], &parts[1]] {
        c.handle_frame(NOW, &peer("a"), part.clone());
    }
    assert_eq!(c.stats().compaction_dropped, 1, "dropped at the repeat");
    let other = offer_to_b(&mut a, NOW + Duration::from_secs(600));
    assert_eq!(
        other.len(),
        parts.len(),
        "the same compaction, another offer"
    );
    let mut d = engine("d", &["a"], config);
    for part in [&parts[0], &other[1]] {
        d.handle_frame(NOW, &peer("a"), part.clone());
    }
    assert_eq!(
        d.stats().compaction_dropped,
        1,
        "dropped at the other offer's part"
    );
    for part in &parts[2..] {
        d.handle_frame(NOW, &peer("a"), part.clone());
    }
    assert!(!d.state().is_compacted(&gone));
}

/// A compaction of many origins is cut into packed parts within the frame limit, its
/// origins across parts too, and adopted whole.
#[test]
fn a_compaction_of_many_origins_goes_in_packed_parts() {
    let config = Config {
        max_payload: MIN_PAYLOAD,
        ..Config::default()
    };
    let mut a = engine("a", &["b"], config.clone());
    let gone: Vec<Origin> = (0..80)
        .map(|i| Origin::new(format!("gone-{i:03}"), 1))
        .collect();
    for origin in &gone {
        let delta = OriginDelta {
            origin: origin.clone(),
            from: 0,
            to: 1,
            entries: vec![CounterEntry::plain("c", 1, 0, 1)],
        };
        a.handle_frame(NOW, &peer("c"), Frame::Delta { delta: vec![delta] });
        assert!(a.retire(origin, 1) && a.compact(origin, 1));
    }
    sends(&mut a);
    let parts = offer_to_b(&mut a, NOW);
    assert!(parts.len() > 2, "{} parts", parts.len());
    assert_packed(&parts);
    let mut b = engine("b", &["a"], config);
    for part in &parts {
        b.handle_frame(NOW, &peer("a"), part.clone());
    }
    assert!(gone.iter().all(|o| b.state().is_compacted(o)));
    assert_eq!(b.state().value("c"), 80);
}

/// A node holding a compacted origin past the version it was compacted at refuses the
/// offer (adopting it could count wrongly), says why, and changes nothing.
#[test]
fn a_compaction_that_could_count_wrongly_is_refused_and_said_so() {
    let (mut a, gone, config) = compacted_node();
    let parts = offer_to_b(&mut a, NOW);
    let mut b = engine("b", &["a"], config);
    let past = OriginDelta {
        origin: gone.clone(),
        from: 0,
        to: 301,
        entries: vec![CounterEntry::plain("late", 1, 0, 301)],
    };
    b.handle_frame(NOW, &peer("c"), Frame::Delta { delta: vec![past] });
    sends(&mut b);
    for part in &parts {
        b.handle_frame(NOW, &peer("a"), part.clone());
    }
    assert!(!b.state().is_compacted(&gone));
    assert_eq!(b.state().value("late"), 1);
    assert!(b
        .drain_outputs()
        .iter()
        .any(|o| matches!(o, Output::AdoptionRefused { .. })));
    assert_eq!(
        (b.stats().compaction_adopted, b.stats().compaction_refused),
        (0, 1)
    );
}

/// A node gathers offers from at most two peers at once: a third's first part is
/// dropped (and counted), while the two being gathered go on to be adopted.
#[test]
fn at_most_two_compaction_offers_are_gathered_at_once() {
    let (mut a, gone, config) = compacted_node();
    let parts = offer_to_b(&mut a, NOW);
    assert!(parts.len() > 1);
    let mut b = engine("b", &["a1", "a2", "a3"], config);
    for from in ["a1", "a2", "a3"] {
        b.handle_frame(NOW, &peer(from), parts[0].clone());
    }
    assert_eq!(b.stats().compaction_dropped, 1, "the third offer");
    for part in &parts[1..] {
        b.handle_frame(NOW, &peer("a1"), part.clone());
    }
    assert!(b.state().is_compacted(&gone), "a1's offer, gathered whole");
    assert_eq!(b.stats().compaction_dropped, 1);
    // An offer from a node that is no peer is dropped too, however few are gathered.
    let mut c = engine("c", &["a1"], Config::default());
    for part in &parts {
        c.handle_frame(NOW, &peer("stranger"), part.clone());
    }
    assert!(!c.state().is_compacted(&gone));
    assert_eq!(
        c.stats().compaction_dropped,
        1,
        "counted once, at its first part"
    );
}

/// A stale push of a compacted origin (a duplicated or delayed frame) that a node of a
/// large cluster passes on never goes out as a range without its entries: a receiver
/// holding part of the origin would take the range as held and never learn the rest.
#[test]
fn a_stale_push_of_a_compacted_origin_is_not_passed_on_as_a_range() {
    let gone = Origin::new("gone", 3);
    let all = names("p", 8);
    let me = all[0].clone();
    let others: Vec<&str> = refs(&all).into_iter().filter(|n| *n != me).collect();
    let mut b = engine(&me, &others, Config::default());
    let e = |c: &str, p: u64, v: u64| CounterEntry::plain(c, p, 0, v);
    let deltas = vec![
        OriginDelta {
            origin: gone.clone(),
            from: 0,
            to: 2,
            entries: vec![e("x", 1, 1), e("y", 2, 2)],
        },
        OriginDelta {
            origin: gone.clone(),
            from: 2,
            to: 4,
            entries: vec![e("x", 4, 3), e("z", 5, 4)],
        },
    ];
    b.handle_frame(
        NOW,
        &peer("p05"),
        Frame::Delta {
            delta: deltas.clone(),
        },
    );
    assert!(b.retire(&gone, 4) && b.compact(&gone, 4));
    sends(&mut b);
    let later = NOW + Duration::from_secs(1);
    b.handle_frame(
        later,
        &peer("p05"),
        Frame::Push {
            delta: vec![deltas[0].clone()],
        },
    );
    b.handle_timer(later + Duration::from_secs(1));
    for (_, frame) in sends(&mut b) {
        if let Frame::Push { delta } | Frame::Delta { delta } | Frame::SynAck { delta, .. } = frame
        {
            assert!(delta.iter().all(|d| d.origin != gone), "{delta:?}");
        }
    }
}

/// Only gossip peers are offered a compaction: a Syn from a name that is no peer (no
/// keyring: anyone can send one) draws none, as an offer can be large.
#[test]
fn a_syn_from_a_node_that_is_no_peer_draws_no_compaction_offer() {
    let gone = Origin::new("gone", 3);
    let mut a = engine("a", &["b"], Config::default());
    let delta = OriginDelta {
        origin: gone.clone(),
        from: 0,
        to: 1,
        entries: vec![CounterEntry::plain("x", 4, 0, 1)],
    };
    a.handle_frame(NOW, &peer("b"), Frame::Delta { delta: vec![delta] });
    assert!(a.retire(&gone, 1) && a.compact(&gone, 1));
    sends(&mut a);
    a.handle_frame(NOW, &peer("stranger"), Frame::Syn { digest: vec![] });
    assert!(sends(&mut a)
        .iter()
        .all(|(_, f)| f.frame_type() != FrameType::Compaction));
    a.handle_frame(NOW, &peer("b"), Frame::Syn { digest: vec![] });
    assert!(sends(&mut a)
        .iter()
        .any(|(to, f)| to == "b" && f.frame_type() == FrameType::Compaction));
}

/// An origin retired, brought back by a change past its retirement and retired again
/// at once (a Retired hint came with the change) waits the whole compact-after time
/// from its new retirement, not from its first.
#[test]
fn an_origin_retired_again_waits_the_compact_after_time_again() {
    use gctr::node_core::RetirementPolicy;
    let gone = Origin::new("gone", 3);
    let mut policy = RetirementPolicy::new(Some(Duration::from_secs(10)))
        .with_compaction(Some(Duration::from_secs(100)));
    let mut a = engine("a", &["b"], Config::default());
    let delta = |from, to, p| OriginDelta {
        origin: gone.clone(),
        from,
        to,
        entries: vec![CounterEntry::plain("x", p, 0, to)],
    };
    a.handle_frame(
        NOW,
        &peer("b"),
        Frame::Delta {
            delta: vec![delta(0, 1, 1)],
        },
    );
    assert!(a.retire(&gone, 1));
    assert!(policy.compact(Duration::from_secs(1), &mut a).is_empty());
    a.handle_frame(
        NOW,
        &peer("b"),
        Frame::Delta {
            delta: vec![delta(1, 2, 5)],
        },
    );
    assert!(!a.state().is_retired(&gone), "undone");
    assert!(a.retire(&gone, 2));
    assert!(policy
        .compact(Duration::from_millis(101_500), &mut a)
        .is_empty());
    let compacted = policy.compact(Duration::from_millis(202_000), &mut a);
    assert_eq!(compacted.len(), 1, "100 s after its new retirement");
}
