//! A node's metric families, from its [`NodeStatus`]. The README lists every family
//! with its meaning; a test parses them with a real Prometheus parser.

use super::{label, seconds, Families, Labels, BYTES, SECONDS};
use crate::codec::PerFrameType;
use crate::status::{
    KeyStats, KeyringStatus, NodeStatus, OpOutcomes, StorageStatus, MEMBER_STATES,
};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use std::fmt;

/// A node's status as metrics (one scrape).
#[derive(Debug)]
pub struct NodeMetrics(pub NodeStatus);

impl Collector for NodeMetrics {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        let mut f = Families(encoder);
        let s = &self.0;
        f.gauges(
            "gctr_node_info",
            "This node: its name and the origin it writes under (always 1).",
            None,
            [(
                vec![label("name", &s.name), label("origin", &s.origin)],
                1.0,
            )],
        )?;
        operations(&mut f, s)?;
        keys(&mut f, &s.keys)?;
        storage(&mut f, &s.storage)?;
        gossip(&mut f, s)?;
        transport(&mut f, s)?;
        cluster(&mut f, s)?;
        f.access(&s.access)?;
        if let Some(k) = &s.keyring {
            keyring(&mut f, k)?;
        }
        f.process(s.uptime_ms, &s.process)
    }
}

fn operations(f: &mut Families, s: &NodeStatus) -> fmt::Result {
    let by_outcome = |op: &'static str, o: &OpOutcomes| {
        [("ok", o.ok), ("refused", o.refused), ("failed", o.failed)]
            .map(|(result, n)| (vec![label("op", op), label("result", result)], n))
    };
    let r = &s.requests;
    f.counters(
        "gctr_ops",
        "Client increments and decrements by outcome: ok (durable, applied, acknowledged), \
         refused (bad input or overflow, nothing applied), failed (not made durable, or \
         writes held; nothing applied).",
        None,
        by_outcome("increment", &r.increment)
            .into_iter()
            .chain(by_outcome("decrement", &r.decrement)),
    )?;
    f.histogram(
        "gctr_op_duration",
        "Time from an operation's HTTP request received to its answer sent.",
        Some(&SECONDS),
        &s.latency.op_duration_seconds,
    )?;
    f.histogram(
        "gctr_group_commit_ops",
        "Operations per group commit (one durable write each).",
        None,
        &s.latency.group_commit_ops,
    )?;
    f.counter(
        "gctr_learned_log_failures",
        "Times state learned from peers could not be logged (peers resend it).",
        r.learned_log_failures,
    )?;
    f.gauges(
        "gctr_writes_held",
        "1 while writes are refused with 503: a restarted node's fence, or another live \
         process running under this node's name.",
        None,
        [(Labels::new(), if s.writes.writable { 0.0 } else { 1.0 })],
    )?;
    f.counter(
        "gctr_new_incarnations",
        "Times this run moved its writes to a new incarnation because a peer held its \
         origin beyond its log.",
        s.writes.new_incarnations,
    )
}

fn keys(f: &mut Families, k: &KeyStats) -> fmt::Result {
    f.gauge(
        "gctr_idempotency_keys",
        "Idempotency keys held: live ones and resolved ones kept (tombstones) until their \
         retention window ends.",
        None,
        k.held as f64,
    )?;
    f.gauge(
        "gctr_idempotency_live_acceptances",
        "Acceptances of idempotency keys not yet resolved by their acceptor (they wait for \
         every member to have seen the key).",
        None,
        k.live as f64,
    )?;
    f.counters(
        "gctr_idempotency_requests",
        "Keyed operations by outcome: accepted (first acceptance here), retry (recognised, \
         nothing applied), mismatch (the key was used for another operation: 422), \
         not_ready (this node had not caught up with a peer: 503).",
        None,
        [
            ("accepted", k.accepted),
            ("retry", k.retries),
            ("mismatch", k.mismatches),
            ("not_ready", k.not_ready),
        ]
        .map(|(outcome, n)| (vec![label("outcome", outcome)], n)),
    )?;
    f.counters(
        "gctr_idempotency_resolved",
        "This node's acceptances resolved once stable: folded into its totals (it won the \
         key) or passed (another acceptance won).",
        None,
        [("folded", k.folded), ("passed", k.resolved - k.folded)]
            .map(|(how, n)| (vec![label("how", how)], n)),
    )?;
    f.counter(
        "gctr_idempotency_expired",
        "Idempotency keys forgotten at the end of their retention window.",
        k.expired,
    )
}

fn storage(f: &mut Families, storage: &StorageStatus) -> fmt::Result {
    let (durable, wal) = match storage {
        StorageStatus::Memory(m) => (m.durable, None),
        StorageStatus::Wal(w) => (w.durable, w.wal.as_ref()),
    };
    f.gauge(
        "gctr_durable",
        "1 when every acknowledged write survives a crash (a WAL under --fsync always).",
        None,
        if durable { 1.0 } else { 0.0 },
    )?;
    let Some(wal) = wal else {
        return Ok(());
    };
    f.gauge(
        "gctr_wal",
        "Bytes in the write-ahead log's segments.",
        Some(&BYTES),
        wal.bytes as f64,
    )?;
    f.gauge(
        "gctr_wal_segments",
        "Segments of the write-ahead log on disk.",
        None,
        wal.segments as f64,
    )?;
    f.gauge(
        "gctr_wal_records_since_snapshot",
        "Records a restart would replay after the newest snapshot.",
        None,
        wal.records_since_snapshot as f64,
    )?;
    f.gauge(
        "gctr_wal_failed",
        "1 while a failed write could not yet be cut away from the log.",
        None,
        if wal.failed { 1.0 } else { 0.0 },
    )?;
    f.counter(
        "gctr_wal_fsyncs",
        "Fsyncs of the write-ahead log.",
        wal.fsyncs,
    )?;
    f.histogram(
        "gctr_fsync_duration",
        "Time each fsync of the write-ahead log took.",
        Some(&SECONDS),
        &wal.fsync_duration_seconds,
    )?;
    f.counter(
        "gctr_snapshots",
        "Snapshots this run wrote.",
        wal.snapshots_taken,
    )?;
    f.gauges(
        "gctr_snapshot_age",
        "Time since the newest snapshot was written (absent without one).",
        Some(&SECONDS),
        wal.snapshot_age_ms.map(|ms| (Labels::new(), seconds(ms))),
    )
}

fn gossip(f: &mut Families, s: &NodeStatus) -> fmt::Result {
    let g = &s.gossip.stats;
    f.counters(
        "gctr_gossip_frames",
        "Gossip frames received (in) and queued to send (out), by frame type.",
        None,
        by_type("in", &g.frames_in).chain(by_type("out", &g.frames_out)),
    )?;
    f.counters(
        "gctr_gossip",
        "Encoded bytes of gossip frames received (in) and queued to send (out), by frame type.",
        Some(&BYTES),
        by_type("in", &g.bytes_in).chain(by_type("out", &g.bytes_out)),
    )?;
    f.counter(
        "gctr_gossip_rounds",
        "Anti-entropy rounds started.",
        g.rounds,
    )?;
    f.counter(
        "gctr_gossip_rounds_skipped",
        "Anti-entropy rounds skipped because push batches left since the last one.",
        g.rounds_skipped,
    )?;
    f.counters(
        "gctr_gossip_entries",
        "Counter entries received (in) and sent (out) in deltas and pushes.",
        None,
        [
            (vec![label("direction", "in")], g.entries_in),
            (vec![label("direction", "out")], g.entries_out),
        ],
    )?;
    f.counter(
        "gctr_push_forwarded",
        "Pushes whose changes this node passed on with its next push batch.",
        g.forwarded,
    )?;
    f.counter(
        "gctr_push_batches",
        "Push batches sent (one frame per target, at most one batch per push window).",
        g.push_batches,
    )?;
    f.counter(
        "gctr_gap_repairs",
        "Immediate pulls made because a push revealed a gap.",
        g.repairs,
    )?;
    f.counter(
        "gctr_own_origin_claims",
        "Deltas and digests from peers that claimed this node's own origin beyond what it \
         wrote (never merged).",
        g.own_origin_claims,
    )?;
    f.counter(
        "gctr_digests_over_limit",
        "Syns and SynAcks not sent because this node's digest does not fit a gossip frame \
         (anti-entropy is stopped while it grows; see --max-frame).",
        g.digests_over_limit,
    )
}

/// One direction's per-frame-type figures as samples.
fn by_type<'a>(
    direction: &'static str,
    figures: &'a PerFrameType,
) -> impl Iterator<Item = (Labels, u64)> + 'a {
    figures.iter().map(move |(t, n)| {
        (
            vec![label("direction", direction), label("type", t.name())],
            n,
        )
    })
}

fn transport(f: &mut Families, s: &NodeStatus) -> fmt::Result {
    let t = &s.transport;
    f.counter(
        "gctr_queue_drops",
        "Frames dropped from full per-peer queues (the oldest go first).",
        t.queue_drops,
    )?;
    f.counter(
        "gctr_unroutable_frames",
        "Frames for a peer that had no connection any more.",
        t.unroutable_frames,
    )?;
    f.counter(
        "gctr_malformed_frames",
        "Inbound gossip connections closed for a malformed frame.",
        t.inbound.malformed_frames,
    )?;
    f.counters(
        "gctr_inbound_connections",
        "Inbound gossip connections accepted, or rejected because the most were open.",
        None,
        [
            (vec![label("result", "accepted")], t.inbound.accepted),
            (vec![label("result", "rejected")], t.inbound.rejected),
        ],
    )?;
    f.counter(
        "gctr_hello_timeouts",
        "Inbound gossip connections closed because no Hello came in time.",
        t.inbound.hello_timeouts,
    )?;
    f.gauge(
        "gctr_inbound_connections_open",
        "Inbound gossip connections open now.",
        None,
        t.inbound.open as f64,
    )
}

fn keyring(f: &mut Families, k: &KeyringStatus) -> fmt::Result {
    f.counters(
        "gctr_keyring_rejections",
        "Gossip refused by the keyring, per lane (tcp connections and frames, udp \
         datagrams) and reason; nothing refused changes anything.",
        None,
        k.rejections.iter().map(|r| {
            (
                vec![label("lane", r.lane), label("reason", r.reason)],
                r.count,
            )
        }),
    )?;
    f.gauges(
        "gctr_keyring_info",
        "The gossip keyring: its mode (open, keyed, strict) and primary key id (always 1).",
        None,
        [(
            vec![
                label("mode", k.mode.name()),
                label("primary", k.keys.first().map_or("", String::as_str)),
            ],
            1.0,
        )],
    )?;
    f.gauge(
        "gctr_keyring_keys",
        "Keys installed in the gossip keyring.",
        None,
        k.keys.len() as f64,
    )?;
    f.gauge(
        "gctr_keyring_version",
        "Version of the cluster keyring this node holds (0: its file, no command yet).",
        None,
        k.version as f64,
    )
}

fn cluster(f: &mut Families, s: &NodeStatus) -> fmt::Result {
    let count = |state: &str| s.members.iter().filter(|m| m.state == state).count();
    f.gauges(
        "gctr_members",
        "Members this node knows of (itself included) by state.",
        None,
        MEMBER_STATES.map(|state| (vec![label("state", state)], count(state) as f64)),
    )?;
    f.gauge(
        "gctr_counters",
        "Counters in the replicated state.",
        None,
        s.state.counters as f64,
    )?;
    f.gauge(
        "gctr_origins",
        "Origins (node incarnations) in the replicated state.",
        None,
        s.state.origins as f64,
    )?;
    f.gauge(
        "gctr_origins_retired",
        "Origins retired here: their totals are in the counters' retired sums.",
        None,
        s.state.origins_retired as f64,
    )?;
    f.gauge(
        "gctr_tombstone_entries",
        "(counter, origin) entries kept in retired origins' tombstones.",
        None,
        s.state.tombstone_entries as f64,
    )?;
    f.gauge(
        "gctr_origins_compacted",
        "Retired origins compacted here: their tombstones' entries gone, their totals in the compacted sums.",
        None,
        s.state.origins_compacted as f64,
    )?;
    f.counter(
        "gctr_compacted_changes_refused",
        "Changes of compacted origins refused: past the version they were compacted at.",
        s.state.compacted_changes_refused,
    )?;
    f.counters(
        "gctr_compaction_adoptions",
        "Peers' compactions adopted here (by origins compacted through them) and refused.",
        None,
        [
            (
                vec![label("outcome", "adopted_origins")],
                s.gossip.stats.compaction_adopted,
            ),
            (
                vec![label("outcome", "refused")],
                s.gossip.stats.compaction_refused,
            ),
        ],
    )?;
    f.counters(
        "gctr_retirements",
        "Origins retired here, and retirements undone because the origin wrote again.",
        None,
        [
            (vec![label("outcome", "done")], s.state.retirements),
            (vec![label("outcome", "undone")], s.state.retirements_undone),
        ],
    )?;
    f.gauge(
        "gctr_entries",
        "(counter, origin) entries in the replicated state.",
        None,
        s.state.entries as f64,
    )?;
    let per_peer = |value: fn(&crate::status::PeerReplication) -> f64| {
        s.replication
            .iter()
            .map(move |r| (vec![label("peer", &r.peer)], value(r)))
    };
    f.gauges(
        "gctr_replication_lag_versions",
        "Versions of this node's own writes the peer's latest digest lacked.",
        None,
        per_peer(|r| r.versions_behind as f64),
    )?;
    f.gauges(
        "gctr_replication_lag",
        "Age of the oldest own write the peer's latest digest lacked (0 when none).",
        Some(&SECONDS),
        per_peer(|r| seconds(r.behind_ms)),
    )?;
    f.gauges(
        "gctr_replication_digest_age",
        "Time since the peer's latest digest arrived.",
        Some(&SECONDS),
        per_peer(|r| seconds(r.digest_age_ms)),
    )
}
