//! Eager push, coalesced: what a node still has to push, when its next push batch may
//! leave, and whom it goes to. I/O-free like the engine that drives it.
//!
//! A push batch carries, per origin, every change above the version noted for it: the
//! node's own writes and what pushes taught it, since its last batch. At most one batch
//! leaves per *push window*: a change that finds the window free goes at once, later
//! ones wait for the window to end and share one frame per target. So a node sends at
//! most one push frame per target per window whatever the write rate, and the cost of
//! spreading writes follows the time they take, not their number.
//!
//! Targets ([`targets`]): every peer in a cluster of up to [`MESH_NODES`] nodes (a mesh:
//! each change reaches every node in one hop, and nobody passes pushes on); beyond, two
//! peers in a binary de Bruijn graph over the cluster's nodes in name order. There each
//! node passes what it learned from a push on to its own two, once (the "seen" rule: a
//! push that teaches nothing goes no further), so a change reaches every node within
//! ⌈log2 n⌉ hops, and each node receives it from at most a few others.
//!
//! The window ([`window`]) grows with the cluster: a cluster sends about as many push
//! frames per second at 50 nodes as at 10, and each node's share shrinks as it grows.

use crate::crdt::{Origin, OriginDelta};
use crate::member::NodeName;
use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

/// Clusters up to this size push to every peer: one hop, and few frames in all.
pub const MESH_NODES: usize = 5;
/// The automatic push window per node in the cluster.
pub const WINDOW_PER_NODE: Duration = Duration::from_micros(280);
/// The shortest automatic push window.
pub const MIN_WINDOW: Duration = Duration::from_millis(2);

/// How long a push window lasts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PushWindow {
    /// [`WINDOW_PER_NODE`] per node in the cluster, from [`MIN_WINDOW`] to a quarter of
    /// the gossip interval.
    #[default]
    Auto,
    /// The same window at any cluster size.
    Fixed(Duration),
}

/// The window for a cluster of `nodes` nodes gossiping every `gossip_interval`.
pub fn window(setting: PushWindow, nodes: usize, gossip_interval: Duration) -> Duration {
    match setting {
        PushWindow::Fixed(w) => w,
        PushWindow::Auto => {
            let longest = (gossip_interval / 4).max(MIN_WINDOW);
            (WINDOW_PER_NODE * nodes as u32).clamp(MIN_WINDOW, longest)
        }
    }
}

/// Whether a node with `peers` peers pushes to all of them (and passes nothing on).
pub fn is_mesh(peers: usize) -> bool {
    peers < MESH_NODES
}

/// Whom the push batches of `me` go to, given its peers in name order. In a cluster of
/// `n` nodes numbered by name, node `i` sends to nodes `2i` and `2i + 1` modulo `n` (the
/// next nodes after `i` in place of itself or a repeat): a graph in which every node
/// reaches every other within ⌈log2 n⌉ hops, for any `n`.
pub fn targets(me: &NodeName, peers: &[NodeName]) -> Vec<NodeName> {
    if is_mesh(peers.len()) {
        return peers.to_vec();
    }
    let n = peers.len() + 1;
    let i = peers.partition_point(|p| p < me);
    let mut chosen: Vec<usize> = Vec::with_capacity(2);
    for j in [2 * i % n, (2 * i + 1) % n]
        .into_iter()
        .chain((1..n).map(|k| (i + k) % n))
    {
        if j != i && !chosen.contains(&j) {
            chosen.push(j);
        }
        if chosen.len() == 2 {
            break;
        }
    }
    // Node numbers count `me`; peers do not.
    chosen
        .into_iter()
        .map(|j| peers[if j < i { j } else { j - 1 }].clone())
        .collect()
}

/// What waits for the next push batch, and when the last one left.
#[derive(Debug, Default)]
pub struct PushQueue {
    /// Per origin, the version above which changes wait to be pushed.
    waiting: BTreeMap<Origin, u64>,
    /// Per origin, the highest version this node's batches vouched for.
    passed: BTreeMap<Origin, u64>,
    /// Per origin, the version above which a batch carried changes beyond a gap without
    /// vouching for their range: when this node fills the gap, its targets are owed the
    /// range.
    owed: BTreeMap<Origin, u64>,
    last_batch: Option<Duration>,
}

impl PushQueue {
    /// The changes of `origin` above version `after` wait for the next batch.
    pub fn hold(&mut self, origin: &Origin, after: u64) {
        self.waiting
            .entry(origin.clone())
            .and_modify(|v| *v = (*v).min(after))
            .or_insert(after);
    }

    /// A push carried `delta`: if it reaches beyond what this node's batches vouched for
    /// (however this node learned it: a push, or an anti-entropy round that came first),
    /// its changes wait for the next batch; returns whether they do. A push that carries
    /// nothing new in this sense goes no further.
    pub fn carry_on(&mut self, delta: &OriginDelta) -> bool {
        let passed = self.passed.get(&delta.origin).copied();
        if passed.is_some_and(|p| delta.to <= p) {
            return false;
        }
        self.hold(&delta.origin, passed.unwrap_or(delta.from));
        true
    }

    /// This node now knows more of `origin`: if a batch left a gap in it, the range it
    /// could not vouch for waits for the next batch.
    pub fn gap_filled(&mut self, origin: &Origin) {
        if let Some(after) = self.owed.remove(origin) {
            self.hold(origin, after);
        }
    }

    /// Per origin, the version above which its changes wait.
    pub fn waiting(&self) -> Vec<(Origin, u64)> {
        self.waiting.iter().map(|(o, v)| (o.clone(), *v)).collect()
    }

    /// When the next batch may leave: `None` when nothing waits.
    pub fn deadline(&self, window: Duration) -> Option<Duration> {
        if self.waiting.is_empty() {
            return None;
        }
        Some(self.last_batch.map_or(Duration::ZERO, |t| t + window))
    }

    /// Whether a batch may leave at `now`.
    pub fn due(&self, now: Duration, window: Duration) -> bool {
        self.deadline(window).is_some_and(|t| now >= t)
    }

    /// A batch left at `now` with the frame `sent`, out of the frames the waiting
    /// changes filled; `rest` is what did not fit and waits for the next window (each
    /// cut delta's range resumes where the sent one stopped).
    pub fn sent(&mut self, now: Duration, sent: &[OriginDelta], rest: &[Vec<OriginDelta>]) {
        let continuing: HashSet<&Origin> = rest.iter().flatten().map(|d| &d.origin).collect();
        for d in sent {
            let passed = self.passed.entry(d.origin.clone()).or_insert(d.to);
            *passed = (*passed).max(d.to);
            if continuing.contains(&d.origin) {
                self.waiting.insert(d.origin.clone(), d.to);
            }
            if d.entries.iter().any(|e| e.version > d.to) {
                let after = self.owed.get(&d.origin).map_or(d.from, |v| d.from.min(*v));
                self.owed.insert(d.origin.clone(), after);
            } else {
                self.owed.remove(&d.origin);
            }
        }
        self.waiting.retain(|o, _| continuing.contains(o));
        self.last_batch = Some(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    fn names(n: usize) -> Vec<NodeName> {
        let mut v: Vec<NodeName> = (0..n)
            .map(|i| NodeName::new(&format!("node-{i:04}")).unwrap())
            .collect();
        v.sort();
        v
    }

    /// Hops from `from` to every node, following each node's own targets.
    fn hops(all: &[NodeName], from: usize) -> Vec<Option<usize>> {
        let mut dist = vec![None; all.len()];
        dist[from] = Some(0);
        let mut queue = VecDeque::from([from]);
        while let Some(u) = queue.pop_front() {
            let peers: Vec<NodeName> = all.iter().filter(|p| **p != all[u]).cloned().collect();
            for t in targets(&all[u], &peers) {
                let v = all.iter().position(|p| *p == t).unwrap();
                if dist[v].is_none() {
                    dist[v] = Some(dist[u].unwrap() + 1);
                    queue.push_back(v);
                }
            }
        }
        dist
    }

    #[test]
    fn every_node_reaches_every_other_within_log2_n_hops() {
        for n in 2..=130 {
            let all = names(n);
            let bound = if n <= MESH_NODES {
                1
            } else {
                (n as f64).log2().ceil() as usize
            };
            for from in 0..n {
                let dist = hops(&all, from);
                let worst = dist.iter().map(|d| d.expect("reached")).max().unwrap();
                assert!(worst <= bound, "n = {n}, from {from}: {worst} hops");
            }
        }
    }

    #[test]
    fn a_small_cluster_pushes_to_every_peer_and_a_large_one_to_two() {
        let all = names(5);
        assert_eq!(targets(&all[2], &[all[0].clone(), all[1].clone()]).len(), 2);
        let peers: Vec<NodeName> = all[1..].to_vec();
        assert_eq!(targets(&all[0], &peers), peers);
        let all = names(50);
        for me in &all {
            let peers: Vec<NodeName> = all.iter().filter(|p| *p != me).cloned().collect();
            let t = targets(me, &peers);
            assert!(t.len() == 2 && !t.contains(me), "{t:?}");
        }
    }

    #[test]
    fn the_automatic_window_grows_with_the_cluster_within_bounds() {
        let interval = Duration::from_millis(100);
        let w = |n| window(PushWindow::Auto, n, interval);
        assert_eq!(w(1), MIN_WINDOW);
        assert_eq!(w(50), Duration::from_millis(14));
        assert_eq!(w(10_000), Duration::from_millis(25));
        let fixed = PushWindow::Fixed(Duration::from_millis(3));
        assert_eq!(window(fixed, 50, interval), Duration::from_millis(3));
    }

    #[test]
    fn a_batch_waits_for_the_window_and_keeps_what_did_not_fit() {
        let ms = Duration::from_millis;
        let (a, b) = (Origin::new("a", 1), Origin::new("b", 1));
        let mut q = PushQueue::default();
        assert_eq!(q.deadline(ms(5)), None);
        q.hold(&a, 4);
        q.hold(&a, 6);
        assert!(q.due(ms(0), ms(5)), "the first batch goes at once");
        assert_eq!(q.waiting(), vec![(a.clone(), 4)]);
        q.hold(&b, 0);
        let cut = OriginDelta {
            origin: b.clone(),
            from: 0,
            to: 9,
            entries: Vec::new(),
        };
        let rest = vec![OriginDelta {
            from: 9,
            to: 12,
            ..cut.clone()
        }];
        q.sent(ms(10), &[cut], &[rest]);
        assert_eq!(q.waiting(), vec![(b, 9)], "a went whole, b resumes at 9");
        assert_eq!(q.deadline(ms(5)), Some(ms(15)));
        assert!(!q.due(ms(14), ms(5)) && q.due(ms(15), ms(5)));
    }
}
