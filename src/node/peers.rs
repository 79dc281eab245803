//! The node's peer table: every peer it knows by name, with the gossip and HTTP addresses
//! it announced (in its Hello, or through discovery), whether the outbound connection to
//! it is up, when it was last heard from, and why it is known; plus the seeds no known
//! peer answers for yet, which the node keeps contacting by address so that they learn of
//! it and greet it back. This table is what `GET /peers` shows.

use super::views::PeerView;
use crate::member::NodeName;
use crate::status::{millis, PeerCounts};
use std::collections::BTreeMap;
use std::time::Duration;

/// A member as a membership source (the discovery client) reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    pub name: NodeName,
    pub gossip_addr: String,
    pub http_addr: String,
}

#[derive(Clone, Debug)]
struct Peer {
    gossip_addr: String,
    http_addr: String,
    reachable: Option<bool>,
    last_heard: Option<Duration>,
    discovered: bool,
    greeted: bool,
}

/// What changed for a peer's outbound link after an update.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// Nothing the links care about.
    None,
    /// A new peer: open a link to this address.
    Added(String),
    /// A known peer moved: replace its link with one to this address.
    Moved(String),
}

/// Peers by name, and the seeds not yet matched to one. Never holds the node itself.
#[derive(Debug)]
pub struct PeerTable {
    own_name: NodeName,
    peers: BTreeMap<NodeName, Peer>,
    /// Seed addresses, with whether the last contact attempt connected.
    seeds: BTreeMap<String, Option<bool>>,
}

impl PeerTable {
    pub fn new(own_name: NodeName) -> PeerTable {
        PeerTable {
            own_name,
            peers: BTreeMap::new(),
            seeds: BTreeMap::new(),
        }
    }

    /// Adds a seed address; returns whether it is new.
    pub fn add_seed(&mut self, addr: &str) -> bool {
        self.seeds.insert(addr.to_owned(), None).is_none()
    }

    /// Whether `addr` is a seed no known peer answers for yet (the node contacts it by
    /// address).
    pub fn is_unanswered_seed(&self, addr: &str) -> bool {
        self.seeds.contains_key(addr) && !self.has_gossip_addr(addr)
    }

    /// Records a Hello from `name`.
    pub fn greeted(&mut self, info: &PeerInfo, now: Duration) -> Change {
        self.upsert(info, |p| {
            p.greeted = true;
            p.last_heard = Some(now);
        })
    }

    /// Records that a frame from `name` arrived.
    pub fn heard(&mut self, name: &NodeName, now: Duration) {
        if let Some(p) = self.peers.get_mut(name) {
            p.last_heard = Some(now);
        }
    }

    /// Takes the full member list of a membership source: listed peers are added or
    /// updated; peers known only from an earlier list and absent now are removed.
    /// Returns the changes for listed peers, and the names removed.
    pub fn set_membership(
        &mut self,
        members: &[PeerInfo],
    ) -> (Vec<(NodeName, Change)>, Vec<NodeName>) {
        for p in self.peers.values_mut() {
            p.discovered = false;
        }
        let changes = members
            .iter()
            .map(|m| (m.name.clone(), self.upsert(m, |p| p.discovered = true)))
            .filter(|(_, c)| *c != Change::None)
            .collect();
        let removed: Vec<NodeName> = self
            .peers
            .iter()
            .filter(|(_, p)| !(p.discovered || p.greeted))
            .map(|(name, _)| name.clone())
            .collect();
        for name in &removed {
            self.peers.remove(name);
        }
        (changes, removed)
    }

    /// Records whether the outbound connection to `name` is up; returns whether that is
    /// a change (the first report counts as one).
    pub fn set_reachable(&mut self, name: &NodeName, reachable: bool) -> bool {
        match self.peers.get_mut(name) {
            Some(p) => replace_reachable(&mut p.reachable, reachable),
            None => false,
        }
    }

    /// As [`PeerTable::set_reachable`], for a seed contacted by address.
    pub fn set_seed_reachable(&mut self, addr: &str, reachable: bool) -> bool {
        match self.seeds.get_mut(addr) {
            Some(r) => replace_reachable(r, reachable),
            None => false,
        }
    }

    pub fn contains(&self, name: &NodeName) -> bool {
        self.peers.contains_key(name)
    }

    /// How logs name a peer: `name (gossip address)`.
    pub fn label(&self, name: &NodeName) -> String {
        match self.peers.get(name) {
            Some(p) if p.gossip_addr != name.as_str() => format!("{name} ({})", p.gossip_addr),
            _ => name.to_string(),
        }
    }

    /// How many peers (and unanswered seeds) are known, and how many are reachable.
    pub fn counts(&self) -> PeerCounts {
        let views = self.views(Duration::ZERO);
        PeerCounts {
            known: views.len(),
            reachable: views.iter().filter(|p| p.reachable).count(),
        }
    }

    /// Named peers by name, then the unanswered seeds by address.
    pub fn views(&self, now: Duration) -> Vec<PeerView> {
        let named = self.peers.iter().map(|(name, p)| PeerView {
            name: Some(name.to_string()),
            gossip_addr: p.gossip_addr.clone(),
            http_addr: Some(p.http_addr.clone()),
            reachable: p.reachable == Some(true),
            last_heard_ms_ago: p.last_heard.map(|t| millis(now.saturating_sub(t))),
        });
        let seeds = self
            .seeds
            .iter()
            .filter(|(addr, _)| !self.has_gossip_addr(addr))
            .map(|(addr, reachable)| PeerView {
                name: None,
                gossip_addr: addr.clone(),
                http_addr: None,
                reachable: *reachable == Some(true),
                last_heard_ms_ago: None,
            });
        named.chain(seeds).collect()
    }

    fn has_gossip_addr(&self, addr: &str) -> bool {
        self.peers.values().any(|p| p.gossip_addr == addr)
    }

    /// Creates or updates the peer `info` names, then applies `mark`. The node itself is
    /// never added.
    fn upsert(&mut self, info: &PeerInfo, mark: impl FnOnce(&mut Peer)) -> Change {
        if info.name == self.own_name {
            return Change::None;
        }
        let change = match self.peers.get_mut(&info.name) {
            Some(p) if p.gossip_addr != info.gossip_addr => {
                p.gossip_addr.clone_from(&info.gossip_addr);
                p.reachable = None;
                Change::Moved(info.gossip_addr.clone())
            }
            Some(_) => Change::None,
            None => {
                self.peers.insert(
                    info.name.clone(),
                    Peer {
                        gossip_addr: info.gossip_addr.clone(),
                        http_addr: String::new(),
                        reachable: None,
                        last_heard: None,
                        discovered: false,
                        greeted: false,
                    },
                );
                Change::Added(info.gossip_addr.clone())
            }
        };
        let peer = self.peers.get_mut(&info.name).expect("just upserted");
        peer.http_addr.clone_from(&info.http_addr);
        mark(peer);
        change
    }
}

fn replace_reachable(slot: &mut Option<bool>, reachable: bool) -> bool {
    let changed = *slot != Some(reachable);
    *slot = Some(reachable);
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> NodeName {
        NodeName::new(s).unwrap()
    }

    fn member(n: &str) -> PeerInfo {
        PeerInfo {
            name: name(n),
            gossip_addr: format!("{n}:1"),
            http_addr: format!("{n}:2"),
        }
    }

    #[test]
    fn the_node_itself_is_never_a_peer() {
        let mut t = PeerTable::new(name("me"));
        assert_eq!(t.greeted(&member("me"), Duration::ZERO), Change::None);
        assert!(t.views(Duration::ZERO).is_empty());
    }

    #[test]
    fn membership_removes_only_peers_it_alone_brought() {
        let mut t = PeerTable::new(name("me"));
        t.greeted(&member("g"), Duration::ZERO);
        let (changes, removed) = t.set_membership(&[member("g"), member("d")]);
        assert_eq!(changes, vec![(name("d"), Change::Added("d:1".into()))]);
        assert!(removed.is_empty());
        let (changes, removed) = t.set_membership(&[]);
        assert!(changes.is_empty());
        assert_eq!(removed, vec![name("d")]);
        assert!(t.contains(&name("g")));
    }

    #[test]
    fn a_peer_announcing_a_new_address_has_moved() {
        let mut t = PeerTable::new(name("me"));
        t.greeted(&member("a"), Duration::ZERO);
        let mut moved = member("a");
        moved.gossip_addr = "elsewhere:1".into();
        assert_eq!(
            t.greeted(&moved, Duration::ZERO),
            Change::Moved("elsewhere:1".into())
        );
    }

    #[test]
    fn a_seed_is_contacted_until_a_peer_answers_for_its_address() {
        let mut t = PeerTable::new(name("me"));
        assert!(t.add_seed("s:1"));
        assert!(!t.add_seed("s:1"));
        assert!(t.is_unanswered_seed("s:1"));
        assert!(t.set_seed_reachable("s:1", true));
        assert_eq!(t.counts().reachable, 1);
        t.greeted(&member("s"), Duration::ZERO);
        assert!(!t.is_unanswered_seed("s:1"));
    }

    #[test]
    fn reachability_reports_transitions_only() {
        let mut t = PeerTable::new(name("me"));
        t.greeted(&member("s"), Duration::ZERO);
        assert!(t.set_reachable(&name("s"), false));
        assert!(!t.set_reachable(&name("s"), false));
        assert!(t.set_reachable(&name("s"), true));
        assert!(!t.set_reachable(&name("unknown"), true));
    }
}
