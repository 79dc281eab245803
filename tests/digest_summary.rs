//! Anti-entropy between replicas that know many origins: digests too large to send whole
//! go as summaries (one hash per bucket of origins) and pages of the buckets that
//! differ. Engines wired by hand with every frame carried, encoded and decoded as the
//! transport would, and no eager push, so whatever converges converged by anti-entropy.

use gctr::codec::{self, Frame, FrameType};
use gctr::crdt::{CounterEntry, Digest, Origin, OriginDelta, OriginVersion, State};
use gctr::engine::{Config, Engine, Fanout, Output, DEFAULT_GOSSIP_INTERVAL, FULL_DIGEST_BYTES};
use gctr::member::NodeName;
use gctr::summary::{self, Span};
use std::collections::HashMap;
use std::time::Duration;

fn name(i: usize) -> NodeName {
    NodeName::new(&format!("n{i}")).expect("a valid test name")
}

/// `origins` origins, each with one entry of a counter of its own at version 1 (so the
/// counter table's per-counter scans stay short in a debug build).
fn many_origins(origins: usize) -> State {
    let mut state = State::new();
    for i in 0..origins {
        state.apply_delta(&OriginDelta {
            origin: Origin::new(format!("gone-{i:06}"), i as u64),
            from: 0,
            to: 1,
            entries: vec![CounterEntry::plain(format!("c{i}"), 1, 0, 1)],
        });
    }
    state
}

/// A change of `origin` at `version`: its counter `moved-NAME` at `version`.
fn change(origin: &Origin, version: u64) -> OriginDelta {
    let counter = format!("moved-{}", origin.node);
    OriginDelta {
        origin: origin.clone(),
        from: version - 1,
        to: version,
        entries: vec![CounterEntry::plain(counter, version, 0, version)],
    }
}

/// Engines `n0..` wired to each other, each starting from its own state, frames of at
/// most `max_payload` bytes, no eager push.
struct Net {
    engines: Vec<Engine>,
    now: Duration,
    max_payload: usize,
    /// Bytes and frames sent, per frame type, since the last [`Net::take_sent`].
    sent: HashMap<FrameType, (u64, u64)>,
}

impl Net {
    /// `n` engines that each know the same `origins` origins, at the default frame size.
    fn alike(n: usize, origins: usize) -> Net {
        let state = many_origins(origins);
        Net::new(vec![state; n], codec::DEFAULT_MAX_PAYLOAD)
    }

    fn new(states: Vec<State>, max_payload: usize) -> Net {
        let n = states.len();
        let engines = states
            .into_iter()
            .enumerate()
            .map(|(i, state)| {
                let config = Config {
                    max_payload,
                    eager_push: false,
                    fanout: Fanout::Fixed(n - 1),
                    ..Config::default()
                };
                let me = Origin::new(name(i).as_str(), 1);
                let mut e = Engine::new(me, config, state, i as u64, Duration::ZERO);
                e.set_peers((0..n).filter(|&j| j != i).map(name));
                e
            })
            .collect();
        Net {
            engines,
            now: Duration::ZERO,
            max_payload,
            sent: HashMap::new(),
        }
    }

    /// One gossip interval: every engine's round, and every frame it causes carried
    /// until none is left.
    fn round(&mut self) {
        self.now += DEFAULT_GOSSIP_INTERVAL;
        for e in &mut self.engines {
            e.handle_timer(self.now);
        }
        loop {
            let mut carried = false;
            for from in 0..self.engines.len() {
                for out in self.engines[from].drain_outputs() {
                    let Output::Send { to, frame } = out else {
                        continue;
                    };
                    carried = true;
                    let bytes = codec::encode(&frame);
                    let sent = self.sent.entry(frame.frame_type()).or_default();
                    sent.0 += 1;
                    sent.1 += bytes.len() as u64;
                    let frame = codec::decode(&bytes, self.max_payload)
                        .expect("every frame sent fits the limit and decodes");
                    let to: usize = to.as_str()[1..].parse().expect("a test node");
                    self.engines[to].handle_frame(self.now, &name(from), frame);
                }
            }
            if !carried {
                return;
            }
        }
    }

    fn take_sent(&mut self) -> HashMap<FrameType, (u64, u64)> {
        std::mem::take(&mut self.sent)
    }

    /// Whether every engine knows every origin as far as the first and reads the same
    /// values (cheap enough to ask every round).
    fn agree(&self) -> bool {
        let first = self.engines[0].state();
        let (digest, values) = (first.digest(), first.values().collect::<Vec<_>>());
        self.engines[1..]
            .iter()
            .all(|e| e.state().digest() == digest && e.state().values().eq(values.clone()))
    }

    /// Runs rounds until every engine holds the same state; returns how many it took.
    fn converge_within(&mut self, rounds: usize) -> usize {
        for round in 1..=rounds {
            self.round();
            if self.agree() {
                let all = self.engines[0].state().to_deltas();
                for e in &self.engines[1..] {
                    assert_eq!(e.state().to_deltas(), all);
                }
                return round;
            }
        }
        panic!("not converged after {rounds} rounds");
    }
}

fn total_bytes(sent: &HashMap<FrameType, (u64, u64)>) -> u64 {
    sent.values().map(|(_, bytes)| bytes).sum()
}

#[test]
fn a_hundred_thousand_origins_keep_anti_entropy_working_at_bounded_idle_bytes() {
    let origins = 100_000;
    let base = many_origins(origins);
    let full_digest = codec::encoded_len(&Frame::Syn {
        digest: base.digest(),
    });
    let mut net = Net::new(
        vec![base.clone(), base.clone(), base],
        codec::DEFAULT_MAX_PAYLOAD,
    );

    // Idle: each node sends each peer one summary a round, nothing else.
    net.round();
    net.take_sent();
    let rounds = 5;
    let started = std::time::Instant::now();
    for _ in 0..rounds {
        net.round();
    }
    let per_idle_round = started.elapsed() / rounds as u32;
    let idle = net.take_sent();
    let summary_frame = (codec::HEADER_LEN + summary::summary_len(summary::MAX_BITS)) as u64;
    assert_eq!(
        summary::bits_for(origins, codec::DEFAULT_MAX_PAYLOAD),
        summary::MAX_BITS
    );
    let per_round = total_bytes(&idle) / rounds as u64;
    println!(
        "{origins} origins, 3 nodes: {per_round} bytes per idle round ({} per node and peer), \
         against {full_digest} bytes for one whole digest; {per_idle_round:?} of this \
         process's time per idle round",
        per_round / 6
    );
    assert_eq!(idle.keys().collect::<Vec<_>>(), vec![&FrameType::Summary]);
    assert_eq!(per_round, 6 * summary_frame);

    // A few differences cost a finer summary of their buckets and pages of a few origins.
    let gone = |i: usize| Origin::new(format!("gone-{i:06}"), i as u64);
    for i in [7, 70_007] {
        let delta = change(&gone(i), 2);
        net.engines[1].handle_frame(net.now, &name(9), Frame::Push { delta: vec![delta] });
        net.engines[1].drain_outputs();
    }
    let took = net.converge_within(2);
    let few = net.take_sent();
    let few_bytes = total_bytes(&few) - took as u64 * 6 * summary_frame;
    println!("2 origins moved on: converged in {took} round(s), {few_bytes} bytes beyond the summaries: {few:?}");
    assert!(few_bytes < 16 * 1024, "{few:?}");

    // Differences on every side: node 1 learns later changes of a thousand old origins,
    // node 2 hears of a thousand new ones, node 0 writes under its own origin.
    let pushed = |e: &mut Engine, delta: OriginDelta| {
        e.handle_frame(Duration::ZERO, &NodeName::new("elsewhere").unwrap(), {
            Frame::Push { delta: vec![delta] }
        });
        e.drain_outputs();
    };
    for i in (0..origins).step_by(100) {
        pushed(&mut net.engines[1], change(&gone(i), 2));
        pushed(
            &mut net.engines[2],
            change(&Origin::new("new", i as u64), 1),
        );
    }
    let zero = &mut net.engines[0];
    let increment = gctr::crdt::LocalOp {
        counter: "c0".into(),
        kind: gctr::crdt::OpKind::Increment,
        amount: 5,
        key: None,
    };
    let batch = zero.prepare_local(&[increment], 0, &[]);
    zero.apply_local(net.now, &batch);
    zero.drain_outputs();

    let took = net.converge_within(10);
    let busy = net.take_sent();
    println!("converged after {took} round(s), sending {busy:?} (frames, bytes) by type");
    // Each old origin counted 1, a thousand and two of them 2 more, a thousand new
    // ones 1, and 5.
    let expected = origins as i64 + 1002 * 2 + 1000 + 5;
    for e in &net.engines {
        assert_eq!(e.state().origin_count(), origins + 1000 + 1);
        assert_eq!(e.state().values().map(|(_, v)| v).sum::<i64>(), expected);
    }

    // Idle again: back to summaries alone.
    net.round();
    net.take_sent();
    net.round();
    let idle = net.take_sent();
    assert_eq!(idle.keys().collect::<Vec<_>>(), vec![&FrameType::Summary]);
    assert_eq!(total_bytes(&idle), 6 * summary_frame);
}

#[test]
fn replicas_apart_on_many_origins_converge_through_pages_at_the_smallest_frame() {
    let max = gctr::engine::MIN_PAYLOAD;
    let mut a = many_origins(3000);
    let mut b = many_origins(2000);
    // b knows some of a's origins further, a some of b's.
    for i in (0..2000).step_by(7) {
        b.apply_delta(&change(&Origin::new(format!("gone-{i:06}"), i as u64), 2));
    }
    for i in (0..2000).step_by(11) {
        a.apply_delta(&change(&Origin::new(format!("gone-{i:06}"), i as u64), 2));
    }
    let mut net = Net::new(vec![a, b], max);
    let took = net.converge_within(5);
    let sent = net.take_sent();
    println!("converged after {took} round(s): {sent:?}");
    assert!(sent.contains_key(&FrameType::Summary) && sent.contains_key(&FrameType::Page));
    assert!(!sent.contains_key(&FrameType::Syn));
    assert_eq!(net.engines[0].state().origin_count(), 3000);
}

#[test]
fn a_small_digest_still_goes_whole() {
    let state = many_origins(20);
    assert!(codec::digest_len(&state.digest()) <= FULL_DIGEST_BYTES);
    let mut net = Net::new(vec![state, State::new()], codec::DEFAULT_MAX_PAYLOAD);
    net.converge_within(2);
    let sent = net.take_sent();
    assert!(sent.contains_key(&FrameType::Syn));
    assert!(!sent.contains_key(&FrameType::Summary));
}

/// Node 1's digest as node 0 last saw it, in origin order.
fn seen(net: &Net) -> Vec<(Origin, u64)> {
    let mut seen: Vec<(Origin, u64)> = net.engines[0]
        .peer_digest(&name(1))
        .map(|d| d.iter().map(|(o, &v)| (o.clone(), v)).collect())
        .unwrap_or_default();
    seen.sort();
    seen
}

fn as_pairs(digest: Digest) -> Vec<(Origin, u64)> {
    digest
        .into_iter()
        .map(|ov| (ov.origin, ov.version))
        .collect()
}

#[test]
fn a_peers_last_digest_is_only_ever_a_whole_one() {
    // What idempotency keys' stability is decided by: a peer's last digest. A summary
    // that agrees with this node's whole digest stands for it; a summary that agrees only
    // in part, and the pages that follow, change nothing.
    let mut net = Net::alike(2, 1000);
    net.round();
    let before = as_pairs(net.engines[1].state().digest());
    assert_eq!(seen(&net), before);

    // Node 1 moves on in one bucket: node 0 learns of it within the round, from pages,
    // and keeps node 1's last whole digest until a summary agrees with all it holds.
    let moved = Origin::new("gone-000042", 42);
    let delta = change(&moved, 2);
    net.engines[1].handle_frame(net.now, &name(9), Frame::Push { delta: vec![delta] });
    net.engines[1].drain_outputs();
    let moved_on = net.engines[1].state().clone();
    let partial = Frame::Summary {
        span: Span::ALL,
        bits: 8,
        wants_whole: 0,
        hashes: moved_on.bucket_hashes(Span::ALL, 8),
    };
    net.engines[0].handle_frame(net.now, &name(1), partial);
    net.engines[0].drain_outputs();
    assert_eq!(seen(&net), before);
    net.round();
    assert_eq!(net.engines[0].state().known(&moved), 2);
    net.round();
    assert_eq!(seen(&net), as_pairs(moved_on.digest()));

    // A peer heard of only by partial summaries has no last digest at all.
    let mut fresh = Net::new(
        vec![many_origins(1000), State::new()],
        codec::DEFAULT_MAX_PAYLOAD,
    );
    let partial = Frame::Summary {
        span: Span::ALL,
        bits: 8,
        wants_whole: 0,
        hashes: many_origins(999).bucket_hashes(Span::ALL, 8),
    };
    fresh.engines[0].handle_frame(fresh.now, &name(1), partial);
    assert_eq!(fresh.engines[0].peer_digest(&name(1)), None);
}

/// Runs node 0's timer `after` from now and returns the whole-digest request of each
/// summary it sent (0 for none), leaving the frames unsent.
fn requests_after(net: &mut Net, after: Duration) -> Vec<u64> {
    net.now += after;
    net.engines[0].handle_timer(net.now);
    net.engines[0]
        .drain_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::Send {
                frame: Frame::Summary { wants_whole, .. },
                ..
            } => Some(wants_whole),
            _ => None,
        })
        .collect()
}

/// Retiring origins needs whole digests too, but can wait: asked for every 10 s, a
/// node asks each peer that seldom.
#[test]
fn a_node_that_needs_whole_digests_seldom_asks_that_seldom() {
    let mut net = Net::alike(2, 1000);
    let every = gctr::node_core::RETIRE_DIGEST_INTERVAL;
    net.engines[0].set_needs_whole_digests(Some(every));
    net.round();
    assert!(net.take_sent().contains_key(&FrameType::Page));
    asks_again_only_after(&mut net, every);
}

/// Runs rounds of `net` for `interval` (the first peer asked its peers for whole
/// digests just before): summaries only until it has passed, then pages again.
fn asks_again_only_after(net: &mut Net, interval: Duration) {
    let rounds = (interval.as_millis() / DEFAULT_GOSSIP_INTERVAL.as_millis()) as usize;
    for _ in 1..rounds {
        net.round();
    }
    assert_eq!(
        net.take_sent().keys().collect::<Vec<_>>(),
        vec![&FrameType::Summary]
    );
    net.round();
    assert!(net.take_sent().contains_key(&FrameType::Page));
}

#[test]
fn a_node_that_needs_whole_digests_asks_each_peer_for_one_once_a_second() {
    // Writes in flight can keep summaries from ever agreeing in every bucket, so a node
    // deciding keys' stability asks for whole digests: pages of one moment.
    let mut net = Net::alike(2, 1000);
    net.engines[0].set_needs_whole_digests(Some(gctr::engine::WHOLE_DIGEST_INTERVAL));
    let delta = change(&Origin::new("gone-000042", 42), 2);
    net.engines[1].handle_frame(net.now, &name(9), Frame::Push { delta: vec![delta] });
    net.engines[1].drain_outputs();
    let moved_on = net.engines[1].state().clone();
    net.round();
    assert_eq!(seen(&net), as_pairs(moved_on.digest()));
    assert!(net.take_sent().contains_key(&FrameType::Page));

    // Converged, it asks again only once WHOLE_DIGEST_INTERVAL has passed.
    let interval = gctr::engine::WHOLE_DIGEST_INTERVAL;
    asks_again_only_after(&mut net, interval);

    // Pages of a whole digest are gathered in order, and only those answering the last
    // request: a page dropped on the way must not splice two answers into one.
    let mut fresh = Net::new(
        vec![many_origins(1000), State::new()],
        codec::DEFAULT_MAX_PAYLOAD,
    );
    fresh.engines[0].set_needs_whole_digests(Some(gctr::engine::WHOLE_DIGEST_INTERVAL));
    let ask = |net: &mut Net| match requests_after(net, interval)[..] {
        [request] if request != 0 => request,
        ref other => panic!("requests {other:?}"),
    };
    let (earlier, last) = (ask(&mut fresh), ask(&mut fresh));
    let page = |request: u64, lo: u64, hi: u64| Frame::Page {
        span: Span { lo, hi },
        reply: false,
        whole: request,
        digest: Vec::new(),
    };
    let gathered = |net: &mut Net, pages: Vec<Frame>| {
        for page in pages {
            net.engines[0].handle_frame(net.now, &name(1), page);
        }
        net.engines[0].peer_digest(&name(1)).cloned()
    };
    let spliced = vec![
        page(earlier, 0, 99),
        page(last, 100, 199),
        page(last, 200, u64::MAX),
    ];
    assert_eq!(gathered(&mut fresh, spliced), None);
    let skipping = vec![page(last, 0, 99), page(last, 200, u64::MAX)];
    assert_eq!(gathered(&mut fresh, skipping), None);
    let stale = vec![page(earlier, 0, 99), page(earlier, 100, u64::MAX)];
    assert_eq!(gathered(&mut fresh, stale), None);
    let whole = vec![
        page(last, 0, 99),
        page(last, 100, 199),
        page(last, 200, u64::MAX),
    ];
    assert_eq!(gathered(&mut fresh, whole), Some(HashMap::new()));
}

#[test]
fn another_origins_unresolved_keys_are_no_reason_to_ask_for_whole_digests() {
    // A key whose winner is gone stays unresolved on every node for good; only its
    // acceptor decides it, so only this node's own acceptances make it ask.
    let mut state = many_origins(1000);
    let mut accept = CounterEntry::plain("c", 0, 0, 1);
    accept.keyed = Some(Box::new(gctr::crdt::Keyed::Accept(gctr::crdt::KeyAccept {
        key: "k".into(),
        kind: gctr::crdt::OpKind::Increment,
        amount: 1,
        at_ms: 0,
    })));
    state.apply_delta(&OriginDelta {
        origin: Origin::new("gone-for-good", 1),
        from: 0,
        to: 1,
        entries: vec![accept],
    });
    assert_eq!(state.unresolved_acceptances(), 1);
    let mut net = Net::new(vec![state, State::new()], codec::DEFAULT_MAX_PAYLOAD);
    assert_eq!(requests_after(&mut net, DEFAULT_GOSSIP_INTERVAL), vec![0]);
}

#[test]
fn changes_held_past_a_gap_count_in_a_summary() {
    // Both replicas know origin O up to 5 and lack its version 6; one holds 7 and 8,
    // the other 8 alone. Their summaries must differ until both hold 7.
    let o = Origin::new("o", 1);
    let upto = |state: &mut State, from: u64, versions: &[u64]| {
        let entries = versions
            .iter()
            .map(|&v| CounterEntry::plain(format!("x{v}"), v, 0, v))
            .collect();
        let to = *versions.last().expect("versions");
        state.apply_delta(&OriginDelta {
            origin: o.clone(),
            from,
            to,
            entries,
        });
    };
    let (mut a, mut b) = (many_origins(500), many_origins(500));
    for state in [&mut a, &mut b] {
        upto(state, 0, &[1, 2, 3, 4, 5]);
    }
    upto(&mut a, 6, &[7, 8]);
    upto(&mut b, 7, &[8]);
    assert_eq!(a.known(&o), 5);
    assert_eq!(b.known(&o), 5);
    let mut net = Net::new(vec![a, b], codec::DEFAULT_MAX_PAYLOAD);
    net.converge_within(3);
    assert_eq!(net.engines[1].state().value("x7"), 7);
}

#[test]
fn an_origin_of_which_nothing_is_held_costs_an_idle_round_nothing() {
    // A record at version 0 (heard of, nothing held) says what no record says.
    let mut a = many_origins(500);
    a.apply_delta(&OriginDelta {
        origin: Origin::new("empty", 1),
        from: 0,
        to: 0,
        entries: Vec::new(),
    });
    let mut net = Net::new(vec![a, many_origins(500)], codec::DEFAULT_MAX_PAYLOAD);
    net.round();
    net.take_sent();
    net.round();
    let idle = net.take_sent();
    assert_eq!(idle.keys().collect::<Vec<_>>(), vec![&FrameType::Summary]);
}

#[test]
fn a_page_with_an_origin_outside_its_span_is_refused_and_changes_nothing() {
    let origin = Origin::new("x", 1);
    let hash = summary::origin_hash(&origin);
    let span = if hash > 0 {
        Span {
            lo: 0,
            hi: hash - 1,
        }
    } else {
        Span {
            lo: 1,
            hi: u64::MAX,
        }
    };
    let page = Frame::Page {
        span,
        reply: true,
        whole: 0,
        digest: vec![OriginVersion { origin, version: 5 }],
    };
    assert!(codec::decode(&codec::encode(&page), codec::DEFAULT_MAX_PAYLOAD).is_err());

    // A runtime that hands frames over as sent (JSON) gets no further with it.
    let mut net = Net::new(vec![many_origins(1000)], codec::DEFAULT_MAX_PAYLOAD);
    let before = net.engines[0].state().digest();
    net.engines[0].handle_frame(net.now, &name(1), page);
    let wrong_size = Frame::Summary {
        span: Span::ALL,
        bits: 3,
        wants_whole: 1,
        hashes: vec![0; 5],
    };
    let backwards = Frame::Summary {
        span: Span { lo: 9, hi: 8 },
        bits: 0,
        wants_whole: 1,
        hashes: vec![0],
    };
    for summary in [wrong_size, backwards] {
        net.engines[0].handle_frame(net.now, &name(1), summary);
    }
    let outputs: Vec<Output> = net.engines[0]
        .drain_outputs()
        .into_iter()
        .filter(|o| matches!(o, Output::Send { .. }))
        .collect();
    assert_eq!(outputs, vec![]);
    assert_eq!(net.engines[0].state().digest(), before);
}
