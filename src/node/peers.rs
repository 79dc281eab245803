//! The node's peer table: every peer it knows by gossip address, with the name and HTTP
//! address the peer announced in its Hello, whether its outbound connection is up, when
//! it was last heard from, and why it is known (a seed, discovery, or because it greeted
//! us). The engine names peers by gossip address; this table is what `GET /peers` shows.

use super::views::PeerView;
use std::collections::BTreeMap;
use std::time::Duration;

/// A member as a membership source (the discovery client) reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    pub name: String,
    pub gossip_addr: String,
    pub http_addr: String,
}

#[derive(Clone, Debug, Default)]
struct Peer {
    name: Option<String>,
    http_addr: Option<String>,
    reachable: Option<bool>,
    last_heard: Option<Duration>,
    seed: bool,
    discovered: bool,
    greeted: bool,
}

impl Peer {
    fn wanted(&self) -> bool {
        self.seed || self.discovered || self.greeted
    }
}

/// Peers by gossip address. Never holds the node's own address.
#[derive(Debug)]
pub struct PeerTable {
    own_addr: String,
    peers: BTreeMap<String, Peer>,
}

impl PeerTable {
    pub fn new(own_addr: impl Into<String>) -> PeerTable {
        PeerTable {
            own_addr: own_addr.into(),
            peers: BTreeMap::new(),
        }
    }

    /// Adds a seed; returns whether the address is new.
    pub fn add_seed(&mut self, addr: &str) -> bool {
        self.upsert(addr, |p| p.seed = true)
    }

    /// Records a Hello from `addr`; returns whether the address is new.
    pub fn greeted(&mut self, addr: &str, name: &str, http_addr: &str, now: Duration) -> bool {
        self.upsert(addr, |p| {
            p.greeted = true;
            p.name = Some(name.to_owned());
            p.http_addr = Some(http_addr.to_owned());
            p.last_heard = Some(now);
        })
    }

    /// Records that a frame from `addr` arrived.
    pub fn heard(&mut self, addr: &str, now: Duration) {
        if let Some(p) = self.peers.get_mut(addr) {
            p.last_heard = Some(now);
        }
    }

    /// Takes the full member list of a membership source: listed peers are added or
    /// updated; peers known only from an earlier list and absent now are removed.
    /// Returns the addresses added and removed.
    pub fn set_membership(&mut self, members: &[PeerInfo]) -> (Vec<String>, Vec<String>) {
        let mut added = Vec::new();
        for p in self.peers.values_mut() {
            p.discovered = false;
        }
        for m in members {
            let new = self.upsert(&m.gossip_addr, |p| {
                p.discovered = true;
                p.name = Some(m.name.clone());
                p.http_addr = Some(m.http_addr.clone());
            });
            if new {
                added.push(m.gossip_addr.clone());
            }
        }
        let removed: Vec<String> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.wanted())
            .map(|(a, _)| a.clone())
            .collect();
        for addr in &removed {
            self.peers.remove(addr);
        }
        (added, removed)
    }

    /// Records whether the outbound connection to `addr` is up; returns whether that is a
    /// change (the first report counts as one).
    pub fn set_reachable(&mut self, addr: &str, reachable: bool) -> bool {
        match self.peers.get_mut(addr) {
            Some(p) if p.reachable != Some(reachable) => {
                p.reachable = Some(reachable);
                true
            }
            _ => false,
        }
    }

    pub fn contains(&self, addr: &str) -> bool {
        self.peers.contains_key(addr)
    }

    /// The peer's name if known, else its address: how logs name a peer.
    pub fn label(&self, addr: &str) -> String {
        match self.peers.get(addr).and_then(|p| p.name.as_deref()) {
            Some(name) if name != addr => format!("{name} ({addr})"),
            _ => addr.to_owned(),
        }
    }

    pub fn len(&self) -> usize {
        self.peers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    pub fn views(&self, now: Duration) -> Vec<PeerView> {
        self.peers
            .iter()
            .map(|(addr, p)| PeerView {
                name: p.name.clone(),
                gossip_addr: addr.clone(),
                http_addr: p.http_addr.clone(),
                reachable: p.reachable == Some(true),
                last_heard_ms_ago: p
                    .last_heard
                    .map(|t| now.saturating_sub(t).as_millis() as u64),
            })
            .collect()
    }

    /// Applies `change` to the peer at `addr`, creating it if needed; returns whether it
    /// was created. The node's own address is never added.
    fn upsert(&mut self, addr: &str, change: impl FnOnce(&mut Peer)) -> bool {
        if addr == self.own_addr {
            return false;
        }
        let new = !self.peers.contains_key(addr);
        change(self.peers.entry(addr.to_owned()).or_default());
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(addr: &str) -> PeerInfo {
        PeerInfo {
            name: format!("n{addr}"),
            gossip_addr: addr.into(),
            http_addr: format!("h{addr}"),
        }
    }

    #[test]
    fn own_address_is_never_a_peer() {
        let mut t = PeerTable::new("me:1");
        assert!(!t.add_seed("me:1"));
        assert!(!t.greeted("me:1", "me", "h", Duration::ZERO));
        assert!(t.is_empty());
    }

    #[test]
    fn membership_removes_only_peers_it_alone_brought() {
        let mut t = PeerTable::new("me:1");
        t.add_seed("s:1");
        let (added, removed) = t.set_membership(&[member("s:1"), member("d:1")]);
        assert_eq!((added, removed), (vec!["d:1".to_owned()], vec![]));
        let (added, removed) = t.set_membership(&[]);
        assert_eq!((added, removed), (vec![], vec!["d:1".to_owned()]));
        assert!(t.contains("s:1"));
    }

    #[test]
    fn reachability_reports_transitions_only() {
        let mut t = PeerTable::new("me:1");
        t.add_seed("s:1");
        assert!(t.set_reachable("s:1", false));
        assert!(!t.set_reachable("s:1", false));
        assert!(t.set_reachable("s:1", true));
        assert!(!t.set_reachable("unknown:1", true));
    }
}
