//! Unit tests of the membership core, driven by hand: records in, outputs and views out.

use super::*;
use proptest::prelude::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn nn(name: &str) -> NodeName {
    NodeName::new(name).expect("a valid name")
}

fn member(name: &str, incarnation: u64, started_at: u64) -> Member {
    Member {
        name: nn(name),
        incarnation,
        started_at,
        gossip_addr: format!("{name}:7946"),
        http_addr: format!("{name}:8080"),
    }
}

fn record(m: &Member, liveness: u64, state: State, by: &str) -> Update {
    Update {
        member: m.clone(),
        liveness,
        state,
        by: nn(by),
    }
}

fn alive(m: &Member) -> Update {
    record(m, 0, State::Alive, m.name.as_str())
}

/// A node named `name` with default settings and no seeds, at time 0.
fn node(name: &str, config: Config) -> Membership {
    Membership::new(member(name, 1, 1000), config, Vec::new(), 7, Duration::ZERO)
}

fn gossip(from: &str, updates: Vec<Update>) -> Message {
    Message::Gossip {
        from: nn(from),
        updates,
    }
}

fn held(m: &Membership, name: &str) -> Option<(u64, State)> {
    m.get(name).map(|u| (u.liveness, u.state))
}

fn sends(outputs: &[Output]) -> Vec<(&str, &Message)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Send { to, msg } => Some((to.as_str(), msg)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_later_run_wins_whatever_its_liveness_or_state() {
    let old = member("x", 5, 1000);
    let new_data = member("x", 3, 2000);
    assert!(alive(&new_data).supersedes(&record(&old, 9, State::Left, "y")));
    assert!(!record(&old, 9, State::Left, "y").supersedes(&alive(&new_data)));
    let same_start = member("x", 6, 1000);
    assert!(
        alive(&same_start).supersedes(&alive(&old)),
        "equal start stamps: the incarnation breaks the tie"
    );
}

#[test]
fn within_a_run_liveness_then_state_decide() {
    let x = member("x", 5, 1000);
    assert!(record(&x, 2, State::Alive, "x").supersedes(&record(&x, 1, State::Dead, "y")));
    let order = [State::Alive, State::Suspect, State::Dead, State::Left];
    for w in order.windows(2) {
        assert!(record(&x, 1, w[1], "y").supersedes(&record(&x, 1, w[0], "y")));
        assert!(!record(&x, 1, w[0], "y").supersedes(&record(&x, 1, w[1], "y")));
    }
    assert!(
        !record(&x, 1, State::Suspect, "a").supersedes(&record(&x, 1, State::Suspect, "b")),
        "the declarer is not part of the order"
    );
}

fn arb_record() -> impl Strategy<Value = Update> {
    (
        0u64..3,
        1000u64..1003,
        0u64..4,
        prop::sample::select(State::ALL.to_vec()),
    )
        .prop_map(|(inc, started, liveness, state)| {
            record(&member("x", inc, started), liveness, state, "y")
        })
}

proptest! {
    /// Any order of the same records, followed by one repair pass (a later full
    /// exchange), leaves every node holding the greatest record (or nothing, when no
    /// record was ever live: tombstones about unknown members are not adopted).
    #[test]
    fn views_converge_whatever_order_records_arrive_in(
        records in prop::collection::vec(arb_record(), 1..8),
        seed in any::<u64>(),
    ) {
        let mut shuffled = records.clone();
        fastrand::Rng::with_seed(seed).shuffle(&mut shuffled);
        let mut a = node("a", Config::default());
        let mut b = node("b", Config::default());
        for (n, order) in [(&mut a, &records), (&mut b, &shuffled)] {
            for pass in 0..2 {
                for r in order.iter() {
                    n.handle_message(ms(pass), "y:7946", gossip("y", vec![r.clone()]));
                }
            }
        }
        let max = records.iter().max_by_key(|r| r.key()).unwrap();
        let want = records.iter().any(|r| r.state.is_live()).then(|| max.key());
        prop_assert_eq!(a.get("x").map(Update::key), want);
        prop_assert_eq!(b.get("x").map(Update::key), want);
        prop_assert_eq!(a.get("x").map(Update::key), b.get("x").map(Update::key));
    }
}

#[test]
fn a_suspect_or_dead_claim_about_me_is_refuted_by_raising_liveness() {
    let mut n = node("me", Config::default());
    let mine = n.me().member.clone();
    n.drain_outputs();
    n.handle_message(
        ms(1),
        "y:7946",
        gossip("y", vec![record(&mine, 0, State::Suspect, "y")]),
    );
    assert_eq!((n.me().liveness, n.me().state), (1, State::Alive));
    assert_eq!(
        n.health_score(),
        1,
        "being suspected counts against local health"
    );
    assert_eq!(n.stats().refutations, 1);
    n.handle_message(
        ms(2),
        "y:7946",
        gossip("y", vec![record(&mine, 0, State::Dead, "y")]),
    );
    assert_eq!(n.me().liveness, 1, "a claim below my liveness is stale");
    n.handle_message(
        ms(3),
        "y:7946",
        gossip("y", vec![record(&mine, 4, State::Dead, "y")]),
    );
    assert_eq!((n.me().liveness, n.me().state), (5, State::Alive));
    let refutation = n.piggyback(10_000);
    assert!(
        refutation.contains(&record(&mine, 5, State::Alive, "me")),
        "the refutation is queued for gossip: {refutation:?}"
    );
}

#[test]
fn a_left_claim_about_me_is_accepted_and_only_a_join_undoes_it() {
    let mut n = node("me", Config::default());
    let mine = n.me().member.clone();
    n.drain_outputs();
    n.handle_message(
        ms(1),
        "op:7946",
        gossip("op", vec![record(&mine, 1, State::Left, "op")]),
    );
    assert_eq!((n.me().liveness, n.me().state), (1, State::Left));
    let changed = n.drain_outputs().into_iter().any(
        |o| matches!(o, Output::Changed(c) if c.member.name == "me" && c.to == Some(State::Left)),
    );
    assert!(changed, "the removal is reported");
    n.handle_message(
        ms(2),
        "y:7946",
        gossip("y", vec![record(&mine, 1, State::Dead, "y")]),
    );
    assert_eq!(n.me().state, State::Left, "a removed node does not refute");
    n.join(ms(3), "seed:7946");
    assert_eq!((n.me().liveness, n.me().state), (2, State::Alive));
    let out = n.drain_outputs();
    assert!(sends(&out).iter().any(|(to, m)| *to == "seed:7946"
        && matches!(
            m,
            Message::Full {
                want_reply: true,
                ..
            }
        )));
}

#[test]
fn records_of_other_runs_of_my_name() {
    let mut n = node("me", Config::default());
    let mine = n.me().member.clone();
    n.piggyback(100_000);
    n.piggyback(100_000);
    let older = member("me", 9, 500);
    n.handle_message(ms(1), "y:7946", gossip("y", vec![alive(&older)]));
    assert_eq!(n.me().member, mine, "an earlier run is stale");
    assert_eq!(
        n.pending_changes(),
        1,
        "and answered by spreading this run's record"
    );

    let ghost = member("me", 9, 5000);
    n.handle_message(
        ms(2),
        "y:7946",
        gossip("y", vec![record(&ghost, 3, State::Dead, "y")]),
    );
    assert_eq!(
        n.me().member.started_at,
        5001,
        "a dead later run: start just after it"
    );
    assert_eq!(n.me().state, State::Alive);

    let twin = member("me", 4, 9000);
    for t in 3..5 {
        n.handle_message(ms(t), "y:7946", gossip("y", vec![alive(&twin)]));
    }
    let conflicts = n
        .drain_outputs()
        .into_iter()
        .filter(|o| matches!(o, Output::NameConflict { other } if *other == twin))
        .count();
    assert_eq!(
        conflicts, 1,
        "a live later run is reported once, not fought"
    );
    assert_eq!(n.me().member.started_at, 5001);
}

#[test]
fn a_live_earlier_run_of_my_name_elsewhere_is_reported_once() {
    let mut n = node("me", Config::default());
    let here = member("me", 9, 500);
    n.handle_message(ms(1), "y:7946", gossip("y", vec![alive(&here)]));
    let elsewhere = Member {
        gossip_addr: "copy:7946".into(),
        ..member("me", 1, 600)
    };
    for t in 2..4 {
        n.handle_message(ms(t), "y:7946", gossip("y", vec![alive(&elsewhere)]));
    }
    let dead_elsewhere = Member {
        gossip_addr: "old:7946".into(),
        ..member("me", 1, 700)
    };
    n.handle_message(
        ms(5),
        "y:7946",
        gossip("y", vec![record(&dead_elsewhere, 0, State::Dead, "y")]),
    );
    let reported: Vec<Member> = n
        .drain_outputs()
        .into_iter()
        .filter_map(|o| match o {
            Output::OlderRun { other } => Some(other),
            _ => None,
        })
        .collect();
    assert_eq!(
        reported,
        vec![elsewhere],
        "the run at this node's own address is its past; a dead one is no process"
    );
}

#[test]
fn a_new_incarnation_is_a_new_run_that_supersedes_the_old_record() {
    let mut n = node("me", Config::default());
    let old = n.me().clone();
    n.renew_incarnation(ms(1), 77);
    let new = n.me().clone();
    assert_eq!(new.member.incarnation, 77);
    assert_eq!(new.state, State::Alive);
    assert!(new.supersedes(&old));
    assert!(n.pending_changes() >= 1, "the new record spreads");
    // Elsewhere the new record replaces the old one.
    let mut other = node("other", Config::default());
    other.handle_message(ms(1), "me:7946", gossip("me", vec![old]));
    other.handle_message(ms(2), "me:7946", gossip("me", vec![new.clone()]));
    assert_eq!(other.get("me"), Some(&new));
}

#[test]
fn past_the_member_cap_new_names_are_turned_away() {
    let mut n = node("me", Config::default());
    let members: Vec<Update> = (0..MAX_MEMBERS + 10)
        .map(|i| alive(&member(&format!("m{i}"), 1, 1000)))
        .collect();
    n.handle_message(
        ms(1),
        "m0:7946",
        Message::Full {
            from: nn("m0"),
            want_reply: false,
            members,
        },
    );
    assert_eq!(n.members().count(), MAX_MEMBERS);
    assert_eq!(
        n.stats().turned_away,
        11,
        "every name past the cap, none before"
    );
    // Known members still change.
    let back = record(&member("m1", 1, 1000), 1, State::Alive, "m1");
    n.handle_message(ms(2), "m1:7946", gossip("m1", vec![back]));
    assert_eq!(held(&n, "m1"), Some((1, State::Alive)));
}

#[test]
fn a_restart_replaces_the_old_entry_and_the_old_run_cannot_come_back() {
    let mut n = node("me", Config::default());
    let old = member("x", 1, 1000);
    let new = member("x", 2, 3000);
    n.handle_message(
        ms(1),
        "x:7946",
        gossip("x", vec![record(&old, 4, State::Alive, "x")]),
    );
    n.drain_outputs();
    n.handle_message(ms(2), "x:7946", gossip("x", vec![alive(&new)]));
    assert_eq!(n.get("x").unwrap().member, new);
    let out = n.drain_outputs();
    assert!(out
        .iter()
        .any(|o| matches!(o, Output::Changed(c) if c.new_run && c.from == Some(State::Alive))));
    n.handle_message(
        ms(3),
        "y:7946",
        gossip("y", vec![record(&old, 7, State::Alive, "x")]),
    );
    assert_eq!(
        n.get("x").unwrap().member,
        new,
        "an old run's record never flaps back"
    );
}

#[test]
fn tombstones_about_unknown_members_are_ignored() {
    let mut n = node("me", Config::default());
    let x = member("x", 1, 1000);
    n.handle_message(
        ms(1),
        "y:7946",
        gossip("y", vec![record(&x, 0, State::Dead, "y")]),
    );
    assert_eq!(n.get("x"), None);
    n.handle_message(
        ms(1),
        "y:7946",
        gossip("y", vec![record(&x, 0, State::Suspect, "y")]),
    );
    assert_eq!(
        held(&n, "x"),
        Some((0, State::Suspect)),
        "a suspect is still a member"
    );
}

#[test]
fn equal_records_give_equal_digests_and_a_change_changes_it() {
    let mut a = node("a", Config::default());
    let mut b = node("b", Config::default());
    let (ra, rb) = (a.me().clone(), b.me().clone());
    let c = alive(&member("c", 3, 1000));
    a.handle_message(ms(1), "c:7946", gossip("c", vec![c.clone(), rb]));
    b.handle_message(ms(1), "a:7946", gossip("a", vec![ra, c.clone()]));
    assert_eq!(a.digest(), b.digest());
    let before = a.digest();
    a.handle_message(
        ms(2),
        "x:7946",
        gossip("x", vec![record(&c.member, 0, State::Suspect, "x")]),
    );
    assert_ne!(a.digest(), before);
    b.on_digest(ms(3), "a:7946", a.digest());
    let out = b.drain_outputs();
    let full = sends(&out)
        .into_iter()
        .find_map(|(_, m)| match m {
            Message::Full { members, .. } => Some(members.clone()),
            _ => None,
        })
        .expect("a digest mismatch starts a full exchange");
    b.on_digest(ms(4), "a:7946", a.digest());
    assert!(sends(&b.drain_outputs()).is_empty(), "at most one per gap");
    assert_eq!(full, b.full_state());
}

/// Suspects `x` from `a` (a failed probe), in a cluster of `others` live members.
fn suspecting_node(others: &[&str]) -> Membership {
    let mut n = node("a", Config::default());
    let records = others.iter().map(|o| alive(&member(o, 1, 1000))).collect();
    n.handle_message(ms(0), "b:7946", gossip("b", records));
    let x = member("x", 1, 1000);
    n.handle_message(
        ms(0),
        "b:7946",
        gossip("b", vec![record(&x, 0, State::Suspect, "b")]),
    );
    n
}

#[test]
fn a_lone_suspicion_waits_the_longest_timeout() {
    let others = ["b", "c", "d", "e", "f", "g", "h", "i", "j", "x"];
    let mut n = suspecting_node(&others);
    let (min, max) = n.config().suspicion_bounds(11);
    n.handle_timer(max - ms(1));
    assert_eq!(held(&n, "x"), Some((0, State::Suspect)));
    n.handle_timer(max);
    assert_eq!(held(&n, "x"), Some((0, State::Dead)));
    assert!(min < max);
}

#[test]
fn confirmations_bring_the_suspicion_timeout_down_to_the_minimum() {
    let others = ["b", "c", "d", "e", "f", "g", "h", "i", "j", "x"];
    let mut n = suspecting_node(&others);
    let (min, _) = n.config().suspicion_bounds(11);
    let x = member("x", 1, 1000);
    for by in ["c", "d", "d", "e"] {
        n.handle_message(
            ms(10),
            "c:7946",
            gossip(by, vec![record(&x, 0, State::Suspect, by)]),
        );
    }
    n.handle_timer(min - ms(1));
    assert_eq!(held(&n, "x"), Some((0, State::Suspect)));
    n.handle_timer(min);
    assert_eq!(
        held(&n, "x"),
        Some((0, State::Dead)),
        "three confirmations: the shortest timeout"
    );
    let told = sends(&n.drain_outputs())
        .into_iter()
        .any(|(to, m)| to == "x:7946" && m.updates().iter().any(|u| u.state == State::Dead));
    assert!(
        told,
        "the member is told it was declared dead, so it can refute"
    );
}

#[test]
fn a_probe_that_gets_no_answer_asks_others_then_suspects() {
    let mut n = node("a", Config::default());
    let records = ["b", "c", "d", "e"]
        .iter()
        .map(|o| alive(&member(o, 1, 1000)))
        .collect();
    n.handle_message(ms(0), "b:7946", gossip("b", records));
    n.drain_outputs();
    let start = n.next_probe_at;
    n.handle_timer(start);
    let out = n.drain_outputs();
    let (target, seq) = sends(&out)
        .into_iter()
        .find_map(|(_, m)| match m {
            Message::Ping { target, seq, .. } => Some((target.clone(), *seq)),
            _ => None,
        })
        .expect("a probe round pings someone");
    n.handle_timer(start + n.config().probe_timeout);
    let out = n.drain_outputs();
    let reqs: Vec<_> = sends(&out)
        .into_iter()
        .filter(|(_, m)| matches!(m, Message::PingReq { seq: s, target: t, .. } if *s == seq && *t == target))
        .collect();
    assert_eq!(reqs.len(), 3, "k = 3 indirect probes");
    for (_, req) in &reqs {
        let Message::PingReq { updates, .. } = req else {
            unreachable!()
        };
        assert!(
            updates.iter().any(|u| u.member.name == target),
            "the target's record rides along, for a helper that has not heard of it"
        );
    }
    // One nack of three: two missing nacks count against this node's health.
    n.handle_message(
        start + ms(300),
        "c:7946",
        Message::Nack {
            seq,
            from: nn("c"),
            updates: vec![],
        },
    );
    n.handle_timer(start + n.config().probe_interval);
    assert_eq!(n.get(target.as_str()).unwrap().state, State::Suspect);
    assert_eq!(n.health_score(), 2);
    let told = sends(&n.drain_outputs()).into_iter().any(|(to, m)| {
        to == format!("{target}:7946") && m.updates().iter().any(|u| u.state == State::Suspect)
    });
    assert!(told, "Lifeguard tells the suspect at once");
}

#[test]
fn an_ack_in_time_ends_the_probe_and_improves_health() {
    let mut n = node("a", Config::default());
    n.handle_message(
        ms(0),
        "b:7946",
        gossip("b", vec![alive(&member("b", 1, 1000))]),
    );
    n.awareness_delta(3);
    let start = n.next_probe_at;
    n.handle_timer(start);
    let seq = n.probe.as_ref().expect("probing b").seq;
    n.handle_message(
        start + ms(5),
        "b:7946",
        Message::Ack {
            seq,
            from: nn("b"),
            updates: vec![],
        },
    );
    assert!(n.probe.is_none());
    assert_eq!(n.health_score(), 2);
}

#[test]
fn probe_messages_fit_one_datagram_however_much_is_queued() {
    let mut n = node("a", Config::default());
    let long = "n".repeat(120);
    let records: Vec<Update> = (0..300)
        .map(|i| {
            let mut m = member(&format!("{long}{i}"), i, 1000);
            m.gossip_addr = "g".repeat(200);
            alive(&m)
        })
        .collect();
    for chunk in records.chunks(20) {
        n.handle_message(ms(0), "b:7946", gossip("b", chunk.to_vec()));
    }
    n.drain_outputs();
    let start = n.next_probe_at;
    n.handle_timer(start);
    n.handle_timer(start + n.config().probe_timeout);
    let out = n.drain_outputs();
    let probe_lane: Vec<_> = sends(&out)
        .into_iter()
        .filter(|(_, m)| m.is_probe())
        .collect();
    assert!(!probe_lane.is_empty());
    for (_, m) in probe_lane {
        let len = wire::encoded_len(m);
        assert!(len <= MAX_PROBE_BYTES, "{} of {len} bytes", m.kind());
        assert!(!m.updates().is_empty(), "the budget is used");
    }
}

#[test]
fn leave_and_remove() {
    let mut n = node("a", Config::default());
    let b = member("b", 1, 1000);
    n.handle_message(ms(0), "b:7946", gossip("b", vec![alive(&b)]));
    assert!(!n.remove(ms(1), "nobody"));
    n.drain_outputs();
    assert!(n.remove(ms(1), "b"));
    assert_eq!(
        held(&n, "b"),
        Some((1, State::Left)),
        "liveness above b's own"
    );
    let out = n.drain_outputs();
    assert!(sends(&out)
        .iter()
        .any(|(to, m)| *to == "b:7946" && matches!(m, Message::Announce { .. })));
    assert!(!n.remove(ms(2), "b"), "already left");
    assert!(n.remove(ms(3), "a"), "removing oneself is a leave");
    assert_eq!(n.me().state, State::Left);
    assert!(n.gossip_targets().is_empty());
}

#[test]
fn a_message_from_a_member_held_dead_gets_it_told() {
    let mut n = node("a", Config::default());
    let x = member("x", 1, 1000);
    n.handle_message(ms(0), "x:7946", gossip("x", vec![alive(&x)]));
    n.handle_message(
        ms(0),
        "y:7946",
        gossip("y", vec![record(&x, 2, State::Dead, "y")]),
    );
    n.drain_outputs();
    n.handle_message(
        ms(1),
        "x:7946",
        Message::Sync {
            from: nn("x"),
            digest: 0,
            updates: vec![],
        },
    );
    let out = n.drain_outputs();
    let told = sends(&out).into_iter().any(|(to, m)| {
        to == "x:7946"
            && m.updates()
                .iter()
                .any(|u| u.member.name == "x" && u.state == State::Dead)
    });
    assert!(told);
}

/// A member shows it knows this node by probing it by name or by sending its full
/// membership with this node in it; gossip from it, a probe for another name, or a full
/// membership without this node show nothing.
#[test]
fn a_member_is_known_to_know_me_by_a_probe_by_name_or_a_full_membership_with_me() {
    let mut n = node("me", Config::default());
    let (a, b, c) = (
        member("a", 1, 1000),
        member("b", 1, 1000),
        member("c", 1, 1000),
    );
    n.handle_message(
        ms(1),
        "a:7946",
        gossip("a", vec![alive(&a), alive(&b), alive(&c)]),
    );
    let ping = |from: &str, target: &str| Message::Ping {
        seq: 1,
        from: nn(from),
        target: nn(target),
        updates: Vec::new(),
    };
    n.handle_message(ms(2), "a:7946", ping("a", "someone-else"));
    let me = alive(&member("me", 1, 1000));
    n.handle_message(
        ms(3),
        "c:7946",
        Message::Full {
            from: nn("c"),
            want_reply: false,
            members: vec![alive(&c)],
        },
    );
    assert!(!n.is_known_by(&nn("a")) && !n.is_known_by(&nn("c")));
    n.handle_message(ms(4), "a:7946", ping("a", "me"));
    n.handle_message(
        ms(5),
        "b:7946",
        Message::Full {
            from: nn("b"),
            want_reply: false,
            members: vec![alive(&b), me],
        },
    );
    assert!(n.is_known_by(&nn("a")) && n.is_known_by(&nn("b")));
    assert!(!n.is_known_by(&nn("c")));
}

/// A node asked to probe a member it holds no record of does not: its probe would tell
/// that member it is known here (see `known_by`). Requests carry the target's record, so
/// a helper that had not heard of it learns it and probes.
#[test]
fn a_ping_req_for_a_member_unknown_here_is_not_relayed() {
    let mut h = node("h", Config::default());
    let (r, t) = (member("r", 1, 1000), member("t", 1, 1000));
    h.handle_message(ms(1), "r:7946", gossip("r", vec![alive(&r)]));
    h.drain_outputs();
    let bare = Message::PingReq {
        seq: 9,
        from: nn("r"),
        target: nn("t"),
        target_addr: "t:7946".into(),
        updates: Vec::new(),
    };
    h.handle_message(ms(2), "r:7946", bare);
    let pinged = |h: &mut Membership| {
        let out = h.drain_outputs();
        sends(&out)
            .iter()
            .any(|(to, m)| *to == "t:7946" && matches!(m, Message::Ping { .. }))
    };
    assert!(!pinged(&mut h), "t is unknown to h");
    // A requester sends the target's record with its request: h then holds it, and probes.
    let with_record = Message::PingReq {
        seq: 10,
        from: nn("r"),
        target: nn("t"),
        target_addr: "t:7946".into(),
        updates: vec![alive(&t)],
    };
    h.handle_message(ms(3), "r:7946", with_record);
    assert!(pinged(&mut h), "t is a member h now knows");
}
