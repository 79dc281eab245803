//! The JSON shapes of the HTTP API, shared by the node (which serializes them) and the
//! `gctr inc/dec/get` client (which reads them back).

use crate::member::Member;
use crate::status::NodeStatus;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `POST .../increment`, `POST .../decrement`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueView {
    pub name: String,
    pub value: i64,
}

/// `GET /counters`: every counter the node knows, by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountersView {
    pub counters: BTreeMap<String, i64>,
}

/// One origin's contribution to a counter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OriginTotalsView {
    /// `node/incarnation` (the incarnation in hex).
    pub origin: String,
    pub p: u64,
    pub n: u64,
}

/// `GET /counters/{name}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CounterView {
    pub name: String,
    pub value: i64,
    pub origins: Vec<OriginTotalsView>,
}

/// One peer in `GET /peers`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerView {
    /// From the peer's Hello (or discovery); absent until known.
    pub name: Option<String>,
    pub gossip_addr: String,
    pub http_addr: Option<String>,
    /// The outbound connection to the peer is up.
    pub reachable: bool,
    /// Milliseconds since a frame from the peer last arrived; absent if never.
    pub last_heard_ms_ago: Option<u64>,
}

/// The answering node itself in `GET /peers` and `GET /status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SelfView {
    pub name: String,
    pub origin: String,
    pub gossip_addr: String,
    pub http_addr: String,
}

/// `GET /peers`: the node's view of the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeersView {
    #[serde(rename = "self")]
    pub me: SelfView,
    pub peers: Vec<PeerView>,
}

/// Counters `GET /dashboard.json` lists at most (by name); the page says how many more.
pub const MAX_DASHBOARD_COUNTERS: usize = 100;

/// `GET /dashboard.json`: what the dashboard page polls, from its own node and from the
/// others (it is served with `Access-Control-Allow-Origin: *` for that).
#[derive(Clone, Debug, Serialize)]
pub struct DashboardView {
    /// Everything `GET /status` reports: members and their states, gossip peers,
    /// replication, operations, gossip, WAL, latency and process figures.
    pub node: NodeStatus,
    /// The first [`MAX_DASHBOARD_COUNTERS`] counters by name, with per-origin totals.
    pub counters: Vec<CounterView>,
    /// Counters in all.
    pub counters_total: usize,
}

impl From<&Member> for SelfView {
    fn from(m: &Member) -> SelfView {
        SelfView {
            name: m.name.to_string(),
            origin: m.origin().to_string(),
            gossip_addr: m.gossip_addr.clone(),
            http_addr: m.http_addr.clone(),
        }
    }
}
