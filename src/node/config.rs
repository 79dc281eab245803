//! A node's settings and their defaults, independent of how they were given (command
//! line or code).

use super::lan_discovery::LanConfig;
use crate::engine;
use crate::http::HttpConfig;
use crate::membership;
use crate::node_core::{
    DEFAULT_COMPACT_AFTER, DEFAULT_KEY_WINDOW, DEFAULT_MAX_KEYS, DEFAULT_RETIRE_AFTER,
};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Frames a peer's outbound queue holds before the oldest is dropped.
pub const DEFAULT_PEER_QUEUE: usize = 256;
/// Most counters local writes may create (see `State::set_counter_limit`).
pub const DEFAULT_MAX_COUNTERS: usize = 10_000_000;
/// Inbound gossip connections served at once; more are closed at once.
pub const DEFAULT_MAX_INBOUND: usize = 256;
/// How long a new inbound connection may take to send its Hello.
pub const DEFAULT_HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// An inbound connection silent this long is closed; its peer reconnects when it next
/// has something to say. Frees the slot of a peer whose host vanished without a FIN.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Connect and write timeout of outbound peer connections.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest wait between two reconnection attempts to an unreachable peer.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Everything `Node::start` needs besides the storage and the recovered state.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The node's name, unique in the cluster.
    pub name: String,
    /// Where to listen for gossip; the address peers must use to reach this node.
    pub gossip_addr: SocketAddr,
    /// Where to serve the HTTP API.
    pub http_addr: SocketAddr,
    /// The IP peers and clients are told to reach this node at, with the gossip and HTTP
    /// ports listened on, when it is not the one listened on (a node listening on
    /// 0.0.0.0 in a container).
    pub advertise: Option<IpAddr>,
    /// Where to serve the Redis protocol (RESP2), if anywhere.
    pub redis_addr: Option<SocketAddr>,
    /// Gossip addresses (`host:port`, the host an IP or a DNS name) of nodes to join
    /// through; contacted while some of them is not a live member.
    pub seeds: Vec<String>,
    pub engine: engine::Config,
    pub membership: membership::Config,
    /// LAN discovery, when on.
    pub lan: Option<LanConfig>,
    pub peer_queue: usize,
    pub max_inbound: usize,
    pub hello_timeout: Duration,
    pub idle_timeout: Duration,
    pub io_timeout: Duration,
    pub max_backoff: Duration,
    pub http: HttpConfig,
    /// Hold writes at start until a live member confirms this node's origin, at most
    /// this long (for a node that recovered its state; see `node_core::OriginGuard`).
    pub fence: Option<Duration>,
    /// Most counters local writes may create; a write that would create one more is
    /// refused (HTTP 507).
    pub max_counters: usize,
    /// The gossip keyring, when gossip is encrypted.
    pub keyring: Option<KeyringConfig>,
    /// How long idempotency keys are kept: a retry within it counts once.
    pub key_window: Duration,
    /// Most idempotency keys held; a new key beyond it is refused (HTTP 503).
    pub max_keys: usize,
    /// How long a member must be gone before its origins retire; `None`: never.
    pub retire_after: Option<Duration>,
    /// How long an origin stays retired before it is compacted; `None`: never.
    pub compact_after: Option<Duration>,
    /// The node registers with a discovery server (it joins the members it lists).
    pub discovery: bool,
}

/// `--keyring FILE` and `--keyring-transition`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyringConfig {
    /// The keyring file: read at start, rewritten at every change.
    pub file: PathBuf,
    /// A file never changed by a command starts in the transition (mode `open`).
    pub transition: bool,
}

impl NodeConfig {
    /// A configuration with every default, named after its gossip address.
    pub fn new(gossip_addr: SocketAddr, http_addr: SocketAddr) -> NodeConfig {
        NodeConfig {
            name: gossip_addr.to_string(),
            gossip_addr,
            http_addr,
            advertise: None,
            redis_addr: None,
            seeds: Vec::new(),
            engine: engine::Config::default(),
            membership: membership::Config::default(),
            lan: None,
            peer_queue: DEFAULT_PEER_QUEUE,
            max_inbound: DEFAULT_MAX_INBOUND,
            hello_timeout: DEFAULT_HELLO_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            io_timeout: DEFAULT_IO_TIMEOUT,
            max_backoff: DEFAULT_MAX_BACKOFF,
            http: HttpConfig::default(),
            fence: None,
            max_counters: DEFAULT_MAX_COUNTERS,
            keyring: None,
            key_window: DEFAULT_KEY_WINDOW,
            max_keys: DEFAULT_MAX_KEYS,
            retire_after: Some(DEFAULT_RETIRE_AFTER),
            compact_after: Some(DEFAULT_COMPACT_AFTER),
            discovery: false,
        }
    }

    /// Whether the node has a way to find members at start: seeds, discovery or LAN
    /// discovery.
    pub fn finds_members(&self) -> bool {
        !self.seeds.is_empty() || self.discovery || self.lan.is_some()
    }
}
