//! The JSON the discovery server and its clients exchange, shared so the two cannot drift.
//!
//! Addresses travel as `"host:port"` strings and are parsed into socket addresses on the
//! way in, so a member in the table always has addresses a peer can dial: an IP address
//! (not a host name, not the unspecified `0.0.0.0`/`::`) and a non-zero port.

use crate::crdt::validate_node_name;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;

/// What a node tells discovery about itself: body of `POST /register` and `POST /heartbeat`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawNodeInfo")]
pub struct NodeInfo {
    /// The node's name, unique in the cluster (see `crdt::validate_node_name`).
    pub name: String,
    /// Where the node listens for gossip (TCP).
    pub addr: SocketAddr,
    /// Where the node serves its HTTP API.
    pub http: SocketAddr,
}

#[derive(Deserialize)]
struct RawNodeInfo {
    name: String,
    addr: String,
    http: String,
}

impl TryFrom<RawNodeInfo> for NodeInfo {
    type Error = String;

    fn try_from(raw: RawNodeInfo) -> Result<NodeInfo, String> {
        validate_node_name(&raw.name).map_err(|e| e.to_string())?;
        Ok(NodeInfo {
            addr: parse_dialable("addr", &raw.addr)?,
            http: parse_dialable("http", &raw.http)?,
            name: raw.name,
        })
    }
}

/// Parses `host:port` into an address another machine can connect to.
pub fn parse_dialable(field: &str, text: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text
        .parse()
        .map_err(|_| format!("{field} {text:?} is not an IP:port socket address"))?;
    if addr.ip().is_unspecified() {
        return Err(format!(
            "{field} {text:?} is the unspecified address; give one peers can reach"
        ));
    }
    if addr.port() == 0 {
        return Err(format!("{field} {text:?} has port 0"));
    }
    Ok(addr)
}

/// Body of `POST /deregister`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawDeregister")]
pub struct Deregister {
    pub name: String,
}

#[derive(Deserialize)]
struct RawDeregister {
    name: String,
}

impl TryFrom<RawDeregister> for Deregister {
    type Error = String;

    fn try_from(raw: RawDeregister) -> Result<Deregister, String> {
        validate_node_name(&raw.name).map_err(|e| e.to_string())?;
        Ok(Deregister { name: raw.name })
    }
}

/// One live member, as listed by `GET /peers` (a JSON array of these, sorted by name).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub addr: SocketAddr,
    pub http: SocketAddr,
    /// Milliseconds since discovery last heard from this member.
    pub seen_ms_ago: u64,
}

/// Answer to `POST /register` and `POST /heartbeat`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    /// How long discovery keeps a member without a heartbeat, so a client can check
    /// that its interval is well below it.
    pub ttl_ms: u64,
    /// Live members, this one included.
    pub members: usize,
}

/// Answer to `POST /deregister`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deregistered {
    /// False when no member had that name (deregistering twice is harmless).
    pub removed: bool,
}

/// Answer to `GET /health`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub members: usize,
    pub ttl_ms: u64,
}
