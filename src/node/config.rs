//! A node's settings and their defaults, independent of how they were given (command
//! line or code).

use crate::engine;
use std::net::SocketAddr;
use std::time::Duration;

/// Frames a peer's outbound queue holds before the oldest is dropped.
pub const DEFAULT_PEER_QUEUE: usize = 256;
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
/// Threads answering HTTP requests. Each waits for its operation's batch to be durable,
/// so this bounds the operations one group commit can gather: it must cover the client
/// concurrency the node is meant to serve (a worker parked on a channel costs a stack).
pub const DEFAULT_HTTP_WORKERS: usize = 64;
/// Longest wait for an HTTP client's next bytes (headers or body) before its request
/// fails and its connection is closed, so a stalled client cannot hold a worker.
pub const DEFAULT_HTTP_READ_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest HTTP request body accepted, in bytes.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;
/// Most client operations gathered into one batch (one durable write).
pub const MAX_BATCH: usize = 4096;

/// Everything `Node::start` needs besides the storage and the recovered state.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The node's name, unique in the cluster.
    pub name: String,
    /// Where to listen for gossip; the address peers must use to reach this node.
    pub gossip_addr: SocketAddr,
    /// Where to serve the HTTP API.
    pub http_addr: SocketAddr,
    /// Where to serve the Redis protocol (RESP2), if anywhere.
    pub redis_addr: Option<SocketAddr>,
    /// Gossip addresses (`host:port`) of peers to join at start.
    pub seeds: Vec<String>,
    pub engine: engine::Config,
    pub peer_queue: usize,
    pub max_inbound: usize,
    pub hello_timeout: Duration,
    pub idle_timeout: Duration,
    pub io_timeout: Duration,
    pub max_backoff: Duration,
    pub http_workers: usize,
    pub http_read_timeout: Duration,
    pub max_body: usize,
}

impl NodeConfig {
    /// A configuration with every default, named after its gossip address.
    pub fn new(gossip_addr: SocketAddr, http_addr: SocketAddr) -> NodeConfig {
        NodeConfig {
            name: gossip_addr.to_string(),
            gossip_addr,
            http_addr,
            redis_addr: None,
            seeds: Vec::new(),
            engine: engine::Config::default(),
            peer_queue: DEFAULT_PEER_QUEUE,
            max_inbound: DEFAULT_MAX_INBOUND,
            hello_timeout: DEFAULT_HELLO_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            io_timeout: DEFAULT_IO_TIMEOUT,
            max_backoff: DEFAULT_MAX_BACKOFF,
            http_workers: DEFAULT_HTTP_WORKERS,
            http_read_timeout: DEFAULT_HTTP_READ_TIMEOUT,
            max_body: DEFAULT_MAX_BODY,
        }
    }
}
