//! Discovery as one way to join: registers the node under its name and addresses, and
//! hands the event loop the gossip address of every member discovery lists, to join
//! through any that is not a live member yet. Membership (SWIM) does the rest, so a
//! member that leaves discovery is not dropped for that; it is dropped when it fails
//! its probes or leaves.
//!
//! While discovery is down the client calls nothing; the client logs the outage once,
//! and the return once.

use super::{Control, Node};
use crate::discovery::{ClientConfig, DiscoveryClient, NodeInfo};
use crate::http::Credentials;
use std::io;
use std::time::Duration;

/// Starts the discovery client for `node`; stopping (or dropping) it deregisters the node.
pub fn join_discovery(
    node: &Node,
    url: &str,
    interval: Duration,
    credentials: Credentials,
) -> io::Result<DiscoveryClient> {
    let me = NodeInfo {
        name: node.name().to_owned(),
        addr: node.gossip_addr(),
        http: node.http_addr(),
    };
    let mut config = ClientConfig::new(url, me);
    config.interval = interval;
    config.credentials = credentials;
    let control = node.control();
    DiscoveryClient::start(config, move |members| {
        // Members heard from most recently first: a live node heartbeats, so it leads
        // the list however many stale entries discovery holds.
        let mut fresh: Vec<_> = members.iter().collect();
        fresh.sort_by_key(|m| m.seen_ms_ago);
        let addrs = fresh.iter().map(|m| m.addr.to_string()).collect();
        let _ = control.send(Control::Discovered(addrs));
    })
}
