//! Feeds a running node's membership from the discovery server: registers the node
//! under its name and addresses, and hands every fresh peer list to the event loop as
//! [`Control::Membership`], which replaces the discovery-fed part of the peer set (seeds
//! and peers that greeted the node stay).
//!
//! While discovery is down the client calls nothing, so the node keeps the peers it
//! knows; the client logs the outage once, and the return once.

use super::{Control, Node, PeerInfo};
use crate::discovery::{ClientConfig, DiscoveryClient, Member, NodeInfo};
use crate::member::NodeName;
use std::io;
use std::time::Duration;

/// Starts the discovery client for `node`; stopping (or dropping) it deregisters the node.
pub fn join_discovery(node: &Node, url: &str, interval: Duration) -> io::Result<DiscoveryClient> {
    let me = NodeInfo {
        name: node.name().to_owned(),
        addr: node.gossip_addr(),
        http: node.http_addr(),
    };
    let mut config = ClientConfig::new(url, me);
    config.interval = interval;
    let control = node.control();
    DiscoveryClient::start(config, move |members| {
        let peers = members.iter().filter_map(peer_info).collect();
        let _ = control.send(Control::Membership(peers));
    })
}

/// The member as a peer; a name discovery accepted but a node cannot take is skipped.
fn peer_info(member: &Member) -> Option<PeerInfo> {
    Some(PeerInfo {
        name: NodeName::new(&member.name).ok()?,
        gossip_addr: member.addr.to_string(),
        http_addr: member.http.to_string(),
    })
}
