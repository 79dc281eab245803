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
    /// The live origins' totals.
    pub origins: Vec<OriginTotalsView>,
    /// The retired origins' totals, summed (see `--retire-after`).
    #[serde(default)]
    pub retired: SummedTotalsView,
    /// What idempotency keys count by acceptance, not yet in an origin's totals: with
    /// the origins and the retired sum, the value.
    #[serde(default)]
    pub accepted: SummedTotalsView,
}

/// Increments and decrements summed over several sources; each saturates at u64::MAX.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummedTotalsView {
    pub p: u64,
    pub n: u64,
}

impl From<(u128, u128)> for SummedTotalsView {
    fn from((p, n): (u128, u128)) -> SummedTotalsView {
        let cap = |x: u128| u64::try_from(x).unwrap_or(u64::MAX);
        SummedTotalsView {
            p: cap(p),
            n: cap(n),
        }
    }
}

/// One peer in `GET /peers`: a member other than the node itself.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerView {
    pub name: Option<String>,
    pub gossip_addr: String,
    pub http_addr: Option<String>,
    /// The member is alive in this node's view.
    pub reachable: bool,
    /// `alive`, `suspect`, `dead` or `left`.
    pub state: String,
    /// Milliseconds since a frame from the peer last arrived; absent if never.
    pub last_heard_ms_ago: Option<u64>,
}

/// One member in `GET /members`, the node itself included.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberEntryView {
    pub name: String,
    pub gossip_addr: String,
    pub http_addr: String,
    /// `alive`, `suspect`, `dead` or `left`.
    pub state: String,
    /// The origin this member writes under: `name/incarnation`.
    pub origin: String,
    /// Milliseconds the member has been in this state (since this node saw it change).
    pub since_ms: u64,
    /// The counter the member raises to refute suspicion.
    pub liveness: u64,
    /// When this run of the member started (milliseconds since the Unix epoch).
    pub started_at: u64,
    /// Milliseconds since a frame from the member last arrived; absent if never (or for
    /// the node itself).
    pub last_heard_ms_ago: Option<u64>,
}

/// `GET /members`: every member this node knows, by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MembersView {
    #[serde(rename = "self")]
    pub me: String,
    pub members: Vec<MemberEntryView>,
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
